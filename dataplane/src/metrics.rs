//! The control thread's telemetry period: every `telemetry.interval_ms` it reads the
//! workers' counter blocks, the ports' driver counters and the control plane, and sets
//! the Prometheus series from them. Workers never see any of it: they only bump their
//! own blocks (`stats`), which this reads with relaxed loads.
//!
//! Names follow node_exporter's style: prefix `sluice_`, base units (bytes, seconds,
//! ratios), `_total` on counters (added by the exporter), rx and tx as separate metrics,
//! `_info` series for metadata. Labels come only from bounded sets: configured ports,
//! their queues, workers, classes, priorities, paths (with their cloud and region),
//! groups, pools, stages and drop reasons. The one exception is opt-in: the
//! `telemetry.top_flows` largest flows (at most 20), whose series expire three periods
//! after a flow leaves the list. [`series_bound`] is the most series the endpoint can
//! show, whatever the traffic.

use crate::dpdk::PortStats;
use crate::flow::{Flow, TopFlows};
use crate::latency;
use crate::pipeline::{DropReason, Stage};
use crate::slowpath::SlowPath;
use crate::stats::WorkerSnapshot;
use control::config::Telemetry;
use log::{info, warn};
use qos::Priority;
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use telemetry::otlp::{pb, Otlp, OtlpConfig, OtlpSender, Signal};
use telemetry::{Endpoint, Exporter};

/// Round-trip time buckets, in seconds: 100 µs to 1 s.
const RTT_BUCKETS: [f64; 13] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];
/// Jitter (the change of RTT between consecutive answered rounds) buckets, in seconds.
const JITTER_BUCKETS: [f64; 12] = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1,
];

/// Processing latency buckets (arrival to the driver), in seconds: 1 µs to 10 ms.
const LATENCY_BUCKETS: [f64; 12] = [
    0.000001, 0.0000025, 0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.01,
];

/// Per-queue xstats that every driver reporting queue counters names the same way.
const QUEUE_XSTATS: [(&str, &str, &str); 5] = [
    ("rx", "packets", "sluice_port_queue_rx_packets"),
    ("rx", "bytes", "sluice_port_queue_rx_bytes"),
    ("rx", "errors", "sluice_port_queue_rx_errors"),
    ("tx", "packets", "sluice_port_queue_tx_packets"),
    ("tx", "bytes", "sluice_port_queue_tx_bytes"),
];

/// Counter names and help (the exporter adds `_total`).
const COUNTERS: &[(&str, &str)] = &[
    ("sluice_port_rx_packets", "Packets the port's driver received"),
    ("sluice_port_tx_packets", "Packets the port's driver sent"),
    ("sluice_port_rx_bytes", "Bytes the port's driver received"),
    ("sluice_port_tx_bytes", "Bytes the port's driver sent"),
    ("sluice_port_rx_errors", "Erroneous packets the port received"),
    ("sluice_port_tx_errors", "Packets the port failed to send"),
    (
        "sluice_port_rx_missed",
        "Packets the NIC dropped because its RX queues were full",
    ),
    ("sluice_port_rx_nombuf", "RX mbuf allocation failures"),
    (
        "sluice_port_queue_rx_packets",
        "Packets received on one RX queue (driver xstats)",
    ),
    (
        "sluice_port_queue_rx_bytes",
        "Bytes received on one RX queue (driver xstats)",
    ),
    ("sluice_port_queue_rx_errors", "Errors on one RX queue (driver xstats)"),
    (
        "sluice_port_queue_tx_packets",
        "Packets sent on one TX queue (driver xstats)",
    ),
    (
        "sluice_port_queue_tx_bytes",
        "Bytes sent on one TX queue (driver xstats)",
    ),
    ("sluice_worker_rx_packets", "Packets a worker took from a port"),
    ("sluice_worker_tx_packets", "Packets a worker handed to a port's driver"),
    ("sluice_worker_rx_bytes", "Bytes a worker took from a port"),
    ("sluice_worker_tx_bytes", "Bytes a worker handed to a port's driver"),
    ("sluice_worker_polls", "Iterations of a worker's poll loop"),
    (
        "sluice_worker_busy_polls",
        "Poll loop iterations in which packets arrived",
    ),
    ("sluice_drops", "Packets dropped, by the stage and reason"),
    ("sluice_stage_packets", "Packets through a fast-path stage"),
    ("sluice_stage_cycles", "TSC cycles spent in a fast-path stage (each burst timed whole, from the poll that received it to the end of tx; the split between the stages measured on one burst in 256)"),
    (
        "sluice_class_conform_packets",
        "Packets of a class its meter found conforming (green)",
    ),
    (
        "sluice_class_exceed_packets",
        "Packets of a class its meter found exceeding (yellow)",
    ),
    (
        "sluice_class_violate_packets",
        "Packets of a class its meter found violating (red)",
    ),
    (
        "sluice_class_conform_bytes",
        "Bytes of a class its meter found conforming (green)",
    ),
    (
        "sluice_class_exceed_bytes",
        "Bytes of a class its meter found exceeding (yellow)",
    ),
    (
        "sluice_class_violate_bytes",
        "Bytes of a class its meter found violating (red)",
    ),
    (
        "sluice_egress_queue_enqueued_packets",
        "Packets queued on a rate-limited port, by priority",
    ),
    (
        "sluice_egress_queue_dropped_packets",
        "Packets a full egress queue dropped, by priority",
    ),
    (
        "sluice_egress_queue_ce_marked_packets",
        "Packets CE-marked above the egress queue's ECN threshold",
    ),
    ("sluice_flows_created", "Flows created"),
    ("sluice_flows_expired", "Flows ended by their idle timeout"),
    ("sluice_flows_evicted", "Flows evicted because the table was full"),
    (
        "sluice_flow_records_lost",
        "Flow records dropped because the control thread's ring was full",
    ),
    (
        "sluice_control_packets",
        "Packets the workers handed to the control thread",
    ),
    (
        "sluice_control_sent_packets",
        "Frames the control thread sent (answers, probes, held packets)",
    ),
    ("sluice_path_probes_sent", "Probe rounds sent on a path"),
    ("sluice_path_probes_answered", "Probe rounds answered on a path"),
    ("sluice_path_probes_missed", "Probe rounds that timed out on a path"),
    (
        "sluice_path_failovers",
        "Times a path stopped being up (to degraded or down) and its flows moved",
    ),
    ("sluice_reloads", "Configuration reloads that took effect"),
    (
        "sluice_reloads_refused",
        "Configuration reloads refused (the running one stayed)",
    ),
    ("sluice_link_changes", "Port link state changes seen"),
    ("sluice_telemetry_scrapes", "Scrapes of this endpoint"),
    (
        "sluice_telemetry_exported",
        "Items a telemetry sink sent: flow records (IPFIX, OTLP logs), spans, metric points",
    ),
    (
        "sluice_telemetry_export_dropped",
        "Items a telemetry sink dropped: its queue was full or the collector could not be reached",
    ),
];

