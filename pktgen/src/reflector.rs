//! The reflector's DPDK loop: one lcore polls every port, answers what `reflect::handle`
//! rewrites, holds impaired packets in a time-ordered queue until their release, and
//! sends everything back out of the port it came in on.

use crate::ports::Setup;
use crate::reflect::{handle, ntp_from_unix_ns, stamp_finish, GwCounters, Outcome, ReflectConfig, Rng};
use crate::report::PortReport;
use dataplane::dpdk::{rdtsc, Burst, Mbuf, Mempool, RxQueue, TxQueue};
use serde::Serialize;
use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const BURST: usize = 32;
/// A packet held back for reordering goes out unreordered if nothing follows it this soon.
const HOLD_LIMIT_NS: u64 = 50_000_000;

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ReflectReport {
    pub tool: &'static str,
    pub mode: &'static str,
    pub duration_s: f64,
    pub rx_packets: u64,
    pub gateways: Vec<GwCounters>,
    /// Frames for none of the gateways.
    pub ignored: u64,
    pub malformed: u64,
    /// Answers the driver refused to send.
    pub tx_dropped: u64,
    /// Duplicates that could not be made (pool empty).
    pub copy_failures: u64,
    pub ports: Vec<PortReport>,
    /// Mbufs taken during the run and not returned (held packets are freed at the end).
    pub mbufs_in_use_delta: i64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Data,
    Echo,
    Stamp { l3: usize, l4: usize, v6: bool },
}

struct Held {
    release: u64,
    order: u64,
    port: usize,
    gw: usize,
    kind: Kind,
    m: Mbuf,
}

impl PartialEq for Held {
    fn eq(&self, o: &Self) -> bool {
        (self.release, self.order) == (o.release, o.order)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, o: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(o))
    }
}
impl Ord for Held {
    /// Reversed: BinaryHeap is a max-heap and the earliest release must come out first.
    fn cmp(&self, o: &Self) -> CmpOrdering {
        (o.release, o.order).cmp(&(self.release, self.order))
    }
}

struct State {
    cfg: ReflectConfig,
    counters: Vec<GwCounters>,
    rng: Rng,
    heap: BinaryHeap<Held>,
    hold: Vec<Option<Held>>,
    order: u64,
    stamp_seq: Vec<u32>,
    outs: Vec<Burst<BURST>>,
    txq: Vec<TxQueue>,
    rx_packets: u64,
    ignored: u64,
    malformed: u64,
    tx_dropped: u64,
    copy_failures: u64,
    // Clock: TSC ticks, and the Unix time at `start`.
    hz: u64,
    start: u64,
    start_unix_ns: u64,
}

impl State {
    fn ticks(&self, ns: u64) -> u64 {
        (ns as u128 * self.hz as u128 / 1_000_000_000) as u64
    }
    fn ns_since_start(&self, tsc: u64) -> u64 {
        (tsc.saturating_sub(self.start) as u128 * 1_000_000_000 / self.hz as u128) as u64
    }
    fn ntp(&self, tsc: u64) -> u64 {
        ntp_from_unix_ns(self.start_unix_ns + self.ns_since_start(tsc))
    }

    /// Sends the port's burst. A full TX ring (a peer that is not reading, e.g. descheduled
    /// on a shared CPU) is retried for up to `TX_STALL_WAIT` before what is left is
    /// dropped and counted: a path does not lose packets because its far end was slow to
    /// read, and the peer sends nothing meanwhile either.
    fn flush(&mut self, p: usize) {
        if self.outs[p].is_empty() {
            return;
        }
        self.txq[p].tx_keep(&mut self.outs[p]);
        if !self.outs[p].is_empty() {
            let deadline = rdtsc() + self.ticks(TX_STALL_WAIT_NS);
            while !self.outs[p].is_empty() && rdtsc() < deadline {
                std::hint::spin_loop();
                self.txq[p].tx_keep(&mut self.outs[p]);
            }
            let r = self.txq[p].tx(&mut self.outs[p]);
            self.tx_dropped += r.dropped as u64;
        }
    }

    fn push_out(&mut self, p: usize, m: Mbuf) {
        if self.outs[p].is_full() {
            self.flush(p);
        }
        // The burst was just flushed if it was full, so this cannot fail; if it did, the
        // packet would be freed here and counted.
        if self.outs[p].push(m).is_err() {
            self.tx_dropped += 1;
        }
    }

