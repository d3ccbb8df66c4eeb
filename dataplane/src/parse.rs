//! The parse stage: one pass over a frame's headers (Ethernet, 802.1Q and QinQ, ARP,
//! IPv4 with options and fragments, IPv6 with extension headers and fragments, TCP, UDP,
//! ICMP, ICMPv6) into a small `Meta`. Nothing is trusted: every length is checked against
//! what the frame holds, and every way a packet can be wrong is a `DropReason`.
//!
//! Works on the first segment's bytes; the whole packet's length (`pkt_len`) bounds the
//! IP lengths, so chained jumbo frames parse as long as their headers are in the first
//! segment (a driver's first segment is at least 2 KB).

use crate::flow::FlowKey;
use crate::pipeline::DropReason;
use crate::wire::{self, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_QINQ, ETHERTYPE_VLAN};

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;

/// Longest IPv6 extension-header chain followed before giving up.
pub const MAX_EXTENSION_HEADERS: usize = 8;

pub mod meta_flag {
    pub const V6: u8 = 1;
    /// A fragment other than the first: no L4 header, keyed by addresses and protocol.
    pub const LATER_FRAGMENT: u8 = 2;
    /// The first fragment of a fragmented packet (keyed by its 5-tuple).
    pub const FIRST_FRAGMENT: u8 = 4;
    /// TCP with FIN or RST.
    pub const TCP_END: u8 = 8;
}

/// What the later stages need to know about a packet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Meta {
    pub key: FlowKey,
    /// Offset of the IP header in the frame.
    pub l3: u16,
    /// Offset of the L4 header (equal to the IP payload's start for later fragments).
    pub l4: u16,
    /// IP total length (IPv6: payload length + 40).
    pub ip_len: u16,
    /// The traffic-class byte: DSCP << 2 | ECN.
    pub tos: u8,
    pub ttl: u8,
    pub flags: u8,
}

impl Meta {
    #[inline(always)]
    pub fn dscp(&self) -> u8 {
        self.tos >> 2
    }
    #[inline(always)]
    pub fn ecn(&self) -> u8 {
        self.tos & 3
    }
    #[inline(always)]
    pub fn is_v6(&self) -> bool {
        self.flags & meta_flag::V6 != 0
    }
}

/// What a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    Ip(Meta),
    /// ARP: the control plane's.
    Arp,
}

/// How the driver's checksum offload judged the IPv4 header: the two bits DPDK keeps for
/// it in an mbuf's offload flags (`RTE_MBUF_F_RX_IP_CKSUM_*`), as they are, so that a
/// received packet's judgement is one mask and each question about it one bit test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxChecksum(u8);

impl RxChecksum {
    /// The device found the header checksum right.
    pub const GOOD: RxChecksum = RxChecksum(Self::GOOD_BIT);
    /// The device found it wrong.
    pub const BAD: RxChecksum = RxChecksum(Self::BAD_BIT);
    /// Not checked by the device: verify in software.
    pub const UNKNOWN: RxChecksum = RxChecksum(0);
    /// Both bits (DPDK's NONE): the header's integrity was verified, the checksum field
    /// is not meaningful. Taken as good.
    pub const NONE: RxChecksum = RxChecksum(Self::GOOD_BIT | Self::BAD_BIT);
    pub const GOOD_BIT: u8 = 0x80;
    pub const BAD_BIT: u8 = 0x10;

    /// From an mbuf's offload flags (only the two bits above are read).
    #[inline(always)]
    pub fn from_ol_flags(flags: u64) -> RxChecksum {
        RxChecksum(flags as u8 & (Self::GOOD_BIT | Self::BAD_BIT))
    }

    /// The device vouches for the header (GOOD or NONE).
    #[inline(always)]
    pub fn verified(self) -> bool {
        self.0 & Self::GOOD_BIT != 0
    }

    /// The device found the checksum wrong.
    #[inline(always)]
    pub fn bad(self) -> bool {
        self.0 == Self::BAD_BIT
    }
}

#[inline(always)]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline(always)]
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline(always)]
fn addr128(b: &[u8], at: usize) -> u128 {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    u128::from_be_bytes(a)
}

/// What `parse_into` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ip,
    Arp,
}

/// Parses one frame received on `in_port`. `pkt_len` is the whole packet's length.
pub fn parse(frame: &[u8], pkt_len: u32, in_port: u8, csum: RxChecksum) -> Result<Parsed, DropReason> {
    let mut m = Meta::default();
    match parse_into(frame, pkt_len, in_port, csum, &mut m)? {
        Kind::Ip => Ok(Parsed::Ip(m)),
        Kind::Arp => Ok(Parsed::Arp),
    }
}