/// Gauge names and help.
const GAUGES: &[(&str, &str)] = &[
    ("sluice_build_info", "Build and DPDK version (always 1)"),
    (
        "sluice_port_info",
        "A port's device, driver, MAC and NUMA node (always 1)",
    ),
    ("sluice_port_up", "1 if the port's link is up"),
    ("sluice_port_speed_bytes", "The port's link speed in bytes per second"),
    ("sluice_worker_info", "A worker's lcore (always 1)"),
    (
        "sluice_worker_busy_ratio",
        "Share of a worker's poll loop iterations that found packets, over the last period",
    ),
    (
        "sluice_stage_cycles_per_packet",
        "TSC cycles per packet in a fast-path stage, over the last period",
    ),
    (
        "sluice_egress_queue_depth_packets",
        "Packets waiting in a rate-limited port's queue, by priority",
    ),
    ("sluice_flows_active", "Flows in the flow tables"),
    ("sluice_flow_table_capacity_flows", "Flows the tables hold in all"),
    ("sluice_mempool_in_use_mbufs", "Mbufs taken from a pool"),
    ("sluice_mempool_capacity_mbufs", "Mbufs a pool holds"),
    ("sluice_held_packets", "Packets waiting for a next hop to be resolved"),
    (
        "sluice_path_state",
        "A path's state: 0 down, 1 up, 2 degraded, 3 unresolved, 4 link down, 5 drained",
    ),
    ("sluice_path_eligible", "1 if new flows may be given to the path"),
    (
        "sluice_path_loss_ratio",
        "Share of the path's probe rounds in the window that were not answered",
    ),
    ("sluice_path_rtt_ewma_seconds", "The path's smoothed round-trip time"),
    (
        "sluice_path_new_flow_share_ratio",
        "The path's share of its group's new flows",
    ),
    (
        "sluice_group_eligible_paths",
        "Paths of a group that may take new flows",
    ),
    (
        "sluice_snapshot_generation",
        "Generation of the forwarding tables the control thread published",
    ),
    (
        "sluice_top_flow_bytes",
        "Bytes of one of the largest live flows (telemetry.top_flows)",
    ),
    (
        "sluice_top_flows_coverage_ratio",
        "Share of the live flows' bytes that the exported top flows hold",
    ),
];

const HISTOGRAMS: &[(&str, &str)] = &[
    (
        "sluice_path_rtt_seconds",
        "Round-trip time of each answered probe round",
    ),
    (
        "sluice_path_jitter_seconds",
        "Change of round-trip time between consecutive answered rounds",
    ),
    (
        "sluice_worker_latency_seconds",
        "Time from the start of the poll that received a burst to its packets' hand-over to the driver, per packet",
    ),
];

/// A port as telemetry sees it.
pub struct PortView<'a> {
    pub name: &'a str,
    pub device: &'a str,
    pub driver: &'a str,
    pub mac: String,
    pub node: Option<u32>,
    pub rx_queues: u16,
    pub tx_queues: u16,
    pub stats: PortStats,
    pub xstats: Vec<(String, u64)>,
    pub link_up: bool,
    pub speed_mbps: u32,
}

/// Everything one period reads besides the slow path.
pub struct View<'a> {
    pub ports: Vec<PortView<'a>>,
    pub workers: Vec<WorkerSnapshot>,
    /// (name, in use, capacity) of each mempool.
    pub pools: Vec<(String, u32, u32)>,
    pub flow_capacity: u64,
    pub tsc_hz: u64,
}

