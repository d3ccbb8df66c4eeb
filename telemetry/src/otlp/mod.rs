//! OpenTelemetry export over OTLP/HTTP with protobuf bodies (`/v1/metrics`, `/v1/traces`,
//! `/v1/logs`), from a side thread (`sluice-otlp`) with a small blocking HTTP/1.1 client:
//! no async runtime. The control thread queues items with `try_send` into a bounded queue;
//! when it is full, or when a POST fails (collector down, refused, timed out, non-2xx),
//! the items are dropped and counted per signal, and nothing waits on the collector.
//!
//! Metrics are the Prometheus endpoint's set, built by `Accumulator` from the same calls
//! (cumulative sums for counters, gauges, explicit-bucket histograms). Spans are control
//! events; log records are flow records.

pub mod pb;

use prost::Message;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Items waiting for the exporter thread, at most.
pub const QUEUE: usize = 16_384;
/// Log records and spans per request, at most.
const BATCH: usize = 512;
/// How long a span or log record waits for its batch to fill.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// The largest answer read from the collector.
const MAX_ANSWER: usize = 64 * 1024;

/// Unix time in nanoseconds.
pub fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Where the collector is: `http://host:port[/prefix]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub host: String,
    pub port: u16,
    /// Prefix of the signal paths, without a trailing slash ("" for none).
    pub prefix: String,
}

impl Url {
    pub fn parse(s: &str) -> Result<Url, String> {
        let rest = match s.strip_prefix("http://") {
            Some(r) => r,
            None if s.starts_with("https://") => {
                return Err("https is not supported: point it at an OpenTelemetry Collector on this host (http://127.0.0.1:4318) that forwards over TLS".into())
            }
            None => return Err("expected http://host:port, such as \"http://127.0.0.1:4318\"".into()),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        // [v6]:port, [v6], host:port or host.
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, rest) = v6.split_once(']').ok_or("an IPv6 address needs its closing ']'")?;
            match rest.strip_prefix(':') {
                Some(p) => (h, p),
                None if rest.is_empty() => (h, ""),
                None => return Err(format!("\"{authority}\" is not host:port")),
            }
        } else {
            match authority.split_once(':') {
                Some((h, p)) => (h, p),
                None => (authority, ""),
            }
        };
        let port = if port.is_empty() {
            4318
        } else {
            port.parse::<u16>().map_err(|_| format!("\"{port}\" is not a port"))?
        };
        if host.is_empty() || host.contains(['@', ' ', '?', '#', '[', ']']) {
            return Err(format!("\"{host}\" is not a host"));
        }
        Ok(Url {
            host: host.to_string(),
            port,
            prefix: path.trim_end_matches('/').to_string(),
        })
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "http://[{}]:{}{}", self.host, self.port, self.prefix)
        } else {
            write!(f, "http://{}:{}{}", self.host, self.port, self.prefix)
        }
    }
}

/// Settings of the exporter.
#[derive(Debug, Clone)]
pub struct OtlpConfig {
    pub url: Url,
    /// Sent with every request (authentication, tenant).
    pub headers: Vec<(String, String)>,
    /// Resource attributes besides service.name, service.version and host.name.
    pub resource: Vec<(String, String)>,
    /// Connect, write and read limit of one request.
    pub timeout: Duration,
}

/// The three signals, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Metrics = 0,
    Spans = 1,
    Logs = 2,
}

impl Signal {
    pub const ALL: [Signal; 3] = [Signal::Metrics, Signal::Spans, Signal::Logs];
    pub fn name(self) -> &'static str {
        match self {
            Signal::Metrics => "metrics",
            Signal::Spans => "spans",
            Signal::Logs => "logs",
        }
    }
    fn path(self) -> &'static str {
        match self {
            Signal::Metrics => "/v1/metrics",
            Signal::Spans => "/v1/traces",
            Signal::Logs => "/v1/logs",
        }
    }
}

/// What the exporter did, per signal (metric data points, spans, log records).
#[derive(Debug, Default)]
pub struct OtlpStats {
    pub sent: [AtomicU64; 3],
    pub dropped: [AtomicU64; 3],
    /// Requests that failed, and the last failure.
    pub failed_requests: AtomicU64,
    pub last_error: std::sync::Mutex<String>,
}

enum Item {
    Metrics(Vec<pb::Metric>),
    Span(Box<pb::Span>),
    Log(Box<pb::LogRecord>),
    Stop,
}

/// A handle that queues items for the exporter; clones share the queue.
#[derive(Clone)]
pub struct OtlpSender {
    tx: SyncSender<Item>,
    pub stats: Arc<OtlpStats>,
}

impl OtlpSender {
    fn queue(&self, item: Item, signal: Signal, n: u64) {
        match self.tx.try_send(item) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.stats.dropped[signal as usize].fetch_add(n, Relaxed);
            }
        }
    }

    pub fn metrics(&self, m: Vec<pb::Metric>) {
        let n = points(&m);
        self.queue(Item::Metrics(m), Signal::Metrics, n);
    }

    pub fn span(&self, s: pb::Span) {
        self.queue(Item::Span(Box::new(s)), Signal::Spans, 1);
    }

    pub fn log(&self, l: pb::LogRecord) {
        self.queue(Item::Log(Box::new(l)), Signal::Logs, 1);
    }

    /// Queues a log record, waiting for room until `deadline` (the last flow records at
    /// shutdown).
    pub fn log_until(&self, l: pb::LogRecord, deadline: Instant) {
        let mut item = Item::Log(Box::new(l));
        loop {
            match self.tx.try_send(item) {
                Ok(()) => return,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    item = back;
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err(_) => {
                    self.stats.dropped[Signal::Logs as usize].fetch_add(1, Relaxed);
                    return;
                }
            }
        }
    }
}

fn points(m: &[pb::Metric]) -> u64 {
    m.iter()
        .map(|m| match &m.data {
            Some(pb::Data::Gauge(g)) => g.data_points.len(),
            Some(pb::Data::Sum(s)) => s.data_points.len(),
            Some(pb::Data::Histogram(h)) => h.data_points.len(),
            None => 0,
        } as u64)
        .sum()
}

/// The exporter thread.
pub struct Otlp {
    sender: OtlpSender,
    thread: Option<JoinHandle<()>>,
    url: Url,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

impl Otlp {
    pub fn start(cfg: OtlpConfig) -> std::io::Result<Otlp> {
        let (tx, rx) = sync_channel(QUEUE);
        let stats = Arc::new(OtlpStats::default());
        let st = Arc::clone(&stats);
        let url = cfg.url.clone();
        let thread = std::thread::Builder::new()
            .name("sluice-otlp".into())
            .spawn(move || Exporter::new(cfg, st).run(&rx))?;
        Ok(Otlp {
            sender: OtlpSender { tx, stats },
            thread: Some(thread),
            url,
        })
    }

    pub fn sender(&self) -> OtlpSender {
        self.sender.clone()
    }

    pub fn stats(&self) -> &OtlpStats {
        &self.sender.stats
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Sends what is queued and stops the thread, waiting at most `limit`.
    pub fn stop(&mut self, limit: Duration) {
        let Some(t) = self.thread.take() else { return };
        let deadline = Instant::now() + limit;
        let mut stop = Item::Stop;
        loop {
            match self.sender.tx.try_send(stop) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    stop = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(_) => break,
            }
        }
        if !crate::join_by(t, deadline) {
            log::warn!(target: "telemetry", "OTLP export to {} did not finish in {limit:?}", self.url);
        }
    }
}

impl Drop for Otlp {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(3));
    }
}

struct Exporter {
    cfg: OtlpConfig,
    stats: Arc<OtlpStats>,
    resource: pb::Resource,
    scope: pb::InstrumentationScope,
    spans: Vec<pb::Span>,
    logs: Vec<pb::LogRecord>,
    oldest: Option<Instant>,
}

impl Exporter {
    fn new(cfg: OtlpConfig, stats: Arc<OtlpStats>) -> Exporter {
        let mut attributes = vec![
            pb::kv("service.name", "sluice"),
            pb::kv("service.version", env!("CARGO_PKG_VERSION")),
            pb::kv("host.name", hostname()),
            pb::kv("process.pid", std::process::id() as i64),
        ];
        for (k, v) in &cfg.resource {
            attributes.retain(|a| &a.key != k);
            attributes.push(pb::kv(k, v.as_str()));
        }
        Exporter {
            cfg,
            stats,
            resource: pb::Resource { attributes },
            scope: pb::InstrumentationScope {
                name: "sluice".into(),
                version: env!("CARGO_PKG_VERSION").into(),
            },
            spans: Vec::new(),
            logs: Vec::new(),
            oldest: None,
        }
    }

    fn run(mut self, rx: &Receiver<Item>) {
        loop {
            let wait = self
                .oldest
                .map_or(FLUSH_EVERY, |t| FLUSH_EVERY.saturating_sub(t.elapsed()));
            match rx.recv_timeout(wait.max(Duration::from_millis(1))) {
                Ok(Item::Metrics(m)) => self.send_metrics(m),
                Ok(Item::Span(s)) => {
                    self.spans.push(*s);
                    self.oldest.get_or_insert_with(Instant::now);
                }
                Ok(Item::Log(l)) => {
                    self.logs.push(*l);
                    self.oldest.get_or_insert_with(Instant::now);
                }
                Ok(Item::Stop) | Err(RecvTimeoutError::Disconnected) => {
                    // What is still queued goes too.
                    while let Ok(item) = rx.try_recv() {
                        match item {
                            Item::Metrics(m) => self.send_metrics(m),
                            Item::Span(s) => self.spans.push(*s),
                            Item::Log(l) => self.logs.push(*l),
                            Item::Stop => {}
                        }
                    }
                    self.flush();
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            if self.spans.len() >= BATCH
                || self.logs.len() >= BATCH
                || self.oldest.is_some_and(|t| t.elapsed() >= FLUSH_EVERY)
            {
                self.flush();
            }
        }
    }

    fn flush(&mut self) {
        self.oldest = None;
        while !self.spans.is_empty() {
            let n = self.spans.len().min(BATCH);
            let spans: Vec<pb::Span> = self.spans.drain(..n).collect();
            let body = pb::ExportTraceServiceRequest {
                resource_spans: vec![pb::ResourceSpans {
                    resource: Some(self.resource.clone()),
                    scope_spans: vec![pb::ScopeSpans {
                        scope: Some(self.scope.clone()),
                        spans,
                    }],
                }],
            }
            .encode_to_vec();
            self.post(Signal::Spans, &body, n as u64);
        }
        while !self.logs.is_empty() {
            let n = self.logs.len().min(BATCH);
            let log_records: Vec<pb::LogRecord> = self.logs.drain(..n).collect();
            let body = pb::ExportLogsServiceRequest {
                resource_logs: vec![pb::ResourceLogs {
                    resource: Some(self.resource.clone()),
                    scope_logs: vec![pb::ScopeLogs {
                        scope: Some(self.scope.clone()),
                        log_records,
                    }],
                }],
            }
            .encode_to_vec();
            self.post(Signal::Logs, &body, n as u64);
        }
    }

    fn send_metrics(&mut self, metrics: Vec<pb::Metric>) {
        let n = points(&metrics);
        let body = pb::ExportMetricsServiceRequest {
            resource_metrics: vec![pb::ResourceMetrics {
                resource: Some(self.resource.clone()),
                scope_metrics: vec![pb::ScopeMetrics {
                    scope: Some(self.scope.clone()),
                    metrics,
                }],
            }],
        }
        .encode_to_vec();
        self.post(Signal::Metrics, &body, n);
    }

    fn post(&self, signal: Signal, body: &[u8], items: u64) {
        let path = format!("{}{}", self.cfg.url.prefix, signal.path());
        match post(&self.cfg, &path, body) {
            Ok(()) => {
                self.stats.sent[signal as usize].fetch_add(items, Relaxed);
            }
            Err(e) => {
                self.stats.dropped[signal as usize].fetch_add(items, Relaxed);
                self.stats.failed_requests.fetch_add(1, Relaxed);
                if let Ok(mut last) = self.stats.last_error.lock() {
                    *last = format!("POST {path}: {e}");
                }
            }
        }
    }
}

/// One POST with a protobuf body; Ok on a 2xx answer.
fn post(cfg: &OtlpConfig, path: &str, body: &[u8]) -> Result<(), String> {
    let u = &cfg.url;
    let addr = (u.host.as_str(), u.port)
        .to_socket_addrs()
        .map_err(|e| format!("{}: {e}", u.host))?
        .next()
        .ok_or_else(|| format!("{}: no address", u.host))?;
    let mut s = TcpStream::connect_timeout(&addr, cfg.timeout).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(cfg.timeout)).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(cfg.timeout)).map_err(|e| e.to_string())?;
    let _ = s.set_nodelay(true);
    let host = if u.host.contains(':') {
        format!("[{}]:{}", u.host, u.port)
    } else {
        format!("{}:{}", u.host, u.port)
    };
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\nConnection: close\r\nUser-Agent: sluice/{}\r\n",
        body.len(),
        env!("CARGO_PKG_VERSION")
    );
    for (k, v) in &cfg.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).map_err(|e| format!("send: {e}"))?;
    s.write_all(body).map_err(|e| format!("send: {e}"))?;
    // The status line is all that matters; the rest is read (boundedly) and dropped.
    let mut answer = Vec::with_capacity(1024);
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                if answer.len() > MAX_ANSWER || answer.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(e) => return Err(format!("answer: {e}")),
        }
    }
    let line = answer.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let line = String::from_utf8_lossy(line);
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {:?}", line.trim()))?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(line.trim().to_string())
    }
}

mod accumulate;
pub use accumulate::Accumulator;

#[cfg(test)]
mod tests;
