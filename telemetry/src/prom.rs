//! The Prometheus side: a `metrics-exporter-prometheus` recorder that the control thread
//! fills on its period with figures it has already merged (counters are cumulative and set
//! with `absolute`, gauges set, histograms fed with the period's observations), and that
//! the HTTP endpoint renders. Nothing here runs per packet.
//!
//! Counters get `_total` from the exporter's recommended naming. Histograms have fixed
//! buckets given at construction and are kept here, not in the recorder: its
//! `record_many` stores each observation on its own (a push and a clock read apiece), and
//! the workers' latency histogram is fed one observation per packet, tens of millions a
//! second. Here an observation of any weight is one addition to its bucket.

use crate::otlp::{pb, Accumulator};
use metrics::{Key, KeyName, Label, Level, Metadata, Recorder, SharedString};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use metrics_util::MetricKindMask;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Labels of one series, each from a bounded, configured set.
pub type Labels<'a> = &'a [(&'static str, &'a str)];

static META: Metadata<'static> = Metadata::new("sluice", Level::INFO, None);

/// The recorder and its render handle.
pub struct Exporter {
    recorder: PrometheusRecorder,
    /// What the endpoint renders: the recorder's series and the histograms.
    renderer: Renderer,
    /// The same calls, kept for OTLP when it is on.
    otlp: Option<Mutex<Accumulator>>,
    idle: Duration,
}

