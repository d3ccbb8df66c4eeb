//! Safe wrappers over `dpdk-sys`: the EAL, mempools, ports with their queues, mbufs and
//! bursts. This is the only module of `dataplane` with `unsafe`; everything above it is
//! safe Rust.
//!
//! Ownership rules the types carry:
//! - `Eal` exists once per process (a second `init` is an error, not a crash).
//! - An `Mbuf` owns one packet (a chain of segments); dropping it frees it.
//! - A `Burst` owns up to N packets; what it still holds when dropped is freed.
//! - Each RX/TX queue of a port is a token (`RxQueue`, `TxQueue`) that is `Send` but not
//!   `Clone`, so exactly one thread can poll a queue, as DPDK requires. `tx` frees and
//!   reports whatever the driver did not take.

use dpdk_sys as sys;
use std::ffi::{c_void, CStr, CString};
use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

/// Offload and RSS flags (RTE_BIT64 macros in rte_ethdev.h that bindgen cannot evaluate).
pub mod flags {
    pub const RX_OFFLOAD_IPV4_CKSUM: u64 = 1 << 1;
    pub const RX_OFFLOAD_SCATTER: u64 = 1 << 13;
    pub const TX_OFFLOAD_MULTI_SEGS: u64 = 1 << 15;
    pub const TX_OFFLOAD_MBUF_FAST_FREE: u64 = 1 << 16;
    pub const RSS_IPV4: u64 = 1 << 2;
    pub const RSS_FRAG_IPV4: u64 = 1 << 3;
    pub const RSS_NONFRAG_IPV4_TCP: u64 = 1 << 4;
    pub const RSS_NONFRAG_IPV4_UDP: u64 = 1 << 5;
    pub const RSS_NONFRAG_IPV4_OTHER: u64 = 1 << 7;
    pub const RSS_IPV6: u64 = 1 << 8;
    pub const RSS_FRAG_IPV6: u64 = 1 << 9;
    pub const RSS_NONFRAG_IPV6_TCP: u64 = 1 << 10;
    pub const RSS_NONFRAG_IPV6_UDP: u64 = 1 << 11;
    pub const RSS_NONFRAG_IPV6_OTHER: u64 = 1 << 13;
    /// Addresses and ports of IPv4 and IPv6, TCP and UDP: the 5-tuple.
    pub const RSS_5TUPLE: u64 = RSS_IPV4
        | RSS_FRAG_IPV4
        | RSS_NONFRAG_IPV4_TCP
        | RSS_NONFRAG_IPV4_UDP
        | RSS_NONFRAG_IPV4_OTHER
        | RSS_IPV6
        | RSS_FRAG_IPV6
        | RSS_NONFRAG_IPV6_TCP
        | RSS_NONFRAG_IPV6_UDP
        | RSS_NONFRAG_IPV6_OTHER;
    pub const MBUF_RX_IP_CKSUM_MASK: u64 = super::sys::RTE_MBUF_F_RX_IP_CKSUM_MASK as u64;
    pub const MBUF_RX_IP_CKSUM_BAD: u64 = super::sys::RTE_MBUF_F_RX_IP_CKSUM_BAD as u64;
    pub const MBUF_RX_IP_CKSUM_GOOD: u64 = super::sys::RTE_MBUF_F_RX_IP_CKSUM_GOOD as u64;
}

/// Data room of every mbuf: DPDK's default (2 KiB plus headroom); jumbo frames chain.
pub const MBUF_DATA_ROOM: u16 = sys::RTE_MBUF_DEFAULT_BUF_SIZE as u16;
pub const MBUF_HEADROOM: u16 = sys::RTE_PKTMBUF_HEADROOM as u16;
pub const MAX_PORTS: usize = sys::RTE_MAX_ETHPORTS as usize;

// The hot path reads mbuf fields directly; DPDK's layout is two cache lines.
const _: () = assert!(std::mem::size_of::<sys::rte_mbuf>() == 128);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DpdkError {
    AlreadyInitialized,
    Call { what: String, code: i32, msg: String },
    Invalid(String),
}

