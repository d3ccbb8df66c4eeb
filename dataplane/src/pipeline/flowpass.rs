//! Flow mode's untimed bursts. The common packet (untagged IPv4 UDP or TCP, see
//! `parse::plain_v4`) of a flow already in the table and decided by this snapshot needs
//! nothing from the general steps but what its flow remembers: its class, and its path,
//! whose hop is one load away. Such packets are parsed into registers, hashed and their
//! buckets prefetched in a first pass, their entries found and prefetched in a second,
//! and in a third each is counted on its flow, metered, routed, rewritten and marked
//! where it stands in the burst. Every other packet (a new flow, a flow from an older
//! snapshot, a next hop being resolved, TTL or MTU at the edge, any other kind of frame)
//! takes the general steps at that same place in the third pass, so meters, class
//! counters and flows see the packets in the order they came, as in a timed burst. A
//! packet is decided whole by one or the other before the next is looked at. (Frames of
//! other kinds are parsed, hashed and prefetched in the first passes too.) A burst with
//! no plain packet at all takes the general steps as a timed burst does, stage after
//! stage over the whole burst, which costs IPv6 traffic fewer instructions.

use super::{
    after_classify, burst_mask, checksum_ttl_decrement_le, finish_flow_mode, look_up_flows, parse_one, set_dscp,
    shape_class, track_one, ClassRun, Counts, Frame, Pkt, Verdict, BURST, KEEP,
};
use crate::flow::{flag, FlowRecord, FlowTable};
use crate::parse::{self, PlainV4};
use crate::stats::WorkerCounters;
use crate::tables::Tables;
use qos::meter::Meter;

use super::plain::{each_bit, PLAIN_META};

/// What `flow_burst` did.
#[derive(Debug, Clone, Copy)]
pub(super) struct FlowBurst {
    /// The packets that reached shape, route and mark.
    pub counts: [u64; 3],
    /// The packets that took the general steps (bit i: packet i); the others' metadata
    /// is `PLAIN_META`.
    pub general: u32,
    /// The packets that leave (`Verdict::Out`, bit i: packet i), whose ports are in
    /// `ports`.
    pub sent: u32,
    /// The bytes of the whole burst.
    pub bytes: u64,
}

/// A plain header that has not been looked at yet.
pub(super) const NO_HEADER: PlainV4 = PlainV4 {
    src: 0,
    dst: 0,
    src_port: 0,
    dst_port: 0,
    proto: 0,
    total: 0,
    tos: 0,
    ttl: 0,
    tcp_end: false,
};

