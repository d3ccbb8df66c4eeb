//! Start-up and shutdown: SIGTERM and SIGINT stop a busy appliance cleanly with final
//! counters and every mbuf back in its pool; bad command lines are refused.

mod common;

use common::*;
use dataplane::builder::FrameSpec;
use std::time::{Duration, Instant};

fn busy_config(dir: &TestDir, role: &str) -> std::path::PathBuf {
    let frames: Vec<Vec<u8>> = (0..64)
        .map(|i| {
            // A mix of forwarded and dropped traffic, replayed forever.
            let dst = if i % 4 == 0 {
                format!("203.0.113.{i}")
            } else {
                format!("198.18.0.{i}")
            };
            FrameSpec::udp4("10.0.0.1".parse().unwrap(), dst.parse().unwrap(), 60).build()
        })
        .collect();
    write_pcap(&dir.file("loop.pcap"), &frames);
    let cfg = format!(
        "{eal}\n[[ports]]\nname = \"p\"\ndevice = \"net_pcap0,rx_pcap={d}/loop.pcap,infinite_rx=1\"\n\
         [[routes]]\nprefix = \"198.18.0.0/24\"\nport = \"p\"\nnext_hop_mac = \"02:00:00:00:0b:01\"\n",
        eal = eal_section(&dir.prefix(role)),
        d = dir.path.display()
    );
    dir.write(&format!("{role}.toml"), &cfg)
}

fn stops_on(signal: i32, name: &str) {
    let dir = TestDir::new(name);
    let cfg = busy_config(&dir, "d");
    let sf = dir.file("stats.json");
    let d = Daemon::start(
        &dir,
        "d",
        &[
            "-c",
            cfg.to_str().unwrap(),
            "--stats-interval",
            "0.5",
            "--stats-file",
            sf.to_str().unwrap(),
        ],
    );
    // Wait until it forwards, then signal it.
    let start = Instant::now();
    while !std::fs::read_to_string(&d.stdout).unwrap_or_default().contains("Mpps") {
        assert!(start.elapsed() < Duration::from_secs(30), "no live line within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(send_signal(d.pid(), signal), 0);
    let t = Instant::now();
    let out = d.wait(Duration::from_secs(20));
    out.assert_ok();
    assert!(t.elapsed() < Duration::from_secs(5), "stopping took {:?}", t.elapsed());
    assert!(out.stderr.contains("signal received"), "{}", out.stderr);
    assert!(out.stdout.contains("final counters"), "{}", out.stdout);
    let s = stats(&sf);
    let rx = s["ports"][0]["worker_rx_packets"].as_u64().unwrap();
    let tx = s["ports"][0]["worker_tx_packets"].as_u64().unwrap();
    let no_route = s["drops"]["no_route"].as_u64().unwrap();
    assert!(rx > 1000, "traffic flowed: {rx}");
    // A quarter of the replayed packets have no route; the rest were forwarded.
    assert_eq!(rx, tx + no_route + s["drops"]["tx_full"].as_u64().unwrap());
    assert!(
        no_route * 4 >= rx - 64 && no_route * 4 <= rx + 64,
        "no_route {no_route} of {rx}"
    );
    assert_no_leak(&s);
}

#[test]
fn sigterm_stops_cleanly() {
    stops_on(15, "sigterm");
}

#[test]
fn sigint_stops_cleanly() {
    stops_on(2, "sigint");
}

#[test]
fn bad_command_lines() {
    let dir = TestDir::new("cli");
    let cfg = busy_config(&dir, "d");
    let c = cfg.to_str().unwrap();
    for (args, needle) in [
        (vec!["-c", c, "--duration=-1"], "--duration"),
        (vec!["-c", c, "--stats-interval", "nan"], "--stats-interval"),
        (vec!["-c", c, "--log-level", "loud"], "unknown log level"),
        (vec!["-c", c, "--link-wait=-2"], "--link-wait"),
    ] {
        let out = run(&dir, "cli", &args, Duration::from_secs(20));
        assert_ne!(out.code(), 0, "{args:?}");
        assert!(out.stderr.contains(needle), "{args:?}: {}", out.stderr);
    }
}

#[test]
fn missing_device_fails_clearly() {
    let dir = TestDir::new("nodev");
    let cfg = format!(
        "{eal}\n[[ports]]\nname = \"p\"\ndevice = \"net_nosuchpmd0\"\n",
        eal = eal_section(&dir.prefix("d")),
    );
    let cfg = dir.write("s.toml", &cfg);
    let out = run(
        &dir,
        "d",
        &["-c", cfg.to_str().unwrap(), "--duration", "1"],
        Duration::from_secs(30),
    );
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("p = \"net_nosuchpmd0\""),
        "names the device: {}",
        out.stderr
    );
}
