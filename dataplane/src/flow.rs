//! The per-worker flow table: one entry per (5-tuple, VLAN, ingress port), holding what
//! the pipeline decided for the flow (class, path, DSCP in and out), its counters and its
//! first and last packet times. A worker's table is its own: no locks, no atomics.
//!
//! Layout: a slab of 80-byte entries (allocated once, used from the bottom up, freed
//! entries reused) and a power-of-two array of 64-byte buckets, each holding eight
//! (signature, entry index) slots. A key hashes to two buckets; a lookup compares the
//! signatures of both and then the full key of the few entries whose signature matched.
//! When both buckets or the slab are full, the least recently seen flow of the two
//! buckets is evicted (and reported as a record). Aging walks a few entries per call, so
//! it never stalls a burst, and expires flows idle longer than their protocol's timeout.
//!
//! Memory: 80 bytes per entry plus 64 bytes per 8 bucket slots at 80 % load, about
//! 90 bytes per flow: 10 million flows take about 0.9 GB.

use crate::dpdk::prefetch_ref;

/// Slots per bucket.
const SLOTS: usize = 8;
const EMPTY: u32 = u32::MAX;
/// Path index of a flow that has none (no route, or for the control plane).
pub const NO_PATH: u16 = u16::MAX;

/// What identifies a flow. IPv4 addresses live in the low 32 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
#[repr(C)]
pub struct FlowKey {
    pub src: u128,
    pub dst: u128,
    pub src_port: u16,
    pub dst_port: u16,
    /// Outer VLAN ID << 12 | inner VLAN ID (QinQ), 0 when untagged.
    pub vlan: u32,
    pub proto: u8,
    pub in_port: u8,
    /// 6 for IPv6, 4 for IPv4 (so a v4 and a v6 flow never share a key).
    pub family: u8,
}

impl FlowKey {
    /// The flow's hash: fixed (unseeded), so every appliance with the same configuration
    /// sends a flow down the same path.
    #[inline(always)]
    pub fn hash(&self) -> u64 {
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        let w = [
            self.src as u64,
            (self.src >> 64) as u64,
            self.dst as u64,
            (self.dst >> 64) as u64,
            (self.src_port as u64) << 48
                | (self.dst_port as u64) << 32
                | (self.proto as u64) << 24
                | (self.family as u64) << 16
                | self.in_port as u64,
            self.vlan as u64,
        ];
        let mut h = 0u64;
        for x in w {
            h = (h ^ x).wrapping_mul(K).rotate_left(29);
        }
        routing::hash::mix64(h)
    }
}

/// Flags of a flow entry.
pub mod flag {
    pub const LIVE: u8 = 1;
    /// A TCP FIN or RST was seen: the short timeout applies.
    pub const CLOSING: u8 = 2;
}

/// One flow. 80 bytes.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(16))]
pub struct Flow {
    pub key: FlowKey,
    pub bytes: u64,
    pub packets: u32,
    /// Milliseconds on the worker's clock (wrapping).
    pub first_ms: u32,
    pub last_ms: u32,
    /// The snapshot generation the decisions below were made with.
    pub generation: u32,
    pub path: u16,
    pub class: u8,
    pub dscp_in: u8,
    pub dscp_out: u8,
    pub flags: u8,
    /// Egress port of the path, for the record.
    pub out_port: u8,
}

const _: () = assert!(std::mem::size_of::<Flow>() == 80);

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Bucket {
    sig: [u32; SLOTS],
    idx: [u32; SLOTS],
}

const EMPTY_BUCKET: Bucket = Bucket {
    sig: [0; SLOTS],
    idx: [EMPTY; SLOTS],
};

/// Why a flow left the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum EndReason {
    Idle = 0,
    /// Idle after FIN/RST.
    Closed,
    /// Pushed out by a new flow when the table was full.
    Evicted,
    /// Still live at shutdown.
    Shutdown,
}

impl EndReason {
    pub fn name(self) -> &'static str {
        match self {
            EndReason::Idle => "idle",
            EndReason::Closed => "closed",
            EndReason::Evicted => "evicted",
            EndReason::Shutdown => "shutdown",
        }
    }
}

/// A flow that ended, for the control thread (and later the telemetry sinks).
#[derive(Debug, Clone, Copy)]
pub struct FlowRecord {
    pub flow: Flow,
    pub reason: EndReason,
}

/// Idle timeouts in milliseconds, by protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp_ms: u32,
    pub tcp_closed_ms: u32,
    pub udp_ms: u32,
    pub other_ms: u32,
}

