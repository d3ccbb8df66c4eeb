//! `sluice-pktgen`: a DPDK traffic generator and analyser (`gen`), and a reflector that
//! plays cloud gateways (`reflect`). Stream specifications (`spec`), frame building
//! (`frame`), the payload signature and sequence tracking (`sig`), TSC pacing (`pace`)
//! and reports (`report`) are plain Rust; `ports`, `gen` and `reflector` drive DPDK
//! through the `dataplane` crate's safe wrappers.

pub mod frame;
pub mod gen;
pub mod pace;
pub mod ports;
pub mod reflect;
pub mod reflector;
pub mod replay;
pub mod report;
pub mod search;
pub mod sig;
pub mod spec;
