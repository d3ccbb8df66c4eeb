//! Plain forwarding: packet mode when nothing is left for classify, shape and mark to
//! decide per packet (no rules, the one class unmetered). Then a packet's fate depends
//! only on its headers and the routes, and the common packet (untagged IPv4 UDP or TCP,
//! see `parse::plain_v4`) is parsed, routed and rewritten in one pass that keeps its
//! headers in registers, as l3fwd does. Every other packet, and every packet that would
//! not simply leave (no route, a local or unresolved next hop, TTL, MTU), takes the
//! general steps, which decide it exactly as they decide any packet; the plain pass only
//! ever produces `Verdict::Out`, with the same bytes the general steps would write.

use super::{
    after_classify, burst_mask, checksum_ttl_decrement_le, parse_one, set_dscp, ClassRun, Counts, Frame, Pkt, Verdict,
    BURST,
};
use crate::parse::{self, Meta, RxChecksum};
use crate::stats::WorkerCounters;
use crate::tables::{Hop, Tables, PATH_NO_ROUTE};
use qos::class::Priority;
use qos::meter::{Colour, Meter};

/// What plain forwarding needs to know of the one class every packet is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PlainClass {
    pub id: u8,
    pub prio: Priority,
    /// DSCP to leave with (`None`: the packet's own).
    pub dscp: Option<u8>,
    /// The class has an SLA: its paths are chosen among those meeting it.
    pub sla: bool,
}

impl PlainClass {
    /// The class, when this snapshot and these meters leave classify, shape and mark
    /// nothing to decide per packet: no rules, and the class unmetered.
    #[inline(always)]
    pub fn of(t: &Tables, meters: &[Meter]) -> Option<PlainClass> {
        let id = t.classifier.without_rules()?.0 as usize;
        let class = t.classes.get(id)?;
        meters.get(id).filter(|m| m.unmetered())?;
        Some(PlainClass {
            id: id as u8,
            prio: class.priority,
            dscp: class.dscp,
            sla: t.class_profile.get(id).is_some_and(|&p| p != 0),
        })
    }
}

/// What the plain pass did with a burst.
#[derive(Debug, Clone, Copy)]
pub(super) struct PlainBurst {
    /// The packets that reached shape, route and mark, as `finish_packet_mode` counts.
    pub counts: [u64; 3],
    /// The packets left to the general steps (bit i: packet i), whose verdicts are
    /// written. The others' are not (see `Sent::verdicts`).
    pub rest: u32,
    /// The packets the plain pass sent.
    pub sent: Sent,
    /// The bytes of the whole burst.
    pub bytes: u64,
}

/// The packets the plain pass sent, whose verdicts are not written until asked for (a
/// burst that leaves whole by one port never needs them).
#[derive(Debug, Clone, Copy)]
pub(super) struct Sent {
    /// Bit i: packet i was sent.
    pub mask: u32,
    /// Their ports, or-ed and and-ed together: equal when they all leave by one port.
    pub any_port: u16,
    pub every_port: u16,
    pub class: PlainClass,
}

/// What the plain pass keeps of a packet it sent, for its verdict: the egress port. (The
/// rest is the class's, or in the frame: marking leaves the ECN field as received.)
pub(super) type SentSlot = u16;

impl Sent {
    /// Writes the verdicts of the packets sent, from their `slots` and `frames`.
    pub fn verdicts<F: Frame>(&self, slots: &[SentSlot; BURST], frames: &mut [F], verdicts: &mut [Verdict]) {
        each_bit(self.mask, |i| {
            verdicts[i] = Verdict::Out {
                port: slots[i],
                prio: self.class.prio,
                class: self.class.id,
                ect: frames[i].bytes_mut()[PLAIN_META.l3 as usize + 1] & 3 != 0,
            }
        });
    }
}

/// The metadata of every packet the plain pass sent, as far as it is read afterwards
/// (the egress scheduler's CE mark): IPv4, the IP header at 14.
pub(super) const PLAIN_META: Meta = Meta {
    key: crate::flow::FlowKey {
        src: 0,
        dst: 0,
        src_port: 0,
        dst_port: 0,
        vlan: 0,
        proto: 0,
        in_port: 0,
        family: 4,
    },
    l3: 14,
    l4: 34,
    ip_len: 0,
    tos: 0,
    ttl: 0,
    flags: 0,
};

/// Parse, classify, shape, route and mark of a burst in packet mode for `class` (see
/// the module's note). What the verdicts of the packets sent need goes to `slots`; the
/// verdicts of the others are written, theirs are not (`Sent::verdicts` writes them).
#[allow(clippy::too_many_arguments)]
#[inline(never)]
pub(super) fn forward_burst<F: Frame>(
    t: &Tables,
    meters: &mut [Meter],
    class: PlainClass,
    frames: &mut [F],
    pkts: &mut [Pkt],
    verdicts: &mut [Verdict],
    slots: &mut [SentSlot; BURST],
    in_port: u8,
    now: u64,
    c: &WorkerCounters,
) -> PlainBurst {
    // The plain packets, in a loop that holds nothing else (one without marking when the
    // class keeps the packets' DSCP); the others are marked in `rest` (bit i: packet i)
    // for the general steps after it.
    let pass = if class.dscp.is_some() {
        plain_pass::<F, true>(t, class, frames, slots, in_port)
    } else {
        plain_pass::<F, false>(t, class, frames, slots, in_port)
    };
    let rest = pass.rest;
    let plain = pass.sent.mask.count_ones() as u64;
    let mut rest_bytes = 0u64;
    each_bit(rest, |i| rest_bytes += frames[i].pkt_len() as u64);
    if plain > 0 {
        c.class_packets_add(class.id as usize, Colour::Green, plain, pass.bytes);
    }
    let mut b = PlainBurst {
        counts: [plain; 3],
        rest,
        sent: pass.sent,
        bytes: pass.bytes + rest_bytes,
    };
    if rest == 0 {
        return b;
    }
    // The general steps, parsing in a pass of its own as `parse_burst` does.
    each_bit(rest, |i| verdicts[i] = parse_one(&mut frames[i], &mut pkts[i], in_port));
    let mut counts = Counts::default();
    let mut run = ClassRun::new(c);
    each_bit(rest, |i| {
        let (f, p, v) = (&mut frames[i], &mut pkts[i], &mut verdicts[i]);
        if matches!(v, Verdict::Out { .. }) {
            p.class = class.id;
            counts.live += 1;
            after_classify(t, None, meters, f, p, v, now, &mut run, &mut counts);
        }
    });
    run.flush();
    b.counts = [counts.live + plain, counts.routed + plain, counts.marked + plain];
    b
}