    /// Sends a held packet now: STAMP replies get their timestamps first.
    fn release(&mut self, mut h: Held, now: u64) {
        match h.kind {
            Kind::Stamp { l3, l4, v6 } => {
                let seq = self.stamp_seq[h.gw];
                self.stamp_seq[h.gw] = seq.wrapping_add(1);
                let t = self.ntp(now);
                stamp_finish(h.m.data_mut(), l3, l4, v6, seq, t, t);
            }
            Kind::Data => self.counters[h.gw].data_returned += 1,
            Kind::Echo => {}
        }
        self.push_out(h.port, h.m);
    }

    fn emit(&mut self, h: Held, now: u64) {
        if h.release <= now {
            self.release(h, now);
        } else if self.heap.len() >= self.cfg.queue_limit as usize {
            self.counters[h.gw].queue_overflow += 1;
        } else {
            self.heap.push(h);
        }
    }

    /// An answer or returned packet for gateway `g`, through its impairments.
    fn impair(&mut self, pool: &Mempool, port: usize, g: usize, kind: Kind, m: Mbuf, now: u64) {
        let gw = &self.cfg.gateways[g];
        if self.rng.chance(gw.loss) {
            self.counters[g].lost += 1;
            return;
        }
        let (delay, jitter) = (gw.delay_ns, gw.jitter_ns);
        let (reorder_every, duplicate_every) = (gw.reorder_every, gw.duplicate_every);
        let d = self.rng.delay(delay, jitter);
        let release = now + self.ticks(d);
        self.order += 1;
        let nth = self.counters[g].data_packets;
        let copy = if kind == Kind::Data && duplicate_every > 0 && nth.is_multiple_of(duplicate_every) {
            let c = copy_mbuf(pool, &m);
            if c.is_none() {
                self.copy_failures += 1;
            }
            c
        } else {
            None
        };
        let h = Held {
            release,
            order: self.order,
            port,
            gw: g,
            kind,
            m,
        };
        if kind == Kind::Data && reorder_every > 0 && nth.is_multiple_of(reorder_every) && self.hold[g].is_none() {
            self.hold[g] = Some(h);
        } else {
            self.emit(h, now);
            if kind == Kind::Data {
                if let Some(mut held) = self.hold[g].take() {
                    // It goes right after the packet that overtook it.
                    self.order += 1;
                    held.order = self.order;
                    held.release = held.release.max(release);
                    self.counters[g].reordered += 1;
                    self.emit(held, now);
                }
            }
        }
        if let Some(c) = copy {
            self.order += 1;
            self.counters[g].duplicated += 1;
            let h = Held {
                release,
                order: self.order,
                port,
                gw: g,
                kind: Kind::Data,
                m: c,
            };
            self.emit(h, now);
        }
    }
}

fn copy_mbuf(pool: &Mempool, m: &Mbuf) -> Option<Mbuf> {
    let mut c = pool.alloc()?;
    let src = m.data();
    let dst = c.append(src.len() as u16)?;
    dst.copy_from_slice(src);
    Some(c)
}

struct Shared {
    stop: AtomicBool,
    snapshot: Mutex<ReflectReport>,
    /// The lcore's loop turns: a driver tearing a port's shared memory down waits for
    /// two (`dataplane::quiesce`).
    turns: AtomicU64,
}

fn snapshot(s: &State, now: u64) -> ReflectReport {
    ReflectReport {
        tool: "sluice-pktgen",
        mode: "reflect",
        duration_s: s.ns_since_start(now) as f64 / 1e9,
        rx_packets: s.rx_packets,
        gateways: s.counters.clone(),
        ignored: s.ignored,
        malformed: s.malformed,
        tx_dropped: s.tx_dropped,
        copy_failures: s.copy_failures,
        ports: Vec::new(),
        mbufs_in_use_delta: 0,
    }
}

