//! The classifier: rules over source/destination prefixes (IPv4 and IPv6), port ranges,
//! protocol, VLAN, ingress port and incoming DSCP, each leading to a class; the first
//! matching rule in priority order wins.
//!
//! Compiled as a bit-vector classifier (Lakshman & Stiliadis, SIGCOMM 1998): for every
//! field, the value space is cut into intervals at rule boundaries, and each interval
//! carries the bitset of rules that accept it (rules in priority order, bit 0 first).
//! A lookup finds the interval of each field (a binary search for addresses, a direct
//! table for ports, protocol, VLAN, port and DSCP), ANDs the eight bitsets' summaries (a
//! bit per 64 rules: does this word hold any?) and then only the words all eight have,
//! stopping at the first word with a bit set: its lowest bit is the winner.
//! Identical bitsets are stored once. It runs once per new flow, never per packet.

use crate::class::ClassId;
use std::collections::HashMap;

/// Most rules a configuration may hold.
pub const MAX_RULES: usize = 65_536;
/// Ingress ports a rule can name.
pub const MAX_IN_PORTS: usize = 64;

/// An address prefix for a rule, as plain numbers (IPv4 in the low 32 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Net {
    V4 { addr: u32, len: u8 },
    V6 { addr: u128, len: u8 },
}

impl Net {
    fn range4(&self) -> Option<(u32, u32)> {
        match *self {
            Net::V4 { addr, len } => {
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                Some((addr & mask, (addr & mask) | !mask))
            }
            Net::V6 { .. } => None,
        }
    }
    fn range6(&self) -> Option<(u128, u128)> {
        match *self {
            Net::V6 { addr, len } => {
                let mask = if len == 0 { 0 } else { u128::MAX << (128 - len) };
                Some((addr & mask, (addr & mask) | !mask))
            }
            Net::V4 { .. } => None,
        }
    }
    pub fn is_v6(&self) -> bool {
        matches!(self, Net::V6 { .. })
    }
}

/// A rule as configured. `None` fields match anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub src: Option<Net>,
    pub dst: Option<Net>,
    /// Inclusive port ranges; (0, 65535) matches any.
    pub src_ports: (u16, u16),
    pub dst_ports: (u16, u16),
    pub proto: Option<u8>,
    /// 802.1Q VLAN ID (outer tag); untagged packets carry none.
    pub vlan: Option<u16>,
    pub in_port: Option<u8>,
    pub dscp: Option<u8>,
    pub class: ClassId,
}

impl Rule {
    pub fn any(class: ClassId) -> Rule {
        Rule {
            src: None,
            dst: None,
            src_ports: (0, u16::MAX),
            dst_ports: (0, u16::MAX),
            proto: None,
            vlan: None,
            in_port: None,
            dscp: None,
            class,
        }
    }

    /// Whether the rule accepts these fields (the reference the compiled form must match).
    pub fn matches(&self, f: &Fields) -> bool {
        let addr = |n: &Option<Net>, a: u128| match n {
            None => true,
            Some(n) if f.v6 => n.range6().is_some_and(|(lo, hi)| (lo..=hi).contains(&a)),
            Some(n) => n.range4().is_some_and(|(lo, hi)| (lo..=hi).contains(&(a as u32))),
        };
        addr(&self.src, f.src)
            && addr(&self.dst, f.dst)
            && (self.src_ports.0..=self.src_ports.1).contains(&f.src_port)
            && (self.dst_ports.0..=self.dst_ports.1).contains(&f.dst_port)
            && self.proto.is_none_or(|p| p == f.proto)
            && self.vlan.is_none_or(|v| Some(v) == f.vlan)
            && self.in_port.is_none_or(|p| p == f.in_port)
            && self.dscp.is_none_or(|d| d == f.dscp)
    }
}

/// What the classifier looks at in a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fields {
    pub v6: bool,
    /// IPv4 addresses in the low 32 bits.
    pub src: u128,
    pub dst: u128,
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: u8,
    pub vlan: Option<u16>,
    pub in_port: u8,
    pub dscp: u8,
}

/// Interned bitsets of `words` u64 each.
struct Sets {
    words: usize,
    data: Vec<u64>,
    index: HashMap<Vec<u64>, u32>,
}

impl Sets {
    fn intern(&mut self, set: &[u64]) -> u32 {
        if let Some(&i) = self.index.get(set) {
            return i;
        }
        let i = (self.data.len() / self.words) as u32;
        self.data.extend_from_slice(set);
        self.index.insert(set.to_vec(), i);
        i
    }
}

