//! The control plane's own packets, without DPDK: what arrives for the appliance (ARP,
//! ICMP and ICMPv6 echo, neighbour solicitations and advertisements, STAMP replies to its
//! probes) read into a typed `Pkt`, and the frames it sends built whole — ARP requests,
//! replies and gratuitous ARP, neighbour solicitations and (unsolicited) advertisements,
//! echo replies, and the probes themselves (ICMP echo and STAMP, RFC 8762).
//!
//! Frames are untagged Ethernet II. Everything read is bounds-checked and every checksum
//! verified; what does not parse is an `Err` with a reason the caller counts.

use crate::wire::{
    be16, checksum, ipv4_header_checksum, l4_checksum, l4_checksum_ok, ones_complement_sum, ETHERTYPE_ARP,
    ETHERTYPE_IPV4, ETHERTYPE_IPV6,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const BROADCAST: [u8; 6] = [0xff; 6];
pub const STAMP_PORT: u16 = 862;
/// An unauthenticated STAMP test packet is 44 bytes of UDP payload both ways.
pub const STAMP_LEN: usize = 44;
/// Ethernet's smallest frame without its FCS: shorter frames are padded to it.
pub const MIN_FRAME: usize = 60;
/// Hop limit / TTL of what the appliance originates.
pub const TTL: u8 = 64;

const ICMP: u8 = 1;
const UDP: u8 = 17;
const ICMPV6: u8 = 58;

/// A frame for the appliance, read.
#[derive(Debug, Clone, PartialEq)]
pub enum Pkt<'a> {
    /// ARP for IPv4 over Ethernet; `op` 1 is a request, 2 a reply.
    Arp {
        op: u16,
        sha: [u8; 6],
        spa: Ipv4Addr,
        tpa: Ipv4Addr,
    },
    /// An ICMP or ICMPv6 echo request; `echo_reply` answers it.
    EchoRequest { src: IpAddr, dst: IpAddr },
    EchoReply {
        src: IpAddr,
        dst: IpAddr,
        id: u16,
        seq: u16,
        data: &'a [u8],
    },
    Solicit {
        src: Ipv6Addr,
        target: Ipv6Addr,
        /// The source link-layer address option.
        sll: Option<[u8; 6]>,
    },
    Advert {
        src: Ipv6Addr,
        target: Ipv6Addr,
        /// The target link-layer address option.
        tll: Option<[u8; 6]>,
    },
    /// A STAMP session-reflector packet: `seq` and `t1` are the sender's (ours), `t2` and
    /// `t3` the reflector's receive and transmit times, all NTP format.
    StampReply {
        src: IpAddr,
        dst: IpAddr,
        dst_port: u16,
        seq: u32,
        t1: u64,
        t2: u64,
        t3: u64,
    },
    /// Well-formed, for the appliance, but nothing it answers (other ICMP types, UDP to a
    /// port it does not serve, TCP, other EtherTypes): counted by the caller.
    Unhandled(&'static str),
}

/// A frame read: its Ethernet addresses and what it carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame<'a> {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub pkt: Pkt<'a>,
}

fn mac_at(f: &[u8], at: usize) -> [u8; 6] {
    f[at..at + 6].try_into().expect("6 bytes")
}

fn v4_at(f: &[u8], at: usize) -> Ipv4Addr {
    <[u8; 4]>::try_from(&f[at..at + 4]).expect("4 bytes").into()
}

fn v6_at(f: &[u8], at: usize) -> Ipv6Addr {
    <[u8; 16]>::try_from(&f[at..at + 16]).expect("16 bytes").into()
}

