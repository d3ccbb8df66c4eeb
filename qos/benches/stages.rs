//! Criterion micro-benchmarks of the qos parts of the fast path, without DPDK:
//! - `classify`: the classifier's cost per new flow at 10, 1 000 and 10 000 rules (each
//!   rule set's build time and memory are printed first: Criterion measures only time per
//!   call);
//! - `meter`: a class meter's cost per packet (token bucket, srTCM, trTCM), 32 packets
//!   arriving together as in a worker's burst, offered above the rate so all three
//!   colours occur;
//! - `scheduler`: a rate-limited port's priority queues, 32 packets admitted, queued and
//!   sent per burst.
//!
//! `cargo bench -p qos --bench stages` (add `-- --quick` for a short run);
//! `cargo test --release -p qos --bench stages` runs each once, as `make test` does.

use criterion::{criterion_group, Criterion, Throughput};
use qos::classify::{Classifier, Fields, Net, Rule};
use qos::meter::{Colour, Meter, MeterSpec};
use qos::scheduler::{EgressScheduler, Enqueued};
use qos::{ClassId, Priority};
use std::hint::black_box;
use std::time::Instant;

/// TSC rate assumed by the meters and the scheduler (any value does; 2 GHz is typical).
const HZ: u64 = 2_000_000_000;
const BURST: usize = 32;

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

/// 4 096 packets aimed at the rules' destinations: half match a rule, half fall through.
fn packets(rs: &[Rule], rng: &mut Rng) -> Vec<Fields> {
    (0..4096)
        .map(|i| {
            let r = &rs[rng.next() as usize % rs.len()];
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
        .collect()
}

fn classify(c: &mut Criterion) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut g = c.benchmark_group("classify");
    g.throughput(Throughput::Elements(1));
    for n in [10usize, 1_000, 10_000] {
        let rs = rules(n, &mut rng);
        let t = Instant::now();
        let cl = Classifier::build(&rs, ClassId(0)).expect("rules compile");
        println!(
            "classify/{n}: build {:.1} ms, memory {:.2} MiB",
            t.elapsed().as_secs_f64() * 1e3,
            cl.memory_bytes() as f64 / (1 << 20) as f64
        );
        let pkts = packets(&rs, &mut rng);
        // The benchmark must classify: some packets match a rule, some do not.
        let matched = pkts.iter().filter(|f| cl.classify(f).1.is_some()).count();
        assert!(
            matched > 0 && matched < pkts.len(),
            "{matched} of {} matched",
            pkts.len()
        );
        let mut i = 0;
        g.bench_function(format!("{n}-rules"), |b| {
            b.iter(|| {
                i = (i + 1) % pkts.len();
                cl.classify(black_box(&pkts[i]))
            })
        });
    }
    g.finish();
}

fn meters(c: &mut Criterion) {
    let mut g = c.benchmark_group("meter");
    g.throughput(Throughput::Elements(BURST as u64));
    for (name, spec) in [
        (
            "token-bucket",
            MeterSpec::TokenBucket {
                rate_bps: 1_000_000_000,
                burst_bytes: 100_000,
            },
        ),
        (
            "srtcm",
            MeterSpec::SrTcm {
                cir_bps: 1_000_000_000,
                cbs_bytes: 100_000,
                ebs_bytes: 100_000,
            },
        ),
        (
            "trtcm",
            MeterSpec::TrTcm {
                cir_bps: 1_000_000_000,
                cbs_bytes: 100_000,
                pir_bps: 2_000_000_000,
                pbs_bytes: 100_000,
            },
        ),
    ] {
        let mut m = Meter::new(&spec, false, HZ, 0);
        // Start with the buckets spent, as under sustained overload.
        while m.colour(0, 1500, Colour::Green) == Colour::Green {}
        // Offered above every rate: a burst has more than one colour.
        let mut seen = [0u64; 3];
        let mut now = 1600;
        for _ in 0..BURST {
            seen[m.colour(now, 64, Colour::Green) as usize] += 1;
        }
        assert!(seen[0] > 0 && seen[1] + seen[2] > 0, "{name}: colours {seen:?}");
        g.bench_function(name, |b| {
            b.iter(|| {
                // 32 packets of 64 bytes every 800 ns: 20 Gbit/s offered.
                now += 1600;
                for _ in 0..BURST {
                    seen[m.colour(now, black_box(64), Colour::Green) as usize] += 1;
                }
            })
        });
        black_box(seen);
    }
    g.finish();
}

fn scheduler(c: &mut Criterion) {
    let mut g = c.benchmark_group("scheduler");
    g.throughput(Throughput::Elements(BURST as u64));
    // A 100 Gbit/s port with a guaranteed minimum for class 1: the link never holds a
    // 32-packet burst back, so every burst is queued and sent whole.
    let mut s = EgressScheduler::<u32>::new(100_000_000_000, 64 * 1024, 1024, 512, &[0, 1_000_000_000], HZ, 0);
    let mut now = 0u64;
    let mut burst = || {
        for i in 0..BURST as u32 {
            let prio = Priority::ALL[i as usize % Priority::COUNT];
            if !matches!(s.admit(prio, i % 2 == 0), Enqueued::Drop) {
                s.push(prio, i, 64, ClassId((i % 2) as u16));
            }
        }
        now += 100_000;
        s.dequeue(now, BURST, |item, _| {
            black_box(item);
        });
        s.is_empty()
    };
    assert!(burst(), "a burst was not sent whole");
    g.bench_function("admit-queue-send", |b| b.iter(&mut burst));
    g.finish();
}

criterion_group!(benches, classify, meters, scheduler);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