impl Timeouts {
    pub fn from_config(f: &control::config::Flows) -> Timeouts {
        Timeouts {
            tcp_ms: f.tcp_idle_s * 1000,
            tcp_closed_ms: f.tcp_closed_idle_s * 1000,
            udp_ms: f.udp_idle_s * 1000,
            other_ms: f.other_idle_s * 1000,
        }
    }

    #[inline(always)]
    fn of(&self, f: &Flow) -> u32 {
        match f.key.proto {
            6 if f.flags & flag::CLOSING != 0 => self.tcp_closed_ms,
            6 => self.tcp_ms,
            17 => self.udp_ms,
            _ => self.other_ms,
        }
    }
}

/// Counters the worker copies into its shared block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowCounters {
    pub created: u64,
    pub expired: u64,
    pub evicted: u64,
}

pub struct FlowTable {
    buckets: Box<[Bucket]>,
    mask: usize,
    entries: Vec<Flow>,
    free: Vec<u32>,
    capacity: usize,
    live: usize,
    cursor: usize,
    pub timeouts: Timeouts,
    pub counters: FlowCounters,
}

/// The result of a lookup: the entry's index and whether the flow is new (its entry
/// holds the key and zeroed counters; the caller fills in the decisions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub index: u32,
    pub new: bool,
}

impl FlowTable {
    /// A table for `capacity` flows. Memory is reserved now and touched as flows arrive.
    pub fn new(capacity: usize, timeouts: Timeouts) -> FlowTable {
        assert!(capacity > 0 && capacity < EMPTY as usize);
        // 80 % load at capacity.
        let nb = (capacity * 5 / 4).div_ceil(SLOTS).next_power_of_two().max(2);
        FlowTable {
            buckets: vec![EMPTY_BUCKET; nb].into_boxed_slice(),
            mask: nb - 1,
            entries: Vec::with_capacity(capacity),
            free: Vec::with_capacity(capacity),
            capacity,
            live: 0,
            cursor: 0,
            timeouts,
            counters: FlowCounters::default(),
        }
    }

    /// Bytes reserved for a table of `capacity` flows.
    pub fn memory_bytes_for(capacity: usize) -> usize {
        let nb = (capacity * 5 / 4).div_ceil(SLOTS).next_power_of_two().max(2);
        nb * std::mem::size_of::<Bucket>() + capacity * (std::mem::size_of::<Flow>() + 4)
    }

    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    #[inline(always)]
    fn places(&self, hash: u64) -> (usize, usize, u32) {
        let b1 = hash as usize & self.mask;
        let sig = (hash >> 32) as u32 | 1;
        // The second bucket depends on the signature, so a flow's two places differ.
        let b2 = (b1 ^ (sig as usize).wrapping_mul(0x5bd1_e995)) & self.mask;
        (b1, if b2 == b1 { b1 ^ 1 } else { b2 }, sig)
    }

    /// Starts loading the buckets of a hash (call for a whole burst before looking up).
    #[inline(always)]
    pub fn prefetch(&self, hash: u64) {
        let (b1, b2, _) = self.places(hash);
        prefetch_ref(&self.buckets[b1]);
        prefetch_ref(&self.buckets[b2]);
    }

    #[inline(always)]
    fn find_in(&self, b: usize, sig: u32, key: &FlowKey) -> Option<u32> {
        let bucket = &self.buckets[b];
        for s in 0..SLOTS {
            if bucket.sig[s] == sig {
                let i = bucket.idx[s];
                if i != EMPTY && self.entries[i as usize].key == *key {
                    return Some(i);
                }
            }
        }
        None
    }

    pub fn get(&self, index: u32) -> &Flow {
        &self.entries[index as usize]
    }

    #[inline(always)]
    pub fn get_mut(&mut self, index: u32) -> &mut Flow {
        &mut self.entries[index as usize]
    }

