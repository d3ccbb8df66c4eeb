//! Criterion micro-benchmarks of the fast path's stages, without DPDK (frames are byte
//! vectors), each over a burst of 32 packets as a worker sees it:
//! - `parse`: one pass over the headers into the metadata (IPv4 UDP and TCP, 802.1Q, IPv6),
//!   checksum verified in software as on a port without offload;
//! - `flows`: the flow table's batch lookup of live flows (hash, bucket prefetch, entry
//!   prefetch, key compare) at 4 K and 1 M flows;
//! - `route`: the path of a packet (LPM, then the group's Maglev table) for a new flow and
//!   for a flow keeping its path;
//! - `mark`: DSCP rewrite with the incremental IPv4 checksum, and IPv6's traffic class;
//! - `pipeline`: all four stages (`Pipeline::process`) on the configurations of
//!   `benches/bench.py`, 4 096 flows, in flow and packet mode.
//!
//! The qos parts (classifier per new flow, meters, scheduler) are in
//! `cargo bench -p qos --bench stages`. Run `cargo bench -p dataplane --bench stages`
//! (add `-- --quick` for a short run); `cargo test --release -p dataplane --bench stages`
//! runs each once, as `make test` does.

mod common;

use common::{frames, VecFrame};
use criterion::{criterion_group, Criterion, Throughput};
use dataplane::dpdk::rdtsc;
use dataplane::flow::{FlowKey, FlowTable, Timeouts};
use dataplane::parse::{self, Meta, Parsed, RxChecksum};
use dataplane::pipeline::{set_dscp, BURST};
use dataplane::stats::WorkerCounters;
use dataplane::tables::PATH_NO_ROUTE;
use std::hint::black_box;

const B: u64 = BURST as u64;

fn meta_of(f: &VecFrame) -> Meta {
    match parse::parse(&f.0, f.0.len() as u32, 0, RxChecksum::UNKNOWN) {
        Ok(Parsed::Ip(m)) => m,
        other => panic!("benchmark frame does not parse as IP: {other:?}"),
    }
}

fn parse_stage(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(B));
    for kind in ["ipv4-udp", "ipv4-tcp", "vlan-ipv4-udp", "ipv6-udp"] {
        let burst = frames(kind, BURST as u32);
        // (Checks run before the clock, so that a filtered-out benchmark still checks.)
        assert!(
            burst.iter().all(|f| meta_of(f).key.dst != 0),
            "{kind}: no destination parsed"
        );
        let mut metas = [Meta::default(); BURST];
        g.bench_function(kind, |b| {
            b.iter(|| {
                for (f, m) in burst.iter().zip(metas.iter_mut()) {
                    let r = parse::parse_into(black_box(&f.0), f.0.len() as u32, 0, RxChecksum::UNKNOWN, m);
                    black_box(r).ok();
                }
            })
        });
    }
    g.finish();
}

fn flow_stage(c: &mut Criterion) {
    // Only lookups of live flows: the timeouts are never reached.
    let timeouts = Timeouts::from_config(&control::config::Flows::default());
    let mut g = c.benchmark_group("flows");
    g.throughput(Throughput::Elements(B));
    for (name, flows) in [("lookup-4k", 4096u32), ("lookup-1m", 1 << 20)] {
        let keys: Vec<FlowKey> = (0..flows)
            .map(|i| FlowKey {
                src: 0x0a00_0000 + (i >> 16) as u128,
                dst: 0xc612_0000 + (i & 0xffff) as u128,
                src_port: i as u16,
                dst_port: 443,
                proto: 17,
                family: 4,
                ..FlowKey::default()
            })
            .collect();
        let mut t = FlowTable::new(flows as usize, timeouts);
        for k in &keys {
            t.lookup_or_insert(k, k.hash(), 0, &mut |_| panic!("evicted below capacity"));
        }
        // Live flows in a scattered order, as packets of many flows arrive.
        let mut rng = common::Rng(0x9e37_79b9_7f4a_7c15);
        let order: Vec<usize> = (0..1 << 16).map(|_| (rng.next() % flows as u64) as usize).collect();
        assert!(keys[..BURST]
            .iter()
            .all(|k| !t.lookup_or_insert(k, k.hash(), 0, &mut |_| {}).new));
        let mut at = 0;
        let mut found = 0u64;
        g.bench_function(name, |b| {
            b.iter(|| {
                let burst = &order[at..at + BURST];
                at = (at + BURST) % order.len();
                let mut hashes = [0u64; BURST];
                for (h, &i) in hashes.iter_mut().zip(burst) {
                    *h = keys[i].hash();
                    t.prefetch(*h);
                }
                let mut cands = [0u32; BURST];
                for (c, h) in cands.iter_mut().zip(&hashes) {
                    *c = t.candidate(*h, false);
                }
                for j in 0..BURST {
                    let f = t.lookup_or_insert_from(cands[j], &keys[burst[j]], hashes[j], 0, &mut |_| {});
                    found += !f.new as u64;
                }
            })
        });
        black_box(found);
    }
    g.finish();
}