impl fmt::Display for DpdkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DpdkError::AlreadyInitialized => write!(
                f,
                "DPDK's EAL is already initialised in this process (it can be initialised once)"
            ),
            DpdkError::Call { what, code, msg } => write!(f, "{what} failed: {msg} (error {code})"),
            DpdkError::Invalid(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for DpdkError {}

fn strerror(code: i32) -> String {
    // SAFETY: rte_strerror returns a pointer to a static or thread-local NUL-terminated string.
    unsafe { CStr::from_ptr(sys::rte_strerror(code.abs())) }
        .to_string_lossy()
        .into_owned()
}

fn rte_errno() -> i32 {
    // SAFETY: reads the calling thread's rte_errno.
    unsafe { sys::sluice_errno() }
}

/// Turns a DPDK return code (negative errno) into a result.
fn check(what: impl FnOnce() -> String, ret: i32) -> Result<i32, DpdkError> {
    if ret < 0 {
        Err(DpdkError::Call {
            what: what(),
            code: -ret,
            msg: strerror(ret),
        })
    } else {
        Ok(ret)
    }
}

fn errno_error(what: String) -> DpdkError {
    let code = rte_errno();
    DpdkError::Call {
        what,
        code,
        msg: strerror(code),
    }
}

// ---- DPDK's log ---------------------------------------------------------------------------

static DPDK_LOG: std::sync::Mutex<Option<crate::dpdklog::DpdkLog>> = std::sync::Mutex::new(None);

/// Sends DPDK's own log messages to the process logger (`log`, component `dpdk`), one
/// record per line at the level DPDK gave it, repeats thinned out (`dpdklog`). Call it
/// before `Eal::init`, once the logger is installed, so that EAL's start-up messages go
/// there too. Without it DPDK 22.11 writes to standard error until EAL has started and
/// to standard output and syslog after.
pub fn log_to_logger() -> Result<(), DpdkError> {
    static DONE: AtomicBool = AtomicBool::new(false);
    if DONE.load(Ordering::Acquire) {
        return Ok(());
    }
    /// The stream's write: DPDK's `rte_vlog` formats a message into the stream's buffer
    /// and flushes it, on the thread that logs, so the level of this thread's current
    /// message is the one these bytes were written at.
    unsafe extern "C" fn write(_cookie: *mut c_void, buf: *const std::ffi::c_char, size: usize) -> isize {
        // SAFETY: glibc hands the stream's buffer: `size` readable bytes at `buf`.
        let bytes = unsafe { std::slice::from_raw_parts(buf as *const u8, size) };
        // SAFETY: reads a per-thread value that rte_vlog set for the message being written.
        let level = unsafe { sys::rte_log_cur_msg_loglevel() };
        let records = DPDK_LOG
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(Default::default)
            .take(bytes, level.max(0) as u32);
        for (level, message) in records {
            log::log!(target: "dpdk", level, "{message}");
        }
        size as isize
    }
    let functions = sys::cookie_io_functions_t {
        read: None,
        write: Some(write),
        seek: None,
        close: None,
    };
    // SAFETY: the mode is a NUL-terminated string; the functions are plain `extern "C"`
    // functions that live as long as the process; the cookie is not used.
    let stream = unsafe { sys::fopencookie(std::ptr::null_mut(), c"w".as_ptr(), functions) };
    if stream.is_null() {
        return Err(DpdkError::Invalid(format!(
            "cannot open a log stream for DPDK: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: `stream` is a valid stream that is never closed; DPDK only writes to it.
    if unsafe { sys::rte_openlog_stream(stream) } != 0 {
        return Err(DpdkError::Invalid("DPDK refused the log stream".into()));
    }
    DONE.store(true, Ordering::Release);
    Ok(())
}

// ---- EAL -------------------------------------------------------------------------------

const EAL_NEVER: u8 = 0;
const EAL_RUNNING: u8 = 1;
const EAL_DONE: u8 = 2;
static EAL_STATE: AtomicU8 = AtomicU8::new(EAL_NEVER);

/// The initialised EAL. Create it once; call `cleanup` after every port and pool is gone.
pub struct Eal {
    cleaned: bool,
    capture: bool,
    /// Why secondary processes (`dpdk-dumpcap`) cannot share this process's mempools, if
    /// they cannot (see `align_mempool_ops`).
    secondaries: Result<(), String>,
}

impl Eal {
    /// Initialises EAL with `args` (args[0] is the program name).
    pub fn init(args: &[String]) -> Result<Eal, DpdkError> {
        if EAL_STATE
            .compare_exchange(EAL_NEVER, EAL_RUNNING, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(DpdkError::AlreadyInitialized);
        }
        let cargs: Vec<CString> = args
            .iter()
            .map(|a| {
                CString::new(a.as_str())
                    .map_err(|_| DpdkError::Invalid(format!("EAL argument {a:?} contains a NUL byte")))
            })
            .collect::<Result<_, _>>()?;
        let secondaries = if !sys::LINKED_STATIC {
            Ok(())
        } else if OPS_PROBE_READY.load(Ordering::Relaxed) {
            align_mempool_ops()
        } else {
            Err("this program does not ask a shared DPDK for its mempool handlers".into())
        };
        // EAL may permute argv; give it its own array of pointers (the strings outlive the call).
        let mut argv: Vec<*mut std::ffi::c_char> = cargs.iter().map(|c| c.as_ptr() as *mut _).collect();
        // SAFETY: argv holds argc valid NUL-terminated strings that live until the call returns;
        // EAL keeps no pointer to them beyond what it copies.
        let ret = unsafe { sys::rte_eal_init(argv.len() as i32, argv.as_mut_ptr()) };
        if ret < 0 {
            // EAL cannot be initialised again after a failure either.
            return Err(errno_error("rte_eal_init".into()));
        }
        Ok(Eal {
            cleaned: false,
            capture: false,
            secondaries,
        })
    }

    /// TSC ticks per second.
    pub fn tsc_hz(&self) -> u64 {
        // SAFETY: plain query after EAL init.
        unsafe { sys::rte_get_tsc_hz() }
    }

    /// The DPDK version string, e.g. "DPDK 22.11.11".
    pub fn version() -> String {
        // SAFETY: rte_version returns a static string.
        unsafe { CStr::from_ptr(sys::rte_version()) }
            .to_string_lossy()
            .into_owned()
    }

    /// Starts `f` on worker lcore `lcore`; `wait` returns what it returned.
    pub fn launch<F>(&self, lcore: u32, f: F) -> Result<(), DpdkError>
    where
        F: FnOnce() -> i32 + Send + 'static,
    {
        extern "C" fn trampoline(arg: *mut c_void) -> i32 {
            // SAFETY: arg is the Box leaked below, handed to exactly one lcore.
            let f: Box<Box<dyn FnOnce() -> i32 + Send>> = unsafe { Box::from_raw(arg as *mut _) };
            f()
        }
        let boxed: Box<Box<dyn FnOnce() -> i32 + Send>> = Box::new(Box::new(f));
        let arg = Box::into_raw(boxed) as *mut c_void;
        // SAFETY: trampoline has the signature EAL expects; arg is a valid leaked box.
        let ret = unsafe { sys::rte_eal_remote_launch(Some(trampoline), arg, lcore) };
        if ret < 0 {
            // SAFETY: the launch failed, so the lcore never took ownership of arg.
            drop(unsafe { Box::from_raw(arg as *mut Box<dyn FnOnce() -> i32 + Send>) });
            return check(|| format!("starting a worker on lcore {lcore}"), ret).map(|_| ());
        }
        Ok(())
    }

    /// Waits for the function launched on `lcore` and returns its result.
    pub fn wait(&self, lcore: u32) -> i32 {
        // SAFETY: waits on an lcore id; EAL checks it.
        unsafe { sys::rte_eal_wait_lcore(lcore) }
    }

    /// Finds a probed port by device name (`net_pcap0`, `0000:03:00.0`).
    pub fn port_by_name(&self, name: &str) -> Result<Port, DpdkError> {
        let c =
            CString::new(name).map_err(|_| DpdkError::Invalid(format!("device name {name:?} contains a NUL byte")))?;
        let mut id: u16 = 0;
        // SAFETY: c is a valid string; id is a valid out pointer.
        let ret = unsafe { sys::rte_eth_dev_get_port_by_name(c.as_ptr(), &mut id) };
        check(|| format!("finding port for device {name}"), ret)?;
        Ok(Port { id })
    }

    /// Lets `dpdk-dumpcap` (and `dpdk-pdump`), run as secondary processes with this
    /// process's file prefix, capture its ports (DPDK's packet-capture framework; costs
    /// nothing per packet until a capture is running). Needs hugepages: a `--no-huge`
    /// process cannot share memory with a secondary.
    pub fn enable_capture(&mut self) -> Result<(), DpdkError> {
        if let Err(why) = &self.secondaries {
            return Err(DpdkError::Invalid(format!(
                "DPDK is linked statically and {why}, so a dpdk-dumpcap attaching would corrupt \
                 this process's packet buffers"
            )));
        }
        // SAFETY: EAL is initialised (this value exists); called from the main lcore.
        check(|| "rte_pdump_init".into(), unsafe { sys::rte_pdump_init() })?;
        self.capture = true;
        Ok(())
    }

    /// Releases EAL's resources. Ports and pools must be closed and freed first.
    pub fn cleanup(mut self) -> Result<(), DpdkError> {
        self.cleaned = true;
        if self.capture {
            // SAFETY: rte_pdump_init succeeded in this process; called once.
            unsafe { sys::rte_pdump_uninit() };
        }
        EAL_STATE.store(EAL_DONE, Ordering::Release);
        // SAFETY: called once, from the main lcore, after all DPDK objects are released.
        check(|| "rte_eal_cleanup".into(), unsafe { sys::rte_eal_cleanup() }).map(|_| ())
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        if !self.cleaned {
            EAL_STATE.store(EAL_DONE, Ordering::Release);
            // SAFETY: as in cleanup; reached only when the owner did not call it.
            unsafe { sys::rte_eal_cleanup() };
        }
    }
}

/// The calling thread's lcore id.
#[inline]
pub fn lcore_id() -> u32 {
    // SAFETY: reads a thread-local.
    unsafe { sys::sluice_lcore_id() }
}

/// Starts loading the cache line holding `r` (flow-table buckets and entries).
#[inline(always)]
pub fn prefetch_ref<T>(r: &T) {
    prefetch(r as *const T as *const u8);
}

/// Starts loading every cache line `r` spans (a flow entry straddles two).
#[inline(always)]
pub fn prefetch_all_lines<T>(r: &T) {
    let start = r as *const T as usize;
    let end = start + std::mem::size_of::<T>() - 1;
    prefetch(start as *const u8);
    if end >> 6 != start >> 6 {
        prefetch(end as *const u8);
    }
}

/// Asks the kernel to back a vector's whole capacity with transparent huge pages: tables
/// indexed at random (flow tables) then cost far fewer TLB misses. Advice only: where THP
/// is off it changes nothing. Call before the memory is first touched.
pub fn advise_huge_pages<T>(v: &mut Vec<T>) {
    const HUGE: usize = 2 << 20;
    let ptr = v.as_mut_ptr() as usize;
    let len = v.capacity() * std::mem::size_of::<T>();
    let start = (ptr + HUGE - 1) & !(HUGE - 1);
    let end = (ptr + len) & !(HUGE - 1);
    if end > start {
        // SAFETY: MADV_HUGEPAGE only changes how the kernel backs pages of this mapping,
        // which the vector owns; contents and validity are unchanged.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
    }
}

/// The time-stamp counter: DPDK's time base for meters, flow ages and stage cycles.
#[inline(always)]
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no memory effects; every x86-64 CPU has it.
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[inline(always)]
fn prefetch(p: *const u8) {
    // SAFETY: a prefetch never faults, whatever the address.
    unsafe { core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p as *const i8) }
}

// ---- Secondary processes of a statically linked DPDK -----------------------------------
//
// A secondary process (dpdk-dumpcap, dpdk-proc-info) shares the primary's mempools, which
// name their handler by its index in each process's own table of handlers. Each handler
// library adds its handlers to that table as it is loaded. A shared-linked DPDK loads them
// from its plugin directory, in the order the directory lists them. A static link has them
// in link order. So a statically linked primary reorders its table, before any pool
// exists, to the order a shared process on this machine gets. It learns that order from a
// copy of itself that loads the plugins as EAL would (`mempool_ops_probe_hook`).

/// Set in the environment of the copy that reports the handler order.
const OPS_PROBE_ENV: &str = "SLUICE_MEMPOOL_OPS_PROBE";
/// The program called `mempool_ops_probe_hook` (its copies can answer).
static OPS_PROBE_READY: AtomicBool = AtomicBool::new(false);
/// How long the copy may take (it loads a few hundred libraries: about 0.1 s here).
const OPS_PROBE_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// To be called first in `main` of a program that starts EAL as a primary process, before
/// it reads its arguments. With DPDK linked statically, a copy of the program started by
/// `Eal::init` (with `OPS_PROBE_ENV` set) prints here the names of the mempool handlers a
/// shared-linked DPDK process registers, in their order, and exits. Otherwise it returns
/// at once.
pub fn mempool_ops_probe_hook() {
    if !sys::LINKED_STATIC {
        return;
    }
    if std::env::var_os(OPS_PROBE_ENV).is_none() {
        OPS_PROBE_READY.store(true, Ordering::Relaxed);
        return;
    }
    let code = match shared_mempool_ops() {
        Ok(names) => {
            println!("{}", names.join("\n"));
            0
        }
        Err(e) => {
            eprintln!("{e}");
            1
        }
    };
    std::process::exit(code);
}

/// The mempool handlers a shared-linked DPDK process has once EAL loaded its plugins:
/// every file of the plugin directory named `*.so` or `*.so.ABI` that is a regular file
/// (symbolic links followed), in directory order, opened with `RTLD_NOW`, as
/// `eal_plugindir_init` and `eal_dlopen` do.
fn shared_mempool_ops() -> Result<Vec<String>, String> {
    let dir = CStr::from_bytes_with_nul(sys::RTE_EAL_PMD_PATH)
        .map_err(|e| e.to_string())?
        .to_string_lossy()
        .into_owned();
    // ".../pmds-23.0": the ABI version the plugins' names end in.
    let abi = dir
        .rsplit_once("pmds-")
        .map(|(_, v)| v.to_string())
        .ok_or("no ABI version")?;
    let major = abi.split('.').next().unwrap_or_default();
    let open = |path: &str| -> Option<NonNull<c_void>> {
        let c = CString::new(path).ok()?;
        // SAFETY: c is a valid string. This copy of the program runs nothing else: the
        // libraries' constructors only register their drivers in the shared DPDK's own
        // tables (this executable exports none of DPDK's symbols).
        NonNull::new(unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW) })
    };
    let mempool = open(&format!("librte_mempool.so.{major}"))
        .ok_or_else(|| format!("the shared librte_mempool.so.{major} cannot be loaded"))?;
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("{dir}: {e}"))?;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !(name.ends_with(".so") || name.ends_with(&format!(".so.{abi}"))) {
            continue;
        }
        let path = e.path();
        if !std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            continue;
        }
        // A plugin that cannot be loaded stops a shared process's EAL: what follows would
        // not matter. Here it is passed over.
        if let Ok(real) = std::fs::canonicalize(&path) {
            open(&real.to_string_lossy());
        }
    }
    // SAFETY: mempool is a live handle; the name is a valid string.
    let table = unsafe { libc::dlsym(mempool.as_ptr(), c"rte_mempool_ops_table".as_ptr()) };
    if table.is_null() {
        return Err("librte_mempool has no rte_mempool_ops_table".into());
    }
    // SAFETY: the symbol is librte_mempool's table, of the layout these bindings were
    // generated for (the same DPDK); nothing else runs in this process to change it.
    let table = unsafe { &*(table as *const sys::rte_mempool_ops_table) };
    Ok(ops_names(table))
}

