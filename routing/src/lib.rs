//! Routing for Sluice: longest-prefix match tables for IPv4 and IPv6 and the prefix types
//! they are built from. Pure Rust; never links DPDK.

pub mod lpm;
pub mod prefix;

pub use lpm::{Lpm4, Lpm6, LpmError};
pub use prefix::{Ipv4Prefix, Ipv6Prefix, PrefixError};
