//! The egress scheduler of a rate-limited port: four bounded FIFO queues, one per
//! priority, drained at the port's link rate. Each round first serves packets of classes
//! that are still below their guaranteed minimum (from any queue, in priority order),
//! then strict priority P0 → P3. Above a queue-depth threshold ECN-capable packets are
//! admitted with CE set instead of waiting to be dropped; a full queue tail-drops.
//!
//! One scheduler per (worker, port); only its worker touches it. Queues are allocated at
//! start-up and never grow.

use crate::class::{ClassId, Priority};
use crate::meter::Bucket;
use std::collections::VecDeque;

/// What to do with a packet offered to a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Queue it as it is.
    Queue,
    /// Set ECN CE in the packet, then queue it.
    QueueMarkCe,
    /// The queue is full: drop it (counted).
    Drop,
}

/// Counters per priority; the worker copies them into its shared block once per poll.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounters {
    pub enqueued: u64,
    pub dequeued: u64,
    pub dropped: u64,
    pub ce_marked: u64,
}

struct Waiting<T> {
    item: T,
    bytes: u32,
    class: ClassId,
}

pub struct EgressScheduler<T> {
    queues: [VecDeque<Waiting<T>>; Priority::COUNT],
    capacity: usize,
    ecn_threshold: usize,
    tsc_hz: u64,
    link: Bucket,
    burst_bytes: u64,
    /// Guaranteed minimum per class (index = ClassId); `None` for classes without one.
    min: Vec<Option<Bucket>>,
    last: u64,
    pub counters: [QueueCounters; Priority::COUNT],
}

impl<T> EgressScheduler<T> {
    /// `capacity` packets per queue; ECN CE marking starts at `ecn_threshold` packets;
    /// `min_bps[c]` is class c's guaranteed minimum (0 for none). The link bucket holds
    /// `burst_bytes`, which bounds how much leaves back to back.
    pub fn new(
        link_bps: u64,
        burst_bytes: u64,
        capacity: usize,
        ecn_threshold: usize,
        min_bps: &[u64],
        tsc_hz: u64,
        now: u64,
    ) -> EgressScheduler<T> {
        assert!(capacity > 0 && ecn_threshold <= capacity);
        EgressScheduler {
            queues: std::array::from_fn(|_| VecDeque::with_capacity(capacity)),
            capacity,
            ecn_threshold,
            tsc_hz,
            link: Bucket::new(link_bps, burst_bytes, tsc_hz),
            burst_bytes,
            min: {
                let mut v = Vec::with_capacity(crate::class::MAX_CLASSES.max(min_bps.len()));
                v.extend(
                    min_bps
                        .iter()
                        .map(|&r| (r > 0).then(|| Bucket::new(r, burst_bytes, tsc_hz))),
                );
                v
            },
            last: now,
            counters: [QueueCounters::default(); Priority::COUNT],
        }
    }

    /// Replaces the classes' guaranteed minimums (a new configuration). Buckets start
    /// full; the list's capacity is reused, so this does not allocate for up to
    /// `MAX_CLASSES` classes.
    pub fn set_minimums(&mut self, min_bps: impl Iterator<Item = u64>) {
        let burst = self.burst_bytes;
        let hz = self.tsc_hz;
        self.min.clear();
        self.min
            .extend(min_bps.map(|r| (r > 0).then(|| Bucket::new(r, burst, hz))));
    }

    /// Whether a packet may join priority `p`'s queue, and whether it must carry CE.
    /// `ect` says the packet is ECN-capable (ECT(0), ECT(1) or already CE).
    #[inline]
    pub fn admit(&mut self, p: Priority, ect: bool) -> Enqueued {
        let depth = self.queues[p as usize].len();
        let c = &mut self.counters[p as usize];
        if depth >= self.capacity {
            c.dropped += 1;
            Enqueued::Drop
        } else if ect && depth >= self.ecn_threshold {
            c.ce_marked += 1;
            Enqueued::QueueMarkCe
        } else {
            Enqueued::Queue
        }
    }

    /// Queues a packet that `admit` accepted.
    #[inline]
    pub fn push(&mut self, p: Priority, item: T, bytes: u32, class: ClassId) {
        let q = &mut self.queues[p as usize];
        debug_assert!(q.len() < self.capacity, "push without admit");
        self.counters[p as usize].enqueued += 1;
        q.push_back(Waiting { item, bytes, class });
    }

    pub fn depth(&self, p: Priority) -> usize {
        self.queues[p as usize].len()
    }

    pub fn is_empty(&self) -> bool {
        self.queues.iter().all(|q| q.is_empty())
    }

    /// Hands up to `max` packets that the link rate allows at `now` to `send`, in the
    /// order they should leave. Returns how many.
    pub fn dequeue(&mut self, now: u64, max: usize, mut send: impl FnMut(T, ClassId)) -> usize {
        let elapsed = now.saturating_sub(self.last);
        self.last = self.last.max(now);
        self.link.fill(elapsed);
        for b in self.min.iter_mut().flatten() {
            b.fill(elapsed);
        }
        let hz = self.tsc_hz;
        let mut sent = 0;
        while sent < max {
            // Guaranteed minimums first: the highest-priority head whose class still has
            // minimum tokens; then plain strict priority.
            let head_fits = |q: &VecDeque<Waiting<T>>, min: &[Option<Bucket>]| match q.front() {
                Some(w) => matches!(min.get(w.class.0 as usize), Some(Some(b)) if b.has(w.bytes as u64 * hz)),
                None => false,
            };
            let pick = (0..Priority::COUNT)
                .find(|&p| head_fits(&self.queues[p], &self.min))
                .or_else(|| (0..Priority::COUNT).find(|&p| !self.queues[p].is_empty()));
            let Some(p) = pick else { break };
            let head = self.queues[p].front().map(|w| w.bytes as u64 * hz).unwrap_or(0);
            if !self.link.has(head) {
                break;
            }
            let w = self.queues[p].pop_front().expect("picked a non-empty queue");
            self.link.take(head);
            if let Some(Some(b)) = self.min.get_mut(w.class.0 as usize) {
                b.take_up_to(head);
            }
            self.counters[p].dequeued += 1;
            send(w.item, w.class);
            sent += 1;
        }
        sent
    }

