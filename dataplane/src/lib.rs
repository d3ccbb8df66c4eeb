//! Sluice's fast path: safe wrappers over DPDK (`dpdk`, the only module with `unsafe`),
//! typed packet views (`wire`), the forwarding stage (`forward`), the worker loop and its
//! counters (`worker`, `stats`), start-up (`eal_args`, `app`) and tools for tests and
//! benchmarks (`builder`, `pcap`).

pub mod app;
pub mod builder;
pub mod dpdk;
pub mod eal_args;
pub mod flow;
pub mod parse;
pub mod pcap;
pub mod pipeline;
pub mod slowpath;
pub mod stats;
pub mod tables;
pub mod wire;
pub mod worker;
