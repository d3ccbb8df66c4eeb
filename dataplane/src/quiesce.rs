//! Grace periods for drivers that take shared memory away under running pollers.
//!
//! DPDK 22.11's memif driver ends a connection from EAL's interrupt thread when the peer
//! leaves: it clears the port's "connected" flag and unmaps the peer's shared regions
//! right after. A thread that read the flag just before is still inside `rx_burst` or
//! `tx_burst`, reading the rings and buffers being unmapped, and the process dies of a
//! segmentation fault (seen about once in 25 disconnects of a peer sending at full rate).
//! The driver has no hook to wait on, so Sluice waits in `munmap` itself
//! (`dpdk::munmap`): on the interrupt thread, before anything is unmapped, `grace` waits
//! until every thread registered here has been seen outside port I/O, or has gone twice
//! round its loop since. A thread that calls the driver after that sees the flag cleared
//! and does not touch the regions.
//!
//! A registered thread reports its `Progress`. A worker, which polls without pause, counts
//! its loop's turns and never says it is outside I/O: no extra store on the fast path. The
//! control thread, which sends now and then and may spend a while on other work, brackets
//! each send with `IoSeq::enter`.
//!
//! The control thread runs `grace` too, after pausing a memif client port and before
//! stopping it to connect again (`app::Reconnect`).
//!
//! The wait is bounded (`GRACE_LIMIT`); what it did is counted (`stats`).

use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long `grace` waits at most. A worker goes round its loop in microseconds and the
/// control thread sends within a millisecond, so this is reached only by a thread that
/// is stuck, which no wait would help.
pub const GRACE_LIMIT: Duration = Duration::from_millis(500);

/// Where a registered thread is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Grows as the thread goes on: a worker's loop turns, the control thread's sends.
    pub passes: u64,
    /// The thread may be inside a driver's rx or tx burst.
    pub inside: bool,
}

type Reader = Box<dyn Fn() -> Progress + Send + Sync>;

struct Poller {
    read: Reader,
    /// Cleared when the registration is dropped: the thread no longer calls drivers.
    live: AtomicBool,
}

static POLLERS: Mutex<Vec<Arc<Poller>>> = Mutex::new(Vec::new());
static REGISTERED: AtomicUsize = AtomicUsize::new(0);
static GRACES: AtomicU64 = AtomicU64::new(0);
static TIMED_OUT: AtomicU64 = AtomicU64::new(0);
static LONGEST_NS: AtomicU64 = AtomicU64::new(0);

fn pollers() -> MutexGuard<'static, Vec<Arc<Poller>>> {
    // Nothing panics while holding the lock; a poisoned list is still a valid list.
    POLLERS.lock().unwrap_or_else(|e| e.into_inner())
}

/// A thread's place in the list of pollers; dropping it takes the thread out.
#[must_use = "the thread is waited for only while this is kept"]
pub struct Registration(Arc<Poller>);

impl Drop for Registration {
    fn drop(&mut self) {
        self.0.live.store(false, Ordering::Release);
        let mut list = pollers();
        list.retain(|p| !Arc::ptr_eq(p, &self.0));
        REGISTERED.store(list.len(), Ordering::Release);
    }
}

/// Registers a thread that calls drivers' rx or tx bursts; `read` tells where it is, from
/// any thread.
pub fn register(read: impl Fn() -> Progress + Send + Sync + 'static) -> Registration {
    let p = Arc::new(Poller {
        read: Box::new(read),
        live: AtomicBool::new(true),
    });
    let mut list = pollers();
    list.push(p.clone());
    REGISTERED.store(list.len(), Ordering::Release);
    Registration(p)
}

/// Whether any thread is registered (`munmap` looks no further when none is).
#[inline]
pub fn armed() -> bool {
    REGISTERED.load(Ordering::Acquire) > 0
}

/// A count that is odd while its thread is inside a driver's burst: `enter` before the
/// call, and the scope it returns ends it.
#[derive(Debug, Default)]
pub struct IoSeq(AtomicU64);

impl IoSeq {
    pub fn enter(&self) -> IoScope<'_> {
        // A full barrier (a locked add on x86): the driver's flag is read after the count
        // is seen to be odd, so a `grace` that saw it even cannot meet this call's reads.
        self.0.fetch_add(1, Ordering::SeqCst);
        IoScope(self)
    }

    /// Where the thread is, for `register`.
    pub fn progress(&self) -> Progress {
        let s = self.0.load(Ordering::SeqCst);
        Progress {
            passes: s / 2,
            inside: s % 2 == 1,
        }
    }
}

/// The time inside a driver's burst (see `IoSeq::enter`).
pub struct IoScope<'a>(&'a IoSeq);

impl Drop for IoScope<'_> {
    fn drop(&mut self) {
        self.0 .0.fetch_add(1, Ordering::SeqCst);
    }
}

/// What `grace` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grace {
    /// Every registered thread was seen outside port I/O, or twice round its loop.
    Clear,
    /// `limit` passed first; these many threads were still not seen so.
    TimedOut(usize),
}

