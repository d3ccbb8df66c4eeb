//! Typed views over packet bytes: Ethernet (with 802.1Q / QinQ tags), IPv4 and IPv6
//! headers, and the Internet checksum. Constructors check lengths once and return a typed
//! error; accessors read and write fields at fixed offsets.

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const ETHERTYPE_VLAN: u16 = 0x8100;
pub const ETHERTYPE_QINQ: u16 = 0x88a8;

pub const ETHERNET_HEADER_LEN: usize = 14;
pub const VLAN_TAG_LEN: usize = 4;
pub const IPV4_MIN_HEADER_LEN: usize = 20;
pub const IPV6_HEADER_LEN: usize = 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Fewer bytes than the header needs or announces.
    Truncated,
    /// Fields contradict each other or the version is wrong.
    Malformed,
}

#[inline(always)]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// The EtherType after up to two VLAN tags, and the length of the L2 header.
#[inline(always)]
pub fn ethertype_and_l2_len(frame: &[u8]) -> Option<(u16, usize)> {
    if frame.len() < ETHERNET_HEADER_LEN {
        return None;
    }
    let mut et = be16(frame, 12);
    let mut l2 = ETHERNET_HEADER_LEN;
    if et == ETHERTYPE_IPV4 {
        return Some((et, l2));
    }
    for _ in 0..2 {
        if et != ETHERTYPE_VLAN && et != ETHERTYPE_QINQ {
            break;
        }
        if frame.len() < l2 + VLAN_TAG_LEN {
            return None;
        }
        et = be16(frame, l2 + 2);
        l2 += VLAN_TAG_LEN;
    }
    Some((et, l2))
}

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
        sum += be16(rest, i) as u64;
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

/// One's-complement sum of native-endian 32-bit words, folded to 16 bits. One's-complement
/// sums do not depend on byte order except for a byte swap of the result, so comparing it
/// with 0xffff (which a swap leaves alone) verifies a checksum without any byte swapping.
/// `bytes.len()` must be a multiple of 4 (IPv4 headers are).
#[inline(always)]
fn ones_complement_sum_ne(bytes: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    for c in bytes.chunks_exact(4) {
        sum += u32::from_ne_bytes([c[0], c[1], c[2], c[3]]) as u64;
    }
    fold_ne(sum)
}

/// Folds a sum of at most 2^16 32-bit words to 16 bits with end-around carries.
#[inline(always)]
fn fold_ne(sum: u64) -> u16 {
    // < 2^48: the high half adds into the low half with at most one carry left over.
    let s = (sum & 0xffff_ffff) + (sum >> 32);
    let s = (s & 0xffff) + (s >> 16);
    let s = (s & 0xffff) + (s >> 16);
    ((s & 0xffff) + (s >> 16)) as u16
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

/// A checked view of an IPv4 header at the start of `buf`.
pub struct Ipv4Header<'a> {
    buf: &'a mut [u8],
    header_len: usize,
}

impl<'a> Ipv4Header<'a> {
    /// Checks version, header length and total length against `avail`, the bytes of the
    /// packet from the IP header on (which may exceed `buf` when the packet is chained).
    #[inline(always)]
    pub fn new_checked(buf: &'a mut [u8], avail: u32) -> Result<Self, Error> {
        if buf.len() < IPV4_MIN_HEADER_LEN {
            return Err(Error::Truncated);
        }
        let vihl = buf[0];
        // Version 4 without options, nearly every packet: one comparison.
        let header_len = if vihl == 0x45 {
            IPV4_MIN_HEADER_LEN
        } else {
            if vihl >> 4 != 4 {
                return Err(Error::Malformed);
            }
            let header_len = (vihl & 0x0f) as usize * 4;
            if header_len < IPV4_MIN_HEADER_LEN {
                return Err(Error::Malformed);
            }
            if buf.len() < header_len {
                return Err(Error::Truncated);
            }
            header_len
        };
        let total = be16(buf, 2) as usize;
        if total < header_len {
            return Err(Error::Malformed);
        }
        if total as u32 > avail {
            return Err(Error::Truncated);
        }
        Ok(Ipv4Header { buf, header_len })
    }

