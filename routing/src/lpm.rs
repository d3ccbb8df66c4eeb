//! Longest-prefix match, DIR-24-8 style.
//!
//! One multibit trie serves both families: a wide first level (24 bits for IPv4, 16 for
//! IPv6) indexed directly by the top bits of the address, then 256-entry groups for each
//! further 8 bits. An IPv4 lookup is one load, or two when a prefix longer than /24 lives
//! under that /24; an IPv6 lookup is at most 15.
//!
//! Tables are built whole from a route list, shortest prefixes first, so a longer prefix
//! simply overwrites the ranges of shorter ones; changing a route means building a new
//! table (the control thread does that and publishes it). Lookups never allocate.
//!
//! Entry encoding (u32): 0 = no route; `VALID | value` = a route; `EXTENDED | group` =
//! look further in that group.

use crate::prefix::{Ipv4Prefix, Ipv6Prefix};
use std::net::{Ipv4Addr, Ipv6Addr};

const VALID: u32 = 1 << 31;
const EXTENDED: u32 = 1 << 30;
const PAYLOAD: u32 = EXTENDED - 1;
const GROUP: usize = 256;

/// Largest value a route may carry (values are typically next-hop indices).
pub const MAX_VALUE: u32 = PAYLOAD;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LpmError {
    #[error("route {0} appears twice")]
    Duplicate(String),
    #[error("route value {0} is larger than the maximum {MAX_VALUE}")]
    ValueTooLarge(u32),
    #[error("the table needs more than {0} 256-entry groups for prefixes longer than its first level; raise the limit or aggregate routes")]
    TooManyGroups(usize),
}

#[derive(Clone)]
struct Trie {
    first_bits: u32,
    top: Vec<u32>,
    groups: Vec<u32>,
    max_groups: usize,
}

impl Trie {
    fn new(first_bits: u32, max_groups: usize) -> Trie {
        // vec![0; n] is calloc'd: pages that no route touches are never faulted in.
        Trie {
            first_bits,
            top: vec![0; 1 << first_bits],
            groups: Vec::new(),
            max_groups,
        }
    }

    /// Returns the group an entry points to, creating it (filled with the entry's current
    /// route, which the new group inherits) when the entry is not extended yet.
    fn ensure_group(&mut self, entry: u32) -> Result<(usize, u32), LpmError> {
        if entry & EXTENDED != 0 {
            return Ok(((entry & PAYLOAD) as usize, entry));
        }
        let g = self.groups.len() / GROUP;
        if g >= self.max_groups {
            return Err(LpmError::TooManyGroups(self.max_groups));
        }
        self.groups.extend(std::iter::repeat_n(entry, GROUP));
        Ok((g, EXTENDED | g as u32))
    }

    /// Inserts a left-aligned masked key. Callers insert in order of increasing length.
    fn insert(&mut self, key: u128, len: u32, value: u32) -> Result<(), LpmError> {
        let entry = VALID | value;
        let first = self.first_bits;
        let idx = (key >> (128 - first)) as usize;
        if len <= first {
            let count = 1usize << (first - len);
            let range = &mut self.top[idx..idx + count];
            debug_assert!(range.iter().all(|e| e & EXTENDED == 0));
            range.fill(entry);
            return Ok(());
        }
        let (mut g, ext) = self.ensure_group(self.top[idx])?;
        self.top[idx] = ext;
        let mut bit = first;
        loop {
            let sub = ((key >> (128 - bit - 8)) & 0xff) as usize;
            if len <= bit + 8 {
                let count = 1usize << (bit + 8 - len);
                let base = g * GROUP + sub;
                self.groups[base..base + count].fill(entry);
                return Ok(());
            }
            let slot = g * GROUP + sub;
            let (ng, ext) = self.ensure_group(self.groups[slot])?;
            self.groups[slot] = ext;
            g = ng;
            bit += 8;
        }
    }