/// The names of a handler table's handlers, in order.
fn ops_names(table: &sys::rte_mempool_ops_table) -> Vec<String> {
    let n = (table.num_ops as usize).min(table.ops.len());
    table.ops[..n]
        .iter()
        .map(|o| {
            let bytes: Vec<u8> = o.name.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
            String::from_utf8_lossy(&bytes).into_owned()
        })
        .collect()
}

/// Reorders this process's mempool handlers to the order a shared-linked DPDK process on
/// this machine has them in (see the note above). Called before EAL starts, while no pool
/// exists and no other thread uses DPDK.
fn align_mempool_ops() -> Result<(), String> {
    let mut child = std::process::Command::new("/proc/self/exe")
        .env(OPS_PROBE_ENV, "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("the mempool handler probe could not start ({e})"))?;
    let deadline = std::time::Instant::now() + OPS_PROBE_LIMIT;
    while child.try_wait().map_err(|e| e.to_string())?.is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err("the mempool handler probe did not finish".into());
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "a shared DPDK's mempool handlers are unknown ({})",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let theirs: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    // SAFETY: before rte_eal_init nothing else reads or writes the table (no pool, no other
    // DPDK thread); the reference does not outlive this function.
    let table = unsafe { &mut *std::ptr::addr_of_mut!(sys::rte_mempool_ops_table) };
    let ours = ops_names(table);
    let order = handler_order(&ours, &theirs)?;
    let old = table.ops;
    for (slot, &from) in table.ops.iter_mut().zip(&order) {
        *slot = old[from];
    }
    Ok(())
}

/// For each slot of our handler table, the index of the handler to put there: `theirs`
/// first, in their order, then the rest of `ours` in its order. Every one of theirs must
/// be ours.
fn handler_order(ours: &[String], theirs: &[String]) -> Result<Vec<usize>, String> {
    let mut order = Vec::with_capacity(ours.len());
    for name in theirs {
        let i = ours
            .iter()
            .position(|o| o == name)
            .ok_or_else(|| format!("the shared DPDK's mempool handler {name} is not linked in"))?;
        order.push(i);
    }
    let rest: Vec<usize> = (0..ours.len()).filter(|i| !order.contains(i)).collect();
    order.extend(rest);
    Ok(order)
}

// ---- Driver teardown under running pollers ---------------------------------------------

/// `munmap` for the whole process. The executable's definition comes before libc's for
/// every library, the drivers EAL loads among them, so this is what DPDK's memif driver
/// calls when its peer leaves. On EAL's interrupt thread, while threads that poll ports
/// are registered, it first waits for them to leave the driver (`crate::quiesce`); every
/// other call goes straight to the system call, as libc's does.
///
/// # Safety
/// As for libc's `munmap`: the caller must not use the range afterwards.
#[no_mangle]
pub unsafe extern "C" fn munmap(addr: *mut c_void, len: usize) -> libc::c_int {
    if crate::quiesce::armed() && on_interrupt_thread() {
        crate::quiesce::grace(crate::quiesce::GRACE_LIMIT);
    }
    // SAFETY: the caller's request, passed on unchanged; the call sets errno on failure as
    // libc's wrapper does.
    unsafe { libc::syscall(libc::SYS_munmap, addr, len) as libc::c_int }
}

/// Whether the calling thread is EAL's interrupt thread (where drivers handle their
/// control channels).
fn on_interrupt_thread() -> bool {
    // SAFETY: compares the calling thread with EAL's interrupt thread; reads no other state.
    unsafe { sys::rte_thread_is_intr() == 1 }
}

// ---- Mempool ---------------------------------------------------------------------------

/// A pool of packet buffers on one NUMA socket.
pub struct Mempool {
    ptr: NonNull<sys::rte_mempool>,
    name: String,
}

// SAFETY: DPDK mempools are safe for concurrent get/put from any lcore.
unsafe impl Send for Mempool {}
// SAFETY: as above; every method takes &self and DPDK synchronises internally.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// Creates a pool of `n` mbufs with a per-lcore cache of `cache` on `socket` (-1: any).
    pub fn create(name: &str, n: u32, cache: u32, socket: i32) -> Result<Mempool, DpdkError> {
        let c =
            CString::new(name).map_err(|_| DpdkError::Invalid(format!("pool name {name:?} contains a NUL byte")))?;
        // SAFETY: valid name; sizes checked by DPDK.
        let p = unsafe { sys::rte_pktmbuf_pool_create(c.as_ptr(), n, cache, 0, MBUF_DATA_ROOM, socket) };
        match NonNull::new(p) {
            Some(ptr) => Ok(Mempool {
                ptr,
                name: name.to_string(),
            }),
            None => Err(errno_error(format!(
                "creating mbuf pool {name} ({n} mbufs of {MBUF_DATA_ROOM} bytes on socket {socket}); \
                 give EAL more memory (eal.memory_mb) or reserve more hugepages"
            ))),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Mbufs currently taken from the pool (including those in per-lcore caches' complement).
    pub fn in_use(&self) -> u32 {
        // SAFETY: valid pool pointer.
        unsafe { sys::rte_mempool_in_use_count(self.ptr.as_ptr()) }
    }

    pub fn available(&self) -> u32 {
        // SAFETY: valid pool pointer.
        unsafe { sys::rte_mempool_avail_count(self.ptr.as_ptr()) }
    }

    pub fn capacity(&self) -> u32 {
        // SAFETY: valid pool pointer; `size` is set at creation and never changes.
        unsafe { (*self.ptr.as_ptr()).size }
    }

    /// Takes one empty mbuf.
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: valid pool pointer.
        NonNull::new(unsafe { sys::sluice_pktmbuf_alloc(self.ptr.as_ptr()) }).map(Mbuf)
    }

    /// Fills the free space of `burst` with up to `n` empty mbufs (headroom reset, lengths
    /// zero, no offload flags, one segment), all or none; returns whether it did (the pool
    /// may be short). Cheaper than `rte_pktmbuf_alloc_bulk`: it leaves the mbufs' second
    /// cache line alone (the generator's TX rate went up 1.5 to 3.7 %).
    #[inline(always)]
    pub fn alloc_bulk<const N: usize>(&self, burst: &mut Burst<N>, n: usize) -> bool {
        let n = n.min(N - burst.len);
        if n == 0 {
            return true;
        }
        // SAFETY: valid pool; the array has n free slots after len; on failure nothing is
        // written (the shim's bulk get is all-or-nothing).
        let ret = unsafe {
            sys::sluice_pktmbuf_alloc_bulk_lean(self.ptr.as_ptr(), burst.pkts.as_mut_ptr().add(burst.len), n as u32)
        };
        if ret == 0 {
            burst.len += n;
        }
        ret == 0
    }
}

impl Drop for Mempool {
    fn drop(&mut self) {
        // SAFETY: the pool is no longer used by any port (they are closed first).
        unsafe { sys::rte_mempool_free(self.ptr.as_ptr()) }
    }
}

// ---- Mbuf and Burst --------------------------------------------------------------------

/// One packet: an owned mbuf chain. Headers are read from the first segment.
#[repr(transparent)]
pub struct Mbuf(NonNull<sys::rte_mbuf>);

// SAFETY: an Mbuf is uniquely owned; moving it between threads moves the ownership.
unsafe impl Send for Mbuf {}

impl Mbuf {
    #[inline(always)]
    fn raw(&self) -> &sys::rte_mbuf {
        // SAFETY: the pointer is valid for as long as we own the mbuf.
        unsafe { self.0.as_ref() }
    }

    /// The first segment's bytes.
    #[inline(always)]
    pub fn data(&self) -> &[u8] {
        let m = self.raw();
        // SAFETY: buf_addr + data_off .. + data_len lies inside the mbuf's buffer.
        unsafe { std::slice::from_raw_parts((m.buf_addr as *const u8).add(m.data_off as usize), m.data_len as usize) }
    }

    /// The first segment's bytes, writable. We own the mbuf, so no one else sees them.
    #[inline(always)]
    pub fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in data(); &mut self guarantees exclusive access. (Mbufs with refcnt > 1,
        // e.g. clones for capture, are not created by Sluice's forwarding path.)
        unsafe {
            let m = self.0.as_mut();
            std::slice::from_raw_parts_mut((m.buf_addr as *mut u8).add(m.data_off as usize), m.data_len as usize)
        }
    }

    /// Length of the whole packet across all segments.
    #[inline(always)]
    pub fn pkt_len(&self) -> u32 {
        self.raw().pkt_len
    }

    #[inline(always)]
    pub fn nb_segs(&self) -> u16 {
        self.raw().nb_segs
    }

    #[inline(always)]
    pub fn ol_flags(&self) -> u64 {
        self.raw().ol_flags
    }

    /// The port the packet arrived on.
    pub fn port(&self) -> u16 {
        self.raw().port
    }

    /// Makes a single-segment mbuf exactly `len` bytes long and returns its data, or None
    /// when the buffer is too small or the mbuf is chained. The generator's per-packet
    /// form of `append` (no call into C).
    #[inline(always)]
    pub fn set_len(&mut self, len: u16) -> Option<&mut [u8]> {
        // SAFETY: we own the mbuf exclusively (&mut self); the bounds are checked against
        // the buffer's own length before the lengths are written.
        unsafe {
            let m = self.0.as_mut();
            if m.nb_segs != 1 || m.data_off as u32 + len as u32 > m.buf_len as u32 {
                return None;
            }
            m.data_len = len;
            m.pkt_len = len as u32;
            Some(std::slice::from_raw_parts_mut(
                (m.buf_addr as *mut u8).add(m.data_off as usize),
                len as usize,
            ))
        }
    }

    /// Appends `len` bytes to the last segment and returns them.
    pub fn append(&mut self, len: u16) -> Option<&mut [u8]> {
        // SAFETY: rte_pktmbuf_append returns NULL or a pointer to len writable bytes.
        let p = unsafe { sys::sluice_pktmbuf_append(self.0.as_ptr(), len) };
        // SAFETY: see above.
        (!p.is_null()).then(|| unsafe { std::slice::from_raw_parts_mut(p as *mut u8, len as usize) })
    }

    /// Copies the whole packet (all segments) out; for the slow path and tests.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.pkt_len() as usize);
        let mut seg = self.0.as_ptr();
        while !seg.is_null() {
            // SAFETY: seg walks the chain we own; each segment's data lies inside its buffer.
            unsafe {
                let m = &*seg;
                out.extend_from_slice(std::slice::from_raw_parts(
                    (m.buf_addr as *const u8).add(m.data_off as usize),
                    m.data_len as usize,
                ));
                seg = m.next;
            }
        }
        out
    }

    fn into_raw(self) -> *mut sys::rte_mbuf {
        let p = self.0.as_ptr();
        std::mem::forget(self);
        p
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we own the chain; it is freed exactly once.
        unsafe { sys::sluice_pktmbuf_free(self.0.as_ptr()) }
    }
}

/// Up to N packets, owned. What is left in it when dropped is freed.
pub struct Burst<const N: usize> {
    pkts: [*mut sys::rte_mbuf; N],
    len: usize,
}

// SAFETY: a Burst uniquely owns the mbufs it holds.
unsafe impl<const N: usize> Send for Burst<N> {}

impl<const N: usize> Default for Burst<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Burst<N> {
    pub const fn new() -> Self {
        Burst {
            pkts: [std::ptr::null_mut(); N],
            len: 0,
        }
    }

    #[inline(always)]
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline(always)]
    pub fn is_full(&self) -> bool {
        self.len == N
    }

    /// Adds a packet, or gives it back when full.
    #[inline(always)]
    pub fn push(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        if self.len == N {
            return Err(m);
        }
        self.pkts[self.len] = m.into_raw();
        self.len += 1;
        Ok(())
    }

    /// The packets, in place. (Swapping one with another `Mbuf` keeps ownership intact.)
    #[inline(always)]
    pub fn as_mut_slice(&mut self) -> &mut [Mbuf] {
        // SAFETY: pkts[..len] are non-null mbufs this burst owns, and Mbuf is a transparent
        // NonNull<rte_mbuf>, laid out like the *mut rte_mbuf it is read from.
        unsafe { std::slice::from_raw_parts_mut(self.pkts.as_mut_ptr() as *mut Mbuf, self.len) }
    }

    /// Starts loading every packet's first bytes into cache.
    #[inline(always)]
    pub fn prefetch_all(&self) {
        for &m in &self.pkts[..self.len] {
            prefetch_data(m);
        }
    }

    /// Moves every packet out, in order.
    #[inline(always)]
    pub fn drain(&mut self) -> Drain<'_, N> {
        let end = self.len;
        // The burst forgets its packets now, as Vec::drain does: if the Drain were leaked,
        // packets not yet yielded would leak too, but none could be freed twice.
        self.len = 0;
        Drain {
            burst: self,
            next: 0,
            end,
        }
    }

    /// Frees every packet held.
    pub fn free_all(&mut self) {
        if self.len > 0 {
            // SAFETY: pkts[..len] are mbufs we own; they are freed once and forgotten.
            unsafe { sys::rte_pktmbuf_free_bulk(self.pkts.as_mut_ptr(), self.len as u32) };
            self.len = 0;
        }
    }
}

