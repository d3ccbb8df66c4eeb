//! The generator and analyser: TX lanes build and pace each stream's frames, RX lcores
//! check signatures (loss, reorder, duplicates) and record latency; the main lcore prints
//! a live line per second and assembles the report.

use crate::frame::{FlowCursor, FrameBuilder};
use crate::pace::Pacer;
use crate::ports::Setup;
use crate::report::{new_histogram, size_bucket, Latency, RunReport, StreamReport, SIZE_BUCKETS};
use crate::sig::{self, SeqTracker};
use crate::spec::{StreamSpec, L1_OVERHEAD};
use dataplane::dpdk::{rdtsc, Burst, Mempool, RxQueue, TxQueue};
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const BURST: usize = 64;

/// How a run goes.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub tx_lcores: Vec<u32>,
    pub rx_lcores: Vec<u32>,
    /// TX stops after this long (None: when every stream's count is sent).
    pub duration_ns: Option<u64>,
    /// How long RX keeps listening after TX ends.
    pub drain_ns: u64,
    /// Every stream's asked rate is multiplied by this (the RFC 2544 search's knob).
    pub rate_scale: f64,
    /// Print a line per second to stderr.
    pub live: bool,
}

/// Counters a worker publishes while it runs, for the live line; a cache line each, so
/// that one worker's stores do not invalidate another's.
#[derive(Default)]
#[repr(align(64))]
struct Live {
    tx_packets: AtomicU64,
    tx_bytes: AtomicU64,
    rx_packets: AtomicU64,
    rx_bytes: AtomicU64,
    /// p99 latency of the last second, in ns.
    p99_ns: AtomicU64,
    /// The lcore's loop turns: a driver tearing a port's shared memory down waits for
    /// two (`dataplane::quiesce`).
    turns: AtomicU64,
}

struct Shared {
    stop_tx: AtomicBool,
    stop_rx: AtomicBool,
    tx_lanes_done: AtomicUsize,
    live: Vec<Live>,
}

struct TxStream {
    index: usize,
    builder: FrameBuilder,
    port: usize,
    sizes: Vec<u16>,
    /// The one size of a fixed-size stream (decided at start-up, not per packet).
    fixed: Option<u16>,
    size_at: usize,
    cursor: FlowCursor,
    seq: u32,
    pacer: Option<Pacer>,
    remaining: u64,
    pending: Burst<BURST>,
    packets: u64,
    bytes: u64,
}

struct TxTask {
    lane: u8,
    queues: Vec<TxQueue>,
    streams: Vec<TxStream>,
    nombuf: u64,
}

struct RxTask {
    queues: Vec<RxQueue>,
    lanes: usize,
    trackers: Vec<SeqTracker>,
    hists: Vec<Histogram<u64>>,
    interval: Histogram<u64>,
    packets: Vec<u64>,
    bytes: Vec<u64>,
    sizes: [u64; SIZE_BUCKETS.len()],
    foreign: u64,
}

/// What a worker hands back: its counters, and the queues it borrowed.
#[derive(Default)]
struct WorkerResult {
    tx: Option<TxTask>,
    rx: Option<RxTask>,
    tx_end_tsc: u64,
}

fn publish_tx(live: &Live, t: &TxTask) {
    let (p, b) = t.streams.iter().fold((0, 0), |(p, b), s| (p + s.packets, b + s.bytes));
    live.tx_packets.store(p, Ordering::Relaxed);
    live.tx_bytes.store(b, Ordering::Relaxed);
}

fn publish_rx(live: &Live, r: &RxTask) {
    live.rx_packets.store(r.packets.iter().sum(), Ordering::Relaxed);
    live.rx_bytes.store(r.bytes.iter().sum(), Ordering::Relaxed);
}

/// Transmits what the stream has pending and counts what went.
#[inline(always)]
fn send(q: &mut TxQueue, s: &mut TxStream) {
    let before = match s.fixed {
        Some(_) => 0,
        None => pending_bytes(&mut s.pending),
    };
    let sent = q.tx_keep(&mut s.pending);
    s.packets += sent as u64;
    s.bytes += match s.fixed {
        Some(size) => sent as u64 * size as u64,
        None => before - pending_bytes(&mut s.pending),
    };
}

fn pending_bytes(b: &mut Burst<BURST>) -> u64 {
    b.as_mut_slice().iter().map(|m| m.pkt_len() as u64 + 4).sum()
}

