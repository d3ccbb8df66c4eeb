//! The fast path's stages over one burst, stage by stage so each stage's code and tables
//! stay hot: parse/classify (parse, flow lookup with prefetch, classify new flows),
//! shape (meters and exceed/violate actions), route (path by flow, MAC rewrite, TTL),
//! mark (DSCP). The worker adds the stages before and after, rx and tx: it says when it
//! began to receive the burst (`process`) and when the burst was sent (`sent`).
//! Every stage's cycles, packets and bursts are counted per burst; every drop is counted
//! by reason. One burst in `STAGE_TIMING_EVERY` runs the stages one after another, timed
//! between them; the others run shape, route and mark in one pass per packet, timed as a
//! whole from rx to `sent` (see `process`).
//! In packet mode with nothing per packet to classify, shape or mark, the common packet
//! goes through all of it in one pass of its own (`plain`). In flow mode, the untimed
//! bursts' common packets of flows already decided are handled from what their flow
//! remembers, without the general steps (`flowpass`).
//!
//! Generic over `Frame` so the same code runs on mbufs in a worker and on byte vectors in
//! tests. Worker-local state (flow table, meters) lives in `Pipeline`; shared state
//! (`Tables`, `Shares`) is read-only here.

use crate::dpdk::rdtsc;
use crate::flow::{flag, FlowRecord, FlowTable, Found, Timeouts};
use crate::parse::{self, meta_flag, Kind, Meta, PlainV4, RxChecksum};
use crate::stats::WorkerCounters;
use crate::tables::{Tables, PATH_LOCAL, PATH_NONE_USABLE, PATH_NOT_UNICAST, PATH_NO_ROUTE};
use crate::wire::checksum_update16;
use qos::class::{pre_colour, Action, Priority, MAX_CLASSES};
use qos::classify::Fields;
use qos::meter::{Colour, Meter};
use qos::share::WHOLE_PPM;
use std::sync::atomic::{AtomicU32, Ordering};

pub const BURST: usize = 32;

/// Why a packet was not forwarded. Each has a counter per worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// Shorter than the headers it announces.
    Truncated = 0,
    /// IP version, header length or total length inconsistent.
    BadIpHeader,
    /// IPv4 header checksum wrong.
    BadChecksum,
    /// TCP, UDP or ICMP header missing or inconsistent.
    BadL4Header,
    /// The flow table was so full that this packet's flow was evicted by a later packet
    /// of the same burst (in a burst that looks every packet's flow up before the later
    /// stages: one timed stage by stage, or one with no packet for the flow pass; the
    /// flow pass finishes each packet before the next).
    FlowEvicted,
    /// IPv6 extension-header chain malformed or too long.
    BadExtensionHeader,
    /// More than two VLAN tags.
    TooManyVlanTags,
    /// An EtherType Sluice does not forward.
    UnsupportedEthertype,
    /// TTL / hop limit would reach zero.
    TtlExpired,
    /// No route for the destination.
    NoRoute,
    /// The route's path group has no usable path.
    NoPath,
    /// Larger than the egress port's MTU (no fragmentation on the fast path).
    MtuExceeded,
    /// IPv4 multicast, broadcast or reserved (224.0.0.0/3) destinations: never routed.
    NotUnicast,
    /// The class's meter said exceed and the class drops such packets.
    MeterExceed,
    /// The class's meter said violate and the class drops such packets.
    MeterViolate,
    /// The egress priority queue was full.
    QueueFull,
    /// The ring to the control thread was full.
    ControlRingFull,
    /// The egress queue was full (tx_burst did not take the packet).
    TxFull,
    /// The egress port was being restarted (a memif client reconnecting): no thread may
    /// call its driver then.
    PortDown,
}

impl DropReason {
    pub const COUNT: usize = 19;
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::Truncated,
        DropReason::BadIpHeader,
        DropReason::BadChecksum,
        DropReason::BadL4Header,
        DropReason::FlowEvicted,
        DropReason::BadExtensionHeader,
        DropReason::TooManyVlanTags,
        DropReason::UnsupportedEthertype,
        DropReason::TtlExpired,
        DropReason::NoRoute,
        DropReason::NoPath,
        DropReason::MtuExceeded,
        DropReason::NotUnicast,
        DropReason::MeterExceed,
        DropReason::MeterViolate,
        DropReason::QueueFull,
        DropReason::ControlRingFull,
        DropReason::TxFull,
        DropReason::PortDown,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::BadIpHeader => "bad_ip_header",
            DropReason::BadChecksum => "bad_checksum",
            DropReason::BadL4Header => "bad_l4_header",
            DropReason::FlowEvicted => "flow_evicted",
            DropReason::BadExtensionHeader => "bad_extension_header",
            DropReason::TooManyVlanTags => "too_many_vlan_tags",
            DropReason::UnsupportedEthertype => "unsupported_ethertype",
            DropReason::TtlExpired => "ttl_expired",
            DropReason::NoRoute => "no_route",
            DropReason::NoPath => "no_path",
            DropReason::MtuExceeded => "mtu_exceeded",
            DropReason::NotUnicast => "not_unicast",
            DropReason::MeterExceed => "meter_exceed",
            DropReason::MeterViolate => "meter_violate",
            DropReason::QueueFull => "queue_full",
            DropReason::ControlRingFull => "control_ring_full",
            DropReason::TxFull => "tx_full",
            DropReason::PortDown => "port_down",
        }
    }

    /// The stage that drops for this reason.
    pub fn stage(self) -> Stage {
        use DropReason::*;
        match self {
            Truncated | BadIpHeader | BadChecksum | BadL4Header | FlowEvicted | BadExtensionHeader
            | TooManyVlanTags | UnsupportedEthertype => Stage::Classify,
            MeterExceed | MeterViolate | QueueFull => Stage::Shape,
            TtlExpired | NoRoute | NoPath | MtuExceeded | NotUnicast => Stage::Route,
            ControlRingFull | TxFull | PortDown => Stage::Tx,
        }
    }
}