/// `parse`, writing the metadata in place (the fast path's form: no copies).
#[inline(always)]
pub fn parse_into(frame: &[u8], pkt_len: u32, in_port: u8, csum: RxChecksum, m: &mut Meta) -> Result<Kind, DropReason> {
    if let Some(k) = fast_v4(frame, pkt_len, in_port, csum, m) {
        return Ok(k);
    }
    if frame.len() < wire::ETHERNET_HEADER_LEN {
        return Err(DropReason::Truncated);
    }
    let mut et = be16(frame, 12);
    let mut l2 = wire::ETHERNET_HEADER_LEN;
    let mut vlan = 0u32;
    let mut tags = 0;
    while et == ETHERTYPE_VLAN || et == ETHERTYPE_QINQ {
        if tags == 2 {
            return Err(DropReason::TooManyVlanTags);
        }
        if frame.len() < l2 + wire::VLAN_TAG_LEN {
            return Err(DropReason::Truncated);
        }
        vlan = (vlan << 12) | (be16(frame, l2) & 0x0fff) as u32;
        et = be16(frame, l2 + 2);
        l2 += wire::VLAN_TAG_LEN;
        tags += 1;
    }
    *m = Meta {
        key: FlowKey {
            vlan,
            in_port,
            ..FlowKey::default()
        },
        l3: l2 as u16,
        ..Meta::default()
    };
    let avail = pkt_len.saturating_sub(l2 as u32);
    match et {
        ETHERTYPE_IPV4 => ipv4(frame, l2, avail, csum, m)?,
        ETHERTYPE_IPV6 => ipv6(frame, l2, avail, m)?,
        ETHERTYPE_ARP => {
            // Ethernet/IPv4 ARP is 28 bytes.
            return if frame.len() >= l2 + 28 {
                Ok(Kind::Arp)
            } else {
                Err(DropReason::Truncated)
            };
        }
        _ => return Err(DropReason::UnsupportedEthertype),
    }
    Ok(Kind::Ip)
}

/// The common case in one stretch: untagged IPv4 without options, not a fragment, UDP or
/// TCP, everything consistent. Anything else (including every malformed packet) returns
/// `None` and takes the general path, which decides it.
#[inline(always)]
fn fast_v4(frame: &[u8], pkt_len: u32, in_port: u8, csum: RxChecksum, m: &mut Meta) -> Option<Kind> {
    let h = plain_v4(frame, pkt_len, csum)?;
    *m = Meta {
        key: h.key(in_port),
        l3: 14,
        l4: 34,
        ip_len: h.total,
        tos: h.tos,
        ttl: h.ttl,
        flags: if h.tcp_end { meta_flag::TCP_END } else { 0 },
    };
    Some(Kind::Ip)
}

/// The headers of a frame in the common case (see `plain_v4`), as read from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlainV4 {
    pub src: u32,
    pub dst: u32,
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: u8,
    /// IP total length.
    pub total: u16,
    pub tos: u8,
    pub ttl: u8,
    /// TCP with FIN or RST.
    pub tcp_end: bool,
}

impl PlainV4 {
    /// The flow key `parse` gives such a packet received on `in_port`.
    #[inline(always)]
    pub fn key(&self, in_port: u8) -> FlowKey {
        FlowKey {
            src: self.src as u128,
            dst: self.dst as u128,
            src_port: self.src_port,
            dst_port: self.dst_port,
            vlan: 0,
            proto: self.proto,
            in_port,
            family: 4,
        }
    }
}

/// The common case's headers: an untagged IPv4 header of 20 bytes (IP at offset 14, L4 at
/// 34), not a fragment, carrying UDP or TCP, with every length consistent and the header
/// checksum right (or vouched for by the driver). `None` for everything else, which
/// `parse_into`'s general path decides. For such a frame `parse_into` gives exactly these
/// fields, so a caller may act on them without parsing again.
#[inline(always)]
pub fn plain_v4(frame: &[u8], pkt_len: u32, csum: RxChecksum) -> Option<PlainV4> {
    // Ethernet (14) + IPv4 (20) + TCP (20): a minimum-size frame holds them all.
    let h: &[u8; 54] = frame.get(..54)?.try_into().ok()?;
    if be16(h, 12) != ETHERTYPE_IPV4 || h[14] != 0x45 {
        return None;
    }
    let total = be16(h, 16) as u32;
    let frag = be16(h, 20);
    let proto = h[23];
    if total < 28 || total > pkt_len - 14 || frag & 0x3fff != 0 {
        return None;
    }
    let word = |w: usize| {
        let at = 14 + 4 * w;
        u32::from_ne_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]])
    };
    let ok = csum.verified() || !csum.bad() && sums_to_ones([word(0), word(1), word(2), word(3), word(4)]);
    let payload = total - 20;
    let valid = ok
        && match proto {
            PROTO_UDP => {
                let len = be16(h, 38) as u32;
                len >= 8 && len <= payload
            }
            PROTO_TCP => {
                let off = (h[46] >> 4) as u32 * 4;
                off >= 20 && off <= payload
            }
            _ => false,
        };
    if !valid {
        return None;
    }
    Some(PlainV4 {
        src: be32(h, 26),
        dst: be32(h, 30),
        src_port: be16(h, 34),
        dst_port: be16(h, 36),
        proto,
        total: total as u16,
        tos: h[15],
        ttl: h[22],
        tcp_end: proto == PROTO_TCP && h[47] & 0x05 != 0,
    })
}

