//! What a run found: per-stream and total figures, the human table and the JSON object
//! (which carries every figure the table shows).

use hdrhistogram::Histogram;
use serde::Serialize;
use std::fmt::Write as _;

/// Latency histograms: 1 ns to 60 s, three significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("fixed, valid histogram bounds")
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Latency {
    pub samples: u64,
    pub min_ns: u64,
    pub mean_ns: f64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub p9999_ns: u64,
    pub max_ns: u64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            samples: h.len(),
            min_ns: h.min(),
            mean_ns: (h.mean() * 10.0).round() / 10.0,
            p50_ns: h.value_at_quantile(0.50),
            p90_ns: h.value_at_quantile(0.90),
            p99_ns: h.value_at_quantile(0.99),
            p999_ns: h.value_at_quantile(0.999),
            p9999_ns: h.value_at_quantile(0.9999),
            max_ns: h.max(),
        }
    }
}

/// Received frame sizes (with FCS) in RFC 2819's buckets.
pub const SIZE_BUCKETS: [(&str, u32); 7] = [
    ("64", 64),
    ("65-127", 127),
    ("128-255", 255),
    ("256-511", 511),
    ("512-1023", 1023),
    ("1024-1518", 1518),
    ("1519+", u32::MAX),
];

#[inline(always)]
pub fn size_bucket(wire_len: u32) -> usize {
    match wire_len {
        0..=64 => 0,
        65..=127 => 1,
        128..=255 => 2,
        256..=511 => 3,
        512..=1023 => 4,
        1024..=1518 => 5,
        _ => 6,
    }
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct StreamReport {
    pub name: String,
    /// The rate asked for, in packets per second (null: as fast as possible).
    pub asked_pps: Option<f64>,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub tx_pps: f64,
    /// Frame bits (with FCS) per second, and with preamble and gap (layer 1).
    pub tx_gbps: f64,
    pub tx_gbps_l1: f64,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub rx_pps: f64,
    pub rx_gbps: f64,
    /// Sent and never received (duplicates do not make up for losses).
    pub lost: u64,
    pub loss_ratio: f64,
    pub reordered: u64,
    pub duplicates: u64,
    /// Arrived more than the tracking window behind: neither judged reordered nor duplicate.
    pub too_late: u64,
    pub latency: Latency,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct PortReport {
    pub index: usize,
    pub device: String,
    pub mac: String,
    pub link_mbps: u32,
    pub ipackets: u64,
    pub opackets: u64,
    pub ibytes: u64,
    pub obytes: u64,
    pub imissed: u64,
    pub ierrors: u64,
    pub oerrors: u64,
    pub rx_nombuf: u64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RunReport {
    pub tool: &'static str,
    pub duration_s: f64,
    /// Whether anything received was analysed (false with `--rx-lcores none`).
    pub analysed: bool,
    pub tx_lcores: Vec<u32>,
    pub rx_lcores: Vec<u32>,
    pub streams: Vec<StreamReport>,
    pub total: StreamReport,
    /// Received frames without a signature of this run.
    pub foreign_packets: u64,
    pub rx_sizes: Vec<(String, u64)>,
    pub ports: Vec<PortReport>,
    /// Mbufs taken from the pool during the run and not returned (0 unless a driver still
    /// holds sent packets).
    pub mbufs_in_use_delta: i64,
}

fn fmt_ns(ns: u64) -> String {
    match ns {
        n if n >= 10_000_000 => format!("{:.1}ms", n as f64 / 1e6),
        n if n >= 10_000 => format!("{:.1}us", n as f64 / 1e3),
        n => format!("{n}ns"),
    }
}

impl RunReport {
    /// Fills `total` from the streams (latency merged by the caller).
    pub fn human(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "sluice-pktgen: {:.3} s, TX lcores {:?}, RX lcores {:?}",
            self.duration_s, self.tx_lcores, self.rx_lcores
        );
        if !self.analysed {
            let _ = writeln!(o, "(no RX lcores: nothing was received or analysed)");
        }
        let _ = writeln!(
            o,
            "{:<12} {:>12} {:>10} {:>8} {:>12} {:>10} {:>10} {:>9} {:>7} {:>6} {:>7}",
            "stream", "tx pkts", "tx Mpps", "tx Gbps", "rx pkts", "rx Mpps", "lost", "loss %", "reord", "dup", "late"
        );
        for s in self.streams.iter().chain(std::iter::once(&self.total)) {
            let _ = writeln!(
                o,
                "{:<12} {:>12} {:>10.4} {:>8.3} {:>12} {:>10.4} {:>10} {:>9.4} {:>7} {:>6} {:>7}",
                s.name,
                s.tx_packets,
                s.tx_pps / 1e6,
                s.tx_gbps,
                s.rx_packets,
                s.rx_pps / 1e6,
                s.lost,
                s.loss_ratio * 100.0,
                s.reordered,
                s.duplicates,
                s.too_late
            );
        }
        let _ = writeln!(
            o,
            "\n{:<12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10}",
            "latency", "min", "mean", "p50", "p90", "p99", "p99.9", "p99.99", "max", "samples"
        );
        for s in self.streams.iter().chain(std::iter::once(&self.total)) {
            let l = &s.latency;
            let _ = writeln!(
                o,
                "{:<12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10}",
                s.name,
                fmt_ns(l.min_ns),
                fmt_ns(l.mean_ns as u64),
                fmt_ns(l.p50_ns),
                fmt_ns(l.p90_ns),
                fmt_ns(l.p99_ns),
                fmt_ns(l.p999_ns),
                fmt_ns(l.p9999_ns),
                fmt_ns(l.max_ns),
                l.samples
            );
        }
        let _ = write!(o, "\nrx sizes:");
        for (b, n) in &self.rx_sizes {
            let _ = write!(o, " {b}: {n}");
        }
        let _ = writeln!(
            o,
            "; foreign packets: {}; mbufs not returned: {}",
            self.foreign_packets, self.mbufs_in_use_delta
        );
        for p in &self.ports {
            let _ = writeln!(
                o,
                "port {} {} ({}, {} Mbit/s): rx {} pkts {} B, tx {} pkts {} B, missed {}, rx errors {}, tx errors {}, no mbuf {}",
                p.index,
                p.device,
                p.mac,
                p.link_mbps,
                p.ipackets,
                p.ibytes,
                p.opackets,
                p.obytes,
                p.imissed,
                p.ierrors,
                p.oerrors,
                p.rx_nombuf
            );
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_summary_is_ordered() {
        let mut h = new_histogram();
        for v in 1..=10_000u64 {
            h.record(v * 100).unwrap();
        }
        let l = Latency::of(&h);
        assert_eq!(l.samples, 10_000);
        assert!(l.min_ns <= l.p50_ns && l.p50_ns <= l.p90_ns && l.p90_ns <= l.p99_ns);
        assert!(l.p99_ns <= l.p999_ns && l.p999_ns <= l.p9999_ns && l.p9999_ns <= l.max_ns);
        assert!((l.p50_ns as f64 - 500_000.0).abs() < 1000.0);
        assert_eq!(Latency::of(&new_histogram()), Latency::default());
    }

    #[test]
    fn buckets() {
        assert_eq!(size_bucket(64), 0);
        assert_eq!(size_bucket(570), 4);
        assert_eq!(size_bucket(1518), 5);
        assert_eq!(size_bucket(9000), 6);
    }
}
