//! A memif peer that leaves while traffic flows must not take `sluiced` down with it.
//!
//! DPDK 22.11's memif driver unmaps the departed peer's shared memory from EAL's
//! interrupt thread while the worker may still be inside a burst on it; before
//! `dataplane::quiesce` this killed `sluiced` with a segmentation fault about once in 25
//! disconnects under load. Here generators connect, send at full rate (which `sluiced`
//! routes straight back to them) and leave, killed or at their end, several times over.
//! `sluiced` must keep running, must have waited for its pollers at every teardown (which
//! fails at once if its `munmap` is not the one the driver calls), and must exit cleanly
//! with every mbuf back.
//!
//! ```text
//!  sluice-pktgen run  ◀──lan (memif)──▶  sluiced (routes 198.18.0.0/16 back out of lan)
//! ```

//!
//! And `sluiced` as a memif *client*, which DPDK 22.11 connects only when the port starts:
//! it must start before its server exists, connect when one appears, and connect again to
//! each new server after the last one left.

mod common;

use common::{serial, sh, Proc, TestDir};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(60);
/// Peers that come and go: odd ones are killed, even ones end their run.
const PEERS: usize = 6;

/// How many times `role`'s log says `what` now.
fn times_said(dir: &TestDir, role: &str, what: &str) -> usize {
    std::fs::read_to_string(dir.file(&format!("{role}.stderr")))
        .unwrap_or_default()
        .matches(what)
        .count()
}

