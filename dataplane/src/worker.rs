//! The worker loop: run to completion on one lcore, polling its RX queues in bursts of 32,
//! running each burst through the pipeline (parse/classify → shape → route → mark) and
//! the tx stage, which transmits on this worker's own TX queue of each port — through the
//! port's priority queues when the port has a link rate. Exception packets (ARP, packets
//! for the appliance) and ended flows go to the control thread on lock-free rings. No
//! allocation, locks, syscalls or logging in the loop; the only shared writes are this
//! worker's own counters.

use crate::dpdk::{flags, lcore_id, rdtsc, Burst, Mbuf, RxQueue, TxQueue};
use crate::flow::{FlowRecord, Timeouts};
use crate::parse::RxChecksum;
use crate::pipeline::{set_ce, DropReason, Frame, Pipeline, Shares, Verdict, BURST};
use crate::stats::{bump, set, WorkerCounters};
use crate::tables::Published;
use qos::scheduler::{EgressScheduler, Enqueued};
use qos::Priority;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Flow-table entries looked at for expiry per loop iteration: a whole table of 5 million
/// flows is walked in about a second even when every poll brings a full burst.
const AGE_BUDGET: usize = 16;
/// How often, at most, a worker reports its largest live flows.
const TOP_EVERY_MS: u64 = 200;

/// What one worker owns.
pub struct WorkerPlan {
    /// The lcore EAL runs this worker on.
    pub lcore: u32,
    /// This worker's number (0..workers), for rate shares.
    pub index: usize,
    /// (port index, queue) pairs this worker polls.
    pub rx: Vec<(usize, RxQueue)>,
    /// By port index: whether a received burst's headers are prefetched (not when the
    /// driver has just copied them in with this core: `app::rx_writes_through_cache`).
    pub prefetch: Vec<bool>,
    /// This worker's TX queue on every port, by port index.
    pub tx: Vec<TxQueue>,
    /// Exception packets, ended flows and largest live flows, for the control thread.
    pub rings: crate::slowpath::WorkerRings,
    /// Flow-table capacity of this worker.
    pub flow_capacity: usize,
    /// No flow table (`flows.mode = "packet"`).
    pub packet_mode: bool,
    pub timeouts: Timeouts,
    /// Per port: (this worker's part of the link rate in bits/s, queue depth, ECN
    /// threshold) when the port has a link rate.
    pub shaping: Vec<Option<(u64, usize, usize)>>,
    pub tsc_hz: u64,
    /// The TSC at which the flow clocks start (the control thread's epoch).
    pub epoch_tsc: u64,
}

/// What the workers share with the control thread.
pub struct Shared {
    pub tables: Arc<Published>,
    pub shares: Arc<Shares>,
    pub stop: Arc<AtomicBool>,
    /// Workers that have finished, their last records handed over.
    pub done: Arc<std::sync::atomic::AtomicUsize>,
    /// By port index: the control thread is restarting the port (a memif client
    /// reconnecting), and its driver must not be called.
    pub paused: Arc<Vec<AtomicBool>>,
}

// The offload flags' checksum bits are where `RxChecksum` expects them.
const _: () = assert!(
    flags::MBUF_RX_IP_CKSUM_GOOD == RxChecksum::GOOD_BIT as u64
        && flags::MBUF_RX_IP_CKSUM_BAD == RxChecksum::BAD_BIT as u64
);

impl Frame for Mbuf {
    #[inline(always)]
    fn bytes_mut(&mut self) -> &mut [u8] {
        self.data_mut()
    }
    #[inline(always)]
    fn pkt_len(&self) -> u32 {
        Mbuf::pkt_len(self)
    }
    #[inline(always)]
    fn rx_checksum(&self) -> RxChecksum {
        RxChecksum::from_ol_flags(self.ol_flags())
    }
}

/// Sends a burst holding `bytes` bytes and counts what the driver took and refused. A
/// port being restarted (`paused`) is not called: its packets are dropped as `port_down`.
#[inline(always)]
fn flush(q: &mut TxQueue, b: &mut Burst<BURST>, bytes: u64, port: usize, c: &WorkerCounters, paused: &AtomicBool) {
    if paused.load(Ordering::Relaxed) {
        bump(&c.drops[DropReason::PortDown as usize], b.len() as u64);
        b.drain().for_each(drop);
        return;
    }
    let r = q.tx(b);
    bump(&c.tx_packets[port], r.sent as u64);
    bump(&c.tx_bytes[port], bytes - r.dropped_bytes);
    if r.dropped > 0 {
        bump(&c.drops[DropReason::TxFull as usize], r.dropped as u64);
    }
}

