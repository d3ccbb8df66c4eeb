//! Golden tests of the full pipeline through `sluiced`: classes set DSCP and priority,
//! meters drop or remark what exceeds, path groups spread flows over their paths (each
//! flow on one path), IPv6 is routed and marked, and a configuration reload in the middle
//! of a stream loses nothing while an invalid one is refused.

mod common;

use common::*;
use dataplane::builder::FrameSpec;
use std::collections::HashMap;
use std::time::Duration;

const WAN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
const AWS_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xa1, 0x01];
const GCP_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xa2, 0x01];

const TRAFFIC: &str = r#"
[[classes]]
name = "voice"
priority = "p0"
dscp = "ef"
[[classes]]
name = "capped"
dscp = "cs1"
meter = { type = "token-bucket", rate = "8kbit", burst = 1000 }
exceed = "drop"
[[classes]]
name = "bulk"
dscp = "af11"
meter = { type = "srtcm", cir = "8kbit", cbs = 1000, ebs = 500 }
exceed = "remark af12"
violate = "remark af13"

[[rules]]
class = "voice"
protocol = "udp"
dst_ports = "5060-5061"
[[rules]]
class = "capped"
dst = "198.18.2.0/24"
[[rules]]
class = "bulk"
dst = "198.18.3.0/24"
[[rules]]
class = "voice"
src = "2001:db8:9::/48"

[[paths]]
name = "aws"
cloud = "aws"
region = "eu-west-1"
port = "wan"
next_hop = "203.0.113.2"
next_hop_mac = "02:00:00:00:a1:01"
# The pcap sink answers nothing: forwarding is tested here, probing elsewhere.
probe = "none"
latency_ms = 10
[[paths]]
name = "gcp"
cloud = "gcp"
region = "europe-west1"
port = "wan"
next_hop = "203.0.113.3"
next_hop_mac = "02:00:00:00:a2:01"
probe = "none"
latency_ms = 10
[[path_groups]]
name = "clouds"
paths = ["aws", "gcp"]
policy = "active-active"

[[routes]]
prefix = "198.18.0.0/16"
group = "clouds"
[[routes]]
prefix = "2001:db8:100::/48"
group = "clouds"
"#;

/// Writes `ports` (the [[ports]] tables) and TRAFFIC into a configuration, runs `sluiced`
/// for 1.5 s over it, and returns its output and final counters.
fn run_pcaps(dir: &TestDir, role: &str, ports: &str) -> (Finished, serde_json::Value) {
    let cfg = format!("{}\n{ports}{TRAFFIC}", eal_section(&dir.prefix(role)));
    let cfg = dir.write("sluice.toml", &cfg);
    let stats_file = dir.file("stats.json");
    let args = [
        "--config",
        cfg.to_str().unwrap(),
        "--duration",
        "1.5",
        "--stats-file",
        stats_file.to_str().unwrap(),
    ];
    let out = run(dir, role, &args, Duration::from_secs(60));
    out.assert_ok();
    let s = stats(&stats_file);
    (out, s)
}

/// Two pcap ports: "lan" reads `in.pcap`, "wan" (with `wan_extra` settings) writes
/// `wan-out.pcap`.
fn pcap_ports(dir: &TestDir, wan_extra: &str) -> String {
    format!(
        "[[ports]]\nname = \"lan\"\ndevice = \"net_pcap0,rx_pcap={d}/in.pcap,tx_pcap={d}/lan-out.pcap\"\n\
         mac = \"02:00:00:00:00:0a\"\nipv4 = [\"192.0.2.1/24\"]\n\
         [[ports]]\nname = \"wan\"\ndevice = \"net_pcap1,rx_pcap={d}/empty.pcap,tx_pcap={d}/wan-out.pcap\"\n\
         mac = \"02:00:00:00:00:0b\"\nipv4 = [\"203.0.113.1/29\"]\n{wan_extra}\n",
        d = dir.path.display()
    )
}

