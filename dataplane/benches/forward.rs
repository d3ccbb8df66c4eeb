//! Micro-benchmark of the forwarding stage alone (no DPDK): ns per packet for
//! `ForwardTable::forward` over 4096 in-memory 64-byte IPv4 frames, the way a worker calls
//! it. Prints the median of several runs. `cargo bench -p dataplane --bench forward`.

use dataplane::builder::FrameSpec;
use dataplane::forward::{ForwardTable, RxChecksum, Verdict};
use std::time::Instant;

fn main() {
    let tree = numa::FakeTree::new("bench-fwd").online_cpus("0-1");
    let cfg = control::Config::parse(
        "[eal]\nworkers = [1]\n[[ports]]\nname = \"a\"\ndevice = \"net_null0\"\n\
         [[routes]]\nprefix = \"198.18.0.0/16\"\nport = \"a\"\nnext_hop_mac = \"02:00:00:00:00:02\"\n",
        "bench.toml",
        &tree.system(),
    )
    .unwrap();
    let table = ForwardTable::build(&cfg, &[[2, 0, 0, 0, 0, 1]]).unwrap();
    let frames: Vec<Vec<u8>> = (0..4096u32)
        .map(|i| {
            FrameSpec::udp4(
                "10.0.0.1".parse().unwrap(),
                std::net::Ipv4Addr::from(0xc612_0000 + i),
                60,
            )
            .build()
        })
        .collect();
    let mut work = frames.clone();
    let mut runs = Vec::new();
    for _ in 0..31 {
        // Fresh TTLs, copied in a pass of their own so the timed pass reads settled memory
        // (as after a NIC's DMA) rather than stores still in flight.
        for (w, f) in work.iter_mut().zip(&frames) {
            w.copy_from_slice(f);
        }
        let mut forwarded = 0usize;
        let t = Instant::now();
        for w in work.iter_mut() {
            let len = w.len() as u32;
            if let Verdict::Forward(_) = table.forward(std::hint::black_box(w), len, RxChecksum::Unknown) {
                forwarded += 1;
            }
        }
        let ns = t.elapsed().as_nanos() as f64 / frames.len() as f64;
        assert_eq!(forwarded, frames.len());
        runs.push(ns);
    }
    runs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "{{\"bench\":\"forward-stage\",\"packets\":{},\"ns_per_packet\":{:.2}}}",
        frames.len(),
        runs[runs.len() / 2]
    );
    let _ = std::fs::remove_dir_all(tree.root());
}
