//! Per-worker counters. Each worker writes only its own block (plain load + store, no
//! locked instructions: there is one writer); the control thread reads them with relaxed
//! loads. Blocks are cache-line aligned so two workers never share a line.

use crate::dpdk::MAX_PORTS;
use crate::latency;
use crate::pipeline::{DropReason, Stage};
use qos::class::{Priority, MAX_CLASSES};
use qos::meter::Colour;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

fn zeros<const N: usize>() -> [AtomicU64; N] {
    std::array::from_fn(|_| AtomicU64::new(0))
}

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
    /// Per stage: TSC cycles, packets that went through, bursts.
    pub stage_cycles: [AtomicU64; Stage::COUNT],
    pub stage_packets: [AtomicU64; Stage::COUNT],
    pub stage_bursts: [AtomicU64; Stage::COUNT],
    /// Per class and colour: packets and bytes metered (`class * 3 + colour`).
    pub class_packets: [AtomicU64; MAX_CLASSES * 3],
    pub class_bytes: [AtomicU64; MAX_CLASSES * 3],
    /// Packets handed to the control thread.
    pub to_control: AtomicU64,
    pub flows_created: AtomicU64,
    pub flows_expired: AtomicU64,
    pub flows_evicted: AtomicU64,
    pub flows_active: AtomicU64,
    /// Flow records the control thread's ring had no room for.
    pub records_lost: AtomicU64,
    /// Egress queues of rate-limited ports, per `port * 4 + priority`.
    pub queue_enqueued: [AtomicU64; MAX_PORTS * Priority::COUNT],
    pub queue_dropped: [AtomicU64; MAX_PORTS * Priority::COUNT],
    pub queue_ce_marked: [AtomicU64; MAX_PORTS * Priority::COUNT],
    pub queue_depth: [AtomicU64; MAX_PORTS * Priority::COUNT],
    /// The snapshot generation this worker runs on.
    pub generation: AtomicU64,
    /// Processing latency in TSC cycles, packets per slot (`latency`).
    pub latency: [AtomicU64; latency::SLOTS],
}

// One block never straddles another's cache lines.
const _: () = assert!(std::mem::align_of::<WorkerCounters>() == 64);
const _: () = assert!(std::mem::size_of::<WorkerCounters>().is_multiple_of(64));

/// Adds `n` to a counter that only the calling thread writes.
#[inline(always)]
pub fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

/// Sets a gauge that only the calling thread writes.
#[inline(always)]
pub fn set(c: &AtomicU64, v: u64) {
    c.store(v, Relaxed);
}

impl Default for WorkerCounters {
    fn default() -> Self {
        WorkerCounters {
            polls: AtomicU64::new(0),
            busy_polls: AtomicU64::new(0),
            rx_packets: zeros(),
            rx_bytes: zeros(),
            tx_packets: zeros(),
            tx_bytes: zeros(),
            drops: zeros(),
            stage_cycles: zeros(),
            stage_packets: zeros(),
            stage_bursts: zeros(),
            class_packets: zeros(),
            class_bytes: zeros(),
            to_control: AtomicU64::new(0),
            flows_created: AtomicU64::new(0),
            flows_expired: AtomicU64::new(0),
            flows_evicted: AtomicU64::new(0),
            flows_active: AtomicU64::new(0),
            records_lost: AtomicU64::new(0),
            queue_enqueued: zeros(),
            queue_dropped: zeros(),
            queue_ce_marked: zeros(),
            queue_depth: zeros(),
            generation: AtomicU64::new(0),
            latency: zeros(),
        }
    }
}

fn load(a: &[AtomicU64]) -> Vec<u64> {
    a.iter().map(|c| c.load(Relaxed)).collect()
}

impl WorkerCounters {
    #[inline(always)]
    pub fn drop_packet(&self, r: DropReason) {
        bump(&self.drops[r as usize], 1);
    }