/// The stages, for cycle accounting. `Rx` is the worker's receive: from its last clock
/// read before the burst (the end of the burst before, or of the last poll that found
/// nothing) to the start of parse/classify, the driver's receive and the poll's own
/// housekeeping included, as VPP's `dpdk-input` counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Stage {
    Rx = 0,
    Classify,
    Shape,
    Route,
    Mark,
    Tx,
}

impl Stage {
    pub const COUNT: usize = 6;
    pub const ALL: [Stage; Self::COUNT] = [
        Stage::Rx,
        Stage::Classify,
        Stage::Shape,
        Stage::Route,
        Stage::Mark,
        Stage::Tx,
    ];
    /// The stages `Pipeline::process` runs.
    pub const PROCESSED: [Stage; 4] = [Stage::Classify, Stage::Shape, Stage::Route, Stage::Mark];
    pub fn name(self) -> &'static str {
        ["rx", "parse_classify", "shape", "route", "mark", "tx"][self as usize]
    }
}

/// A packet's fate after the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Leave on `port` at priority `prio`; `ect` says the packet is ECN-capable.
    Out {
        port: u16,
        prio: Priority,
        class: u8,
        ect: bool,
    },
    /// For the control thread (ARP, the appliance's own addresses, IPv6 link-local).
    Control,
    /// Routed to `path`, whose next hop is still being resolved: for the control thread
    /// to hold until it is (then sent with its MAC), or drop.
    Hold {
        path: u16,
    },
    Drop(DropReason),
}

/// What the pipeline needs of a packet buffer.
pub trait Frame {
    /// The first segment's bytes.
    fn bytes_mut(&mut self) -> &mut [u8];
    /// The whole packet's length.
    fn pkt_len(&self) -> u32;
    fn rx_checksum(&self) -> RxChecksum;
}

/// A frame held in memory, as from a port without checksum offload (the IPv4 checksum is
/// verified in software): what tests and benchmarks run through the pipeline without DPDK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VecFrame(pub Vec<u8>);

impl Frame for VecFrame {
    #[inline(always)]
    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
    #[inline(always)]
    fn pkt_len(&self) -> u32 {
        self.0.len() as u32
    }
    #[inline(always)]
    fn rx_checksum(&self) -> RxChecksum {
        RxChecksum::UNKNOWN
    }
}

/// Per-worker shares of every class's rate, set by the control thread.
pub struct Shares {
    pub generation: AtomicU32,
    /// `ppm[worker * MAX_CLASSES + class]`.
    pub ppm: Vec<AtomicU32>,
}

impl Shares {
    /// Equal shares for `workers` workers.
    pub fn new(workers: usize) -> Shares {
        let each = WHOLE_PPM / workers as u32;
        Shares {
            generation: AtomicU32::new(0),
            ppm: (0..workers * MAX_CLASSES).map(|_| AtomicU32::new(each)).collect(),
        }
    }

    pub fn get(&self, worker: usize, class: usize) -> u32 {
        self.ppm[worker * MAX_CLASSES + class].load(Ordering::Relaxed)
    }

    /// Sets one class's shares (one per worker) and tells the workers.
    pub fn set(&self, class: usize, shares: &[u32]) {
        for (w, &s) in shares.iter().enumerate() {
            self.ppm[w * MAX_CLASSES + class].store(s, Ordering::Relaxed);
        }
        self.generation.fetch_add(1, Ordering::Release);
    }
}

/// One packet's working state through the stages.
#[derive(Clone, Copy, Default)]
struct Pkt {
    meta: Meta,
    hash: u64,
    /// The flow entry the signature pointed at, checked first.
    candidate: u32,
    flow: u32,
    class: u8,
    prio: Priority,
    /// DSCP to leave with, or `KEEP`.
    dscp: u8,
    /// The flow's decisions are from an older snapshot: route again.
    reroute: bool,
}

const KEEP: u8 = 0xff;

/// The worker-local state of the pipeline.
pub struct Pipeline {
    /// Unused (and one entry long) in packet mode.
    pub flows: FlowTable,
    /// Packet mode (`flows.mode = "packet"`): no flow state; every packet is classified
    /// and routed on its own.
    stateless: bool,
    meters: Vec<Meter>,
    worker: usize,
    tsc_hz: u64,
    start_tsc: u64,
    /// Milliseconds per TSC tick, as a 32.32 fixed-point multiplier.
    ms_per_tick_fp32: u64,
    /// (tables generation, shares generation) the meters were set up for.
    meters_for: (u32, u32),
    pkts: [Pkt; BURST],
    verdicts: [Verdict; BURST],
    /// When the worker began to receive the last burst (its arrival, for latency).
    pub burst_tsc: u64,
    /// When the last burst, if timed stage by stage, left the last stage (the tx stage
    /// starts there), and its cycles per stage from rx to mark.
    timed: Option<(u64, [u64; Stage::COUNT - 1])>,
    /// See `one_port`.
    one_port: Option<u16>,
    /// When the last burst took the plain pass: the packets it left to the general steps
    /// (bit i: packet i), whose metadata `meta` gives; the others' is `PLAIN_META`.
    plain_rest: Option<u32>,
    /// See `bytes`.
    bytes: u64,
    /// `PlainClass::of` the snapshot and meters of `meters_for` (worked out when they
    /// change, not per burst).
    plain_class: Option<plain::PlainClass>,
    /// The headers of a burst's plain packets, in flow mode (`flowpass`).
    headers: [PlainV4; BURST],
    /// What the verdicts of the packets the plain pass sent need; after the flow pass,
    /// the egress port of each packet it sent (`FlowBurst::sent`).
    plain_slots: [plain::SentSlot; BURST],
    /// The ports (bit p: port p) the caller sends a burst to whole when `one_port` names
    /// them, without reading `verdicts`: the plain pass then leaves them unwritten.
    whole_ports: u64,
    /// Whether `verdicts` holds the last burst's.
    verdicts_written: bool,
    /// One burst in `stage_every` runs the stages one after another with a TSC read
    /// between them; the others run them in one pass per packet (0: never).
    stage_every: u32,
    /// Bursts until the next one timed stage by stage.
    until_staged: u32,
    /// Cycles per stage of the timed bursts (rx, parse/classify, shape, route, mark and
    /// tx): a moving sum in which each timed burst counts 7/8 of the one after it.
    split_cycles: [u64; Stage::COUNT],
    /// `split_cycles` as shares of the whole, in 1/65536: how an untimed burst's cycles
    /// are split between the stages.
    split: [u64; Stage::COUNT],
    /// Stage counts not yet added to the worker's counters (`publish_stages`).
    tally: Tally,
}