    pub fn header_len(&self) -> usize {
        self.header_len
    }
    #[inline(always)]
    pub fn total_len(&self) -> u16 {
        be16(self.buf, 2)
    }
    #[inline(always)]
    pub fn ttl(&self) -> u8 {
        self.buf[8]
    }
    pub fn protocol(&self) -> u8 {
        self.buf[9]
    }
    pub fn header_checksum(&self) -> u16 {
        be16(self.buf, 10)
    }
    pub fn src(&self) -> u32 {
        u32::from_be_bytes([self.buf[12], self.buf[13], self.buf[14], self.buf[15]])
    }
    #[inline(always)]
    pub fn dst(&self) -> u32 {
        u32::from_be_bytes([self.buf[16], self.buf[17], self.buf[18], self.buf[19]])
    }
    /// Whether the header (with options) sums to 0xffff.
    #[inline(always)]
    pub fn checksum_valid(&self) -> bool {
        if self.header_len == IPV4_MIN_HEADER_LEN {
            // No options (nearly every packet): five words, straight-line.
            let b = &self.buf[..IPV4_MIN_HEADER_LEN];
            let w = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as u64;
            // The one's-complement sum is 0xffff exactly when the plain sum is a non-zero
            // multiple of 65535: 2^16 = 1 (mod 65535) makes a 32-bit word count as its two
            // halves, and reading bytes swapped multiplies by 256, which is prime to 65535.
            // The version nibble makes the sum non-zero.
            return (w(0) + w(4) + w(8) + w(12) + w(16)) % 0xffff == 0;
        }
        ones_complement_sum_ne(&self.buf[..self.header_len]) == 0xffff
    }
    /// TTL minus one, checksum updated incrementally. The caller checked TTL > 1.
    ///
    /// TTL is the high byte of the 16-bit word at offset 8, so the word drops by 0x0100
    /// and, by RFC 1624 eqn. 3 (HC' = ~(~HC + ~m + m')), the checksum rises by 0x0100 in
    /// one's-complement arithmetic.
    #[inline(always)]
    pub fn decrement_ttl(&mut self) {
        self.buf[8] -= 1;
        let hc = be16(self.buf, 10) as u32 + 0x0100;
        let hc = (hc & 0xffff) + (hc >> 16);
        self.buf[10..12].copy_from_slice(&(hc as u16).to_be_bytes());
    }
}

/// A checked view of an IPv6 fixed header at the start of `buf`.
pub struct Ipv6Header<'a> {
    buf: &'a mut [u8],
}

impl<'a> Ipv6Header<'a> {
    #[inline(always)]
    pub fn new_checked(buf: &'a mut [u8], avail: u32) -> Result<Self, Error> {
        if buf.len() < IPV6_HEADER_LEN {
            return Err(Error::Truncated);
        }
        if buf[0] >> 4 != 6 {
            return Err(Error::Malformed);
        }
        if IPV6_HEADER_LEN as u32 + be16(buf, 4) as u32 > avail {
            return Err(Error::Truncated);
        }
        Ok(Ipv6Header { buf })
    }

