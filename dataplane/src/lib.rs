//! Sluice's fast path: safe wrappers over DPDK (`dpdk`, the only module with `unsafe`),
//! typed packet views (`wire`), parsing (`parse`), the per-worker flow table (`flow`), the
//! stages over a burst (`pipeline`), the snapshot workers read (`tables`), the worker loop
//! and its counters (`worker`, `stats`), the control thread's side of the rings
//! (`slowpath`), start-up (`eal_args`, `app`) and tools for tests and benchmarks
//! (`builder`, `pcap`).

pub mod app;
pub mod builder;
pub mod ctlsock;
pub mod dpdk;
pub mod dpdklog;
pub mod eal_args;
pub mod flow;
pub mod flowexport;
pub mod latency;
pub mod metrics;
pub mod parse;
pub mod pcap;
pub mod pipeline;
pub mod placement;
pub mod quiesce;
pub mod slowpath;
pub mod stats;
pub mod tables;
pub mod wire;
pub mod worker;