    /// `packets` packets in `bursts` bursts through stage `s`, their cycles counted apart.
    #[inline(always)]
    pub fn stage_packets_add(&self, s: Stage, packets: u64, bursts: u64) {
        bump(&self.stage_packets[s as usize], packets);
        bump(&self.stage_bursts[s as usize], bursts);
    }

    #[inline(always)]
    pub fn stage_cycles_add(&self, s: Stage, cycles: u64) {
        bump(&self.stage_cycles[s as usize], cycles);
    }

    #[inline(always)]
    pub fn class_packets_add(&self, class: usize, colour: Colour, packets: u64, bytes: u64) {
        let i = class * 3 + colour as usize;
        bump(&self.class_packets[i], packets);
        bump(&self.class_bytes[i], bytes);
    }

    /// `packets` packets that took `cycles` from arrival to the driver.
    #[inline(always)]
    pub fn latency(&self, cycles: u64, packets: u64) {
        bump(&self.latency[latency::slot(cycles)], packets);
    }

    /// Packets per latency slot, now.
    pub fn latency_slots(&self) -> Vec<u64> {
        load(&self.latency)
    }

    /// Bytes offered to each class (all colours), the demand the rate shares follow.
    pub fn class_demand(&self, classes: usize) -> Vec<u64> {
        (0..classes)
            .map(|c| (0..3).map(|k| self.class_bytes[c * 3 + k].load(Relaxed)).sum())
            .collect()
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
            drops: load(&self.drops),
            stage_cycles: load(&self.stage_cycles),
            stage_packets: load(&self.stage_packets),
            stage_bursts: load(&self.stage_bursts),
            class_packets: load(&self.class_packets),
            class_bytes: load(&self.class_bytes),
            to_control: self.to_control.load(Relaxed),
            flows_created: self.flows_created.load(Relaxed),
            flows_expired: self.flows_expired.load(Relaxed),
            flows_evicted: self.flows_evicted.load(Relaxed),
            flows_active: self.flows_active.load(Relaxed),
            records_lost: self.records_lost.load(Relaxed),
            queue_enqueued: load(&self.queue_enqueued[..ports * Priority::COUNT]),
            queue_dropped: load(&self.queue_dropped[..ports * Priority::COUNT]),
            queue_ce_marked: load(&self.queue_ce_marked[..ports * Priority::COUNT]),
            queue_depth: load(&self.queue_depth[..ports * Priority::COUNT]),
            generation: self.generation.load(Relaxed),
            latency: self.latency_slots(),
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
    pub stage_cycles: Vec<u64>,
    pub stage_packets: Vec<u64>,
    pub stage_bursts: Vec<u64>,
    pub class_packets: Vec<u64>,
    pub class_bytes: Vec<u64>,
    pub to_control: u64,
    pub flows_created: u64,
    pub flows_expired: u64,
    pub flows_evicted: u64,
    pub flows_active: u64,
    pub records_lost: u64,
    pub queue_enqueued: Vec<u64>,
    pub queue_dropped: Vec<u64>,
    pub queue_ce_marked: Vec<u64>,
    pub queue_depth: Vec<u64>,
    pub generation: u64,
    /// Packets per latency slot.
    pub latency: Vec<u64>,
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
        c.stage_cycles_add(Stage::Route, 100);
        c.stage_packets_add(Stage::Route, 32, 1);
        c.class_packets_add(2, Colour::Yellow, 1, 64);
        c.latency(1000, 32);
        c.latency(1003, 1);
        let s = c.snapshot(2);
        assert_eq!(s.latency[latency::slot(1000)], 33);
        assert_eq!(s.latency.iter().sum::<u64>(), 33);
        assert_eq!(s.rx_packets, vec![0, 35]);
        assert_eq!(s.drop_count(DropReason::NoRoute), 2);
        assert_eq!(s.total_drops(), 2);
        assert_eq!(s.stage_packets[Stage::Route as usize], 32);
        assert_eq!(s.class_bytes[2 * 3 + 1], 64);
        assert_eq!(c.class_demand(3), vec![0, 0, 64]);
    }
}
