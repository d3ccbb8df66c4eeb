//! Builds Ethernet/IPv4/IPv6/UDP/TCP frames with correct checksums: for golden tests, the
//! benchmark's pcap files and the packet generator. Slow path only (allocates).

use crate::wire::{checksum, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_VLAN};
use std::net::{Ipv4Addr, Ipv6Addr};

pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// What to put in a frame. `frame_len` is the Ethernet frame without FCS (60 = a 64-byte
/// frame on the wire); the payload is padded to reach it.
#[derive(Debug, Clone)]
pub struct FrameSpec {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub vlan: Option<u16>,
    pub src: IpAddrPair,
    pub proto: u8,
    pub src_port: u16,
    pub dst_port: u16,
    pub ttl: u8,
    pub dscp: u8,
    /// The two ECN bits (1 or 2: ECN-capable; 3: CE).
    pub ecn: u8,
    pub frame_len: usize,
}

#[derive(Debug, Clone, Copy)]
pub enum IpAddrPair {
    V4(Ipv4Addr, Ipv4Addr),
    V6(Ipv6Addr, Ipv6Addr),
}

impl FrameSpec {
    pub fn udp4(src: Ipv4Addr, dst: Ipv4Addr, frame_len: usize) -> FrameSpec {
        FrameSpec {
            dst_mac: [0x02, 0, 0, 0, 0, 0x01],
            src_mac: [0x02, 0, 0, 0, 0, 0x02],
            vlan: None,
            src: IpAddrPair::V4(src, dst),
            proto: PROTO_UDP,
            src_port: 1024,
            dst_port: 5001,
            ttl: 64,
            dscp: 0,
            ecn: 0,
            frame_len,
        }
    }

    pub fn udp6(src: Ipv6Addr, dst: Ipv6Addr, frame_len: usize) -> FrameSpec {
        FrameSpec {
            src: IpAddrPair::V6(src, dst),
            ..FrameSpec::udp4(Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED, frame_len)
        }
    }

    /// The frame's bytes.
    pub fn build(&self) -> Vec<u8> {
        let mut f = Vec::with_capacity(self.frame_len.max(64));
        f.extend_from_slice(&self.dst_mac);
        f.extend_from_slice(&self.src_mac);
        if let Some(v) = self.vlan {
            f.extend_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
            f.extend_from_slice(&(v & 0x0fff).to_be_bytes());
        }
        let l4_hdr = if self.proto == PROTO_TCP { 20 } else { 8 };
        match self.src {
            IpAddrPair::V4(s, d) => {
                f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
                let ip_len = self.frame_len.saturating_sub(f.len()).max(20 + l4_hdr);
                let ip_at = f.len();
                f.extend_from_slice(&[0x45, self.dscp << 2 | (self.ecn & 3)]);
                f.extend_from_slice(&(ip_len as u16).to_be_bytes());
                f.extend_from_slice(&[0, 0, 0x40, 0, self.ttl, self.proto, 0, 0]);
                f.extend_from_slice(&s.octets());
                f.extend_from_slice(&d.octets());
                let c = checksum(&f[ip_at..ip_at + 20]);
                f[ip_at + 10..ip_at + 12].copy_from_slice(&c.to_be_bytes());
                let l4_len = ip_len - 20;
                let mut pseudo = Vec::with_capacity(12);
                pseudo.extend_from_slice(&s.octets());
                pseudo.extend_from_slice(&d.octets());
                pseudo.extend_from_slice(&[0, self.proto]);
                pseudo.extend_from_slice(&(l4_len as u16).to_be_bytes());
                self.l4(&mut f, l4_len, &pseudo);
            }
            IpAddrPair::V6(s, d) => {
                f.extend_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
                let ip_len = self.frame_len.saturating_sub(f.len()).max(40 + l4_hdr);
                let l4_len = ip_len - 40;
                let tc = (self.dscp as u32) << 2 | (self.ecn & 3) as u32;
                f.extend_from_slice(&((6u32 << 28) | (tc << 20)).to_be_bytes());
                f.extend_from_slice(&(l4_len as u16).to_be_bytes());
                f.extend_from_slice(&[self.proto, self.ttl]);
                f.extend_from_slice(&s.octets());
                f.extend_from_slice(&d.octets());
                let mut pseudo = Vec::with_capacity(40);
                pseudo.extend_from_slice(&s.octets());
                pseudo.extend_from_slice(&d.octets());
                pseudo.extend_from_slice(&(l4_len as u32).to_be_bytes());
                pseudo.extend_from_slice(&[0, 0, 0, self.proto]);
                self.l4(&mut f, l4_len, &pseudo);
            }
        }
        f
    }

    fn l4(&self, f: &mut Vec<u8>, l4_len: usize, pseudo: &[u8]) {
        let at = f.len();
        f.extend_from_slice(&self.src_port.to_be_bytes());
        f.extend_from_slice(&self.dst_port.to_be_bytes());
        let csum_at = if self.proto == PROTO_TCP {
            f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x10, 0xff, 0xff, 0, 0, 0, 0]);
            at + 16
        } else {
            f.extend_from_slice(&(l4_len as u16).to_be_bytes());
            f.extend_from_slice(&[0, 0]);
            at + 6
        };
        // A recognisable payload: byte i is i's low byte.
        let payload = l4_len - (f.len() - at);
        f.extend((0..payload).map(|i| i as u8));
        let mut sum_over = pseudo.to_vec();
        sum_over.extend_from_slice(&f[at..]);
        let mut c = checksum(&sum_over);
        if c == 0 && self.proto == PROTO_UDP {
            c = 0xffff;
        }
        f[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ones_complement_sum;

    #[test]
    fn udp4_frame() {
        let f = FrameSpec::udp4("10.0.0.1".parse().unwrap(), "198.18.0.5".parse().unwrap(), 60).build();
        assert_eq!(f.len(), 60);
        assert_eq!(&f[12..14], &[0x08, 0x00]);
        assert_eq!(ones_complement_sum(&f[14..34]), 0xffff);
        assert_eq!(u16::from_be_bytes([f[16], f[17]]), 46);
        // UDP checksum over pseudo-header + segment verifies.
        let mut p = Vec::new();
        p.extend_from_slice(&f[26..34]);
        p.extend_from_slice(&[0, 17, 0, 26]);
        p.extend_from_slice(&f[34..]);
        assert_eq!(ones_complement_sum(&p), 0xffff);
    }

    #[test]
    fn udp6_and_vlan_frame() {
        let mut s = FrameSpec::udp6("2001:db8::1".parse().unwrap(), "2001:db8:1::1".parse().unwrap(), 100);
        s.vlan = Some(42);
        let f = s.build();
        assert_eq!(f.len(), 100);
        assert_eq!(&f[12..14], &[0x81, 0x00]);
        assert_eq!(&f[16..18], &[0x86, 0xdd]);
        assert_eq!(u16::from_be_bytes([f[22], f[23]]), 100 - 18 - 40);
    }
}
