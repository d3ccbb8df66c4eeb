//! What the DPDK-side benchmarks share: a deterministic generator, medians, and EAL
//! started once for the process (`--no-huge`, main lcore on core 1, a unique prefix).
#![allow(dead_code)]

use dataplane::dpdk::Eal;

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
