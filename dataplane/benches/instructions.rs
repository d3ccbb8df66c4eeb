//! A driver for counting the pipeline's instructions per packet under
//! `valgrind --tool=callgrind`, which counts the same for the same binary and input
//! whatever else the machine does (timings on these shared machines move by up to 2×).
//! It pushes `PASSES` passes of 4 096 flows of 64-byte IPv4 UDP (the checksum verified in
//! software, as net_pcap gives no offload) through `Pipeline::process` on one of
//! `benches/bench.py`'s configurations (`VARIANT`: full, forward, forward-packet,
//! full-packet). The first pass creates the flows. `FRAMES` picks other frames of
//! `common::frames` (`ipv6-udp`, `ipv4-tcp`, `vlan-ipv4-udp`).
//!
//! `scripts/instructions.sh` runs it twice per variant with different pass counts and
//! prints the difference per packet: the steady state, without start-up. Criterion does
//! not fit here (it times); this is not run by `make bench`.

mod common;

use dataplane::stats::WorkerCounters;

fn main() {
    let variant = std::env::var("VARIANT").unwrap_or_else(|_| "full".into());
    let passes: usize = std::env::var("PASSES").ok().and_then(|p| p.parse().ok()).unwrap_or(2);
    let (mut p, tables) = common::pipeline(&variant);
    let kind = std::env::var("FRAMES").unwrap_or_else(|_| "ipv4-udp".into());
    let frames = common::frames(&kind, 4096);
    let mut work = frames.clone();
    let c = WorkerCounters::default();
    let mut out = 0usize;
    for _ in 0..passes {
        for (w, f) in work.iter_mut().zip(&frames) {
            w.0.copy_from_slice(&f.0);
        }
        out += common::run_bursts(&mut p, &tables, &mut work, &c);
    }
    // Every packet of every pass went out: the count is of real forwarding.
    assert_eq!(out, passes * frames.len(), "{variant}: drops {:?}", c.snapshot(1).drops);
}