    #[inline(always)]
    fn lookup(&self, key: u128) -> Option<u32> {
        let mut e = self.top[(key >> (128 - self.first_bits)) as usize];
        let mut bit = self.first_bits;
        while e & EXTENDED != 0 {
            let sub = ((key >> (128 - bit - 8)) & 0xff) as usize;
            e = self.groups[(e & PAYLOAD) as usize * GROUP + sub];
            bit += 8;
        }
        if e & VALID != 0 {
            Some(e & PAYLOAD)
        } else {
            None
        }
    }

    fn memory_bytes(&self) -> usize {
        (self.top.len() + self.groups.len()) * 4
    }
}

fn build<P: Copy + Ord + std::fmt::Display>(
    trie: &mut Trie,
    routes: &[(P, u32)],
    key: impl Fn(&P) -> (u128, u32),
) -> Result<(), LpmError> {
    let mut sorted: Vec<(u32, u128, P, u32)> = Vec::with_capacity(routes.len());
    for (p, v) in routes {
        if *v > MAX_VALUE {
            return Err(LpmError::ValueTooLarge(*v));
        }
        let (k, len) = key(p);
        sorted.push((len, k, *p, *v));
    }
    sorted.sort_by_key(|a| (a.0, a.1));
    for w in sorted.windows(2) {
        if w[0].0 == w[1].0 && w[0].1 == w[1].1 {
            return Err(LpmError::Duplicate(w[1].2.to_string()));
        }
    }
    for (len, k, _, v) in sorted {
        trie.insert(k, len, v)?;
    }
    Ok(())
}

/// IPv4 longest-prefix match: 2^24-entry first level plus /32 groups.
#[derive(Clone)]
pub struct Lpm4 {
    trie: Trie,
    routes: usize,
}

impl Lpm4 {
    /// Default limit of groups for prefixes longer than /24 (each takes 1 KiB).
    pub const DEFAULT_MAX_GROUPS: usize = 1 << 16;

    /// Builds a table from `(prefix, value)` pairs; host bits of a prefix are ignored.
    pub fn build(routes: &[(Ipv4Prefix, u32)], max_groups: usize) -> Result<Lpm4, LpmError> {
        let mut trie = Trie::new(24, max_groups);
        build(&mut trie, routes, |p| {
            let n = p.network();
            ((u32::from(n.addr) as u128) << 96, n.len as u32)
        })?;
        Ok(Lpm4 {
            trie,
            routes: routes.len(),
        })
    }

    pub fn empty() -> Lpm4 {
        Lpm4 {
            trie: Trie::new(24, 0),
            routes: 0,
        }
    }

    /// The value of the longest prefix containing `addr` (host byte order).
    #[inline(always)]
    pub fn lookup(&self, addr: u32) -> Option<u32> {
        let e = self.trie.top[(addr >> 8) as usize];
        // The common case, a prefix of /24 or shorter, in one test.
        if e & (VALID | EXTENDED) == VALID {
            return Some(e & PAYLOAD);
        }
        let e = if e & EXTENDED != 0 {
            self.trie.groups[(e & PAYLOAD) as usize * GROUP + (addr & 0xff) as usize]
        } else {
            e
        };
        if e & VALID != 0 {
            Some(e & PAYLOAD)
        } else {
            None
        }
    }

    pub fn lookup_addr(&self, addr: Ipv4Addr) -> Option<u32> {
        self.lookup(u32::from(addr))
    }

    pub fn len(&self) -> usize {
        self.routes
    }
    pub fn is_empty(&self) -> bool {
        self.routes == 0
    }
    /// Virtual size of the tables; pages of the first level no route touched stay unmapped.
    pub fn memory_bytes(&self) -> usize {
        self.trie.memory_bytes()
    }
}

/// IPv6 longest-prefix match: 2^16-entry first level plus 8-bit groups down to /128.
#[derive(Clone)]
pub struct Lpm6 {
    trie: Trie,
    routes: usize,
}

