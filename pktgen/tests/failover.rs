//! Multi-cloud failover end to end, three DPDK processes over memif:
//!
//! ```text
//!  sluice-pktgen run  ──lan──▶  sluiced  ──wan──▶  sluice-pktgen reflect
//!  (analyses what      ◀──────  (routes,  ◀──────  (gateways aws and gcp: answer
//!   comes back)                  probes)            ARP, probes; return data)
//! ```
//!
//! The appliance resolves both gateways by ARP, probes them (ICMP echo and STAMP), and
//! prefers aws (cheaper). The reflector takes aws silent on schedule; the generator's
//! loss gives the time traffic had no working path, and the appliance's own report gives
//! the state changes and where the flows ended up.

mod common;

use common::{said, serial, sh, sluicectl, Proc, TestDir};
use serde_json::Value;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(60);
const RATE_PPS: u64 = 20_000;

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not an unsigned integer: {v}"))
}

struct Run {
    gen: Value,
    sluiced: Value,
    refl: Value,
}

impl Run {
    fn path(&self, name: &str) -> &Value {
        self.sluiced["paths"]["paths"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no path {name}"))
    }
    fn events(&self, path: &str) -> Vec<(f64, String, String)> {
        self.sluiced["paths"]["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["path"] == path)
            .map(|e| {
                (
                    e["at_ms"].as_f64().unwrap(),
                    e["to"].as_str().unwrap().to_string(),
                    e["reason"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
    fn gateway(&self, name: &str) -> &Value {
        self.refl["gateways"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == name)
            .unwrap()
    }
}

/// The generator's default traffic: 64 UDP flows to the clouds.
const SITE_STREAM: &str = "[[stream]]\nname = \"site\"\nsrc = \"10.1.0.0/24\"\ndst = \"198.51.100.0/24\"\nflows = 64\nsize = 128\nrate = \"20000pps\"\ndst_mac = \"02:00:00:00:00:01\"\n";

fn failover_run(name: &str, aws: &str, probes: &str, seconds: u64, during: impl Fn(&std::path::Path)) -> Run {
    failover_run_with(name, [aws, ""], probes, SITE_STREAM, seconds, true, during)
}

/// sluiced between the generator and the reflector; `gws` and `probes` are extra TOML
/// for the reflector's aws and gcp gateways and sluiced's configuration, `streams` the
/// generator's; `during` runs with the control socket's path while the generator sends.
/// With `resolved`, the generator starts only once sluiced has resolved both gateways.
fn failover_run_with(
    name: &str,
    gws: [&str; 2],
    probes: &str,
    streams: &str,
    seconds: u64,
    resolved: bool,
    during: impl Fn(&std::path::Path),
) -> Run {
    let dir = TestDir::new(name);
    let lan = dir.file("lan.sock");
    let wan = dir.file("wan.sock");
    let ctl = dir.file("ctl.sock");
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
device = "net_memif1,role=server,id=0,socket={wan},socket-abstract=no"
ipv4 = ["100.64.0.1/24"]
mac = "02:00:00:00:00:02"
[[paths]]
name = "site"
cloud = "onprem"
port = "lan"
next_hop = "192.0.2.2"
next_hop_mac = "02:00:00:00:00:99"
probe = "none"
[[paths]]
name = "aws"
cloud = "aws"
port = "wan"
next_hop = "100.64.0.2"
cost_per_gb = 0.02
[[paths]]
name = "gcp"
cloud = "gcp"
port = "wan"
next_hop = "100.64.0.3"
cost_per_gb = 0.05
[[path_groups]]
name = "clouds"
paths = ["aws", "gcp"]
policy = "lowest-cost"
[[path_groups]]
name = "back"
paths = ["site"]
[[routes]]
prefix = "198.51.100.0/24"
group = "clouds"
[[routes]]
prefix = "10.1.0.0/16"
group = "back"
{probes}
"#,
            prefix = dir.prefix("sluiced"),
            ctl = ctl.display(),
            lan = lan.display(),
            wan = wan.display(),
        ),
    );
    let gws = dir.write(
        "gw.toml",
        &format!(
            "[[gateway]]\nname = \"aws\"\nip = \"100.64.0.2\"\n{}\n[[gateway]]\nname = \"gcp\"\nip = \"100.64.0.3\"\n{}\n",
            gws[0], gws[1]
        ),
    );
    let streams = dir.write("streams.toml", streams);
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
            "--log-level",
            "info",
        ],
    );
    // Both clients wait for sluiced's sockets to listen. The reflector's lcore shares CPU
    // 0 with sluiced's control thread; the generator's shares CPU 1 with sluiced's worker.
    let refl = Proc::start(
        &dir,
        "reflect",
        &[
            "reflect",
            "--port",
            &format!(
                "net_memif0,role=client,id=0,socket={},socket-abstract=no",
                wan.display()
            ),
            "--config",
            gws.to_str().unwrap(),
            "--queues",
            "2",
            "--eal",
            "--lcores 0@0,1@0",
            "--link-wait",
            "20s",
            "--json",
        ],
    );
    // The generator starts once both gateways are resolved, so every packet it sends has
    // a path and what it loses is the failover's doing.
    let log = dir.file("sluiced.stderr");
    let t0 = Instant::now();
    let both = |l: &str| l.contains("100.64.0.2 on port") && l.contains("100.64.0.3 on port");
    if resolved {
        let mut l = String::new();
        while !both(&l) {
            assert!(t0.elapsed() < LIMIT, "the gateways were not resolved:\n{l}");
            std::thread::sleep(Duration::from_millis(20));
            l = std::fs::read_to_string(&log).unwrap_or_default();
        }
    }
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
            "--streams",
            streams.to_str().unwrap(),
            "--queues",
            "2",
            "--duration",
            &format!("{seconds}s"),
            "--drain",
            "500ms",
            "--peer-wait",
            "30s",
            "--eal",
            "--lcores 0@0,1@1",
            "--link-wait",
            "20s",
            "--json",
        ],
    );
    during(&ctl);
    // A memif peer must not unmap rings the other side still polls. The generator, done,
    // stops polling and waits for its peer; so does the reflector when stopped; then
    // sluiced stops its workers and closes its ports, and both close after it.
    said(
        &dir,
        "gen",
        "for memif peers to disconnect",
        LIMIT + Duration::from_secs(seconds),
    );
    assert!(sh(&format!("kill -TERM {}", refl.pid())));
    said(&dir, "reflect", "for memif peers to disconnect", Duration::from_secs(2));
    assert!(sh(&format!("kill -TERM {}", sluiced.pid())));
    let done = sluiced.wait(LIMIT);
    let gen = gen.wait(LIMIT).json();
    assert_eq!(done.code, 0, "sluiced failed\n{}", done.stderr);
    let refl = refl.wait(LIMIT).json();
    let sluiced: Value = serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    assert_eq!(gen["mbufs_in_use_delta"], 0);
    assert_eq!(refl["mbufs_in_use_delta"], 0);
    for p in sluiced["mempools"].as_array().unwrap() {
        assert_eq!(p["leak"], false, "{p}");
    }
    Run { gen, sluiced, refl }
}

/// The preferred gateway goes silent for 2 s: traffic flows on the backup within 300 ms,
/// the primary comes back only after its hold-down, and the flows stay on the backup.
#[test]
fn silent_gateway_fails_over_within_300_ms_and_recovers_after_hold_down() {
    let _g = serial();
    // The operator looks on while it happens: the CLI must not disturb forwarding.
    let r = failover_run("failover", "down = [[\"5s\", \"7s\"]]", "", 11, |ctl| {
        for _ in 0..20 {
            sluicectl(ctl, &["show", "paths"]);
            sluicectl(ctl, &["--json", "show", "runtime"]);
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let s = &r.gen["streams"][0];
    let (tx, lost) = (u(&s["tx_packets"]), u(&s["lost"]));
    assert!(tx > 9 * RATE_PPS, "{s}");
    // Both gateways were resolved by ARP and probed with both probes.
    for name in ["aws", "gcp"] {
        let p = r.path(name);
        assert!(p["next_hop_mac"].is_string(), "{p}");
        assert!(u(&p["icmp_answered"]) > 50 && u(&p["stamp_answered"]) > 50, "{p}");
        assert_eq!(p["state"], "up", "{p}");
        assert!(u(&r.gateway(name)["arp_replies"]) >= 1);
    }
    // Failover: what was lost is the time without a working path.
    let outage_ms = lost as f64 * 1000.0 / RATE_PPS as f64;
    eprintln!("failover: {lost} packets lost, {outage_ms:.1} ms without a path");
    assert!(lost > 0, "aws never failed: {s}");
    assert!(
        outage_ms <= 300.0,
        "traffic took {outage_ms:.1} ms to flow on the backup"
    );
    let ev = r.events("aws");
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert_eq!((ev[0].1.as_str(), ev[1].1.as_str()), ("down", "up"), "{ev:?}");
    // Back after 2 s of silence, up again only after the 3 s hold-down from its last miss.
    let held = ev[1].0 - ev[0].0;
    assert!((4500.0..6500.0).contains(&held), "aws was down for {held} ms: {ev:?}");
    // Only new flows return: every forward flow ended on gcp, and aws takes new ones.
    let live = &r.sluiced["paths"]["live_flows_at_shutdown"];
    assert_eq!(live["gcp"], 64, "{live}");
    assert!(live.get("aws").is_none(), "{live}");
    assert_eq!(r.path("aws")["new_flow_share_pct"], 100.0);
    // Nothing else was lost: no reordering or duplicates from the move.
    assert_eq!(u(&s["duplicates"]), 0);
    assert!(u(&r.sluiced["paths"]["publishes"]) >= 2);
}

/// A gateway whose latency breaks the SLA is degraded: the other takes the flows.
#[test]
fn latency_beyond_the_sla_degrades_a_path() {
    let _g = serial();
    let r = failover_run(
        "degrade",
        "delay = \"8ms\"",
        "[probes]\ndegrade = { latency_ms = 5 }\n",
        4,
        |_| {},
    );
    let aws = r.path("aws");
    assert_eq!(aws["state"], "degraded", "{aws}");
    assert!(aws["rtt_avg_us"].as_f64().unwrap() > 7000.0, "{aws}");
    let ev = r.events("aws");
    assert_eq!(ev[0].1, "degraded", "{ev:?}");
    assert_eq!(ev[0].2, "latency breaks the SLA");
    assert_eq!(r.path("gcp")["state"], "up");
    let live = &r.sluiced["paths"]["live_flows_at_shutdown"];
    assert_eq!(live["gcp"], 64, "{live}");
    assert_eq!(r.path("gcp")["new_flow_share_pct"], 100.0);
}

/// A gateway losing half of what it should answer is degraded by the loss SLA (probe
/// rounds send an echo and a STAMP packet, so a quarter of the rounds go unanswered;
/// `down_after` is raised so that is not taken for an outage): gcp takes the flows.
#[test]
fn loss_beyond_the_sla_degrades_a_path() {
    let _g = serial();
    let r = failover_run(
        "lossy",
        "loss = \"50%\"",
        "[probes]\ndown_after = 10\ndegrade = { loss_pct = 5 }\n",
        4,
        |_| {},
    );
    let aws = r.path("aws");
    assert_eq!(aws["state"], "degraded", "{aws}");
    let loss = aws["loss_pct"].as_f64().unwrap();
    assert!((5.0..60.0).contains(&loss), "{aws}");
    let ev = r.events("aws");
    assert_eq!(
        (ev[0].1.as_str(), ev[0].2.as_str()),
        ("degraded", "loss breaks the SLA"),
        "{ev:?}"
    );
    assert_eq!(r.path("gcp")["state"], "up");
    assert!(u(&r.gateway("aws")["lost"]) > 0);
    let live = &r.sluiced["paths"]["live_flows_at_shutdown"];
    assert_eq!(live["gcp"], 64, "{live}");
}

/// `sluicectl path drain` moves the flows off a healthy path without losing a packet,
/// and the path takes no new flows until it is restored.
#[test]
fn draining_a_path_moves_its_flows_without_loss() {
    let _g = serial();
    let r = failover_run("drain", "", "", 4, |ctl| {
        std::thread::sleep(Duration::from_millis(1500));
        assert!(sluicectl(ctl, &["path", "drain", "aws"]).contains("ok: path drain aws"));
        let p: Value = serde_json::from_str(&sluicectl(ctl, &["--json", "show", "paths"])).unwrap();
        assert_eq!(p["paths"][1]["state"], "drained", "{p}");
        // The live flows: 64 each way (and the probe answers' own), the largest listed in
        // order with their paths.
        let t0 = Instant::now();
        let f = loop {
            let f: Value = serde_json::from_str(&sluicectl(ctl, &["--json", "show", "flows"])).unwrap();
            if u(&f["live_flows"]) >= 128 || t0.elapsed() > Duration::from_secs(2) {
                break f;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!((128..=132).contains(&u(&f["live_flows"])), "{f}");
        let live = f["live"].as_array().unwrap();
        assert_eq!(live.len(), 20, "{f}");
        assert!(live.windows(2).all(|w| u(&w[0]["bytes"]) >= u(&w[1]["bytes"])), "{f}");
        for l in live {
            assert!(["aws", "gcp", "site"].contains(&l["path"].as_str().unwrap()), "{l}");
            assert!(u(&l["packets"]) > 0 && l["end"] == "live", "{l}");
        }
        assert!(sluicectl(ctl, &["show", "flows", "--top", "3"]).contains(" live flows; largest"));
    });
    let s = &r.gen["streams"][0];
    assert_eq!(u(&s["lost"]), 0, "{s}");
    assert!(
        u(&r.gateway("aws")["data_packets"]) > 10_000,
        "aws carried the flows before"
    );
    assert!(u(&r.gateway("gcp")["data_packets"]) > 20_000, "gcp carried them after");
    let live = &r.sluiced["paths"]["live_flows_at_shutdown"];
    assert_eq!(live["gcp"], 64, "{live}");
    assert_eq!(r.path("aws")["new_flow_share_pct"], 0.0);
}

/// A class with a latency SLA avoids the cheap gateway that breaks it, while the rest of
/// the traffic keeps using it.
#[test]
fn a_class_sla_steers_only_that_class() {
    let _g = serial();
    let streams = "[[stream]]\nname = \"voice\"\nsrc = \"10.1.0.0/24\"\ndst = \"198.51.100.0/26\"\nflows = 32\nsize = 128\nrate = \"10000pps\"\ndst_mac = \"02:00:00:00:00:01\"\n\
                   [[stream]]\nname = \"data\"\nsrc = \"10.1.0.0/24\"\ndst = \"198.51.100.128/26\"\nflows = 32\nsize = 128\nrate = \"10000pps\"\ndst_mac = \"02:00:00:00:00:01\"\n";
    let classes = "[[classes]]\nname = \"voice\"\npriority = \"p0\"\nsla = { latency_ms = 5 }\n\
                   [[rules]]\nclass = \"voice\"\ndst = \"198.51.100.0/26\"\n";
    let r = failover_run_with("classsla", ["delay = \"8ms\"", ""], classes, streams, 5, true, |_| {});
    // aws answers in 8 ms: up (no path-level SLA), still the cheapest for the data class.
    assert_eq!(r.path("aws")["state"], "up");
    let live = &r.sluiced["paths"]["live_flows_at_shutdown"];
    assert_eq!(live["gcp"], 32, "voice on gcp: {live}");
    assert_eq!(live["aws"], 32, "data on aws: {live}");
    assert!(r.sluiced["paths"]["sla_unmet"].as_array().unwrap().is_empty());
    for s in r.gen["streams"].as_array().unwrap() {
        assert!(u(&s["rx_packets"]) > 30_000, "{s}");
    }
    // The gateways saw it: voice at gcp (after the first probes measured aws), data at aws.
    let tx = |n: &str| {
        let s = r.gen["streams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == n)
            .unwrap();
        u(&s["tx_packets"])
    };
    let (aws, gcp) = (
        u(&r.gateway("aws")["data_packets"]),
        u(&r.gateway("gcp")["data_packets"]),
    );
    assert!(
        gcp * 10 >= tx("voice") * 9 && gcp <= tx("voice"),
        "gcp saw {gcp} of voice's {}",
        tx("voice")
    );
    assert!(aws >= tx("data"), "aws saw {aws}, data sent {}", tx("data"));
}

/// Both gateways are silent for their first 4 s, so neither can be resolved: the
/// appliance holds the first packets for the preferred one (up to `neighbors.queue`,
/// dropping the oldest), sends them the moment it answers, and forwards directly after.
/// Every packet the generator lost is a drop the appliance counted.
#[test]
fn packets_wait_for_a_next_hop_being_resolved() {
    let _g = serial();
    let down = "down = [[\"0s\", \"4s\"]]";
    let neighbors = "[neighbors]\nretry_ms = 100\ntries = 100\nqueue = 32\n";
    let r = failover_run_with("hold", [down, down], neighbors, SITE_STREAM, 8, false, |_| {});
    let s = &r.gen["streams"][0];
    let (tx, rx) = (u(&s["tx_packets"]), u(&s["rx_packets"]));
    let neighbor = |ip: &str| {
        r.sluiced["neighbors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["ip"] == ip)
            .unwrap_or_else(|| panic!("no neighbor {ip}"))
            .clone()
    };
    let (aws, gcp) = (neighbor("100.64.0.2"), neighbor("100.64.0.3"));
    eprintln!("hold: sent {tx}, back {rx}\naws {aws}\ngcp {gcp}");
    assert_eq!(aws["state"], "reachable", "{aws}");
    // aws is the cheaper: its next hop is the one waited for. More than a queue's worth
    // arrived while it was silent, so the newest 32 were sent when it answered (and those
    // the workers handed over before they took up the new tables, right after).
    assert!(u(&aws["held"]) > 1000, "{aws}");
    assert!(u(&aws["released"]) >= 32, "{aws}");
    assert_eq!(u(&aws["held"]), u(&aws["released"]) + u(&aws["overflowed"]), "{aws}");
    assert_eq!(u(&aws["waiting"]), 0, "{aws}");
    assert_eq!(u(&gcp["held"]), 0, "{gcp}");
    assert!(u(&r.gateway("aws")["data_packets"]) >= 32);
    // Exact accounting: what did not come back was dropped, and counted, by sluiced.
    let hold_drops: u64 = [&aws, &gcp]
        .iter()
        .map(|n| u(&n["overflowed"]) + u(&n["unresolved"]))
        .sum();
    let drops: u64 = r.sluiced["drops"].as_object().unwrap().values().map(u).sum();
    assert_eq!(tx - rx, hold_drops + drops, "drops {}", r.sluiced["drops"]);
    assert!(rx > RATE_PPS, "traffic flowed once resolved: {s}");
    assert_eq!(u(&s["duplicates"]), 0);
}

/// (path, body) of each request a collector received.
type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, Vec<u8>)>>>;

/// An OTLP/HTTP collector for the test: every request's path and body, until stopped.
struct Collector {
    port: u16,
    got: Received,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Collector {
    fn start() -> Collector {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (g, st) = (got.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok((mut s, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut data = Vec::new();
                let mut buf = vec![0u8; 1 << 16];
                let mut want = None;
                while want.is_none_or(|n| data.len() < n) {
                    let Ok(k) = s.read(&mut buf) else { break };
                    if k == 0 {
                        break;
                    }
                    data.extend_from_slice(&buf[..k]);
                    if want.is_none() {
                        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&data[..i]).to_lowercase();
                            let len: usize = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse().ok())
                                .unwrap_or(0);
                            want = Some(i + 4 + len);
                        }
                    }
                }
                let Some(n) = want.filter(|&n| data.len() >= n) else {
                    continue;
                };
                let head = String::from_utf8_lossy(&data).to_string();
                let path = head.split(' ').nth(1).unwrap_or("").to_string();
                let body_at = data.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                g.lock().unwrap().push((path, data[body_at..n].to_vec()));
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
            }
        });
        Collector {
            port,
            got,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops answering: the port is closed.
    fn stop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }

    fn spans(&self) -> Vec<telemetry::otlp::pb::Span> {
        use prost::Message;
        let got = self.got.lock().unwrap();
        got.iter()
            .filter(|(p, _)| p == "/v1/traces")
            .flat_map(|(_, b)| {
                let r = telemetry::otlp::pb::ExportTraceServiceRequest::decode(b.as_slice()).unwrap();
                r.resource_spans
                    .into_iter()
                    .flat_map(|rs| rs.scope_spans)
                    .flat_map(|ss| ss.spans)
            })
            .collect()
    }

    fn logs(&self) -> Vec<telemetry::otlp::pb::LogRecord> {
        use prost::Message;
        let got = self.got.lock().unwrap();
        got.iter()
            .filter(|(p, _)| p == "/v1/logs")
            .flat_map(|(_, b)| {
                let r = telemetry::otlp::pb::ExportLogsServiceRequest::decode(b.as_slice()).unwrap();
                r.resource_logs
                    .into_iter()
                    .flat_map(|rl| rl.scope_logs)
                    .flat_map(|sl| sl.log_records)
            })
            .collect()
    }

    /// The newest metrics request's metrics.
    fn last_metrics(&self) -> Vec<telemetry::otlp::pb::Metric> {
        use prost::Message;
        let got = self.got.lock().unwrap();
        got.iter()
            .rev()
            .find(|(p, _)| p == "/v1/metrics")
            .map(|(_, b)| {
                let r = telemetry::otlp::pb::ExportMetricsServiceRequest::decode(b.as_slice()).unwrap();
                r.resource_metrics
                    .into_iter()
                    .flat_map(|rm| rm.scope_metrics)
                    .flat_map(|sm| sm.metrics)
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn attr<'a>(attrs: &'a [telemetry::otlp::pb::KeyValue], key: &str) -> Option<&'a telemetry::otlp::pb::Value> {
    attrs
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref()?.value.as_ref())
}

fn text(v: Option<&telemetry::otlp::pb::Value>) -> &str {
    match v {
        Some(telemetry::otlp::pb::Value::StringValue(s)) => s,
        _ => "",
    }
}

/// The value of a counter's data point with `label` = `value`, in OTLP metrics.
fn otlp_counter(m: &[telemetry::otlp::pb::Metric], name: &str, label: (&str, &str)) -> Option<i64> {
    use telemetry::otlp::pb::{Data, Number};
    let Some(Data::Sum(s)) = &m.iter().find(|x| x.name == name)?.data else {
        return None;
    };
    s.data_points
        .iter()
        .find(|p| text(attr(&p.attributes, label.0)) == label.1)
        .and_then(|p| match p.value {
            Some(Number::AsInt(v)) => Some(v),
            _ => None,
        })
}

fn scrape(port: u16) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = write!(s, "GET /metrics HTTP/1.0\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// OTLP end to end: while aws fails over, an in-test OTLP/HTTP collector receives the
/// failover as a span with the path, cloud, reason and figures, metrics with the failover
/// counted, and flow records as log records; once it stops answering, forwarding goes on
/// and the export-drop counter rises.
#[test]
fn otlp_receives_the_failover_span_metrics_and_flow_logs() {
    let _g = serial();
    let collector = std::sync::Arc::new(std::sync::Mutex::new(Collector::start()));
    let otlp_port = collector.lock().unwrap().port;
    let prom_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let extra = format!(
        "[flows]\nactive_timeout_s = 1\n[telemetry]\ninterval_ms = 200\nprometheus = \"127.0.0.1:{prom_port}\"\notlp = \"http://127.0.0.1:{otlp_port}\"\notlp_interval_ms = 1000\notlp_timeout_ms = 500\notlp_headers = {{ x-tenant = \"lab\" }}\notlp_resource = {{ \"deployment.environment\" = \"test\" }}\n"
    );
    let c = collector.clone();
    let dropped = std::sync::Arc::new(std::sync::Mutex::new(0.0f64));
    let d = dropped.clone();
    let r = failover_run_with(
        "otlp",
        ["down = [[\"2s\", \"60s\"]]", ""],
        &extra,
        SITE_STREAM,
        9,
        true,
        move |ctl| {
            // An operator's change is a span too (and its route change another).
            sluicectl(ctl, &["route", "add", "203.0.113.0/24", "group", "clouds"]);
            // The failover span arrives (a period to be taken, a second to be batched).
            let t0 = Instant::now();
            while !c.lock().unwrap().spans().iter().any(|s| s.name == "path.failover") {
                assert!(t0.elapsed() < Duration::from_secs(8), "no failover span");
                std::thread::sleep(Duration::from_millis(100));
            }
            // The metrics export that follows counts it.
            let t0 = Instant::now();
            while otlp_counter(
                &c.lock().unwrap().last_metrics(),
                "sluice_path_failovers",
                ("path", "aws"),
            ) != Some(1)
            {
                assert!(t0.elapsed() < Duration::from_secs(5), "no metrics with the failover");
                std::thread::sleep(Duration::from_millis(100));
            }
            // The collector goes away; forwarding goes on, exports are dropped and counted.
            c.lock().unwrap().stop();
            let t0 = Instant::now();
            loop {
                let text = scrape(prom_port);
                let n: f64 = text
                    .lines()
                    .filter(|l| l.starts_with("sluice_telemetry_export_dropped_total{") && l.contains("sink=\"otlp\""))
                    .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
                    .sum();
                if n > 0.0 || t0.elapsed() > Duration::from_secs(5) {
                    *d.lock().unwrap() = n;
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        },
    );
    let c = collector.lock().unwrap();
    assert!(*dropped.lock().unwrap() > 0.0, "the export-drop counter did not rise");
    // Forwarding went on after the collector left: all but the failover's loss arrived.
    let s = &r.gen["streams"][0];
    let (tx, lost) = (u(&s["tx_packets"]), u(&s["lost"]));
    assert!(tx > 8 * RATE_PPS && lost * 1000 / RATE_PPS <= 300, "{s}");

    let spans = c.spans();
    let f = spans.iter().find(|s| s.name == "path.failover").unwrap();
    let a = &f.attributes;
    assert_eq!(text(attr(a, "sluice.path")), "aws");
    assert_eq!(text(attr(a, "sluice.cloud")), "aws");
    assert_eq!(
        (text(attr(a, "sluice.from")), text(attr(a, "sluice.to"))),
        ("up", "down")
    );
    assert!(!text(attr(a, "sluice.reason")).is_empty(), "{f:?}");
    match attr(a, "sluice.loss_ratio") {
        Some(telemetry::otlp::pb::Value::DoubleValue(l)) => assert!(*l > 0.0, "{f:?}"),
        other => panic!("loss ratio {other:?}"),
    }
    assert!(attr(a, "sluice.rtt_ewma_ms").is_some() && attr(a, "sluice.probe_rounds").is_some());
    assert_eq!(f.status.as_ref().unwrap().code, telemetry::otlp::pb::STATUS_ERROR);
    assert_eq!((f.trace_id.len(), f.span_id.len()), (16, 8));
    // The span is timed at the change, which the report gives on the control clock.
    assert!(f.start_time_unix_nano > 1_600_000_000_000_000_000, "{f:?}");
    assert_eq!(r.events("aws").len(), 1, "down once, never back");
    let change = spans
        .iter()
        .find(|s| s.name == "config.change")
        .expect("config.change span");
    assert_eq!(
        text(attr(&change.attributes, "sluice.change")),
        "route add 203.0.113.0/24 group clouds"
    );
    assert_eq!(text(attr(&change.attributes, "sluice.result")), "ok");
    let route = spans
        .iter()
        .find(|s| s.name == "route.change")
        .expect("route.change span");
    assert_eq!(
        text(attr(&route.attributes, "sluice.routes.added")),
        "203.0.113.0/24 via clouds"
    );

    // Flow records as log records (active timeout 1 s): the site's flows, on a path.
    // (The gateways' probe answers to the appliance are flows too, without a path.)
    let logs = c.logs();
    let site: Vec<_> = logs
        .iter()
        .filter(|l| text(attr(&l.attributes, "sluice.flow.src")).starts_with("10.1.0."))
        .collect();
    assert!(site.len() >= 64, "{} flow records from the site", site.len());
    for l in site {
        assert_eq!(l.event_name, "sluice.flow");
        assert_eq!(text(attr(&l.attributes, "sluice.flow.end")), "active", "{l:?}");
        assert!(
            ["aws", "gcp"].contains(&text(attr(&l.attributes, "sluice.path"))),
            "{l:?}"
        );
        assert!(
            matches!(attr(&l.attributes, "sluice.flow.packets"), Some(telemetry::otlp::pb::Value::IntValue(n)) if *n > 0)
        );
    }
    // Probe rounds are sampled as spans: each probed path's first answered round at least,
    // with a round trip within the first round's timeout (1 s before any answer).
    for path in ["aws", "gcp"] {
        let p = spans
            .iter()
            .find(|s| s.name == "path.probe" && text(attr(&s.attributes, "sluice.path")) == path)
            .unwrap_or_else(|| panic!("no path.probe span for {path}"));
        match attr(&p.attributes, "sluice.rtt_ms") {
            Some(telemetry::otlp::pb::Value::DoubleValue(ms)) => assert!(*ms > 0.0 && *ms < 1000.0, "{p:?}"),
            other => panic!("rtt {other:?}"),
        }
        assert!(p.end_time_unix_nano > p.start_time_unix_nano, "{p:?}");
        assert_eq!(p.status.as_ref().unwrap().code, telemetry::otlp::pb::STATUS_OK);
    }
    let m = c.last_metrics();
    assert!(
        m.iter().any(|x| x.name == "sluice_build_info"),
        "the same set as Prometheus"
    );
}
