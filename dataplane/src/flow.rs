//! The per-worker flow table: one entry per (5-tuple, VLAN, ingress port), holding what
//! the pipeline decided for the flow (class, path, DSCP in and out), its counters and its
//! first and last packet times. A worker's table is its own: no locks, no atomics.
//!
//! Layout: a slab of 64-byte entries, one cache line each (allocated once, used from the
//! bottom up, freed entries reused), and a power-of-two array of 64-byte buckets, each
//! holding eight (signature, entry index) slots. An entry holds an IPv4 key whole; an
//! IPv6 flow's two addresses live in a side array of 32-byte slots indexed like the
//! entries (zeroed memory, backed by pages only where IPv6 flows have been), so the
//! common IPv4 packet reads one bucket line and one entry line. A key hashes
//! to two buckets; a lookup compares the signatures of both and then the full key of the
//! few entries whose signature matched. New flows go to their first bucket while it has
//! room, so lookups nearly always need only the bucket they prefetched. When both buckets
//! are full even after moving one resident to its other bucket, or the slab is full, the
//! least recently seen flow of the two buckets is evicted (and reported as a record).
//! Aging walks a few entries per call, so it never stalls a burst, and expires flows idle
//! longer than their protocol's timeout.
//!
//! Memory: 64 bytes per entry, 4 for the free list and two bucket slots (16 bytes), so
//! 84 to 100 bytes per flow depending on how the bucket count rounds to a power of two,
//! and up to 32 more per flow once IPv6 flows use the entries (the address slots):
//! 10 million IPv4 flows (5 million on each of two workers) take about 0.95 GB, 10 million
//! flows of both families at most 1.27 GB.

use crate::dpdk::{advise_huge_pages, prefetch_all_lines, prefetch_ref};

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
    /// Source and destination addresses.
    pub fn addrs(&self) -> (std::net::IpAddr, std::net::IpAddr) {
        if self.family == 6 {
            (
                std::net::Ipv6Addr::from(self.src).into(),
                std::net::Ipv6Addr::from(self.dst).into(),
            )
        } else {
            (
                std::net::Ipv4Addr::from(self.src as u32).into(),
                std::net::Ipv4Addr::from(self.dst as u32).into(),
            )
        }
    }

    /// The flow's hash: fixed (unseeded), so every appliance with the same configuration
    /// sends a flow down the same path.
    #[inline(always)]
    pub fn hash(&self) -> u64 {
        // Two folded 64x64->128 multiplies over the key folded to two words (the
        // foldhash construction): one multiply on the critical path per word pair.
        const K0: u64 = 0x243f_6a88_85a3_08d3;
        const K1: u64 = 0x1319_8a2e_0370_7344;
        const K2: u64 = 0xa409_3822_299f_31d0;
        let fold = |a: u64, b: u64| {
            let p = a as u128 * b as u128;
            (p as u64) ^ ((p >> 64) as u64)
        };
        if self.family == 4 {
            // IPv4: the addresses in one word, ports, VLANs and protocol in another, and
            // the ingress port folded in last: two multiplies.
            let addrs = (self.src as u64) << 32 | self.dst as u64 & 0xffff_ffff;
            let rest = (self.src_port as u64) << 48
                | (self.dst_port as u64) << 32
                | (self.vlan as u64 & 0xff_ffff) << 8
                | self.proto as u64;
            return fold(fold(addrs ^ K0, rest ^ K1) ^ K2, self.in_port as u64 ^ K0);
        }
        let tail = (self.src_port as u64) << 48
            | (self.dst_port as u64) << 32
            | (self.proto as u64) << 24
            | (self.family as u64) << 16
            | self.in_port as u64;
        let a = fold(self.src as u64 ^ K0, (self.src >> 64) as u64 ^ K1);
        let b = fold(self.dst as u64 ^ K1, (self.dst >> 64) as u64 ^ K2);
        let c = fold(tail ^ K2, (self.vlan as u64) ^ K0);
        fold(a ^ K2, b ^ c)
    }
}

/// Flags of a flow entry.
pub mod flag {
    pub const LIVE: u8 = 1;
    /// A TCP FIN or RST was seen: the short timeout applies.
    pub const CLOSING: u8 = 2;
}