/// Waits until every registered thread has been seen outside port I/O, or to have made two
/// passes, since the call; at most `limit`. Counted in `stats`.
pub fn grace(limit: Duration) -> Grace {
    let start = Instant::now();
    // What the caller did before (a driver clearing its flag) is seen by every other
    // thread before the first look at them.
    fence(Ordering::SeqCst);
    let mut waiting: Vec<(Arc<Poller>, u64)> = pollers()
        .iter()
        .filter_map(|p| {
            let now = (p.read)();
            now.inside.then(|| (p.clone(), now.passes))
        })
        .collect();
    let mut outcome = Grace::Clear;
    while !waiting.is_empty() {
        waiting.retain(|(p, from)| {
            let now = (p.read)();
            p.live.load(Ordering::Acquire) && now.inside && now.passes < from.saturating_add(2)
        });
        if waiting.is_empty() {
            break;
        }
        if start.elapsed() >= limit {
            outcome = Grace::TimedOut(waiting.len());
            TIMED_OUT.fetch_add(1, Ordering::Relaxed);
            break;
        }
        std::thread::sleep(Duration::from_micros(20));
    }
    GRACES.fetch_add(1, Ordering::Relaxed);
    LONGEST_NS.fetch_max(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
    outcome
}

/// What the grace periods have done since the process started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Unmaps by EAL's interrupt thread that waited for the pollers first.
    pub graces: u64,
    /// Of those, the waits that reached their limit.
    pub timed_out: u64,
    /// The longest wait, in nanoseconds.
    pub longest_ns: u64,
}

pub fn stats() -> Stats {
    Stats {
        graces: GRACES.load(Ordering::Relaxed),
        timed_out: TIMED_OUT.load(Ordering::Relaxed),
        longest_ns: LONGEST_NS.load(Ordering::Relaxed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    // The list is the process's: tests that register run one at a time.
    static SERIAL: Mutex<()> = Mutex::new(());

    fn counter_poller(c: &Arc<AtomicU64>) -> Registration {
        let c = c.clone();
        register(move || Progress {
            passes: c.load(Ordering::SeqCst),
            inside: true,
        })
    }

    #[test]
    fn nothing_registered_is_clear_at_once() {
        let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        assert!(!armed());
        assert_eq!(grace(Duration::from_secs(5)), Grace::Clear);
    }

    #[test]
    fn a_polling_thread_is_waited_for_until_it_has_gone_round_twice() {
        let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let turns = Arc::new(AtomicU64::new(7));
        let reg = counter_poller(&turns);
        assert!(armed());
        // A thread that does not move holds the grace period to its limit.
        let t = Instant::now();
        assert_eq!(grace(Duration::from_millis(50)), Grace::TimedOut(1));
        assert!(t.elapsed() >= Duration::from_millis(50));
        // One turn is not enough: the turn under way when the grace began may have read
        // the driver's flag before it was cleared.
        turns.store(8, Ordering::SeqCst);
        assert_eq!(grace(Duration::from_millis(30)), Grace::TimedOut(1));
        // Two turns after the start are.
        let (t2, stop) = (turns.clone(), Arc::new(AtomicBool::new(false)));
        let s2 = stop.clone();
        let spinner = std::thread::spawn(move || {
            while !s2.load(Ordering::SeqCst) {
                t2.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_micros(100));
            }
        });
        assert_eq!(grace(Duration::from_secs(5)), Grace::Clear);
        stop.store(true, Ordering::SeqCst);
        spinner.join().unwrap();
        drop(reg);
        assert!(!armed());
        let s = stats();
        assert!(s.graces >= 3 && s.timed_out >= 2, "{s:?}");
        assert!(s.longest_ns >= 50_000_000, "{s:?}");
    }

    #[test]
    fn a_thread_outside_io_is_clear_and_one_inside_is_waited_for_until_it_leaves() {
        let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let io = Arc::new(IoSeq::default());
        let r = io.clone();
        let reg = register(move || r.progress());
        assert_eq!(grace(Duration::from_secs(5)), Grace::Clear);
        let inside = io.enter();
        assert!(io.progress().inside);
        assert_eq!(grace(Duration::from_millis(20)), Grace::TimedOut(1));
        let io2 = io.clone();
        let leaving = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            // The scope ends on this thread's behalf: the count is what is shared.
            io2.0.fetch_add(1, Ordering::SeqCst);
        });
        let t = Instant::now();
        assert_eq!(grace(Duration::from_secs(5)), Grace::Clear);
        assert!(t.elapsed() >= Duration::from_millis(20));
        leaving.join().unwrap();
        std::mem::forget(inside);
        assert!(!io.progress().inside);
        drop(reg);
    }

    #[test]
    fn a_thread_that_leaves_the_list_is_not_waited_for() {
        let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let turns = Arc::new(AtomicU64::new(0));
        let reg = counter_poller(&turns);
        let dropper = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            drop(reg);
        });
        let t = Instant::now();
        assert_eq!(grace(Duration::from_secs(5)), Grace::Clear);
        assert!(t.elapsed() < Duration::from_secs(4));
        dropper.join().unwrap();
        assert!(!armed());
    }
}