/// One histogram series: observations per bucket (the last for those above every bound),
/// their sum and their number, all since start.
struct Counts {
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

/// A histogram family: its bounds, help text and series by labels.
struct Family {
    bounds: Vec<f64>,
    help: &'static str,
    series: BTreeMap<Vec<(&'static str, String)>, Counts>,
}

/// Renders the exposition from any thread: the recorder's counters and gauges, then the
/// histograms.
#[derive(Clone)]
pub struct Renderer {
    handle: PrometheusHandle,
    histograms: Arc<Mutex<BTreeMap<&'static str, Family>>>,
}

/// A label value as the exposition format quotes it.
fn escape(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// `{k="v",...,extra}` (nothing when there are no labels at all).
fn label_set(labels: &[(&'static str, String)], extra: Option<(&str, &str)>) -> String {
    let mut out = String::new();
    for (k, v) in labels.iter().map(|(k, v)| (*k, v.as_str())).chain(extra) {
        out.push(if out.is_empty() { '{' } else { ',' });
        out.push_str(k);
        out.push_str("=\"");
        escape(&mut out, v);
        out.push('"');
    }
    if !out.is_empty() {
        out.push('}');
    }
    out
}

impl Renderer {
    pub fn render(&self) -> String {
        let mut out = self.handle.render();
        let Ok(families) = self.histograms.lock() else {
            return out;
        };
        for (name, f) in families.iter().filter(|(_, f)| !f.series.is_empty()) {
            if !out.is_empty() && !out.ends_with("\n\n") {
                out.push('\n');
            }
            if !f.help.is_empty() {
                let _ = writeln!(
                    out,
                    "# HELP {name} {}",
                    f.help.replace('\\', "\\\\").replace('\n', "\\n")
                );
            }
            let _ = writeln!(out, "# TYPE {name} histogram");
            for (labels, c) in &f.series {
                let mut below = 0;
                for (i, n) in c.buckets.iter().enumerate() {
                    below += n;
                    let le = f.bounds.get(i).map_or_else(|| "+Inf".to_string(), |b| b.to_string());
                    let _ = writeln!(out, "{name}_bucket{} {below}", label_set(labels, Some(("le", &le))));
                }
                let _ = writeln!(out, "{name}_sum{} {}", label_set(labels, None), c.sum);
                let _ = writeln!(out, "{name}_count{} {}", label_set(labels, None), c.count);
            }
        }
        out
    }
}

fn key(name: &'static str, labels: Labels) -> Key {
    let labels: Vec<Label> = labels.iter().map(|&(k, v)| Label::new(k, v.to_string())).collect();
    Key::from_parts(name, labels)
}

impl Exporter {
    /// An exporter whose histograms `(name, bucket upper bounds)` render as Prometheus
    /// histograms with those buckets. Counters and gauges not set for `idle` disappear
    /// (histograms stay: their counts are cumulative).
    pub fn new(histograms: &[(&'static str, &[f64])], idle: Duration) -> Result<Exporter, String> {
        let recorder = PrometheusBuilder::new()
            .with_recommended_naming(true)
            .idle_timeout(MetricKindMask::COUNTER | MetricKindMask::GAUGE, Some(idle))
            .build_recorder();
        let mut families = BTreeMap::new();
        for &(name, bounds) in histograms {
            if bounds.is_empty() || bounds.windows(2).any(|w| w[0] >= w[1]) || bounds.iter().any(|b| !b.is_finite()) {
                return Err(format!("histogram {name}: bucket bounds must be finite and increasing"));
            }
            families.insert(
                name,
                Family {
                    bounds: bounds.to_vec(),
                    help: "",
                    series: BTreeMap::new(),
                },
            );
        }
        let renderer = Renderer {
            handle: recorder.handle(),
            histograms: Arc::new(Mutex::new(families)),
        };
        Ok(Exporter {
            recorder,
            renderer,
            otlp: None,
            idle,
        })
    }

    /// Keeps every call for OTLP too (`otlp_metrics`). Call before the descriptions.
    pub fn keep_for_otlp(&mut self) {
        // The same bounds as the exposition's histograms.
        let bounds: Vec<(&'static str, Vec<f64>)> = match self.renderer.histograms.lock() {
            Ok(h) => h.iter().map(|(n, f)| (*n, f.bounds.clone())).collect(),
            Err(_) => Vec::new(),
        };
        let h: Vec<(&'static str, &[f64])> = bounds.iter().map(|(n, b)| (*n, b.as_slice())).collect();
        self.otlp = Some(Mutex::new(Accumulator::new(&h, self.idle)));
    }

    fn acc(&self, f: impl FnOnce(&mut Accumulator)) {
        if let Some(a) = &self.otlp {
            if let Ok(mut a) = a.lock() {
                f(&mut a);
            }
        }
    }

    /// Every series as OTLP metrics, when kept.
    pub fn otlp_metrics(&self, now_ns: u64) -> Option<Vec<pb::Metric>> {
        let a = self.otlp.as_ref()?;
        a.lock().ok().map(|mut a| a.metrics(now_ns))
    }

    pub fn describe_counter(&self, name: &'static str, help: &'static str) {
        self.acc(|a| a.describe(name, help));
        self.recorder
            .describe_counter(KeyName::from_const_str(name), None, SharedString::const_str(help));
    }

    pub fn describe_gauge(&self, name: &'static str, help: &'static str) {
        self.acc(|a| a.describe(name, help));
        self.recorder
            .describe_gauge(KeyName::from_const_str(name), None, SharedString::const_str(help));
    }

    /// Describes a histogram given at construction (others are not kept).
    pub fn describe_histogram(&self, name: &'static str, help: &'static str) {
        self.acc(|a| a.describe(name, help));
        if let Ok(mut h) = self.renderer.histograms.lock() {
            if let Some(f) = h.get_mut(name) {
                f.help = help;
            }
        }
    }

    /// Sets a cumulative counter (it never goes back: a lower value is ignored).
    pub fn counter(&self, name: &'static str, labels: Labels, value: u64) {
        self.acc(|a| a.counter(name, labels, value));
        self.recorder
            .register_counter(&key(name, labels), &META)
            .absolute(value);
    }

    pub fn gauge(&self, name: &'static str, labels: Labels, value: f64) {
        self.acc(|a| a.gauge(name, labels, value));
        self.recorder.register_gauge(&key(name, labels), &META).set(value);
    }

    /// `count` observations of `value`, in a histogram given at construction (others are
    /// not kept). A value that is not a number is left out.
    pub fn observe(&self, name: &'static str, labels: Labels, value: f64, count: usize) {
        if count == 0 || value.is_nan() {
            return;
        }
        self.acc(|a| a.observe(name, labels, value, count as u64));
        let Ok(mut h) = self.renderer.histograms.lock() else {
            return;
        };
        let Some(f) = h.get_mut(name) else { return };
        // A bucket holds values up to and including its bound; the last, the rest.
        let i = f.bounds.iter().position(|&b| value <= b).unwrap_or(f.bounds.len());
        let slots = f.bounds.len() + 1;
        let key: Vec<(&'static str, String)> = labels.iter().map(|&(k, v)| (k, v.to_string())).collect();
        let c = f.series.entry(key).or_insert_with(|| Counts {
            buckets: vec![0; slots],
            sum: 0.0,
            count: 0,
        });
        c.buckets[i] += count as u64;
        c.sum += value * count as f64;
        c.count += count as u64;
    }

    /// The recorder's periodic housekeeping. Call after each period's updates.
    pub fn upkeep(&self) {
        self.renderer.handle.run_upkeep();
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        self.renderer.render()
    }

    /// A handle that renders from another thread.
    pub fn handle(&self) -> Renderer {
        self.renderer.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_histograms_with_buckets() {
        let e = Exporter::new(&[("sluice_rtt_seconds", &[0.001, 0.01, 0.1])], Duration::from_secs(60)).unwrap();
        e.describe_counter("sluice_port_rx_packets", "Packets received");
        e.describe_histogram("sluice_rtt_seconds", "Round-trip time");
        e.counter("sluice_port_rx_packets", &[("port", "lan")], 10);
        e.counter("sluice_port_rx_packets", &[("port", "lan")], 25);
        // Counters never go back.
        e.counter("sluice_port_rx_packets", &[("port", "lan")], 3);
        e.gauge("sluice_flows_active", &[], 7.0);
        e.observe("sluice_rtt_seconds", &[("path", "aws")], 0.005, 3);
        e.observe("sluice_rtt_seconds", &[("path", "aws")], 0.05, 1);
        e.upkeep();
        let text = e.render();
        assert!(
            text.contains("# HELP sluice_port_rx_packets_total Packets received"),
            "{text}"
        );
        assert!(text.contains("# TYPE sluice_port_rx_packets_total counter"), "{text}");
        assert!(text.contains("sluice_port_rx_packets_total{port=\"lan\"} 25"), "{text}");
        assert!(text.contains("sluice_flows_active 7"), "{text}");
        assert!(text.contains("# TYPE sluice_rtt_seconds histogram"), "{text}");
        assert!(
            text.contains("sluice_rtt_seconds_bucket{path=\"aws\",le=\"0.001\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("sluice_rtt_seconds_bucket{path=\"aws\",le=\"0.01\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("sluice_rtt_seconds_bucket{path=\"aws\",le=\"0.1\"} 4"),
            "{text}"
        );
        assert!(text.contains("sluice_rtt_seconds_count{path=\"aws\"} 4"), "{text}");
        // Histograms stay cumulative across periods.
        e.observe("sluice_rtt_seconds", &[("path", "aws")], 0.0005, 2);
        e.upkeep();
        let text = e.render();
        assert!(text.contains("sluice_rtt_seconds_count{path=\"aws\"} 6"), "{text}");
        assert!(
            text.contains("sluice_rtt_seconds_bucket{path=\"aws\",le=\"0.001\"} 2"),
            "{text}"
        );
    }

    #[test]
    fn a_weighted_observation_is_one_addition() {
        let e = Exporter::new(
            &[("sluice_worker_latency_seconds", &[1e-6, 1e-5])],
            Duration::from_secs(60),
        )
        .unwrap();
        e.describe_histogram("sluice_worker_latency_seconds", "Time to \\ the driver\nper packet");
        e.counter("sluice_worker_polls", &[("worker", "0")], 9);
        // Ten thousand million packets in one period: what the recorder's own histograms
        // would have stored one by one.
        e.observe(
            "sluice_worker_latency_seconds",
            &[("worker", "0")],
            5e-6,
            10_000_000_000,
        );
        e.observe("sluice_worker_latency_seconds", &[("worker", "0")], 2e-5, 3);
        e.observe("sluice_worker_latency_seconds", &[("worker", "a\"b\\c")], 1e-6, 2);
        // Not kept: a name given at construction only, and a value that is not a number.
        e.observe("sluice_other_seconds", &[], 1.0, 1);
        e.observe("sluice_worker_latency_seconds", &[("worker", "0")], f64::NAN, 5);
        e.upkeep();
        let text = e.render();
        let lines: Vec<&str> = text.lines().collect();
        let at = |l: &str| {
            lines
                .iter()
                .position(|x| *x == l)
                .unwrap_or_else(|| panic!("no {l:?} in\n{text}"))
        };
        let help = at("# HELP sluice_worker_latency_seconds Time to \\\\ the driver\\nper packet");
        let ty = at("# TYPE sluice_worker_latency_seconds histogram");
        let w0 = [
            "sluice_worker_latency_seconds_bucket{worker=\"0\",le=\"0.000001\"} 0",
            "sluice_worker_latency_seconds_bucket{worker=\"0\",le=\"0.00001\"} 10000000000",
            "sluice_worker_latency_seconds_bucket{worker=\"0\",le=\"+Inf\"} 10000000003",
            "sluice_worker_latency_seconds_count{worker=\"0\"} 10000000003",
        ];
        let first = at(w0[0]);
        assert!(help + 1 == ty && ty < first, "{text}");
        for (k, l) in w0[..3].iter().enumerate() {
            assert_eq!(at(l), first + k, "{text}");
        }
        let sum: f64 = lines[first + 3]
            .strip_prefix("sluice_worker_latency_seconds_sum{worker=\"0\"} ")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no sum after the buckets in\n{text}"));
        assert!((sum - 50_000.000_06).abs() < 1e-6, "{text}");
        assert_eq!(at(w0[3]), first + 4, "{text}");
        assert!(
            text.contains("sluice_worker_latency_seconds_bucket{worker=\"a\\\"b\\\\c\",le=\"0.000001\"} 2"),
            "{text}"
        );
        assert!(!text.contains("sluice_other_seconds"), "{text}");
        assert!(text.contains("sluice_worker_polls_total{worker=\"0\"} 9"), "{text}");
        // Bounds are checked when the exporter is made.
        assert!(Exporter::new(&[("h", &[0.1, 0.1])], Duration::from_secs(1)).is_err());
        assert!(Exporter::new(&[("h", &[])], Duration::from_secs(1)).is_err());
    }

    #[test]
    fn histograms_without_labels_and_between_other_families() {
        let e = Exporter::new(&[("a_seconds", &[0.5]), ("b_seconds", &[0.5])], Duration::from_secs(60)).unwrap();
        e.gauge("sluice_flows_active", &[], 7.0);
        e.observe("a_seconds", &[], 0.25, 4);
        e.observe("b_seconds", &[], 1.0, 1);
        let text = e.render();
        let expected = "# TYPE a_seconds histogram\n\
                        a_seconds_bucket{le=\"0.5\"} 4\n\
                        a_seconds_bucket{le=\"+Inf\"} 4\n\
                        a_seconds_sum 1\n\
                        a_seconds_count 4\n\
                        \n\
                        # TYPE b_seconds histogram\n\
                        b_seconds_bucket{le=\"0.5\"} 0\n\
                        b_seconds_bucket{le=\"+Inf\"} 1\n\
                        b_seconds_sum 1\n\
                        b_seconds_count 1\n";
        assert!(text.ends_with(expected), "{text}");
        // Families are separated by one blank line, whoever wrote them.
        assert!(text.contains("sluice_flows_active 7\n\n# TYPE a_seconds"), "{text}");
    }

    #[test]
    fn series_not_set_for_a_while_disappear() {
        let e = Exporter::new(&[], Duration::from_millis(200)).unwrap();
        e.gauge("sluice_top_flow_bytes", &[("rank", "1"), ("src", "10.0.0.1")], 5.0);
        e.gauge("sluice_flows_active", &[], 1.0);
        assert!(e.render().contains("src=\"10.0.0.1\""));
        std::thread::sleep(Duration::from_millis(150));
        e.gauge("sluice_flows_active", &[], 2.0);
        std::thread::sleep(Duration::from_millis(150));
        let text = e.render();
        assert!(!text.contains("10.0.0.1"), "{text}");
        assert!(text.contains("sluice_flows_active 2"), "{text}");
    }
}
