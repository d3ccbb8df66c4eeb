//! The worker loop: run to completion on one lcore, polling its RX queues in bursts of 32,
//! forwarding each packet by the table, buffering per egress port and transmitting on its
//! own TX queue of each port. No allocation, locks, syscalls or logging in the loop; the
//! only shared writes are this worker's own counters.

use crate::dpdk::{flags, Burst, RxQueue, TxQueue};
use crate::forward::{DropReason, ForwardTable, RxChecksum, Verdict};
use crate::stats::{bump, WorkerCounters};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub const BURST: usize = 32;

/// What one worker owns.
pub struct WorkerPlan {
    pub index: usize,
    pub lcore: u32,
    /// (port index, queue) pairs this worker polls.
    pub rx: Vec<(usize, RxQueue)>,
    /// This worker's TX queue on every port, by port index.
    pub tx: Vec<TxQueue>,
}

#[inline(always)]
fn rx_checksum(ol_flags: u64) -> RxChecksum {
    match ol_flags & flags::MBUF_RX_IP_CKSUM_MASK {
        flags::MBUF_RX_IP_CKSUM_GOOD => RxChecksum::Good,
        flags::MBUF_RX_IP_CKSUM_BAD => RxChecksum::Bad,
        // NONE (both bits): header integrity verified, checksum field not meaningful.
        flags::MBUF_RX_IP_CKSUM_MASK => RxChecksum::Good,
        _ => RxChecksum::Unknown,
    }
}

#[inline(always)]
fn flush(q: &mut TxQueue, b: &mut Burst<BURST>, port: usize, c: &WorkerCounters) {
    let (sent, dropped) = q.tx(b);
    bump(&c.tx_packets[port], sent as u64);
    if dropped > 0 {
        bump(&c.drops[DropReason::TxFull as usize], dropped as u64);
    }
}

/// Runs until `stop` is set; returns 0. Everything still buffered is sent or freed.
pub fn run(
    mut plan: WorkerPlan,
    table: Arc<ForwardTable>,
    c: Arc<WorkerCounters>,
    stop: Arc<AtomicBool>,
) -> i32 {
    let ports = plan.tx.len();
    let mut rx = Burst::<BURST>::new();
    let mut pending: Vec<Burst<BURST>> = (0..ports).map(|_| Burst::new()).collect();
    let table = &*table;
    while !stop.load(Ordering::Relaxed) {
        let mut got = 0;
        for (in_port, q) in plan.rx.iter_mut() {
            let n = q.rx(&mut rx);
            if n == 0 {
                continue;
            }
            got += n;
            let mut bytes = 0u64;
            for mut m in rx.drain() {
                let len = m.pkt_len();
                bytes += len as u64;
                let csum = rx_checksum(m.ol_flags());
                match table.forward(m.data_mut(), len, csum) {
                    Verdict::Forward(p) => {
                        let p = p as usize;
                        let b = &mut pending[p];
                        // A full buffer is flushed right after the push that filled it, so
                        // there is always room here.
                        let _ = b.push(m);
                        if b.is_full() {
                            flush(&mut plan.tx[p], b, p, &c);
                        }
                    }
                    Verdict::Drop(r) => {
                        c.drop_packet(r);
                        drop(m);
                    }
                }
            }
            bump(&c.rx_packets[*in_port], n as u64);
            bump(&c.rx_bytes[*in_port], bytes);
        }
        for (p, b) in pending.iter_mut().enumerate() {
            if !b.is_empty() {
                flush(&mut plan.tx[p], b, p, &c);
            }
        }
        bump(&c.polls, 1);
        if got > 0 {
            bump(&c.busy_polls, 1);
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn checksum_flags() {
        assert_eq!(rx_checksum(0), RxChecksum::Unknown);
        assert_eq!(
            rx_checksum(flags::MBUF_RX_IP_CKSUM_GOOD | 1),
            RxChecksum::Good
        );
        assert_eq!(rx_checksum(flags::MBUF_RX_IP_CKSUM_BAD), RxChecksum::Bad);
        assert_eq!(rx_checksum(flags::MBUF_RX_IP_CKSUM_MASK), RxChecksum::Good);
    }
}