/// Reads a frame addressed to the appliance (or broadcast / multicast). `stamp_port` is the
/// UDP port STAMP reflectors answer from.
pub fn parse(f: &[u8], stamp_port: u16) -> Result<Frame<'_>, &'static str> {
    if f.len() < 14 {
        return Err("truncated ethernet");
    }
    let (dst_mac, src_mac) = (mac_at(f, 0), mac_at(f, 6));
    let frame = |pkt| Ok(Frame { dst_mac, src_mac, pkt });
    let l3 = 14;
    match be16(f, 12) {
        ETHERTYPE_ARP => {
            if f.len() < l3 + 28 {
                return Err("truncated arp");
            }
            if be16(f, l3) != 1 || be16(f, l3 + 2) != ETHERTYPE_IPV4 || f[l3 + 4] != 6 || f[l3 + 5] != 4 {
                return Err("arp not for ipv4 over ethernet");
            }
            frame(Pkt::Arp {
                op: be16(f, l3 + 6),
                sha: mac_at(f, l3 + 8),
                spa: v4_at(f, l3 + 14),
                tpa: v4_at(f, l3 + 24),
            })
        }
        ETHERTYPE_IPV4 => {
            if f.len() < l3 + 20 || f[l3] >> 4 != 4 {
                return Err("truncated ipv4");
            }
            let ihl = (f[l3] & 0xf) as usize * 4;
            let total = be16(f, l3 + 2) as usize;
            if ihl < 20 || total < ihl || f.len() < l3 + total {
                return Err("bad ipv4 length");
            }
            if ones_complement_sum(&f[l3..l3 + ihl]) != 0xffff {
                return Err("bad ipv4 checksum");
            }
            if be16(f, l3 + 6) & 0x3fff != 0 {
                return frame(Pkt::Unhandled("ipv4 fragment"));
            }
            let (src, dst) = (IpAddr::V4(v4_at(f, l3 + 12)), IpAddr::V4(v4_at(f, l3 + 16)));
            let seg = &f[l3 + ihl..l3 + total];
            match f[l3 + 9] {
                ICMP => {
                    if seg.len() < 8 {
                        return Err("truncated icmp");
                    }
                    if ones_complement_sum(seg) != 0xffff {
                        return Err("bad icmp checksum");
                    }
                    match seg[0] {
                        8 => frame(Pkt::EchoRequest { src, dst }),
                        0 => frame(echo_reply_of(src, dst, seg)),
                        _ => frame(Pkt::Unhandled("icmp type")),
                    }
                }
                UDP => udp(f, l3, seg, false, src, dst, stamp_port).and_then(frame),
                _ => frame(Pkt::Unhandled("ipv4 protocol")),
            }
        }
        ETHERTYPE_IPV6 => {
            if f.len() < l3 + 40 || f[l3] >> 4 != 6 {
                return Err("truncated ipv6");
            }
            let end = l3 + 40 + be16(f, l3 + 4) as usize;
            if f.len() < end {
                return Err("bad ipv6 length");
            }
            let (src6, dst6) = (v6_at(f, l3 + 8), v6_at(f, l3 + 24));
            let (src, dst) = (IpAddr::V6(src6), IpAddr::V6(dst6));
            let seg = &f[l3 + 40..end];
            match f[l3 + 6] {
                ICMPV6 => {
                    if seg.len() < 8 {
                        return Err("truncated icmpv6");
                    }
                    if !l4_checksum_ok(f, l3, seg, true, ICMPV6) {
                        return Err("bad icmpv6 checksum");
                    }
                    let nd = matches!(seg[0], 135 | 136);
                    // RFC 4861 7.1.1: neighbour discovery must come with hop limit 255
                    // (so it cannot have been routed).
                    if nd && (f[l3 + 7] != 255 || seg[1] != 0 || seg.len() < 24) {
                        return Err("invalid neighbour discovery");
                    }
                    match seg[0] {
                        128 => frame(Pkt::EchoRequest { src, dst }),
                        129 => frame(echo_reply_of(src, dst, seg)),
                        135 => frame(Pkt::Solicit {
                            src: src6,
                            target: v6_at(seg, 8),
                            sll: nd_option(&seg[24..], 1)?,
                        }),
                        136 => frame(Pkt::Advert {
                            src: src6,
                            target: v6_at(seg, 8),
                            tll: nd_option(&seg[24..], 2)?,
                        }),
                        _ => frame(Pkt::Unhandled("icmpv6 type")),
                    }
                }
                UDP => udp(f, l3, seg, true, src, dst, stamp_port).and_then(frame),
                _ => frame(Pkt::Unhandled("ipv6 next header")),
            }
        }
        _ => frame(Pkt::Unhandled("ethertype")),
    }
}

