//! Packets waiting for a next hop's MAC address: while a path's next hop is being
//! resolved and its group has no other usable path, the workers hand the group's packets
//! to the control thread, which holds up to `per_hop` of them per next hop (and `TOTAL`
//! in all). When the next hop answers they leave, in order, with its MAC; when it fails
//! (or stops being a next hop) they are dropped. A full queue drops its oldest packet.
//! Everything is counted per next hop, for `show neighbors`.
//!
//! Generic over what is held, so it is tested here without DPDK; the appliance holds mbufs.

use std::collections::VecDeque;
use std::net::IpAddr;

/// At most this many packets are held at once, over all next hops. Every mbuf pool has
/// room for them on top of what the descriptors and caches need.
pub const TOTAL: usize = 2048;

/// Held packets and counts for one next hop.
#[derive(Debug)]
pub struct Held<T> {
    pub port: usize,
    pub ip: IpAddr,
    queue: VecDeque<T>,
    /// Packets taken in to wait.
    pub held: u64,
    /// Sent on when the next hop answered.
    pub released: u64,
    /// Dropped to make room (the oldest first).
    pub overflowed: u64,
    /// Dropped because the next hop failed, went away, or was not being resolved.
    pub unresolved: u64,
}

impl<T> Held<T> {
    pub fn waiting(&self) -> usize {
        self.queue.len()
    }
}

#[derive(Debug)]
pub struct HoldQueues<T> {
    per_hop: usize,
    total: usize,
    hops: Vec<Held<T>>,
}

impl<T> HoldQueues<T> {
    pub fn new(per_hop: usize) -> HoldQueues<T> {
        HoldQueues {
            per_hop: per_hop.min(TOTAL),
            total: 0,
            hops: Vec::new(),
        }
    }

    pub fn set_per_hop(&mut self, per_hop: usize) {
        self.per_hop = per_hop.min(TOTAL);
    }

    pub fn hops(&self) -> &[Held<T>] {
        &self.hops
    }

    /// Packets held now, over all next hops.
    pub fn waiting(&self) -> usize {
        self.total
    }

    /// The next hop's entry, made on first use. Only next hops the configuration names
    /// are ever asked for, so this stays small.
    fn hop(&mut self, port: usize, ip: IpAddr) -> &mut Held<T> {
        let i = match self.hops.iter().position(|h| h.port == port && h.ip == ip) {
            Some(i) => i,
            None => {
                self.hops.push(Held {
                    port,
                    ip,
                    queue: VecDeque::new(),
                    held: 0,
                    released: 0,
                    overflowed: 0,
                    unresolved: 0,
                });
                self.hops.len() - 1
            }
        };
        &mut self.hops[i]
    }

    /// Holds `item` for `ip` on `port`. When this next hop's queue (or all of them
    /// together) is full, its oldest packet is dropped to make room; with nothing of its
    /// own to drop, `item` is.
    pub fn hold(&mut self, port: usize, ip: IpAddr, item: T) {
        let (per_hop, full) = (self.per_hop, self.total >= TOTAL);
        let h = self.hop(port, ip);
        if per_hop == 0 {
            h.unresolved += 1;
            return;
        }
        h.held += 1;
        if h.queue.len() >= per_hop || full {
            h.overflowed += 1;
            if h.queue.pop_front().is_none() {
                return;
            }
        } else {
            self.total += 1;
        }
        self.hop(port, ip).queue.push_back(item);
    }

    /// A packet for a next hop that is not being resolved: dropped, and counted there.
    pub fn refuse(&mut self, port: usize, ip: IpAddr) {
        self.hop(port, ip).unresolved += 1;
    }

    /// Next hops with packets waiting.
    pub fn pending(&self) -> Vec<(usize, IpAddr)> {
        self.hops
            .iter()
            .filter(|h| !h.queue.is_empty())
            .map(|h| (h.port, h.ip))
            .collect()
    }

    /// The next hop answered: its packets, oldest first, to be sent.
    pub fn release(&mut self, port: usize, ip: IpAddr) -> VecDeque<T> {
        let h = self.hop(port, ip);
        let q = std::mem::take(&mut h.queue);
        h.released += q.len() as u64;
        self.total -= q.len();
        q
    }

