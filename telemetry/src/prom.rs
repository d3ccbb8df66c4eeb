//! The Prometheus side: a `metrics-exporter-prometheus` recorder that the control thread
//! fills on its period with figures it has already merged (counters are cumulative and set
//! with `absolute`, gauges set, histograms fed with the period's observations), and that
//! the HTTP endpoint renders. Nothing here runs per packet.
//!
//! Counters get `_total` from the exporter's recommended naming; every histogram has fixed
//! buckets given at construction, so none is rendered as a summary.

use crate::otlp::{pb, Accumulator};
use metrics::{Key, KeyName, Label, Level, Metadata, Recorder, SharedString};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use metrics_util::MetricKindMask;
use std::sync::Mutex;
use std::time::Duration;

/// Labels of one series, each from a bounded, configured set.
pub type Labels<'a> = &'a [(&'static str, &'a str)];

static META: Metadata<'static> = Metadata::new("sluice", Level::INFO, None);

/// The recorder and its render handle.
pub struct Exporter {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// The same calls, kept for OTLP when it is on.
    otlp: Option<Mutex<Accumulator>>,
    histograms: Vec<(&'static str, Vec<f64>)>,
    idle: Duration,
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
        let mut b = PrometheusBuilder::new()
            .with_recommended_naming(true)
            .idle_timeout(MetricKindMask::COUNTER | MetricKindMask::GAUGE, Some(idle));
        for (name, buckets) in histograms {
            b = b
                .set_buckets_for_metric(Matcher::Full(name.to_string()), buckets)
                .map_err(|e| format!("histogram {name}: {e}"))?;
        }
        let recorder = b.build_recorder();
        let handle = recorder.handle();
        Ok(Exporter {
            recorder,
            handle,
            otlp: None,
            histograms: histograms.iter().map(|&(n, b)| (n, b.to_vec())).collect(),
            idle,
        })
    }

    /// Keeps every call for OTLP too (`otlp_metrics`). Call before the descriptions.
    pub fn keep_for_otlp(&mut self) {
        let h: Vec<(&'static str, &[f64])> = self.histograms.iter().map(|(n, b)| (*n, b.as_slice())).collect();
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

    pub fn describe_histogram(&self, name: &'static str, help: &'static str) {
        self.acc(|a| a.describe(name, help));
        self.recorder
            .describe_histogram(KeyName::from_const_str(name), None, SharedString::const_str(help));
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

    /// `count` observations of `value`.
    pub fn observe(&self, name: &'static str, labels: Labels, value: f64, count: usize) {
        if count > 0 {
            self.acc(|a| a.observe(name, labels, value, count as u64));
            self.recorder
                .register_histogram(&key(name, labels), &META)
                .record_many(value, count);
        }
    }

    /// Folds the period's observations into the histograms, so they never pile up however
    /// rarely the endpoint is scraped. Call after each period's updates.
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// A handle that renders from another thread.
    pub fn handle(&self) -> PrometheusHandle {
        self.handle.clone()
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