#[inline(always)]
fn prefetch_data(m: *mut sys::rte_mbuf) {
    // SAFETY: m is an mbuf we own; its header was just written by the driver.
    let p = unsafe { ((*m).buf_addr as *const u8).add((*m).data_off as usize) };
    prefetch(p);
}

impl<const N: usize> Drop for Burst<N> {
    fn drop(&mut self) {
        self.free_all();
    }
}

/// Iterator moving packets out of a burst; packets it did not yield are freed on drop.
pub struct Drain<'a, const N: usize> {
    burst: &'a mut Burst<N>,
    next: usize,
    end: usize,
}

impl<const N: usize> Iterator for Drain<'_, N> {
    type Item = Mbuf;

    #[inline(always)]
    fn next(&mut self) -> Option<Mbuf> {
        let i = self.next;
        if i >= self.end {
            return None;
        }
        self.next = i + 1;
        // SAFETY: pkts[i] is a valid owned mbuf not yet yielded; ownership moves to the caller.
        Some(Mbuf(unsafe { NonNull::new_unchecked(self.burst.pkts[i]) }))
    }
}

impl<const N: usize> Drop for Drain<'_, N> {
    fn drop(&mut self) {
        let rest = self.end - self.next;
        if rest > 0 {
            // SAFETY: pkts[next..end] were not yielded; this Drain owns them and frees them once.
            unsafe { sys::rte_pktmbuf_free_bulk(self.burst.pkts.as_mut_ptr().add(self.next), rest as u32) };
        }
    }
}