/// Per-stage counts kept in the pipeline between publications, so that a burst adds to
/// plain fields rather than to a dozen shared counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    packets: [u64; Stage::COUNT],
    /// Bursts through rx to mark (`process`) and through tx (`sent`).
    bursts: u64,
    tx_bursts: u64,
    /// The untimed bursts' cycles, from rx to the end of tx, as a whole: split between
    /// the stages when published, by the split the last timed burst left, which is the
    /// one in force while they ran.
    whole: u64,
}

/// The bits of a burst of `n` packets (bit i: packet i).
#[inline(always)]
fn burst_mask(n: usize) -> u32 {
    const { assert!(BURST <= 32) };
    u32::MAX.checked_shr(32 - n as u32).unwrap_or(0)
}

/// One burst in this many is timed stage by stage.
pub const STAGE_TIMING_EVERY: u32 = 256;

impl Pipeline {
    pub fn new(flow_capacity: usize, timeouts: Timeouts, worker: usize, tsc_hz: u64) -> Pipeline {
        Pipeline {
            flows: FlowTable::new(flow_capacity, timeouts),
            stateless: false,
            meters: Vec::with_capacity(MAX_CLASSES),
            worker,
            tsc_hz,
            start_tsc: rdtsc(),
            ms_per_tick_fp32: ((1000u128 << 32) / tsc_hz as u128) as u64,
            meters_for: (u32::MAX, u32::MAX),
            pkts: [Pkt::default(); BURST],
            verdicts: [Verdict::Control; BURST],
            burst_tsc: 0,
            timed: None,
            one_port: None,
            plain_rest: None,
            bytes: 0,
            plain_class: None,
            plain_slots: [0; BURST],
            headers: [flowpass::NO_HEADER; BURST],
            whole_ports: 0,
            verdicts_written: true,
            stage_every: STAGE_TIMING_EVERY,
            until_staged: 0,
            split_cycles: [0; Stage::COUNT],
            split: [0; Stage::COUNT],
            tally: Tally::default(),
        }
    }

    /// Times one burst in `every` stage by stage (1: all of them; 0: none, for tests: no
    /// cycles are then counted for parse/classify, shape, route and mark). The first
    /// burst is timed unless `every` is 0.
    pub fn stage_timing_every(mut self, every: u32) -> Pipeline {
        self.stage_every = every;
        self.until_staged = if every == 0 { u32::MAX } else { 0 };
        self
    }

    /// Starts the flow table's clock at `tsc` instead of now, so that every worker's
    /// clock and the control thread's agree (flow records carry these times).
    pub fn with_epoch(mut self, tsc: u64) -> Pipeline {
        self.start_tsc = tsc;
        self
    }

    /// Packet mode: no flow table; every packet is classified and routed on its own. The
    /// path is picked by the same 5-tuple hash as a new flow's, so a flow takes one path
    /// while its group's paths stay as they are.
    pub fn packet_mode(mut self) -> Pipeline {
        self.flows = FlowTable::new(1, self.flows.timeouts);
        self.stateless = true;
        self
    }

    /// The ports (bit p: port p) by which the caller sends a burst as it is, without
    /// reading `verdicts`, whenever every packet leaves by one of them (`whole_port`): a
    /// burst that takes the plain pass then has its verdicts left unwritten.
    pub fn sends_whole(mut self, ports: u64) -> Pipeline {
        self.whole_ports = ports;
        self
    }

    pub fn is_packet_mode(&self) -> bool {
        self.stateless
    }

    /// Milliseconds since the pipeline started (the flow table's clock).
    #[inline(always)]
    pub fn now_ms(&self, tsc: u64) -> u32 {
        ((tsc.wrapping_sub(self.start_tsc) as u128 * self.ms_per_tick_fp32 as u128) >> 32) as u32
    }

    /// Sets the meters up for the snapshot's classes and this worker's shares, keeping
    /// the tokens of classes that stay. Never allocates (capacity is `MAX_CLASSES`).
    /// `now` is read only when something changed.
    pub fn sync_meters(&mut self, t: &Tables, shares: &Shares, now: impl FnOnce() -> u64) {
        let sg = shares.generation.load(Ordering::Acquire);
        if self.meters_for == (t.generation, sg) {
            return;
        }
        let now = now();
        self.meters.truncate(t.classes.len());
        for (i, c) in t.classes.iter().enumerate() {
            let spec = c.meter.share(shares.get(self.worker, i));
            if i < self.meters.len() {
                self.meters[i].colour_aware = c.colour_aware;
                self.meters[i].reconfigure(&spec, now);
            } else {
                self.meters.push(Meter::new(&spec, c.colour_aware, self.tsc_hz, now));
            }
        }
        self.meters_for = (t.generation, sg);
        self.plain_class = plain::PlainClass::of(t, &self.meters);
    }

    /// The verdicts of the last `process` call. Not for a burst sent whole by a port
    /// given to `sends_whole` (a programming error: panics).
    pub fn verdicts(&self) -> &[Verdict] {
        assert!(self.verdicts_written, "verdicts of a burst sent whole are not written");
        &self.verdicts
    }

    /// Whether `verdicts` may be read (see `sends_whole`).
    pub fn has_verdicts(&self) -> bool {
        self.verdicts_written
    }

    /// What the last `process` call parsed of packet `i` (meaningful for `Verdict::Out`).
    pub fn meta(&self, i: usize) -> &Meta {
        match self.plain_rest {
            // The plain pass writes no metadata: its packets' is all alike.
            Some(rest) if rest & (1 << i) == 0 => &plain::PLAIN_META,
            _ => &self.pkts[i].meta,
        }
    }

