//! Builds a stream's frames straight into mbuf data: a header template made once, then
//! per packet the flow's addresses and ports, lengths, the signature and checksums.
//! Flows are cycled by an odometer (destination fastest), so 10 million flows cost no
//! memory and no division per packet.

use crate::sig::{self, SIG_LEN};
use crate::spec::{AddrRange, Proto, StreamSpec};
use dataplane::wire::ones_complement_sum;

const FCS: usize = 4;
/// Longest header: Ethernet + VLAN + IPv6 + TCP.
const MAX_HDR: usize = 14 + 4 + 40 + 20;
const HDR_WORDS: usize = MAX_HDR.div_ceil(8);

/// Folds a sum of 16-bit words to 16 bits. The sums here are of a few dozen words, far
/// below 2^32, so three fixed folds are enough (no loop, no branch).
#[inline(always)]
fn fold(s: u64) -> u64 {
    debug_assert!(s < 1 << 32);
    let s = (s & 0xffff) + (s >> 16);
    let s = (s & 0xffff) + (s >> 16);
    (s & 0xffff) + (s >> 16)
}

/// The sum of an IPv6 address's eight 16-bit words.
#[inline(always)]
fn words128(a: u128) -> u64 {
    (0..8).map(|i| (a >> (16 * i)) as u64 & 0xffff).sum()
}

/// Where a flow is in its cycle: one offset per varying field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowCursor {
    index: u64,
    dst: u64,
    src: u64,
    dport: u32,
    sport: u32,
}

#[derive(Debug, Clone)]
pub struct FrameBuilder {
    stream: u16,
    proto: Proto,
    v6: bool,
    src: AddrRange,
    dst: AddrRange,
    sport_start: u16,
    sport_count: u32,
    dport_start: u16,
    dport_count: u32,
    flows: u64,
    /// The header template, zero in every per-packet field, padded to whole 8-byte words.
    hdr: [u8; HDR_WORDS * 8],
    hdr_len: usize,
    /// One's-complement sums of the template's constant words: the IPv4 header, and the
    /// L4 header with the pseudo-header's protocol.
    ip_base: u64,
    l4_base: u64,
    l3_at: usize,
    l4_at: usize,
}

impl FrameBuilder {
    pub fn new(spec: &StreamSpec, stream: u16, src_mac: [u8; 6]) -> FrameBuilder {
        let mut hdr = [0u8; HDR_WORDS * 8];
        hdr[0..6].copy_from_slice(&spec.dst_mac);
        hdr[6..12].copy_from_slice(&spec.src_mac.unwrap_or(src_mac));
        let mut at = 12;
        if let Some(v) = spec.vlan {
            hdr[at..at + 2].copy_from_slice(&0x8100u16.to_be_bytes());
            hdr[at + 2..at + 4].copy_from_slice(&v.to_be_bytes());
            at += 4;
        }
        let v6 = spec.dst.is_v6();
        let proto_num = match (spec.proto, v6) {
            (Proto::Udp, _) => 17,
            (Proto::Tcp, _) => 6,
            (Proto::Icmp, false) => 1,
            (Proto::Icmp, true) => 58,
        };
        let tos = spec.dscp << 2 | (spec.ecn & 3);
        hdr[at..at + 2].copy_from_slice(&(if v6 { 0x86ddu16 } else { 0x0800 }).to_be_bytes());
        at += 2;
        let l3_at = at;
        if v6 {
            let first = 6u32 << 28 | (tos as u32) << 20;
            hdr[at..at + 4].copy_from_slice(&first.to_be_bytes());
            hdr[at + 6] = proto_num;
            hdr[at + 7] = spec.ttl;
            at += 40;
        } else {
            hdr[at] = 0x45;
            hdr[at + 1] = tos;
            hdr[at + 6] = 0x40; // don't fragment
            hdr[at + 8] = spec.ttl;
            hdr[at + 9] = proto_num;
            at += 20;
        }
        let l4_at = at;
        match spec.proto {
            Proto::Udp => at += 8,
            Proto::Tcp => {
                hdr[at + 7] = 1; // sequence number 1
                hdr[at + 12] = 0x50; // 20-byte header
                hdr[at + 13] = 0x10; // ACK
                hdr[at + 14] = 0xff;
                hdr[at + 15] = 0xff;
                at += 20;
            }
            Proto::Icmp => {
                hdr[at] = if v6 { 128 } else { 8 }; // echo request
                at += 8;
            }
        }
        let ip_base = if v6 {
            0
        } else {
            ones_complement_sum(&hdr[l3_at..l3_at + 20]) as u64
        };
        let pseudo_proto = if spec.proto == Proto::Icmp && !v6 {
            0
        } else {
            proto_num as u64
        };
        let l4_base = ones_complement_sum(&hdr[l4_at..at]) as u64 + pseudo_proto;
        FrameBuilder {
            stream,
            proto: spec.proto,
            v6,
            src: spec.src,
            dst: spec.dst,
            sport_start: spec.sport.start,
            sport_count: spec.sport.count,
            dport_start: spec.dport.start,
            dport_count: spec.dport.count,
            flows: spec.flows,
            hdr,
            hdr_len: at,
            ip_base,
            l4_base,
            l3_at,
            l4_at,
        }
    }

