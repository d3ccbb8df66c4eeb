//! Wire constants and the Internet checksum live in `control::wire` (the control plane
//! builds and answers packets without DPDK); the fast path uses them from here.

pub use control::wire::*;
