//! Micro-benchmarks of the qos stages, without DPDK: the classifier's cost per new flow at
//! 10, 1 000 and 10 000 rules (with its build time and memory), and a meter's cost per
//! packet. Prints medians of several runs. `cargo bench -p qos --bench stages`.

use qos::classify::{Classifier, Fields, Net, Rule};
use qos::meter::{Colour, Meter, MeterSpec};
use qos::ClassId;
use std::hint::black_box;
use std::time::Instant;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Rules the way a large deployment writes them: a distinct destination prefix per rule,
/// often a port or a protocol, sometimes a source prefix or DSCP.
fn rules(n: usize, rng: &mut Rng) -> Vec<Rule> {
    (0..n)
        .map(|i| {
            let r = rng.next();
            let mut rule = Rule::any(ClassId(1 + (i % 8) as u16));
            rule.dst = Some(if r & 7 == 0 {
                Net::V6 {
                    addr: (0x2001_0db8u128 << 96) | ((r as u128 & 0xffff) << 64),
                    len: 64,
                }
            } else {
                Net::V4 {
                    addr: 0x0a00_0000 | ((r >> 8) as u32 & 0x00ff_ff00),
                    len: 24,
                }
            });
            if r & 0x30 == 0 {
                rule.dst_ports = (443, 443);
                rule.proto = Some(6);
            }
            if r & 0x300 == 0 && !rule.dst.is_some_and(|d| d.is_v6()) {
                rule.src = Some(Net::V4 {
                    addr: 0xc0a8_0000 | ((r >> 32) as u32 & 0xff00),
                    len: 24,
                });
            }
            if r & 0xc00 == 0 {
                rule.dscp = Some(46);
            }
            rule
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    println!("classifier: cost per new flow (one classification), build time, memory");
    for n in [10usize, 1_000, 10_000] {
        let rs = rules(n, &mut rng);
        let t = Instant::now();
        let c = Classifier::build(&rs, ClassId(0)).unwrap();
        let build_ms = t.elapsed().as_secs_f64() * 1e3;
        // Packets aimed at the rules' destinations (half match a rule, half fall through).
        let pkts: Vec<Fields> = (0..4096)
            .map(|i| {
                let r = &rs[rng.next() as usize % n];
                let (v6, dst) = match r.dst {
                    Some(Net::V6 { addr, .. }) => (true, addr | (i as u128)),
                    Some(Net::V4 { addr, .. }) if i % 2 == 0 => (false, (addr | (i & 0xff)) as u128),
                    _ => (false, 0x0b00_0000 | i as u128),
                };
                Fields {
                    v6,
                    src: if v6 { 1 } else { 0xc0a8_0101 },
                    dst,
                    src_port: 40000 + i as u16,
                    dst_port: if i % 3 == 0 { 443 } else { 80 },
                    proto: 6,
                    vlan: None,
                    in_port: 0,
                    dscp: if i % 5 == 0 { 46 } else { 0 },
                }
            })
            .collect();
        let mut runs = Vec::new();
        let mut matched = 0;
        for _ in 0..9 {
            let t = Instant::now();
            for _ in 0..25 {
                for f in &pkts {
                    matched += black_box(c.classify(black_box(f))).1.is_some() as usize;
                }
            }
            runs.push(t.elapsed().as_nanos() as f64 / (25.0 * pkts.len() as f64));
        }
        println!(
            "  {n:>6} rules: {:>7.1} ns/flow   build {build_ms:>8.1} ms   memory {:>6.1} MiB   ({}% matched a rule)",
            median(runs),
            c.memory_bytes() as f64 / (1 << 20) as f64,
            matched * 100 / (9 * 25 * pkts.len())
        );
    }

    println!("meters: cost per packet");
    for (name, spec) in [
        (
            "token bucket",
            MeterSpec::TokenBucket {
                rate_bps: 1_000_000_000,
                burst_bytes: 100_000,
            },
        ),
        (
            "srTCM",
            MeterSpec::SrTcm {
                cir_bps: 1_000_000_000,
                cbs_bytes: 100_000,
                ebs_bytes: 100_000,
            },
        ),
        (
            "trTCM",
            MeterSpec::TrTcm {
                cir_bps: 1_000_000_000,
                cbs_bytes: 100_000,
                pir_bps: 2_000_000_000,
                pbs_bytes: 100_000,
            },
        ),
    ] {
        let mut m = Meter::new(&spec, false, 2_000_000_000, 0);
        let mut runs = Vec::new();
        let mut now = 0u64;
        for _ in 0..9 {
            let t = Instant::now();
            for _ in 0..1_000_000 {
                now += 50;
                black_box(m.colour(now, black_box(64), Colour::Green));
            }
            runs.push(t.elapsed().as_nanos() as f64 / 1e6);
        }
        println!("  {name:>12}: {:>5.1} ns/packet", median(runs));
    }
}