    /// Runs the stages over a burst received on `in_port`; verdicts are left in
    /// `verdicts()`. `polled` is the TSC the worker read last before it received the
    /// burst: the rx stage starts there. Flows that end (evicted here) go to `ended`.
    ///
    /// Most bursts are not timed stage by stage: in flow mode they take the flow pass
    /// (`flowpass`); in packet mode they are parsed in a pass of their own, then go
    /// through classify, shape, route and mark in one pass per packet, or, without rules
    /// and with the one class unmetered, take the plain pass (`plain`). Both passes
    /// decide as the general steps do. Such a burst is timed only as a whole, from
    /// `polled` to `sent`: one TSC read per burst, the worker's own. One burst in
    /// `STAGE_TIMING_EVERY` runs the general steps stage by stage with a TSC read
    /// between stages; the other bursts' cycles are split between the stages in the
    /// proportions those bursts measured (in `sent`). Packets, bursts and drops per
    /// stage are counted exactly in both ways.
    #[inline]
    pub fn process<F: Frame>(
        &mut self,
        t: &Tables,
        frames: &mut [F],
        in_port: u8,
        polled: u64,
        c: &WorkerCounters,
        ended: &mut impl FnMut(FlowRecord),
    ) {
        let n = frames.len().min(BURST);
        let sum_bytes = |frames: &[F]| frames[..n].iter().map(|f| f.pkt_len() as u64).sum();
        self.burst_tsc = polled;
        let staged = self.until_staged == 0;
        self.until_staged = if staged {
            self.stage_every.wrapping_sub(1)
        } else {
            self.until_staged - 1
        };
        // The clock of the stages: on a timed burst, the end of rx.
        let t0 = if staged { rdtsc() } else { polled };
        let now_ms = self.now_ms(t0);
        let Pipeline {
            flows,
            meters,
            pkts,
            verdicts,
            stateless,
            plain_slots,
            headers,
            ..
        } = self;
        let stateless = *stateless;
        // Each stage walks the burst's three parallel arrays together.
        let frames = &mut frames[..n];
        let pkts = &mut pkts[..n];
        let verdicts = &mut verdicts[..n];

        // What the plain pass or the flow pass did, when one ran.
        let mut plain = None;
        let mut flow_pass = None;
        let bytes;
        // Packets through parse/classify, shape, route and mark.
        let counts = if staged {
            bytes = sum_bytes(frames);
            // ---- parse / classify
            parse_burst(frames, pkts, verdicts, in_port);
            let live = if stateless {
                classify_packets(t, pkts, verdicts)
            } else {
                track_flows(t, flows, frames, pkts, verdicts, now_ms, ended)
            };
            let t1 = rdtsc();
            // ---- shape
            shape_burst(t, meters, frames, pkts, verdicts, t1, c);
            let t2 = rdtsc();
            // ---- route
            let routed = route_burst(t, flows, stateless, frames, pkts, verdicts);
            let t3 = rdtsc();
            // ---- mark
            let marked = mark_burst(flows, stateless, frames, pkts, verdicts);
            let end = rdtsc();
            let cycles = [t0.wrapping_sub(polled), t1 - t0, t2 - t1, t3 - t2, end - t3];
            for (s, cycles) in Stage::ALL.into_iter().zip(cycles) {
                c.stage_cycles_add(s, cycles);
            }
            self.timed = Some((end, cycles));
            [n as u64, live, routed, marked]
        } else {
            // The plain class as of the last `sync_meters`, when it saw this snapshot.
            let class = if self.meters_for.0 == t.generation {
                self.plain_class
            } else {
                plain::PlainClass::of(t, meters)
            };
            let [live, routed, marked] = if stateless {
                if let Some(class) = class {
                    let b = plain::forward_burst(t, meters, class, frames, pkts, verdicts, plain_slots, in_port, t0, c);
                    plain = Some(b);
                    bytes = b.bytes;
                    b.counts
                } else {
                    bytes = sum_bytes(frames);
                    parse_burst(frames, pkts, verdicts, in_port);
                    finish_packet_mode(t, meters, frames, pkts, verdicts, t0, c)
                }
            } else {
                let b = flowpass::flow_burst(
                    t,
                    flows,
                    meters,
                    frames,
                    pkts,
                    headers,
                    verdicts,
                    plain_slots,
                    in_port,
                    t0,
                    now_ms,
                    c,
                    ended,
                );
                flow_pass = Some(b);
                bytes = b.bytes;
                b.counts
            };
            // Timed as a whole, with the tx stage, when sent (`sent`).
            self.timed = None;
            [n as u64, live, routed, marked]
        };
        let tally = &mut self.tally;
        tally.packets[Stage::Rx as usize] += n as u64;
        for (s, packets) in Stage::PROCESSED.into_iter().zip(counts) {
            tally.packets[s as usize] += packets;
        }
        tally.bursts += 1;
        self.bytes = bytes;
        self.plain_rest = plain.map(|b| b.rest).or(flow_pass.map(|b| b.general));
        self.verdicts_written = true;
        if let Some(b) = flow_pass {
            if b.sent == burst_mask(n) && n > 0 {
                // Every verdict is `Out`: no drop to count.
                let ports = &self.plain_slots[..n];
                let (any, every) = ports.iter().fold((0u16, u16::MAX), |(a, e), &p| (a | p, e & p));
                self.one_port = (any == every).then_some(every);
                return;
            }
        }
        if let Some(b) = plain {
            let s = b.sent;
            if b.rest == 0 && n > 0 {
                // Every packet left by the plain pass, which saw their ports. A burst the
                // caller sends whole needs no verdicts.
                self.one_port = (s.any_port == s.every_port).then_some(s.every_port);
                self.verdicts_written = self.whole_port().is_none();
                if self.verdicts_written {
                    s.verdicts(&self.plain_slots, frames, &mut self.verdicts);
                }
                return;
            }
            s.verdicts(&self.plain_slots, frames, &mut self.verdicts);
        }
        // One pass over the verdicts: drops are counted, and whether every packet leaves
        // by one port (ports that agree in every bit set and every bit clear are equal).
        let (mut out, mut any, mut every) = (0usize, 0u16, u16::MAX);
        for v in self.verdicts[..n].iter() {
            match *v {
                Verdict::Out { port, .. } => {
                    out += 1;
                    any |= port;
                    every &= port;
                }
                Verdict::Drop(r) => c.drop_packet(r),
                Verdict::Control | Verdict::Hold { .. } => {}
            }
        }
        self.one_port = (n > 0 && out == n && any == every).then_some(every);
    }

