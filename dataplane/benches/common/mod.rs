//! What the benchmarks share: a deterministic generator, medians, EAL started once for
//! the process (`--no-huge`, main lcore on core 1, a unique prefix) for those that call
//! DPDK, and the frames, configuration and pipeline of those that run the stages.
#![allow(dead_code)]

use dataplane::builder::{FrameSpec, PROTO_TCP};
use dataplane::dpdk::Eal;
pub use dataplane::pipeline::VecFrame;
use dataplane::pipeline::{Pipeline, Verdict, BURST};
use dataplane::stats::WorkerCounters;
use std::net::{Ipv4Addr, Ipv6Addr};

/// xorshift64: deterministic, no dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// EAL for a benchmark named `name`: without hugepages, on core 1, quiet.
pub fn eal(name: &str) -> Eal {
    let prefix = format!("sluice-{name}-{}", std::process::id());
    let args: Vec<String> = [
        name,
        "--no-huge",
        "--no-pci",
        "--file-prefix",
        prefix.as_str(),
        "-m",
        "1024",
        "-l",
        "1",
        "--log-level=*:4",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    Eal::init(&args).expect("EAL")
}

/// The traffic part of a `sluiced` configuration, as `benches/bench.py` writes it for its
/// variants: `full` (100 rules, the last one matching the benchmark's UDP traffic; three
/// classes with meters far above any rate and DSCP marking; an active-active group of two
/// paths; 1 M flows of capacity) or `forward` (a route to a port and next hop only),
/// either with `-packet` for packet mode. Routes cover 198.18.0.0/15 (IPv4) and
/// 2001:200::/64 (IPv6).
pub fn pipeline_config(variant: &str) -> String {
    use std::fmt::Write;
    let (base, packet) = match variant.strip_suffix("-packet") {
        Some(b) => (b, true),
        None => (variant, false),
    };
    let mut c = String::from("[eal]\nworkers = [1]\n[[ports]]\nname = \"p0\"\ndevice = \"net_null0\"\n");
    c.push_str("[flows]\ncapacity = 1000000\n");
    if packet {
        c.push_str("mode = \"packet\"\n");
    }
    match base {
        "forward" => {
            for prefix in ["198.18.0.0/15", "2001:200::/64"] {
                writeln!(
                    c,
                    "[[routes]]\nprefix = \"{prefix}\"\nport = \"p0\"\nnext_hop_mac = \"02:00:00:00:00:02\""
                )
                .unwrap();
            }
        }
        "full" => {
            for (name, prio, dscp) in [("gold", "p0", "ef"), ("bulk", "p3", "af11")] {
                writeln!(
                    c,
                    "[[classes]]\nname = \"{name}\"\npriority = \"{prio}\"\ndscp = \"{dscp}\"\n\
                     meter = {{ type = \"trtcm\", cir = \"400Gbit\", pir = \"800Gbit\" }}"
                )
                .unwrap();
            }
            c.push_str("[[classes]]\nname = \"default\"\ndscp = \"cs1\"\nmeter = { type = \"token-bucket\", rate = \"400Gbit\" }\n");
            for i in 0..99 {
                writeln!(
                    c,
                    "[[rules]]\nclass = \"bulk\"\ndst = \"10.{i}.0.0/16\"\nprotocol = \"tcp\"\ndst_ports = 443"
                )
                .unwrap();
            }
            c.push_str("[[rules]]\nclass = \"gold\"\nprotocol = \"udp\"\n");
            for (i, cloud) in ["aws", "gcp"].iter().enumerate() {
                writeln!(
                    c,
                    "[[paths]]\nname = \"{cloud}\"\ncloud = \"{cloud}\"\nport = \"p0\"\nnext_hop = \"203.0.113.{}\"\n\
                     next_hop_mac = \"02:00:00:00:00:0{}\"\nlatency_ms = 10",
                    i + 1,
                    i + 2
                )
                .unwrap();
            }
            c.push_str("[[path_groups]]\nname = \"clouds\"\npaths = [\"aws\", \"gcp\"]\npolicy = \"active-active\"\n");
            for prefix in ["198.18.0.0/15", "2001:200::/64"] {
                writeln!(c, "[[routes]]\nprefix = \"{prefix}\"\ngroup = \"clouds\"").unwrap();
            }
        }
        other => panic!("no pipeline variant {other:?}"),
    }
    c
}

/// The configuration and compiled tables of a variant (no DPDK: a fake CPU tree).
pub fn pipeline_tables(variant: &str) -> (control::Config, dataplane::tables::Tables) {
    let tree = numa::FakeTree::new(&format!("bench-{variant}")).online_cpus("0-1");
    let cfg = control::Config::parse(&pipeline_config(variant), "bench.toml", &tree.system()).expect("config");
    let _ = std::fs::remove_dir_all(tree.root());
    let status: Vec<routing::PathStatus> = cfg.paths.iter().map(routing::PathStatus::from_config).collect();
    let tables = dataplane::tables::Tables::build(&cfg, &[[2, 0, 0, 0, 0, 1]], &status, 1).expect("tables");
    (cfg, tables)
}

/// 64-byte (or IPv6's smallest) frames of `n` flows to 198.18.0.0/24 or 2001:200::/64.
/// `kind`: ipv4-udp, ipv4-tcp, vlan-ipv4-udp or ipv6-udp. TTL 255, so that a frame can go
/// through the route stage many times.
pub fn frames(kind: &str, n: u32) -> Vec<VecFrame> {
    (0..n)
        .map(|i| {
            let src4 = Ipv4Addr::from(0x0a00_0000 + (i >> 8));
            let dst4 = Ipv4Addr::from(0xc612_0000 + (i & 0xff));
            let mut s = match kind {
                "ipv6-udp" => FrameSpec::udp6(
                    Ipv6Addr::from(0x2001_0db8u128 << 96 | i as u128),
                    Ipv6Addr::from(0x2001_0200u128 << 96 | (i & 0xff) as u128),
                    62,
                ),
                _ => FrameSpec::udp4(src4, dst4, 60),
            };
            match kind {
                "ipv4-tcp" => s.proto = PROTO_TCP,
                "vlan-ipv4-udp" => s.vlan = Some(100 + (i % 7) as u16),
                _ => {}
            }
            s.src_port = 1024 + (i % 50_000) as u16;
            s.ttl = 255;
            VecFrame(s.build())
        })
        .collect()
}

/// A worker's pipeline for a variant (`pipeline_config`), its meters set up, with the
/// tables it runs on.
pub fn pipeline(variant: &str) -> (Pipeline, dataplane::tables::Tables) {
    let (cfg, tables) = pipeline_tables(variant);
    let timeouts = dataplane::flow::Timeouts::from_config(&cfg.flows);
    // Bursts to one port go out whole, as a worker sends them to a port without a link
    // rate (`run_bursts`).
    let mut p = Pipeline::new(cfg.flows.capacity as usize, timeouts, 0, 2_000_000_000).sends_whole(u64::MAX);
    if variant.ends_with("-packet") {
        p = p.packet_mode();
    }
    p.sync_meters(&tables, &dataplane::pipeline::Shares::new(1), || 0);
    (p, tables)
}

/// How many of the last burst's `n` packets go out, as a worker finds it: all of them
/// when the burst leaves by one port (its verdicts are then not written), else those
/// whose verdict says so.
pub fn packets_out(p: &Pipeline, n: usize) -> usize {
    match p.one_port() {
        Some(_) => n,
        None => p.verdicts()[..n]
            .iter()
            .filter(|v| matches!(v, Verdict::Out { .. }))
            .count(),
    }
}

/// Runs `work` through `p` burst by burst, as a worker would; returns the packets that
/// went out.
pub fn run_bursts(p: &mut Pipeline, t: &dataplane::tables::Tables, work: &mut [VecFrame], c: &WorkerCounters) -> usize {
    let mut out = 0;
    // The last clock read, where a burst's rx begins.
    let mut clock = dataplane::dpdk::rdtsc();
    for chunk in work.chunks_mut(BURST) {
        p.process(t, chunk, 0, clock, c, &mut |_| {});
        // Nothing to send here: the tx stage is the call itself.
        clock = dataplane::dpdk::rdtsc();
        p.sent(clock, chunk.len() as u64, c);
        out += packets_out(p, chunk.len());
    }
    // What the worker does when the traffic stops.
    p.publish_stages(c);
    out
}