// ---- Ports -----------------------------------------------------------------------------

/// What a device offers.
#[derive(Debug, Clone)]
pub struct DevInfo {
    pub driver: String,
    pub max_rx_queues: u16,
    pub max_tx_queues: u16,
    pub rx_offload_capa: u64,
    pub tx_offload_capa: u64,
    pub rss_offloads: u64,
    pub max_rx_pktlen: u32,
    pub min_mtu: u16,
    pub max_mtu: u16,
    pub hash_key_size: u8,
}

/// How to set a port up.
#[derive(Debug, Clone)]
pub struct PortSetup {
    pub rx_queues: u16,
    pub tx_queues: u16,
    pub rx_descriptors: u16,
    pub tx_descriptors: u16,
    pub mtu: u16,
    pub rx_offloads: u64,
    pub tx_offloads: u64,
    /// RSS hash functions; 0 disables RSS.
    pub rss_hf: u64,
    /// RSS key (symmetric keys make both directions of a flow land on one queue).
    pub rss_key: Vec<u8>,
    pub promiscuous: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Link {
    pub up: bool,
    pub speed_mbps: u32,
    pub full_duplex: bool,
}

/// Basic port statistics as the driver counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    pub ipackets: u64,
    pub opackets: u64,
    pub ibytes: u64,
    pub obytes: u64,
    pub imissed: u64,
    pub ierrors: u64,
    pub oerrors: u64,
    pub rx_nombuf: u64,
}