/// The most series the endpoint shows for a configuration of `ports` ports with `queues`
/// queues each at most, `workers`, `classes`, `paths`, `groups`, `pools` mempools and
/// `top` top flows, whatever the traffic:
///
/// ```text
/// 43 + 4 T + P (27 + 5 Q) + W (37 + 4 P) + 6 C + 40 N + G + 2 pools
/// ```
///
/// Fixed: build info, 19 drop reasons, 8 control-plane and reload series, 6 flow-table
/// series, the top flows' coverage, exported and dropped for 4 sink signals. Per port:
/// info, 8 driver counters, link up and speed, 5 queue xstats per queue, 4 priorities x 4
/// egress-queue series. Per worker: info, rx/tx packets/bytes per port, polls, busy polls,
/// busy ratio, 6 stages x 3, the latency histogram (12 buckets, +Inf, sum and count). Per
/// class: 3 colours x packets and bytes. Per path: 5 gauges, 4 counters, and the RTT (13
/// buckets) and jitter (12 buckets) histograms with +Inf, sum and count. The top flows are
/// set at most once a second and a flow's series expires 3 s after it leaves the list, so
/// at most 4 lists' worth are shown at once.
#[allow(clippy::too_many_arguments)]
pub fn series_bound(
    ports: usize,
    queues: usize,
    workers: usize,
    classes: usize,
    paths: usize,
    groups: usize,
    pools: usize,
    top: usize,
) -> usize {
    let hist = |buckets: usize| buckets + 3; // the buckets, +Inf, _sum, _count
    let fixed = 1 + DropReason::COUNT + 8 + 6 + 1 + EXPORT_SERIES;
    let per_port = 1 + 8 + 2 + QUEUE_XSTATS.len() * queues + Priority::COUNT * 4;
    let per_worker = 1 + 4 * ports + 3 + Stage::COUNT * 3 + hist(LATENCY_BUCKETS.len());
    let per_path = 5 + 4 + hist(RTT_BUCKETS.len()) + hist(JITTER_BUCKETS.len());
    fixed
        + TOP_LISTS_SHOWN * top
        + ports * per_port
        + workers * per_worker
        + classes * 6
        + paths * per_path
        + groups
        + pools * 2
}

/// Exported and dropped, for each (sink, signal): (ipfix, flows), (otlp, metrics),
/// (otlp, spans), (otlp, logs).
const EXPORT_SERIES: usize = 2 * 4;

/// Top-flow lists whose series can be shown at once: one a second, each kept 3 s.
const TOP_LISTS_SHOWN: usize = 4;
/// How often the top flows are set, and how long series not set again are kept.
const TOP_EVERY: Duration = Duration::from_secs(1);
const SERIES_IDLE: Duration = Duration::from_secs(3);

/// Cycles per packet of one stage between two snapshots.
fn per_packet(cycles: u64, packets: u64) -> f64 {
    if packets == 0 {
        0.0
    } else {
        cycles as f64 / packets as f64
    }
}

fn state_code(state: &str) -> f64 {
    match state {
        "down" => 0.0,
        "up" => 1.0,
        "degraded" => 2.0,
        "unresolved" => 3.0,
        "link-down" => 4.0,
        _ => 5.0,
    }
}

/// The exporter, its endpoint and what the period before left behind.
pub struct Metrics {
    exp: Exporter,
    endpoint: Option<Endpoint>,
    every: Duration,
    next: Instant,
    top: usize,
    /// When the top flows were last set.
    top_at: Option<Instant>,
    prev: Vec<WorkerSnapshot>,
    /// The last RTT (ns) of each path by name, for jitter.
    last_rtt: HashMap<String, u64>,
    dpdk_version: String,
    otlp: Option<OtlpExport>,
}

/// The OTLP side: the exporter thread, when metrics go next, and which plane events it
/// has turned into spans.
struct OtlpExport {
    otlp: Otlp,
    every: Duration,
    next: Instant,
    events_seen: u64,
    ids: u64,
    /// Answered probe rounds seen, by path, for sampling them as spans.
    probes_seen: HashMap<String, u64>,
}

/// One answered probe round in this many (from each path's first) becomes a `path.probe` span.
const PROBE_SPAN_EVERY: u64 = 100;