/// What `plain_pass` did.
struct Pass {
    sent: Sent,
    /// The packets left to the general steps.
    rest: u32,
    /// The bytes of the packets sent.
    bytes: u64,
}

/// Forwards the plain packets of a burst (`MARK`: setting the class's DSCP), keeping
/// what their verdicts need in `slots`.
#[inline(always)]
fn plain_pass<F: Frame, const MARK: bool>(
    t: &Tables,
    class: PlainClass,
    frames: &mut [F],
    slots: &mut [SentSlot; BURST],
    in_port: u8,
) -> Pass {
    const { assert!(BURST <= 32) };
    let (mut rest, mut any, mut every, mut bytes) = (0u32, 0u16, u16::MAX, 0u64);
    // A class with an SLA has a choice to make for every group: no direct hops.
    let direct = if class.sla { &[] } else { t.direct_hops() };
    for (i, (f, slot)) in frames.iter_mut().zip(slots.iter_mut()).enumerate() {
        let len = f.pkt_len();
        if let Some(port) = forward_one::<F, MARK>(t, direct, class, f, len, in_port) {
            *slot = port;
            any |= port;
            every &= port;
            bytes += len as u64;
        } else {
            rest |= 1 << i;
        }
    }
    let all = burst_mask(frames.len());
    Pass {
        sent: Sent {
            mask: all & !rest,
            any_port: any,
            every_port: every,
            class,
        },
        rest,
        bytes,
    }
}

/// Calls `step` with the index of every bit set in `bits`, lowest first.
#[inline(always)]
pub(super) fn each_bit(mut bits: u32, mut step: impl FnMut(usize)) {
    while bits != 0 {
        step(bits.trailing_zeros() as usize);
        bits &= bits - 1;
    }
}

/// One packet, when it is plain and simply leaves: routed and rewritten; returned is its
/// egress port. `None` leaves the frame untouched.
#[inline(always)]
fn forward_one<F: Frame, const MARK: bool>(
    t: &Tables,
    direct: &[Hop],
    class: PlainClass,
    f: &mut F,
    len: u32,
    in_port: u8,
) -> Option<u16> {
    let csum = f.rx_checksum();
    let b = f.bytes_mut();
    let h = parse::plain_v4(b, len, csum)?;
    // A group with one path (`direct`) is a single load from the route. The special
    // routes (local, not unicast) are no group's and go the general way.
    let g = t.route_v4(h.dst)?;
    let hop = match direct.get(g as usize) {
        // The common case in one test: a group's one hop, which the frame fits.
        Some(hop) if h.total <= hop.mtu => hop,
        // Too big for it: the general steps say what becomes of the frame.
        Some(hop) if hop.mtu != 0 => return None,
        // A group with a choice to make (`Hop::CHOOSE`), or a class with an SLA.
        _ => chosen_hop(t, g, b, len, csum, in_port, class.id).filter(|hop| h.total <= hop.mtu)?,
    };
    // The TTL read where it is written, not kept from the parse across the route.
    if b[22] <= 1 {
        return None;
    }
    // The same rewrites, in the same order, as `route_one` and `mark_one`.
    b[22] -= 1;
    let sum = checksum_ttl_decrement_le(u16::from_le_bytes([b[24], b[25]]));
    b[24..26].copy_from_slice(&sum.to_le_bytes());
    b[..12].copy_from_slice(&hop.macs);
    if MARK {
        if let Some(d) = class.dscp.filter(|&d| d != h.tos >> 2) {
            set_dscp(b, &PLAIN_META, d);
        }
    }
    Some(hop.port)
}

/// The hop of a packet routed to group `g` when there is a choice to make (several paths,
/// or a class with an SLA): as the general route step chooses it. `None` when that gives
/// no hop, or one still being resolved.
///
/// Out of line, and the frame's key read again here, so that the loop over the common
/// case (a route to one path) keeps no more of the header than it needs. Routes to groups
/// of several paths pay for that on every packet: a second read of the header (about 40
/// instructions), still well short of the general steps.
#[cold]
#[inline(never)]
fn chosen_hop<'t>(
    t: &'t Tables,
    g: u32,
    frame: &[u8],
    len: u32,
    csum: RxChecksum,
    in_port: u8,
    class: u8,
) -> Option<&'t Hop> {
    let key = parse::plain_v4(frame, len, csum)?.key(in_port);
    let path = t.resolve_route(Some(g), || key.hash(), PATH_NO_ROUTE, class);
    t.hops.get(path as usize).filter(|hop| !hop.hold)
}