fn udp4(dst: &str, dport: u16, sport: u16, len: usize) -> Vec<u8> {
    let mut s = FrameSpec::udp4("10.1.0.1".parse().unwrap(), dst.parse().unwrap(), len);
    s.dst_port = dport;
    s.src_port = sport;
    s.ecn = 1;
    s.build()
}

fn dscp_ecn(f: &[u8]) -> (u8, u8) {
    if f[12..14] == [0x86, 0xdd] {
        let tc = ((f[14] & 0x0f) << 4) | (f[15] >> 4);
        (tc >> 2, tc & 3)
    } else {
        (f[15] >> 2, f[15] & 3)
    }
}

#[test]
fn classes_meters_and_path_groups() {
    let dir = TestDir::new("traffic");
    let mut input = Vec::new();
    // 40 voice flows (one packet each), then 20 packets of one capped flow and 20 of one
    // bulk flow, 100 bytes each against 1000-byte buckets, then 8 IPv6 voice flows.
    for i in 0..40 {
        input.push(udp4(&format!("198.18.5.{}", i + 1), 5060, 4000 + i, 100));
    }
    for _ in 0..20 {
        input.push(udp4("198.18.2.9", 80, 999, 100));
    }
    for _ in 0..20 {
        input.push(udp4("198.18.3.9", 80, 999, 100));
    }
    for i in 0..8u16 {
        let mut s = FrameSpec::udp6(
            "2001:db8:9::1".parse().unwrap(),
            format!("2001:db8:100::{}", i + 1).parse().unwrap(),
            100,
        );
        s.ecn = 2;
        input.push(s.build());
    }
    write_pcap(&dir.file("in.pcap"), &input);
    write_pcap(&dir.file("empty.pcap"), &[]);
    let (out, s) = run_pcaps(&dir, "t", &pcap_ports(&dir, ""));
    let got = read_pcap(&dir.file("wan-out.pcap"));

    // Voice: EF, ECN kept, checksums valid, each flow on aws or gcp, both paths used.
    let voice: Vec<&Vec<u8>> = got
        .iter()
        .filter(|f| f[12..14] == [8, 0] && f[36..38] == [0x13, 0xc4])
        .collect();
    assert_eq!(voice.len(), 40);
    let mut per_path: HashMap<[u8; 6], usize> = HashMap::new();
    for f in &voice {
        assert_eq!(dscp_ecn(f), (46, 1));
        assert_eq!(inet_checksum(&f[14..34]), 0);
        assert_eq!(&f[6..12], &WAN_MAC);
        assert_eq!(f[22], 63);
        let mac: [u8; 6] = f[..6].try_into().unwrap();
        assert!(mac == AWS_MAC || mac == GCP_MAC, "{mac:02x?}");
        *per_path.entry(mac).or_default() += 1;
    }
    assert_eq!(per_path.len(), 2, "active-active uses both paths: {per_path:?}");

    // Capped: ten 100-byte packets fit the 1000-byte bucket, the rest are dropped.
    let capped: Vec<&Vec<u8>> = got
        .iter()
        .filter(|f| f[12..14] == [8, 0] && f[30..34] == [198, 18, 2, 9])
        .collect();
    assert!((10..=11).contains(&capped.len()), "{} capped packets", capped.len());
    assert!(capped.iter().all(|f| dscp_ecn(f) == (8, 1)));
    // One flow, one path.
    assert!(capped.windows(2).all(|w| w[0][..6] == w[1][..6]));
    assert_eq!(s["drops"]["meter_exceed"], 20 - capped.len() as u64);

    // Bulk (srTCM): ten green af11, five yellow af12 (the 500-byte excess bucket), five red af13.
    let bulk: Vec<(u8, u8)> = got
        .iter()
        .filter(|f| f[12..14] == [8, 0] && f[30..34] == [198, 18, 3, 9])
        .map(|f| dscp_ecn(f))
        .collect();
    assert_eq!(bulk.len(), 20);
    let count = |d: u8| bulk.iter().filter(|&&(x, _)| x == d).count();
    assert!((10..=11).contains(&count(10)), "{bulk:?}");
    assert_eq!(count(10) + count(12) + count(14), 20);
    assert!(count(14) >= 4, "{bulk:?}");

    // IPv6 voice: EF, ECN 2 kept, hop limit 63.
    let v6: Vec<&Vec<u8>> = got.iter().filter(|f| f[12..14] == [0x86, 0xdd]).collect();
    assert_eq!(v6.len(), 8);
    for f in v6 {
        assert_eq!(dscp_ecn(f), (46, 2));
        assert_eq!(f[21], 63);
    }

    // Counters: per class and colour, flows, stages.
    let c = &s["classes"];
    assert_eq!(c["voice"]["conform_packets"], 48);
    assert_eq!(
        c["capped"]["conform_packets"].as_u64().unwrap() + c["capped"]["exceed_packets"].as_u64().unwrap(),
        20
    );
    assert_eq!(c["bulk"]["violate_packets"].as_u64().unwrap() as usize, count(14));
    assert_eq!(s["flows"]["created"], 40 + 1 + 1 + 8);
    assert_eq!(s["ports"][1]["tx_packets"], got.len() as u64);
    for st in ["rx", "parse_classify", "shape", "route", "mark", "tx"] {
        assert!(s["stages"][st]["packets"].as_u64().unwrap() > 0, "{st}");
    }
    assert!(out.stdout.contains("cycles/pkt"), "{}", out.stdout);
    assert_no_leak(&s);
}