/// Per-port transmit buffers of one worker.
struct Egress {
    pending: Vec<Burst<BURST>>,
    pending_bytes: Vec<u64>,
    /// Priority queues of rate-limited ports.
    sched: Vec<Option<EgressScheduler<Mbuf>>>,
    /// Whether any port has them (when none does, a poll skips them altogether).
    shaped: bool,
    /// Whether a TX buffer may hold packets (`flush_all` has nothing to do otherwise).
    buffered: bool,
    /// Ports being restarted (`Shared::paused`).
    paused: Arc<Vec<AtomicBool>>,
}

impl Egress {
    #[inline(always)]
    fn push(&mut self, p: usize, m: Mbuf, tx: &mut [TxQueue], c: &WorkerCounters) {
        self.pending_bytes[p] += m.pkt_len() as u64;
        self.buffered = true;
        let b = &mut self.pending[p];
        // A full buffer is flushed right after the push that filled it, so there is
        // always room here.
        let _ = b.push(m);
        if b.is_full() {
            flush(&mut tx[p], b, self.pending_bytes[p], p, c, &self.paused[p]);
            self.pending_bytes[p] = 0;
        }
    }

    #[inline(always)]
    fn flush_all(&mut self, tx: &mut [TxQueue], c: &WorkerCounters) {
        if std::mem::take(&mut self.buffered) {
            self.flush_each(tx, c);
        }
    }

    fn flush_each(&mut self, tx: &mut [TxQueue], c: &WorkerCounters) {
        for (p, b) in self.pending.iter_mut().enumerate() {
            if !b.is_empty() {
                flush(&mut tx[p], b, self.pending_bytes[p], p, c, &self.paused[p]);
                self.pending_bytes[p] = 0;
            }
        }
    }

    /// Moves what the link rates allow from the priority queues to the TX buffers.
    fn drain_queues(&mut self, now: u64, c: &WorkerCounters) {
        if !self.shaped {
            return;
        }
        for p in 0..self.sched.len() {
            let Some(s) = self.sched[p].as_mut() else { continue };
            if !s.is_empty() {
                let mut out = std::mem::take(&mut self.pending[p]);
                let mut bytes = 0u64;
                s.dequeue(now, BURST - out.len(), |m, _| {
                    bytes += m.pkt_len() as u64;
                    let _ = out.push(m);
                });
                self.pending[p] = out;
                self.pending_bytes[p] += bytes;
                self.buffered = true;
            }
        }
        self.publish_queues(c);
    }

    /// Copies the schedulers' own counters and depths into the shared block (once per
    /// poll, not per packet).
    fn publish_queues(&self, c: &WorkerCounters) {
        for (p, s) in self.sched.iter().enumerate() {
            let Some(s) = s else { continue };
            for prio in Priority::ALL {
                let q = p * Priority::COUNT + prio as usize;
                let k = s.counters[prio as usize];
                set(&c.queue_depth[q], s.depth(prio) as u64);
                set(&c.queue_enqueued[q], k.enqueued);
                set(&c.queue_dropped[q], k.dropped);
                set(&c.queue_ce_marked[q], k.ce_marked);
            }
        }
    }
}