/// Parse/classify, shape, route and mark of a burst in flow mode (see the module's
/// note). Every verdict is written.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
pub(super) fn flow_burst<F: Frame>(
    t: &Tables,
    flows: &mut FlowTable,
    meters: &mut [Meter],
    frames: &mut [F],
    pkts: &mut [Pkt],
    headers: &mut [PlainV4; BURST],
    verdicts: &mut [Verdict],
    ports: &mut [u16; BURST],
    in_port: u8,
    now: u64,
    now_ms: u32,
    c: &WorkerCounters,
    ended: &mut impl FnMut(FlowRecord),
) -> FlowBurst {
    // Parsed and hashed, buckets prefetched.
    let (mut plain, mut parsed, mut bytes) = (0u32, 0u32, 0u64);
    for (i, (((f, p), h), v)) in frames
        .iter_mut()
        .zip(pkts.iter_mut())
        .zip(headers.iter_mut())
        .zip(verdicts.iter_mut())
        .enumerate()
    {
        let len = f.pkt_len();
        bytes += len as u64;
        let csum = f.rx_checksum();
        if let Some(plain_h) = parse::plain_v4(f.bytes_mut(), len, csum) {
            p.hash = plain_h.key(in_port).hash();
            flows.prefetch(p.hash);
            *h = plain_h;
            plain |= 1 << i;
        } else {
            // The general parse; its drops and packets for the control thread are
            // decided here.
            *v = parse_one(f, p, in_port);
            if matches!(v, Verdict::Out { .. }) {
                parsed |= 1 << i;
            }
        }
    }
    // The other packets' keys hashed in a pass of their own (reading a key back right
    // after parsing wrote it stalls on store forwarding), their buckets prefetched too.
    each_bit(parsed, |i| {
        pkts[i].hash = pkts[i].meta.key.hash();
        flows.prefetch(pkts[i].hash);
    });
    // Buckets arriving: each entry found by its signature, and loading.
    each_bit(plain, |i| pkts[i].candidate = flows.candidate(pkts[i].hash, false));
    each_bit(parsed, |i| {
        pkts[i].candidate = flows.candidate(pkts[i].hash, pkts[i].meta.key.family == 6)
    });
    if plain == 0 {
        // Nothing for the flow pass (IPv6, VLAN-tagged, ... or nothing going): the general
        // steps stage after stage over the whole burst, as a timed burst takes them.
        let mut counts = Counts {
            live: look_up_flows(t, flows, frames, pkts, verdicts, now_ms, ended),
            ..Counts::default()
        };
        let mut run = ClassRun::new(c);
        finish_flow_mode(t, flows, meters, frames, pkts, verdicts, now, &mut run, &mut counts);
        run.flush();
        let mut sent = 0u32;
        for (i, v) in verdicts.iter().enumerate() {
            if let Verdict::Out { port, .. } = *v {
                sent |= 1 << i;
                ports[i] = port;
            }
        }
        return FlowBurst {
            counts: [counts.live, counts.routed, counts.marked],
            general: burst_mask(frames.len()),
            sent,
            bytes,
        };
    }
    // Each packet decided where it stands: runs of packets the flow pass decides, in a
    // loop without calls, between the packets that need the general steps.
    let (mut general_mask, mut sent) = (0u32, 0u32);
    let mut counts = Counts::default();
    let mut run = ClassRun::new(c);
    let n = frames.len();
    let mut i = 0;
    while i < n {
        while i < n {
            let fast = if plain & (1 << i) != 0 {
                let (f, p, v) = (&mut frames[i], &mut pkts[i], &mut verdicts[i]);
                established(t, flows, meters, f, p, &headers[i], v, in_port, now, now_ms, &mut run)
            } else {
                Fast::No
            };
            match fast {
                Fast::Out(port) => {
                    sent |= 1 << i;
                    ports[i] = port;
                }
                Fast::Dropped => {}
                Fast::No => break,
            }
            i += 1;
        }
        if i < n {
            general_mask |= 1 << i;
            let (f, p, v) = (&mut frames[i], &mut pkts[i], &mut verdicts[i]);
            let step = if plain & (1 << i) != 0 {
                Step::Parse
            } else if parsed & (1 << i) != 0 {
                Step::Parsed
            } else {
                // Decided by parsing.
                i += 1;
                continue;
            };
            general(
                t,
                flows,
                meters,
                f,
                p,
                v,
                step,
                in_port,
                now,
                now_ms,
                &mut run,
                &mut counts,
                ended,
            );
            if let Verdict::Out { port, .. } = *v {
                sent |= 1 << i;
                ports[i] = port;
            }
            i += 1;
        }
    }
    run.flush();
    // Each packet the flow pass decided reached shape; those it sent, route and mark too.
    let fast = (plain & !general_mask).count_ones() as u64;
    let fast_out = (sent & !general_mask).count_ones() as u64;
    FlowBurst {
        counts: [counts.live + fast, counts.routed + fast_out, counts.marked + fast_out],
        general: general_mask,
        sent,
        bytes,
    }
}

/// What `established` did with a packet.
enum Fast {
    /// Nothing: it is for the general steps.
    No,
    /// Dropped by its class's meter.
    Dropped,
    /// Sent to this port.
    Out(u16),
}