fn kill(pid: i32, sig: i32) {
    assert_eq!(send_signal(pid, sig), 0);
}

#[test]
fn reload_mid_stream_loses_nothing() {
    let dir = TestDir::new("reload");
    let flows: Vec<Vec<u8>> = (0..64)
        .map(|i| udp4(&format!("198.18.5.{}", i + 1), 5060, 4000 + i, 100))
        .collect();
    write_pcap(&dir.file("in.pcap"), &flows);
    let base = format!(
        "{eal}\n\
         [[ports]]\nname = \"lan\"\ndevice = \"net_pcap0,rx_pcap={d}/in.pcap,tx_pcap=/dev/null,infinite_rx=1\"\n\
         mac = \"02:00:00:00:00:0a\"\n\
         [[ports]]\nname = \"wan\"\ndevice = \"net_null0,no-rx=1\"\nmac = \"02:00:00:00:00:0b\"\n\
         [[classes]]\nname = \"video\"\ndscp = \"af41\"\n",
        eal = eal_section(&dir.prefix("r")),
        d = dir.path.display()
    );
    let cfg = dir.write("sluice.toml", &format!("{base}{TRAFFIC}"));
    let stats_file = dir.file("stats.json");
    // Each step waits for the daemon to say it happened: a fixed sleep loses to a slow
    // start on a loaded machine, and two SIGHUPs close together are seen as one.
    let mut d = common::Daemon::start(
        &dir,
        "r",
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--duration",
            "60",
            "--stats-file",
            stats_file.to_str().unwrap(),
        ],
    );
    let limit = Duration::from_secs(30);
    d.wait_for_log("sluiced: forwarding", limit);
    std::thread::sleep(Duration::from_millis(700));
    // Voice traffic now belongs to "video": a valid change, published mid-stream.
    dir.write(
        "sluice.toml",
        &format!(
            "{base}{}",
            TRAFFIC.replacen("class = \"voice\"\nprotocol", "class = \"video\"\nprotocol", 1)
        ),
    );
    kill(d.pid(), libc::SIGHUP);
    d.wait_for_log("(generation 2)", limit);
    std::thread::sleep(Duration::from_millis(700));
    // An invalid one: refused, the running configuration stays.
    dir.write(
        "sluice.toml",
        &format!(
            "{base}{}",
            TRAFFIC.replacen("rate = \"8kbit\"", "rate = \"8 potatoes\"", 1)
        ),
    );
    kill(d.pid(), libc::SIGHUP);
    d.wait_for_log("reload refused", limit);
    std::thread::sleep(Duration::from_millis(300));
    kill(d.pid(), libc::SIGTERM);
    let out = d.wait(Duration::from_secs(60));
    out.assert_ok();
    let s = stats(&stats_file);
    assert_eq!(s["reloads"]["ok"], 1, "{}", out.stderr);
    assert_eq!(s["reloads"]["refused"], 1);
    assert_eq!(s["generation"], 2);
    assert!(out.stderr.contains("reload refused"), "{}", out.stderr);
    assert!(out.stderr.contains("potatoes"), "{}", out.stderr);
    // Traffic ran in both classes, and every packet received was sent.
    let voice = s["classes"]["voice"]["conform_packets"].as_u64().unwrap();
    let video = s["classes"]["video"]["conform_packets"].as_u64().unwrap();
    assert!(voice > 1000 && video > 1000, "voice {voice}, video {video}");
    let rx = s["ports"][0]["worker_rx_packets"].as_u64().unwrap();
    let tx = s["ports"][1]["worker_tx_packets"].as_u64().unwrap();
    let dropped: u64 = s["drops"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(dropped, 0, "{}", s["drops"]);
    assert_eq!(rx, tx, "received {rx}, sent {tx}");
    // Flows did not restart: still 64 of them, re-classified in place.
    assert_eq!(s["flows"]["created"], 64);
    assert_no_leak(&s);
}