/// Cuts a value space into intervals at the rules' boundaries: returns each interval's
/// first value and its interned bitset. `ranges[r]` is rule r's accepted range, `None`
/// when it accepts nothing in this space.
fn intervals<T: Ord + Copy + Default + std::fmt::Debug>(
    ranges: &[Option<(T, T)>],
    next: impl Fn(T) -> Option<T>,
    sets: &mut Sets,
) -> (Vec<T>, Vec<u32>) {
    // (point, rule, set?) events: a rule's bit turns on at lo and off after hi.
    let mut events: Vec<(T, bool, usize)> = Vec::with_capacity(ranges.len() * 2);
    for (r, range) in ranges.iter().enumerate() {
        if let Some((lo, hi)) = *range {
            events.push((lo, true, r));
            if let Some(after) = next(hi) {
                events.push((after, false, r));
            }
        }
    }
    events.sort_unstable_by_key(|e| e.0);
    let mut cur = vec![0u64; sets.words];
    let mut starts = vec![T::default()];
    let mut ids = vec![sets.intern(&cur)];
    let mut i = 0;
    while i < events.len() {
        let at = events[i].0;
        while i < events.len() && events[i].0 == at {
            let (_, on, r) = events[i];
            if on {
                cur[r / 64] |= 1 << (r % 64);
            } else {
                cur[r / 64] &= !(1 << (r % 64));
            }
            i += 1;
        }
        let id = sets.intern(&cur);
        if starts.last() == Some(&at) {
            *ids.last_mut().expect("non-empty") = id;
        } else {
            starts.push(at);
            ids.push(id);
        }
    }
    (starts, ids)
}

