//! Micro-benchmark of the pipeline without DPDK: every stage (parse/classify, shape, route,
//! mark) over in-memory 64-byte IPv4 frames in bursts of 32, the way a worker calls it,
//! with 4 096 and 1 048 576 distinct flows, 100 classifier rules and a metered class.
//! Prints JSON lines: ns per packet overall and cycles per packet per stage.
//! `cargo bench -p dataplane --bench pipeline`.

use dataplane::builder::FrameSpec;
use dataplane::flow::Timeouts;
use dataplane::parse::RxChecksum;
use dataplane::pipeline::{Frame, Pipeline, Shares, Stage, Verdict, BURST};
use dataplane::stats::WorkerCounters;
use dataplane::tables::Tables;
use routing::PathStatus;
use std::fmt::Write;
use std::time::Instant;

struct F(Vec<u8>);
impl Frame for F {
    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
    fn pkt_len(&self) -> u32 {
        self.0.len() as u32
    }
    fn rx_checksum(&self) -> RxChecksum {
        RxChecksum::Good
    }
}

fn config() -> String {
    let mut c = String::from(
        "[eal]\nworkers = [1]\n[[ports]]\nname = \"a\"\ndevice = \"net_null0\"\n\
         [flows]\ncapacity = 2000000\n\
         [[classes]]\nname = \"gold\"\npriority = \"p0\"\ndscp = \"ef\"\n\
         meter = { type = \"trtcm\", cir = \"100Gbit\", pir = \"200Gbit\" }\n\
         [[classes]]\nname = \"bulk\"\ndscp = \"af11\"\n",
    );
    // 100 rules, the last one catching the benchmark's traffic.
    for i in 0..99 {
        writeln!(
            c,
            "[[rules]]\nclass = \"bulk\"\ndst = \"10.{i}.0.0/16\"\nprotocol = \"tcp\"\ndst_ports = 443"
        )
        .unwrap();
    }
    c.push_str("[[rules]]\nclass = \"gold\"\ndst = \"198.18.0.0/15\"\n");
    for (i, name) in ["aws", "gcp"].iter().enumerate() {
        writeln!(
            c,
            "[[paths]]\nname = \"{name}\"\ncloud = \"{name}\"\nport = \"a\"\nnext_hop = \"203.0.113.{}\"\nnext_hop_mac = \"02:00:00:00:00:0{}\"",
            i + 1,
            i + 1
        )
        .unwrap();
    }
    c.push_str("[[path_groups]]\nname = \"g\"\npaths = [\"aws\", \"gcp\"]\npolicy = \"active-active\"\n");
    c.push_str("[[routes]]\nprefix = \"198.18.0.0/15\"\ngroup = \"g\"\n");
    c
}

fn main() {
    let tree = numa::FakeTree::new("bench-pipeline").online_cpus("0-1");
    let cfg = control::Config::parse(&config(), "bench.toml", &tree.system()).unwrap();
    let status: Vec<PathStatus> = cfg.paths.iter().map(PathStatus::from_config).collect();
    let tables = Tables::build(&cfg, &[[2, 0, 0, 0, 0, 1]], &status, 1).unwrap();
    let tsc_hz = measure_tsc_hz();
    for flows in [4096usize, 1 << 20] {
        let frames: Vec<F> = (0..flows as u32)
            .map(|i| {
                let mut s = FrameSpec::udp4(
                    std::net::Ipv4Addr::from(0x0a00_0000 + (i >> 16)),
                    std::net::Ipv4Addr::from(0xc612_0000 + (i & 0xffff)),
                    60,
                );
                s.ttl = 255;
                F(s.build())
            })
            .collect();
        let mut work: Vec<F> = frames.iter().map(|f| F(f.0.clone())).collect();
        let mut p = Pipeline::new(2_000_000, Timeouts::from_config(&cfg.flows), 0, tsc_hz);
        let shares = Shares::new(1);
        p.sync_meters(&tables, &shares, 0);
        let mut runs = Vec::new();
        let mut stages = vec![];
        // The first pass creates the flows; the timed passes find them.
        for pass in 0..8 {
            for (w, f) in work.iter_mut().zip(&frames) {
                w.0.copy_from_slice(&f.0);
            }
            let c = WorkerCounters::default();
            let t = Instant::now();
            let mut out = 0;
            for chunk in work.chunks_mut(BURST) {
                p.process(&tables, chunk, 0, &c, &mut |_| {});
                out += p.verdicts()[..chunk.len()]
                    .iter()
                    .filter(|v| matches!(v, Verdict::Out { .. }))
                    .count();
            }
            let ns = t.elapsed().as_nanos() as f64 / flows as f64;
            assert_eq!(out, flows);
            if pass > 0 {
                runs.push(ns);
                let s = c.snapshot(1);
                stages.push(
                    Stage::ALL[..4]
                        .iter()
                        .map(|&st| s.stage_cycles[st as usize] as f64 / s.stage_packets[st as usize].max(1) as f64)
                        .collect::<Vec<_>>(),
                );
            }
        }
        runs.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let mid = runs.len() / 2;
        let per: Vec<String> = Stage::ALL[..4]
            .iter()
            .enumerate()
            .map(|(k, st)| {
                let mut v: Vec<f64> = stages.iter().map(|s| s[k]).collect();
                v.sort_by(|a, b| a.partial_cmp(b).unwrap());
                format!("\"{}\":{:.1}", st.name(), v[v.len() / 2])
            })
            .collect();
        println!(
            "{{\"bench\":\"pipeline\",\"stages\":\"full\",\"flows\":{flows},\"ns_per_packet\":{:.2},\"cycles_per_packet\":{{{}}}}}",
            runs[mid],
            per.join(",")
        );
    }
    let _ = std::fs::remove_dir_all(tree.root());
}

/// TSC ticks per second, measured against the wall clock (no EAL here).
fn measure_tsc_hz() -> u64 {
    let (t0, c0) = (Instant::now(), dataplane::dpdk::rdtsc());
    std::thread::sleep(std::time::Duration::from_millis(100));
    let (t1, c1) = (Instant::now(), dataplane::dpdk::rdtsc());
    ((c1 - c0) as f64 / (t1 - t0).as_secs_f64()) as u64
}