impl OtlpExport {
    /// A new id: splitmix64 over a seed from the clock and pid (unique enough for spans).
    fn id(&mut self) -> u64 {
        self.ids = self.ids.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.ids;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Queues a span of its own trace, from `start` to `end` (Unix ns).
    fn span(&mut self, name: &str, (start, end): (u64, u64), ok: bool, message: String, attributes: Vec<pb::KeyValue>) {
        let trace_id = [self.id().to_be_bytes(), self.id().to_be_bytes()].concat();
        let span_id = self.id().to_be_bytes().to_vec();
        self.otlp.sender().span(pb::Span {
            trace_id,
            span_id,
            name: name.to_string(),
            kind: pb::SPAN_KIND_INTERNAL,
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            attributes,
            status: Some(pb::Status {
                message,
                code: if ok { pb::STATUS_OK } else { pb::STATUS_ERROR },
            }),
        });
    }
}

impl Metrics {
    /// The exporter, and the endpoint on `t.prometheus`. A configured address that cannot
    /// be bound is an error; the default one is a warning (another instance may hold it).
    pub fn start(t: &Telemetry) -> Result<Metrics, String> {
        let every = Duration::from_millis(t.interval_ms as u64);
        let mut exp = Exporter::new(
            &[
                ("sluice_path_rtt_seconds", &RTT_BUCKETS[..]),
                ("sluice_path_jitter_seconds", &JITTER_BUCKETS[..]),
                ("sluice_worker_latency_seconds", &LATENCY_BUCKETS[..]),
            ],
            // Series not set for a while (top flows that left, paths a reload removed)
            // disappear; never sooner than three periods.
            (every * 3).max(SERIES_IDLE),
        )?;
        let otlp = match &t.otlp {
            None => None,
            Some(url) => {
                let url = telemetry::otlp::Url::parse(url).map_err(|e| format!("telemetry.otlp: {e}"))?;
                exp.keep_for_otlp();
                let otlp = Otlp::start(OtlpConfig {
                    url: url.clone(),
                    headers: t.otlp_headers.clone(),
                    resource: t.otlp_resource.clone(),
                    timeout: Duration::from_millis(t.otlp_timeout_ms as u64),
                })
                .map_err(|e| format!("telemetry.otlp: cannot start the exporter: {e}"))?;
                info!(target: "telemetry", "OTLP/HTTP export to {url} (metrics every {} ms, spans, {}flow records)", t.otlp_interval_ms, if t.otlp_flows { "" } else { "no " });
                Some(OtlpExport {
                    otlp,
                    every: Duration::from_millis(t.otlp_interval_ms as u64),
                    next: Instant::now() + Duration::from_millis(t.otlp_interval_ms as u64),
                    events_seen: 0,
                    ids: telemetry::otlp::unix_ns() ^ (std::process::id() as u64) << 32,
                    probes_seen: HashMap::new(),
                })
            }
        };
        for &(n, h) in COUNTERS {
            exp.describe_counter(n, h);
        }
        for &(n, h) in GAUGES {
            exp.describe_gauge(n, h);
        }
        for &(n, h) in HISTOGRAMS {
            exp.describe_histogram(n, h);
        }
        let endpoint = match t.prometheus {
            None => None,
            Some(addr) => {
                let handle = exp.handle();
                match Endpoint::start(addr, move || handle.render()) {
                    Ok(e) => {
                        info!(target: "telemetry", "Prometheus metrics at http://{}/metrics", e.addr());
                        Some(e)
                    }
                    Err(e) if t.prometheus_configured => {
                        return Err(format!("telemetry.prometheus: cannot listen on {addr}: {e}"))
                    }
                    Err(e) => {
                        warn!(target: "telemetry", "no Prometheus endpoint: cannot listen on {addr} ({e}); set telemetry.prometheus to another address, or \"off\"");
                        None
                    }
                }
            }
        };
        Ok(Metrics {
            exp,
            endpoint,
            every,
            next: Instant::now(),
            top: t.top_flows as usize,
            top_at: None,
            prev: Vec::new(),
            last_rtt: HashMap::new(),
            dpdk_version: crate::dpdk::Eal::version(),
            otlp,
        })
    }

    /// A handle that queues OTLP log records (flow records), when OTLP is on.
    pub fn otlp_sender(&self) -> Option<OtlpSender> {
        self.otlp.as_ref().map(|o| o.otlp.sender())
    }

    /// Sends what the OTLP exporter still holds and stops it (at shutdown, after the last
    /// flow records), logging what it did.
    pub fn stop_export(&mut self) {
        let Some(mut o) = self.otlp.take() else { return };
        o.otlp.stop(Duration::from_secs(10));
        let st = o.otlp.stats();
        let figures: Vec<String> = Signal::ALL
            .iter()
            .map(|&s| {
                format!(
                    "{} {} sent, {} dropped",
                    s.name(),
                    st.sent[s as usize].load(Relaxed),
                    st.dropped[s as usize].load(Relaxed)
                )
            })
            .collect();
        let last = st.last_error.lock().map(|e| e.clone()).unwrap_or_default();
        info!(target: "telemetry", "OTLP to {}: {}{}", o.otlp.url(), figures.join("; "), if last.is_empty() { String::new() } else { format!(" (last failure: {last})") });
    }

    /// Whether a period has ended and someone can read what it sets (with no endpoint and
    /// no OTLP, telemetry costs nothing).
    pub fn due(&mut self, now: Instant) -> bool {
        if (self.endpoint.is_none() && self.otlp.is_none()) || now < self.next {
            return false;
        }
        self.next = now + self.every;
        true
    }

    /// The exposition as the endpoint serves it.
    pub fn render(&self) -> String {
        self.exp.render()
    }