/// A direct table over a small value space.
fn direct<T: Ord + Copy + Default + std::fmt::Debug + Into<u32>>(
    ranges: &[Option<(T, T)>],
    next: impl Fn(T) -> Option<T>,
    size: usize,
    sets: &mut Sets,
) -> Box<[u32]> {
    let (starts, ids) = intervals(ranges, next, sets);
    let mut table = vec![0u32; size];
    for (k, &s) in starts.iter().enumerate() {
        let end = starts.get(k + 1).map(|&e| e.into() as usize).unwrap_or(size);
        table[s.into() as usize..end.min(size)].fill(ids[k]);
    }
    table.into_boxed_slice()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClassifierError {
    #[error("too many rules: {0} (at most {MAX_RULES})")]
    TooMany(usize),
    #[error("rule {0}: source and destination prefixes are of different families")]
    MixedFamilies(usize),
    #[error("rule {0}: port range {1}-{2} is empty")]
    EmptyRange(usize, u16, u16),
    #[error("rule {0}: VLAN {1} is out of range (1 to 4094)")]
    Vlan(usize, u16),
    #[error("rule {0}: DSCP {1} is out of range (0 to 63)")]
    Dscp(usize, u8),
    #[error("rule {0}: ingress port {1} is out of range (0 to {max})", max = MAX_IN_PORTS - 1)]
    Port(usize, u8),
}

/// The compiled rule set. Immutable; shared by all workers in a snapshot.
pub struct Classifier {
    words: usize,
    sets: Vec<u64>,
    /// Per set, one bit per word of it: whether that word has any rule. A lookup ANDs
    /// these first and visits only the words where every field has a rule.
    summary: Vec<u64>,
    summary_words: usize,
    classes: Vec<ClassId>,
    default: ClassId,
    src4: (Vec<u32>, Vec<u32>),
    dst4: (Vec<u32>, Vec<u32>),
    src6: (Vec<u128>, Vec<u32>),
    dst6: (Vec<u128>, Vec<u32>),
    sport: Box<[u32]>,
    dport: Box<[u32]>,
    proto: Box<[u32]>,
    /// Index 0: untagged; 1..=4095: VLAN ID.
    vlan: Box<[u32]>,
    in_port: Box<[u32]>,
    dscp: Box<[u32]>,
}

impl Classifier {
    /// Compiles `rules` (already in priority order: the first match wins); packets that
    /// match nothing get `default`.
    pub fn build(rules: &[Rule], default: ClassId) -> Result<Classifier, ClassifierError> {
        if rules.len() > MAX_RULES {
            return Err(ClassifierError::TooMany(rules.len()));
        }
        for (i, r) in rules.iter().enumerate() {
            if let (Some(s), Some(d)) = (r.src, r.dst) {
                if s.is_v6() != d.is_v6() {
                    return Err(ClassifierError::MixedFamilies(i));
                }
            }
            for (lo, hi) in [r.src_ports, r.dst_ports] {
                if lo > hi {
                    return Err(ClassifierError::EmptyRange(i, lo, hi));
                }
            }
            if let Some(v) = r.vlan.filter(|v| !(1..=4094).contains(v)) {
                return Err(ClassifierError::Vlan(i, v));
            }
            if let Some(d) = r.dscp.filter(|&d| d > 63) {
                return Err(ClassifierError::Dscp(i, d));
            }
            if let Some(p) = r.in_port.filter(|&p| p as usize >= MAX_IN_PORTS) {
                return Err(ClassifierError::Port(i, p));
            }
        }
        let words = rules.len().div_ceil(64).max(1);
        let mut sets = Sets {
            words,
            data: Vec::new(),
            index: HashMap::new(),
        };
        // A rule with a v6 prefix never matches v4 and the other way round; a rule with
        // no prefix matches both.
        let fam4 = |r: &Rule| r.src.is_none_or(|n| !n.is_v6()) && r.dst.is_none_or(|n| !n.is_v6());
        let fam6 = |r: &Rule| r.src.is_none_or(|n| n.is_v6()) && r.dst.is_none_or(|n| n.is_v6());
        let a4 = |n: Option<Net>, ok: bool| -> Option<(u32, u32)> {
            if !ok {
                None
            } else {
                n.map_or(Some((0, u32::MAX)), |n| n.range4())
            }
        };
        let a6 = |n: Option<Net>, ok: bool| -> Option<(u128, u128)> {
            if !ok {
                None
            } else {
                n.map_or(Some((0, u128::MAX)), |n| n.range6())
            }
        };
        let n32 = |x: u32| x.checked_add(1);
        let n128 = |x: u128| x.checked_add(1);
        let n16 = |x: u16| x.checked_add(1);
        let n8 = |x: u8| x.checked_add(1);
        let col = |f: &dyn Fn(&Rule) -> Option<(u32, u32)>| rules.iter().map(f).collect::<Vec<_>>();
        let src4 = intervals(&col(&|r| a4(r.src, fam4(r))), n32, &mut sets);
        let dst4 = intervals(&col(&|r| a4(r.dst, fam4(r))), n32, &mut sets);
        let col6 = |f: &dyn Fn(&Rule) -> Option<(u128, u128)>| rules.iter().map(f).collect::<Vec<_>>();
        let src6 = intervals(&col6(&|r| a6(r.src, fam6(r))), n128, &mut sets);
        let dst6 = intervals(&col6(&|r| a6(r.dst, fam6(r))), n128, &mut sets);
        let ports = |f: &dyn Fn(&Rule) -> (u16, u16)| rules.iter().map(|r| Some(f(r))).collect::<Vec<_>>();
        let sport = direct(&ports(&|r| r.src_ports), n16, 1 << 16, &mut sets);
        let dport = direct(&ports(&|r| r.dst_ports), n16, 1 << 16, &mut sets);
        let small = |f: &dyn Fn(&Rule) -> Option<u8>, max: u8| {
            rules
                .iter()
                .map(|r| Some(f(r).map_or((0, max), |v| (v, v))))
                .collect::<Vec<_>>()
        };
        let proto = direct(&small(&|r| r.proto, 255), n8, 256, &mut sets);
        let in_port = direct(&small(&|r| r.in_port, 255), n8, 256, &mut sets);
        let dscp = direct(&small(&|r| r.dscp, 63), n8, 64, &mut sets);
        let vlans: Vec<Option<(u16, u16)>> = rules
            .iter()
            .map(|r| Some(r.vlan.map_or((0, 4095), |v| (v, v))))
            .collect();
        let vlan = direct(&vlans, n16, 4096, &mut sets);
        let summary_words = words.div_ceil(64);
        let summary = sets
            .data
            .chunks(words)
            .flat_map(|set| {
                let mut sum = vec![0u64; summary_words];
                for (k, &w) in set.iter().enumerate() {
                    if w != 0 {
                        sum[k / 64] |= 1 << (k % 64);
                    }
                }
                sum
            })
            .collect();
        Ok(Classifier {
            words,
            sets: sets.data,
            summary,
            summary_words,
            classes: rules.iter().map(|r| r.class).collect(),
            default,
            src4,
            dst4,
            src6,
            dst6,
            sport,
            dport,
            proto,
            vlan,
            in_port,
            dscp,
        })
    }

    pub fn rules(&self) -> usize {
        self.classes.len()
    }

    /// Bytes the compiled tables take.
    pub fn memory_bytes(&self) -> usize {
        (self.sets.len() + self.summary.len()) * 8
            + (self.src4.0.len() + self.dst4.0.len()) * 8
            + (self.src6.0.len() + self.dst6.0.len()) * 20
            + (self.sport.len()
                + self.dport.len()
                + self.proto.len()
                + self.vlan.len()
                + self.in_port.len()
                + self.dscp.len())
                * 4
    }

    /// The class of every packet when there are no rules, `None` when there are: a
    /// caller can skip gathering a packet's fields.
    #[inline(always)]
    pub fn without_rules(&self) -> Option<ClassId> {
        self.classes.is_empty().then_some(self.default)
    }

    /// The class for a packet's fields, and the index of the rule that matched.
    #[inline(always)]
    pub fn classify(&self, f: &Fields) -> (ClassId, Option<usize>) {
        // Without rules every packet is in the default class (the fast path classifies
        // every packet in packet mode: no call, no lookups).
        if self.classes.is_empty() {
            return (self.default, None);
        }
        self.classify_by_rules(f)
    }

    #[inline(never)]
    fn classify_by_rules(&self, f: &Fields) -> (ClassId, Option<usize>) {
        fn find<T: Ord>(t: &(Vec<T>, Vec<u32>), x: T) -> u32 {
            t.1[t.0.partition_point(|s| *s <= x) - 1]
        }
        let (s, d) = if f.v6 {
            (find(&self.src6, f.src), find(&self.dst6, f.dst))
        } else {
            (find(&self.src4, f.src as u32), find(&self.dst4, f.dst as u32))
        };
        let vlan = f.vlan.map_or(0, |v| v as usize & 0xfff);
        let ids = [
            s,
            d,
            self.sport[f.src_port as usize],
            self.dport[f.dst_port as usize],
            self.proto[f.proto as usize],
            self.vlan[vlan],
            self.in_port[f.in_port as usize],
            self.dscp[f.dscp as usize & 63],
        ];
        let (w, sw) = (self.words, self.summary_words);
        for j in 0..sw {
            let mut words = u64::MAX;
            for &id in &ids {
                words &= self.summary[id as usize * sw + j];
            }
            // Only words where every field accepts some rule can hold a match.
            while words != 0 {
                let k = j * 64 + words.trailing_zeros() as usize;
                words &= words - 1;
                let mut x = u64::MAX;
                for &id in &ids {
                    x &= self.sets[id as usize * w + k];
                }
                if x != 0 {
                    let r = k * 64 + x.trailing_zeros() as usize;
                    return (self.classes[r], Some(r));
                }
            }
        }
        (self.default, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (no dependency): xorshift64*.
    pub(crate) struct Rng(u64);
    impl Rng {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn naive(rules: &[Rule], f: &Fields, default: ClassId) -> (ClassId, Option<usize>) {
        rules
            .iter()
            .position(|r| r.matches(f))
            .map_or((default, None), |i| (rules[i].class, Some(i)))
    }

    /// Rules and packets drawn from small pools of values so that packets do hit rules.
    fn random_rule(rng: &mut Rng, i: usize) -> Rule {
        let v6 = rng.below(3) == 0;
        let net = |rng: &mut Rng| {
            if v6 {
                Net::V6 {
                    addr: (0x2001_0db8u128 << 96) | ((rng.below(16) as u128) << 80),
                    len: [32, 44, 48][rng.below(3) as usize],
                }
            } else {
                Net::V4 {
                    addr: 0x0a00_0000 | ((rng.below(16) as u32) << 16) | ((rng.below(4) as u32) << 8),
                    len: [8, 12, 16, 24][rng.below(4) as usize],
                }
            }
        };
        let range = |rng: &mut Rng| match rng.below(3) {
            0 => (0, u16::MAX),
            1 => {
                let p = [53u16, 80, 443, 5000][rng.below(4) as usize];
                (p, p)
            }
            _ => {
                let lo = rng.below(6000) as u16;
                (lo, lo + rng.below(3000) as u16)
            }
        };
        Rule {
            src: (rng.below(2) == 0).then(|| net(rng)),
            dst: (rng.below(2) == 0).then(|| net(rng)),
            src_ports: range(rng),
            dst_ports: range(rng),
            proto: (rng.below(2) == 0).then(|| [6u8, 17, 1][rng.below(3) as usize]),
            vlan: (rng.below(4) == 0).then(|| 1 + rng.below(3) as u16),
            in_port: (rng.below(4) == 0).then(|| rng.below(2) as u8),
            dscp: (rng.below(4) == 0).then(|| [0u8, 46, 10][rng.below(3) as usize]),
            class: ClassId(1 + (i % 7) as u16),
        }
    }

    fn random_fields(rng: &mut Rng) -> Fields {
        let v6 = rng.below(3) == 0;
        let addr = |rng: &mut Rng| {
            if v6 {
                (0x2001_0db8u128 << 96) | ((rng.below(16) as u128) << 80) | rng.below(1 << 20) as u128
            } else {
                (0x0a00_0000 | ((rng.below(16) as u32) << 16) | ((rng.below(4) as u32) << 8) | rng.below(256) as u32)
                    as u128
            }
        };
        let port = |rng: &mut Rng| {
            if rng.below(2) == 0 {
                [53u16, 80, 443, 5000][rng.below(4) as usize]
            } else {
                rng.below(9000) as u16
            }
        };
        Fields {
            v6,
            src: addr(rng),
            dst: addr(rng),
            src_port: port(rng),
            dst_port: port(rng),
            proto: [6u8, 17, 1, 47][rng.below(4) as usize],
            vlan: (rng.below(2) == 0).then(|| 1 + rng.below(3) as u16),
            in_port: rng.below(2) as u8,
            dscp: [0u8, 46, 10, 12][rng.below(4) as usize],
        }
    }

    #[test]
    fn matches_the_naive_first_match_on_random_rule_sets() {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let mut hits = 0;
        for n in [0usize, 1, 5, 63, 64, 65, 200, 1000, 5000] {
            let rules: Vec<Rule> = (0..n).map(|i| random_rule(&mut rng, i)).collect();
            let c = Classifier::build(&rules, ClassId(0)).unwrap();
            for _ in 0..3000 {
                let f = random_fields(&mut rng);
                let want = naive(&rules, &f, ClassId(0));
                assert_eq!(c.classify(&f), want, "{n} rules, {f:?}");
                // The shortcut the fast path takes is only there without rules.
                assert_eq!(c.without_rules(), (n == 0).then_some(ClassId(0)));
                hits += want.1.is_some() as usize;
            }
        }
        // The generators do exercise matches, not just the default.
        assert!(hits > 5000, "{hits}");
    }

    #[test]
    fn first_match_wins_and_fields_are_exact() {
        let r = |class: u16| Rule::any(ClassId(class));
        let rules = vec![
            Rule {
                dst_ports: (443, 443),
                proto: Some(6),
                ..r(1)
            },
            Rule {
                dst: Some(Net::V4 {
                    addr: 0xc612_0000,
                    len: 16,
                }),
                ..r(2)
            },
            Rule {
                vlan: Some(100),
                ..r(3)
            },
            Rule {
                src: Some(Net::V6 {
                    addr: 0x2001_0db8 << 96,
                    len: 32,
                }),
                ..r(4)
            },
            Rule { dscp: Some(46), ..r(5) },
        ];
        let c = Classifier::build(&rules, ClassId(9)).unwrap();
        let f = Fields {
            dst: 0xc612_0001,
            dst_port: 443,
            proto: 6,
            ..Fields::default()
        };
        assert_eq!(c.classify(&f), (ClassId(1), Some(0)));
        assert_eq!(c.classify(&Fields { proto: 17, ..f }), (ClassId(2), Some(1)));
        let g = Fields::default();
        assert_eq!(c.classify(&g).0, ClassId(9));
        assert_eq!(c.classify(&Fields { vlan: Some(100), ..g }).0, ClassId(3));
        assert_eq!(c.classify(&Fields { vlan: Some(101), ..g }).0, ClassId(9));
        // A v6 source rule never matches IPv4, whatever the low bits say.
        assert_eq!(
            c.classify(&Fields {
                src: 0x2001_0db8 << 96,
                ..g
            })
            .0,
            ClassId(9)
        );
        let v6 = Fields {
            v6: true,
            src: (0x2001_0db8 << 96) | 5,
            ..g
        };
        assert_eq!(c.classify(&v6).0, ClassId(4));
        assert_eq!(c.classify(&Fields { dscp: 46, ..g }).0, ClassId(5));
    }

    #[test]
    fn refuses_bad_rules() {
        let mut r = Rule::any(ClassId(1));
        r.src_ports = (10, 5);
        assert!(matches!(
            Classifier::build(&[r], ClassId(0)),
            Err(ClassifierError::EmptyRange(0, 10, 5))
        ));
        let mut r = Rule::any(ClassId(1));
        r.src = Some(Net::V4 { addr: 0, len: 8 });
        r.dst = Some(Net::V6 { addr: 0, len: 8 });
        assert!(matches!(
            Classifier::build(&[r], ClassId(0)),
            Err(ClassifierError::MixedFamilies(0))
        ));
        let mut r = Rule::any(ClassId(1));
        r.vlan = Some(4095);
        assert!(Classifier::build(&[r], ClassId(0)).is_err());
    }
}
