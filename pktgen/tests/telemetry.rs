//! Telemetry end to end: the generator sends a known number of packets over 1 M flows
//! through `sluiced`; a real Prometheus server (Debian's `prometheus`) scrapes it, and its
//! HTTP API must give back the count sent. The endpoint's own text passes
//! `promtool check metrics`, and with 1 M live flows it stays within the documented series
//! bound.
//!
//! ```text
//!  sluice-pktgen run  ──lan (memif)──▶  sluiced  ──wan (net_null)──▶ (discarded)
//!                                          │
//!                          /metrics ◀── prometheus (scrapes every second)
//! ```

mod common;

use common::{said, serial, sh, sluicectl, Proc, TestDir};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(60);
const PACKETS: u64 = 1_000_000;
const FLOWS: u64 = 1_000_000;

/// A loopback port nobody listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// GET `path` with HTTP/1.0 (so the answer ends at the close); (status, body).
fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One value of an instant query to Prometheus, if it has exactly one series.
fn query(prom: SocketAddr, q: &str) -> Option<f64> {
    let (status, body) = get(prom, &format!("/api/v1/query?query={}", percent_encode(q)))?;
    if status != 200 {
        return None;
    }
    let v: Value = serde_json::from_str(&body).ok()?;
    match v["data"]["result"].as_array()?.as_slice() {
        [one] => one["value"][1].as_str()?.parse().ok(),
        _ => None,
    }
}

/// The value of an unlabelled series, or the sum of a metric's series, in exposition text.
fn sample(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for l in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (series, value) = l.rsplit_once(' ')?;
        let metric = series.split('{').next().unwrap_or("");
        if metric == name {
            *found.get_or_insert(0.0) += value.parse::<f64>().ok()?;
        }
    }
    found
}