    /// Sets every series from `v` and the slow path.
    pub fn publish(&mut self, v: &View, slow: &mut SlowPath) {
        let e = &self.exp;
        e.gauge(
            "sluice_build_info",
            &[("version", env!("CARGO_PKG_VERSION")), ("dpdk", &self.dpdk_version)],
            1.0,
        );
        self.ports(v);
        self.workers(v, &slow.cfg.eal.workers);
        self.classes_and_queues(v, slow);
        self.flows(v, slow);
        self.paths(slow);
        let e = &self.exp;
        for (name, used, cap) in &v.pools {
            e.gauge("sluice_mempool_in_use_mbufs", &[("pool", name)], *used as f64);
            e.gauge("sluice_mempool_capacity_mbufs", &[("pool", name)], *cap as f64);
        }
        e.counter(
            "sluice_control_packets",
            &[],
            v.workers.iter().map(|w| w.to_control).sum(),
        );
        e.counter("sluice_control_sent_packets", &[], slow.plane.counters.sent);
        e.gauge("sluice_held_packets", &[], slow.holds.waiting() as f64);
        e.gauge("sluice_snapshot_generation", &[], slow.generation() as f64);
        e.counter("sluice_reloads", &[], slow.reloads_ok);
        e.counter("sluice_reloads_refused", &[], slow.reloads_refused);
        e.counter("sluice_link_changes", &[], slow.link_changes);
        if let Some(ep) = &self.endpoint {
            e.counter("sluice_telemetry_scrapes", &[], ep.stats.scrapes.load(Relaxed));
        }
        if let Some(x) = &slow.export.ipfix {
            let l: &[(&str, &str)] = &[("sink", "ipfix"), ("signal", "flows")];
            e.counter("sluice_telemetry_exported", l, x.stats.records.load(Relaxed));
            e.counter("sluice_telemetry_export_dropped", l, x.stats.dropped.load(Relaxed));
        }
        if let Some(o) = &self.otlp {
            let st = o.otlp.stats();
            for s in Signal::ALL {
                let l: &[(&str, &str)] = &[("sink", "otlp"), ("signal", s.name())];
                e.counter("sluice_telemetry_exported", l, st.sent[s as usize].load(Relaxed));
                e.counter(
                    "sluice_telemetry_export_dropped",
                    l,
                    st.dropped[s as usize].load(Relaxed),
                );
            }
        }
        e.upkeep();
        self.prev = v.workers.clone();
        self.spans(slow);
        if let Some(o) = &mut self.otlp {
            let now = Instant::now();
            if now >= o.next {
                o.next = now + o.every;
                if let Some(m) = self.exp.otlp_metrics(telemetry::otlp::unix_ns()) {
                    o.otlp.sender().metrics(m);
                }
            }
        }
    }

    /// The control events since the last period as spans: path state changes (failovers
    /// when a path stops being up) with the path, cloud, reason and the probe figures, and
    /// reloads, changes and route changes.
    fn spans(&mut self, slow: &mut SlowPath) {
        let Some(o) = &mut self.otlp else {
            slow.events_out.clear();
            return;
        };
        let plane = &slow.plane;
        let new = plane.events_total.saturating_sub(o.events_seen) as usize;
        o.events_seen = plane.events_total;
        let skip = plane.events.len().saturating_sub(new);
        for ev in plane.events.iter().skip(skip) {
            use pb::kv;
            use routing::path::Health;
            let c = &ev.change;
            let p = slow.cfg.paths.iter().find(|p| p.name == ev.path);
            let f = &ev.figures;
            let failover = c.from == Health::Up;
            let attrs = vec![
                kv("sluice.path", ev.path.as_str()),
                kv("sluice.cloud", p.map_or("", |p| p.cloud.name())),
                kv("sluice.region", p.map_or("", |p| p.region.as_str())),
                kv("sluice.from", c.from.name()),
                kv("sluice.to", c.to.name()),
                kv("sluice.reason", c.reason.as_str()),
                kv("sluice.failover", failover),
                kv("sluice.loss_ratio", f.loss_ppm as f64 / 1e6),
                kv("sluice.rtt_ewma_ms", f.rtt_ewma_us / 1000.0),
                kv("sluice.rtt_max_ms", f.rtt_max_us / 1000.0),
                kv("sluice.jitter_ms", f.jitter_us / 1000.0),
                kv("sluice.probe_rounds", f.rounds_in_window as i64),
                kv("sluice.probes_answered", f.answered_in_window as i64),
            ];
            let name = if failover { "path.failover" } else { "path.state_change" };
            let ok = c.to == Health::Up;
            let at = slow.unix_ns0 + ev.at_ns;
            o.span(
                name,
                (at, at),
                ok,
                if ok { String::new() } else { c.reason.clone() },
                attrs,
            );
        }
        for ev in slow.events_out.drain(..) {
            o.span(ev.name, (ev.at_unix_ns, ev.at_unix_ns), ev.ok, ev.message, ev.attrs);
        }
    }

    fn ports(&self, v: &View) {
        let e = &self.exp;
        for p in &v.ports {
            let l: &[(&str, &str)] = &[("port", p.name)];
            let node = p.node.map_or("none".to_string(), |n| n.to_string());
            e.gauge(
                "sluice_port_info",
                &[
                    ("port", p.name),
                    ("device", p.device),
                    ("driver", p.driver),
                    ("mac", &p.mac),
                    ("numa_node", &node),
                ],
                1.0,
            );
            let s = &p.stats;
            e.counter("sluice_port_rx_packets", l, s.ipackets);
            e.counter("sluice_port_tx_packets", l, s.opackets);
            e.counter("sluice_port_rx_bytes", l, s.ibytes);
            e.counter("sluice_port_tx_bytes", l, s.obytes);
            e.counter("sluice_port_rx_errors", l, s.ierrors);
            e.counter("sluice_port_tx_errors", l, s.oerrors);
            e.counter("sluice_port_rx_missed", l, s.imissed);
            e.counter("sluice_port_rx_nombuf", l, s.rx_nombuf);
            e.gauge("sluice_port_up", l, if p.link_up { 1.0 } else { 0.0 });
            e.gauge("sluice_port_speed_bytes", l, p.speed_mbps as f64 * 1e6 / 8.0);
            for (name, value) in &p.xstats {
                let Some((dir, q, what)) = queue_xstat(name) else {
                    continue;
                };
                let queues = if dir == "rx" { p.rx_queues } else { p.tx_queues };
                if q >= queues {
                    continue;
                }
                if let Some(&(_, _, metric)) = QUEUE_XSTATS.iter().find(|(d, w, _)| *d == dir && *w == what) {
                    e.counter(metric, &[("port", p.name), ("queue", &q.to_string())], *value);
                }
            }
        }
    }

