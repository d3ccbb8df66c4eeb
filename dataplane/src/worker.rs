//! The worker loop: run to completion on one lcore, polling its RX queues in bursts of 32,
//! forwarding each packet by the table, buffering per egress port and transmitting on its
//! own TX queue of each port. No allocation, locks, syscalls or logging in the loop; the
//! only shared writes are this worker's own counters.

use crate::dpdk::{flags, lcore_id, Burst, RxQueue, TxQueue};
use crate::forward::{DropReason, ForwardTable, RxChecksum, Verdict};
use crate::stats::{bump, WorkerCounters};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub const BURST: usize = 32;

/// What one worker owns.
pub struct WorkerPlan {
    /// The lcore EAL runs this worker on.
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

/// Sends a burst holding `bytes` bytes and counts what the driver took and refused.
#[inline(always)]
fn flush(q: &mut TxQueue, b: &mut Burst<BURST>, bytes: u64, port: usize, c: &WorkerCounters) {
    let r = q.tx(b);
    bump(&c.tx_packets[port], r.sent as u64);
    bump(&c.tx_bytes[port], bytes - r.dropped_bytes);
    if r.dropped > 0 {
        bump(&c.drops[DropReason::TxFull as usize], r.dropped as u64);
    }
}

/// Marks a packet to drop in the per-burst verdict array.
const DROP: u16 = u16::MAX;

/// Runs until `stop` is set; returns 0. Everything still buffered is sent or freed.
///
/// Each RX burst goes through two passes, as in DPDK's l3fwd: first every packet is
/// decided and rewritten in place (its egress port noted in `dst`), then the burst is
/// dispatched. When the whole burst leaves by one port, which is the common case, it is
/// handed to that port's TX queue as it is; otherwise packets are sorted into per-port
/// buffers that are sent when full and at the end of every poll round.
pub fn run(mut plan: WorkerPlan, table: Arc<ForwardTable>, c: Arc<WorkerCounters>, stop: Arc<AtomicBool>) -> i32 {
    // Counters and queues assume the planned lcore (its mempool cache, its NUMA node).
    assert_eq!(lcore_id(), plan.lcore, "worker started on the wrong lcore");
    let ports = plan.tx.len();
    let mut rx = Burst::<BURST>::new();
    let mut pending: Vec<Burst<BURST>> = (0..ports).map(|_| Burst::new()).collect();
    let mut pending_bytes: Vec<u64> = vec![0; ports];
    let mut dst = [DROP; BURST];
    let table = &*table;
    while !stop.load(Ordering::Relaxed) {
        let mut got = 0;
        for (in_port, q) in plan.rx.iter_mut() {
            let n = q.rx(&mut rx);
            if n == 0 {
                continue;
            }
            got += n;
            // Headers of the whole burst start loading while the first packets are decided.
            rx.prefetch_all();
            let mut bytes = 0u64;
            for (m, d) in rx.as_mut_slice().iter_mut().zip(dst.iter_mut()) {
                let len = m.pkt_len();
                bytes += len as u64;
                let csum = rx_checksum(m.ol_flags());
                *d = match table.forward(m.data_mut(), len, csum) {
                    Verdict::Forward(p) => p,
                    Verdict::Drop(r) => {
                        c.drop_packet(r);
                        DROP
                    }
                };
            }
            bump(&c.rx_packets[*in_port], n as u64);
            bump(&c.rx_bytes[*in_port], bytes);

            let first = dst[0];
            if first != DROP && dst[1..n].iter().all(|&d| d == first) {
                let p = first as usize;
                // Keep order: what is already waiting for this port goes first.
                if !pending[p].is_empty() {
                    flush(&mut plan.tx[p], &mut pending[p], pending_bytes[p], p, &c);
                    pending_bytes[p] = 0;
                }
                flush(&mut plan.tx[p], &mut rx, bytes, p, &c);
            } else {
                for (m, &d) in rx.drain().zip(dst.iter()) {
                    if d == DROP {
                        drop(m);
                        continue;
                    }
                    let p = d as usize;
                    let b = &mut pending[p];
                    pending_bytes[p] += m.pkt_len() as u64;
                    // A full buffer is flushed right after the push that filled it, so
                    // there is always room here.
                    let _ = b.push(m);
                    if b.is_full() {
                        flush(&mut plan.tx[p], b, pending_bytes[p], p, &c);
                        pending_bytes[p] = 0;
                    }
                }
            }
        }
        for (p, b) in pending.iter_mut().enumerate() {
            if !b.is_empty() {
                flush(&mut plan.tx[p], b, pending_bytes[p], p, &c);
                pending_bytes[p] = 0;
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
        assert_eq!(rx_checksum(flags::MBUF_RX_IP_CKSUM_GOOD | 1), RxChecksum::Good);
        assert_eq!(rx_checksum(flags::MBUF_RX_IP_CKSUM_BAD), RxChecksum::Bad);
        assert_eq!(rx_checksum(flags::MBUF_RX_IP_CKSUM_MASK), RxChecksum::Good);
    }
}
