//! sluice-pktgen end to end, as child processes on virtual devices: loopback exactness,
//! rate accuracy, IMIX and flow ranges, the reflector's impairments detected exactly,
//! the RFC 2544 search, pcap replay, a kernel `ping` against the reflector in a network
//! namespace, and bad input.

mod common;

use common::{is_root, run, serial, sh, Proc, TestDir};
use dataplane::pcap::{read_all, PcapWriter};
use serde_json::Value;
use std::collections::HashMap;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(60);

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not an unsigned integer: {v}"))
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn stream<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no stream {name} in {r}"))
}

fn assert_latency_ordered(l: &Value) {
    let keys = ["min_ns", "p50_ns", "p90_ns", "p99_ns", "p999_ns", "p9999_ns", "max_ns"];
    let v: Vec<u64> = keys.iter().map(|k| u(&l[k])).collect();
    assert!(v[0] > 0, "latency must be positive: {l}");
    assert!(
        v.windows(2).all(|w| w[0] <= w[1]),
        "latency percentiles out of order: {l}"
    );
    assert!(u(&l["samples"]) > 0);
}

fn empty_pcap(dir: &TestDir) -> String {
    let p = dir.file("empty.pcap");
    PcapWriter::create(&p).unwrap().finish().unwrap();
    p.display().to_string()
}