    /// Bytes before the signature.
    pub fn header_len(&self) -> usize {
        self.hdr_len
    }

    /// A cursor at flow `index` (taken modulo the flow count).
    pub fn cursor_at(&self, index: u64) -> FlowCursor {
        let index = index % self.flows;
        let mut r = index;
        let dst = r % self.dst.count();
        r /= self.dst.count();
        let src = r % self.src.count();
        r /= self.src.count();
        let dport = (r % self.dport_count as u64) as u32;
        r /= self.dport_count as u64;
        let sport = (r % self.sport_count as u64) as u32;
        FlowCursor {
            index,
            dst,
            src,
            dport,
            sport,
        }
    }

    /// Moves to the next flow, wrapping after the last.
    #[inline(always)]
    pub fn advance(&self, c: &mut FlowCursor) {
        c.index += 1;
        if c.index == self.flows {
            *c = FlowCursor::default();
            return;
        }
        c.dst += 1;
        if c.dst < self.dst.count() {
            return;
        }
        c.dst = 0;
        c.src += 1;
        if c.src < self.src.count() {
            return;
        }
        c.src = 0;
        c.dport += 1;
        if c.dport < self.dport_count {
            return;
        }
        c.dport = 0;
        c.sport += 1;
        if c.sport == self.sport_count {
            c.sport = 0;
        }
    }