#[test]
fn prometheus_scrapes_the_count_sent_and_series_stay_bounded_with_a_million_flows() {
    let _g = serial();
    let dir = TestDir::new("prom");
    let lan = dir.file("lan.sock");
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let prom: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let cfg = dir.write(
        "sluice.toml",
        &format!(
            r#"
[eal]
workers = [1]
control_core = 0
hugepages = "auto"
file_prefix = "{prefix}"
[control]
socket = "{ctl}"
[[ports]]
name = "lan"
device = "net_memif0,role=server,id=0,socket={lan},socket-abstract=no"
ipv4 = ["192.0.2.1/24"]
mac = "02:00:00:00:00:01"
[[ports]]
name = "wan"
device = "net_null0,no-rx=1"
ipv4 = ["100.64.0.1/24"]
[[paths]]
name = "aws"
cloud = "aws"
region = "eu-west-1"
port = "wan"
next_hop = "100.64.0.2"
next_hop_mac = "02:00:00:00:00:99"
probe = "none"
[[path_groups]]
name = "clouds"
paths = ["aws"]
[[routes]]
prefix = "198.51.100.0/24"
group = "clouds"
[flows]
capacity = 2000000
[telemetry]
prometheus = "{metrics}"
interval_ms = 200
top_flows = 20
"#,
            prefix = dir.prefix("sluiced"),
            ctl = dir.file("ctl.sock").display(),
            lan = lan.display(),
        ),
    );
    let stats = dir.file("sluiced.json");
    let sluiced = Proc::start_sluiced(
        &dir,
        "sluiced",
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--stats-file",
            stats.to_str().unwrap(),
            "--link-wait",
            "0",
        ],
    );
    let t0 = Instant::now();
    while get(metrics, "/metrics").is_none_or(|(s, _)| s != 200) {
        assert!(t0.elapsed() < LIMIT, "no endpoint on {metrics}");
        std::thread::sleep(Duration::from_millis(50));
    }

    // A real Prometheus scraping it every second, with the shipped alert rules.
    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../telemetry/prometheus/sluice-alerts.yml");
    let check = std::process::Command::new("promtool")
        .args(["check", "rules", rules.to_str().unwrap()])
        .output()
        .expect("promtool (Debian package prometheus)");
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
    let prom_cfg = dir.write(
        "prometheus.yml",
        &format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: sluice\n    static_configs:\n      - targets: ['{metrics}']\n",
            rules.display()
        ),
    );
    let server = Proc::start_program(
        &dir,
        "prometheus",
        std::path::Path::new("prometheus"),
        &[
            &format!("--config.file={}", prom_cfg.display()),
            &format!("--storage.tsdb.path={}", dir.file("tsdb").display()),
            &format!("--web.listen-address={prom}"),
            "--log.level=warn",
        ],
    );

    let gen = Proc::start(
        &dir,
        "gen",
        &[
            "run",
            "--port",
            &format!(
                "net_memif0,role=client,id=0,socket={},socket-abstract=no",
                lan.display()
            ),
            "--src",
            "10.1.0.0/16",
            "--dst",
            "198.51.100.0/24",
            "--flows",
            &FLOWS.to_string(),
            "--size",
            "64",
            "--rate",
            "400kpps",
            "--count",
            &PACKETS.to_string(),
            "--dst-mac",
            "02:00:00:00:00:01",
            // As many queue pairs as sluiced's memif port has (worker + control).
            "--queues",
            "2",
            "--peer-wait",
            "30s",
            "--link-wait",
            "20s",
            // The generator keeps to core 0; sluiced's worker has core 1.
            "--eal",
            "--lcores 0@0,1@0",
            "--json",
        ],
    );
    assert!(
        said(&dir, "gen", "for memif peers to disconnect", LIMIT),
        "the generator did not finish"
    );

    // The endpoint's own text, with every flow still live.
    let t0 = Instant::now();
    let text = loop {
        let (_, text) = get(metrics, "/metrics").expect("scrape");
        let all_in = sample(&text, "sluice_worker_rx_packets_total") == Some(PACKETS as f64);
        let all_timed = sample(&text, "sluice_worker_latency_seconds_count") == Some(PACKETS as f64);
        if (all_in && all_timed) || t0.elapsed() > LIMIT {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let file = dir.write("metrics.txt", &text);
    let check = std::process::Command::new("sh")
        .args(["-c", &format!("promtool check metrics < {}", file.display())])
        .output()
        .expect("promtool (Debian package prometheus)");
    assert!(
        check.status.success() && check.stdout.is_empty() && check.stderr.is_empty(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert_eq!(sample(&text, "sluice_worker_rx_packets_total"), Some(PACKETS as f64));
    // Every packet forwarded was timed once, from arrival to the driver; on a worker
    // that is not saturated that is microseconds, never more than the largest bucket.
    assert_eq!(
        sample(&text, "sluice_worker_latency_seconds_count"),
        Some(PACKETS as f64),
        "{text}"
    );
    let mean = sample(&text, "sluice_worker_latency_seconds_sum").unwrap() / PACKETS as f64;
    assert!(mean > 0.0 && mean < 0.01, "mean latency {mean} s");
    let inf = text
        .lines()
        .find(|l| l.starts_with("sluice_worker_latency_seconds_bucket{") && l.contains("le=\"+Inf\""))
        .unwrap();
    assert!(inf.ends_with(&format!(" {PACKETS}")), "{inf}");
    // And `show runtime` gives the same count, with ordered percentiles.
    let ctl = dir.file("ctl.sock");
    let rt: Value = serde_json::from_str(&sluicectl(&ctl, &["--json", "show", "runtime"])).unwrap();
    let l = &rt["workers"][0]["latency"];
    assert_eq!(l["samples"], PACKETS, "{rt}");
    let p: Vec<f64> = ["min_us", "p50_us", "p90_us", "p99_us", "p999_us", "max_us"]
        .iter()
        .map(|k| l[*k].as_f64().unwrap())
        .collect();
    assert!(p[0] > 0.0 && p.windows(2).all(|w| w[0] <= w[1]), "{l}");
    let human = sluicectl(&ctl, &["show", "runtime"]);
    eprintln!("{human}");
    assert!(human.contains(&format!("latency (µs, {PACKETS} packets)")), "{human}");
    sluicectl(&ctl, &["clear", "counters"]);
    let rt: Value = serde_json::from_str(&sluicectl(&ctl, &["--json", "show", "runtime"])).unwrap();
    assert_eq!(rt["workers"][0]["latency"]["samples"], 0, "cleared: {rt}");
    let active = sample(&text, "sluice_flows_active").unwrap();
    assert_eq!(active, FLOWS as f64, "every flow is live");
    // Series: what the bound allows for 2 ports (one queue each), 1 worker, the default
    // class, 1 path, 1 group, 2 pools and 20 top flows, whatever the flow count.
    let series = text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).count();
    let bound = dataplane::metrics::series_bound(2, 2, 1, 1, 1, 1, 2, 20);
    assert!(series <= bound, "{series} series, bound {bound}");
    let top = text.lines().filter(|l| l.starts_with("sluice_top_flow_bytes{")).count();
    assert_eq!(top, 20, "{text}");
    let coverage = sample(&text, "sluice_top_flows_coverage_ratio").unwrap();
    assert!(coverage > 0.0 && coverage < 0.001, "20 flows of a million: {coverage}");

    // Prometheus has it too.
    let t0 = Instant::now();
    let q = "sluice_worker_rx_packets_total{port=\"lan\"}";
    let got = loop {
        let v = query(prom, q);
        if v == Some(PACKETS as f64) || t0.elapsed() > Duration::from_secs(20) {
            break v;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(
        got,
        Some(PACKETS as f64),
        "Prometheus: {q}\n--- prometheus log\n{}",
        std::fs::read_to_string(dir.file("prometheus.stderr")).unwrap_or_default()
    );
    assert_eq!(query(prom, "sluice_flows_active"), Some(FLOWS as f64));
    assert_eq!(query(prom, "sluice_path_state{path=\"aws\",cloud=\"aws\"}"), Some(1.0));
    assert_eq!(query(prom, "up{job=\"sluice\"}"), Some(1.0));
    // Every query of the shipped Grafana dashboard is one Prometheus accepts.
    let dash = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../telemetry/grafana/sluice-dashboard.json");
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(dash).unwrap()).unwrap();
    let mut exprs = 0;
    for panel in dash["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().into_iter().flatten() {
            let e = t["expr"].as_str().unwrap();
            let e = e.replace("$__rate_interval", "5s").replace("$instance", ".*");
            let (status, body) = get(prom, &format!("/api/v1/query?query={}", percent_encode(&e))).unwrap();
            assert!(status == 200 && body.contains("\"success\""), "{e}: {body}");
            exprs += 1;
        }
    }
    assert!(exprs >= 20, "{exprs} dashboard queries");
    // Every alert rule evaluates against the real series, and none fires on a healthy run.
    let t0 = Instant::now();
    let rules = loop {
        let (_, body) = get(prom, "/api/v1/rules").expect("rules");
        let v: Value = serde_json::from_str(&body).unwrap();
        let rules: Vec<Value> = v["data"]["groups"][0]["rules"].as_array().cloned().unwrap_or_default();
        if (rules.len() == 7 && rules.iter().all(|r| r["health"] == "ok")) || t0.elapsed() > Duration::from_secs(20) {
            break rules;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(rules.len(), 7, "{rules:?}");
    for r in &rules {
        assert_eq!(r["health"], "ok", "{r}");
        assert_ne!(r["state"], "firing", "{r}");
    }

    assert!(sh(&format!("kill -TERM {}", sluiced.pid())));
    let done = sluiced.wait(LIMIT);
    assert_eq!(done.code, 0, "sluiced failed\n{}", done.stderr);
    let gen = gen.wait(LIMIT).json();
    drop(server);
    assert_eq!(gen["streams"][0]["tx_packets"], PACKETS, "{gen}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    assert_eq!(report["ports"][0]["worker_rx_packets"], PACKETS);
    for p in report["mempools"].as_array().unwrap() {
        assert_eq!(p["leak"], false, "{p}");
    }
}