/// A DPDK port (a handle; queues are separate tokens).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Port {
    id: u16,
}

/// What a transmit did: packets the driver took, and those it refused (already freed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxResult {
    pub sent: usize,
    pub dropped: usize,
    pub dropped_bytes: u64,
}

/// The right to poll one RX queue. One exists per queue.
pub struct RxQueue {
    port: u16,
    queue: u16,
}

/// The right to transmit on one TX queue. One exists per queue.
pub struct TxQueue {
    port: u16,
    queue: u16,
}

impl Port {
    pub fn id(&self) -> u16 {
        self.id
    }

    pub fn info(&self) -> Result<DevInfo, DpdkError> {
        let mut di = sys::rte_eth_dev_info::default();
        // SAFETY: valid port id (from port_by_name) and out pointer.
        check(|| format!("reading device info of port {}", self.id), unsafe {
            sys::rte_eth_dev_info_get(self.id, &mut di)
        })?;
        let driver = if di.driver_name.is_null() {
            String::from("?")
        } else {
            // SAFETY: driver_name is a static string owned by the driver.
            unsafe { CStr::from_ptr(di.driver_name) }.to_string_lossy().into_owned()
        };
        Ok(DevInfo {
            driver,
            max_rx_queues: di.max_rx_queues,
            max_tx_queues: di.max_tx_queues,
            rx_offload_capa: di.rx_offload_capa,
            tx_offload_capa: di.tx_offload_capa,
            rss_offloads: di.flow_type_rss_offloads,
            max_rx_pktlen: di.max_rx_pktlen,
            min_mtu: di.min_mtu,
            max_mtu: di.max_mtu,
            hash_key_size: di.hash_key_size,
        })
    }

    /// NUMA socket of the device (-1 when unknown, as for virtual devices).
    pub fn socket(&self) -> i32 {
        // SAFETY: plain query.
        unsafe { sys::rte_eth_dev_socket_id(self.id) }
    }

    /// Configures the port and its queues (RX queues draw from `pool`), and returns one
    /// token per queue. The port is not started.
    pub fn setup(&self, s: &PortSetup, pool: &Mempool) -> Result<(Vec<RxQueue>, Vec<TxQueue>), DpdkError> {
        let id = self.id;
        let mut conf = sys::rte_eth_conf::default();
        conf.rxmode.mtu = s.mtu as u32;
        conf.rxmode.offloads = s.rx_offloads;
        conf.txmode.offloads = s.tx_offloads;
        let mut key = s.rss_key.clone();
        if s.rss_hf != 0 {
            conf.rxmode.mq_mode = sys::RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_hf = s.rss_hf;
            if !key.is_empty() {
                conf.rx_adv_conf.rss_conf.rss_key = key.as_mut_ptr();
                conf.rx_adv_conf.rss_conf.rss_key_len = key.len() as u8;
            }
        }
        // SAFETY: conf (and the key it points to) live across the call; ethdev copies them.
        check(|| format!("configuring port {id}"), unsafe {
            sys::rte_eth_dev_configure(id, s.rx_queues, s.tx_queues, &conf)
        })?;
        let (mut nrx, mut ntx) = (s.rx_descriptors, s.tx_descriptors);
        // SAFETY: valid port and out pointers.
        check(|| format!("adjusting descriptor counts of port {id}"), unsafe {
            sys::rte_eth_dev_adjust_nb_rx_tx_desc(id, &mut nrx, &mut ntx)
        })?;
        let socket = match self.socket() {
            s if s < 0 => 0,
            s => s as u32,
        };
        let mut di = sys::rte_eth_dev_info::default();
        // SAFETY: valid port and out pointer.
        check(|| format!("reading device info of port {id}"), unsafe {
            sys::rte_eth_dev_info_get(id, &mut di)
        })?;
        let mut rx = Vec::new();
        for q in 0..s.rx_queues {
            let mut rxconf = di.default_rxconf;
            rxconf.offloads = s.rx_offloads;
            // SAFETY: valid port/queue; rxconf copied; pool outlives the port (closed first).
            check(|| format!("setting up RX queue {q} of port {id}"), unsafe {
                sys::rte_eth_rx_queue_setup(id, q, nrx, socket, &rxconf, pool.ptr.as_ptr())
            })?;
            rx.push(RxQueue { port: id, queue: q });
        }
        let mut tx = Vec::new();
        for q in 0..s.tx_queues {
            let mut txconf = di.default_txconf;
            txconf.offloads = s.tx_offloads;
            // SAFETY: valid port/queue; txconf copied.
            check(|| format!("setting up TX queue {q} of port {id}"), unsafe {
                sys::rte_eth_tx_queue_setup(id, q, ntx, socket, &txconf)
            })?;
            tx.push(TxQueue { port: id, queue: q });
        }
        if s.promiscuous {
            // SAFETY: valid port. Some virtual devices do not support it; that is not fatal.
            let ret = unsafe { sys::rte_eth_promiscuous_enable(id) };
            if ret < 0 && ret != -(libc::ENOTSUP) {
                check(|| format!("enabling promiscuous mode on port {id}"), ret)?;
            }
        }
        Ok((rx, tx))
    }

    pub fn start(&self) -> Result<(), DpdkError> {
        // SAFETY: valid, configured port.
        check(|| format!("starting port {}", self.id), unsafe {
            sys::rte_eth_dev_start(self.id)
        })
        .map(|_| ())
    }

    pub fn stop(&self) -> Result<(), DpdkError> {
        // SAFETY: valid port. No thread polls its queues now: at shutdown the workers have
        // returned, and a memif client the control loop restarts is paused first and its
        // pollers waited for (`crate::quiesce::grace`).
        check(|| format!("stopping port {}", self.id), unsafe {
            sys::rte_eth_dev_stop(self.id)
        })
        .map(|_| ())
    }

    /// Closes the port, releasing its queues and every mbuf the driver held.
    pub fn close(self) -> Result<(), DpdkError> {
        // SAFETY: valid, stopped port; its queue tokens are no longer used.
        check(|| format!("closing port {}", self.id), unsafe {
            sys::rte_eth_dev_close(self.id)
        })
        .map(|_| ())
    }

    /// Sets the port's MAC address. Drivers that cannot (net_pcap) return an error.
    pub fn set_mac(&self, mac: [u8; 6]) -> Result<(), DpdkError> {
        let mut a = sys::rte_ether_addr { addr_bytes: mac };
        // SAFETY: valid port and address.
        check(|| format!("setting the MAC address of port {}", self.id), unsafe {
            sys::rte_eth_dev_default_mac_addr_set(self.id, &mut a)
        })
        .map(|_| ())
    }

    pub fn mac(&self) -> Result<[u8; 6], DpdkError> {
        let mut a = sys::rte_ether_addr::default();
        // SAFETY: valid port and out pointer.
        check(|| format!("reading the MAC address of port {}", self.id), unsafe {
            sys::rte_eth_macaddr_get(self.id, &mut a)
        })?;
        Ok(a.addr_bytes)
    }

    pub fn link(&self) -> Link {
        let mut l = sys::rte_eth_link::default();
        // SAFETY: valid port and out pointer; the nowait variant never blocks.
        if unsafe { sys::rte_eth_link_get_nowait(self.id, &mut l) } < 0 {
            return Link::default();
        }
        Link {
            up: l.link_status() == 1,
            speed_mbps: l.link_speed,
            full_duplex: l.link_duplex() == 1,
        }
    }