    fn workers(&self, v: &View, lcores: &[u32]) {
        let e = &self.exp;
        for (w, s) in v.workers.iter().enumerate() {
            let id = w.to_string();
            let lcore = lcores.get(w).map_or(String::new(), |c| c.to_string());
            e.gauge("sluice_worker_info", &[("worker", &id), ("lcore", &lcore)], 1.0);
            for (p, port) in v.ports.iter().enumerate() {
                let l: &[(&str, &str)] = &[("worker", &id), ("port", port.name)];
                e.counter("sluice_worker_rx_packets", l, s.rx_packets[p]);
                e.counter("sluice_worker_tx_packets", l, s.tx_packets[p]);
                e.counter("sluice_worker_rx_bytes", l, s.rx_bytes[p]);
                e.counter("sluice_worker_tx_bytes", l, s.tx_bytes[p]);
            }
            let l: &[(&str, &str)] = &[("worker", &id)];
            e.counter("sluice_worker_polls", l, s.polls);
            e.counter("sluice_worker_busy_polls", l, s.busy_polls);
            let prev = self.prev.get(w);
            let (polls, busy) = match prev {
                Some(p) => (
                    s.polls - p.polls.min(s.polls),
                    s.busy_polls - p.busy_polls.min(s.busy_polls),
                ),
                None => (s.polls, s.busy_polls),
            };
            e.gauge(
                "sluice_worker_busy_ratio",
                l,
                if polls == 0 { 0.0 } else { busy as f64 / polls as f64 },
            );
            let seen = prev.map_or_else(|| s.latency.clone(), |p| latency::minus(&s.latency, &p.latency));
            for (slot, &n) in seen.iter().enumerate() {
                if n > 0 {
                    let secs = latency::middle(slot) / v.tsc_hz.max(1) as f64;
                    e.observe("sluice_worker_latency_seconds", l, secs, n as usize);
                }
            }
            for st in Stage::ALL {
                let i = st as usize;
                let l: &[(&str, &str)] = &[("worker", &id), ("stage", st.name())];
                e.counter("sluice_stage_packets", l, s.stage_packets[i]);
                e.counter("sluice_stage_cycles", l, s.stage_cycles[i]);
                let (c0, p0) = prev.map_or((0, 0), |p| (p.stage_cycles[i], p.stage_packets[i]));
                e.gauge(
                    "sluice_stage_cycles_per_packet",
                    l,
                    per_packet(
                        s.stage_cycles[i].saturating_sub(c0),
                        s.stage_packets[i].saturating_sub(p0),
                    ),
                );
            }
        }
        for d in DropReason::ALL {
            let n: u64 = v.workers.iter().map(|w| w.drop_count(d)).sum();
            e.counter("sluice_drops", &[("stage", d.stage().name()), ("reason", d.name())], n);
        }
    }

    fn classes_and_queues(&self, v: &View, slow: &SlowPath) {
        let e = &self.exp;
        let sum = |f: fn(&WorkerSnapshot) -> &Vec<u64>, i: usize| -> u64 {
            v.workers.iter().map(|w| f(w).get(i).copied().unwrap_or(0)).sum()
        };
        const COLOURS: [(&str, &str); 3] = [
            ("sluice_class_conform_packets", "sluice_class_conform_bytes"),
            ("sluice_class_exceed_packets", "sluice_class_exceed_bytes"),
            ("sluice_class_violate_packets", "sluice_class_violate_bytes"),
        ];
        for (k, c) in slow.cfg.classes.iter().enumerate() {
            let l: &[(&str, &str)] = &[("class", &c.name), ("priority", c.priority.name())];
            for (colour, (packets, bytes)) in COLOURS.iter().enumerate() {
                e.counter(packets, l, sum(|w| &w.class_packets, k * 3 + colour));
                e.counter(bytes, l, sum(|w| &w.class_bytes, k * 3 + colour));
            }
        }
        for (p, port) in v.ports.iter().enumerate() {
            // Only rate-limited ports queue.
            if slow.cfg.ports.get(p).is_none_or(|c| c.rate_bps.is_none()) {
                continue;
            }
            for q in Priority::ALL {
                let i = p * Priority::COUNT + q as usize;
                let l: &[(&str, &str)] = &[("port", port.name), ("priority", q.name())];
                e.counter("sluice_egress_queue_enqueued_packets", l, sum(|w| &w.queue_enqueued, i));
                e.counter("sluice_egress_queue_dropped_packets", l, sum(|w| &w.queue_dropped, i));
                e.counter(
                    "sluice_egress_queue_ce_marked_packets",
                    l,
                    sum(|w| &w.queue_ce_marked, i),
                );
                e.gauge(
                    "sluice_egress_queue_depth_packets",
                    l,
                    sum(|w| &w.queue_depth, i) as f64,
                );
            }
        }
    }