    /// Header plus payload.
    #[inline(always)]
    pub fn total_len(&self) -> u32 {
        IPV6_HEADER_LEN as u32 + be16(self.buf, 4) as u32
    }
    pub fn next_header(&self) -> u8 {
        self.buf[6]
    }
    #[inline(always)]
    pub fn hop_limit(&self) -> u8 {
        self.buf[7]
    }
    #[inline(always)]
    pub fn dst(&self) -> u128 {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buf[24..40]);
        u128::from_be_bytes(a)
    }
    #[inline(always)]
    pub fn decrement_hop_limit(&mut self) {
        self.buf[7] -= 1;
    }
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
    fn ipv4_fields_and_checksum() {
        let mut b = IPV4;
        let h = Ipv4Header::new_checked(&mut b, 0x73).unwrap();
        assert_eq!(h.total_len(), 0x73);
        assert_eq!(h.ttl(), 64);
        assert_eq!(h.protocol(), 17);
        assert_eq!(h.src(), 0xc0a8_0001);
        assert_eq!(h.dst(), 0xc0a8_00c7);
        assert_eq!(h.header_checksum(), 0xb861);
        assert!(h.checksum_valid());
        let mut z = IPV4;
        z[10] = 0;
        z[11] = 0;
        assert_eq!(checksum(&z), 0xb861);
    }

    #[test]
    fn ipv4_errors() {
        let mut b = IPV4;
        assert_eq!(
            Ipv4Header::new_checked(&mut b[..19], 0x73).err(),
            Some(Error::Truncated)
        );
        assert_eq!(Ipv4Header::new_checked(&mut b, 0x72).err(), Some(Error::Truncated));
        let mut v = IPV4;
        v[0] = 0x65;
        assert_eq!(Ipv4Header::new_checked(&mut v, 0x73).err(), Some(Error::Malformed));
        let mut ihl = IPV4;
        ihl[0] = 0x44;
        assert_eq!(Ipv4Header::new_checked(&mut ihl, 0x73).err(), Some(Error::Malformed));
        let mut opt = IPV4;
        opt[0] = 0x46; // claims 24 bytes of header, buffer has 20
        assert_eq!(Ipv4Header::new_checked(&mut opt, 0x73).err(), Some(Error::Truncated));
        let mut tl = IPV4;
        tl[2] = 0;
        tl[3] = 19;
        assert_eq!(Ipv4Header::new_checked(&mut tl, 0x73).err(), Some(Error::Malformed));
    }

    #[test]
    fn ttl_decrement_matches_full_recompute() {
        // Every TTL and a spread of checksums, including the 0x0000/0xffff corner cases.
        let mut seed = 0x1234_5678_9abc_def0u64;
        for ttl in 2..=255u8 {
            for _ in 0..16 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let mut b = IPV4;
                b[8] = ttl;
                b[4..8].copy_from_slice(&(seed as u32).to_be_bytes());
                b[12..20].copy_from_slice(&seed.to_be_bytes());
                b[10] = 0;
                b[11] = 0;
                let c = checksum(&b);
                b[10..12].copy_from_slice(&c.to_be_bytes());
                let mut h = Ipv4Header::new_checked(&mut b, 0x73).unwrap();
                h.decrement_ttl();
                assert!(h.checksum_valid(), "ttl {ttl}");
                let mut z = b;
                z[10] = 0;
                z[11] = 0;
                let full = checksum(&z);
                // One's complement has two zeros; both verify, the update may give either.
                let got = be16(&b, 10);
                assert!(
                    got == full || (got ^ full) == 0xffff && (got == 0 || full == 0),
                    "ttl {ttl}: {got:#x} vs {full:#x}"
                );
            }
        }
    }

    #[test]
    fn checksum_with_options_and_corruption() {
        // 24-byte header with a 4-byte option: the general path.
        let mut b = [0u8; 24];
        b[..20].copy_from_slice(&IPV4);
        b[0] = 0x46;
        b[2..4].copy_from_slice(&24u16.to_be_bytes());
        b[20..24].copy_from_slice(&[0x94, 0x04, 0x00, 0x00]);
        b[10..12].copy_from_slice(&[0, 0]);
        let c = checksum(&b);
        b[10..12].copy_from_slice(&c.to_be_bytes());
        assert!(Ipv4Header::new_checked(&mut b.clone(), 24).unwrap().checksum_valid());
        for i in 0..24 {
            let mut bad = b;
            bad[i] ^= 0x10;
            assert!(
                !Ipv4Header::new_checked(&mut bad, 24)
                    .map(|h| h.checksum_valid())
                    .unwrap_or(false),
                "byte {i}"
            );
        }
        for i in 0..20 {
            let mut bad = IPV4;
            bad[i] ^= 0x01;
            assert!(
                !Ipv4Header::new_checked(&mut bad, 0x73)
                    .map(|h| h.checksum_valid())
                    .unwrap_or(false),
                "byte {i}"
            );
        }
    }

    #[test]
    fn rfc1624_example() {
        // RFC 1624 section 4: HC = 0xdd2f, m = 0x5555 -> m' = 0x3285 gives HC' = 0x0000.
        assert_eq!(checksum_update16(0xdd2f, 0x5555, 0x3285), 0x0000);
    }

    #[test]
    fn vlan_tags() {
        let mut f = vec![0u8; 22];
        f[12..14].copy_from_slice(&ETHERTYPE_QINQ.to_be_bytes());
        f[16..18].copy_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
        f[20..22].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
        assert_eq!(ethertype_and_l2_len(&f), Some((ETHERTYPE_IPV6, 22)));
        assert_eq!(ethertype_and_l2_len(&f[..21]), None);
        assert_eq!(ethertype_and_l2_len(&f[..13]), None);
        f[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        assert_eq!(ethertype_and_l2_len(&f), Some((ETHERTYPE_IPV4, 14)));
    }

    #[test]
    fn ipv6_header() {
        let mut b = [0u8; 48];
        b[0] = 0x60;
        b[4..6].copy_from_slice(&8u16.to_be_bytes());
        b[6] = 17;
        b[7] = 64;
        b[24] = 0x20;
        b[25] = 0x01;
        let mut h = Ipv6Header::new_checked(&mut b, 48).unwrap();
        assert_eq!(h.total_len(), 48);
        assert_eq!(h.dst() >> 112, 0x2001);
        h.decrement_hop_limit();
        assert_eq!(h.hop_limit(), 63);
        assert_eq!(Ipv6Header::new_checked(&mut b, 47).err(), Some(Error::Truncated));
        assert_eq!(Ipv6Header::new_checked(&mut b[..39], 48).err(), Some(Error::Truncated));
        b[0] = 0x40;
        assert_eq!(Ipv6Header::new_checked(&mut b, 48).err(), Some(Error::Malformed));
    }
}
