//! Quality of service for Sluice, in pure Rust so it is tested and benched without DPDK:
//! rates and sizes as people write them, meters on TSC ticks with integer arithmetic,
//! the class table, per-worker rate shares, and the egress priority scheduler.

pub mod class;
pub mod classify;
pub mod meter;
pub mod scheduler;
pub mod share;
pub mod units;

pub use class::{Action, Class, ClassId, Priority};
pub use classify::{Classifier, Fields, Net, Rule};
pub use meter::{Colour, Meter, MeterSpec};
pub use scheduler::{EgressScheduler, Enqueued};
pub use units::{parse_rate_bps, parse_size_bytes};