    /// What `release` gave that could not be sent yet (the driver's ring was full): back
    /// at the front, in order, for the next turn.
    pub fn unrelease(&mut self, port: usize, ip: IpAddr, items: Vec<T>) {
        let n = items.len();
        let h = self.hop(port, ip);
        h.released -= n as u64;
        for item in items.into_iter().rev() {
            h.queue.push_front(item);
        }
        self.total += n;
    }

    /// The next hop will not answer (failed, or no longer a next hop): its packets are
    /// dropped. Returns how many.
    pub fn discard(&mut self, port: usize, ip: IpAddr) -> usize {
        let h = self.hop(port, ip);
        let n = h.queue.len();
        h.queue.clear();
        h.unresolved += n as u64;
        self.total -= n;
        n
    }

    /// Drops every held packet (at shutdown). Returns how many.
    pub fn clear(&mut self) -> usize {
        let keys: Vec<_> = self.pending();
        keys.into_iter().map(|(p, ip)| self.discard(p, ip)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn holds_in_order_and_releases_once() {
        let (a, b) = (ip("10.0.0.1"), ip("2001:db8::1"));
        let mut q = HoldQueues::new(4);
        for i in 0..3 {
            q.hold(0, a, i);
        }
        q.hold(1, b, 100);
        assert_eq!(q.waiting(), 4);
        assert_eq!(q.pending(), vec![(0, a), (1, b)]);
        assert_eq!(q.release(0, a), [0, 1, 2]);
        assert!(q.release(0, a).is_empty(), "released once");
        assert_eq!(q.pending(), vec![(1, b)]);
        let h = &q.hops()[0];
        assert_eq!((h.held, h.released, h.overflowed, h.unresolved), (3, 3, 0, 0));
        assert_eq!(q.waiting(), 1);
        // What could not be sent goes back in front, in order.
        q.hold(0, a, 3);
        q.unrelease(0, a, vec![1, 2]);
        assert_eq!(q.waiting(), 4);
        assert_eq!(q.hops()[0].released, 1);
        assert_eq!(q.release(0, a), [1, 2, 3]);
        assert_eq!(q.hops()[0].released, 4);
    }

    #[test]
    fn a_full_queue_drops_its_oldest() {
        let a = ip("10.0.0.1");
        let mut q = HoldQueues::new(3);
        for i in 0..10 {
            q.hold(0, a, i);
        }
        assert_eq!(q.waiting(), 3);
        assert_eq!(q.hops()[0].overflowed, 7);
        assert_eq!(q.release(0, a), [7, 8, 9]);
        assert_eq!(q.waiting(), 0);
    }

    #[test]
    fn the_total_is_bounded_across_next_hops() {
        let mut q = HoldQueues::new(TOTAL);
        for i in 0..TOTAL {
            q.hold(0, ip("10.0.0.1"), i);
        }
        // Another next hop, with nothing of its own to drop, loses the new packet.
        q.hold(0, ip("10.0.0.2"), 0);
        assert_eq!(q.waiting(), TOTAL);
        assert_eq!((q.hops()[1].held, q.hops()[1].overflowed), (1, 1));
        assert!(q.release(0, ip("10.0.0.2")).is_empty());
        // The first one makes room by dropping its own oldest.
        q.hold(0, ip("10.0.0.1"), TOTAL);
        assert_eq!(q.waiting(), TOTAL);
        assert_eq!(q.release(0, ip("10.0.0.1")).front(), Some(&1));
    }

    #[test]
    fn failures_and_refusals_are_counted_drops() {
        let a = ip("10.0.0.1");
        let mut q = HoldQueues::new(8);
        q.hold(0, a, 1);
        q.hold(0, a, 2);
        assert_eq!(q.discard(0, a), 2);
        q.refuse(0, a);
        let h = &q.hops()[0];
        assert_eq!((h.held, h.released, h.unresolved), (2, 0, 3));
        assert_eq!(q.waiting(), 0);
        // Holding turned off: nothing waits.
        let mut off = HoldQueues::new(0);
        off.hold(0, a, 1);
        assert_eq!((off.waiting(), off.hops()[0].unresolved), (0, 1));
        // Shutdown drops what is left.
        let mut q = HoldQueues::new(8);
        q.hold(0, a, 1);
        q.hold(1, a, 2);
        assert_eq!(q.clear(), 2);
        assert_eq!(q.waiting(), 0);
    }
}