/// What a flow's packets decided and counted: held in the table's `FlowEntry` and given
/// out, with the key, as a `Flow`.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C)]
pub struct FlowState {
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

/// One flow, whole: what records, the largest-flows lists and lookups by index give out.
/// The table keeps it as a `FlowEntry`. 80 bytes.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(16))]
pub struct Flow {
    pub key: FlowKey,
    pub state: FlowState,
}

const _: () = assert!(std::mem::size_of::<Flow>() == 80);

/// A flow as the table keeps it: its `FlowState` and its key packed in one cache line (an
/// IPv6 flow's addresses are in the table's side slots).
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(64))]
pub struct FlowEntry {
    pub state: FlowState,
    /// IPv4: source << 32 | destination. IPv6: 0 (the addresses are in the side slot of
    /// the entry's index).
    addrs: u64,
    /// `FlowKey::ports_vlan`.
    ports_vlan: u64,
    /// `FlowKey::tail`.
    tail: u32,
}

const _: () = assert!(std::mem::size_of::<FlowEntry>() == 64);

impl FlowKey {
    /// Source and destination port and the VLAN IDs in one word.
    #[inline(always)]
    fn ports_vlan(&self) -> u64 {
        (self.src_port as u64) << 48 | (self.dst_port as u64) << 32 | self.vlan as u64
    }

    /// Protocol, ingress port and family in one word.
    #[inline(always)]
    fn tail(&self) -> u32 {
        self.proto as u32 | (self.in_port as u32) << 8 | (self.family as u32) << 16
    }

    /// An IPv4 key's addresses in one word.
    #[inline(always)]
    fn v4_addrs(&self) -> u64 {
        (self.src as u32 as u64) << 32 | self.dst as u32 as u64
    }
}

impl FlowEntry {
    fn proto(&self) -> u8 {
        self.tail as u8
    }

    fn family(&self) -> u8 {
        (self.tail >> 16) as u8
    }

    /// Whether this entry holds `key`, an IPv4 key (or any key but an IPv6 one): no side
    /// slot is read.
    #[inline(always)]
    pub fn holds_v4(&self, key: &FlowKey) -> bool {
        debug_assert!(key.family != 6);
        self.addrs == key.v4_addrs() && self.ports_vlan == key.ports_vlan() && self.tail == key.tail()
    }

    /// Whether this entry, whose IPv6 addresses (if any) are `v6`, holds `key`.
    #[inline(always)]
    fn holds(&self, key: &FlowKey, v6: &[u128; 2]) -> bool {
        if key.family != 6 {
            return self.holds_v4(key);
        }
        // Each address against the key's own (an array of both built here would be
        // written to the stack and read back wider, which stalls store forwarding).
        self.ports_vlan == key.ports_vlan() && self.tail == key.tail() && v6[0] == key.src && v6[1] == key.dst
    }
}

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
    /// Live for the active timeout: reported, and its counters started again.
    Active,
}

impl EndReason {
    pub fn name(self) -> &'static str {
        match self {
            EndReason::Idle => "idle",
            EndReason::Closed => "closed",
            EndReason::Evicted => "evicted",
            EndReason::Shutdown => "shutdown",
            EndReason::Active => "active",
        }
    }

    pub const COUNT: usize = 5;
    pub const ALL: [EndReason; 5] = [
        EndReason::Idle,
        EndReason::Closed,
        EndReason::Evicted,
        EndReason::Shutdown,
        EndReason::Active,
    ];
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
    /// Live flows are reported this often (`EndReason::Active`).
    pub active_ms: u32,
}

impl Timeouts {
    pub fn from_config(f: &control::config::Flows) -> Timeouts {
        Timeouts {
            tcp_ms: f.tcp_idle_s * 1000,
            tcp_closed_ms: f.tcp_closed_idle_s * 1000,
            udp_ms: f.udp_idle_s * 1000,
            other_ms: f.other_idle_s * 1000,
            active_ms: f.active_timeout_s * 1000,
        }
    }

