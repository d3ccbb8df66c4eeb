//! Micro-benchmark of the pipeline without DPDK: every stage (parse/classify, shape, route,
//! mark) over in-memory 64-byte IPv4 frames in bursts of 32, the way a worker calls it,
//! with 4 096 and 1 048 576 distinct flows, on `benches/bench.py`'s `full` configuration.
//! The IPv4 checksum is verified in software, as on net_pcap (until 2026-11-23 this
//! benchmark's frames said a NIC had checked it). Prints JSON lines: ns per packet overall
//! and cycles per packet per stage. Then the flow table alone at 1 K, 100 K, 1 M and 10 M
//! flows: ns per lookup of a live flow (in bursts of 32 with prefetch, as the pipeline does
//! it) and the memory the table takes. `cargo bench -p dataplane --bench pipeline`.

mod common;

use common::VecFrame as F;
use dataplane::builder::FrameSpec;
use dataplane::flow::{FlowKey, FlowTable, Timeouts};
use dataplane::pipeline::{Pipeline, Shares, Stage};
use dataplane::stats::WorkerCounters;
use std::time::Instant;

fn main() {
    let (cfg, tables) = common::pipeline_tables("full");
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
        p.sync_meters(&tables, &shares, || 0);
        let mut runs = Vec::new();
        let mut stages = vec![];
        // The first pass creates the flows; the timed passes find them.
        for pass in 0..8 {
            for (w, f) in work.iter_mut().zip(&frames) {
                w.0.copy_from_slice(&f.0);
            }
            let c = WorkerCounters::default();
            let t = Instant::now();
            let out = common::run_bursts(&mut p, &tables, &mut work, &c);
            let ns = t.elapsed().as_nanos() as f64 / flows as f64;
            assert_eq!(out, flows);
            if pass > 0 {
                runs.push(ns);
                let s = c.snapshot(1);
                stages.push(
                    Stage::PROCESSED
                        .iter()
                        .map(|&st| s.stage_cycles[st as usize] as f64 / s.stage_packets[st as usize].max(1) as f64)
                        .collect::<Vec<_>>(),
                );
            }
        }
        runs.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let mid = runs.len() / 2;
        let per: Vec<String> = Stage::PROCESSED
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
    flow_scale(&cfg);
}

fn flow_key(i: u64) -> FlowKey {
    FlowKey {
        src: 0x0a00_0000 + (i >> 16) as u128,
        dst: 0xc612_0000 + (i & 0xffff) as u128,
        src_port: (i * 7) as u16,
        dst_port: 443,
        proto: 17,
        family: 4,
        ..FlowKey::default()
    }
}

fn flow_scale(cfg: &control::Config) {
    for flows in [1_000u64, 100_000, 1_000_000, 10_000_000] {
        let mut t = FlowTable::new(flows as usize, Timeouts::from_config(&cfg.flows));
        let built = Instant::now();
        for i in 0..flows {
            let k = flow_key(i);
            t.lookup_or_insert(&k, k.hash(), 0, &mut |_| panic!("evicted below capacity"));
        }
        let build_s = built.elapsed().as_secs_f64();
        // Look up live flows in a scattered order, 32 at a time: hash, prefetch the
        // buckets, find the candidates (prefetching entries), then compare keys.
        let lookups = 2_000_000u64.min(flows * 20);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        // Which flows, drawn before the clock starts.
        let order: Vec<u64> = (0..lookups)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x % flows
            })
            .collect();
        let mut keys = [FlowKey::default(); 32];
        let mut hashes = [0u64; 32];
        let mut cands = [0u32; 32];
        let start = Instant::now();
        let mut found = 0u64;
        for chunk in order.chunks_exact(32) {
            for j in 0..32 {
                keys[j] = flow_key(chunk[j]);
                hashes[j] = keys[j].hash();
                t.prefetch(hashes[j]);
            }
            for j in 0..32 {
                cands[j] = t.candidate(hashes[j], keys[j].family == 6);
            }
            for j in 0..32 {
                let f = t.lookup_or_insert_from(cands[j], &keys[j], hashes[j], 0, &mut |_| {});
                found += !f.new as u64;
            }
        }
        let ns = start.elapsed().as_nanos() as f64 / (lookups / 32 * 32) as f64;
        assert_eq!(found, lookups / 32 * 32);
        println!(
            "{{\"bench\":\"flow-table\",\"flows\":{flows},\"ns_per_lookup\":{ns:.1},\"memory_mib\":{},\"bytes_per_flow\":{:.0},\"ipv6_slots_mib\":{},\"fill_s\":{build_s:.2}}}",
            FlowTable::memory_bytes_for(flows as usize).0 >> 20,
            FlowTable::memory_bytes_for(flows as usize).0 as f64 / flows as f64,
            FlowTable::memory_bytes_for(flows as usize).1 >> 20
        );
    }
}

/// TSC ticks per second, measured against the wall clock (no EAL here).
fn measure_tsc_hz() -> u64 {
    let (t0, c0) = (Instant::now(), dataplane::dpdk::rdtsc());
    std::thread::sleep(std::time::Duration::from_millis(100));
    let (t1, c1) = (Instant::now(), dataplane::dpdk::rdtsc());
    ((c1 - c0) as f64 / (t1 - t0).as_secs_f64()) as u64
}