    /// Finds the flow of `key`, or creates it at `now_ms`. A full table evicts the least
    /// recently seen flow of the key's two buckets; it goes to `ended`.
    #[inline]
    pub fn lookup_or_insert(
        &mut self,
        key: &FlowKey,
        hash: u64,
        now_ms: u32,
        ended: &mut impl FnMut(FlowRecord),
    ) -> Found {
        let (b1, b2, sig) = self.places(hash);
        if let Some(i) = self.find_in(b1, sig, key).or_else(|| self.find_in(b2, sig, key)) {
            return Found { index: i, new: false };
        }
        // A free slot in either bucket, and a free entry.
        let slot = [b1, b2]
            .into_iter()
            .find_map(|b| self.buckets[b].idx.iter().position(|&i| i == EMPTY).map(|s| (b, s)));
        let (b, s) = match slot {
            Some(place) if self.live < self.capacity => place,
            _ => {
                // Evict the stalest of the two buckets' flows.
                let mut victim = (b1, 0usize, 0u32);
                for b in [b1, b2] {
                    for s in 0..SLOTS {
                        let i = self.buckets[b].idx[s];
                        if i == EMPTY {
                            continue;
                        }
                        let age = now_ms.wrapping_sub(self.entries[i as usize].last_ms);
                        if age >= victim.2 {
                            victim = (b, s, age);
                        }
                    }
                }
                let (vb, vs, _) = victim;
                if self.buckets[vb].idx[vs] == EMPTY {
                    // The slab is full but these buckets are empty: evict from the
                    // cursor's side instead, which is always live when the slab is full.
                    let i = self.oldest_near_cursor(now_ms);
                    self.remove(i, EndReason::Evicted, ended);
                    self.counters.evicted += 1;
                    return self.lookup_or_insert(key, hash, now_ms, ended);
                }
                let i = self.buckets[vb].idx[vs];
                self.remove(i, EndReason::Evicted, ended);
                self.counters.evicted += 1;
                (vb, vs)
            }
        };
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.entries.push(Flow::default());
                (self.entries.len() - 1) as u32
            }
        };
        self.entries[index as usize] = Flow {
            key: *key,
            first_ms: now_ms,
            last_ms: now_ms,
            flags: flag::LIVE,
            path: NO_PATH,
            ..Flow::default()
        };
        self.buckets[b].sig[s] = sig;
        self.buckets[b].idx[s] = index;
        self.live += 1;
        self.counters.created += 1;
        Found { index, new: true }
    }

    /// The least recently seen of the 16 live entries from the aging cursor on.
    fn oldest_near_cursor(&self, now_ms: u32) -> u32 {
        let n = self.entries.len();
        let mut best = (0u32, 0u32);
        let mut seen = 0;
        let mut i = self.cursor % n;
        for _ in 0..n {
            let f = &self.entries[i];
            if f.flags & flag::LIVE != 0 {
                let age = now_ms.wrapping_sub(f.last_ms);
                if seen == 0 || age >= best.1 {
                    best = (i as u32, age);
                }
                seen += 1;
                if seen == 16 {
                    break;
                }
            }
            i = (i + 1) % n;
        }
        best.0
    }

    /// Removes entry `i` from its bucket and the slab, reporting it.
    fn remove(&mut self, i: u32, reason: EndReason, ended: &mut impl FnMut(FlowRecord)) {
        let f = self.entries[i as usize];
        debug_assert!(f.flags & flag::LIVE != 0);
        let (b1, b2, _) = self.places(f.key.hash());
        for b in [b1, b2] {
            if let Some(s) = self.buckets[b].idx.iter().position(|&x| x == i) {
                self.buckets[b].idx[s] = EMPTY;
                self.buckets[b].sig[s] = 0;
            }
        }
        self.entries[i as usize].flags = 0;
        self.free.push(i);
        self.live -= 1;
        ended(FlowRecord { flow: f, reason });
    }

    /// Looks at up to `budget` entries from where the last call stopped and expires the
    /// idle ones. Returns how many expired.
    pub fn age(&mut self, now_ms: u32, budget: usize, ended: &mut impl FnMut(FlowRecord)) -> usize {
        let n = self.entries.len();
        if n == 0 {
            return 0;
        }
        let mut expired = 0;
        for _ in 0..budget.min(n) {
            let i = self.cursor % n;
            self.cursor = i + 1;
            let f = &self.entries[i];
            if f.flags & flag::LIVE == 0 {
                continue;
            }
            let idle = now_ms.wrapping_sub(f.last_ms);
            // A flow seen "in the future" (clock skew) is not idle.
            if idle < 1 << 31 && idle > self.timeouts.of(f) {
                let reason = if f.flags & flag::CLOSING != 0 {
                    EndReason::Closed
                } else {
                    EndReason::Idle
                };
                self.remove(i as u32, reason, ended);
                self.counters.expired += 1;
                expired += 1;
            }
        }
        expired
    }

    /// Ends every flow (shutdown).
    pub fn flush(&mut self, ended: &mut impl FnMut(FlowRecord)) {
        for i in 0..self.entries.len() {
            if self.entries[i].flags & flag::LIVE != 0 {
                self.remove(i as u32, EndReason::Shutdown, ended);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> FlowKey {
        FlowKey {
            src: 0x0a00_0000 + i as u128,
            dst: 0xc612_0001,
            src_port: (i % 60000) as u16,
            dst_port: 443,
            proto: 6,
            family: 4,
            ..FlowKey::default()
        }
    }

    const T: Timeouts = Timeouts {
        tcp_ms: 1000,
        tcp_closed_ms: 100,
        udp_ms: 500,
        other_ms: 200,
    };

    #[test]
    fn insert_find_and_count() {
        let mut t = FlowTable::new(1000, T);
        let mut ended = vec![];
        let mut sink = |r: FlowRecord| ended.push(r);
        let mut idx = vec![];
        for i in 0..1000 {
            let k = key(i);
            let f = t.lookup_or_insert(&k, k.hash(), 0, &mut sink);
            assert!(f.new);
            idx.push(f.index);
        }
        assert_eq!(t.len(), 1000);
        for i in 0..1000 {
            let k = key(i);
            let f = t.lookup_or_insert(&k, k.hash(), 1, &mut sink);
            assert_eq!(
                f,
                Found {
                    index: idx[i as usize],
                    new: false
                }
            );
            assert_eq!(t.get(f.index).key, k);
        }
        assert!(ended.is_empty());
        assert_eq!(t.counters.created, 1000);
    }

    #[test]
    fn full_table_evicts_the_stalest_and_reports_it() {
        let mut t = FlowTable::new(1024, T);
        let mut ended = vec![];
        for i in 0..1024u32 {
            let k = key(i);
            let f = t.lookup_or_insert(&k, k.hash(), i, &mut |r| ended.push(r));
            t.get_mut(f.index).last_ms = i;
        }
        assert_eq!(t.len(), 1024);
        for i in 1024..3000u32 {
            let k = key(i);
            let f = t.lookup_or_insert(&k, k.hash(), 5000 + i, &mut |r| ended.push(r));
            assert!(f.new);
            t.get_mut(f.index).last_ms = 5000 + i;
        }
        // Never above capacity; every new flow after the first 1024 evicted one.
        assert_eq!(t.len(), 1024);
        assert_eq!(t.counters.evicted, 3000 - 1024);
        assert_eq!(ended.len(), 3000 - 1024);
        assert!(ended.iter().all(|r| r.reason == EndReason::Evicted));
        // The most recent flow is still there.
        let k = key(2999);
        assert!(!t.lookup_or_insert(&k, k.hash(), 9000, &mut |_| panic!()).new);
    }

    #[test]
    fn aging_by_protocol_incrementally() {
        let mut t = FlowTable::new(100, T);
        let mut ended = vec![];
        let mk = |t: &mut FlowTable, i: u32, proto: u8, flags: u8| {
            let mut k = key(i);
            k.proto = proto;
            let f = t.lookup_or_insert(&k, k.hash(), 0, &mut |_| ());
            t.get_mut(f.index).flags |= flags;
        };
        mk(&mut t, 1, 6, 0);
        mk(&mut t, 2, 6, flag::CLOSING);
        mk(&mut t, 3, 17, 0);
        mk(&mut t, 4, 1, 0);
        // At 150 ms only the closed TCP flow is over its timeout.
        assert_eq!(t.age(150, 100, &mut |r| ended.push(r)), 1);
        assert_eq!(ended[0].reason, EndReason::Closed);
        assert_eq!(t.age(250, 100, &mut |r| ended.push(r)), 1); // ICMP (200)
        assert_eq!(t.age(600, 100, &mut |r| ended.push(r)), 1); // UDP (500)
                                                                // Budget: one entry per call walks the table without doing it all at once.
        let mut n = 0;
        for _ in 0..4 {
            n += t.age(2000, 1, &mut |r| ended.push(r));
        }
        assert_eq!(n, 1);
        assert!(t.is_empty());
        assert_eq!(t.counters.expired, 4);
        // Freed entries are reused.
        mk(&mut t, 9, 6, 0);
        assert_eq!(t.entries.len(), 4);
    }

    #[test]
    fn flush_reports_everything() {
        let mut t = FlowTable::new(64, T);
        for i in 0..10 {
            let k = key(i);
            t.lookup_or_insert(&k, k.hash(), 0, &mut |_| ());
        }
        let mut n = 0;
        t.flush(&mut |r| {
            assert_eq!(r.reason, EndReason::Shutdown);
            n += 1
        });
        assert_eq!(n, 10);
        assert!(t.is_empty());
    }

    #[test]
    fn ten_million_flows_memory() {
        // Two workers of 5 million each.
        let per_flow = FlowTable::memory_bytes_for(5_000_000) as f64 / 5e6;
        assert!(per_flow < 100.0, "{per_flow}");
    }
}