    /// The port every packet of the last `process` call leaves by, when they all do
    /// (no drop, nothing for the control thread): the burst can go out as it is.
    pub fn one_port(&self) -> Option<u16> {
        self.one_port
    }

    /// `one_port` when it is one of the ports given to `sends_whole`: the caller sends the
    /// burst as it is, and may not read its verdicts.
    pub fn whole_port(&self) -> Option<u16> {
        self.one_port
            .filter(|&p| self.whole_ports & 1u64.checked_shl(p as u32).unwrap_or(0) != 0)
    }

    /// The bytes of the packets the last `process` call was given (as received).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Counts the tx stage of the last burst, whose `packets` were sent (or queued, or
    /// dropped) by `now`, and its cycles: a timed burst's own, for each stage, the
    /// others' from `polled` (see `process`) to `now` as a whole, split between the
    /// stages in the proportions the timed bursts measured. So an untimed burst costs
    /// one TSC read, `now`, which is also where the next burst's rx begins.
    ///
    /// The counts reach the worker's counters on each timed burst and on
    /// `publish_stages`.
    pub fn sent(&mut self, now: u64, packets: u64, c: &WorkerCounters) {
        self.tally.packets[Stage::Tx as usize] += packets;
        self.tally.tx_bursts += 1;
        match self.timed.take() {
            Some((done, [rx, c0, c1, c2, c3])) => {
                let tx = now.wrapping_sub(done);
                c.stage_cycles_add(Stage::Tx, tx);
                // The untimed bursts before this one take the split they ran under.
                self.publish_stages(c);
                self.learn_split([rx, c0, c1, c2, c3, tx]);
            }
            None => self.tally.whole += now.wrapping_sub(self.burst_tsc),
        }
    }

    /// Adds the stage counts kept since the last call to the worker's counters: packets
    /// and bursts per stage, and the untimed bursts' cycles split between the stages.
    /// The worker calls it when a poll finds nothing, every 1024 polls and when it stops;
    /// `sent` on each timed burst. Cheap when there is nothing to add.
    pub fn publish_stages(&mut self, c: &WorkerCounters) {
        if self.tally.bursts == 0 && self.tally.tx_bursts == 0 {
            return;
        }
        let t = std::mem::take(&mut self.tally);
        for (s, share) in Stage::ALL.into_iter().zip(self.split) {
            let bursts = if s == Stage::Tx { t.tx_bursts } else { t.bursts };
            c.stage_packets_add(s, t.packets[s as usize], bursts);
            c.stage_cycles_add(s, ((t.whole as u128 * share as u128) >> 16) as u64);
        }
    }

    /// Takes a timed burst's cycles per stage into the split used for the others.
    fn learn_split(&mut self, cycles: [u64; Stage::COUNT]) {
        for (acc, c) in self.split_cycles.iter_mut().zip(cycles) {
            *acc = *acc - (*acc >> 3) + c;
        }
        let whole = self.split_cycles.iter().sum::<u64>().max(1);
        for (share, acc) in self.split.iter_mut().zip(self.split_cycles) {
            *share = (acc << 16) / whole;
        }
    }
}

// On a timed burst each stage is a function of its own, called once per burst; the
// others run the same per-packet steps (`parse_one`, `shape_one`, `route_one`,
// `mark_one`) in fewer passes.

/// Parses every frame of the burst into its `Pkt`; the verdict says what it is.
#[inline(never)]
fn parse_burst<F: Frame>(frames: &mut [F], pkts: &mut [Pkt], verdicts: &mut [Verdict], in_port: u8) {
    for ((f, p), v) in frames.iter_mut().zip(pkts.iter_mut()).zip(verdicts.iter_mut()) {
        *v = parse_one(f, p, in_port);
    }
}

#[inline(always)]
fn parse_one<F: Frame>(f: &mut F, p: &mut Pkt, in_port: u8) -> Verdict {
    let len = f.pkt_len();
    let csum = f.rx_checksum();
    // The route stage fills in the rest of `Out`.
    match parse::parse_into(f.bytes_mut(), len, in_port, csum, &mut p.meta) {
        Ok(Kind::Ip) => Verdict::Out {
            port: 0,
            prio: Priority::P3,
            class: 0,
            ect: false,
        },
        Ok(Kind::Arp) => Verdict::Control,
        Err(r) => Verdict::Drop(r),
    }
}

/// Packet mode after parsing, in one pass per packet: classify, shape, route, mark.
/// (Parsing is a pass of its own: reading the metadata back right after it was written
/// stalls on store forwarding.) Returns the packets that reached shape, route and mark.
#[inline(never)]
fn finish_packet_mode<F: Frame>(
    t: &Tables,
    meters: &mut [Meter],
    frames: &mut [F],
    pkts: &mut [Pkt],
    verdicts: &mut [Verdict],
    now: u64,
    c: &WorkerCounters,
) -> [u64; 3] {
    let every = t.classifier.without_rules().map(|c| c.0 as u8);
    let mut counts = Counts::default();
    let mut run = ClassRun::new(c);
    for ((f, p), v) in frames.iter_mut().zip(pkts.iter_mut()).zip(verdicts.iter_mut()) {
        if matches!(v, Verdict::Out { .. }) {
            p.class = every.unwrap_or_else(|| classify(t, &p.meta));
            counts.live += 1;
            after_classify(t, None, meters, f, p, v, now, &mut run, &mut counts);
        }
    }
    run.flush();
    [counts.live, counts.routed, counts.marked]
}

