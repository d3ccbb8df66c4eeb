//! Kernel hosts in network namespaces on either side of `sluiced` (over veth pairs and
//! `net_af_packet`): a site host pings the appliance (resolving it by ARP, and by
//! neighbour discovery for IPv6) and pings a cloud host through it; the appliance resolves
//! both hosts as next hops by ARP / ND, and probes them. Needs root, `ip` and `ping`.

mod common;

use common::{send_signal, Daemon, TestDir, SLUICED};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn sh(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", cmd])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn out(cmd: &str) -> String {
    let o = Command::new("sh").args(["-c", cmd]).output().unwrap();
    String::from_utf8_lossy(&o.stdout).into()
}

fn is_root() -> bool {
    out("id -u").trim() == "0"
}

struct Net {
    site: String,
    cloud: String,
    links: Vec<String>,
}

impl Drop for Net {
    fn drop(&mut self) {
        for l in &self.links {
            sh(&format!("ip link del {l}"));
        }
        sh(&format!("ip netns del {}", self.site));
        sh(&format!("ip netns del {}", self.cloud));
    }
}

#[test]
fn kernel_hosts_ping_the_appliance_and_through_it_v4_and_v6() {
    if !is_root() || !sh("command -v ip && command -v ping") {
        eprintln!("skipped: needs root, ip and ping");
        return;
    }
    let dir = TestDir::new("kernel");
    let tag = std::process::id() % 100_000;
    let net = Net {
        site: format!("slsite{tag}"),
        cloud: format!("slcloud{tag}"),
        links: vec![format!("sla{tag}"), format!("slb{tag}")],
    };
    let (ha, hb) = (&net.links[0], &net.links[1]);
    let (pa, pb) = (format!("slpa{tag}"), format!("slpb{tag}"));
    let (a, b) = (&net.site, &net.cloud);
    for cmd in [
        format!("ip netns add {a}"),
        format!("ip netns add {b}"),
        format!("ip link add {ha} type veth peer name {pa}"),
        format!("ip link add {hb} type veth peer name {pb}"),
        format!("ip link set {pa} netns {a}"),
        format!("ip link set {pb} netns {b}"),
        format!("ip link set {ha} up"),
        format!("ip link set {hb} up"),
        format!("ip netns exec {a} ip addr add 192.0.2.100/24 dev {pa}"),
        format!("ip netns exec {a} ip addr add 2001:db8:1::100/64 dev {pa} nodad"),
        format!("ip netns exec {a} ip link set {pa} up"),
        format!("ip netns exec {a} ip route add default via 192.0.2.1"),
        format!("ip netns exec {a} ip -6 route add default via 2001:db8:1::1"),
        format!("ip netns exec {b} ip addr add 100.64.0.2/24 dev {pb}"),
        format!("ip netns exec {b} ip addr add 2001:db8:2::2/64 dev {pb} nodad"),
        format!("ip netns exec {b} ip link set {pb} up"),
        format!("ip netns exec {b} ip link set lo up"),
        format!("ip netns exec {b} ip addr add 198.51.100.1/32 dev lo"),
        format!("ip netns exec {b} ip addr add 2001:db8:99::1/128 dev lo"),
        format!("ip netns exec {b} ip route add default via 100.64.0.1"),
        format!("ip netns exec {b} ip -6 route add default via 2001:db8:2::1"),
    ] {
        assert!(sh(&cmd), "{cmd}");
    }
    let sock = dir.file("ctl.sock");
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
socket = "{sock}"
[[ports]]
name = "lan"
device = "net_af_packet0,iface={ha},qpairs=2"
ipv4 = ["192.0.2.1/24"]
ipv6 = ["2001:db8:1::1/64"]
[[ports]]
name = "wan"
device = "net_af_packet1,iface={hb},qpairs=2"
ipv4 = ["100.64.0.1/24"]
ipv6 = ["2001:db8:2::1/64"]
[[paths]]
name = "site"
cloud = "onprem"
port = "lan"
next_hop = "192.0.2.100"
[[paths]]
name = "site6"
cloud = "onprem"
port = "lan"
next_hop = "2001:db8:1::100"
[[paths]]
name = "cloud"
cloud = "aws"
port = "wan"
next_hop = "100.64.0.2"
[[paths]]
name = "cloud6"
cloud = "aws"
port = "wan"
next_hop = "2001:db8:2::2"
[[path_groups]]
name = "site"
paths = ["site"]
[[path_groups]]
name = "site6"
paths = ["site6"]
[[path_groups]]
name = "cloud"
paths = ["cloud"]
[[path_groups]]
name = "cloud6"
paths = ["cloud6"]
[[routes]]
prefix = "192.0.2.100/32"
group = "site"
[[routes]]
prefix = "2001:db8:1::100/128"
group = "site6"
[[routes]]
prefix = "198.51.100.0/24"
group = "cloud"
[[routes]]
prefix = "2001:db8:99::/48"
group = "cloud6"
"#,
            prefix = dir.prefix("k"),
            sock = sock.display(),
        ),
    );
    let stats = dir.file("stats.json");
    let d = Daemon::start(
        &dir,
        "k",
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--stats-file",
            stats.to_str().unwrap(),
        ],
    );
    // Every next hop resolved: the kernels answered ARP and neighbour solicitations.
    let t0 = Instant::now();
    loop {
        let log = std::fs::read_to_string(&d.stderr).unwrap_or_default();
        let resolved = [
            "192.0.2.100 on",
            "2001:db8:1::100 on",
            "100.64.0.2 on",
            "2001:db8:2::2 on",
        ]
        .iter()
        .all(|n| log.contains(n));
        if resolved {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "next hops not resolved:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let ping = |ns: &str, v6: bool, to: &str| {
        sh(&format!(
            "ip netns exec {ns} ping {} -c 3 -i 0.2 -W 2 {to}",
            if v6 { "-6" } else { "-4" }
        ))
    };
    // The hosts learned the appliance from its own requests; forget that, so they must ask.
    assert!(sh(&format!("ip netns exec {a} ip neigh flush all")));
    assert!(sh(&format!("ip netns exec {a} ip -6 neigh flush all")));
    assert!(ping(a, false, "192.0.2.1"), "the site host cannot ping the appliance");
    assert!(ping(a, true, "2001:db8:1::1"), "… over IPv6");
    assert!(ping(b, false, "100.64.0.1"), "the cloud host cannot ping the appliance");
    assert!(
        ping(a, false, "198.51.100.1"),
        "the site host cannot reach the cloud host through the appliance"
    );
    assert!(ping(a, true, "2001:db8:99::1"), "… over IPv6");
    // dpdk-dumpcap captures a running sluiced's port (DPDK's pdump framework).
    if sh("command -v dpdk-dumpcap") {
        let cap = dir.file("lan.pcap");
        let dump = Command::new("dpdk-dumpcap")
            .arg(format!("--file-prefix={}", dir.prefix("k")))
            .args(["-i", "net_af_packet0", "-P", "-c", "6", "-a", "duration:20", "-w"])
            .arg(&cap)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("dpdk-dumpcap");
        std::thread::sleep(Duration::from_millis(1500));
        assert!(ping(a, false, "192.0.2.1"));
        assert!(ping(a, false, "198.51.100.1"));
        let o = dump.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "dpdk-dumpcap failed: {err}");
        let frames = common::read_pcap(&cap);
        assert!(frames.len() >= 6, "{} frames captured: {err}", frames.len());
    }
    // The site host resolved the appliance: its ARP and ND entries carry the port's MAC.
    let mac = std::fs::read_to_string(format!("/sys/class/net/{ha}/address")).unwrap();
    let neigh = out(&format!("ip netns exec {a} ip neigh show"));
    assert!(
        neigh
            .lines()
            .any(|l| l.starts_with("192.0.2.1 ") && l.contains(mac.trim())),
        "{neigh}"
    );
    assert!(
        neigh
            .lines()
            .any(|l| l.starts_with("2001:db8:1::1 ") && l.contains(mac.trim())),
        "{neigh}"
    );
    // Probes reach the kernels (ICMP echo; STAMP goes unanswered there) and every path is up.
    let ctl = Path::new(SLUICED).with_file_name("sluicectl");
    if ctl.exists() {
        let o = Command::new(&ctl)
            .args(["--socket", sock.to_str().unwrap(), "--json", "show", "paths"])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        for p in v["paths"].as_array().unwrap() {
            assert_eq!(p["state"], "up", "{p}");
            assert!(p["icmp_answered"].as_u64().unwrap() > 0, "{p}");
        }
    }
    send_signal(d.pid(), libc::SIGTERM);
    let f = d.wait(Duration::from_secs(30));
    f.assert_ok();
    let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    let cp = &s["control_plane"];
    assert!(cp["arp_answered"].as_u64().unwrap() >= 1, "{cp}");
    assert!(cp["echo_answered"].as_u64().unwrap() >= 9, "{cp}");
    assert!(cp["nd_answered"].as_u64().unwrap() >= 1, "{cp}");
    for p in s["mempools"].as_array().unwrap() {
        assert_eq!(p["leak"], false, "{p}");
    }
}