    fn flows(&mut self, v: &View, slow: &SlowPath) {
        let e = &self.exp;
        let total = |f: fn(&WorkerSnapshot) -> u64| v.workers.iter().map(f).sum::<u64>();
        e.gauge("sluice_flows_active", &[], total(|w| w.flows_active) as f64);
        e.counter("sluice_flows_created", &[], total(|w| w.flows_created));
        e.counter("sluice_flows_expired", &[], total(|w| w.flows_expired));
        e.counter("sluice_flows_evicted", &[], total(|w| w.flows_evicted));
        e.counter("sluice_flow_records_lost", &[], total(|w| w.records_lost));
        e.gauge("sluice_flow_table_capacity_flows", &[], v.flow_capacity as f64);
        if self.top == 0 || self.top_at.is_some_and(|t| t.elapsed() < TOP_EVERY) {
            return;
        }
        self.top_at = Some(Instant::now());
        let e = &self.exp;
        let (flows, coverage) = top_flows(&slow.live_top, self.top);
        let t = slow.published.load();
        for (rank, f) in flows.iter().enumerate() {
            let k = &f.key;
            let (src, dst) = k.addrs();
            let path = t.carry_path(f.state.generation, f.state.path);
            let path = slow.cfg.paths.get(path as usize).map_or("none", |p| p.name.as_str());
            e.gauge(
                "sluice_top_flow_bytes",
                &[
                    ("rank", &(rank + 1).to_string()),
                    ("src", &src.to_string()),
                    ("dst", &dst.to_string()),
                    ("src_port", &k.src_port.to_string()),
                    ("dst_port", &k.dst_port.to_string()),
                    ("proto", &k.proto.to_string()),
                    ("path", path),
                ],
                f.state.bytes as f64,
            );
        }
        e.gauge("sluice_top_flows_coverage_ratio", &[], coverage);
    }