/// One TX step: every stream sends what its pacer allows. Returns false once every
/// stream is finished.
#[inline(always)]
fn tx_step(t: &mut TxTask, pool: &Mempool, now: u64) -> bool {
    let mut active = false;
    for s in t.streams.iter_mut() {
        let q = &mut t.queues[s.port];
        if !s.pending.is_empty() {
            send(q, s);
            if !s.pending.is_empty() {
                active = true;
                continue;
            }
        }
        if s.remaining == 0 {
            continue;
        }
        active = true;
        let n = match &s.pacer {
            Some(p) => p.due(now, BURST),
            None => BURST,
        }
        .min(s.remaining.min(BURST as u64) as usize);
        if n == 0 {
            continue;
        }
        if !pool.alloc_bulk(&mut s.pending, n) {
            t.nombuf += 1;
            continue;
        }
        for m in s.pending.as_mut_slice() {
            let size = if let Some(size) = s.fixed {
                size
            } else {
                let v = s.sizes[s.size_at];
                s.size_at += 1;
                if s.size_at == s.sizes.len() {
                    s.size_at = 0;
                }
                v
            };
            if let Some(buf) = m.set_len(FrameBuilder::data_len(size) as u16) {
                s.builder.write(buf, &s.cursor, t.lane, s.seq, now);
            }
            s.seq = s.seq.wrapping_add(1);
            s.builder.advance(&mut s.cursor);
        }
        if let Some(p) = &mut s.pacer {
            p.sent(n);
        }
        s.remaining -= n as u64;
        send(q, s);
    }
    active
}

/// One RX step over every queue this lcore polls.
#[inline(always)]
fn rx_step(r: &mut RxTask, burst: &mut Burst<BURST>, ns_per_tick_q32: u128) -> usize {
    let mut got = 0;
    for q in r.queues.iter_mut() {
        let n = q.rx(burst);
        if n == 0 {
            continue;
        }
        got += n;
        let now = rdtsc();
        for m in burst.drain() {
            let wire = m.pkt_len() + 4;
            r.sizes[size_bucket(wire)] += 1;
            let Some(sg) = sig::find(m.data()) else {
                r.foreign += 1;
                continue;
            };
            let stream = sg.stream as usize;
            if stream >= r.hists.len() || sg.lane as usize >= r.lanes {
                r.foreign += 1;
                continue;
            }
            r.packets[stream] += 1;
            r.bytes[stream] += wire as u64;
            r.trackers[stream * r.lanes + sg.lane as usize].record(sg.seq);
            let ns = ((now.saturating_sub(sg.tsc) as u128 * ns_per_tick_q32) >> 32) as u64;
            r.hists[stream].saturating_record(ns.max(1));
            r.interval.saturating_record(ns.max(1));
        }
    }
    got
}

/// What a worker needs besides its tasks.
struct WorkerCtx {
    pool: Arc<Mempool>,
    shared: Arc<Shared>,
    /// Index of this worker's live block.
    me: usize,
    /// Every lane starts sending at this TSC, together.
    start: u64,
    tx_end: u64,
    tsc_hz: u64,
    out: Arc<Mutex<WorkerResult>>,
}