/// A plain packet whose candidate entry is its flow, decided by this snapshot, routed to a
/// hop that takes it: counted on the flow, metered, rewritten and marked, as the general
/// steps would. `Fast::No`, with nothing touched, for any other.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn established<F: Frame>(
    t: &Tables,
    flows: &mut FlowTable,
    meters: &mut [Meter],
    f: &mut F,
    p: &mut Pkt,
    h: &PlainV4,
    v: &mut Verdict,
    in_port: u8,
    now: u64,
    now_ms: u32,
    run: &mut ClassRun,
) -> Fast {
    let Some(fl) = flows.entry_mut(p.candidate) else {
        return Fast::No;
    };
    if fl.state.flags & flag::LIVE == 0 || fl.state.generation != t.generation || !fl.holds_v4(&h.key(in_port)) {
        return Fast::No;
    }
    // The special paths (no route, local, ...) are no hop's.
    let Some(hop) = t.hops.get(fl.state.path as usize) else {
        return Fast::No;
    };
    // The route step's checks, made before anything changes: what fails them is for the
    // general steps to decide (after shaping, as they do).
    if hop.hold || h.ttl <= 1 || h.total > hop.mtu {
        return Fast::No;
    }
    let len = f.pkt_len();
    p.flow = p.candidate;
    fl.state.packets = fl.state.packets.wrapping_add(1);
    fl.state.bytes += len as u64;
    fl.state.last_ms = now_ms;
    if h.tcp_end {
        fl.state.flags |= flag::CLOSING;
    }
    let class = fl.state.class;
    let dscp_in = h.tos >> 2;
    let (prio, dscp) = match shape_class(t, meters, class as usize, len, dscp_in, now, run) {
        Ok(d) => d,
        Err(r) => {
            *v = Verdict::Drop(r);
            return Fast::Dropped;
        }
    };
    let dscp = if dscp == KEEP { dscp_in } else { dscp };
    fl.state.dscp_out = dscp;
    // The same rewrites, in the same order, as `route_one` and `mark_one`.
    let Some(b) = f.bytes_mut().first_chunk_mut::<34>() else {
        unreachable!("plain_v4 saw at least 54 bytes")
    };
    b[22] -= 1;
    let sum = checksum_ttl_decrement_le(u16::from_le_bytes([b[24], b[25]]));
    b[24..26].copy_from_slice(&sum.to_le_bytes());
    b[..12].copy_from_slice(&hop.macs);
    if dscp != dscp_in {
        set_dscp(b, &PLAIN_META, dscp);
    }
    *v = Verdict::Out {
        port: hop.port,
        prio,
        class,
        ect: h.tos & 3 != 0,
    };
    Fast::Out(hop.port)
}

/// Where the general steps start for a packet.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    /// A plain packet the flow pass did not decide: parsed again, in full.
    Parse,
    /// Parsed, hashed, and its candidate entry found.
    Parsed,
}

/// The general steps for one packet going on after parsing: its flow looked up (created,
/// decided), shaped, routed and marked.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn general<F: Frame>(
    t: &Tables,
    flows: &mut FlowTable,
    meters: &mut [Meter],
    f: &mut F,
    p: &mut Pkt,
    v: &mut Verdict,
    step: Step,
    in_port: u8,
    now: u64,
    now_ms: u32,
    run: &mut ClassRun,
    counts: &mut Counts,
    ended: &mut impl FnMut(FlowRecord),
) {
    if step == Step::Parse {
        *v = parse_one(f, p, in_port);
        if !matches!(v, Verdict::Out { .. }) {
            return;
        }
        p.hash = p.meta.key.hash();
        // Its entry, if any, is the one the flow pass turned down: look it up afresh.
        p.candidate = u32::MAX;
    }
    counts.live += 1;
    let found = flows.lookup_or_insert_from(p.candidate, &p.meta.key, p.hash, now_ms, ended);
    track_one(t, flows, found, f.pkt_len(), p, now_ms);
    after_classify(t, Some(flows), meters, f, p, v, now, run, counts);
}
