//! The metrics the Prometheus exporter is given, kept for OTLP: each series' last counter
//! or gauge value and its histogram buckets (cumulative since start), turned into OTLP
//! metrics on the export period. Series not set for the idle time are forgotten, as the
//! Prometheus side forgets them.

use super::pb;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

type Labels = Vec<(&'static str, String)>;

enum Value {
    Counter(u64),
    Gauge(f64),
    Histogram { counts: Vec<u64>, sum: f64, count: u64 },
}

struct Series {
    value: Value,
    set_at: Instant,
}

/// Series by metric name, then labels.
pub struct Accumulator {
    series: BTreeMap<&'static str, BTreeMap<Labels, Series>>,
    help: BTreeMap<&'static str, &'static str>,
    buckets: BTreeMap<&'static str, Vec<f64>>,
    idle: Duration,
    start_ns: u64,
}

fn labels(l: &[(&'static str, &str)]) -> Labels {
    l.iter().map(|&(k, v)| (k, v.to_string())).collect()
}

fn attributes(l: &Labels) -> Vec<pb::KeyValue> {
    l.iter().map(|(k, v)| pb::kv(k, v.as_str())).collect()
}

impl Accumulator {
    /// `buckets`: the upper bounds of each histogram.
    pub fn new(buckets: &[(&'static str, &[f64])], idle: Duration) -> Accumulator {
        Accumulator {
            series: BTreeMap::new(),
            help: BTreeMap::new(),
            buckets: buckets.iter().map(|&(n, b)| (n, b.to_vec())).collect(),
            idle,
            start_ns: super::unix_ns(),
        }
    }

    pub fn describe(&mut self, name: &'static str, help: &'static str) {
        self.help.insert(name, help);
    }

    fn entry(&mut self, name: &'static str, l: &[(&'static str, &str)], fresh: impl FnOnce() -> Value) -> &mut Series {
        let s = self
            .series
            .entry(name)
            .or_default()
            .entry(labels(l))
            .or_insert_with(|| Series {
                value: fresh(),
                set_at: Instant::now(),
            });
        s.set_at = Instant::now();
        s
    }

    /// A cumulative counter (it never goes back).
    pub fn counter(&mut self, name: &'static str, l: &[(&'static str, &str)], v: u64) {
        let s = self.entry(name, l, || Value::Counter(v));
        if let Value::Counter(c) = &mut s.value {
            *c = (*c).max(v);
        }
    }

    pub fn gauge(&mut self, name: &'static str, l: &[(&'static str, &str)], v: f64) {
        self.entry(name, l, || Value::Gauge(v)).value = Value::Gauge(v);
    }

    /// `n` observations of `v`.
    pub fn observe(&mut self, name: &'static str, l: &[(&'static str, &str)], v: f64, n: u64) {
        let bounds = self.buckets.get(name).cloned().unwrap_or_default();
        let s = self.entry(name, l, || Value::Histogram {
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        });
        if let Value::Histogram { counts, sum, count } = &mut s.value {
            // A bucket holds values up to and including its bound; the last, the rest.
            let i = bounds.iter().position(|&b| v <= b).unwrap_or(bounds.len());
            counts[i] += n;
            *sum += v * n as f64;
            *count += n;
        }
    }

    /// Every live series as OTLP metrics, at `now_ns`; series idle too long are dropped.
    pub fn metrics(&mut self, now_ns: u64) -> Vec<pb::Metric> {
        let idle = self.idle;
        let mut out = Vec::new();
        for (name, series) in self.series.iter_mut() {
            // Histograms stay (their counts are cumulative); the rest expire.
            series.retain(|_, s| matches!(s.value, Value::Histogram { .. }) || s.set_at.elapsed() < idle);
            if series.is_empty() {
                continue;
            }
            let description = self.help.get(name).copied().unwrap_or_default().to_string();
            let first = series.values().next().map(|s| &s.value);
            let data = match first {
                Some(Value::Counter(_)) => pb::Data::Sum(pb::Sum {
                    data_points: series
                        .iter()
                        .filter_map(|(l, s)| match s.value {
                            Value::Counter(c) => Some(pb::NumberDataPoint {
                                attributes: attributes(l),
                                start_time_unix_nano: self.start_ns,
                                time_unix_nano: now_ns,
                                value: Some(pb::Number::AsInt(c.min(i64::MAX as u64) as i64)),
                            }),
                            _ => None,
                        })
                        .collect(),
                    aggregation_temporality: pb::CUMULATIVE,
                    is_monotonic: true,
                }),
                Some(Value::Gauge(_)) => pb::Data::Gauge(pb::Gauge {
                    data_points: series
                        .iter()
                        .filter_map(|(l, s)| match s.value {
                            Value::Gauge(g) => Some(pb::NumberDataPoint {
                                attributes: attributes(l),
                                start_time_unix_nano: 0,
                                time_unix_nano: now_ns,
                                value: Some(pb::Number::AsDouble(g)),
                            }),
                            _ => None,
                        })
                        .collect(),
                }),
                Some(Value::Histogram { .. }) => {
                    let bounds = self.buckets.get(name).cloned().unwrap_or_default();
                    pb::Data::Histogram(pb::Histogram {
                        data_points: series
                            .iter()
                            .filter_map(|(l, s)| match &s.value {
                                Value::Histogram { counts, sum, count } => Some(pb::HistogramDataPoint {
                                    attributes: attributes(l),
                                    start_time_unix_nano: self.start_ns,
                                    time_unix_nano: now_ns,
                                    count: *count,
                                    sum: Some(*sum),
                                    bucket_counts: counts.clone(),
                                    explicit_bounds: bounds.clone(),
                                }),
                                _ => None,
                            })
                            .collect(),
                        aggregation_temporality: pb::CUMULATIVE,
                    })
                }
                None => continue,
            };
            let unit = if name.ends_with("_seconds") {
                "s"
            } else if name.ends_with("_bytes") {
                "By"
            } else if name.ends_with("_ratio") {
                "1"
            } else {
                ""
            };
            out.push(pb::Metric {
                name: name.to_string(),
                description,
                unit: unit.to_string(),
                data: Some(data),
            });
        }
        self.series.retain(|_, s| !s.is_empty());
        out
    }
}