impl Lpm6 {
    pub const DEFAULT_MAX_GROUPS: usize = 1 << 16;

    pub fn build(routes: &[(Ipv6Prefix, u32)], max_groups: usize) -> Result<Lpm6, LpmError> {
        let mut trie = Trie::new(16, max_groups);
        build(&mut trie, routes, |p| {
            let n = p.network();
            (u128::from(n.addr), n.len as u32)
        })?;
        Ok(Lpm6 {
            trie,
            routes: routes.len(),
        })
    }

    pub fn empty() -> Lpm6 {
        Lpm6 {
            trie: Trie::new(16, 0),
            routes: 0,
        }
    }

    /// The value of the longest prefix containing `addr` (the address as a big-endian u128).
    #[inline(always)]
    pub fn lookup(&self, addr: u128) -> Option<u32> {
        self.trie.lookup(addr)
    }

    pub fn lookup_addr(&self, addr: Ipv6Addr) -> Option<u32> {
        self.lookup(u128::from(addr))
    }

    pub fn len(&self) -> usize {
        self.routes
    }
    pub fn is_empty(&self) -> bool {
        self.routes == 0
    }
    pub fn memory_bytes(&self) -> usize {
        self.trie.memory_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*: deterministic randomness without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn naive4(routes: &[(Ipv4Prefix, u32)], a: u32) -> Option<u32> {
        routes
            .iter()
            .filter(|(p, _)| p.contains(Ipv4Addr::from(a)))
            .max_by_key(|(p, _)| p.len)
            .map(|(_, v)| *v)
    }

    fn naive6(routes: &[(Ipv6Prefix, u32)], a: u128) -> Option<u32> {
        routes
            .iter()
            .filter(|(p, _)| p.contains(Ipv6Addr::from(a)))
            .max_by_key(|(p, _)| p.len)
            .map(|(_, v)| *v)
    }

    #[test]
    fn v4_basic() {
        let r = |s: &str, v| (s.parse::<Ipv4Prefix>().unwrap(), v);
        let routes = vec![
            r("0.0.0.0/0", 1),
            r("10.0.0.0/8", 2),
            r("10.1.0.0/16", 3),
            r("10.1.2.128/25", 4),
            r("10.1.2.130/32", 5),
        ];
        let t = Lpm4::build(&routes, 16).unwrap();
        let l = |s: &str| t.lookup_addr(s.parse().unwrap());
        assert_eq!(l("192.0.2.1"), Some(1));
        assert_eq!(l("10.200.0.1"), Some(2));
        assert_eq!(l("10.1.2.3"), Some(3));
        assert_eq!(l("10.1.2.129"), Some(4));
        assert_eq!(l("10.1.2.130"), Some(5));
        assert_eq!(l("10.1.2.131"), Some(4));
        assert_eq!(l("10.1.3.1"), Some(3));
        let t = Lpm4::build(&routes[1..], 16).unwrap();
        assert_eq!(t.lookup_addr("192.0.2.1".parse().unwrap()), None);
    }

    #[test]
    fn v4_errors() {
        let p: Ipv4Prefix = "10.0.0.0/8".parse().unwrap();
        let q: Ipv4Prefix = "10.9.9.9/8".parse().unwrap();
        assert!(matches!(Lpm4::build(&[(p, 1), (q, 2)], 4), Err(LpmError::Duplicate(_))));
        assert!(matches!(
            Lpm4::build(&[(p, MAX_VALUE + 1)], 4),
            Err(LpmError::ValueTooLarge(_))
        ));
        let many: Vec<_> = (0..3u32)
            .map(|i| (Ipv4Prefix::new(Ipv4Addr::from(i << 8), 32), i))
            .collect();
        assert!(matches!(Lpm4::build(&many, 2), Err(LpmError::TooManyGroups(2))));
        assert!(Lpm4::build(&many, 3).is_ok());
    }

    #[test]
    fn v4_random_against_naive() {
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        for round in 0..4 {
            let mut routes = Vec::new();
            let mut seen = std::collections::HashSet::new();
            // Cluster addresses so prefixes nest and overlap often.
            let base = (rng.next() as u32) & 0xff00_0000;
            while routes.len() < 400 {
                let len = match rng.below(4) {
                    0 => rng.below(9) as u8,
                    1 => 8 + rng.below(17) as u8,
                    _ => 20 + rng.below(13) as u8,
                };
                let addr =
                    base | (rng.next() as u32 & 0x00ff_ffff) & if round % 2 == 0 { 0x000f_ffff } else { u32::MAX };
                let p = Ipv4Prefix::new(Ipv4Addr::from(addr), len).network();
                if seen.insert(p) {
                    routes.push((p, routes.len() as u32));
                }
            }
            let t = Lpm4::build(&routes, 1 << 12).unwrap();
            for i in 0..20_000 {
                let a = if i % 2 == 0 {
                    base | (rng.next() as u32 & 0x000f_ffff)
                } else {
                    let (p, _) = routes[rng.below(routes.len() as u64) as usize];
                    // Probe just inside and just outside prefix boundaries.
                    let span = if p.len == 0 { u32::MAX } else { !p.mask() };
                    u32::from(p.addr).wrapping_add(if rng.below(2) == 0 { span } else { span.wrapping_add(1) })
                };
                assert_eq!(t.lookup(a), naive4(&routes, a), "addr {}", Ipv4Addr::from(a));
            }
        }
    }

    #[test]
    fn v6_random_against_naive() {
        let mut rng = Rng(0x0ddb_a11c_afe0_0002);
        for _ in 0..4 {
            let base: u128 = 0x2001_0db8u128 << 96;
            let mut routes = Vec::new();
            let mut seen = std::collections::HashSet::new();
            while routes.len() < 300 {
                let len = match rng.below(4) {
                    0 => rng.below(33) as u8,
                    1 => 32 + rng.below(33) as u8,
                    _ => 60 + rng.below(69) as u8,
                };
                let low = ((rng.next() as u128) << 64 | rng.next() as u128) & ((1u128 << 72) - 1);
                let addr = base | low & 0xffff_0000_0000_0000_ffff_ffff_u128.wrapping_mul(rng.below(2) as u128 + 1);
                let p = Ipv6Prefix::new(Ipv6Addr::from(addr), len).network();
                if seen.insert(p) {
                    routes.push((p, routes.len() as u32));
                }
            }
            let t = Lpm6::build(&routes, 1 << 14).unwrap();
            for i in 0..10_000 {
                let a = if i % 2 == 0 {
                    base | ((rng.next() as u128) << 64 | rng.next() as u128) & ((1u128 << 72) - 1)
                } else {
                    let (p, _) = routes[rng.below(routes.len() as u64) as usize];
                    let span = !p.mask();
                    u128::from(p.addr).wrapping_add(if rng.below(2) == 0 { span } else { span.wrapping_add(1) })
                };
                assert_eq!(t.lookup(a), naive6(&routes, a), "addr {}", Ipv6Addr::from(a));
            }
        }
    }

    #[test]
    fn v6_host_routes_and_default() {
        let r = |s: &str, v| (s.parse::<Ipv6Prefix>().unwrap(), v);
        let routes = vec![r("::/0", 7), r("2001:db8::/32", 8), r("2001:db8::1/128", 9)];
        let t = Lpm6::build(&routes, 64).unwrap();
        assert_eq!(t.lookup_addr("2001:db8::1".parse().unwrap()), Some(9));
        assert_eq!(t.lookup_addr("2001:db8::2".parse().unwrap()), Some(8));
        assert_eq!(t.lookup_addr("fe80::1".parse().unwrap()), Some(7));
        assert_eq!(Lpm6::empty().lookup_addr("::1".parse().unwrap()), None);
    }
}
