//! IPFIX end to end: the generator sends known IPv4 and IPv6 flows through `sluiced`,
//! which exports flow records (active timeout 1 s, and the rest at shutdown) to a real
//! `nfcapd` (Debian's `nfdump`); `nfdump` reads them back and every flow must be there
//! with its addresses, ports, packets and bytes.
//!
//! ```text
//!  sluice-pktgen run  ──lan (memif)──▶  sluiced  ──wan (net_null)──▶ (discarded)
//!                                          │ IPFIX / UDP
//!                                          ▼
//!                                   nfcapd -w DIR  ──▶  nfdump -R DIR
//! ```

mod common;

use common::{said, serial, sh, Proc, TestDir};
use serde_json::Value;
use std::collections::HashMap;
use std::net::UdpSocket;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);
const V4_FLOWS: u64 = 500;
const V4_PACKETS: u64 = 15_000;
const V6_FLOWS: u64 = 100;
const V6_PACKETS: u64 = 3_000;

/// Protocol, source address and port, destination address and port, as nfdump prints them.
type FiveTuple = (String, String, String, String, String);

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn nfdump_reads_back_every_flow_sent() {
    let _g = serial();
    let dir = TestDir::new("ipfix");
    let lan = dir.file("lan.sock");
    let port = free_udp_port();
    let flows_dir = dir.file("flows");
    std::fs::create_dir_all(&flows_dir).unwrap();
    let nfcapd = Proc::start_program(
        &dir,
        "nfcapd",
        std::path::Path::new("nfcapd"),
        &[
            "-b",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-w",
            flows_dir.to_str().unwrap(),
            "-t",
            "3600",
            "-B",
            "4000000",
        ],
    );
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
ipv6 = ["2001:db8:1::ffff/64"]
mac = "02:00:00:00:00:01"
[[ports]]
name = "wan"
device = "net_null0,no-rx=1"
ipv4 = ["100.64.0.1/24"]
ipv6 = ["fd00::1/64"]
[[classes]]
name = "bulk"
[[rules]]
class = "bulk"
dst = "198.51.100.0/24"
[[paths]]
name = "aws"
cloud = "aws"
port = "wan"
next_hop = "100.64.0.2"
next_hop_mac = "02:00:00:00:00:99"
probe = "none"
[[paths]]
name = "azure6"
cloud = "azure"
port = "wan"
next_hop = "fd00::2"
next_hop_mac = "02:00:00:00:00:98"
probe = "none"
[[path_groups]]
name = "v4"
paths = ["aws"]
[[path_groups]]
name = "v6"
paths = ["azure6"]
[[routes]]
prefix = "198.51.100.0/24"
group = "v4"
[[routes]]
prefix = "2001:db8:100::/48"
group = "v6"
[flows]
active_timeout_s = 1
[telemetry]
prometheus = "off"
ipfix = "127.0.0.1:{port}"
ipfix_template_s = 5
"#,
            prefix = dir.prefix("sluiced"),
            ctl = dir.file("ctl.sock").display(),
            lan = lan.display(),
        ),
    );
    let unix = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    let t0 = unix();
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
    let streams = dir.write(
        "streams.toml",
        &format!(
            r#"
[[stream]]
name = "v4"
src = "10.1.0.0/24"
dst = "198.51.100.0/30"
sport = "1000-1001"
dport = 53
flows = {V4_FLOWS}
size = 64
rate = "5000pps"
count = {V4_PACKETS}
dst_mac = "02:00:00:00:00:01"
dscp = 10

[[stream]]
name = "v6"
src = "2001:db8:1::/120"
dst = "2001:db8:100::7"
sport = 2000
dport = "4000-4099"
flows = {V6_FLOWS}
size = 128
rate = "1000pps"
count = {V6_PACKETS}
dst_mac = "02:00:00:00:00:01"
"#
        ),
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
            "--streams",
            streams.to_str().unwrap(),
            // As many queue pairs as sluiced's memif port has (worker + control).
            "--queues",
            "2",
            "--peer-wait",
            "30s",
            "--link-wait",
            "20s",
            "--eal",
            "--lcores 0@0,1@0",
            "--json",
        ],
    );
    assert!(
        said(&dir, "gen", "for memif peers to disconnect", LIMIT),
        "the generator did not finish"
    );
    assert!(sh(&format!("kill -TERM {}", sluiced.pid())));
    let done = sluiced.wait(LIMIT);
    assert_eq!(done.code, 0, "sluiced failed\n{}", done.stderr);
    let gen = gen.wait(LIMIT).json();
    assert_eq!(gen["streams"][0]["tx_packets"], V4_PACKETS, "{gen}");
    assert_eq!(gen["streams"][1]["tx_packets"], V6_PACKETS, "{gen}");
    assert!(done.stderr.contains(" 0 dropped"), "every record left: {}", done.stderr);
    let t1 = unix();
    // nfcapd writes its file when it stops.
    assert!(sh(&format!("kill -TERM {}", nfcapd.pid())));
    let _ = nfcapd.wait(LIMIT);

    let report: Value = serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    let bytes_in = report["ports"][0]["worker_rx_bytes"].as_u64().unwrap();

    // Every record as nfdump reads it, summed by 5-tuple (a flow was reported at each
    // active timeout and once more at shutdown).
    let out = std::process::Command::new("nfdump")
        .args(["-R", flows_dir.to_str().unwrap(), "-q", "-N", "-o"])
        // Start and duration, not %ter: Debian 12's nfdump prints the end time's
        // milliseconds without their hundreds digit (x.435 as x.035), which made the end
        // look earlier than the start in about one run in four.
        .arg("fmt:%pr,%sa,%sp,%da,%dp,%pkt,%byt,%in,%out,%tos,%nh,%tsr,%td")
        .output()
        .expect("nfdump (Debian package nfdump)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut flows: HashMap<FiveTuple, (u64, u64)> = HashMap::new();
    let mut records = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        assert_eq!(f.len(), 13, "{line}");
        let key = (f[0].into(), f[1].into(), f[2].into(), f[3].into(), f[4].into());
        let e = flows.entry(key).or_default();
        e.0 += f[5].parse::<u64>().unwrap();
        e.1 += f[6].parse::<u64>().unwrap();
        // Ports are interface index + 1: in on lan (1), out on wan (2).
        assert_eq!((f[7], f[8]), ("1", "2"), "{line}");
        if f[1].contains('.') {
            assert_eq!(f[9], "40", "DSCP 10 in the ToS byte: {line}");
            assert_eq!(f[10], "100.64.0.2", "the path's next hop: {line}");
        } else {
            assert_eq!(f[10], "fd00::2", "the path's next hop: {line}");
        }
        // Start in Unix time and a duration of no more than the run, both within it.
        let (start, duration): (f64, f64) = (f[11].parse().unwrap(), f[12].parse().unwrap());
        let end = start + duration;
        assert!(
            t0 - 1.0 <= start && duration >= 0.0 && end <= t1 + 1.0,
            "{line}: run {t0}..{t1}"
        );
        records += 1;
    }
    let v4: Vec<_> = flows.iter().filter(|(k, _)| k.1.contains('.')).collect();
    let v6: Vec<_> = flows.iter().filter(|(k, _)| k.1.contains(':')).collect();
    assert_eq!(v4.len() as u64, V4_FLOWS, "IPv4 flows\n{text}");
    assert_eq!(v6.len() as u64, V6_FLOWS, "IPv6 flows\n{text}");
    assert!(
        records as u64 > V4_FLOWS + V6_FLOWS,
        "long flows reported at their active timeout too ({records} records)"
    );
    for (k, (packets, _)) in &v4 {
        assert_eq!(k.0, "17", "UDP: {k:?}");
        assert!(k.1.starts_with("10.1.0.") && k.3.starts_with("198.51.100."), "{k:?}");
        assert!(["1000", "1001"].contains(&k.2.as_str()) && k.4 == "53", "{k:?}");
        assert_eq!(*packets, V4_PACKETS / V4_FLOWS, "{k:?}");
    }
    for (k, (packets, _)) in &v6 {
        assert!(k.1.starts_with("2001:db8:1::") && k.3 == "2001:db8:100::7", "{k:?}");
        assert_eq!(k.2, "2000", "{k:?}");
        assert_eq!(*packets, V6_PACKETS / V6_FLOWS, "{k:?}");
    }
    let total_packets: u64 = flows.values().map(|v| v.0).sum();
    let total_bytes: u64 = flows.values().map(|v| v.1).sum();
    assert_eq!(total_packets, V4_PACKETS + V6_PACKETS);
    assert_eq!(total_bytes, bytes_in, "the bytes sluiced received");
}