/// An ICMP or ICMPv6 echo reply (`seg` at least 8 bytes).
fn echo_reply_of<'a>(src: IpAddr, dst: IpAddr, seg: &'a [u8]) -> Pkt<'a> {
    Pkt::EchoReply {
        src,
        dst,
        id: be16(seg, 4),
        seq: be16(seg, 6),
        data: &seg[8..],
    }
}

/// The link-layer address in the first neighbour-discovery option of type `kind`.
fn nd_option(mut opts: &[u8], kind: u8) -> Result<Option<[u8; 6]>, &'static str> {
    let mut found = None;
    while !opts.is_empty() {
        if opts.len() < 2 || opts[1] == 0 || opts.len() < opts[1] as usize * 8 {
            return Err("bad neighbour discovery option");
        }
        let len = opts[1] as usize * 8;
        if opts[0] == kind && found.is_none() {
            found = Some(mac_at(opts, 2));
        }
        opts = &opts[len..];
    }
    Ok(found)
}

fn udp<'a>(
    f: &[u8],
    l3: usize,
    seg: &'a [u8],
    v6: bool,
    src: IpAddr,
    dst: IpAddr,
    stamp_port: u16,
) -> Result<Pkt<'a>, &'static str> {
    if seg.len() < 8 || (be16(seg, 4) as usize) < 8 || be16(seg, 4) as usize > seg.len() {
        return Err("bad udp length");
    }
    let seg = &seg[..be16(seg, 4) as usize];
    // A zero checksum means none, which IPv6 does not allow.
    if (v6 || be16(seg, 6) != 0) && !l4_checksum_ok(f, l3, seg, v6, UDP) {
        return Err("bad udp checksum");
    }
    if be16(seg, 0) != stamp_port {
        return Ok(Pkt::Unhandled("udp port"));
    }
    let p = &seg[8..];
    if p.len() < STAMP_LEN {
        return Err("truncated stamp");
    }
    let u64_at = |at: usize| u64::from_be_bytes(p[at..at + 8].try_into().expect("8 bytes"));
    Ok(Pkt::StampReply {
        src,
        dst,
        dst_port: be16(seg, 2),
        seq: u32::from_be_bytes(p[24..28].try_into().expect("4 bytes")),
        t1: u64_at(28),
        t2: u64_at(16),
        t3: u64_at(4),
    })
}

// ---- building --------------------------------------------------------------------------

fn ethernet(dst: [u8; 6], src: [u8; 6], ethertype: u16, capacity: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(capacity.max(MIN_FRAME));
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

fn pad(mut f: Vec<u8>) -> Vec<u8> {
    if f.len() < MIN_FRAME {
        f.resize(MIN_FRAME, 0);
    }
    f
}

/// An ARP packet. A request to resolve `tpa` has `tha` zero and goes to broadcast (or,
/// refreshing an entry, to the known MAC); gratuitous ARP is a request with
/// `spa == tpa`.
pub fn arp(op: u16, dst: [u8; 6], sha: [u8; 6], spa: Ipv4Addr, tha: [u8; 6], tpa: Ipv4Addr) -> Vec<u8> {
    let mut f = ethernet(dst, sha, ETHERTYPE_ARP, MIN_FRAME);
    f.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa.octets());
    f.extend_from_slice(&tha);
    f.extend_from_slice(&tpa.octets());
    pad(f)
}

/// An IPv4 packet around `payload` (no options, don't-fragment set).
fn ipv4(dst_mac: [u8; 6], src_mac: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = ethernet(dst_mac, src_mac, ETHERTYPE_IPV4, 34 + payload.len());
    let total = (20 + payload.len()) as u16;
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x40, 0, TTL, proto, 0, 0]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    ipv4_header_checksum(&mut f, 14);
    f.extend_from_slice(payload);
    f
}

fn ipv6(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    next: u8,
    hop_limit: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = ethernet(dst_mac, src_mac, ETHERTYPE_IPV6, 54 + payload.len());
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    f.extend_from_slice(&[next, hop_limit]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(payload);
    f
}

/// An IP packet of either family; `src` and `dst` must be of one family.
fn ip(dst_mac: [u8; 6], src_mac: [u8; 6], src: IpAddr, dst: IpAddr, proto: u8, payload: &[u8]) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => ipv4(dst_mac, src_mac, s, d, proto, payload),
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let next = if proto == ICMP { ICMPV6 } else { proto };
            ipv6(dst_mac, src_mac, s, d, next, TTL, payload)
        }
        _ => panic!("mixed address families: {src} and {dst}"),
    }
}