/// Whether the one's-complement sum of a 20-byte IPv4 header, given as five 32-bit words
/// read in the machine's byte order, is 0xffff (the header checksum is right).
///
/// As 2^16 leaves 1 modulo 0xffff, a 32-bit word is congruent to the sum of its two
/// 16-bit halves, and the plain sum of the five words to the sum of the header's ten
/// 16-bit words. A one's-complement sum is that sum modulo 0xffff, written 0xffff rather
/// than 0 unless every word is 0. So the header is right when the plain sum is a
/// non-zero multiple of 0xffff. The byte order does not matter: read little-endian, each
/// half is a header word with its bytes swapped, that is the word times 2^8 modulo
/// 0xffff, and 2^8 has an inverse modulo 0xffff, so the sum of the swapped words is a
/// multiple of 0xffff exactly when the sum of the words is. That test is a
/// multiplication: 0xffff is odd, so it has an inverse modulo 2^64, and multiplying by
/// that takes k times 0xffff to k, at most `u64::MAX / 0xffff`, and every other number
/// above that. One less, 0 goes above too.
#[inline(always)]
pub(crate) fn sums_to_ones(words: [u32; 5]) -> bool {
    const INVERSE: u64 = 0xfffe_fffe_fffe_ffff;
    const { assert!(INVERSE.wrapping_mul(0xffff) == 1) };
    let sum: u64 = words.iter().map(|&w| w as u64).sum();
    sum.wrapping_mul(INVERSE).wrapping_sub(1) < u64::MAX / 0xffff
}

#[inline(always)]
fn ipv4(frame: &[u8], l3: usize, avail: u32, csum: RxChecksum, m: &mut Meta) -> Result<(), DropReason> {
    let ip = &frame[l3..];
    if ip.len() < wire::IPV4_MIN_HEADER_LEN {
        return Err(DropReason::Truncated);
    }
    let vihl = ip[0];
    if vihl >> 4 != 4 {
        return Err(DropReason::BadIpHeader);
    }
    let hl = (vihl & 0x0f) as usize * 4;
    if hl < wire::IPV4_MIN_HEADER_LEN {
        return Err(DropReason::BadIpHeader);
    }
    if ip.len() < hl {
        return Err(DropReason::Truncated);
    }
    let total = be16(ip, 2) as usize;
    if total < hl {
        return Err(DropReason::BadIpHeader);
    }
    if total as u32 > avail {
        return Err(DropReason::Truncated);
    }
    let ok = csum.verified() || !csum.bad() && wire::ones_complement_sum(&ip[..hl]) == 0xffff;
    if !ok {
        return Err(DropReason::BadChecksum);
    }
    m.tos = ip[1];
    m.ttl = ip[8];
    m.ip_len = total as u16;
    m.key.proto = ip[9];
    m.key.family = 4;
    m.key.src = be32(ip, 12) as u128;
    m.key.dst = be32(ip, 16) as u128;
    m.l4 = (l3 + hl) as u16;
    let frag = be16(ip, 6);
    let offset = frag & 0x1fff;
    let more = frag & 0x2000 != 0;
    if offset != 0 {
        m.flags |= meta_flag::LATER_FRAGMENT;
        return Ok(());
    }
    if more {
        m.flags |= meta_flag::FIRST_FRAGMENT;
    }
    // The L4 header must lie inside the IP packet and the first segment.
    let l4_end = (l3 + total).min(frame.len());
    l4(frame, l3 + hl, l4_end, m)
}