/// Flow mode after parse/classify, in one pass per packet: shape, route, mark. Returns
/// the packets routed and marked.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn finish_flow_mode<F: Frame>(
    t: &Tables,
    flows: &mut FlowTable,
    meters: &mut [Meter],
    frames: &mut [F],
    pkts: &mut [Pkt],
    verdicts: &mut [Verdict],
    now: u64,
    run: &mut ClassRun,
    counts: &mut Counts,
) {
    for ((f, p), v) in frames.iter_mut().zip(pkts.iter_mut()).zip(verdicts.iter_mut()) {
        if matches!(v, Verdict::Out { .. }) {
            after_classify(t, Some(&mut *flows), meters, f, p, v, now, run, counts);
        }
    }
}

#[derive(Default)]
struct Counts {
    live: u64,
    routed: u64,
    marked: u64,
}

/// Shape, route and mark of one classified packet still going (`flows` in flow mode).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn after_classify<F: Frame>(
    t: &Tables,
    flows: Option<&mut FlowTable>,
    meters: &mut [Meter],
    f: &mut F,
    p: &mut Pkt,
    v: &mut Verdict,
    now: u64,
    run: &mut ClassRun,
    counts: &mut Counts,
) {
    shape_one(t, meters, f.pkt_len(), p, v, now, run);
    if !matches!(v, Verdict::Out { .. }) {
        return;
    }
    counts.routed += 1;
    let mut flows = flows;
    route_one(t, flows.as_deref_mut(), f, p, v);
    if matches!(v, Verdict::Out { .. } | Verdict::Hold { .. }) {
        counts.marked += 1;
        mark_one(flows, f, p);
    }
}

/// Per-class counts go to the shared block once per run of equal (class, colour), not
/// once per packet: a burst is usually one run.
struct ClassRun<'a> {
    c: &'a WorkerCounters,
    class: usize,
    colour: Colour,
    packets: u64,
    bytes: u64,
}