fn worker(
    mut s: State,
    mut rxq: Vec<(usize, RxQueue)>,
    pool: Arc<Mempool>,
    shared: Arc<Shared>,
) -> (Vec<(usize, RxQueue)>, Vec<TxQueue>) {
    let mut rxb = Burst::<BURST>::new();
    let mut next_snapshot = rdtsc() + s.hz / 10;
    let mut iter: u32 = 0;
    let poller = {
        let sh = Arc::clone(&shared);
        dataplane::quiesce::register(move || dataplane::quiesce::Progress {
            passes: sh.turns.load(Ordering::Relaxed),
            inside: true,
        })
    };
    loop {
        iter = iter.wrapping_add(1);
        shared
            .turns
            .store(shared.turns.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        for (p, q) in rxq.iter_mut() {
            let p = *p;
            if q.rx(&mut rxb) == 0 {
                continue;
            }
            let now = rdtsc();
            let now_ns = s.ns_since_start(now);
            for mut m in rxb.drain() {
                s.rx_packets += 1;
                let o = handle(m.data_mut(), &s.cfg.gateways, now_ns, &mut s.counters);
                match o {
                    Outcome::Arp(_) | Outcome::NeighborAdvert(_) => s.push_out(p, m),
                    Outcome::Echo(g) => s.impair(&pool, p, g, Kind::Echo, m, now),
                    Outcome::Data(g) => s.impair(&pool, p, g, Kind::Data, m, now),
                    Outcome::Stamp { gw, l3, l4, v6 } => s.impair(&pool, p, gw, Kind::Stamp { l3, l4, v6 }, m, now),
                    Outcome::Malformed => s.malformed += 1,
                    Outcome::NotOurs => s.ignored += 1,
                    Outcome::Down(_) | Outcome::Unanswered(_) => {}
                }
            }
        }
        let now = rdtsc();
        while s.heap.peek().is_some_and(|h| h.release <= now) {
            let h = s.heap.pop().expect("peeked");
            s.release(h, now);
        }
        if iter.is_multiple_of(256) {
            let limit = s.ticks(HOLD_LIMIT_NS);
            for g in 0..s.hold.len() {
                if s.hold[g].as_ref().is_some_and(|h| now > h.release + limit) {
                    let h = s.hold[g].take().expect("checked");
                    s.emit(h, now);
                }
            }
        }
        for p in 0..s.outs.len() {
            if !s.outs[p].is_empty() {
                s.flush(p);
            }
        }
        if now >= next_snapshot {
            next_snapshot = now + s.hz / 10;
            *shared.snapshot.lock().unwrap_or_else(|e| e.into_inner()) = snapshot(&s, now);
            if shared.stop.load(Ordering::Relaxed) {
                break;
            }
        }
    }
    drop(poller);
    // What is still held is dropped (freed) with the state.
    let now = rdtsc();
    *shared.snapshot.lock().unwrap_or_else(|e| e.into_inner()) = snapshot(&s, now);
    let State { txq, .. } = s;
    (rxq, txq)
}

/// How long a full TX ring is retried before its packets are dropped.
const TX_STALL_WAIT_NS: u64 = 100_000_000;

/// How long a stopped reflector waits for its memif peers to disconnect first.
const PEER_DISCONNECT_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct ReflectOptions {
    pub lcore: u32,
    pub duration_ns: Option<u64>,
    pub live: bool,
}

pub fn run(
    setup: &mut Setup,
    cfg: &ReflectConfig,
    o: &ReflectOptions,
    interrupt: &AtomicBool,
) -> Result<ReflectReport, String> {
    let hz = setup.eal.tsc_hz();
    let start = rdtsc();
    let start_unix_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    let n = cfg.gateways.len();
    // Every RX queue of every port is polled (a peer such as sluiced sends its own
    // packets on a queue of their own); answers leave by TX queue 0 of the same port.
    let rxq: Vec<(usize, RxQueue)> = setup
        .ports
        .iter_mut()
        .enumerate()
        .flat_map(|(i, p)| p.rx.iter_mut().filter_map(|q| q.take()).map(move |q| (i, q)))
        .collect();
    let txq: Vec<TxQueue> = setup
        .ports
        .iter_mut()
        .map(|p| p.tx[0].take().expect("TX queue 0"))
        .collect();
    let state = State {
        cfg: cfg.clone(),
        counters: cfg
            .gateways
            .iter()
            .map(|g| GwCounters {
                name: g.name.clone(),
                ..Default::default()
            })
            .collect(),
        rng: Rng::new(cfg.seed),
        heap: BinaryHeap::with_capacity(cfg.queue_limit.min(1 << 20) as usize),
        hold: (0..n).map(|_| None).collect(),
        order: 0,
        stamp_seq: vec![0; n],
        outs: setup.ports.iter().map(|_| Burst::new()).collect(),
        txq,
        rx_packets: 0,
        ignored: 0,
        malformed: 0,
        tx_dropped: 0,
        copy_failures: 0,
        hz,
        start,
        start_unix_ns,
    };
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        snapshot: Mutex::new(ReflectReport::default()),
        turns: AtomicU64::new(0),
    });
    type Queues = (Vec<(usize, RxQueue)>, Vec<TxQueue>);
    let back: Arc<Mutex<Option<Queues>>> = Arc::new(Mutex::new(None));
    let stats_before = setup.port_stats();
    let in_use_before = setup.pool.in_use() as i64;
    {
        let (pool, sh, back) = (setup.pool.clone(), shared.clone(), back.clone());
        setup
            .eal
            .launch(o.lcore, move || {
                let q = worker(state, rxq, pool, sh);
                *back.lock().unwrap_or_else(|e| e.into_inner()) = Some(q);
                0
            })
            .map_err(|e| format!("starting lcore {}: {e}", o.lcore))?;
    }
    let t0 = Instant::now();
    let mut next_line = Duration::from_secs(1);
    let mut last_rx = 0;
    loop {
        std::thread::sleep(Duration::from_millis(20));
        if interrupt.load(Ordering::Relaxed) || o.duration_ns.is_some_and(|d| t0.elapsed().as_nanos() as u64 >= d) {
            shared.stop.store(true, Ordering::Relaxed);
            break;
        }
        if o.live && t0.elapsed() >= next_line {
            next_line += Duration::from_secs(1);
            let r = shared.snapshot.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let now_ns = t0.elapsed().as_nanos() as u64;
            let gws: Vec<String> = r
                .gateways
                .iter()
                .zip(&cfg.gateways)
                .map(|(c, g)| {
                    format!(
                        "{} {} arp {} echo {} stamp {} data {}/{} lost {}",
                        c.name,
                        if g.is_down(now_ns) { "DOWN" } else { "up" },
                        c.arp_replies,
                        c.echo_replies,
                        c.probe_replies,
                        c.data_returned,
                        c.data_packets,
                        c.lost
                    )
                })
                .collect();
            eprintln!(
                "[{:>4}s] RX {:>9} pps | {}",
                next_line.as_secs() - 1,
                r.rx_packets - last_rx,
                gws.join(" | ")
            );
            last_rx = r.rx_packets;
        }
    }
    setup.eal.wait(o.lcore);
    // Whoever closes first should close while the other is not polling: a generator
    // closes after its own drain, so a reflector stopped during that drain is never
    // polling when the link goes.
    setup.wait_for_memif_peers(PEER_DISCONNECT_WAIT);
    let (rxq, txq) = back
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .ok_or("the reflector lcore returned nothing")?;
    for (_, r) in rxq {
        setup.give_back_rx(r);
    }
    for (p, t) in setup.ports.iter_mut().zip(txq) {
        p.tx[0] = Some(t);
    }
    let mut r = shared.snapshot.lock().unwrap_or_else(|e| e.into_inner()).clone();
    r.mbufs_in_use_delta = setup.pool.in_use() as i64 - in_use_before;
    r.ports = setup.port_reports(&stats_before);
    Ok(r)
}

