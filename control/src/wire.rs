//! Wire constants and the Internet checksum: EtherTypes and header lengths, the
//! one's-complement sum (RFC 1071), its incremental update (RFC 1624), the IPv4 header
//! and pseudo-header (UDP, TCP, ICMPv6) checksums, and NTP timestamps. The fast path
//! (`dataplane`), the control plane's packets (`packet`) and the generator share them.

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const ETHERTYPE_VLAN: u16 = 0x8100;
pub const ETHERTYPE_QINQ: u16 = 0x88a8;

pub const ETHERNET_HEADER_LEN: usize = 14;
pub const VLAN_TAG_LEN: usize = 4;
pub const IPV4_MIN_HEADER_LEN: usize = 20;
pub const IPV6_HEADER_LEN: usize = 40;

/// One's-complement sum of 16-bit big-endian words (odd trailing byte padded with zero),
/// folded to 16 bits.
#[inline(always)]
pub fn ones_complement_sum(bytes: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    let mut chunks = bytes.chunks_exact(4);
    for c in &mut chunks {
        sum += u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as u64;
    }
    let rest = chunks.remainder();
    let mut i = 0;
    while i + 1 < rest.len() {
        sum += u16::from_be_bytes([rest[i], rest[i + 1]]) as u64;
        i += 2;
    }
    if i < rest.len() {
        sum += (rest[i] as u64) << 8;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The Internet checksum of `bytes` (RFC 1071).
pub fn checksum(bytes: &[u8]) -> u16 {
    !ones_complement_sum(bytes)
}

/// RFC 1624 eqn. 3: the checksum after a 16-bit word changes from `old` to `new`:
/// HC' = ~(~HC + ~m + m').
#[inline(always)]
pub fn checksum_update16(hc: u16, old: u16, new: u16) -> u16 {
    let mut sum = (!hc as u32) + (!old as u32 & 0xffff) + new as u32;
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

#[inline(always)]
pub fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Writes the IPv4 header checksum of the header at `l3`.
pub fn ipv4_header_checksum(f: &mut [u8], l3: usize) {
    let ihl = (f[l3] & 0xf) as usize * 4;
    f[l3 + 10] = 0;
    f[l3 + 11] = 0;
    let c = checksum(&f[l3..l3 + ihl]);
    f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
}

/// The folded one's-complement sum of `seg` (an L4 header and its data) under the
/// pseudo-header of the IP header at `f[l3..]` (addresses, protocol `proto`, length).
fn pseudo_header_sum(f: &[u8], l3: usize, v6: bool, proto: u8, seg: &[u8]) -> u16 {
    let addrs = if v6 { &f[l3 + 8..l3 + 40] } else { &f[l3 + 12..l3 + 20] };
    let mut sum = ones_complement_sum(addrs) as u32 + proto as u32 + seg.len() as u32 + ones_complement_sum(seg) as u32;
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Whether the L4 checksum of `seg` verifies under the pseudo-header of the IP header at
/// `f[l3..]` (UDP, TCP, ICMPv6).
pub fn l4_checksum_ok(f: &[u8], l3: usize, seg: &[u8], v6: bool, proto: u8) -> bool {
    pseudo_header_sum(f, l3, v6, proto, seg) == 0xffff
}

/// The L4 checksum over a pseudo-header (UDP, TCP, ICMPv6), written at `csum_at`; the L4
/// data runs from `l4` to the end of `f`, and the protocol is the IP header's own (an
/// IPv6 header followed directly by the L4 header). UDP's zero is sent as 0xffff.
pub fn l4_checksum(f: &mut [u8], l3: usize, l4: usize, v6: bool, csum_at: usize, udp: bool) {
    f[csum_at] = 0;
    f[csum_at + 1] = 0;
    let proto = if v6 { f[l3 + 6] } else { f[l3 + 9] };
    let mut c = !pseudo_header_sum(f, l3, v6, proto, &f[l4..]);
    if c == 0 && udp {
        c = 0xffff;
    }
    f[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
}

/// NTP timestamp (seconds since 1900 in the high 32 bits, fraction in the low 32) for a
/// time in ns since the Unix epoch.
pub fn ntp_from_unix_ns(ns: u64) -> u64 {
    let secs = ns / 1_000_000_000 + 2_208_988_800;
    let frac = ((ns % 1_000_000_000) << 32) / 1_000_000_000;
    secs << 32 | frac
}

/// The inverse of `ntp_from_unix_ns` (to the nanosecond, rounding down).
pub fn unix_ns_from_ntp(ntp: u64) -> u64 {
    let secs = (ntp >> 32).saturating_sub(2_208_988_800);
    let frac = ((ntp & 0xffff_ffff) * 1_000_000_000) >> 32;
    secs * 1_000_000_000 + frac
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real IPv4/UDP header (192.168.0.1 -> 192.168.0.199) with its correct checksum 0xb861.
    const IPV4: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8,
        0x00, 0xc7,
    ];

    #[test]
    fn checksum_of_a_real_header() {
        assert_eq!(ones_complement_sum(&IPV4), 0xffff);
        let mut z = IPV4;
        z[10] = 0;
        z[11] = 0;
        assert_eq!(checksum(&z), 0xb861);
        // Any single-bit change is caught.
        for i in 0..20 {
            for bit in 0..8 {
                let mut bad = IPV4;
                bad[i] ^= 1 << bit;
                assert_ne!(ones_complement_sum(&bad), 0xffff, "byte {i} bit {bit}");
            }
        }
        // Odd lengths pad with a zero byte.
        assert_eq!(ones_complement_sum(&[0x12, 0x34, 0x56]), 0x6834);
    }

    #[test]
    fn ntp_round_trip() {
        for ns in [0u64, 1, 999_999_999, 1_700_000_000_123_456_789] {
            let back = unix_ns_from_ntp(ntp_from_unix_ns(ns));
            assert!(ns - back <= 1, "{ns} {back}");
        }
        // 1970-01-01 is 2 208 988 800 s after 1900-01-01.
        assert_eq!(ntp_from_unix_ns(0) >> 32, 2_208_988_800);
        assert_eq!(ntp_from_unix_ns(500_000_000) & 0xffff_ffff, 1 << 31);
    }

    #[test]
    fn rfc1624_example() {
        // RFC 1624 section 4: HC = 0xdd2f, m = 0x5555 -> m' = 0x3285 gives HC' = 0x0000.
        assert_eq!(checksum_update16(0xdd2f, 0x5555, 0x3285), 0x0000);
    }

    #[test]
    fn update_matches_full_recompute() {
        let mut seed = 0x1234_5678_9abc_def0u64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut b = IPV4;
            b[4..8].copy_from_slice(&(seed as u32).to_be_bytes());
            b[12..20].copy_from_slice(&seed.to_be_bytes());
            b[10] = 0;
            b[11] = 0;
            let c = checksum(&b);
            b[10..12].copy_from_slice(&c.to_be_bytes());
            let word = 2 * ((seed >> 40) as usize % 10);
            if word == 10 {
                continue;
            }
            let old = u16::from_be_bytes([b[word], b[word + 1]]);
            let new = (seed >> 48) as u16;
            b[word..word + 2].copy_from_slice(&new.to_be_bytes());
            let hc = checksum_update16(u16::from_be_bytes([b[10], b[11]]), old, new);
            b[10..12].copy_from_slice(&hc.to_be_bytes());
            assert_eq!(ones_complement_sum(&b), 0xffff);
        }
    }
}