/// An ICMP (IPv4) or ICMPv6 echo request with identifier, sequence and data.
pub fn echo_request(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: IpAddr,
    dst: IpAddr,
    id: u16,
    seq: u16,
    data: &[u8],
) -> Vec<u8> {
    let v6 = src.is_ipv6();
    let mut icmp = vec![if v6 { 128 } else { 8 }, 0, 0, 0];
    icmp.extend_from_slice(&id.to_be_bytes());
    icmp.extend_from_slice(&seq.to_be_bytes());
    icmp.extend_from_slice(data);
    if !v6 {
        let c = checksum(&icmp);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
    }
    let mut f = ip(dst_mac, src_mac, src, dst, ICMP, &icmp);
    if v6 {
        l4_checksum(&mut f, 14, 54, true, 56, false);
    }
    pad(f)
}

/// The answer to the echo request `req` (as `parse` accepted it), from `mac`: the same
/// identifier, sequence and data back to the sender.
pub fn echo_reply(req: &[u8], mac: [u8; 6]) -> Vec<u8> {
    let v6 = be16(req, 12) == ETHERTYPE_IPV6;
    let end = if v6 {
        54 + be16(req, 18) as usize
    } else {
        14 + be16(req, 16) as usize
    };
    let mut f = req[..end].to_vec();
    f.copy_within(6..12, 0);
    f[6..12].copy_from_slice(&mac);
    if v6 {
        let (a, b) = f[22..54].split_at_mut(16);
        a.swap_with_slice(b);
        f[21] = TTL;
        f[54] = 129;
        l4_checksum(&mut f, 14, 54, true, 56, false);
    } else {
        let (a, b) = f[26..34].split_at_mut(4);
        a.swap_with_slice(b);
        let l4 = 14 + (f[14] & 0xf) as usize * 4;
        f[22] = TTL;
        ipv4_header_checksum(&mut f, 14);
        f[l4] = 0;
        f[l4 + 2] = 0;
        f[l4 + 3] = 0;
        let c = checksum(&f[l4..]);
        f[l4 + 2..l4 + 4].copy_from_slice(&c.to_be_bytes());
    }
    pad(f)
}