    /// Empties every queue (shutdown, reconfiguration), handing each packet to `f`.
    pub fn drain(&mut self, mut f: impl FnMut(T)) {
        for q in self.queues.iter_mut() {
            for w in q.drain(..) {
                f(w.item);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HZ: u64 = 1_000_000_000;

    #[test]
    fn strict_priority_order() {
        let mut s = EgressScheduler::new(8_000_000, 10_000, 16, 16, &[0, 0, 0, 0], HZ, 0);
        for (i, p) in [Priority::P3, Priority::P1, Priority::P0, Priority::P2, Priority::P0]
            .into_iter()
            .enumerate()
        {
            assert_eq!(s.admit(p, false), Enqueued::Queue);
            s.push(p, i, 100, ClassId(0));
        }
        let mut out = vec![];
        s.dequeue(0, 100, |x, _| out.push(x));
        assert_eq!(out, vec![2, 4, 1, 3, 0]);
    }

    #[test]
    fn link_rate_is_respected() {
        // 8 Mbit/s = 1 MB/s; 1000-byte packets: 1000 per second.
        let mut s = EgressScheduler::new(8_000_000, 2000, 4096, 4096, &[0], HZ, 0);
        let mut sent = 0;
        let mut now = 0;
        for _ in 0..10_000 {
            while s.admit(Priority::P2, false) == Enqueued::Queue && s.depth(Priority::P2) < 100 {
                s.push(Priority::P2, (), 1000, ClassId(0));
            }
            now += HZ / 1000;
            sent += s.dequeue(now, 32, |_, _| {});
        }
        // 10 s: 10 000 packets, plus the initial burst of two.
        assert!((10_000..=10_002).contains(&sent), "{sent}");
    }

    #[test]
    fn guaranteed_minimum_under_contention() {
        // Link 80 Mbit/s; class 1 (P3) is guaranteed 8 Mbit/s while class 0 (P0) floods.
        let mut s = EgressScheduler::new(80_000_000, 3000, 1024, 1024, &[0, 8_000_000], HZ, 0);
        let mut got = [0u64; 2];
        let mut now = 0;
        for _ in 0..100_000 {
            for (p, c) in [(Priority::P0, 0), (Priority::P3, 1)] {
                while s.depth(p) < 64 {
                    assert_ne!(s.admit(p, false), Enqueued::Drop);
                    s.push(p, c, 1000, ClassId(c as u16));
                }
            }
            now += HZ / 10_000;
            s.dequeue(now, 32, |c, _| got[c] += 1000);
        }
        // 10 s: the link carries 100 MB; class 1 gets its 10 MB, class 0 the rest.
        let secs = 10;
        let bps = |b: u64| b * 8 / secs;
        assert!((7_900_000..=8_100_000).contains(&bps(got[1])), "{got:?}");
        assert!((71_500_000..=72_100_000).contains(&bps(got[0])), "{got:?}");
        // Without the guarantee, strict priority starves class 1 completely.
        let mut s = EgressScheduler::new(80_000_000, 3000, 1024, 1024, &[0, 0], HZ, 0);
        let mut starved = 0;
        let mut now = 0;
        for _ in 0..10_000 {
            for (p, c) in [(Priority::P0, 0u16), (Priority::P3, 1)] {
                while s.depth(p) < 64 {
                    s.admit(p, false);
                    s.push(p, c, 1000, ClassId(c));
                }
            }
            now += HZ / 10_000;
            s.dequeue(now, 32, |c, _| starved += c as u64);
        }
        assert_eq!(starved, 0);
    }

    #[test]
    fn ecn_threshold_then_tail_drop() {
        let mut s = EgressScheduler::new(8_000, 64, 8, 4, &[0], HZ, 0);
        let mut verdicts = vec![];
        for _ in 0..10 {
            let v = s.admit(Priority::P1, true);
            if v != Enqueued::Drop {
                s.push(Priority::P1, (), 1500, ClassId(0));
            }
            verdicts.push(v);
        }
        use Enqueued::*;
        assert_eq!(
            verdicts,
            vec![
                Queue,
                Queue,
                Queue,
                Queue,
                QueueMarkCe,
                QueueMarkCe,
                QueueMarkCe,
                QueueMarkCe,
                Drop,
                Drop
            ]
        );
        // Not ECN-capable: no marking, only the tail drop when full.
        assert_eq!(s.admit(Priority::P2, false), Queue);
        let c = s.counters[Priority::P1 as usize];
        assert_eq!((c.enqueued, c.ce_marked, c.dropped), (8, 4, 2));
        let mut n = 0;
        s.drain(|_| n += 1);
        assert_eq!(n, 8);
        assert!(s.is_empty());
    }
}