/// Waits until `sluiced` has said `what` `n` times, failing at once if it has died.
fn wait_said(dir: &TestDir, sluiced: &mut Proc, what: &str, n: usize) {
    let t0 = Instant::now();
    while times_said(dir, "sluiced", what) < n {
        let log = || std::fs::read_to_string(dir.file("sluiced.stderr")).unwrap_or_default();
        assert!(sluiced.running(), "sluiced died:\n{}", log());
        assert!(
            t0.elapsed() < LIMIT,
            "sluiced did not say {what:?} {n} times:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `sluiced` whose one port, "lan", is a memif `role` ("server" or "client") on
/// `dir`/lan.sock, routing 198.18.0.0/16 straight back out of it; with `--link-wait
/// link_wait` and its report to `dir`/sluiced.json.
fn start_sluiced(dir: &TestDir, role: &str, link_wait: &str) -> Proc {
    let lan = format!(
        r#"
[[ports]]
name = "lan"
device = "{device}"
mac = "02:00:00:00:00:01"
[[routes]]
prefix = "198.18.0.0/16"
port = "lan"
next_hop_mac = "02:00:00:00:00:02"
"#,
        device = memif(dir, role),
    );
    start_sluiced_with(dir, &lan, link_wait)
}

/// `sluiced` with these ports and routes (TOML), one worker on lcore 1, `--link-wait
/// link_wait` and its report to `dir`/sluiced.json.
fn start_sluiced_with(dir: &TestDir, ports_and_routes: &str, link_wait: &str) -> Proc {
    let cfg = dir.write(
        "sluice.toml",
        &format!(
            r#"
[eal]
workers = [1]
control_core = 0
hugepages = "auto"
file_prefix = "{prefix}"
{ports_and_routes}"#,
            prefix = dir.prefix("sluiced"),
        ),
    );
    let stats = dir.file("sluiced.json");
    Proc::start_sluiced(
        dir,
        "sluiced",
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--stats-file",
            stats.to_str().unwrap(),
            "--link-wait",
            link_wait,
        ],
    )
}

/// The memif device arguments of `role`'s end of the link.
fn memif(dir: &TestDir, role: &str) -> String {
    format!(
        "net_memif0,role={role},id=0,socket={},socket-abstract=no",
        dir.file("lan.sock").display()
    )
}

/// A generator as memif `role` sending 64-byte frames over 4096 flows at `rate` for
/// `duration`, as many queue pairs as sluiced's port has (worker + control), on core 0
/// (sluiced's worker has core 1); `extra` arguments after those.
fn start_generator(dir: &TestDir, name: &str, role: &str, rate: &str, duration: &str, extra: &[&str]) -> Proc {
    let port = memif(dir, role);
    let mut args = vec![
        "run",
        "--port",
        &port,
        "--dst",
        "198.18.0.0/20",
        "--flows",
        "4096",
        "--size",
        "64",
        "--rate",
        rate,
        "--duration",
        duration,
        "--dst-mac",
        "02:00:00:00:00:01",
        "--queues",
        "2",
        "--link-wait",
        "20s",
        "--eal",
        "--lcores 0@0,1@0",
        "--json",
        "-q",
    ];
    args.extend_from_slice(extra);
    Proc::start(dir, name, &args)
}

/// Stops `sluiced`, which must exit 0 with every pool's mbufs back; its JSON report.
fn stop_sluiced(dir: &TestDir, sluiced: Proc) -> serde_json::Value {
    assert!(sh(&format!("kill -TERM {}", sluiced.pid())));
    let done = sluiced.wait(LIMIT);
    assert_eq!(done.code, 0, "sluiced failed:\n{}", done.stderr);
    // The final report: every pool's mbufs back where they started.
    assert!(
        done.stdout.contains("no leak") && !done.stdout.contains("LEAK"),
        "{}",
        done.stdout
    );
    serde_json::from_str(&std::fs::read_to_string(dir.file("sluiced.json")).unwrap()).unwrap()
}

#[test]
fn peers_leaving_under_load_leave_sluiced_running() {
    let _g = serial();
    let dir = TestDir::new("teardown");
    let mut sluiced = start_sluiced(&dir, "server", "0");
    wait_said(&dir, &mut sluiced, "link down", 1);
    for i in 1..=PEERS {
        let killed = i % 2 == 1;
        let duration = if killed { "60s" } else { "1s" };
        let gen = start_generator(&dir, &format!("gen{i}"), "client", "max", duration, &[]);
        wait_said(&dir, &mut sluiced, "port \"lan\": link up", i);
        if killed {
            // Traffic flowing both ways, then the peer is gone without a word.
            std::thread::sleep(Duration::from_millis(700));
            assert!(sh(&format!("kill -KILL {}", gen.pid())));
            drop(gen);
        } else {
            let done = gen.wait(LIMIT);
            done.json();
        }
        wait_said(&dir, &mut sluiced, "port \"lan\": link down", i + 1);
        // The teardown's unmapping comes right after the link goes down.
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            sluiced.running(),
            "sluiced died when peer {i} left:\n{}",
            std::fs::read_to_string(dir.file("sluiced.stderr")).unwrap_or_default()
        );
    }
    let report = stop_sluiced(&dir, sluiced);
    let graces = &report["teardown_graces"];
    assert!(
        graces["graces"].as_u64().unwrap() >= PEERS as u64,
        "the driver's teardowns did not wait for the pollers: {graces}"
    );
    assert_eq!(graces["timed_out"], 0, "{graces}");
    // memif reads its counters from the current connection's rings, and reports 0 once
    // the last peer has gone: the report keeps the highest figures seen.
    let port = &report["ports"][0];
    assert!(
        port["rx_packets"].as_u64().unwrap() > 0 && port["tx_packets"].as_u64().unwrap() > 0,
        "the port's driver counters were lost: {port}"
    );
    let worker = &report["workers"][0];
    assert!(
        worker["rx_packets"].as_u64().unwrap() > 100_000 && worker["tx_packets"].as_u64().unwrap() > 100_000,
        "little traffic went through: {worker}"
    );
}

#[test]
fn a_memif_client_connects_when_its_server_comes_and_again_after_it_left() {
    let _g = serial();
    let dir = TestDir::new("client");
    // It waits for its link before forwarding, and connects while it waits: the first
    // server gives up after 20 s, before this wait would end by itself.
    let mut sluiced = start_sluiced(&dir, "client", "30");
    // No server yet: sluiced runs and keeps trying.
    wait_said(&dir, &mut sluiced, "no memif server answers yet", 1);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(sluiced.running());
    for i in 1..=3 {
        // Servers of 2 s at 500 kpps, giving sluiced's control thread time to see the
        // link up and route to it.
        let server = start_generator(
            &dir,
            &format!("server{i}"),
            "server",
            "500kpps",
            "2s",
            &["--settle", "500ms"],
        );
        let report = server.wait(LIMIT).json();
        let s = &report["streams"][0];
        let (tx, rx) = (s["tx_packets"].as_u64().unwrap(), s["rx_packets"].as_u64().unwrap());
        assert!(
            tx > 500_000 && rx * 100 >= tx * 99,
            "server {i}: {rx} of {tx} packets came back through sluiced\n{}",
            std::fs::read_to_string(dir.file("sluiced.stderr")).unwrap_or_default()
        );
        wait_said(
            &dir,
            &mut sluiced,
            &format!("connected to its memif server (connection {i})"),
            1,
        );
    }
    let report = stop_sluiced(&dir, sluiced);
    let port = &report["ports"][0];
    assert_eq!(port["memif_client"], true, "{port}");
    assert_eq!(port["connects"], 3, "{port}");
}

#[test]
fn nothing_is_sent_by_a_memif_client_waiting_for_its_server() {
    let _g = serial();
    let dir = TestDir::new("portdown");
    // "lan" takes the generator's traffic and routes it out of "wan", a memif client
    // whose server never comes: that port stays stopped, and no thread may call its
    // driver. Its link is down, so its routes are withdrawn and the packets are dropped
    // as `no_path`; one routed in the moment before that would be `port_down`. None
    // reaches the driver, so none is `tx_full`.
    let ports = format!(
        r#"
[[ports]]
name = "lan"
device = "{lan}"
mac = "02:00:00:00:00:01"
[[ports]]
name = "wan"
device = "net_memif1,role=client,id=0,socket={wan},socket-abstract=no"
mac = "02:00:00:00:00:03"
[[routes]]
prefix = "198.18.0.0/16"
port = "wan"
next_hop_mac = "02:00:00:00:00:04"
"#,
        lan = memif(&dir, "server"),
        wan = dir.file("wan.sock").display(),
    );
    let mut sluiced = start_sluiced_with(&dir, &ports, "0");
    wait_said(&dir, &mut sluiced, "no memif server answers yet", 1);
    let gen = start_generator(&dir, "gen", "client", "200kpps", "1s", &[]);
    let sent = gen.wait(LIMIT).json()["streams"][0]["tx_packets"].as_u64().unwrap();
    let report = stop_sluiced(&dir, sluiced);
    let w = &report["workers"][0];
    let drops = &report["drops"];
    let rx = w["rx_packets"].as_u64().unwrap();
    assert!(
        sent >= 100_000 && rx * 100 >= sent * 99,
        "sent {sent}, sluiced received {rx}: {w}"
    );
    assert_eq!(drops["tx_full"], 0, "{drops}");
    assert_eq!(w["tx_packets"], 0, "{w}");
    let counted: u64 = ["port_down", "no_path"]
        .iter()
        .map(|r| drops[r].as_u64().unwrap())
        .sum();
    assert_eq!(counted, rx, "{drops}");
    assert!(drops["no_path"].as_u64().unwrap() > 0, "{drops}");
}
