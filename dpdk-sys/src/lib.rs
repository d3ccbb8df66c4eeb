//! Raw bindings to the system DPDK, generated at build time by bindgen from the headers
//! that `pkg-config libdpdk` points at, plus `sluice_*` out-of-line copies of DPDK's
//! static-inline hot functions (see `shim/shim.c`). No logic lives here; the safe layer
//! is `dataplane::dpdk`.

#![allow(non_upper_case_globals, non_camel_case_types, non_snake_case, dead_code)]
#![allow(clippy::all)]
#![allow(rustdoc::all)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));

// `LINKED_STATIC`: whether DPDK is linked into the executable (`SLUICE_DPDK_LINK`, see
// `build.rs`) rather than loaded from its shared libraries; `LINKED_NET_DRIVERS`: the
// network drivers linked in then (names as EAL gives them), empty otherwise.
include!(concat!(env!("OUT_DIR"), "/linked.rs"));
