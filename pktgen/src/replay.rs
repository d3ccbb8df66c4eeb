//! pcap replay: a file's frames sent in order, at a given rate or at the file's own
//! timing, any number of times, from one lcore.

use crate::pace::Pacer;
use crate::ports::Setup;
use dataplane::dpdk::{rdtsc, Burst, Mempool, TxQueue};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

const BURST: usize = 32;
/// Largest frame replayed (without FCS): one mbuf holds it.
pub const MAX_FRAME: usize = 1514;

#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct ReplayReport {
    pub tool: &'static str,
    pub mode: &'static str,
    pub file_frames: usize,
    /// Frames of the file left out: longer than 1514 bytes or shorter than 14.
    pub skipped_frames: usize,
    pub loops: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub duration_s: f64,
    pub tx_pps: f64,
    pub tx_gbps: f64,
}

/// When each frame is due, in ns from the start of its loop; the file's timing with the
/// mean gap after the last frame, so loops follow each other at the same pace.
pub fn file_schedule(ts_ns: &[u64]) -> (Vec<u64>, u64) {
    if ts_ns.is_empty() {
        return (Vec::new(), 0);
    }
    let t0 = ts_ns[0];
    // Timestamps that go backwards are held at the latest seen.
    let mut last = t0;
    let at: Vec<u64> = ts_ns
        .iter()
        .map(|&t| {
            last = last.max(t);
            last - t0
        })
        .collect();
    let span = *at.last().expect("non-empty");
    let gap = if at.len() > 1 {
        span / (at.len() as u64 - 1)
    } else {
        1_000
    };
    (at, span + gap.max(1))
}

pub enum Pace {
    Rate(f64),
    FileTiming,
}

#[allow(clippy::too_many_arguments)]
pub fn run(
    setup: &mut Setup,
    frames: Vec<Vec<u8>>,
    ts_ns: Vec<u64>,
    skipped: usize,
    pace: Pace,
    loops: u64,
    lcore: u32,
    interrupt: &AtomicBool,
) -> Result<ReplayReport, String> {
    if frames.is_empty() {
        return Err("the pcap file has no frames that can be sent".into());
    }
    let hz = setup.eal.tsc_hz();
    let mut txq = setup.ports[0].tx[0].take().ok_or("TX queue 0 is in use")?;
    let pool = setup.pool.clone();
    // The lcore hands back the queue, packets, bytes, and its start and end TSC.
    type Done = (TxQueue, u64, u64, u64, u64);
    let out: Arc<Mutex<Option<Done>>> = Arc::new(Mutex::new(None));
    let stop = Arc::new(AtomicBool::new(false));
    let (o2, s2) = (out.clone(), stop.clone());
    let (sched, period) = file_schedule(&ts_ns);
    let nframes = frames.len();
    setup
        .eal
        .launch(lcore, move || {
            let start = rdtsc() + hz / 100;
            let (packets, bytes, end) = send_all(&mut txq, &pool, &frames, &sched, period, pace, loops, start, hz, &s2);
            *o2.lock().unwrap_or_else(|e| e.into_inner()) = Some((txq, packets, bytes, start, end));
            0
        })
        .map_err(|e| format!("starting lcore {lcore}: {e}"))?;
    while out.lock().unwrap_or_else(|e| e.into_inner()).is_none() {
        std::thread::sleep(std::time::Duration::from_millis(10));
        if interrupt.load(Ordering::Relaxed) {
            stop.store(true, Ordering::Relaxed);
        }
    }
    setup.eal.wait(lcore);
    let (q, packets, bytes, start, end) = out
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .expect("checked above");
    setup.ports[0].tx[0] = Some(q);
    let secs = end.saturating_sub(start) as f64 / hz as f64;
    Ok(ReplayReport {
        tool: "sluice-pktgen",
        mode: "replay",
        file_frames: nframes + skipped,
        skipped_frames: skipped,
        loops,
        tx_packets: packets,
        tx_bytes: bytes,
        duration_s: secs,
        tx_pps: if secs > 0.0 { packets as f64 / secs } else { 0.0 },
        tx_gbps: if secs > 0.0 {
            bytes as f64 * 8.0 / secs / 1e9
        } else {
            0.0
        },
    })
}

/// Sends every frame `loops` times; returns packets, bytes (with FCS) and the end TSC.
#[allow(clippy::too_many_arguments)]
fn send_all(
    q: &mut TxQueue,
    pool: &Mempool,
    frames: &[Vec<u8>],
    sched: &[u64],
    period_ns: u64,
    pace: Pace,
    loops: u64,
    start: u64,
    hz: u64,
    stop: &AtomicBool,
) -> (u64, u64, u64) {
    let total = frames.len() as u64 * loops;
    let mut pacer = match pace {
        Pace::Rate(pps) => Some(Pacer::new(start, pps, hz)),
        Pace::FileTiming => None,
    };
    let ticks = |ns: u64| (ns as u128 * hz as u128 / 1_000_000_000) as u64;
    let mut next: u64 = 0; // index over frames x loops
    let (mut packets, mut bytes) = (0u64, 0u64);
    let mut burst = Burst::<BURST>::new();
    let mut lens: [u64; BURST] = [0; BURST];
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let now = rdtsc();
        if burst.is_empty() {
            if next == total {
                break;
            }
            let mut n = match &pacer {
                Some(p) => p.due(now, BURST),
                None => {
                    // Frames whose time has come.
                    let mut n = 0;
                    while n < BURST && next + (n as u64) < total {
                        let i = next + n as u64;
                        let due = start
                            + ticks((i / frames.len() as u64) * period_ns + sched[(i % frames.len() as u64) as usize]);
                        if due > now {
                            break;
                        }
                        n += 1;
                    }
                    n
                }
            };
            n = n.min((total - next) as usize);
            if n == 0 {
                continue;
            }
            if !pool.alloc_bulk(&mut burst, n) {
                continue;
            }
            for (k, m) in burst.as_mut_slice().iter_mut().enumerate() {
                let f = &frames[((next + k as u64) % frames.len() as u64) as usize];
                if let Some(d) = m.append(f.len() as u16) {
                    d.copy_from_slice(f);
                }
                lens[k] = f.len() as u64 + 4;
            }
            if let Some(p) = &mut pacer {
                p.sent(n);
            }
            next += n as u64;
        }
        let before = burst.len();
        let sent = q.tx_keep(&mut burst);
        // The driver takes a prefix; shift the lengths along with the packets.
        bytes += lens[..sent].iter().sum::<u64>();
        lens.copy_within(sent..before, 0);
        packets += sent as u64;
    }
    burst.free_all();
    (packets, bytes, rdtsc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_keeps_the_file_timing() {
        let (at, period) = file_schedule(&[1_000, 3_000, 2_000, 7_000]);
        assert_eq!(at, vec![0, 2_000, 2_000, 6_000]);
        assert_eq!(period, 8_000);
        let (at, period) = file_schedule(&[5]);
        assert_eq!((at, period), (vec![0], 1_000));
        assert_eq!(file_schedule(&[]).0.len(), 0);
    }
}
