//! Per-worker processing latency, in TSC cycles, kept the way HdrHistogram keeps it with 2
//! significant digits: values below 256 have a slot each; above, every power of two is cut
//! into 128 equal slots, so a slot is never wider than 1/128 of its values (under 1 %).
//! The slots are a fixed array of counters in each worker's block (`stats`): recording is
//! a leading-zero count, a shift and one store, with nothing allocated. The control thread
//! reads them, takes differences and turns slots into percentiles or Prometheus buckets.
//!
//! What a sample is: the time from a burst's arrival (the start of the poll that received
//! it: the rx stage, see `pipeline::Stage`) to the moment its packets were handed to the
//! driver, counted once per packet sent. Time spent waiting in a rate-limited port's
//! priority queues is not processing time and is not sampled (the queues' depths are
//! exported instead).

/// Sub-slots per power of two above the first 256 values.
const HALF: u64 = 128;
/// The largest value kept exactly enough: 2^32 cycles (over a second at any TSC rate);
/// larger values go to the last slot.
const MAX_BITS: u32 = 32;
/// Slots in a histogram.
pub const SLOTS: usize = ((MAX_BITS - 7 + 1) as u64 * HALF) as usize;

/// The slot of `cycles`.
#[inline(always)]
pub fn slot(cycles: u64) -> usize {
    let v = cycles.min((1u64 << MAX_BITS) - 1);
    let msb = 63 - (v | 255).leading_zeros();
    let shift = msb - 7;
    (shift as u64 * HALF + (v >> shift)) as usize
}

/// The smallest value of slot `i`.
pub fn lowest(i: usize) -> u64 {
    let i = i as u64;
    if i < 2 * HALF {
        return i;
    }
    let shift = i / HALF - 1;
    (i - shift * HALF) << shift
}

/// The middle of slot `i`, the value it stands for.
pub fn middle(i: usize) -> f64 {
    let lo = lowest(i);
    let next = if i + 1 < SLOTS { lowest(i + 1) } else { lo + 1 };
    (lo + next) as f64 / 2.0
}

/// The value at quantile `q` (0..=1) of the counts, as its slot's middle; `None` when empty.
pub fn quantile(counts: &[u64], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0u64;
    for (i, &n) in counts.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return Some(middle(i));
        }
    }
    None
}

/// The largest slot holding a sample, as its slot's highest value.
pub fn max(counts: &[u64]) -> Option<f64> {
    let i = counts.iter().rposition(|&n| n > 0)?;
    Some(if i + 1 < SLOTS { lowest(i + 1) - 1 } else { lowest(i) } as f64)
}

/// Element-wise `a - b` (a counter that went back counts as 0).
pub fn minus(a: &[u64], b: &[u64]) -> Vec<u64> {
    a.iter()
        .enumerate()
        .map(|(i, &x)| x.saturating_sub(b.get(i).copied().unwrap_or(0)))
        .collect()
}

/// min, p50, p90, p99, p99.9 and max in microseconds, and the sample count, as JSON.
pub fn summary_json(counts: &[u64], tsc_hz: u64) -> serde_json::Value {
    let us = |c: Option<f64>| c.map(|c| (c * 1e6 / tsc_hz.max(1) as f64 * 100.0).round() / 100.0);
    let min = counts.iter().position(|&n| n > 0).map(|i| lowest(i) as f64);
    serde_json::json!({
        "samples": counts.iter().sum::<u64>(),
        "min_us": us(min),
        "p50_us": us(quantile(counts, 0.5)),
        "p90_us": us(quantile(counts, 0.9)),
        "p99_us": us(quantile(counts, 0.99)),
        "p999_us": us(quantile(counts, 0.999)),
        "max_us": us(max(counts)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_contiguous_and_fine() {
        assert_eq!(slot(0), 0);
        assert_eq!(slot(255), 255);
        assert_eq!(slot(256), 256);
        assert_eq!(slot(257), 256);
        assert_eq!(slot(258), 257);
        assert_eq!(slot(u64::MAX), SLOTS - 1);
        assert_eq!(slot((1 << 32) - 1), SLOTS - 1);
        // Every slot's lowest value maps back to it, and slots never skip.
        for i in 0..SLOTS {
            assert_eq!(slot(lowest(i)), i, "slot {i}");
            if i + 1 < SLOTS {
                let hi = lowest(i + 1) - 1;
                assert_eq!(slot(hi), i, "slot {i}'s top {hi}");
                // 2 significant digits: a slot is at most 1/128 of its values wide.
                assert!((hi - lowest(i)) as f64 <= lowest(i) as f64 / 128.0 + 1.0, "slot {i}");
            }
        }
    }

    #[test]
    fn quantiles_of_known_samples() {
        let mut c = vec![0u64; SLOTS];
        // 90 samples of 1000 cycles, 9 of 10 000, 1 of 1 000 000.
        c[slot(1000)] += 90;
        c[slot(10_000)] += 9;
        c[slot(1_000_000)] += 1;
        let near = |v: Option<f64>, want: f64| {
            let v = v.unwrap();
            assert!((v - want).abs() <= want / 100.0, "{v} vs {want}");
        };
        near(quantile(&c, 0.5), 1000.0);
        near(quantile(&c, 0.9), 1000.0);
        near(quantile(&c, 0.95), 10_000.0);
        near(quantile(&c, 0.999), 1_000_000.0);
        near(max(&c), 1_000_000.0);
        assert_eq!(quantile(&vec![0; SLOTS], 0.5), None);
        let s = summary_json(&c, 1_000_000_000);
        assert_eq!(s["samples"], 100);
        assert_eq!(s["p50_us"], 1.0);
        assert_eq!(s["min_us"], 1.0);
        let d = minus(&c, &c);
        assert!(d.iter().all(|&n| n == 0));
    }
}