fn route_stage(c: &mut Criterion) {
    let (_, t) = common::pipeline_tables("full");
    let metas: Vec<Meta> = frames("ipv4-udp", 4096).iter().map(meta_of).collect();
    let hashes: Vec<u64> = metas.iter().map(|m| m.key.hash()).collect();
    // Each flow's path, as a new flow gets it.
    let paths: Vec<u16> = metas
        .iter()
        .zip(&hashes)
        .map(|(m, &h)| t.resolve_path(m, || h, PATH_NO_ROUTE, 0))
        .collect();
    assert!(
        paths.iter().all(|&p| (p as usize) < t.hops.len()),
        "a benchmark flow has no path"
    );
    let mut g = c.benchmark_group("route");
    g.throughput(Throughput::Elements(B));
    let mut at = 0;
    g.bench_function("new-flow", |b| {
        b.iter(|| {
            for i in at..at + BURST {
                black_box(t.resolve_path(&metas[i], || hashes[i], PATH_NO_ROUTE, 0));
            }
            at = (at + BURST) % metas.len();
        })
    });
    g.bench_function("keeps-path", |b| {
        b.iter(|| {
            for i in at..at + BURST {
                black_box(t.resolve_path(&metas[i], || hashes[i], paths[i], 0));
            }
            at = (at + BURST) % metas.len();
        })
    });
    g.finish();
}

fn mark_stage(c: &mut Criterion) {
    let mut g = c.benchmark_group("mark");
    g.throughput(Throughput::Elements(B));
    for kind in ["ipv4-udp", "ipv6-udp"] {
        let mut burst = frames(kind, BURST as u32);
        let metas: Vec<Meta> = burst.iter().map(meta_of).collect();
        // The headers still parse, IPv4's checksum included, with the new DSCP and the old
        // ECN after a rewrite.
        for (f, m) in burst.iter().zip(&metas) {
            let mut copy = f.clone();
            set_dscp(&mut copy.0, m, 46);
            let m2 = meta_of(&copy);
            assert_eq!((m2.dscp(), m2.ecn()), (46, m.ecn()), "{kind}");
        }
        let mut dscp = 0u8;
        g.bench_function(kind, |b| {
            b.iter(|| {
                dscp = (dscp + 1) & 63;
                for (f, m) in burst.iter_mut().zip(&metas) {
                    set_dscp(black_box(&mut f.0), m, dscp);
                }
            })
        });
    }
    g.finish();
}

fn pipeline(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(B));
    let input = frames("ipv4-udp", 4096);
    for variant in ["full", "forward", "forward-packet", "full-packet"] {
        let (mut p, tables) = common::pipeline(variant);
        let counters = WorkerCounters::default();
        // Every packet is rewritten (TTL, MACs, DSCP) on its way: a fresh copy each
        // burst, made in the same iteration (a memcpy of 2 KB, about 1/32 of the time).
        let mut work: Vec<VecFrame> = input[..BURST].to_vec();
        // Every packet goes out, none is dropped.
        p.process(&tables, &mut work, 0, rdtsc(), &counters, &mut |_| {});
        assert_eq!(common::packets_out(&p, BURST), BURST, "{variant}");
        assert_eq!(counters.snapshot(1).total_drops(), 0, "{variant}");
        let mut at = 0;
        let mut out = 0u64;
        // The last clock read, where a burst's rx begins (as in a worker).
        let mut clock = rdtsc();
        g.bench_function(variant, |b| {
            b.iter(|| {
                for (w, f) in work.iter_mut().zip(&input[at..at + BURST]) {
                    w.0.copy_from_slice(&f.0);
                }
                at = (at + BURST) % input.len();
                p.process(&tables, &mut work, 0, clock, &counters, &mut |_| {});
                clock = rdtsc();
                p.sent(clock, BURST as u64, &counters);
                out += common::packets_out(&p, BURST) as u64;
            })
        });
        black_box(out);
    }
    g.finish();
}

criterion_group!(benches, parse_stage, flow_stage, route_stage, mark_stage, pipeline);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
