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

// glibc's `fopencookie` (a GNU extension the `libc` crate does not declare): a `FILE`
// whose writes call `write`. `dataplane::dpdk` hands one to `rte_openlog_stream`.

/// `cookie_io_functions_t` of `<stdio.h>`.
#[repr(C)]
pub struct cookie_io_functions_t {
    pub read: Option<unsafe extern "C" fn(*mut ::std::os::raw::c_void, *mut ::std::os::raw::c_char, usize) -> isize>,
    pub write: Option<unsafe extern "C" fn(*mut ::std::os::raw::c_void, *const ::std::os::raw::c_char, usize) -> isize>,
    pub seek: Option<
        unsafe extern "C" fn(*mut ::std::os::raw::c_void, *mut i64, ::std::os::raw::c_int) -> ::std::os::raw::c_int,
    >,
    pub close: Option<unsafe extern "C" fn(*mut ::std::os::raw::c_void) -> ::std::os::raw::c_int>,
}

extern "C" {
    pub fn fopencookie(
        cookie: *mut ::std::os::raw::c_void,
        mode: *const ::std::os::raw::c_char,
        functions: cookie_io_functions_t,
    ) -> *mut FILE;
}
