//! Routing for Sluice: longest-prefix match tables for IPv4 and IPv6, the prefix types
//! they are built from, paths and path groups across clouds with their selection
//! policies, and Maglev tables for consistent per-flow path choice. Pure Rust; never
//! links DPDK.

pub mod hash;
pub mod health;
pub mod lpm;
pub mod maglev;
pub mod path;
pub mod prefix;

pub use lpm::{Lpm4, Lpm6, LpmError};
pub use maglev::{Maglev, NO_PATH};
pub use path::{AdminState, Cloud, Health, Path, PathGroup, PathStatus, Policy, Selection};
pub use prefix::{Ipv4Prefix, Ipv6Prefix, PrefixError};