fn worker(mut tx: Option<TxTask>, mut rx: Option<RxTask>, ctx: WorkerCtx) -> i32 {
    let WorkerCtx {
        pool,
        shared,
        me,
        start,
        tx_end,
        tsc_hz,
        out,
    } = ctx;
    while rdtsc() < start {
        std::hint::spin_loop();
    }
    let live = &shared.live[me];
    let ns_q32 = ((1_000_000_000u128) << 32) / tsc_hz as u128;
    let mut burst = Burst::<BURST>::new();
    let mut tx_end_tsc = 0;
    let mut tx_running = tx.is_some();
    let mut next_second = rdtsc() + tsc_hz;
    let mut iter: u32 = 0;
    let poller = {
        let sh = Arc::clone(&shared);
        dataplane::quiesce::register(move || dataplane::quiesce::Progress {
            passes: sh.live[me].turns.load(Ordering::Relaxed),
            inside: true,
        })
    };
    loop {
        iter = iter.wrapping_add(1);
        live.turns
            .store(live.turns.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        if tx_running {
            let t = tx.as_mut().expect("tx_running implies a TX task");
            let now = rdtsc();
            let stop = now >= tx_end || shared.stop_tx.load(Ordering::Relaxed);
            if stop || !tx_step(t, &pool, now) {
                // Packets built but not taken by the driver were never sent.
                for s in t.streams.iter_mut() {
                    s.pending.free_all();
                }
                tx_running = false;
                tx_end_tsc = now.min(tx_end);
                publish_tx(live, t);
                shared.tx_lanes_done.fetch_add(1, Ordering::AcqRel);
            } else if iter.is_multiple_of(64) {
                publish_tx(live, t);
            }
        }
        if let Some(r) = rx.as_mut() {
            let got = rx_step(r, &mut burst, ns_q32);
            if got > 0 || iter.is_multiple_of(64) {
                publish_rx(live, r);
            }
            if iter.is_multiple_of(1024) {
                let now = rdtsc();
                if now >= next_second {
                    next_second = now + tsc_hz;
                    let p = if r.interval.is_empty() {
                        0
                    } else {
                        r.interval.value_at_quantile(0.99)
                    };
                    live.p99_ns.store(p, Ordering::Relaxed);
                    r.interval.reset();
                }
            }
            if shared.stop_rx.load(Ordering::Relaxed) {
                break;
            }
        } else if !tx_running {
            break;
        }
    }
    drop(poller);
    if let Some(r) = &rx {
        publish_rx(live, r);
    }
    let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
    *o = WorkerResult { tx, rx, tx_end_tsc };
    0
}

/// Runs the streams once and reports. Queues are borrowed from `setup` and returned.
pub fn run(
    setup: &mut Setup,
    streams: &[StreamSpec],
    o: &RunOptions,
    interrupt: &AtomicBool,
) -> Result<RunReport, String> {
    let hz = setup.eal.tsc_hz();
    let lanes = o.tx_lcores.len();
    let mut lcores: Vec<u32> = o.tx_lcores.clone();
    for &c in &o.rx_lcores {
        if !lcores.contains(&c) {
            lcores.push(c);
        }
    }
    let stats_before = setup.port_stats();
    let in_use_before = setup.pool.in_use() as i64;
    let start = rdtsc() + hz / 50;
    let tx_end = o
        .duration_ns
        .map(|d| start + (d as u128 * hz as u128 / 1_000_000_000) as u64)
        .unwrap_or(u64::MAX);
    let asked: Vec<Option<f64>> = streams
        .iter()
        .map(|s| {
            let link = setup.ports[s.port].port.link().speed_mbps;
            s.rate.pps(s.avg_frame(), link).map(|p| p.map(|p| p * o.rate_scale))
        })
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    if o.duration_ns.is_none() && streams.iter().any(|s| s.count.is_none()) {
        return Err("give --duration, or a count for every stream".into());
    }
    let shared = Arc::new(Shared {
        stop_tx: AtomicBool::new(false),
        stop_rx: AtomicBool::new(false),
        tx_lanes_done: AtomicUsize::new(0),
        live: (0..lcores.len()).map(|_| Live::default()).collect(),
    });
    let mut slots = Vec::new();
    for (w, &lcore) in lcores.iter().enumerate() {
        let tx = o.tx_lcores.iter().position(|&c| c == lcore).map(|lane| {
            let queues = setup
                .ports
                .iter_mut()
                .map(|p| p.tx[lane].take().expect("TX queue returned by the previous run"))
                .collect();
            let streams = streams
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let builder = FrameBuilder::new(s, i as u16, setup.ports[s.port].mac);
                    // Lanes split each stream's rate, count and flows evenly.
                    let share = |n: u64| n / lanes as u64 + u64::from((lane as u64) < n % lanes as u64);
                    TxStream {
                        index: i,
                        cursor: builder.cursor_at(s.flows * lane as u64 / lanes as u64),
                        builder,
                        port: s.port,
                        sizes: s.sizes.clone(),
                        fixed: (s.sizes.len() == 1).then(|| s.sizes[0]),
                        size_at: 0,
                        seq: 0,
                        pacer: asked[i].map(|pps| Pacer::new(start, pps / lanes as f64, hz)),
                        remaining: s.count.map(share).unwrap_or(u64::MAX),
                        pending: Burst::new(),
                        packets: 0,
                        bytes: 0,
                    }
                })
                .collect();
            TxTask {
                lane: lane as u8,
                queues,
                streams,
                nombuf: 0,
            }
        });
        let rx = o.rx_lcores.iter().position(|&c| c == lcore).map(|idx| {
            let mut queues = Vec::new();
            for p in setup.ports.iter_mut() {
                let n = p.rx.len();
                for q in (idx..n).step_by(o.rx_lcores.len()) {
                    queues.push(p.rx[q].take().expect("RX queue returned by the previous run"));
                }
            }
            RxTask {
                queues,
                lanes,
                trackers: (0..streams.len() * lanes).map(|_| SeqTracker::default()).collect(),
                hists: streams.iter().map(|_| new_histogram()).collect(),
                interval: new_histogram(),
                packets: vec![0; streams.len()],
                bytes: vec![0; streams.len()],
                sizes: [0; SIZE_BUCKETS.len()],
                foreign: 0,
            }
        });
        let slot = Arc::new(Mutex::new(WorkerResult::default()));
        let ctx = WorkerCtx {
            pool: setup.pool.clone(),
            shared: shared.clone(),
            me: w,
            start,
            tx_end,
            tsc_hz: hz,
            out: slot.clone(),
        };
        if let Err(e) = setup.eal.launch(lcore, move || worker(tx, rx, ctx)) {
            // Stop and reap the lcores already running; their queues are lost to this
            // process, which is about to report the error and exit.
            shared.stop_tx.store(true, Ordering::Relaxed);
            shared.stop_rx.store(true, Ordering::Relaxed);
            for &c in &lcores[..w] {
                setup.eal.wait(c);
            }
            return Err(format!("starting lcore {lcore}: {e}"));
        }
        slots.push(slot);
    }
    // The main lcore watches: live lines, interrupt, the end of TX, then the drain.
    let t0 = std::time::Instant::now();
    let mut tx_done_at: Option<std::time::Instant> = None;
    let mut last = (0u64, 0u64, 0u64, 0u64);
    let mut next_line = Duration::from_secs(1);
    loop {
        std::thread::sleep(Duration::from_millis(5));
        if interrupt.load(Ordering::Relaxed) {
            shared.stop_tx.store(true, Ordering::Relaxed);
        }
        if tx_done_at.is_none() && shared.tx_lanes_done.load(Ordering::Acquire) == lanes {
            tx_done_at = Some(std::time::Instant::now());
        }
        if let Some(t) = tx_done_at {
            if t.elapsed().as_nanos() as u64 >= o.drain_ns {
                shared.stop_rx.store(true, Ordering::Relaxed);
                break;
            }
        }
        if o.live && t0.elapsed() >= next_line {
            next_line += Duration::from_secs(1);
            let sum =
                |f: fn(&Live) -> &AtomicU64| shared.live.iter().map(|l| f(l).load(Ordering::Relaxed)).sum::<u64>();
            let now = (
                sum(|l| &l.tx_packets),
                sum(|l| &l.tx_bytes),
                sum(|l| &l.rx_packets),
                sum(|l| &l.rx_bytes),
            );
            let p99 = shared
                .live
                .iter()
                .map(|l| l.p99_ns.load(Ordering::Relaxed))
                .max()
                .unwrap_or(0);
            let lost = now.0.saturating_sub(now.2);
            eprintln!(
                "[{:>4}s] TX {:>9.4} Mpps {:>7.3} Gbps | RX {:>9.4} Mpps {:>7.3} Gbps | not yet received {} ({:.3}%) | p99 {:.1} us",
                next_line.as_secs() - 1,
                (now.0 - last.0) as f64 / 1e6,
                (now.1 - last.1) as f64 * 8.0 / 1e9,
                (now.2 - last.2) as f64 / 1e6,
                (now.3 - last.3) as f64 * 8.0 / 1e9,
                lost,
                if now.0 > 0 { lost as f64 * 100.0 / now.0 as f64 } else { 0.0 },
                p99 as f64 / 1e3
            );
            last = now;
        }
    }
    for &lcore in &lcores {
        setup.eal.wait(lcore);
    }
    // Collect, and give the queues back.
    let mut tx_packets = vec![0u64; streams.len()];
    let mut tx_bytes = vec![0u64; streams.len()];
    let mut rx_packets = vec![0u64; streams.len()];
    let mut rx_bytes = vec![0u64; streams.len()];
    let mut unique = vec![0u64; streams.len()];
    let mut reordered = vec![0u64; streams.len()];
    let mut dups = vec![0u64; streams.len()];
    let mut late = vec![0u64; streams.len()];
    let mut hists: Vec<Histogram<u64>> = streams.iter().map(|_| new_histogram()).collect();
    let mut sizes = [0u64; SIZE_BUCKETS.len()];
    let mut foreign = 0;
    let mut tx_end_tsc = start;
    let mut nombuf = 0;
    for slot in &slots {
        let r = std::mem::take(&mut *slot.lock().unwrap_or_else(|e| e.into_inner()));
        tx_end_tsc = tx_end_tsc.max(r.tx_end_tsc);
        if let Some(t) = r.tx {
            nombuf += t.nombuf;
            for s in &t.streams {
                tx_packets[s.index] += s.packets;
                tx_bytes[s.index] += s.bytes;
            }
            for q in t.queues {
                setup.give_back_tx(q);
            }
        }
        if let Some(r) = r.rx {
            for i in 0..streams.len() {
                rx_packets[i] += r.packets[i];
                rx_bytes[i] += r.bytes[i];
                for l in 0..lanes {
                    let t = &r.trackers[i * lanes + l];
                    unique[i] += t.unique;
                    reordered[i] += t.reordered;
                    dups[i] += t.duplicates;
                    late[i] += t.too_late;
                }
                let _ = hists[i].add(&r.hists[i]);
            }
            for (a, b) in sizes.iter_mut().zip(r.sizes) {
                *a += b;
            }
            foreign += r.foreign;
            for q in r.queues {
                setup.give_back_rx(q);
            }
        }
    }
    if nombuf > 0 {
        log::warn!("the mbuf pool ran dry {nombuf} times while building bursts");
    }
    let secs = tx_end_tsc.saturating_sub(start) as f64 / hz as f64;
    let per_s = |v: u64| if secs > 0.0 { v as f64 / secs } else { 0.0 };
    let analysed = !o.rx_lcores.is_empty();
    let mut total_hist = new_histogram();
    let mut reports = Vec::new();
    for (i, s) in streams.iter().enumerate() {
        let _ = total_hist.add(&hists[i]);
        // Without RX lcores nothing was received or analysed: no loss is claimed.
        let lost = if analysed {
            tx_packets[i].saturating_sub(unique[i])
        } else {
            0
        };
        reports.push(StreamReport {
            name: s.name.clone(),
            asked_pps: asked[i],
            tx_packets: tx_packets[i],
            tx_bytes: tx_bytes[i],
            tx_pps: per_s(tx_packets[i]),
            tx_gbps: per_s(tx_bytes[i]) * 8.0 / 1e9,
            tx_gbps_l1: per_s(tx_bytes[i] + tx_packets[i] * L1_OVERHEAD) * 8.0 / 1e9,
            rx_packets: rx_packets[i],
            rx_bytes: rx_bytes[i],
            rx_pps: per_s(rx_packets[i]),
            rx_gbps: per_s(rx_bytes[i]) * 8.0 / 1e9,
            lost,
            loss_ratio: if tx_packets[i] > 0 {
                lost as f64 / tx_packets[i] as f64
            } else {
                0.0
            },
            reordered: reordered[i],
            duplicates: dups[i],
            too_late: late[i],
            latency: Latency::of(&hists[i]),
        });
    }
    let sum = |f: fn(&StreamReport) -> u64| reports.iter().map(f).sum::<u64>();
    let (tp, tb, rp, rb, lost) = (
        sum(|s| s.tx_packets),
        sum(|s| s.tx_bytes),
        sum(|s| s.rx_packets),
        sum(|s| s.rx_bytes),
        sum(|s| s.lost),
    );
    let total = StreamReport {
        name: "total".into(),
        asked_pps: asked.iter().copied().sum::<Option<f64>>(),
        tx_packets: tp,
        tx_bytes: tb,
        tx_pps: per_s(tp),
        tx_gbps: per_s(tb) * 8.0 / 1e9,
        tx_gbps_l1: per_s(tb + tp * L1_OVERHEAD) * 8.0 / 1e9,
        rx_packets: rp,
        rx_bytes: rb,
        rx_pps: per_s(rp),
        rx_gbps: per_s(rb) * 8.0 / 1e9,
        lost,
        loss_ratio: if tp > 0 { lost as f64 / tp as f64 } else { 0.0 },
        reordered: sum(|s| s.reordered),
        duplicates: sum(|s| s.duplicates),
        too_late: sum(|s| s.too_late),
        latency: Latency::of(&total_hist),
    };
    let ports = setup.port_reports(&stats_before);
    Ok(RunReport {
        tool: "sluice-pktgen",
        duration_s: secs,
        analysed,
        tx_lcores: o.tx_lcores.clone(),
        rx_lcores: o.rx_lcores.clone(),
        streams: reports,
        total,
        foreign_packets: foreign,
        rx_sizes: SIZE_BUCKETS
            .iter()
            .zip(sizes)
            .map(|((n, _), v)| (n.to_string(), v))
            .collect(),
        ports,
        mbufs_in_use_delta: setup.pool.in_use() as i64 - in_use_before,
    })
}
