//! Two `sluiced` processes joined by `net_memif`: A reads a pcap and routes into the memif
//! link; B receives from memif and routes into a pcap. Nothing is lost and both hops show
//! in the packets (TTL - 2, B's MACs).
//!
//! B is the memif server and A the client: a client's TX ring owns its buffers, so A can
//! queue its (finite) input as soon as the link is up. A server can only send into buffers
//! the client has handed it by polling, so the reverse roles would drop A's first bursts.

mod common;

use common::*;
use dataplane::builder::FrameSpec;
use std::time::Duration;

#[test]
fn memif_between_two_processes() {
    let dir = TestDir::new("memif");
    let n = 500;
    let frames: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            FrameSpec::udp4(
                "10.0.0.1".parse().unwrap(),
                format!("198.18.{}.{}", i / 250, i % 250).parse().unwrap(),
                60 + (i % 7) * 100,
            )
            .build()
        })
        .collect();
    write_pcap(&dir.file("in.pcap"), &frames);
    write_pcap(&dir.file("empty.pcap"), &[]);
    let sock = dir.file("memif.sock");
    let d = dir.path.display();
    let a = format!(
        "{eal}\n[[ports]]\nname = \"in\"\ndevice = \"net_pcap0,rx_pcap={d}/in.pcap\"\n\
         [[ports]]\nname = \"link\"\ndevice = \"net_memif0,role=client,id=7,socket={s},socket-abstract=no\"\nmac = \"02:00:00:00:aa:01\"\n\
         [[routes]]\nprefix = \"198.18.0.0/16\"\nport = \"link\"\nnext_hop_mac = \"02:00:00:00:bb:01\"\n",
        eal = eal_section(&dir.prefix("a")),
        s = sock.display()
    );
    let b = format!(
        "{eal}\n[[ports]]\nname = \"link\"\ndevice = \"net_memif0,role=server,id=7,socket={s},socket-abstract=no\"\nmac = \"02:00:00:00:bb:01\"\n\
         [[ports]]\nname = \"out\"\ndevice = \"net_pcap0,rx_pcap={d}/empty.pcap,tx_pcap={d}/out.pcap\"\nmac = \"02:00:00:00:bb:02\"\n\
         [[routes]]\nprefix = \"198.18.0.0/16\"\nport = \"out\"\nnext_hop_mac = \"02:00:00:00:cc:01\"\n",
        eal = eal_section(&dir.prefix("b")),
        s = sock.display()
    );
    let (ca, cb) = (dir.write("a.toml", &a), dir.write("b.toml", &b));
    let (sa, sb) = (dir.file("a.json"), dir.file("b.json"));
    // B listens; A connects and waits for the link before it reads its pcap.
    let db = Daemon::start(
        &dir,
        "b",
        &[
            "-c",
            cb.to_str().unwrap(),
            "--duration",
            "4",
            "--link-wait",
            "10",
            "--stats-file",
            sb.to_str().unwrap(),
        ],
    );
    std::thread::sleep(Duration::from_millis(300));
    let da = Daemon::start(
        &dir,
        "a",
        &[
            "-c",
            ca.to_str().unwrap(),
            "--duration",
            "3",
            "--link-wait",
            "10",
            "--stats-file",
            sa.to_str().unwrap(),
        ],
    );
    let ra = da.wait(Duration::from_secs(60));
    let rb = db.wait(Duration::from_secs(60));
    ra.assert_ok();
    rb.assert_ok();

    let got = read_pcap(&dir.file("out.pcap"));
    assert_eq!(
        got.len(),
        n,
        "every packet crossed both hops\nA: {}\nB: {}",
        ra.stdout,
        rb.stdout
    );
    for (g, f) in got.iter().zip(&frames) {
        assert_eq!(g.len(), f.len());
        assert_eq!(&g[..6], &[2, 0, 0, 0, 0xcc, 1]);
        assert_eq!(&g[6..12], &[2, 0, 0, 0, 0xbb, 2]);
        assert_eq!(g[22], f[22] - 2, "TTL decremented once per hop");
        assert_eq!(inet_checksum(&g[14..34]), 0);
        assert_eq!(&g[34..], &f[34..], "payload untouched");
    }
    let (sa, sb) = (stats(&sa), stats(&sb));
    assert_eq!(sa["ports"][1]["worker_tx_packets"], n as u64);
    // memif's own counters restart when the peer disconnects; the worker's do not.
    assert_eq!(sb["ports"][0]["worker_rx_packets"], n as u64);
    assert_eq!(sb["ports"][1]["worker_tx_packets"], n as u64);
    assert_eq!(sa["drops"]["tx_full"], 0);
    assert_no_leak(&sa);
    assert_no_leak(&sb);
}