/// A rate-limited egress port: packets wait in priority queues, P0 leaves before P3,
/// ECN-capable packets are CE-marked above the threshold, and a full queue drops.
#[test]
fn egress_priority_queues_mark_and_drop() {
    let dir = TestDir::new("egress");
    // 120 packets of 1000 bytes: P3 (port 80) and P0 (port 5060) alternating, all
    // ECN-capable, arriving far faster than the 10 Mbit/s link drains them.
    let mut input = Vec::new();
    for i in 0..120u16 {
        let dport = if i % 2 == 0 { 80 } else { 5060 };
        input.push(udp4("198.18.5.1", dport, 3000 + i, 1000));
    }
    write_pcap(&dir.file("in.pcap"), &input);
    write_pcap(&dir.file("empty.pcap"), &[]);
    let wan = "rate = \"10Mbit\"\nqueue_packets = 40\necn_threshold_packets = 10";
    let (_, s) = run_pcaps(&dir, "e", &pcap_ports(&dir, wan));
    let got = read_pcap(&dir.file("wan-out.pcap"));
    let dport = |f: &Vec<u8>| u16::from_be_bytes([f[36], f[37]]);
    // Each queue holds 40: of 60 per priority, the first few leave at once (the link's
    // 16 KiB burst), 40 wait, the rest are tail-dropped.
    let queue_full = s["drops"]["queue_full"].as_u64().unwrap();
    assert!(queue_full > 0, "{}", s["drops"]);
    assert_eq!(got.len() as u64 + queue_full, 120);
    // After the initial burst, every P0 packet leaves before any waiting P3 packet.
    let first_p3_after_burst = got.iter().skip(20).position(|f| dport(f) == 80).map(|p| p + 20);
    let last_p0 = got.iter().rposition(|f| dport(f) == 5060).unwrap();
    assert!(first_p3_after_burst.unwrap() > last_p0, "P0 must drain first");
    // Queued beyond the threshold: CE set, checksum still valid.
    let ce = got.iter().filter(|f| f[15] & 3 == 3).count() as u64;
    assert!(ce > 0);
    for f in &got {
        assert_eq!(inet_checksum(&f[14..34]), 0);
    }
    let marked: u64 = s["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["ce_marked"].as_u64().unwrap())
        .sum();
    assert_eq!(marked, ce);
    assert_no_leak(&s);
}