    /// Writes a whole frame of `buf.len() + 4` bytes on the wire (the NIC adds the FCS).
    /// `buf` must be at least `header_len() + SIG_LEN` long. Checksums are sums of the
    /// template's constant words (made once) and this packet's variable words, so the
    /// frame is written once and never read back.
    #[inline(always)]
    pub fn write(&self, buf: &mut [u8], c: &FlowCursor, lane: u8, seq: u32, tsc: u64) {
        let len = buf.len();
        let h = self.hdr_len;
        // The header: a fixed 48-byte copy for the common short headers (the bytes past the
        // header are the signature's, written next), else in 8-byte words.
        if h <= 48 && len >= 48 {
            buf[..48].copy_from_slice(&self.hdr[..48]);
        } else {
            let words = h.div_ceil(8);
            for (d, w) in buf[..words * 8].chunks_exact_mut(8).zip(self.hdr.chunks_exact(8)) {
                d.copy_from_slice(w);
            }
        }
        let head = sig::write(&mut buf[h..h + SIG_LEN], self.stream, lane, seq, tsc);
        // Zero the rest (the pool's buffers hold old packets): small frames in 8-byte words
        // and single bytes, without a call to memset.
        let rest = &mut buf[h + SIG_LEN..];
        if rest.len() <= 64 {
            let mut chunks = rest.chunks_exact_mut(8);
            for c in &mut chunks {
                c.copy_from_slice(&[0; 8]);
            }
            for b in chunks.into_remainder() {
                *b = 0;
                std::hint::black_box(&*b);
            }
        } else {
            rest.fill(0);
        }
        let (l3, l4) = (self.l3_at, self.l4_at);
        let l4_len = (len - l4) as u64;
        let sport = self.sport_start.wrapping_add(c.sport as u16);
        let dport = self.dport_start.wrapping_add(c.dport as u16);
        // Sums of 16-bit words, folded at the end.
        let mut tsc_le = (tsc & 0xffff) + (tsc >> 16 & 0xffff) + (tsc >> 32 & 0xffff) + (tsc >> 48);
        tsc_le = fold(tsc_le);
        let sig_sum = (head >> 16) as u64 + (head & 0xffff) as u64 + (seq >> 16) as u64 + (seq & 0xffff) as u64
            // The TSC is stored little-endian; a one's-complement sum of byte-swapped words
            // is the byte-swapped sum (RFC 1071, 2.B).
            + (tsc_le as u16).swap_bytes() as u64;
        let addr_sum = match (self.src, self.dst) {
            (AddrRange::V4 { start: s, .. }, AddrRange::V4 { start: d, .. }) => {
                let s = s.wrapping_add(c.src as u32);
                let d = d.wrapping_add(c.dst as u32);
                let total = (len - l3) as u16;
                buf[l3 + 2..l3 + 4].copy_from_slice(&total.to_be_bytes());
                buf[l3 + 12..l3 + 16].copy_from_slice(&s.to_be_bytes());
                buf[l3 + 16..l3 + 20].copy_from_slice(&d.to_be_bytes());
                let a = (s >> 16) as u64 + (s & 0xffff) as u64 + (d >> 16) as u64 + (d & 0xffff) as u64;
                let ipc = !(fold(self.ip_base + total as u64 + a) as u16);
                buf[l3 + 10..l3 + 12].copy_from_slice(&ipc.to_be_bytes());
                a
            }
            (AddrRange::V6 { start: s, .. }, AddrRange::V6 { start: d, .. }) => {
                let s = s.wrapping_add(c.src as u128);
                let d = d.wrapping_add(c.dst as u128);
                buf[l3 + 4..l3 + 6].copy_from_slice(&(l4_len as u16).to_be_bytes());
                buf[l3 + 8..l3 + 24].copy_from_slice(&s.to_be_bytes());
                buf[l3 + 24..l3 + 40].copy_from_slice(&d.to_be_bytes());
                words128(s) + words128(d)
            }
            _ => unreachable!("streams are checked to use one address family"),
        };
        let mut sum = self.l4_base + sig_sum;
        let csum_at = match self.proto {
            Proto::Udp => {
                buf[l4..l4 + 2].copy_from_slice(&sport.to_be_bytes());
                buf[l4 + 2..l4 + 4].copy_from_slice(&dport.to_be_bytes());
                buf[l4 + 4..l4 + 6].copy_from_slice(&(l4_len as u16).to_be_bytes());
                // Pseudo-header length, and the UDP length field.
                sum += addr_sum + 2 * l4_len + sport as u64 + dport as u64;
                l4 + 6
            }
            Proto::Tcp => {
                buf[l4..l4 + 2].copy_from_slice(&sport.to_be_bytes());
                buf[l4 + 2..l4 + 4].copy_from_slice(&dport.to_be_bytes());
                sum += addr_sum + l4_len + sport as u64 + dport as u64;
                l4 + 16
            }
            Proto::Icmp => {
                // Echo identifier from the source-port range, echo sequence from ours.
                let eseq = seq as u16;
                buf[l4 + 4..l4 + 6].copy_from_slice(&sport.to_be_bytes());
                buf[l4 + 6..l4 + 8].copy_from_slice(&eseq.to_be_bytes());
                sum += sport as u64 + eseq as u64;
                if self.v6 {
                    sum += addr_sum + l4_len; // ICMPv6 has a pseudo-header, ICMPv4 none
                }
                l4 + 2
            }
        };
        let mut ck = !(fold(sum) as u16);
        if ck == 0 && self.proto == Proto::Udp {
            ck = 0xffff; // zero means "no checksum" in UDP
        }
        buf[csum_at..csum_at + 2].copy_from_slice(&ck.to_be_bytes());
    }

    /// The mbuf data length for a frame of `wire_size` bytes with FCS.
    pub fn data_len(wire_size: u16) -> usize {
        wire_size as usize - FCS
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{check_all, RawStream};
    use dataplane::parse::{parse, Parsed, RxChecksum};

    fn spec(dst: &str, f: impl FnOnce(&mut RawStream)) -> StreamSpec {
        let mut r = RawStream {
            dst: Some(dst.into()),
            ..Default::default()
        };
        f(&mut r);
        check_all(&[r], 1).unwrap().remove(0)
    }

    /// Checks the frame the way a receiver would: every checksum verifies to zero.
    fn verify(frame: &[u8], l3: usize, v6: bool) {
        let l4 = if v6 {
            l3 + 40
        } else {
            l3 + (frame[l3] & 0xf) as usize * 4
        };
        if !v6 {
            assert_eq!(ones_complement_sum(&frame[l3..l4]), 0xffff, "IPv4 header checksum");
        }
        let proto = if v6 { frame[l3 + 6] } else { frame[l3 + 9] };
        let mut pseudo = Vec::new();
        if v6 {
            pseudo.extend_from_slice(&frame[l3 + 8..l3 + 40]);
            pseudo.extend_from_slice(&((frame.len() - l4) as u32).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, proto]);
        } else if proto != 1 {
            pseudo.extend_from_slice(&frame[l3 + 12..l3 + 20]);
            pseudo.extend_from_slice(&[0, proto]);
            pseudo.extend_from_slice(&((frame.len() - l4) as u16).to_be_bytes());
        }
        pseudo.extend_from_slice(&frame[l4..]);
        assert_eq!(ones_complement_sum(&pseudo), 0xffff, "L4 checksum, proto {proto}");
    }