/// A STAMP session-sender test packet (RFC 8762 4.2.1, unauthenticated): sequence number,
/// timestamp `t1` (NTP format), error estimate "not synchronised", zero padding to 44
/// bytes so the reflector's answer is the same size.
#[allow(clippy::too_many_arguments)]
pub fn stamp_request(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: IpAddr,
    dst: IpAddr,
    src_port: u16,
    dst_port: u16,
    seq: u32,
    t1: u64,
) -> Vec<u8> {
    let mut udp = Vec::with_capacity(8 + STAMP_LEN);
    udp.extend_from_slice(&src_port.to_be_bytes());
    udp.extend_from_slice(&dst_port.to_be_bytes());
    udp.extend_from_slice(&((8 + STAMP_LEN) as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(&seq.to_be_bytes());
    udp.extend_from_slice(&t1.to_be_bytes());
    // Error estimate: S = 0 (not synchronised to UTC), scale 0, multiplier 1.
    udp.extend_from_slice(&[0, 1]);
    udp.resize(8 + STAMP_LEN, 0);
    let mut f = ip(dst_mac, src_mac, src, dst, UDP, &udp);
    let (l4, v6) = if src.is_ipv6() { (54, true) } else { (34, false) };
    l4_checksum(&mut f, 14, l4, v6, l4 + 6, true);
    pad(f)
}

/// The solicited-node multicast address of `a` (RFC 4291 2.7.1) and its MAC (RFC 2464 7).
pub fn solicited_node(a: Ipv6Addr) -> (Ipv6Addr, [u8; 6]) {
    let o = a.octets();
    let ip = Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | o[13] as u16,
        (o[14] as u16) << 8 | o[15] as u16,
    );
    (ip, multicast_mac(ip))
}

/// The Ethernet address an IPv6 multicast address maps to (RFC 2464 7).
pub fn multicast_mac(a: Ipv6Addr) -> [u8; 6] {
    let o = a.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

fn nd(dst_mac: [u8; 6], src_mac: [u8; 6], src: Ipv6Addr, dst: Ipv6Addr, body: &[u8]) -> Vec<u8> {
    let mut f = ipv6(dst_mac, src_mac, src, dst, ICMPV6, 255, body);
    l4_checksum(&mut f, 14, 54, true, 56, false);
    pad(f)
}

/// A neighbour solicitation for `target` from `src` (with our link-layer address): to the
/// target's solicited-node group, or unicast to `unicast` when refreshing an entry.
pub fn neighbor_solicit(src_mac: [u8; 6], src: Ipv6Addr, target: Ipv6Addr, unicast: Option<[u8; 6]>) -> Vec<u8> {
    let (group, group_mac) = solicited_node(target);
    let (dst, dst_mac) = match unicast {
        Some(m) => (target, m),
        None => (group, group_mac),
    };
    let mut body = vec![135, 0, 0, 0, 0, 0, 0, 0];
    body.extend_from_slice(&target.octets());
    body.extend_from_slice(&[1, 1]);
    body.extend_from_slice(&src_mac);
    nd(dst_mac, src_mac, src, dst, &body)
}

/// A neighbour advertisement for `target` (ours) with our link-layer address, as a router.
/// Solicited: to the soliciting node. Unsolicited: to all nodes, override set.
pub fn neighbor_advert(src_mac: [u8; 6], target: Ipv6Addr, to: Option<(Ipv6Addr, [u8; 6])>) -> Vec<u8> {
    let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    // Flags: router (0x80), solicited (0x40), override (0x20).
    let (dst, dst_mac, flags) = match to {
        Some((ip, mac)) => (ip, mac, 0xe0),
        None => (all_nodes, multicast_mac(all_nodes), 0xa0),
    };
    let mut body = vec![136, 0, 0, 0, flags, 0, 0, 0];
    body.extend_from_slice(&target.octets());
    body.extend_from_slice(&[2, 1]);
    body.extend_from_slice(&src_mac);
    nd(dst_mac, src_mac, target, dst, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];

    fn v4(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }
    fn v6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn arp_round_trip() {
        let f = arp(1, BROADCAST, A, v4("192.0.2.1"), [0; 6], v4("192.0.2.2"));
        assert_eq!(f.len(), MIN_FRAME);
        let p = parse(&f, STAMP_PORT).unwrap();
        assert_eq!((p.dst_mac, p.src_mac), (BROADCAST, A));
        assert_eq!(
            p.pkt,
            Pkt::Arp {
                op: 1,
                sha: A,
                spa: v4("192.0.2.1"),
                tpa: v4("192.0.2.2")
            }
        );
        assert_eq!(parse(&f[..41], STAMP_PORT), Err("truncated arp"));
        let mut bad = f.clone();
        bad[16] = 0x86; // ptype
        assert!(parse(&bad, STAMP_PORT).is_err());
    }

    #[test]
    fn echo_both_families_and_answers() {
        for (s, d) in [("192.0.2.1", "192.0.2.2"), ("2001:db8::1", "2001:db8::2")] {
            let (s, d): (IpAddr, IpAddr) = (s.parse().unwrap(), d.parse().unwrap());
            let req = echo_request(B, A, s, d, 0x1234, 7, b"hello probe");
            assert_eq!(
                parse(&req, STAMP_PORT).unwrap().pkt,
                Pkt::EchoRequest { src: s, dst: d }
            );
            let rep = echo_reply(&req, B);
            let p = parse(&rep, STAMP_PORT).unwrap();
            assert_eq!((p.dst_mac, p.src_mac), (A, B));
            assert_eq!(
                p.pkt,
                Pkt::EchoReply {
                    src: d,
                    dst: s,
                    id: 0x1234,
                    seq: 7,
                    data: b"hello probe"
                }
            );
            // Any flipped bit in the ICMP part is caught by its checksum.
            let l4 = if s.is_ipv6() { 54 } else { 34 };
            let mut bad = rep.clone();
            bad[l4 + 9] ^= 0x10;
            assert!(parse(&bad, STAMP_PORT).is_err());
        }
    }

    #[test]
    fn stamp_request_reads_back_as_its_reflection_would() {
        for (s, d) in [("192.0.2.1", "192.0.2.2"), ("2001:db8::1", "2001:db8::2")] {
            let (s, d): (IpAddr, IpAddr) = (s.parse().unwrap(), d.parse().unwrap());
            let f = stamp_request(B, A, s, d, 40000, STAMP_PORT, 9, 0x1122_3344_5566_7788);
            // From our side the request is UDP to the reflector's port, not a reply.
            assert_eq!(parse(&f, STAMP_PORT).unwrap().pkt, Pkt::Unhandled("udp port"));
            // Read as if it came from port 40000, the sender fields sit where a reply's
            // sender copy does not: seq at 0 and t1 at 4 of the payload.
            let l4 = if s.is_ipv6() { 54 } else { 34 };
            assert_eq!(be16(&f, l4 + 4) as usize, 8 + STAMP_LEN);
            assert_eq!(&f[l4 + 8..l4 + 12], &9u32.to_be_bytes());
            assert_eq!(&f[l4 + 12..l4 + 20], &0x1122_3344_5566_7788u64.to_be_bytes());
            let seg = &f[l4..l4 + 8 + STAMP_LEN];
            assert!(l4_checksum_ok(&f, 14, seg, s.is_ipv6(), UDP));
        }
    }

    #[test]
    fn neighbour_discovery() {
        let me = v6("2001:db8::1");
        let target = v6("2001:db8::abcd:ef12");
        let ns = neighbor_solicit(A, me, target, None);
        let (g, gm) = solicited_node(target);
        assert_eq!(g, v6("ff02::1:ffcd:ef12"));
        assert_eq!(gm, [0x33, 0x33, 0xff, 0xcd, 0xef, 0x12]);
        let p = parse(&ns, STAMP_PORT).unwrap();
        assert_eq!(p.dst_mac, gm);
        assert_eq!(
            p.pkt,
            Pkt::Solicit {
                src: me,
                target,
                sll: Some(A)
            }
        );
        let na = neighbor_advert(B, target, Some((me, A)));
        let p = parse(&na, STAMP_PORT).unwrap();
        assert_eq!(p.dst_mac, A);
        assert_eq!(
            p.pkt,
            Pkt::Advert {
                src: target,
                target,
                tll: Some(B)
            }
        );
        assert_eq!(na[54 + 4], 0xe0);
        let un = neighbor_advert(B, target, None);
        assert_eq!(&un[0..6], &[0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(un[54 + 4], 0xa0);
        // A routed (hop limit below 255) solicitation is refused.
        let mut bad = ns.clone();
        bad[21] = 64;
        let n = bad.len();
        l4_checksum(&mut bad[..n], 14, 54, true, 56, false);
        assert_eq!(parse(&bad, STAMP_PORT), Err("invalid neighbour discovery"));
        // An option of length zero would loop forever: refused.
        let mut bad = ns.clone();
        bad[54 + 25] = 0;
        l4_checksum(&mut bad[..86], 14, 54, true, 56, false);
        assert_eq!(parse(&bad[..86], STAMP_PORT), Err("bad neighbour discovery option"));
    }

    #[test]
    fn truncations_and_garbage_never_panic() {
        let frames = [
            arp(2, A, B, v4("10.0.0.1"), A, v4("10.0.0.2")),
            echo_request(
                B,
                A,
                "10.0.0.1".parse().unwrap(),
                "10.0.0.2".parse().unwrap(),
                1,
                2,
                b"x",
            ),
            echo_request(B, A, "::1".parse().unwrap(), "::2".parse().unwrap(), 1, 2, b"x"),
            stamp_request(B, A, "::1".parse().unwrap(), "::2".parse().unwrap(), 862, 9, 1, 2),
            neighbor_solicit(A, v6("fe80::1"), v6("fe80::2"), None),
        ];
        let mut seed = 7u64;
        for f in &frames {
            for cut in 0..f.len() {
                let _ = parse(&f[..cut], STAMP_PORT);
            }
            for _ in 0..2000 {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let mut g = f.clone();
                let i = (seed >> 33) as usize % g.len();
                g[i] = (seed >> 17) as u8;
                let _ = parse(&g, STAMP_PORT);
            }
        }
    }
}