#[test]
fn loopback_counts_exactly_with_imix_and_two_families() {
    let _g = serial();
    let dir = TestDir::new("loop");
    let streams = dir.write(
        "streams.toml",
        r#"
        [[stream]]
        name = "imix4"
        dst = "198.18.0.0/24"
        size = "imix"
        count = 120000

        [[stream]]
        name = "tcp6"
        dst = "2001:db8::/120"
        proto = "tcp"
        size = 128
        count = 50000
        "#,
    );
    // Two TX lanes (lcores 1 and 2) and RX on lcore 2, sharing the machine's two CPUs.
    let r = run(
        &dir,
        "gen",
        &[
            "run",
            "--port",
            "net_ring0",
            "--streams",
            streams.to_str().unwrap(),
            "--tx-lcores",
            "1,2",
            "--rx-lcores",
            "2",
            "--eal",
            "--lcores 0@0,1@1,2@0",
            "--json",
        ],
        LIMIT,
    )
    .json();
    for (name, n) in [("imix4", 120_000), ("tcp6", 50_000)] {
        let s = stream(&r, name);
        assert_eq!(u(&s["tx_packets"]), n, "{s}");
        assert_eq!(u(&s["rx_packets"]), n, "{s}");
        assert_eq!(u(&s["lost"]), 0);
        assert_eq!(u(&s["reordered"]), 0);
        assert_eq!(u(&s["duplicates"]), 0);
        assert_eq!(u(&s["too_late"]), 0);
        assert_latency_ordered(&s["latency"]);
    }
    // IMIX is 7:4:1 of 64, 570 and 1518 bytes; the TCP stream's 128-byte frames are apart.
    let sizes: HashMap<String, u64> = r["rx_sizes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_str().unwrap().to_string(), u(&p[1])))
        .collect();
    assert_eq!(sizes["64"], 70_000);
    assert_eq!(sizes["512-1023"], 40_000);
    assert_eq!(sizes["1024-1518"], 10_000);
    assert_eq!(sizes["128-255"], 50_000);
    assert_eq!(
        u(&stream(&r, "imix4")["tx_bytes"]),
        10_000 * (7 * 64 + 4 * 570 + 1518),
        "bytes count frames with FCS"
    );
    assert_eq!(u(&r["foreign_packets"]), 0);
    assert_eq!(r["mbufs_in_use_delta"], 0);
}

#[test]
fn achieved_rate_is_within_one_percent_of_the_asked_rate() {
    let _g = serial();
    let dir = TestDir::new("rate");
    for (rate, pps) in [("10kpps", 1e4), ("250kpps", 2.5e5), ("2Mpps", 2e6)] {
        let r = run(
            &dir,
            &format!("gen{rate}"),
            &[
                "run",
                "--port",
                "net_ring0",
                "--dst",
                "198.18.0.1",
                "--rate",
                rate,
                "--duration",
                "1s",
                "--json",
            ],
            LIMIT,
        )
        .json();
        let t = &r["total"];
        let got = f(&t["tx_pps"]);
        assert!((got - pps).abs() / pps < 0.01, "asked {pps} pps, sent {got}: {t}");
        assert!((f(&r["duration_s"]) - 1.0).abs() < 0.01);
        assert_eq!(t["rx_packets"], t["tx_packets"]);
        assert_eq!(u(&t["lost"]), 0);
    }
    // A layer-1 bit rate: 100 Mbit/s of 64-byte frames is 100e6 / (84 * 8) packets/s.
    let r = run(
        &dir,
        "genbits",
        &[
            "run",
            "--port",
            "net_ring0",
            "--dst",
            "198.18.0.1",
            "--rate",
            "100Mbit",
            "--duration",
            "1s",
            "--json",
        ],
        LIMIT,
    )
    .json();
    let want = 100e6 / (84.0 * 8.0);
    let got = f(&r["total"]["tx_pps"]);
    assert!((got - want).abs() / want < 0.01, "{got} vs {want}");
    assert!((f(&r["total"]["tx_gbps_l1"]) - 0.1).abs() < 0.001);
}

#[test]
fn flow_ranges_are_sent_exactly() {
    let _g = serial();
    let dir = TestDir::new("flows");
    let empty = empty_pcap(&dir);
    let out = dir.file("out.pcap");
    let dev = format!("net_pcap0,rx_pcap={empty},tx_pcap={}", out.display());
    // 4 destinations x 3 sources x 2 source ports = 24 flows, cycled twice.
    let r = run(
        &dir,
        "gen",
        &[
            "run",
            "--port",
            &dev,
            "--dst",
            "198.18.0.0/30",
            "--src",
            "10.0.0.1-10.0.0.3",
            "--sport",
            "1000-1001",
            "--dport",
            "53",
            "--count",
            "48",
            "--drain",
            "0ms",
            "--json",
        ],
        LIMIT,
    )
    .json();
    assert_eq!(u(&r["total"]["tx_packets"]), 48);
    let frames = read_all(&out).unwrap();
    assert_eq!(frames.len(), 48);
    let mut flows: HashMap<(u32, u32, u16, u16), u32> = HashMap::new();
    for (_, fr) in &frames {
        assert_eq!(fr.len(), 60, "64-byte frames without FCS");
        let src = u32::from_be_bytes(fr[26..30].try_into().unwrap());
        let dst = u32::from_be_bytes(fr[30..34].try_into().unwrap());
        let sp = u16::from_be_bytes(fr[34..36].try_into().unwrap());
        let dp = u16::from_be_bytes(fr[36..38].try_into().unwrap());
        assert!((0x0a00_0001..=0x0a00_0003).contains(&src), "{src:x}");
        assert!((0xc612_0000..=0xc612_0003).contains(&dst), "{dst:x}");
        assert!((1000..=1001).contains(&sp));
        assert_eq!(dp, 53);
        *flows.entry((src, dst, sp, dp)).or_default() += 1;
    }
    assert_eq!(flows.len(), 24);
    assert!(flows.values().all(|&n| n == 2));
}

/// Starts a reflector with gateways file `gws` as the server of a memif link, and returns
/// it with the device argument of the link's client side. The reflector polls on CPU 0
/// (its main lcore only sleeps there), leaving CPU 1 to the generator.
fn start_reflector(dir: &TestDir, gws: &std::path::Path) -> (Proc, String) {
    let sock = dir.file("memif.sock");
    let server = format!("net_memif0,role=server,socket={}", sock.display());
    let refl = Proc::start(
        dir,
        "reflect",
        &[
            "reflect",
            "--port",
            &server,
            "--config",
            gws.to_str().unwrap(),
            "--eal",
            "--lcores 0@0,1@0",
            "--json",
        ],
    );
    (refl, format!("net_memif0,role=client,socket={}", sock.display()))
}

/// Two processes over memif: the generator, and the reflector playing five gateways with
/// different impairments. What the analyser finds must equal what the reflector did.
#[test]
fn reflector_impairments_are_detected_exactly() {
    let _g = serial();
    let dir = TestDir::new("impair");
    let gws = dir.write(
        "gw.toml",
        r#"
        seed = 7
        [[gateway]]
        name = "clean"
        ip = "192.0.2.1"
        [[gateway]]
        name = "lossy"
        ip = "192.0.2.2"
        loss = "3%"
        [[gateway]]
        name = "reorder"
        ip = "192.0.2.3"
        reorder_every = 97
        [[gateway]]
        name = "dup"
        ip = "192.0.2.4"
        duplicate_every = 101
        [[gateway]]
        name = "delayed"
        ip = "192.0.2.5"
        delay = "2ms"
        "#,
    );
    let mut streams = String::new();
    for (i, name) in ["clean", "lossy", "reorder", "dup", "delayed"].iter().enumerate() {
        streams.push_str(&format!(
            "[[stream]]\nname = \"{name}\"\ndst = \"198.18.{i}.0/24\"\ndst_mac = \"02:5c:c0:00:02:0{}\"\nrate = \"20kpps\"\n\n",
            i + 1
        ));
    }
    let streams = dir.write("streams.toml", &streams);
    let (refl, client) = start_reflector(&dir, &gws);
    let gen = Proc::start(
        &dir,
        "gen",
        &[
            "run",
            "--port",
            &client,
            "--streams",
            streams.to_str().unwrap(),
            "--duration",
            "2s",
            "--drain",
            "1500ms",
            "--link-wait",
            "15s",
            "--json",
        ],
    );
    // Stop the reflector while the generator drains (its live line for the second second
    // means it has sent everything; the longest delay is 2 ms): the reflector stops
    // polling, the generator closes the memif link, then the reflector reports. Neither
    // process then polls a ring its peer is unmapping.
    let gen_err = dir.file("gen.stderr");
    let t0 = Instant::now();
    while !std::fs::read_to_string(&gen_err)
        .unwrap_or_default()
        .contains("[   2s]")
    {
        assert!(t0.elapsed() < LIMIT, "the generator did not get to its second second");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(sh(&format!("kill -TERM {}", refl.pid())));
    let gen = gen.wait(LIMIT).json();
    let refl = refl.wait(LIMIT).json();
    let gw = |name: &str| -> Value {
        refl["gateways"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == name)
            .cloned()
            .unwrap()
    };
    for name in ["clean", "lossy", "reorder", "dup", "delayed"] {
        let s = stream(&gen, name);
        let g = gw(name);
        assert_eq!(
            g["data_packets"], s["tx_packets"],
            "the reflector saw every packet of {name}"
        );
        assert_latency_ordered(&s["latency"]);
        assert_eq!(u(&s["too_late"]), 0);
        assert_eq!(s["lost"], g["lost"], "{name}: {s} vs {g}");
        assert_eq!(s["reordered"], g["reordered"], "{name}: {s} vs {g}");
        assert_eq!(s["duplicates"], g["duplicated"], "{name}: {s} vs {g}");
        assert_eq!(
            u(&s["rx_packets"]),
            u(&s["tx_packets"]) - u(&g["lost"]) + u(&g["duplicated"])
        );
    }
    assert!(u(&gw("lossy")["lost"]) > 500, "3% of 40 000");
    assert!(u(&gw("reorder")["reordered"]) > 300);
    assert!(u(&gw("dup")["duplicated"]) > 300);
    assert_eq!(u(&stream(&gen, "clean")["lost"]), 0);
    // The fastest packet of each shows the delay itself; the median, on a machine busy
    // with other tests, also waits for CPU time, so it is only bounded below.
    let at = |n: &str, q: &str| u(&stream(&gen, n)["latency"][q]) as f64;
    let shift = at("delayed", "min_ns") - at("clean", "min_ns");
    assert!(
        (1.9e6..2.5e6).contains(&shift),
        "a 2 ms delay shifted the minimum by {shift} ns"
    );
    let shift = at("delayed", "p50_ns") - at("clean", "p50_ns");
    assert!(shift >= 1.9e6, "a 2 ms delay shifted p50 by {shift} ns");
    assert_eq!(refl["mbufs_in_use_delta"], 0);
    assert_eq!(gen["mbufs_in_use_delta"], 0);
}

/// A reflector gateway that holds packets 10 ms in a queue of 500 drops above 50 kpps: the
/// NDR search must find that knee.
#[test]
fn ndr_search_finds_the_knee() {
    let _g = serial();
    let dir = TestDir::new("ndr");
    let gws = dir.write(
        "gw.toml",
        "queue_limit = 500\n[[gateway]]\nname = \"slow\"\nip = \"192.0.2.1\"\ndelay = \"10ms\"\n",
    );
    let (refl, client) = start_reflector(&dir, &gws);
    let r = run(
        &dir,
        "gen",
        &[
            "run",
            "--port",
            &client,
            "--dst",
            "198.18.0.1",
            "--dst-mac",
            "02:5c:c0:00:02:01",
            "--rate",
            "200kpps",
            "--duration",
            "300ms",
            "--drain",
            "100ms",
            "--search",
            "ndr",
            "--link-wait",
            "15s",
            "--json",
        ],
        LIMIT,
    )
    .json();
    drop(refl);
    let rate = f(&r["rate_pps"]);
    // At most the queue's capacity; below it by however much the reflector, sharing a CPU,
    // stalls beyond its 10 ms (the search itself is checked exactly in the unit tests).
    assert!((20_000.0..=51_000.0).contains(&rate), "NDR {rate} pps: {r}");
    let trials = r["trials"].as_array().unwrap();
    assert!(trials.len() >= 5);
    assert!(!trials[0]["pass"].as_bool().unwrap(), "200 kpps overflows the queue");
    assert_eq!(u(&r["result"]["total"]["lost"]), 0);
    assert_latency_ordered(&r["result"]["total"]["latency"]);
    assert!(u(&r["result"]["total"]["latency"]["p50_ns"]) >= 10_000_000);
}

#[test]
fn pcap_replay_keeps_the_file_timing_or_a_rate() {
    let _g = serial();
    let dir = TestDir::new("replay");
    let input = dir.file("in.pcap");
    let mut w = PcapWriter::create(&input).unwrap();
    let mut frames = Vec::new();
    for i in 0..200u32 {
        let mut s = dataplane::builder::FrameSpec::udp4(
            [10, 0, 0, 1].into(),
            (0xc612_0000 + i).into(),
            if i % 2 == 0 { 60 } else { 400 },
        );
        s.src_port = 1000 + i as u16;
        let fr = s.build();
        // 2.5 ms apart: the file spans 497.5 ms.
        w.write(i as u64 * 2500, &fr).unwrap();
        frames.push(fr);
    }
    w.finish().unwrap();
    let empty = empty_pcap(&dir);
    for (role, extra, loops, lo, hi) in [
        ("timing", vec![], "2", 0.95, 1.10),
        ("rate", vec!["--rate", "10kpps"], "5", 0.09, 0.12),
    ] {
        let out = dir.file(&format!("{role}.pcap"));
        let dev = format!("net_pcap0,rx_pcap={empty},tx_pcap={}", out.display());
        let mut args = vec![
            "replay",
            "--port",
            &dev,
            "--pcap",
            input.to_str().unwrap(),
            "--loops",
            loops,
            "--json",
        ];
        args.extend(extra);
        let r = run(&dir, role, &args, LIMIT).json();
        let loops: usize = loops.parse().unwrap();
        assert_eq!(u(&r["tx_packets"]), 200 * loops as u64);
        let d = f(&r["duration_s"]);
        assert!((lo..hi).contains(&d), "{role}: {d} s");
        let sent = read_all(&out).unwrap();
        assert_eq!(sent.len(), 200 * loops);
        for (i, (_, fr)) in sent.iter().enumerate() {
            assert_eq!(fr, &frames[i % 200], "frame {i} changed on the way");
        }
    }
}

/// The reflector on a veth pair into a namespace the test creates: the kernel resolves
/// the gateway by ARP and pings it; during the scheduled outage the pings fail.
#[test]
fn reflector_answers_kernel_ping_and_follows_its_schedule() {
    if !is_root() || !sh("command -v ip && command -v ping") {
        eprintln!("skipped: needs root, ip and ping");
        return;
    }
    let _g = serial();
    let dir = TestDir::new("ping");
    let tag = std::process::id() % 100_000;
    let (ns, host, peer) = (format!("pgns{tag}"), format!("pgh{tag}"), format!("pgp{tag}"));
    struct Cleanup(String, String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            sh(&format!("ip link del {}", self.1));
            sh(&format!("ip netns del {}", self.0));
        }
    }
    let _c = Cleanup(ns.clone(), host.clone());
    for cmd in [
        format!("ip netns add {ns}"),
        format!("ip link add {host} type veth peer name {peer}"),
        format!("ip link set {peer} netns {ns}"),
        format!("ip netns exec {ns} ip addr add 192.0.2.100/24 dev {peer}"),
        format!("ip netns exec {ns} ip link set {peer} up"),
        format!("ip link set {host} up"),
    ] {
        assert!(sh(&cmd), "{cmd}");
    }
    let gws = dir.write(
        "gw.toml",
        "[[gateway]]\nname = \"aws\"\nip = \"192.0.2.1\"\ndown = [[\"4s\", \"7s\"]]\n",
    );
    let dev = format!("net_af_packet0,iface={host}");
    let refl = Proc::start(
        &dir,
        "reflect",
        &[
            "reflect",
            "--port",
            &dev,
            "--config",
            gws.to_str().unwrap(),
            "--duration",
            "10s",
            "--json",
        ],
    );
    // The schedule counts from when the reflector starts polling, just after this line.
    let stderr = dir.file("reflect.stderr");
    let t_wait = Instant::now();
    while !std::fs::read_to_string(&stderr)
        .unwrap_or_default()
        .contains("gateway aws")
    {
        assert!(
            t_wait.elapsed() < Duration::from_secs(20),
            "the reflector did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let t0 = Instant::now();
    let mut results = Vec::new();
    while t0.elapsed() < Duration::from_millis(9500) {
        let at = t0.elapsed().as_secs_f64();
        let ok = sh(&format!("ip netns exec {ns} ping -c 1 -W 1 192.0.2.1"));
        results.push((at, ok));
        std::thread::sleep(Duration::from_millis(300));
    }
    let r = refl.wait(LIMIT).json();
    let any_ok = |a: f64, b: f64| results.iter().any(|&(t, ok)| t >= a && t < b && ok);
    let all_fail = |a: f64, b: f64| results.iter().filter(|&&(t, _)| t >= a && t < b).all(|&(_, ok)| !ok);
    assert!(any_ok(0.0, 3.0), "no answer before the outage: {results:?}");
    assert!(all_fail(4.2, 6.0), "answers during the outage: {results:?}");
    assert!(any_ok(7.2, 9.5), "no answer after the outage: {results:?}");
    let g = &r["gateways"][0];
    assert!(u(&g["arp_replies"]) >= 1, "{g}");
    assert!(u(&g["echo_replies"]) >= 3, "{g}");
    assert!(u(&g["down_drops"]) >= 1, "{g}");
    assert_eq!(r["mbufs_in_use_delta"], 0);
}

#[test]
fn json_carries_every_figure_of_the_table() {
    let _g = serial();
    let dir = TestDir::new("json");
    let args = [
        "run",
        "--port",
        "net_ring0",
        "--dst",
        "198.18.0.0/24",
        "--count",
        "10000",
        "-q",
    ];
    let human = run(&dir, "human", &args, LIMIT);
    human.ok();
    let mut a = args.to_vec();
    a.push("--json");
    let r = run(&dir, "json", &a, LIMIT).json();
    let s = &r["streams"][0];
    for k in [
        "tx_packets",
        "tx_bytes",
        "tx_pps",
        "tx_gbps",
        "tx_gbps_l1",
        "rx_packets",
        "rx_bytes",
        "rx_pps",
        "rx_gbps",
        "lost",
        "loss_ratio",
        "reordered",
        "duplicates",
        "too_late",
        "asked_pps",
    ] {
        assert!(s.get(k).is_some(), "stream JSON lacks {k}: {s}");
    }
    for k in [
        "samples", "min_ns", "mean_ns", "p50_ns", "p90_ns", "p99_ns", "p999_ns", "p9999_ns", "max_ns",
    ] {
        assert!(s["latency"].get(k).is_some(), "latency JSON lacks {k}");
    }
    for k in [
        "duration_s",
        "tx_lcores",
        "rx_lcores",
        "total",
        "foreign_packets",
        "rx_sizes",
        "ports",
        "mbufs_in_use_delta",
    ] {
        assert!(r.get(k).is_some(), "report JSON lacks {k}");
    }
    for k in [
        "ipackets",
        "opackets",
        "imissed",
        "ierrors",
        "oerrors",
        "rx_nombuf",
        "link_mbps",
        "mac",
        "device",
    ] {
        assert!(r["ports"][0].get(k).is_some(), "port JSON lacks {k}");
    }
    // The table's packet counts are the JSON's (the counts are exact in both runs).
    let line = human.stdout.lines().find(|l| l.starts_with("s0 ")).expect("stream row");
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols[1], s["tx_packets"].to_string());
    assert_eq!(cols[4], s["rx_packets"].to_string());
    assert_eq!(cols[6], s["lost"].to_string());
}

#[test]
fn bad_input_is_refused_with_a_clear_message() {
    let dir = TestDir::new("bad");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["run", "--port", "net_ring0", "--dst", "nonsense"], "address"),
        (
            vec!["run", "--port", "net_ring0", "--dst", "10.0.0.1", "--size", "40"],
            "frame size",
        ),
        (
            vec!["run", "--port", "net_ring0", "--dst", "10.0.0.1", "--rate", "fast"],
            "rate",
        ),
        (
            vec!["run", "--port", "net_ring0", "--dst", "10.0.0.1", "--flows", "9"],
            "distinct flows",
        ),
        (vec!["run", "--port", "net_ring0", "--dst", "10.0.0.1"], "--duration"),
        (
            vec![
                "run",
                "--port",
                "net_ring0",
                "--dst",
                "10.0.0.1",
                "--tx-lcores",
                "0",
                "--count",
                "1",
            ],
            "main lcore",
        ),
        (
            vec![
                "run",
                "--port",
                "net_ring0",
                "--dst",
                "10.0.0.1",
                "--search",
                "xdr",
                "--duration",
                "1s",
            ],
            "--search",
        ),
        (
            vec!["run", "--port", "net_bogus0", "--dst", "10.0.0.1", "--count", "1"],
            "DPDK",
        ),
    ];
    for (args, want) in cases {
        let d = run(&dir, "bad", &args, LIMIT);
        assert_eq!(d.code, 1, "{args:?} should fail\n{}", d.stderr);
        assert!(d.stderr.contains(want), "{args:?}: {:?} lacks {want:?}", d.stderr);
        assert!(!d.stderr.contains("panicked"), "{}", d.stderr);
    }
    let bad = dir.write("gw.toml", "[[gateway]]\nip = \"192.0.2.1\"\nloss = \"200%\"\n");
    let d = run(
        &dir,
        "badrefl",
        &["reflect", "--port", "net_ring0", "--config", bad.to_str().unwrap()],
        LIMIT,
    );
    assert_eq!(d.code, 1);
    assert!(d.stderr.contains("loss"), "{}", d.stderr);
}