impl<'a> ClassRun<'a> {
    #[inline(always)]
    fn new(c: &'a WorkerCounters) -> ClassRun<'a> {
        ClassRun {
            c,
            class: usize::MAX,
            colour: Colour::Green,
            packets: 0,
            bytes: 0,
        }
    }

    #[inline(always)]
    fn add(&mut self, class: usize, colour: Colour, len: u32) {
        if (self.class, self.colour) != (class, colour) {
            self.flush();
            (self.class, self.colour) = (class, colour);
        }
        self.packets += 1;
        self.bytes += len as u64;
    }

    #[inline(always)]
    fn flush(&mut self) {
        if self.packets > 0 {
            self.c
                .class_packets_add(self.class, self.colour, self.packets, self.bytes);
            (self.packets, self.bytes) = (0, 0);
        }
    }
}

/// Meters every packet still going by its class (all as arriving at `now`) and applies the
/// class's actions.
#[inline(never)]
fn shape_burst<F: Frame>(
    t: &Tables,
    meters: &mut [Meter],
    frames: &[F],
    pkts: &mut [Pkt],
    verdicts: &mut [Verdict],
    now: u64,
    c: &WorkerCounters,
) {
    let mut run = ClassRun::new(c);
    for ((f, p), v) in frames.iter().zip(pkts.iter_mut()).zip(verdicts.iter_mut()) {
        if matches!(v, Verdict::Out { .. }) {
            shape_one(t, meters, f.pkt_len(), p, v, now, &mut run);
        }
    }
    run.flush();
}

/// Meters one packet of `len` bytes by its class and applies the class's actions.
#[inline(always)]
fn shape_one(t: &Tables, meters: &mut [Meter], len: u32, p: &mut Pkt, v: &mut Verdict, now: u64, run: &mut ClassRun) {
    match shape_class(t, meters, p.class as usize, len, p.meta.dscp(), now, run) {
        Ok((prio, dscp)) => (p.prio, p.dscp) = (prio, dscp),
        Err(r) => *v = Verdict::Drop(r),
    }
}

/// Meters a packet of class `k`, `len` bytes long and received with `dscp`, and applies
/// the class's actions: the priority and the DSCP (or `KEEP`) it leaves with, or why it
/// is dropped.
#[inline(always)]
fn shape_class(
    t: &Tables,
    meters: &mut [Meter],
    k: usize,
    len: u32,
    dscp: u8,
    now: u64,
    run: &mut ClassRun,
) -> Result<(Priority, u8), DropReason> {
    let class = &t.classes[k];
    let meter = &mut meters[k];
    let (prio, dscp_out) = (class.priority, class.dscp.unwrap_or(KEEP));
    if meter.unmetered() {
        // Green, and a green packet is transmitted as it is.
        run.add(k, Colour::Green, len);
        return Ok((prio, dscp_out));
    }
    // Colour-blind meters ignore the incoming colour: do not work it out.
    let pre = if meter.colour_aware {
        pre_colour(dscp)
    } else {
        Colour::Green
    };
    let colour = meter.colour(now, len, pre);
    run.add(k, colour, len);
    match class.action(colour) {
        Action::Transmit => Ok((prio, dscp_out)),
        Action::Drop => Err(if colour == Colour::Red {
            DropReason::MeterViolate
        } else {
            DropReason::MeterExceed
        }),
        Action::Remark(d) => Ok((prio, d)),
        Action::Demote(pr) => Ok((pr, dscp_out)),
    }
}

/// Routes every packet still going (by its flow's path, or by its own in packet mode),
/// rewrites its MACs and TTL. Returns the packets routed.
#[inline(never)]
fn route_burst<F: Frame>(
    t: &Tables,
    flows: &mut FlowTable,
    stateless: bool,
    frames: &mut [F],
    pkts: &mut [Pkt],
    verdicts: &mut [Verdict],
) -> u64 {
    let mut routed = 0u64;
    let mut flows = (!stateless).then_some(flows);
    for ((f, p), v) in frames.iter_mut().zip(pkts.iter_mut()).zip(verdicts.iter_mut()) {
        if matches!(v, Verdict::Out { .. }) {
            routed += 1;
            route_one(t, flows.as_deref_mut(), f, p, v);
        }
    }
    routed
}

/// Routes one packet (by its flow's path when `flows` is given), rewrites its MACs and
/// TTL; the verdict becomes where it goes.
#[inline(always)]
fn route_one<F: Frame>(t: &Tables, flows: Option<&mut FlowTable>, f: &mut F, p: &Pkt, v: &mut Verdict) {
    let path = match flows {
        None => t.resolve_path(&p.meta, || p.meta.key.hash(), PATH_NO_ROUTE, p.class),
        Some(flows) => {
            let fl = flows.get_mut(p.flow);
            if p.reroute {
                fl.state.path = t.resolve_path(&p.meta, || p.hash, fl.state.path, fl.state.class);
                if let Some(h) = t.hops.get(fl.state.path as usize) {
                    fl.state.out_port = h.port as u8;
                }
            }
            fl.state.path
        }
    };
    let hop = match path {
        PATH_NO_ROUTE => Err(DropReason::NoRoute),
        PATH_NOT_UNICAST => Err(DropReason::NotUnicast),
        PATH_NONE_USABLE => Err(DropReason::NoPath),
        PATH_LOCAL => {
            *v = Verdict::Control;
            return;
        }
        path => t.hops.get(path as usize).ok_or(DropReason::NoPath),
    };
    let hop = match hop {
        Ok(h) => h,
        Err(r) => {
            *v = Verdict::Drop(r);
            return;
        }
    };
    let m = &p.meta;
    if m.ttl <= 1 {
        *v = Verdict::Drop(DropReason::TtlExpired);
        return;
    }
    if m.ip_len > hop.mtu {
        *v = Verdict::Drop(DropReason::MtuExceeded);
        return;
    }
    let b = f.bytes_mut();
    let l3 = m.l3 as usize;
    if m.is_v6() {
        b[l3 + 7] -= 1;
    } else if let Some(h) = b.get_mut(l3..l3 + 12) {
        h[8] -= 1;
        let sum = checksum_ttl_decrement_le(u16::from_le_bytes([h[10], h[11]]));
        h[10..12].copy_from_slice(&sum.to_le_bytes());
    }
    b[..12].copy_from_slice(&hop.macs);
    *v = if hop.hold {
        Verdict::Hold { path }
    } else {
        Verdict::Out {
            port: hop.port,
            prio: p.prio,
            class: p.class,
            ect: p.meta.ecn() != 0,
        }
    };
}

/// Sets the DSCP of every packet leaving. Returns the packets marked.
#[inline(never)]
fn mark_burst<F: Frame>(
    flows: &mut FlowTable,
    stateless: bool,
    frames: &mut [F],
    pkts: &[Pkt],
    verdicts: &[Verdict],
) -> u64 {
    let mut marked = 0u64;
    let mut flows = (!stateless).then_some(flows);
    for ((f, p), v) in frames.iter_mut().zip(pkts.iter()).zip(verdicts.iter()) {
        if matches!(v, Verdict::Out { .. } | Verdict::Hold { .. }) {
            marked += 1;
            mark_one(flows.as_deref_mut(), f, p);
        }
    }
    marked
}

/// Sets one packet's DSCP (and remembers it in its flow when `flows` is given).
#[inline(always)]
fn mark_one<F: Frame>(flows: Option<&mut FlowTable>, f: &mut F, p: &Pkt) {
    let dscp = if p.dscp == KEEP { p.meta.dscp() } else { p.dscp };
    if let Some(flows) = flows {
        flows.get_mut(p.flow).state.dscp_out = dscp;
    }
    if dscp != p.meta.dscp() {
        set_dscp(f.bytes_mut(), &p.meta, dscp);
    }
}

/// Packet mode's second half of parse/classify: each packet is classified on its own and
/// nothing is remembered. Returns the packets still going.
#[inline(never)]
fn classify_packets(t: &Tables, pkts: &mut [Pkt], verdicts: &[Verdict]) -> u64 {
    let mut live = 0u64;
    // Without rules the class is the same for all: no fields to gather per packet.
    let every = t.classifier.without_rules().map(|c| c.0 as u8);
    for (p, v) in pkts.iter_mut().zip(verdicts.iter()) {
        if matches!(v, Verdict::Out { .. }) {
            live += 1;
            p.class = every.unwrap_or_else(|| classify(t, &p.meta));
        }
    }
    live
}

/// Flow mode's second half of parse/classify: each packet's flow is looked up (with the
/// burst's buckets prefetched) or created and classified; a flow from an older snapshot
/// is classified again and routed again. Returns the packets still going.
#[inline(never)]
fn track_flows<F: Frame>(
    t: &Tables,
    flows: &mut FlowTable,
    frames: &[F],
    pkts: &mut [Pkt],
    verdicts: &mut [Verdict],
    now_ms: u32,
    ended: &mut impl FnMut(FlowRecord),
) -> u64 {
    // Hashes in a pass of their own: the metadata stores of parsing have settled by now
    // (reading a key back right after writing it stalls on store forwarding).
    for (p, v) in pkts.iter_mut().zip(verdicts.iter()) {
        if matches!(v, Verdict::Out { .. }) {
            p.hash = p.meta.key.hash();
            flows.prefetch(p.hash);
        }
    }
    // Buckets are arriving: find each flow's entry and start loading it too.
    for (p, v) in pkts.iter_mut().zip(verdicts.iter()) {
        if matches!(v, Verdict::Out { .. }) {
            p.candidate = flows.candidate(p.hash, p.meta.key.family == 6);
        }
    }
    look_up_flows(t, flows, frames, pkts, verdicts, now_ms, ended)
}

/// The third part of `track_flows`, for packets whose hashes and candidate entries are
/// known: each packet's flow looked up or created, decided when it needs to be, and
/// counted. Returns the packets still going.
#[inline(always)]
fn look_up_flows<F: Frame>(
    t: &Tables,
    flows: &mut FlowTable,
    frames: &[F],
    pkts: &mut [Pkt],
    verdicts: &mut [Verdict],
    now_ms: u32,
    ended: &mut impl FnMut(FlowRecord),
) -> u64 {
    let mut live = 0u64;
    let evicted_before = flows.counters.evicted;
    for ((f, p), v) in frames.iter().zip(pkts.iter_mut()).zip(verdicts.iter()) {
        if !matches!(v, Verdict::Out { .. }) {
            continue;
        }
        live += 1;
        let found = flows.lookup_or_insert_from(p.candidate, &p.meta.key, p.hash, now_ms, ended);
        track_one(t, flows, found, f.pkt_len(), p, now_ms);
    }
    // A full table may have evicted, for a later packet, the flow of an earlier one of
    // this burst: such packets must not use (or update) the entry's new owner.
    if flows.counters.evicted != evicted_before {
        for (p, v) in pkts.iter().zip(verdicts.iter_mut()) {
            if matches!(v, Verdict::Out { .. }) && flows.get(p.flow).key != p.meta.key {
                *v = Verdict::Drop(DropReason::FlowEvicted);
            }
        }
    }
    live
}

/// Counts a packet of `len` bytes on the flow `found` gave it (deciding the flow when it
/// is new or from an older snapshot) and takes the flow's class.
#[inline(always)]
fn track_one(t: &Tables, flows: &mut FlowTable, found: Found, len: u32, p: &mut Pkt, now_ms: u32) {
    let fl = flows.get_mut(found.index);
    p.flow = found.index;
    p.reroute = found.new || fl.state.generation != t.generation;
    if p.reroute {
        decide_flow(t, fl, &p.meta, found.new);
    }
    fl.state.packets = fl.state.packets.wrapping_add(1);
    fl.state.bytes += len as u64;
    fl.state.last_ms = now_ms;
    if p.meta.flags & meta_flag::TCP_END != 0 {
        fl.state.flags |= flag::CLOSING;
    }
    p.class = fl.state.class;
}

/// A new flow, or one whose decisions are from an older snapshot: classified by these
/// tables, with the path it had carried into their numbering (none for a new flow) for
/// the route stage to keep or replace. Out of line: most packets' flows need none of it.
#[cold]
#[inline(never)]
fn decide_flow(t: &Tables, fl: &mut crate::flow::FlowEntry, m: &Meta, new: bool) {
    fl.state.class = classify(t, m);
    if new {
        fl.state.dscp_in = m.dscp();
    }
    fl.state.path = if new {
        PATH_NO_ROUTE
    } else {
        t.carry_path(fl.state.generation, fl.state.path)
    };
    fl.state.generation = t.generation;
}

/// A packet's class by the snapshot's rules.
#[inline(always)]
fn classify(t: &Tables, m: &Meta) -> u8 {
    let (class, _) = t.classifier.classify(&Fields {
        v6: m.is_v6(),
        src: m.key.src,
        dst: m.key.dst,
        src_port: m.key.src_port,
        dst_port: m.key.dst_port,
        proto: m.key.proto,
        vlan: (m.key.vlan != 0).then_some((m.key.vlan >> if m.key.vlan > 0xfff { 12 } else { 0 }) as u16),
        in_port: m.key.in_port,
        dscp: m.dscp(),
    });
    class.0 as u8
}

/// The IPv4 header checksum after the TTL went down by one, on the checksum's two bytes
/// read as a little-endian word (`u16::from_le_bytes`), giving the new bytes the same
/// way. The 16-bit word holding TTL fell by 0x0100, so by RFC 1624 (eqn. 3) the
/// big-endian checksum becomes HC' = ~(~HC + 0xfeff), which is HC + 0x0100 in
/// one's-complement arithmetic. That arithmetic does not care about byte order (RFC
/// 1071): adding 0x0100 to the big-endian word is adding 1 to the little-endian one,
/// with the carry out of the top wrapping round, and no byte swap is needed. Zero is
/// written 0x0000, never 0xffff, as eqn. 3 and a full recomputation write it.
#[inline(always)]
pub fn checksum_ttl_decrement_le(hc: u16) -> u16 {
    let sum = hc as u32 + 1;
    let sum = (sum + (sum >> 16)) as u16;
    if sum == 0xffff {
        0
    } else {
        sum
    }
}

/// Rewrites the six DSCP bits, leaving ECN alone; IPv4's checksum is updated (RFC 1624).
#[inline(always)]
pub fn set_dscp(b: &mut [u8], m: &Meta, dscp: u8) {
    let l3 = m.l3 as usize;
    if m.is_v6() {
        // Traffic class spans bytes 0 and 1: version(4) tc(8) flow(20).
        let old = ((b[l3] & 0x0f) << 4) | (b[l3 + 1] >> 4);
        let tc = (old & 0x03) | (dscp << 2);
        b[l3] = (b[l3] & 0xf0) | (tc >> 4);
        b[l3 + 1] = (b[l3 + 1] & 0x0f) | (tc << 4);
    } else if let Some(h) = b.get_mut(l3..l3 + 12) {
        let old = u16::from_be_bytes([h[0], h[1]]);
        h[1] = (h[1] & 0x03) | dscp << 2;
        let new = u16::from_be_bytes([h[0], h[1]]);
        let sum = checksum_update16(u16::from_be_bytes([h[10], h[11]]), old, new);
        h[10..12].copy_from_slice(&sum.to_be_bytes());
    }
}

/// Sets ECN to CE (congestion experienced), as the egress scheduler asks.
#[inline(always)]
pub fn set_ce(b: &mut [u8], m: &Meta) {
    let l3 = m.l3 as usize;
    if m.is_v6() {
        b[l3 + 1] |= 0x30;
    } else if let Some(h) = b.get_mut(l3..l3 + 12) {
        let old = u16::from_be_bytes([h[0], h[1]]);
        h[1] |= 0x03;
        let new = u16::from_be_bytes([h[0], h[1]]);
        let sum = checksum_update16(u16::from_be_bytes([h[10], h[11]]), old, new);
        h[10..12].copy_from_slice(&sum.to_be_bytes());
    }
}

mod flowpass;
mod plain;

#[cfg(test)]
mod tests;