    pub fn stats(&self) -> PortStats {
        let mut s = sys::rte_eth_stats::default();
        // SAFETY: valid port and out pointer.
        if unsafe { sys::rte_eth_stats_get(self.id, &mut s) } < 0 {
            return PortStats::default();
        }
        PortStats {
            ipackets: s.ipackets,
            opackets: s.opackets,
            ibytes: s.ibytes,
            obytes: s.obytes,
            imissed: s.imissed,
            ierrors: s.ierrors,
            oerrors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        }
    }

    /// Extended statistics, by name.
    pub fn xstats(&self) -> Vec<(String, u64)> {
        // SAFETY: a NULL array asks for the count.
        let n = unsafe { sys::rte_eth_xstats_get_names(self.id, std::ptr::null_mut(), 0) };
        if n <= 0 {
            return Vec::new();
        }
        let mut names = vec![sys::rte_eth_xstat_name::default(); n as usize];
        let mut vals = vec![sys::rte_eth_xstat::default(); n as usize];
        // SAFETY: both arrays have n entries.
        let (a, b) = unsafe {
            (
                sys::rte_eth_xstats_get_names(self.id, names.as_mut_ptr(), n as u32),
                sys::rte_eth_xstats_get(self.id, vals.as_mut_ptr(), n as u32),
            )
        };
        if a != n || b != n {
            return Vec::new();
        }
        vals.iter()
            .filter_map(|v| {
                let nm = names.get(v.id as usize)?;
                // SAFETY: names are NUL-terminated within their fixed-size array.
                let s = unsafe { CStr::from_ptr(nm.name.as_ptr()) }
                    .to_string_lossy()
                    .into_owned();
                Some((s, v.value))
            })
            .collect()
    }
}

impl TxQueue {
    /// Transmits what the driver takes now and keeps the rest, in order, at the front of
    /// the burst for the next call (a generator retries instead of dropping). Returns how
    /// many were sent.
    #[inline(always)]
    pub fn tx_keep<const N: usize>(&mut self, burst: &mut Burst<N>) -> usize {
        let len = burst.len;
        if len == 0 {
            return 0;
        }
        // SAFETY: as in tx(); the driver owns the first `sent`, we keep pkts[sent..len].
        let sent = unsafe { sys::sluice_tx_burst(self.port, self.queue, burst.pkts.as_mut_ptr(), len as u16) } as usize;
        burst.pkts.copy_within(sent..len, 0);
        burst.len = len - sent;
        sent
    }
}

impl RxQueue {
    pub fn port(&self) -> u16 {
        self.port
    }
    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// Receives into the free space of `burst`; returns how many arrived.
    #[inline(always)]
    pub fn rx<const N: usize>(&mut self, burst: &mut Burst<N>) -> usize {
        let room = N - burst.len;
        // SAFETY: the token gives this thread the queue; the array has `room` free slots.
        let n = unsafe {
            sys::sluice_rx_burst(
                self.port,
                self.queue,
                burst.pkts.as_mut_ptr().add(burst.len),
                room as u16,
            )
        };
        burst.len += n as usize;
        n as usize
    }
}

impl TxQueue {
    pub fn port(&self) -> u16 {
        self.port
    }
    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// Transmits the burst; what the driver did not take is freed and reported. The burst is
    /// empty afterwards.
    #[inline(always)]
    pub fn tx<const N: usize>(&mut self, burst: &mut Burst<N>) -> TxResult {
        let len = burst.len;
        if len == 0 {
            return TxResult::default();
        }
        // SAFETY: the token gives this thread the queue; pkts[..len] are owned mbufs, and the
        // driver takes ownership of the first `sent`.
        let sent = unsafe { sys::sluice_tx_burst(self.port, self.queue, burst.pkts.as_mut_ptr(), len as u16) } as usize;
        let dropped = len - sent;
        let mut dropped_bytes = 0u64;
        if dropped > 0 {
            for &m in &burst.pkts[sent..len] {
                // SAFETY: pkts[sent..len] are mbufs we still own.
                dropped_bytes += unsafe { (*m).pkt_len } as u64;
            }
            // SAFETY: pkts[sent..len] are still ours; free them once.
            unsafe { sys::rte_pktmbuf_free_bulk(burst.pkts.as_mut_ptr().add(sent), dropped as u32) };
        }
        burst.len = 0;
        TxResult {
            sent,
            dropped,
            dropped_bytes,
        }
    }
}

// ---- rte_lpm (benchmark peer of routing's own LPM) ----------------------------------

/// DPDK's IPv4 longest-prefix-match table, created in EAL memory. Sluice forwards with
/// `routing::Lpm4`; this wrapper exists to measure the two side by side.
pub struct RteLpm {
    lpm: NonNull<sys::rte_lpm>,
}

// SAFETY: the table is plain memory; lookups only read it, and `add` takes `&mut self`.
unsafe impl Send for RteLpm {}
// SAFETY: shared references only read the table.
unsafe impl Sync for RteLpm {}

impl RteLpm {
    /// A table for `max_rules` routes with `tbl8s` second-level groups. Needs EAL.
    pub fn create(name: &str, max_rules: u32, tbl8s: u32) -> Result<RteLpm, DpdkError> {
        let cname =
            CString::new(name).map_err(|_| DpdkError::Invalid(format!("table name {name:?} contains a NUL byte")))?;
        let cfg = sys::rte_lpm_config {
            max_rules,
            number_tbl8s: tbl8s,
            flags: 0,
        };
        // SAFETY: cname and cfg are valid for the call; DPDK copies what it keeps.
        let p = unsafe {
            sys::rte_lpm_create(cname.as_ptr(), -1 /* SOCKET_ID_ANY */, &cfg)
        };
        NonNull::new(p)
            .map(|lpm| RteLpm { lpm })
            .ok_or_else(|| errno_error(format!("rte_lpm_create({name})")))
    }

    /// Adds `addr/depth` with value `next_hop` (below 2^24).
    pub fn add(&mut self, addr: u32, depth: u8, next_hop: u32) -> Result<(), DpdkError> {
        // SAFETY: the table is valid and exclusively borrowed.
        let r = unsafe { sys::rte_lpm_add(self.lpm.as_ptr(), addr, depth, next_hop) };
        check(|| format!("rte_lpm_add({addr:#x}/{depth})"), r).map(|_| ())
    }

    #[inline(always)]
    pub fn lookup(&self, addr: u32) -> Option<u32> {
        let mut nh = 0u32;
        // SAFETY: the table is valid; nh is a valid out-pointer.
        let r = unsafe { sys::sluice_lpm_lookup(self.lpm.as_ptr(), addr, &mut nh) };
        (r == 0).then_some(nh)
    }

    /// Looks up `addrs` into `out` (same length): DPDK's raw results, where bit 31
    /// (`RTE_LPM_LOOKUP_SUCCESS`) says a route was found.
    #[inline(always)]
    pub fn lookup_bulk(&self, addrs: &[u32], out: &mut [u32]) {
        let n = addrs.len().min(out.len());
        // SAFETY: both slices hold at least n elements; the table is valid.
        unsafe { sys::sluice_lpm_lookup_bulk(self.lpm.as_ptr(), addrs.as_ptr(), out.as_mut_ptr(), n as u32) };
    }
}