    #[inline(always)]
    fn of(&self, f: &FlowEntry) -> u32 {
        match f.proto() {
            6 if f.state.flags & flag::CLOSING != 0 => self.tcp_closed_ms,
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
    /// Records of live flows at their active timeout.
    pub active: u64,
}

/// Live flows each worker reports for `show flows`: its largest by bytes.
pub const TOP_FLOWS: usize = 20;

/// The largest live flows (by bytes) one complete walk of a table saw, and how many
/// flows were live when it ended.
#[derive(Debug, Clone, Copy)]
pub struct TopFlows {
    pub flows: [Flow; TOP_FLOWS],
    pub len: usize,
    pub live: usize,
    /// Bytes of all the live flows the walk saw, for the share the largest ones cover.
    pub live_bytes: u64,
    /// A min-heap by bytes of indices into `flows`: a flow smaller than the root costs one
    /// comparison, a larger one replaces it in a few.
    heap: [u8; TOP_FLOWS],
}

impl Default for TopFlows {
    fn default() -> TopFlows {
        TopFlows {
            flows: [Flow::default(); TOP_FLOWS],
            len: 0,
            live: 0,
            live_bytes: 0,
            heap: [0; TOP_FLOWS],
        }
    }
}

impl TopFlows {
    /// The flows, in no particular order.
    pub fn as_slice(&self) -> &[Flow] {
        &self.flows[..self.len]
    }

    #[inline(always)]
    fn bytes_at(&self, k: usize) -> u64 {
        self.flows[self.heap[k] as usize].state.bytes
    }

    /// Whether a flow of `bytes` would enter the list.
    #[inline(always)]
    fn wants(&self, bytes: u64) -> bool {
        self.len < TOP_FLOWS || bytes > self.bytes_at(0)
    }

    #[inline(always)]
    fn offer(&mut self, f: &Flow) {
        if self.len < TOP_FLOWS {
            let mut c = self.len;
            self.flows[c] = *f;
            self.heap[c] = c as u8;
            self.len += 1;
            while c > 0 && self.bytes_at(c) < self.bytes_at((c - 1) / 2) {
                self.heap.swap(c, (c - 1) / 2);
                c = (c - 1) / 2;
            }
        } else if f.state.bytes > self.bytes_at(0) {
            self.flows[self.heap[0] as usize] = *f;
            let mut c = 0;
            loop {
                let l = 2 * c + 1;
                if l >= TOP_FLOWS {
                    break;
                }
                let m = if l + 1 < TOP_FLOWS && self.bytes_at(l + 1) < self.bytes_at(l) {
                    l + 1
                } else {
                    l
                };
                if self.bytes_at(m) >= self.bytes_at(c) {
                    break;
                }
                self.heap.swap(c, m);
                c = m;
            }
        }
    }
}

pub struct FlowTable {
    buckets: Box<[Bucket]>,
    mask: usize,
    entries: Vec<FlowEntry>,
    free: Vec<u32>,
    /// The (source, destination) of the IPv6 flow at each index: zeroed at the start, so
    /// only pages that IPv6 flows have written are backed by memory.
    v6: Box<[[u128; 2]]>,
    capacity: usize,
    live: usize,
    cursor: usize,
    /// The largest flows of the walk in progress (`tops[walking]`) and of the last
    /// complete one that looked for them (the other).
    tops: [TopFlows; 2],
    walking: usize,
    /// Whether the walk in progress looks for the largest flows.
    tracking: bool,
    /// Whether the next walk should (the owner says when it wants a new list).
    pub track_next: bool,
    /// Complete walks that looked for the largest flows, so far.
    pub walks: u64,
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
        // At most half the slots in use at capacity, so a new flow finds room in its two
        // buckets (or after one move) and is not evicted before the table is full.
        let nb = (capacity * 2).div_ceil(SLOTS).next_power_of_two().max(2);
        // The arrays are indexed at random: huge pages keep TLB misses off the fast path.
        let mut buckets = Vec::with_capacity(nb);
        advise_huge_pages(&mut buckets);
        buckets.resize(nb, EMPTY_BUCKET);
        let mut entries = Vec::with_capacity(capacity);
        advise_huge_pages(&mut entries);
        // Zeroed memory, so pages are backed only where IPv6 flows write; then in huge
        // pages, as it is indexed like the entries.
        let mut v6 = vec![[0u128; 2]; capacity];
        advise_huge_pages(&mut v6);
        FlowTable {
            buckets: buckets.into_boxed_slice(),
            mask: nb - 1,
            entries,
            free: Vec::with_capacity(capacity),
            v6: v6.into_boxed_slice(),
            capacity,
            live: 0,
            cursor: 0,
            tops: [TopFlows::default(); 2],
            walking: 0,
            tracking: false,
            track_next: false,
            walks: 0,
            timeouts,
            counters: FlowCounters::default(),
        }
    }

    /// Bytes reserved for a table of `capacity` flows, and those of the IPv6 address slots
    /// (reserved too, but backed only where IPv6 flows have been).
    pub fn memory_bytes_for(capacity: usize) -> (usize, usize) {
        let nb = (capacity * 2).div_ceil(SLOTS).next_power_of_two().max(2);
        (
            nb * std::mem::size_of::<Bucket>() + capacity * (std::mem::size_of::<FlowEntry>() + 4),
            capacity * std::mem::size_of::<[u128; 2]>(),
        )
    }

    /// The key the entry at `index` holds.
    fn key_at(&self, index: usize) -> FlowKey {
        let e = &self.entries[index];
        let (src, dst) = if e.family() == 6 {
            let [s, d] = self.v6[index];
            (s, d)
        } else {
            ((e.addrs >> 32) as u128, e.addrs as u32 as u128)
        };
        FlowKey {
            src,
            dst,
            src_port: (e.ports_vlan >> 48) as u16,
            dst_port: (e.ports_vlan >> 32) as u16,
            vlan: e.ports_vlan as u32,
            proto: e.tail as u8,
            in_port: (e.tail >> 8) as u8,
            family: e.family(),
        }
    }

    /// The flow at `index`, whole.
    fn flow_at(&self, index: usize) -> Flow {
        Flow {
            key: self.key_at(index),
            state: self.entries[index].state,
        }
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

    /// Starts loading the first bucket of a hash (call for a whole burst before looking
    /// up). New flows go to their first bucket while it has room, so that is where a key
    /// nearly always is; the second is loaded only when needed.
    #[inline(always)]
    pub fn prefetch(&self, hash: u64) {
        prefetch_ref(&self.buckets[hash as usize & self.mask]);
    }

    /// The entry in the hash's first bucket whose signature matches (or `EMPTY`), with
    /// its line already loading: `lookup_or_insert` checks it first. For an IPv6 key
    /// (`v6`), the entry's address slot starts loading too.
    #[inline(always)]
    pub fn candidate(&self, hash: u64, v6: bool) -> u32 {
        let b = &self.buckets[hash as usize & self.mask];
        let sig = (hash >> 32) as u32 | 1;
        let Some(s) = b.sig.iter().position(|&x| x == sig) else {
            return EMPTY;
        };
        let i = b.idx[s];
        if let Some(e) = self.entries.get(i as usize) {
            prefetch_ref(e);
            if v6 {
                prefetch_all_lines(&self.v6[i as usize]);
            }
        }
        i
    }

    #[inline(always)]
    fn find_in(&self, b: usize, sig: u32, key: &FlowKey) -> Option<u32> {
        let bucket = &self.buckets[b];
        for s in 0..SLOTS {
            if bucket.sig[s] == sig {
                let i = bucket.idx[s];
                if i != EMPTY && self.entries[i as usize].holds(key, &self.v6[i as usize]) {
                    return Some(i);
                }
            }
        }
        None
    }

    /// The flow at `index`, whole (a copy).
    pub fn get(&self, index: u32) -> Flow {
        self.flow_at(index as usize)
    }

    #[inline(always)]
    pub fn get_mut(&mut self, index: u32) -> &mut FlowEntry {
        &mut self.entries[index as usize]
    }

    /// The entry at `index`, if there is one (live or not).
    #[inline(always)]
    pub fn entry_mut(&mut self, index: u32) -> Option<&mut FlowEntry> {
        self.entries.get_mut(index as usize)
    }

    /// Finds the flow of `key`, or creates it at `now_ms`. A full table evicts the least
    /// recently seen flow of the key's two buckets; it goes to `ended`.
    #[inline(always)]
    pub fn lookup_or_insert(
        &mut self,
        key: &FlowKey,
        hash: u64,
        now_ms: u32,
        ended: &mut impl FnMut(FlowRecord),
    ) -> Found {
        self.lookup_or_insert_from(EMPTY, key, hash, now_ms, ended)
    }

    /// `lookup_or_insert`, checking first the entry `candidate` found.
    #[inline(always)]
    pub fn lookup_or_insert_from(
        &mut self,
        candidate: u32,
        key: &FlowKey,
        hash: u64,
        now_ms: u32,
        ended: &mut impl FnMut(FlowRecord),
    ) -> Found {
        if let Some(e) = self.entries.get(candidate as usize) {
            if e.state.flags & flag::LIVE != 0 && e.holds(key, &self.v6[candidate as usize]) {
                return Found {
                    index: candidate,
                    new: false,
                };
            }
        }
        let (b1, b2, sig) = self.places(hash);
        if let Some(i) = self.find_in(b1, sig, key).or_else(|| self.find_in(b2, sig, key)) {
            return Found { index: i, new: false };
        }
        self.insert(key, hash, now_ms, ended)
    }

    /// A new flow: a free slot and entry, or an eviction.
    #[cold]
    #[inline(never)]
    fn insert(&mut self, key: &FlowKey, hash: u64, now_ms: u32, ended: &mut impl FnMut(FlowRecord)) -> Found {
        let (b1, b2, sig) = self.places(hash);
        // A free slot in either bucket, else one made by moving a resident to its other
        // bucket (one cuckoo step); and a free entry.
        let free = |t: &FlowTable, b: usize| t.buckets[b].idx.iter().position(|&i| i == EMPTY).map(|s| (b, s));
        let slot = free(self, b1)
            .or_else(|| free(self, b2))
            .or_else(|| self.make_room(b1, b2));
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
                        let age = now_ms.wrapping_sub(self.entries[i as usize].state.last_ms);
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
                    return self.insert(key, hash, now_ms, ended);
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
                self.entries.push(FlowEntry::default());
                (self.entries.len() - 1) as u32
            }
        };
        let addrs = if key.family == 6 {
            self.v6[index as usize] = [key.src, key.dst];
            0
        } else {
            key.v4_addrs()
        };
        self.entries[index as usize] = FlowEntry {
            state: FlowState {
                first_ms: now_ms,
                last_ms: now_ms,
                flags: flag::LIVE,
                path: NO_PATH,
                ..FlowState::default()
            },
            addrs,
            ports_vlan: key.ports_vlan(),
            tail: key.tail(),
        };
        self.buckets[b].sig[s] = sig;
        self.buckets[b].idx[s] = index;
        self.live += 1;
        self.counters.created += 1;
        Found { index, new: true }
    }