    #[test]
    fn udp4_frames_have_valid_checksums_and_the_signature() {
        let s = spec("198.18.0.0/30", |r| {
            r.dscp = Some(crate::spec::NumOrText::Text("af41".into()))
        });
        let b = FrameBuilder::new(&s, 3, [2, 0, 0, 0, 0, 9]);
        let mut c = b.cursor_at(0);
        let mut buf = vec![0xaau8; 60];
        for i in 0..6 {
            b.write(&mut buf, &c, 1, i, 1000 + i as u64);
            verify(&buf, 14, false);
            let sig = sig::find(&buf).unwrap();
            assert_eq!((sig.stream, sig.lane, sig.seq, sig.tsc), (3, 1, i, 1000 + i as u64));
            assert_eq!(buf[33], (i % 4) as u8, "destination cycles over 4 addresses");
            assert_eq!(buf[15] >> 2, 34, "DSCP af41");
            b.advance(&mut c);
        }
        // The fast-path parser accepts it as a 64-byte UDP frame.
        assert!(matches!(parse(&buf, 60, 0, RxChecksum::UNKNOWN), Ok(Parsed::Ip(_))));
    }

    #[test]
    fn every_protocol_and_family_checks_out() {
        for (dst, proto, vlan, size, v6) in [
            ("10.1.0.1", "tcp", None, 74u16, false),
            ("10.1.0.1", "icmp", Some(7), 128, false),
            ("2001:db8::1", "udp", None, 82, true),
            ("2001:db8::1", "tcp", Some(9), 98, true),
            ("2001:db8::1", "icmp", None, 1518, true),
            ("10.1.0.1", "udp", None, 1518, false),
        ] {
            let s = spec(dst, |r| {
                r.proto = Some(proto.into());
                r.vlan = vlan;
                r.size = Some(crate::spec::NumOrText::Num(size as u64));
            });
            let b = FrameBuilder::new(&s, 0, [2, 0, 0, 0, 0, 9]);
            let mut buf = vec![0x55u8; FrameBuilder::data_len(size)];
            b.write(&mut buf, &b.cursor_at(0), 0, 77, 0xf234_5678_9abc_def1);
            let l3 = if vlan.is_some() { 18 } else { 14 };
            verify(&buf, l3, v6);
            assert_eq!(sig::find(&buf).unwrap().seq, 77, "{dst} {proto}");
        }
    }

    #[test]
    fn flows_cycle_through_exactly_the_ranges() {
        let s = spec("198.18.0.0/31", |r| {
            r.src = Some("10.0.0.1-10.0.0.3".into());
            r.sport = Some(crate::spec::NumOrText::Text("100-101".into()));
            r.dport = Some(crate::spec::NumOrText::Text("7-8".into()));
        });
        assert_eq!(s.flows, 24);
        let b = FrameBuilder::new(&s, 0, [0; 6]);
        let mut c = b.cursor_at(0);
        let mut seen = std::collections::HashSet::new();
        let mut buf = vec![0u8; 60];
        for i in 0..48u64 {
            assert_eq!(c, b.cursor_at(i), "odometer and division agree at {i}");
            b.write(&mut buf, &c, 0, 0, 0);
            seen.insert(buf[26..38].to_vec());
            b.advance(&mut c);
        }
        assert_eq!(seen.len(), 24);
        // A flow count below the ranges' product wraps early.
        let s = spec("198.18.0.0/24", |r| r.flows = Some(10));
        let b = FrameBuilder::new(&s, 0, [0; 6]);
        let mut c = b.cursor_at(9);
        b.advance(&mut c);
        assert_eq!(c, b.cursor_at(0));
    }
}