    fn paths(&mut self, slow: &mut SlowPath) {
        let status = slow.path_statuses();
        let share = slow.new_flow_shares();
        let eligible: Vec<bool> = status
            .iter()
            .zip(&slow.cfg.paths)
            .map(|(st, p)| routing::path::eligible(p, st))
            .collect();
        for (i, st) in status.iter().enumerate() {
            let rtts = slow.plane.take_rtt_samples(i);
            let p = &slow.cfg.paths[i];
            let pr = &slow.plane.paths[i];
            let l: &[(&str, &str)] = &[("path", &p.name), ("cloud", p.cloud.name()), ("region", &p.region)];
            let e = &self.exp;
            e.gauge("sluice_path_state", l, state_code(slow.path_state(i, st)));
            e.gauge("sluice_path_eligible", l, if eligible[i] { 1.0 } else { 0.0 });
            let f = pr.health.figures();
            e.gauge("sluice_path_loss_ratio", l, f.loss_ppm as f64 / 1e6);
            e.gauge("sluice_path_rtt_ewma_seconds", l, f.rtt_ewma_us / 1e6);
            e.gauge("sluice_path_new_flow_share_ratio", l, share[i] / 100.0);
            e.counter("sluice_path_probes_sent", l, pr.health.rounds);
            e.counter("sluice_path_probes_answered", l, pr.health.answered);
            e.counter("sluice_path_probes_missed", l, pr.health.missed);
            e.counter("sluice_path_failovers", l, pr.failovers);
            if let Some(o) = &mut self.otlp {
                // Probe rounds, sampled: a path's first answered round and one in
                // PROBE_SPAN_EVERY after it are spans as long as their round-trip time.
                let seen = o.probes_seen.entry(p.name.clone()).or_insert(0);
                let before = *seen;
                *seen += rtts.len() as u64;
                for (k, rtt) in rtts.iter().enumerate() {
                    if (before + k as u64).is_multiple_of(PROBE_SPAN_EVERY) {
                        use pb::kv;
                        let attrs = vec![
                            kv("sluice.path", p.name.as_str()),
                            kv("sluice.cloud", p.cloud.name()),
                            kv("sluice.region", p.region.as_str()),
                            kv("sluice.rtt_ms", *rtt as f64 / 1e6),
                            kv("sluice.probes_sent", pr.health.rounds),
                            kv("sluice.probes_answered", pr.health.answered),
                            kv("sluice.probes_missed", pr.health.missed),
                            kv("sluice.sampled_one_in", PROBE_SPAN_EVERY),
                        ];
                        // Timed as the period's end: the answer came within a period of it.
                        let now = telemetry::otlp::unix_ns();
                        o.span(
                            "path.probe",
                            (now.saturating_sub(*rtt), now),
                            true,
                            String::new(),
                            attrs,
                        );
                    }
                }
            }
            let mut last = self.last_rtt.get(&p.name).copied();
            for rtt in rtts {
                e.observe("sluice_path_rtt_seconds", l, rtt as f64 / 1e9, 1);
                if let Some(prev) = last {
                    e.observe("sluice_path_jitter_seconds", l, rtt.abs_diff(prev) as f64 / 1e9, 1);
                }
                last = Some(rtt);
            }
            if let Some(r) = last {
                self.last_rtt.insert(p.name.clone(), r);
            }
        }
        for group in &slow.cfg.groups {
            let n = group.paths.iter().filter(|&&p| eligible[p as usize]).count();
            self.exp
                .gauge("sluice_group_eligible_paths", &[("group", &group.name)], n as f64);
        }
    }
}

/// "rx_q3_packets" -> ("rx", 3, "packets").
fn queue_xstat(name: &str) -> Option<(&str, u16, &str)> {
    let (dir, rest) = name.split_once("_q")?;
    if dir != "rx" && dir != "tx" {
        return None;
    }
    let (q, what) = rest.split_once('_')?;
    Some((dir, q.parse().ok()?, what))
}

/// The `n` largest flows of all workers' last walks, and the share of the live flows'
/// bytes they hold. A flow stays on one worker, so the merge is exact for `n` up to the
/// per-worker list's length.
fn top_flows(tops: &[TopFlows], n: usize) -> (Vec<Flow>, f64) {
    let mut all: Vec<Flow> = tops.iter().flat_map(|t| t.as_slice().iter().copied()).collect();
    all.sort_by_key(|f| std::cmp::Reverse(f.state.bytes));
    all.truncate(n);
    let live: u64 = tops.iter().map(|t| t.live_bytes).sum();
    let top: u64 = all.iter().map(|f| f.state.bytes).sum();
    let coverage = if live == 0 {
        0.0
    } else {
        (top as f64 / live as f64).min(1.0)
    };
    (all, coverage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_xstats_are_recognised() {
        assert_eq!(queue_xstat("rx_q3_packets"), Some(("rx", 3, "packets")));
        assert_eq!(queue_xstat("tx_q12_bytes"), Some(("tx", 12, "bytes")));
        assert_eq!(queue_xstat("rx_good_packets"), None);
        assert_eq!(queue_xstat("mac_rx_q_errors"), None);
        assert_eq!(queue_xstat("rx_qx_packets"), None);
    }

    #[test]
    fn every_metric_is_described_once() {
        let mut names: Vec<&str> = COUNTERS
            .iter()
            .chain(GAUGES)
            .chain(HISTOGRAMS)
            .map(|(n, _)| *n)
            .collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n);
        assert!(names.iter().all(|n| n.starts_with("sluice_") && !n.ends_with("_total")));
    }

    #[test]
    fn top_flows_merge_workers_and_say_what_they_cover() {
        let mut a = TopFlows::default();
        let mut b = TopFlows::default();
        for (t, bytes) in [(&mut a, [500u64, 100, 300]), (&mut b, [400, 200, 50])] {
            for (i, &n) in bytes.iter().enumerate() {
                t.flows[i].state.bytes = n;
            }
            t.len = 3;
            t.live_bytes = 2000;
        }
        let (flows, coverage) = top_flows(&[a, b], 4);
        assert_eq!(
            flows.iter().map(|f| f.state.bytes).collect::<Vec<_>>(),
            [500, 400, 300, 200]
        );
        assert!((coverage - 1400.0 / 4000.0).abs() < 1e-9, "{coverage}");
        let (none, coverage) = top_flows(&[TopFlows::default()], 20);
        assert!(none.is_empty() && coverage == 0.0);
    }

    #[test]
    fn the_bound_counts_each_family() {
        // One port of one queue, one worker, nothing else: fixed 43, the port 27 + 5, the
        // worker 37 + 4 (6 stages).
        assert_eq!(series_bound(1, 1, 1, 0, 0, 0, 0, 0), 43 + 32 + 41);
        // Each path adds 40, each top flow 4 (lists that linger).
        assert_eq!(
            series_bound(1, 1, 1, 0, 1, 0, 0, 0) - series_bound(1, 1, 1, 0, 0, 0, 0, 0),
            40
        );
        assert_eq!(
            series_bound(0, 0, 0, 0, 0, 0, 0, 20) - series_bound(0, 0, 0, 0, 0, 0, 0, 0),
            80
        );
    }

    /// The shipped dashboard and alert rules use only metrics that exist.
    #[test]
    fn dashboard_and_alerts_name_real_metrics() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../telemetry");
        let mut known: Vec<String> = Vec::new();
        for (n, _) in COUNTERS {
            known.push(format!("{n}_total"));
        }
        for (n, _) in GAUGES {
            known.push(n.to_string());
        }
        for (n, _) in HISTOGRAMS {
            for s in ["_bucket", "_sum", "_count"] {
                known.push(format!("{n}{s}"));
            }
        }
        for f in ["grafana/sluice-dashboard.json", "prometheus/sluice-alerts.yml"] {
            let text = std::fs::read_to_string(root.join(f)).unwrap();
            let mut used = 0;
            for (i, _) in text.match_indices("sluice_") {
                let name: String = text[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                // Rule and dashboard names (SluicePathDown, sluice-overview) are not metrics.
                if text[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '-') {
                    continue;
                }
                assert!(known.contains(&name), "{f}: {name} is not a metric sluiced exports");
                used += 1;
            }
            assert!(used >= 7, "{f}: {used}");
        }
    }
}