/// Reads ports (or ICMP type/code and echo id) and TCP flags from the L4 header at `at`;
/// `end` is where the IP packet (or the first segment) ends.
#[inline(always)]
fn l4(frame: &[u8], at: usize, end: usize, m: &mut Meta) -> Result<(), DropReason> {
    let room = end.saturating_sub(at);
    match m.key.proto {
        PROTO_TCP => {
            if room < 20 {
                return Err(DropReason::BadL4Header);
            }
            let off = (frame[at + 12] >> 4) as usize * 4;
            if off < 20 || off > room {
                return Err(DropReason::BadL4Header);
            }
            m.key.src_port = be16(frame, at);
            m.key.dst_port = be16(frame, at + 2);
            // FIN or RST.
            if frame[at + 13] & 0x05 != 0 {
                m.flags |= meta_flag::TCP_END;
            }
        }
        PROTO_UDP => {
            if room < 8 {
                return Err(DropReason::BadL4Header);
            }
            let len = be16(frame, at + 4) as usize;
            // A UDP length of 0 is legal only for IPv6 jumbograms, which are not forwarded.
            if len < 8 || (m.flags & meta_flag::FIRST_FRAGMENT == 0 && len > m.ip_len as usize - (at - m.l3 as usize)) {
                return Err(DropReason::BadL4Header);
            }
            m.key.src_port = be16(frame, at);
            m.key.dst_port = be16(frame, at + 2);
        }
        PROTO_ICMP | PROTO_ICMPV6 => {
            if room < 8 {
                return Err(DropReason::BadL4Header);
            }
            let (ty, code) = (frame[at], frame[at + 1]);
            m.key.src_port = (ty as u16) << 8 | code as u16;
            // Echo request/reply: the identifier tells pings apart.
            if matches!((m.key.proto, ty), (PROTO_ICMP, 0 | 8) | (PROTO_ICMPV6, 128 | 129)) {
                m.key.dst_port = be16(frame, at + 4);
            }
        }
        _ => {}
    }
    Ok(())
}

#[inline(always)]
fn ipv6(frame: &[u8], l3: usize, avail: u32, m: &mut Meta) -> Result<(), DropReason> {
    let ip = &frame[l3..];
    if ip.len() < wire::IPV6_HEADER_LEN {
        return Err(DropReason::Truncated);
    }
    if ip[0] >> 4 != 6 {
        return Err(DropReason::BadIpHeader);
    }
    let total = be16(ip, 4) as usize + wire::IPV6_HEADER_LEN;
    if total as u32 > avail {
        return Err(DropReason::Truncated);
    }
    m.flags |= meta_flag::V6;
    m.tos = ((be16(ip, 0) >> 4) & 0xff) as u8;
    m.ttl = ip[7];
    m.ip_len = total as u16;
    m.key.family = 6;
    m.key.src = addr128(ip, 8);
    m.key.dst = addr128(ip, 24);
    let end = (l3 + total).min(frame.len());
    let mut next = ip[6];
    let mut at = l3 + wire::IPV6_HEADER_LEN;
    let mut first = true;
    for _ in 0..=MAX_EXTENSION_HEADERS {
        match next {
            // Hop-by-hop (only first), routing, destination options: (len + 1) * 8 bytes.
            0 | 43 | 60 => {
                if next == 0 && !first {
                    return Err(DropReason::BadExtensionHeader);
                }
                if at + 8 > end {
                    return Err(DropReason::BadExtensionHeader);
                }
                let len = (frame[at + 1] as usize + 1) * 8;
                if at + len > end {
                    return Err(DropReason::BadExtensionHeader);
                }
                next = frame[at];
                at += len;
            }
            // Fragment: 8 bytes.
            44 => {
                if at + 8 > end {
                    return Err(DropReason::BadExtensionHeader);
                }
                let frag = be16(frame, at + 2);
                next = frame[at];
                at += 8;
                if frag >> 3 != 0 {
                    m.key.proto = next;
                    m.l4 = at as u16;
                    m.flags |= meta_flag::LATER_FRAGMENT;
                    return Ok(());
                }
                if frag & 1 != 0 {
                    m.flags |= meta_flag::FIRST_FRAGMENT;
                }
            }
            // Authentication header: (len + 2) * 4 bytes.
            51 => {
                if at + 8 > end {
                    return Err(DropReason::BadExtensionHeader);
                }
                let len = (frame[at + 1] as usize + 2) * 4;
                if at + len > end {
                    return Err(DropReason::BadExtensionHeader);
                }
                next = frame[at];
                at += len;
            }
            _ => {
                m.key.proto = next;
                m.l4 = at as u16;
                return l4(frame, at, end, m);
            }
        }
        first = false;
    }
    Err(DropReason::BadExtensionHeader)
}

#[cfg(test)]
mod tests;