impl Drop for RteLpm {
    fn drop(&mut self) {
        // SAFETY: created by rte_lpm_create and freed once.
        unsafe { sys::rte_lpm_free(self.lpm.as_ptr()) }
    }
}

// ---- rte_acl (benchmark peer of qos's classifier) ------------------------------------

/// An IPv4 5-tuple rule for DPDK's ACL library. `None` / zero-length / full ranges match
/// anything. Of several matching rules, the highest `priority` wins.
#[derive(Debug, Clone, Copy)]
pub struct AclV4Rule {
    pub proto: Option<u8>,
    /// (address, prefix length)
    pub src: (u32, u8),
    pub dst: (u32, u8),
    pub src_ports: (u16, u16),
    pub dst_ports: (u16, u16),
    pub priority: i32,
    /// What a match returns (not 0, which means no match).
    pub userdata: u32,
}

/// The bytes an ACL lookup reads, in network byte order, as its field definitions say.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C)]
pub struct AclV4Key {
    proto: u8,
    _pad: [u8; 3],
    src: u32,
    dst: u32,
    src_port: u16,
    dst_port: u16,
}

impl AclV4Key {
    pub fn new(proto: u8, src: u32, dst: u32, src_port: u16, dst_port: u16) -> AclV4Key {
        AclV4Key {
            proto,
            _pad: [0; 3],
            src: src.to_be(),
            dst: dst.to_be(),
            src_port: src_port.to_be(),
            dst_port: dst_port.to_be(),
        }
    }
}

/// The C layout of a five-field ACL rule (DPDK's `RTE_ACL_RULE_DEF(name, 5)`).
#[repr(C)]
struct AclRule5 {
    data: sys::rte_acl_rule_data,
    field: [sys::rte_acl_field; 5],
}

/// A built DPDK ACL context for IPv4 5-tuples. Needs EAL.
pub struct AclV4 {
    ctx: NonNull<sys::rte_acl_ctx>,
}

// SAFETY: a built context is read-only during classification.
unsafe impl Send for AclV4 {}
// SAFETY: as above.
unsafe impl Sync for AclV4 {}

impl AclV4 {
    pub fn build(name: &str, rules: &[AclV4Rule]) -> Result<AclV4, DpdkError> {
        let cname =
            CString::new(name).map_err(|_| DpdkError::Invalid(format!("ACL name {name:?} contains a NUL byte")))?;
        let param = sys::rte_acl_param {
            name: cname.as_ptr(),
            socket_id: -1,
            rule_size: std::mem::size_of::<AclRule5>() as u32,
            max_rule_num: rules.len().max(1) as u32,
        };
        // SAFETY: param and the name it points to are valid for the call.
        let ctx = unsafe { sys::rte_acl_create(&param) };
        let ctx = NonNull::new(ctx).ok_or_else(|| errno_error(format!("rte_acl_create({name})")))?;
        let acl = AclV4 { ctx };
        let f = |v: u64, m: u64| sys::rte_acl_field {
            value: sys::rte_acl_field_types { u64_: v },
            mask_range: sys::rte_acl_field_types { u64_: m },
        };
        let compiled: Vec<AclRule5> = rules
            .iter()
            .map(|r| AclRule5 {
                data: sys::rte_acl_rule_data {
                    category_mask: 1,
                    priority: r.priority,
                    userdata: r.userdata,
                },
                field: [
                    match r.proto {
                        Some(p) => f(p as u64, 0xff),
                        None => f(0, 0),
                    },
                    f(r.src.0 as u64, r.src.1 as u64),
                    f(r.dst.0 as u64, r.dst.1 as u64),
                    f(r.src_ports.0 as u64, r.src_ports.1 as u64),
                    f(r.dst_ports.0 as u64, r.dst_ports.1 as u64),
                ],
            })
            .collect();
        // SAFETY: `compiled` holds rules.len() rules of the size given at creation.
        let ret = unsafe {
            sys::rte_acl_add_rules(
                acl.ctx.as_ptr(),
                compiled.as_ptr() as *const sys::rte_acl_rule,
                compiled.len() as u32,
            )
        };
        check(|| "rte_acl_add_rules".into(), ret)?;
        let def = |t: u32, size: u8, idx: u8, input: u8, offset: u32| sys::rte_acl_field_def {
            type_: t as u8,
            size,
            field_index: idx,
            input_index: input,
            offset,
        };
        let mut cfg = sys::rte_acl_config {
            num_categories: 1,
            num_fields: 5,
            defs: [sys::rte_acl_field_def::default(); 64],
            max_size: 0,
        };
        cfg.defs[0] = def(sys::RTE_ACL_FIELD_TYPE_BITMASK, 1, 0, 0, 0);
        cfg.defs[1] = def(sys::RTE_ACL_FIELD_TYPE_MASK, 4, 1, 1, 4);
        cfg.defs[2] = def(sys::RTE_ACL_FIELD_TYPE_MASK, 4, 2, 2, 8);
        cfg.defs[3] = def(sys::RTE_ACL_FIELD_TYPE_RANGE, 2, 3, 3, 12);
        cfg.defs[4] = def(sys::RTE_ACL_FIELD_TYPE_RANGE, 2, 4, 3, 14);
        // SAFETY: the context is valid and cfg is fully initialised.
        let ret = unsafe { sys::rte_acl_build(acl.ctx.as_ptr(), &cfg) };
        check(|| "rte_acl_build".into(), ret)?;
        Ok(acl)
    }

    /// Classifies up to 64 keys at a time into `out` (the winning rule's userdata, 0 for
    /// none).
    pub fn classify(&self, keys: &[AclV4Key], out: &mut [u32]) {
        for (k, o) in keys.chunks(64).zip(out.chunks_mut(64)) {
            let n = k.len().min(o.len());
            let mut ptrs = [std::ptr::null::<u8>(); 64];
            for (p, key) in ptrs.iter_mut().zip(k) {
                *p = key as *const AclV4Key as *const u8;
            }
            // SAFETY: n pointers to live keys of the layout the context was built for, and
            // n result slots (one category).
            unsafe { sys::rte_acl_classify(self.ctx.as_ptr(), ptrs.as_mut_ptr(), o.as_mut_ptr(), n as u32, 1) };
        }
    }
}

impl Drop for AclV4 {
    fn drop(&mut self) {
        // SAFETY: created by rte_acl_create and freed once.
        unsafe { sys::rte_acl_free(self.ctx.as_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use super::handler_order;

    fn names(s: &[&str]) -> Vec<String> {
        s.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn handlers_take_the_shared_order_and_the_rest_follow() {
        let ours = names(&["bucket", "dpaa", "ring_mp_mc", "ring_sp_sc", "stack"]);
        let theirs = names(&["dpaa", "ring_mp_mc", "ring_sp_sc", "bucket"]);
        assert_eq!(handler_order(&ours, &theirs).unwrap(), vec![1, 2, 3, 0, 4]);
        assert_eq!(handler_order(&ours, &[]).unwrap(), vec![0, 1, 2, 3, 4]);
        let err = handler_order(&ours, &names(&["octeontx_fpavf"])).unwrap_err();
        assert!(err.contains("octeontx_fpavf"), "{err}");
    }
}
