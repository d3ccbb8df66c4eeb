//! Per-worker counters. Each worker writes only its own block (plain load + store, no
//! locked instructions: there is one writer); the control thread reads them with relaxed
//! loads. Blocks are cache-line aligned so two workers never share a line.

use crate::dpdk::MAX_PORTS;
use crate::forward::DropReason;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[repr(C, align(64))]
pub struct WorkerCounters {
    /// Loop iterations, and those in which at least one packet arrived.
    pub polls: AtomicU64,
    pub busy_polls: AtomicU64,
    pub rx_packets: [AtomicU64; MAX_PORTS],
    pub rx_bytes: [AtomicU64; MAX_PORTS],
    /// Packets and bytes handed to the driver (taken by tx_burst).
    pub tx_packets: [AtomicU64; MAX_PORTS],
    pub tx_bytes: [AtomicU64; MAX_PORTS],
    pub drops: [AtomicU64; DropReason::COUNT],
}

// One block never straddles another's cache lines.
const _: () = assert!(std::mem::align_of::<WorkerCounters>() == 64);
const _: () = assert!(std::mem::size_of::<WorkerCounters>().is_multiple_of(64));

/// Adds `n` to a counter that only the calling thread writes.
#[inline(always)]
pub fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

impl Default for WorkerCounters {
    fn default() -> Self {
        WorkerCounters {
            polls: AtomicU64::new(0),
            busy_polls: AtomicU64::new(0),
            rx_packets: std::array::from_fn(|_| AtomicU64::new(0)),
            rx_bytes: std::array::from_fn(|_| AtomicU64::new(0)),
            tx_packets: std::array::from_fn(|_| AtomicU64::new(0)),
            tx_bytes: std::array::from_fn(|_| AtomicU64::new(0)),
            drops: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl WorkerCounters {
    #[inline(always)]
    pub fn drop_packet(&self, r: DropReason) {
        bump(&self.drops[r as usize], 1);
    }

    pub fn snapshot(&self, ports: usize) -> WorkerSnapshot {
        let v = |a: &[AtomicU64]| a[..ports].iter().map(|c| c.load(Relaxed)).collect();
        WorkerSnapshot {
            polls: self.polls.load(Relaxed),
            busy_polls: self.busy_polls.load(Relaxed),
            rx_packets: v(&self.rx_packets),
            rx_bytes: v(&self.rx_bytes),
            tx_packets: v(&self.tx_packets),
            tx_bytes: v(&self.tx_bytes),
            drops: self.drops.iter().map(|c| c.load(Relaxed)).collect(),
        }
    }
}

/// A plain copy of one worker's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerSnapshot {
    pub polls: u64,
    pub busy_polls: u64,
    pub rx_packets: Vec<u64>,
    pub rx_bytes: Vec<u64>,
    pub tx_packets: Vec<u64>,
    pub tx_bytes: Vec<u64>,
    pub drops: Vec<u64>,
}

impl WorkerSnapshot {
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }
    pub fn drop_count(&self, r: DropReason) -> u64 {
        self.drops[r as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn counts_and_snapshots() {
        let c = WorkerCounters::default();
        bump(&c.rx_packets[1], 32);
        bump(&c.rx_packets[1], 3);
        c.drop_packet(DropReason::NoRoute);
        c.drop_packet(DropReason::NoRoute);
        let s = c.snapshot(2);
        assert_eq!(s.rx_packets, vec![0, 35]);
        assert_eq!(s.drop_count(DropReason::NoRoute), 2);
        assert_eq!(s.total_drops(), 2);
    }
}
