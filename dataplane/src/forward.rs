//! The forwarding stage: parse L2/L3 once, look the destination up, rewrite MACs, decrement
//! TTL / hop limit, fix the IPv4 checksum incrementally (RFC 1624). Works on the first
//! segment's bytes; packets longer than it (jumbo chains) keep their other segments as they
//! are. Every way a packet can be wrong is a counted `DropReason`.
//!
//! The table is compiled once from the configuration; lookups never allocate.

use crate::wire::{self, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6};
use control::config::{Config, Prefix};
use routing::{Ipv4Prefix, Ipv6Prefix, Lpm4, Lpm6, LpmError};

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
    /// TTL / hop limit would reach zero.
    TtlExpired,
    /// No route for the destination.
    NoRoute,
    /// Larger than the egress port's MTU (no fragmentation on the fast path).
    MtuExceeded,
    /// ARP, packets to the appliance's own addresses, IPv6 link-local and multicast:
    /// the control plane's, not forwarded.
    ForControlPlane,
    /// IPv4 multicast, broadcast or reserved (224.0.0.0/3) destinations: never routed.
    NotUnicast,
    /// An EtherType Sluice does not forward.
    UnsupportedEthertype,
    /// The egress queue was full (tx_burst did not take the packet).
    TxFull,
}

impl DropReason {
    pub const COUNT: usize = 10;
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::Truncated,
        DropReason::BadIpHeader,
        DropReason::BadChecksum,
        DropReason::TtlExpired,
        DropReason::NoRoute,
        DropReason::MtuExceeded,
        DropReason::ForControlPlane,
        DropReason::NotUnicast,
        DropReason::UnsupportedEthertype,
        DropReason::TxFull,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::BadIpHeader => "bad_ip_header",
            DropReason::BadChecksum => "bad_checksum",
            DropReason::TtlExpired => "ttl_expired",
            DropReason::NoRoute => "no_route",
            DropReason::MtuExceeded => "mtu_exceeded",
            DropReason::ForControlPlane => "for_control_plane",
            DropReason::NotUnicast => "not_unicast",
            DropReason::UnsupportedEthertype => "unsupported_ethertype",
            DropReason::TxFull => "tx_full",
        }
    }
}

impl From<wire::Error> for DropReason {
    fn from(e: wire::Error) -> DropReason {
        match e {
            wire::Error::Truncated => DropReason::Truncated,
            wire::Error::Malformed => DropReason::BadIpHeader,
        }
    }
}

/// What to do with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send on this port (index into the configuration's ports).
    Forward(u16),
    Drop(DropReason),
}

/// Where a route leads: precomputed bytes for the rewrite.
#[derive(Debug, Clone, Copy)]
struct NextHop {
    /// Destination MAC then the egress port's MAC: the first 12 bytes of the frame.
    macs: [u8; 12],
    port: u16,
    /// Largest IP packet the egress port takes.
    mtu: u16,
}

/// Routes to the appliance's own addresses, and to IPv6 link-local and multicast space,
/// carry this value: the control plane's packets.
const LOCAL: u32 = routing::lpm::MAX_VALUE;
/// IPv4 multicast, broadcast and reserved space carries this value: never routed.
const NOT_UNICAST: u32 = routing::lpm::MAX_VALUE - 1;

/// RX checksum offload result, as the driver reports it in the mbuf's flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxChecksum {
    Good,
    Bad,
    /// Not checked by the device: verify in software.
    Unknown,
}

/// The compiled forwarding table.
pub struct ForwardTable {
    v4: Lpm4,
    v6: Lpm6,
    next_hops: Vec<NextHop>,
}

impl ForwardTable {
    /// Compiles the configuration's routes. `port_macs[i]` is port i's MAC address.
    pub fn build(cfg: &Config, port_macs: &[[u8; 6]]) -> Result<ForwardTable, LpmError> {
        let mut next_hops = Vec::new();
        let mut r4: Vec<(Ipv4Prefix, u32)> = Vec::new();
        let mut r6: Vec<(Ipv6Prefix, u32)> = Vec::new();
        for r in &cfg.routes {
            let mut macs = [0u8; 12];
            macs[..6].copy_from_slice(&r.next_hop_mac.0);
            macs[6..].copy_from_slice(&port_macs[r.port]);
            let idx = next_hops.len() as u32;
            next_hops.push(NextHop {
                macs,
                port: r.port as u16,
                mtu: cfg.ports[r.port].mtu,
            });
            match r.prefix {
                Prefix::V4(p) => r4.push((p, idx)),
                Prefix::V6(p) => r6.push((p, idx)),
            }
        }
        // Address space that is never forwarded is compiled into the table, so the fast path
        // needs no checks of its own for it. Configuration validation refuses routes inside
        // these ranges and routes to the appliance's own addresses, so nothing collides.
        r4.push((control::config::IPV4_NOT_UNICAST, NOT_UNICAST));
        r6.extend(control::config::IPV6_LINK_ONLY.iter().map(|&p| (p, LOCAL)));
        for p in &cfg.ports {
            r4.extend(p.ipv4.iter().map(|a| (Ipv4Prefix::new(a.addr, 32), LOCAL)));
            r6.extend(p.ipv6.iter().map(|a| (Ipv6Prefix::new(a.addr, 128), LOCAL)));
        }
        Ok(ForwardTable {
            v4: Lpm4::build(&r4, Lpm4::DEFAULT_MAX_GROUPS)?,
            v6: Lpm6::build(&r6, Lpm6::DEFAULT_MAX_GROUPS)?,
            next_hops,
        })
    }