/// Runs until `stop` is set; returns 0. Everything still buffered is sent or freed, and
/// every live flow is reported as ended.
pub fn run(mut plan: WorkerPlan, shared: Shared, c: Arc<WorkerCounters>) -> i32 {
    // Counters and queues assume the planned lcore (its mempool cache, its NUMA node).
    assert_eq!(lcore_id(), plan.lcore, "worker started on the wrong lcore");
    let ports = plan.tx.len();
    let mut pipe =
        Pipeline::new(plan.flow_capacity.max(1), plan.timeouts, plan.index, plan.tsc_hz).with_epoch(plan.epoch_tsc);
    if plan.packet_mode {
        pipe = pipe.packet_mode();
    }
    // A burst leaving by one port without a link rate goes out whole, as it is (below):
    // the pipeline says which (`whole_port`).
    let unshaped = plan.shaping.iter().enumerate().filter(|(p, s)| *p < 64 && s.is_none());
    pipe = pipe.sends_whole(unshaped.fold(0, |m, (p, _)| m | 1 << p));
    let mut rx = Burst::<BURST>::new();
    let now = rdtsc();
    // The last TSC read: where the next burst's rx stage begins (see `Pipeline::process`).
    let mut clock = now;
    let mut tables = shared.tables.load();
    let mins: Vec<u64> = tables.classes.iter().map(|c| c.min_bps).collect();
    let mut eg = Egress {
        pending: (0..ports).map(|_| Burst::new()).collect(),
        pending_bytes: vec![0; ports],
        shaped: plan.shaping.iter().any(Option::is_some),
        buffered: false,
        paused: Arc::clone(&shared.paused),
        sched: plan
            .shaping
            .iter()
            .map(|s| {
                s.map(|(rate, depth, ecn)| EgressScheduler::new(rate, 16 * 1024, depth, ecn, &mins, plan.tsc_hz, now))
            })
            .collect(),
    };
    let mut generation = tables.generation;
    set(&c.generation, generation as u64);
    let records = &mut plan.rings.records;
    let counters = &*c;
    let mut ended = |r: FlowRecord| {
        if records.push(r).is_err() {
            bump(&counters.records_lost, 1);
        }
    };
    // While this worker polls, a driver tearing a port's shared memory down (memif, when
    // its peer leaves) first waits for it to go twice round this loop (`crate::quiesce`).
    // The count is the one the loop keeps anyway.
    let poller = {
        let c = Arc::clone(&c);
        crate::quiesce::register(move || crate::quiesce::Progress {
            passes: c.polls.load(Ordering::Relaxed),
            inside: true,
        })
    };
    let mut polls = 0u64;
    let (mut walks_reported, mut top_reported_tsc) = (0u64, 0u64);
    let top_every = plan.tsc_hz / 1000 * TOP_EVERY_MS;
    // Latency samples of bursts whose packets wait in the TX buffers: (arrival, packets).
    let mut waiting = [(0u64, 0u64); 8];
    let mut waiting_n = 0usize;
    while !shared.stop.load(Ordering::Relaxed) {
        // A new snapshot is picked up between bursts, never inside one.
        if shared.tables.generation() != generation {
            tables = shared.tables.load();
            generation = tables.generation;
            set(&c.generation, generation as u64);
            rebuild_minimums(&mut eg, &tables);
        }
        pipe.sync_meters(&tables, &shared.shares, rdtsc);
        let mut got = 0;
        // A TSC read costs as much as tens of instructions: there is one per burst, after
        // its tx, and one per poll that found nothing. Each is the poll's clock, and
        // where the next burst's rx begins.
        for (in_port, q) in plan.rx.iter_mut() {
            if shared.paused[*in_port].load(Ordering::Relaxed) {
                continue;
            }
            let n = q.rx(&mut rx);
            if n == 0 {
                continue;
            }
            got += n;
            let in_port = *in_port;
            // Headers of the whole burst start loading while the first packets are parsed
            // (unless the driver has just written them with this core).
            if plan.prefetch[in_port] {
                rx.prefetch_all();
            }
            pipe.process(&tables, rx.as_mut_slice(), in_port as u8, clock, &c, &mut ended);
            let bytes = pipe.bytes();
            bump(&c.rx_packets[in_port], n as u64);
            bump(&c.rx_bytes[in_port], bytes);

            let whole = pipe.whole_port().map(|p| p as usize);
            if let Some(p) = whole {
                // The common case: the whole burst leaves by one port, as it is. What is
                // already waiting for that port goes first, to keep order.
                if !eg.pending[p].is_empty() {
                    flush(
                        &mut plan.tx[p],
                        &mut eg.pending[p],
                        eg.pending_bytes[p],
                        p,
                        &c,
                        &eg.paused[p],
                    );
                    eg.pending_bytes[p] = 0;
                }
                flush(&mut plan.tx[p], &mut rx, bytes, p, &c, &eg.paused[p]);
            } else {
                let mut direct = 0u64;
                for (i, mut m) in rx.drain().enumerate() {
                    match pipe.verdicts()[i] {
                        Verdict::Drop(_) => drop(m),
                        Verdict::Control | Verdict::Hold { .. } => {
                            let hold = match pipe.verdicts()[i] {
                                Verdict::Hold { path } => Some((path, generation)),
                                _ => None,
                            };
                            let e = crate::slowpath::Exception {
                                mbuf: m,
                                tsc: rdtsc(),
                                port: in_port as u8,
                                hold,
                            };
                            if plan.rings.exceptions.push(e).is_err() {
                                c.drop_packet(DropReason::ControlRingFull);
                            } else {
                                bump(&c.to_control, 1);
                            }
                        }
                        Verdict::Out { port, prio, class, ect } => {
                            let p = port as usize;
                            let Some(s) = eg.sched[p].as_mut() else {
                                eg.push(p, m, &mut plan.tx, &c);
                                direct += 1;
                                continue;
                            };
                            match s.admit(prio, ect) {
                                Enqueued::Drop => {
                                    c.drop_packet(DropReason::QueueFull);
                                    continue;
                                }
                                Enqueued::QueueMarkCe => set_ce(m.data_mut(), pipe.meta(i)),
                                Enqueued::Queue => {}
                            }
                            let len = m.pkt_len();
                            s.push(prio, m, len, qos::ClassId(class as u16));
                        }
                    }
                }
                // These leave when the buffers are flushed, after the last queue's burst.
                if direct > 0 && waiting_n < waiting.len() {
                    waiting[waiting_n] = (pipe.burst_tsc, direct);
                    waiting_n += 1;
                }
            }
            clock = rdtsc();
            pipe.sent(clock, n as u64, &c);
            if whole.is_some() {
                c.latency(clock - pipe.burst_tsc, n as u64);
            }
        }
        if got == 0 {
            clock = rdtsc();
            // Idle: the stage counts kept in the pipeline go out now, not at the next
            // timed burst.
            pipe.publish_stages(&c);
        }
        let now = clock;
        eg.drain_queues(now, &c);
        eg.flush_all(&mut plan.tx, &c);
        if waiting_n > 0 {
            let sent = rdtsc();
            for &(at, n) in &waiting[..waiting_n] {
                c.latency(sent - at, n);
            }
            waiting_n = 0;
        }
        if !plan.packet_mode {
            pipe.flows.age(pipe.now_ms(now), AGE_BUDGET, &mut ended);
            // The largest live flows: a walk looks for them when TOP_EVERY_MS has passed
            // since the last list, which goes to the control thread when complete (a copy
            // of 1.6 kB).
            pipe.flows.track_next = now.wrapping_sub(top_reported_tsc) >= top_every;
            if pipe.flows.walks != walks_reported {
                walks_reported = pipe.flows.walks;
                top_reported_tsc = now;
                // Full: the control thread has not taken the last one yet; the next will do.
                let _ = plan.rings.top.push(*pipe.flows.last_walk());
            }
        }
        polls += 1;
        if polls.is_multiple_of(1024) {
            publish_flow_counters(&pipe, &c);
            pipe.publish_stages(&c);
        }
        bump(&c.polls, 1);
        if got > 0 {
            bump(&c.busy_polls, 1);
        }
    }
    // Shutdown: queued packets are freed (the ports are stopping), live flows reported.
    eg.publish_queues(&c);
    for s in eg.sched.iter_mut().flatten() {
        s.drain(drop);
    }
    eg.flush_all(&mut plan.tx, &c);
    // No more port I/O from this thread.
    drop(poller);
    // Every live flow becomes a record. The control thread drains the ring until this
    // worker says it is done, so here (and only here) a full ring is waited on, for a
    // bounded time.
    let deadline = std::time::Instant::now() + SHUTDOWN_RECORDS_WAIT;
    pipe.flows.flush(&mut |r: FlowRecord| {
        let mut r = r;
        loop {
            match plan.rings.records.push(r) {
                Ok(()) => return,
                Err(rtrb::PushError::Full(back)) if std::time::Instant::now() < deadline => {
                    r = back;
                    std::hint::spin_loop();
                }
                Err(_) => {
                    bump(&c.records_lost, 1);
                    return;
                }
            }
        }
    });
    publish_flow_counters(&pipe, &c);
    pipe.publish_stages(&c);
    shared.done.fetch_add(1, Ordering::Release);
    0
}

