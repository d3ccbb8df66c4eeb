//! Maglev consistent hashing (Eisenbud et al., NSDI 2016): a lookup table of prime size
//! in which each path owns a share of entries proportional to its weight. A flow hash
//! indexes the table. When a path leaves, the entries it owned are refilled and most
//! others keep their owner, so only about 1/N of flows would move; Sluice's flow table
//! adds the rest: a flow keeps its path for as long as that path stays up.
//!
//! Built by the control thread; the fast path only indexes it.

use crate::hash::name_hash;

/// Table size: prime, and large against the number of paths in a group (≤ 64), so
/// shares are within a fraction of a percent of the weights.
pub const TABLE_SIZE: usize = 4093;
/// No path: the group has nothing eligible.
pub const NO_PATH: u16 = u16::MAX;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Maglev {
    /// Path index (into the snapshot's path list) per entry.
    entries: Box<[u16]>,
}

impl Maglev {
    /// A table where every entry is `NO_PATH`.
    pub fn empty() -> Maglev {
        Maglev {
            entries: vec![NO_PATH; TABLE_SIZE].into_boxed_slice(),
        }
    }

    /// Builds the table for `members`: (path index, path name, weight). A path's place in
    /// the table depends only on its name, so every instance with the same configuration
    /// builds the same table. Weights of 0 are left out.
    pub fn build(members: &[(u16, &str, u32)]) -> Maglev {
        let m = TABLE_SIZE as u64;
        let members: Vec<_> = members.iter().filter(|(_, _, w)| *w > 0).collect();
        if members.is_empty() {
            return Maglev::empty();
        }
        let perm: Vec<(u64, u64)> = members
            .iter()
            .map(|(_, name, _)| {
                let offset = name_hash(name.as_bytes(), 0x6d61_676c) % m;
                let skip = name_hash(name.as_bytes(), 0x736b_6970) % (m - 1) + 1;
                (offset, skip)
            })
            .collect();
        let max_w = members.iter().map(|(_, _, w)| *w as u64).max().unwrap_or(1);
        let mut next = vec![0u64; members.len()];
        let mut credit = vec![0u64; members.len()];
        let mut entries = vec![NO_PATH; TABLE_SIZE];
        let mut filled = 0;
        // Weighted population: each round every path earns its weight in credit and
        // claims one entry per `max_w` credit, so claims are proportional to weights.
        'outer: loop {
            for (i, (path, _, w)) in members.iter().enumerate() {
                credit[i] += *w as u64;
                while credit[i] >= max_w {
                    credit[i] -= max_w;
                    let (offset, skip) = perm[i];
                    let mut c = ((offset + next[i] * skip) % m) as usize;
                    while entries[c] != NO_PATH {
                        next[i] += 1;
                        c = ((offset + next[i] * skip) % m) as usize;
                    }
                    entries[c] = *path;
                    next[i] += 1;
                    filled += 1;
                    if filled == TABLE_SIZE {
                        break 'outer;
                    }
                }
            }
        }
        Maglev {
            entries: entries.into_boxed_slice(),
        }
    }

    /// The path for a flow hash, or `NO_PATH`.
    #[inline(always)]
    pub fn lookup(&self, flow_hash: u32) -> u16 {
        // Multiply-shift instead of a division by the prime.
        let i = ((flow_hash as u64 * TABLE_SIZE as u64) >> 32) as usize;
        self.entries[i]
    }

    pub fn is_empty(&self) -> bool {
        self.entries[0] == NO_PATH
    }

    /// Entries owned by each path index up to `paths`.
    pub fn shares(&self, paths: usize) -> Vec<usize> {
        let mut v = vec![0; paths];
        for &e in self.entries.iter() {
            if (e as usize) < paths {
                v[e as usize] += 1;
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::mix64;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("path-{i}")).collect()
    }

    fn flows() -> impl Iterator<Item = u32> {
        (0..200_000u64).map(|i| mix64(i) as u32)
    }

    #[test]
    fn removing_one_of_n_moves_about_one_nth() {
        for n in [2usize, 3, 5, 8, 16] {
            let names = names(n);
            let all: Vec<(u16, &str, u32)> = names
                .iter()
                .enumerate()
                .map(|(i, s)| (i as u16, s.as_str(), 1))
                .collect();
            let before = Maglev::build(&all);
            for gone in 0..n {
                let rest: Vec<_> = all.iter().copied().filter(|m| m.0 as usize != gone).collect();
                let after = Maglev::build(&rest);
                let mut moved_other = 0;
                let mut moved = 0;
                let mut total = 0;
                let mut all_flows = 0;
                for f in flows() {
                    let (a, b) = (before.lookup(f), after.lookup(f));
                    assert_ne!(b as usize, gone);
                    all_flows += 1;
                    moved += (a != b) as usize;
                    if a as usize != gone {
                        total += 1;
                        if a != b {
                            moved_other += 1;
                        }
                    }
                }
                // Flows whose path stayed: Maglev moves only a small fraction of them
                // (the flow table pins them completely).
                let all_moved = moved as f64 / all_flows as f64;
                assert!(all_moved < 1.0 / n as f64 + 0.03, "n={n} gone={gone}: {all_moved}");
                let frac = moved_other as f64 / total as f64;
                assert!(frac < 0.5 / n as f64 + 0.02, "n={n} gone={gone}: {frac}");
            }
        }
    }

    #[test]
    fn shares_follow_weights() {
        let names = names(3);
        let t = Maglev::build(&[(0, &names[0], 1), (1, &names[1], 2), (2, &names[2], 5)]);
        let s = t.shares(3);
        let expect = [1.0 / 8.0, 2.0 / 8.0, 5.0 / 8.0];
        for i in 0..3 {
            let got = s[i] as f64 / TABLE_SIZE as f64;
            assert!((got - expect[i]).abs() < 0.01, "{s:?}");
        }
        assert_eq!(s.iter().sum::<usize>(), TABLE_SIZE);
    }

    #[test]
    fn deterministic_and_degenerate_cases() {
        let names = names(4);
        let a: Vec<(u16, &str, u32)> = names
            .iter()
            .enumerate()
            .map(|(i, s)| (i as u16, s.as_str(), 1))
            .collect();
        let t1 = Maglev::build(&a);
        let t2 = Maglev::build(&a);
        assert_eq!(t1, t2);
        assert!(Maglev::build(&[]).is_empty());
        assert!(Maglev::build(&[(0, "x", 0)]).is_empty());
        assert_eq!(Maglev::build(&[(7, "x", 3)]).shares(8)[7], TABLE_SIZE);
    }
}