    /// Memory the tables take (virtual; untouched pages of the first level are not resident).
    pub fn memory_bytes(&self) -> usize {
        self.v4.memory_bytes() + self.v6.memory_bytes()
    }

    /// Decides and rewrites one packet. `frame` is the first segment, `pkt_len` the whole
    /// packet's length.
    #[inline(always)]
    pub fn forward(&self, frame: &mut [u8], pkt_len: u32, csum: RxChecksum) -> Verdict {
        let Some((ethertype, l2)) = wire::ethertype_and_l2_len(frame) else {
            return Verdict::Drop(DropReason::Truncated);
        };
        match ethertype {
            ETHERTYPE_IPV4 => self.forward_v4(frame, l2, pkt_len, csum),
            ETHERTYPE_IPV6 => self.forward_v6(frame, l2, pkt_len),
            ETHERTYPE_ARP => Verdict::Drop(DropReason::ForControlPlane),
            _ => Verdict::Drop(DropReason::UnsupportedEthertype),
        }
    }

    /// Where a lookup result leads: a next hop, or why the packet stops here.
    #[inline(always)]
    fn next_hop(&self, route: Option<u32>) -> Result<&NextHop, DropReason> {
        match route {
            None => Err(DropReason::NoRoute),
            Some(LOCAL) => Err(DropReason::ForControlPlane),
            Some(NOT_UNICAST) => Err(DropReason::NotUnicast),
            Some(i) => Ok(&self.next_hops[i as usize]),
        }
    }

    #[inline(always)]
    fn forward_v4(&self, frame: &mut [u8], l2: usize, pkt_len: u32, csum: RxChecksum) -> Verdict {
        let (head, ip) = frame.split_at_mut(l2);
        let hdr = match wire::Ipv4Header::new_checked(ip, pkt_len - l2 as u32) {
            Ok(h) => h,
            Err(e) => return Verdict::Drop(e.into()),
        };
        let ok = match csum {
            RxChecksum::Good => true,
            RxChecksum::Bad => false,
            RxChecksum::Unknown => hdr.checksum_valid(),
        };
        if !ok {
            return Verdict::Drop(DropReason::BadChecksum);
        }
        let nh = match self.next_hop(self.v4.lookup(hdr.dst())) {
            Ok(nh) => nh,
            Err(r) => return Verdict::Drop(r),
        };
        if hdr.ttl() <= 1 {
            return Verdict::Drop(DropReason::TtlExpired);
        }
        if hdr.total_len() > nh.mtu {
            return Verdict::Drop(DropReason::MtuExceeded);
        }
        let mut hdr = hdr;
        hdr.decrement_ttl();
        head[..12].copy_from_slice(&nh.macs);
        Verdict::Forward(nh.port)
    }

    #[inline(always)]
    fn forward_v6(&self, frame: &mut [u8], l2: usize, pkt_len: u32) -> Verdict {
        let (head, ip) = frame.split_at_mut(l2);
        let mut hdr = match wire::Ipv6Header::new_checked(ip, pkt_len - l2 as u32) {
            Ok(h) => h,
            Err(e) => return Verdict::Drop(e.into()),
        };
        let nh = match self.next_hop(self.v6.lookup(hdr.dst())) {
            Ok(nh) => nh,
            Err(r) => return Verdict::Drop(r),
        };
        if hdr.hop_limit() <= 1 {
            return Verdict::Drop(DropReason::TtlExpired);
        }
        if hdr.total_len() > nh.mtu as u32 {
            return Verdict::Drop(DropReason::MtuExceeded);
        }
        hdr.decrement_hop_limit();
        head[..12].copy_from_slice(&nh.macs);
        Verdict::Forward(nh.port)
    }
}

#[cfg(test)]
mod tests;