/// How long a stopping worker waits for room for its last flow records.
const SHUTDOWN_RECORDS_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// A new snapshot may change the classes' guaranteed minimums: rebuild the schedulers'
/// minimum buckets (only on rate-limited ports; queued packets stay queued).
fn rebuild_minimums(eg: &mut Egress, t: &crate::tables::Tables) {
    for s in eg.sched.iter_mut().flatten() {
        s.set_minimums(t.classes.iter().map(|c| c.min_bps));
    }
}

fn publish_flow_counters(pipe: &Pipeline, c: &WorkerCounters) {
    let f = pipe.flows.counters;
    set(&c.flows_created, f.created);
    set(&c.flows_expired, f.expired);
    set(&c.flows_evicted, f.evicted);
    set(&c.flows_active, pipe.flows.len() as u64);
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn checksum_flags() {
        let of = RxChecksum::from_ol_flags;
        assert_eq!(of(0), RxChecksum::UNKNOWN);
        assert_eq!(of(!flags::MBUF_RX_IP_CKSUM_MASK), RxChecksum::UNKNOWN);
        assert_eq!(of(flags::MBUF_RX_IP_CKSUM_GOOD | 1), RxChecksum::GOOD);
        assert_eq!(of(flags::MBUF_RX_IP_CKSUM_BAD), RxChecksum::BAD);
        assert_eq!(of(flags::MBUF_RX_IP_CKSUM_MASK), RxChecksum::NONE);
        let judged = |c: RxChecksum| (c.verified(), c.bad());
        assert_eq!(judged(of(0)), (false, false));
        assert_eq!(judged(of(flags::MBUF_RX_IP_CKSUM_GOOD)), (true, false));
        assert_eq!(judged(of(flags::MBUF_RX_IP_CKSUM_BAD)), (false, true));
        // NONE: integrity verified, the field not meaningful.
        assert_eq!(judged(of(flags::MBUF_RX_IP_CKSUM_MASK)), (true, false));
    }
}