    /// Moves one entry of bucket `b1` or `b2` to its own other bucket if that has room,
    /// and returns the slot it freed.
    fn make_room(&mut self, b1: usize, b2: usize) -> Option<(usize, usize)> {
        for b in [b1, b2] {
            for s in 0..SLOTS {
                let i = self.buckets[b].idx[s];
                let (x1, x2, _) = self.places(self.key_at(i as usize).hash());
                let other = if x1 == b { x2 } else { x1 };
                if let Some(t) = self.buckets[other].idx.iter().position(|&x| x == EMPTY) {
                    self.buckets[other].idx[t] = i;
                    self.buckets[other].sig[t] = self.buckets[b].sig[s];
                    self.buckets[b].idx[s] = EMPTY;
                    self.buckets[b].sig[s] = 0;
                    return Some((b, s));
                }
            }
        }
        None
    }

    /// The least recently seen of the 16 live entries from the aging cursor on.
    fn oldest_near_cursor(&self, now_ms: u32) -> u32 {
        let n = self.entries.len();
        let mut best = (0u32, 0u32);
        let mut seen = 0;
        let mut i = self.cursor % n;
        for _ in 0..n {
            let f = &self.entries[i];
            if f.state.flags & flag::LIVE != 0 {
                let age = now_ms.wrapping_sub(f.state.last_ms);
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
        let f = self.flow_at(i as usize);
        debug_assert!(f.state.flags & flag::LIVE != 0);
        let (b1, b2, _) = self.places(f.key.hash());
        for b in [b1, b2] {
            if let Some(s) = self.buckets[b].idx.iter().position(|&x| x == i) {
                self.buckets[b].idx[s] = EMPTY;
                self.buckets[b].sig[s] = 0;
            }
        }
        self.entries[i as usize].state.flags = 0;
        self.free.push(i);
        self.live -= 1;
        ended(FlowRecord { flow: f, reason });
    }

    /// The largest live flows of the last complete walk that looked for them (`walks`
    /// counts those).
    pub fn last_walk(&self) -> &TopFlows {
        &self.tops[self.walking ^ 1]
    }

    /// Looks at up to `budget` entries from where the last call stopped and expires the
    /// idle ones; the others are candidates for the walk's largest flows. Returns how
    /// many expired.
    pub fn age(&mut self, now_ms: u32, budget: usize, ended: &mut impl FnMut(FlowRecord)) -> usize {
        let n = self.entries.len();
        if n == 0 {
            return 0;
        }
        let mut expired = 0;
        for _ in 0..budget.min(n) {
            // No division: the cursor wraps by comparison.
            let i = if self.cursor >= n {
                // A walk ended: its list (if it made one) becomes the last one.
                if self.tracking {
                    self.tops[self.walking].live = self.live;
                    self.walking ^= 1;
                    self.walks += 1;
                }
                self.tracking = self.track_next;
                self.tops[self.walking].len = 0;
                self.tops[self.walking].live_bytes = 0;
                0
            } else {
                self.cursor
            };
            self.cursor = i + 1;
            let f = &self.entries[i];
            if f.state.flags & flag::LIVE == 0 {
                continue;
            }
            let idle = now_ms.wrapping_sub(f.state.last_ms);
            // A flow seen "in the future" (clock skew) is not idle.
            if idle < 1 << 31 && idle > self.timeouts.of(f) {
                let reason = if f.state.flags & flag::CLOSING != 0 {
                    EndReason::Closed
                } else {
                    EndReason::Idle
                };
                self.remove(i as u32, reason, ended);
                self.counters.expired += 1;
                expired += 1;
                continue;
            }
            let age = now_ms.wrapping_sub(f.state.first_ms);
            if age < 1 << 31 && age >= self.timeouts.active_ms {
                // Live for the active timeout: what it carried so far is reported, and it
                // counts afresh (keeping its class and path).
                ended(FlowRecord {
                    flow: self.flow_at(i),
                    reason: EndReason::Active,
                });
                let f = &mut self.entries[i];
                f.state.first_ms = now_ms;
                f.state.bytes = 0;
                f.state.packets = 0;
                self.counters.active += 1;
            }
            if self.tracking {
                let bytes = self.entries[i].state.bytes;
                self.tops[self.walking].live_bytes += bytes;
                if self.tops[self.walking].wants(bytes) {
                    let f = self.flow_at(i);
                    self.tops[self.walking].offer(&f);
                }
            }
        }
        expired
    }

    /// Ends every flow (shutdown).
    pub fn flush(&mut self, ended: &mut impl FnMut(FlowRecord)) {
        for i in 0..self.entries.len() {
            if self.entries[i].state.flags & flag::LIVE != 0 {
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
        active_ms: 60_000,
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
            t.get_mut(f.index).state.last_ms = i;
        }
        assert_eq!(t.len(), 1024);
        for i in 1024..3000u32 {
            let k = key(i);
            let f = t.lookup_or_insert(&k, k.hash(), 5000 + i, &mut |r| ended.push(r));
            assert!(f.new);
            t.get_mut(f.index).state.last_ms = 5000 + i;
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
            t.get_mut(f.index).state.flags |= flags;
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
    fn live_flows_are_reported_at_their_active_timeout_and_count_afresh() {
        let t_active = Timeouts {
            tcp_ms: 10_000,
            active_ms: 1000,
            ..T
        };
        let mut t = FlowTable::new(100, t_active);
        let mut ended = vec![];
        let k = key(1);
        let seen = |t: &mut FlowTable, now: u32, bytes: u64| {
            let f = t.lookup_or_insert(&k, k.hash(), now, &mut |_| ());
            let e = t.get_mut(f.index);
            e.state.packets += 1;
            e.state.bytes += bytes;
            e.state.last_ms = now;
            e.state.path = 3;
        };
        // Seen every 300 ms with 100 bytes: 4 packets by 900 ms.
        for now in [0, 300, 600, 900] {
            seen(&mut t, now, 100);
        }
        assert_eq!(t.age(999, 100, &mut |r| ended.push(r)), 0);
        assert!(ended.is_empty());
        seen(&mut t, 1000, 100);
        t.age(1001, 100, &mut |r| ended.push(r));
        assert_eq!(ended.len(), 1);
        let r = ended[0];
        assert_eq!(r.reason, EndReason::Active);
        assert_eq!(
            (
                r.flow.state.packets,
                r.flow.state.bytes,
                r.flow.state.first_ms,
                r.flow.state.last_ms
            ),
            (5, 500, 0, 1000)
        );
        // Still live, with its path, counting from the report on.
        assert_eq!(t.len(), 1);
        assert_eq!(t.counters.active, 1);
        assert_eq!(t.counters.expired, 0);
        seen(&mut t, 1500, 40);
        t.age(2002, 100, &mut |r| ended.push(r));
        let r = ended[1];
        assert_eq!(r.reason, EndReason::Active);
        assert_eq!(
            (
                r.flow.state.packets,
                r.flow.state.bytes,
                r.flow.state.first_ms,
                r.flow.state.path
            ),
            (1, 40, 1001, 3)
        );
        // Idle ends it as usual, with what came after the last report (nothing).
        t.age(20_000, 100, &mut |r| ended.push(r));
        assert_eq!(ended[2].reason, EndReason::Idle);
        assert_eq!(ended[2].flow.state.packets, 0);
        assert!(t.is_empty());
    }

    #[test]
    fn top_flows_keeps_the_largest_whatever_the_order() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for round in 0..50 {
            let mut top = TopFlows::default();
            let mut all = vec![];
            for _ in 0..(round * 7) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let f = Flow {
                    state: FlowState {
                        bytes: x % 1000,
                        ..FlowState::default()
                    },
                    ..Flow::default()
                };
                all.push(f.state.bytes);
                top.offer(&f);
            }
            all.sort_unstable_by(|a, b| b.cmp(a));
            all.truncate(TOP_FLOWS);
            let mut kept: Vec<u64> = top.as_slice().iter().map(|f| f.state.bytes).collect();
            kept.sort_unstable_by(|a, b| b.cmp(a));
            assert_eq!(kept, all, "round {round}");
        }
    }

    #[test]
    fn each_walk_reports_its_largest_flows() {
        let mut t = FlowTable::new(1000, T);
        // 100 flows of 1..=100 kB (in a scrambled order), then one that ends.
        for i in 0..100u32 {
            let k = key(i);
            let f = t.lookup_or_insert(&k, k.hash(), 0, &mut |_| ());
            t.get_mut(f.index).state.bytes = ((i * 37) % 100 + 1) as u64 * 1000;
        }
        let k = key(500);
        let f = t.lookup_or_insert(&k, k.hash(), 0, &mut |_| ());
        let e = t.get_mut(f.index);
        e.state.bytes = 1 << 40;
        e.state.flags |= flag::CLOSING;
        assert_eq!(t.walks, 0);
        // A walk that was not asked to look for them makes no list.
        t.age(150, 200, &mut |_| ());
        assert_eq!(t.walks, 0);
        t.track_next = true;
        // The walk in progress did not look; the next one, starting here, does.
        t.age(150, 1, &mut |_| ());
        assert_eq!((t.walks, t.cursor), (0, 1));
        // One walk in small steps; nothing is reported until it is complete.
        for _ in 0..14 {
            t.age(150, 7, &mut |_| ());
        }
        assert_eq!((t.walks, t.last_walk().len), (0, 0));
        t.age(150, 7, &mut |_| ());
        assert_eq!(t.walks, 1);
        let top = t.last_walk();
        assert_eq!((top.len, top.live), (TOP_FLOWS, 100));
        // Every live flow's bytes: 1 + 2 + ... + 100 kB; not the ended one.
        assert_eq!(top.live_bytes, 5050 * 1000);
        let mut b: Vec<u64> = top.as_slice().iter().map(|f| f.state.bytes / 1000).collect();
        b.sort_unstable();
        assert_eq!(
            b,
            (81..=100).collect::<Vec<u64>>(),
            "the 20 largest; the ended flow is not live"
        );
        // A flow grows past the others: the next walk has it.
        let k = key(0);
        let i = t.lookup_or_insert(&k, k.hash(), 160, &mut |_| ()).index;
        t.get_mut(i).state.bytes = 1 << 30;
        for _ in 0..200 {
            t.age(160, 1, &mut |_| ());
        }
        assert!(t.walks >= 2);
        assert!(t.last_walk().as_slice().iter().any(|f| f.state.bytes == 1 << 30));
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
    fn fills_to_capacity_without_evicting() {
        // Keys that differ in a few low bits (sequential addresses and ports), the
        // pattern a weak hash spreads badly; also IPv6 and VLANs.
        for family in [4u8, 6] {
            let mut t = FlowTable::new(1 << 16, T);
            for i in 0..(1u32 << 16) {
                let k = FlowKey {
                    src: if family == 6 {
                        (0x2001_0db8u128 << 96) | (i as u128 >> 8)
                    } else {
                        0x0a00_0000 + (i >> 8) as u128
                    },
                    dst: 0xc612_0001,
                    src_port: (i & 0xff) as u16,
                    dst_port: 443,
                    vlan: i & 3,
                    proto: 17,
                    family,
                    ..FlowKey::default()
                };
                t.lookup_or_insert(&k, k.hash(), 0, &mut |_| panic!("evicted below capacity"));
            }
            assert_eq!(t.len(), 1 << 16);
            assert_eq!(t.counters.evicted, 0);
        }
    }

    /// Keys with every field drawn at random, IPv4 and IPv6.
    fn random_keys(n: usize, seed: u64) -> Vec<FlowKey> {
        let mut x = seed;
        let mut next = move || {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            x ^ x >> 29
        };
        (0..n)
            .map(|i| {
                let v6 = i % 3 == 0;
                let addr = |a: u64, b: u64| {
                    if v6 {
                        (a as u128) << 64 | b as u128
                    } else {
                        a as u32 as u128
                    }
                };
                FlowKey {
                    src: addr(next(), next()),
                    dst: addr(next(), next()),
                    src_port: next() as u16,
                    dst_port: next() as u16,
                    vlan: next() as u32 & 0xff_ffff,
                    proto: next() as u8,
                    in_port: next() as u8,
                    family: if v6 { 6 } else { 4 },
                }
            })
            .collect()
    }

    #[test]
    fn entries_give_back_the_keys_they_hold() {
        let mut t = FlowTable::new(4096, T);
        let keys = random_keys(3000, 7);
        let found: Vec<Found> = keys
            .iter()
            .map(|k| t.lookup_or_insert(k, k.hash(), 0, &mut |_| panic!("evicted")))
            .collect();
        assert!(found.iter().all(|f| f.new));
        for (k, f) in keys.iter().zip(&found) {
            assert_eq!(t.get(f.index).key, *k);
            assert!(!t.lookup_or_insert(k, k.hash(), 1, &mut |_| panic!()).new);
            // The same fields as the other family are another flow.
            let mut other = *k;
            other.family = if k.family == 6 { 4 } else { 6 };
            let i = f.index as usize;
            assert!(!t.entries[i].holds(&other, &t.v6[i]));
        }
        // An IPv4 key whose addresses are an IPv6 flow's low bits is not that flow.
        let k6 = keys[0];
        let k4 = FlowKey {
            src: k6.src as u32 as u128,
            dst: k6.dst as u32 as u128,
            family: 4,
            ..k6
        };
        assert!(t.lookup_or_insert(&k4, k4.hash(), 2, &mut |_| panic!()).new);
        let mut ended = vec![];
        t.flush(&mut |r| ended.push(r.flow.key));
        let mut want: Vec<FlowKey> = keys.iter().copied().chain([k4]).collect();
        let order = |k: &FlowKey| {
            (
                k.family, k.src, k.dst, k.src_port, k.dst_port, k.vlan, k.proto, k.in_port,
            )
        };
        want.sort_by_key(order);
        ended.sort_by_key(order);
        assert_eq!(ended, want);
    }

    #[test]
    fn reused_entries_of_either_family_hold_only_their_new_key() {
        let mut t = FlowTable::new(256, T);
        let keys = random_keys(1200, 11);
        let v6: Vec<FlowKey> = keys.iter().copied().filter(|k| k.family == 6).take(300).collect();
        let v4: Vec<FlowKey> = keys.iter().copied().filter(|k| k.family == 4).take(150).collect();
        let (first, second) = v6.split_at(150);
        let mut now = 0;
        let mut ended = vec![];
        // IPv6 flows, then IPv4 ones in the same entries, then other IPv6 ones: each
        // generation expires (idle past every timeout) before the next arrives.
        for batch in [first, &v4[..], second] {
            let mut at = vec![];
            for k in batch {
                let f = t.lookup_or_insert(k, k.hash(), now, &mut |_| panic!());
                assert!(f.new);
                at.push(f.index);
            }
            assert!(at.iter().all(|&i| i < 150), "entries reused: {at:?}");
            for (k, &i) in batch.iter().zip(&at) {
                assert_eq!(t.lookup_or_insert(k, k.hash(), now, &mut |_| panic!()).index, i);
                assert_eq!(t.get(i).key, *k);
            }
            // The earlier generations' keys are not found in their old entries.
            for k in first.iter().chain(&v4).filter(|k| !batch.contains(k)) {
                let i = t.candidate(k.hash(), k.family == 6);
                let found = (i as usize) < t.entries.len() && t.entries[i as usize].holds(k, &t.v6[i as usize]);
                assert!(!found || t.entries[i as usize].state.flags & flag::LIVE == 0);
            }
            now += 10_000;
            while !t.is_empty() {
                t.age(now, 64, &mut |r| ended.push(r.flow.key));
            }
        }
        let mut all: Vec<FlowKey> = first.iter().chain(&v4).chain(second).copied().collect();
        let order = |k: &FlowKey| {
            (
                k.family, k.src, k.dst, k.src_port, k.dst_port, k.vlan, k.proto, k.in_port,
            )
        };
        all.sort_by_key(order);
        ended.sort_by_key(order);
        assert_eq!(ended, all);
    }

    #[test]
    fn ten_million_flows_memory() {
        // Two workers of 5 million each.
        let (table, v6) = FlowTable::memory_bytes_for(5_000_000);
        let per_flow = table as f64 / 5e6;
        assert!(per_flow < 100.0, "{per_flow}");
        assert!((table + v6) as f64 / 5e6 < 135.0, "{per_flow} + {}", v6 / 5_000_000);
    }
}
