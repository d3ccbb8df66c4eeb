//! Sluice's DIR-24-8 IPv4 LPM (`routing::Lpm4`) against DPDK's `rte_lpm`, on the same
//! routes and addresses: 1 K, 100 K and 500 K prefixes shaped like a real table (mostly
//! /24, some shorter, a few longer), 1 M lookups (half to routed space). Both must give the
//! same answer for every address. Initialises EAL once (`--no-huge`, main lcore on core 1).
//! `cargo bench -p dataplane --bench lpm`.

mod common;

use common::{median, Rng};
use dataplane::dpdk::RteLpm;
use routing::{Ipv4Prefix, Lpm4};
use std::collections::HashSet;
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Instant;

fn main() {
    let eal = common::eal("lpm-bench");
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for n in [1_000usize, 100_000, 500_000] {
        let mut seen = HashSet::new();
        let mut routes: Vec<(Ipv4Prefix, u32)> = Vec::new();
        while routes.len() < n {
            let r = rng.next();
            let len = match r % 100 {
                0..=69 => 24,
                70..=89 => 16 + (r >> 8) as u8 % 8,
                _ => 25 + (r >> 8) as u8 % 8,
            };
            let p = Ipv4Prefix::new(Ipv4Addr::from((r >> 32) as u32), len).network();
            if seen.insert((p.addr, p.len)) {
                routes.push((p, (routes.len() % 1000) as u32 + 1));
            }
        }
        let ours = Lpm4::build(&routes, 1 << 16).expect("Lpm4");
        let long = routes.iter().filter(|(p, _)| p.len > 24).count() as u32;
        let mut theirs = RteLpm::create(&format!("bench{n}"), n as u32, long + 256).expect("rte_lpm");
        for (p, v) in &routes {
            theirs.add(u32::from(p.addr), p.len, *v).expect("rte_lpm_add");
        }
        let addrs: Vec<u32> = (0..1u32 << 20)
            .map(|i| {
                let r = rng.next();
                if i % 2 == 0 {
                    let (p, _) = routes[(r % n as u64) as usize];
                    u32::from(p.addr) | ((r >> 32) as u32 & (u32::MAX >> p.len.max(1)))
                } else {
                    (r >> 32) as u32
                }
            })
            .collect();
        for &a in &addrs {
            assert_eq!(ours.lookup(a), theirs.lookup(a), "{}", Ipv4Addr::from(a));
        }
        let (mut o, mut t, mut b) = (vec![], vec![], vec![]);
        let mut out = [0u32; 32];
        for _ in 0..7 {
            let s = Instant::now();
            let mut acc = 0u32;
            for &a in &addrs {
                acc = acc.wrapping_add(ours.lookup(black_box(a)).unwrap_or(0));
            }
            black_box(acc);
            o.push(s.elapsed().as_nanos() as f64 / addrs.len() as f64);
            let s = Instant::now();
            let mut acc = 0u32;
            for &a in &addrs {
                acc = acc.wrapping_add(theirs.lookup(black_box(a)).unwrap_or(0));
            }
            black_box(acc);
            t.push(s.elapsed().as_nanos() as f64 / addrs.len() as f64);
            let s = Instant::now();
            let mut acc = 0u32;
            for chunk in addrs.chunks_exact(32) {
                theirs.lookup_bulk(black_box(chunk), &mut out);
                acc = acc.wrapping_add(out[7]);
            }
            black_box(acc);
            b.push(s.elapsed().as_nanos() as f64 / addrs.len() as f64);
        }
        println!(
            "{{\"bench\":\"lpm4\",\"routes\":{n},\"sluice_ns\":{:.2},\"rte_lpm_ns\":{:.2},\"rte_lpm_bulk32_ns\":{:.2},\"sluice_mib\":{}}}",
            median(o),
            median(t),
            median(b),
            ours.memory_bytes() >> 20
        );
    }
    let _ = eal.cleanup();
}