impl ReflectReport {
    pub fn human(&self) -> String {
        use std::fmt::Write as _;
        let mut o = String::new();
        let _ = writeln!(
            o,
            "sluice-pktgen reflect: {:.3} s, {} frames received, {} ignored, {} malformed, {} refused by TX, {} copies failed, {} mbufs not returned",
            self.duration_s,
            self.rx_packets,
            self.ignored,
            self.malformed,
            self.tx_dropped,
            self.copy_failures,
            self.mbufs_in_use_delta
        );
        let _ = writeln!(
            o,
            "{:<10} {:>7} {:>7} {:>8} {:>8} {:>10} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "gateway",
            "arp",
            "nd",
            "echo",
            "stamp",
            "data in",
            "returned",
            "lost",
            "down",
            "reord",
            "dup",
            "overflow",
            "unansw"
        );
        for g in &self.gateways {
            let _ = writeln!(
                o,
                "{:<10} {:>7} {:>7} {:>8} {:>8} {:>10} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
                g.name,
                g.arp_replies,
                g.nd_adverts,
                g.echo_replies,
                g.probe_replies,
                g.data_packets,
                g.data_returned,
                g.lost,
                g.down_drops,
                g.reordered,
                g.duplicated,
                g.queue_overflow,
                g.unanswered
            );
        }
        o
    }
}
