//! Sluice's classifier (`qos::Classifier`, bit vectors) against DPDK's `rte_acl` on the
//! same IPv4 5-tuple rules: 10, 1 000 and 10 000 rules, 4 096 lookups (about half match a
//! rule). Every answer is checked equal first (the first matching rule). Initialises EAL
//! once (`--no-huge`, main lcore on core 1). `cargo bench -p dataplane --bench acl`.

mod common;

use common::{median, Rng};
use dataplane::dpdk::{AclV4, AclV4Key, AclV4Rule};
use qos::classify::{Classifier, Fields, Net, Rule};
use qos::ClassId;
use std::hint::black_box;
use std::time::Instant;

fn main() {
    let eal = common::eal("acl-bench");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for n in [10usize, 1_000, 10_000] {
        // Rules as in `qos`'s bench: a destination /24 each, a quarter TCP to 443, an
        // eighth with a source /24 too.
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        for i in 0..n {
            let r = rng.next();
            let dst = 0x0a00_0000 | ((r >> 8) as u32 & 0x00ff_ff00);
            let src = (r & 7 == 0).then_some(0xc0a8_0000 | ((r >> 32) as u32 & 0xff00));
            let tcp443 = r & 0x30 == 0;
            let mut rule = Rule::any(ClassId(1 + (i % 8) as u16));
            rule.dst = Some(Net::V4 { addr: dst, len: 24 });
            rule.src = src.map(|a| Net::V4 { addr: a, len: 24 });
            if tcp443 {
                rule.proto = Some(6);
                rule.dst_ports = (443, 443);
            }
            ours.push(rule);
            theirs.push(AclV4Rule {
                proto: tcp443.then_some(6),
                src: src.map_or((0, 0), |a| (a, 24)),
                dst: (dst, 24),
                src_ports: (0, u16::MAX),
                dst_ports: if tcp443 { (443, 443) } else { (0, u16::MAX) },
                // The first rule wins in Sluice; the highest priority in rte_acl.
                priority: (n - i) as i32,
                userdata: i as u32 + 1,
            });
        }
        let t = Instant::now();
        let ours_c = Classifier::build(&ours, ClassId(0)).unwrap();
        let ours_build = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let acl = AclV4::build(&format!("bench{n}"), &theirs).expect("rte_acl");
        let acl_build = t.elapsed().as_secs_f64() * 1e3;
        let pkts: Vec<(Fields, AclV4Key)> = (0..4096)
            .map(|i| {
                let r = &ours[rng.next() as usize % n];
                let dst = match r.dst {
                    Some(Net::V4 { addr, .. }) if i % 2 == 0 => addr | (i & 0xff),
                    _ => 0x0b00_0000 | i,
                };
                let src = match r.src {
                    Some(Net::V4 { addr, .. }) => addr | 7,
                    _ => 0xc0a8_0101,
                };
                let (proto, dport) = if i % 3 == 0 { (6, 443) } else { (17, 53) };
                let f = Fields {
                    v6: false,
                    src: src as u128,
                    dst: dst as u128,
                    src_port: 40000 + i as u16,
                    dst_port: dport,
                    proto,
                    vlan: None,
                    in_port: 0,
                    dscp: 0,
                };
                (f, AclV4Key::new(proto, src, dst, 40000 + i as u16, dport))
            })
            .collect();
        let keys: Vec<AclV4Key> = pkts.iter().map(|p| p.1).collect();
        let mut got = vec![0u32; keys.len()];
        acl.classify(&keys, &mut got);
        let mut matched = 0;
        for ((f, _), g) in pkts.iter().zip(&got) {
            let want = ours_c.classify(f).1.map_or(0, |i| i as u32 + 1);
            assert_eq!(*g, want, "{f:?}");
            matched += (want != 0) as usize;
        }
        let (mut o, mut one, mut bulk) = (vec![], vec![], vec![]);
        let mut out = [0u32; 64];
        for _ in 0..9 {
            let s = Instant::now();
            for (f, _) in &pkts {
                black_box(ours_c.classify(black_box(f)));
            }
            o.push(s.elapsed().as_nanos() as f64 / pkts.len() as f64);
            let s = Instant::now();
            for k in &keys {
                acl.classify(std::slice::from_ref(black_box(k)), &mut out[..1]);
            }
            one.push(s.elapsed().as_nanos() as f64 / keys.len() as f64);
            let s = Instant::now();
            for k in keys.chunks(32) {
                acl.classify(black_box(k), &mut out[..k.len()]);
            }
            bulk.push(s.elapsed().as_nanos() as f64 / keys.len() as f64);
        }
        println!(
            "{{\"bench\":\"classifier\",\"rules\":{n},\"matched_pct\":{},\"sluice_ns\":{:.1},\"rte_acl_ns\":{:.1},\"rte_acl_bulk32_ns\":{:.1},\"sluice_build_ms\":{ours_build:.1},\"rte_acl_build_ms\":{acl_build:.1}}}",
            matched * 100 / pkts.len(),
            median(o),
            median(one),
            median(bulk)
        );
    }
    let _ = eal.cleanup();
}
