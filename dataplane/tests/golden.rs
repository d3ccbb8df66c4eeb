//! Golden pcap tests: `sluiced` reads crafted packets from a pcap file on one port and writes
//! what it forwards into pcap files on both ports. Every forwarded byte is checked against
//! an independently computed expectation, and every dropped packet is accounted for by
//! reason in the final counters.

mod common;

use common::*;
use dataplane::builder::{FrameSpec, PROTO_TCP};
use std::time::Duration;

const LAN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const WAN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
const NH_WAN: [u8; 6] = [0x02, 0, 0, 0, 0x0b, 0x01];
const NH_WAN6: [u8; 6] = [0x02, 0, 0, 0, 0x0b, 0x06];
const NH_LAN: [u8; 6] = [0x02, 0, 0, 0, 0x0a, 0x01];

fn v4(dst: &str, len: usize) -> FrameSpec {
    FrameSpec::udp4("10.1.0.1".parse().unwrap(), dst.parse().unwrap(), len)
}

fn with_ipv4_checksum(mut f: Vec<u8>, l3: usize) -> Vec<u8> {
    f[l3 + 10] = 0;
    f[l3 + 11] = 0;
    let ihl = (f[l3] & 0xf) as usize * 4;
    let c = inet_checksum(&f[l3..l3 + ihl]);
    f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
    f
}

/// What a router must make of `f`: new MACs, TTL - 1, header checksum recomputed in full.
fn routed_v4(f: &[u8], dst_mac: [u8; 6], src_mac: [u8; 6], l3: usize) -> Vec<u8> {
    let mut e = f.to_vec();
    e[..6].copy_from_slice(&dst_mac);
    e[6..12].copy_from_slice(&src_mac);
    e[l3 + 8] -= 1;
    with_ipv4_checksum(e, l3)
}

fn routed_v6(f: &[u8], dst_mac: [u8; 6], src_mac: [u8; 6]) -> Vec<u8> {
    let mut e = f.to_vec();
    e[..6].copy_from_slice(&dst_mac);
    e[6..12].copy_from_slice(&src_mac);
    e[14 + 7] -= 1;
    e
}

#[test]
fn forwards_rewrites_and_accounts_for_every_packet() {
    golden("flow");
}

/// Packet mode (no flow table) sends out the same bytes and drops the same packets for
/// the same reasons; it creates no flows.
#[test]
fn packet_mode_forwards_the_same() {
    golden("packet");
}

fn golden(mode: &str) {
    let dir = TestDir::new(&format!("golden-{mode}"));
    // ---- input, with the expected outcome of each packet
    let mut input: Vec<Vec<u8>> = Vec::new();
    let mut want_wan: Vec<Vec<u8>> = Vec::new();
    let mut want_lan: Vec<Vec<u8>> = Vec::new();

    let p = v4("198.18.1.1", 60).build();
    want_wan.push(routed_v4(&p, NH_WAN, WAN_MAC, 14));
    input.push(p);

    let mut tcp = v4("198.19.2.2", 100);
    tcp.proto = PROTO_TCP;
    tcp.dscp = 46;
    let p = tcp.build();
    want_lan.push(routed_v4(&p, NH_LAN, LAN_MAC, 14));
    input.push(p);

    let p = FrameSpec::udp6("2001:db8:1::1".parse().unwrap(), "2001:db8:100::1".parse().unwrap(), 90).build();
    want_wan.push(routed_v6(&p, NH_WAN6, WAN_MAC));
    input.push(p);

    let mut tagged = v4("198.18.1.2", 64);
    tagged.vlan = Some(100);
    let p = tagged.build();
    want_wan.push(routed_v4(&p, NH_WAN, WAN_MAC, 18));
    input.push(p);

    // A 9000-byte IP packet: several mbufs; the payload must come out whole.
    let p = v4("198.18.1.3", 9014).build();
    assert_eq!(p.len(), 9014);
    want_wan.push(routed_v4(&p, NH_WAN, WAN_MAC, 14));
    input.push(p);

    // ---- packets that must be dropped, by reason
    let mut ttl1 = v4("198.18.1.1", 60);
    ttl1.ttl = 1;
    input.push(ttl1.build()); // ttl_expired
    input.push(v4("203.0.113.9", 60).build()); // no_route
    input.push(v4("198.18.1.1", 60).build()[..20].to_vec()); // truncated (IPv4 header cut)
    let mut short = v4("198.18.1.1", 60).build();
    short[16..18].copy_from_slice(&200u16.to_be_bytes());
    input.push(with_ipv4_checksum(short, 14)); // truncated (total length beyond frame)
    let mut ihl = v4("198.18.1.1", 60).build();
    ihl[14] = 0x44;
    input.push(ihl); // bad_ip_header
    let mut bad = v4("198.18.1.1", 60).build();
    bad[24] ^= 0x55;
    input.push(bad); // bad_checksum
    let mut arp = vec![0xffu8; 6];
    arp.extend_from_slice(&LAN_MAC);
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    arp.resize(60, 0);
    input.push(arp); // to the control plane
    input.push(v4("192.0.2.1", 60).build()); // to the control plane (own address)
    input.push(v4("224.0.0.5", 60).build()); // not_unicast
    let mut lldp = v4("198.18.1.1", 60).build();
    lldp[12..14].copy_from_slice(&[0x88, 0xcc]);
    input.push(lldp); // unsupported_ethertype
    let mut hl1 = FrameSpec::udp6("2001:db8:1::1".parse().unwrap(), "2001:db8:100::1".parse().unwrap(), 90);
    hl1.ttl = 1;
    input.push(hl1.build()); // ttl_expired
    input.push(v4("198.19.2.2", 2000).build()); // mtu_exceeded (lan has MTU 1500)
    let mut udp_len = v4("198.18.1.1", 60).build();
    udp_len[38..40].copy_from_slice(&300u16.to_be_bytes());
    input.push(udp_len); // bad_l4_header (UDP length beyond the IP packet)
    let plain = v4("198.18.1.1", 64).build();
    let mut three_tags = plain[..12].to_vec();
    for _ in 0..3 {
        three_tags.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
    }
    three_tags.extend_from_slice(&plain[12..]);
    input.push(three_tags); // too_many_vlan_tags
    let mut ext = FrameSpec::udp6("2001:db8:1::1".parse().unwrap(), "2001:db8:100::1".parse().unwrap(), 90).build();
    ext[20] = 60; // destination options, whose length runs past the packet
    ext[55] = 200;
    input.push(ext); // bad_extension_header

    let n_in = input.len();
    write_pcap(&dir.file("in.pcap"), &input);
    write_pcap(&dir.file("empty.pcap"), &[]);

    let cfg = format!(
        "{eal}\n\
         [[ports]]\nname = \"lan\"\ndevice = \"net_pcap0,rx_pcap={d}/in.pcap,tx_pcap={d}/lan-out.pcap\"\n\
         mac = \"02:00:00:00:00:0a\"\nipv4 = [\"192.0.2.1/24\"]\nmtu = 1500\n\
         [[ports]]\nname = \"wan\"\ndevice = \"net_pcap1,rx_pcap={d}/empty.pcap,tx_pcap={d}/wan-out.pcap\"\n\
         mac = \"02:00:00:00:00:0b\"\nipv4 = [\"203.0.113.1/30\"]\nmtu = 9000\n\
         [[routes]]\nprefix = \"198.18.0.0/16\"\nport = \"wan\"\nnext_hop_mac = \"02:00:00:00:0b:01\"\n\
         [[routes]]\nprefix = \"198.19.0.0/16\"\nport = \"lan\"\nnext_hop_mac = \"02:00:00:00:0a:01\"\n\
         [[routes]]\nprefix = \"2001:db8:100::/48\"\nport = \"wan\"\nnext_hop_mac = \"02:00:00:00:0b:06\"\n\
         [flows]\nmode = \"{mode}\"\n",
        eal = eal_section(&dir.prefix("d")),
        d = dir.path.display()
    );
    let cfg = dir.write("sluice.toml", &cfg);
    let stats_file = dir.file("stats.json");
    let out = run(
        &dir,
        "d",
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--duration",
            "1.5",
            "--stats-file",
            stats_file.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    out.assert_ok();

    // ---- forwarded packets, byte by byte, in order
    let got_wan = read_pcap(&dir.file("wan-out.pcap"));
    let got_lan = read_pcap(&dir.file("lan-out.pcap"));
    assert_eq!(got_wan.len(), want_wan.len(), "packets out of wan");
    assert_eq!(got_lan.len(), want_lan.len(), "packets out of lan");
    for (i, (g, w)) in got_wan.iter().zip(&want_wan).enumerate() {
        assert_eq!(g.len(), w.len(), "wan packet {i} length");
        if let Some(at) = g.iter().zip(w.iter()).position(|(a, b)| a != b) {
            panic!(
                "wan packet {i} differs first at byte {at}: got {:#04x}, want {:#04x}",
                g[at], w[at]
            );
        }
    }
    assert_eq!(got_lan, want_lan, "lan packets");
    // Every IPv4 header that left verifies.
    for f in got_wan.iter().chain(&got_lan) {
        let l3 = if f[12..14] == [0x81, 0x00] { 18 } else { 14 };
        if f[l3 - 2..l3] == [0x08, 0x00] {
            assert_eq!(
                inet_checksum(&f[l3..l3 + 20]),
                0,
                "IPv4 header checksum of a sent packet"
            );
        }
    }

    // ---- counters: every input packet is either sent or dropped for a stated reason
    let s = stats(&stats_file);
    let drops = &s["drops"];
    let expect = [
        ("ttl_expired", 2),
        ("no_route", 1),
        ("truncated", 2),
        ("bad_ip_header", 1),
        ("bad_checksum", 1),
        ("not_unicast", 1),
        ("unsupported_ethertype", 1),
        ("mtu_exceeded", 1),
        ("bad_l4_header", 1),
        ("too_many_vlan_tags", 1),
        ("bad_extension_header", 1),
        ("tx_full", 0),
    ];
    for (reason, n) in expect {
        assert_eq!(drops[reason], n, "drops[{reason}] in {drops}");
    }
    let dropped: u64 = drops.as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    let lan = &s["ports"][0];
    let wan = &s["ports"][1];
    assert_eq!(lan["worker_rx_packets"], n_in as u64);
    assert_eq!(lan["rx_packets"], n_in as u64, "driver and worker agree");
    assert_eq!(wan["tx_packets"], want_wan.len() as u64);
    assert_eq!(lan["tx_packets"], want_lan.len() as u64);
    // ARP and the packet to the appliance's own address went to the control plane: the
    // ARP asks for no one (target 0.0.0.0) and UDP to a port the appliance does not serve
    // is counted; neither is answered.
    let cp = &s["control_plane"];
    assert_eq!(cp["packets"], 2, "{cp}");
    assert_eq!(cp["handled"], 2, "{cp}");
    assert_eq!(cp["arp_answered"], 0, "{cp}");
    assert_eq!(cp["unhandled"]["udp port"], 1, "{cp}");
    assert_eq!(
        dropped + 2 + (want_wan.len() + want_lan.len()) as u64,
        n_in as u64,
        "sent + dropped + to control = received"
    );
    // Every stage saw the burst, and the flows were recorded at shutdown.
    assert!(s["stages"]["parse_classify"]["packets"].as_u64().unwrap() >= n_in as u64);
    assert!(s["stages"]["route"]["cycles"].as_u64().unwrap() > 0);
    // Drops by stage add up: parse_classify 8 (truncated 2, bad IP header, bad checksum,
    // EtherType, L4 header, VLAN tags, extension header), route 5 (TTL 2, no route, not
    // unicast, MTU).
    assert_eq!(s["drops_by_stage"]["parse_classify"], 8, "{}", s["drops_by_stage"]);
    assert_eq!(s["drops_by_stage"]["route"], 5);
    assert_eq!(s["flows"]["mode"], mode);
    assert_eq!(s["flows"]["created"], s["flows"]["records"]["shutdown"]);
    // Flow mode: a flow per distinct forwarded or routed 5-tuple; packet mode: none.
    let created = s["flows"]["created"].as_u64().unwrap();
    if mode == "flow" {
        assert!(created >= want_wan.len() as u64, "{}", s["flows"]);
    } else {
        assert_eq!(created, 0, "{}", s["flows"]);
    }
    assert_no_leak(&s);
    assert!(
        out.stdout.contains("drops by reason:"),
        "summary printed:\n{}",
        out.stdout
    );
    assert!(out.stdout.contains("no leak"), "leak check printed:\n{}", out.stdout);
}

/// The egress port's source MAC comes from the device when none is configured, and a port
/// that sends nothing stays empty.
#[test]
fn device_mac_is_used_without_override() {
    let dir = TestDir::new("devmac");
    let frames: Vec<Vec<u8>> = (0..50).map(|i| v4(&format!("198.18.0.{i}"), 60).build()).collect();
    write_pcap(&dir.file("in.pcap"), &frames);
    let cfg = format!(
        "{eal}\n[[ports]]\nname = \"a\"\ndevice = \"net_pcap0,rx_pcap={d}/in.pcap,tx_pcap={d}/out.pcap\"\n\
         [[routes]]\nprefix = \"198.18.0.0/24\"\nport = \"a\"\nnext_hop_mac = \"02:00:00:00:0b:01\"\n",
        eal = eal_section(&dir.prefix("d")),
        d = dir.path.display()
    );
    let cfg = dir.write("s.toml", &cfg);
    let sf = dir.file("stats.json");
    run(
        &dir,
        "d",
        &[
            "-c",
            cfg.to_str().unwrap(),
            "--duration",
            "1",
            "--stats-file",
            sf.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    )
    .assert_ok();
    let s = stats(&sf);
    let mac: Vec<u8> = s["ports"][0]["mac"]
        .as_str()
        .unwrap()
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    let got = read_pcap(&dir.file("out.pcap"));
    assert_eq!(got.len(), 50);
    for (g, f) in got.iter().zip(&frames) {
        assert_eq!(g, &routed_v4(f, NH_WAN, mac.clone().try_into().unwrap(), 14));
    }
    assert_no_leak(&s);
}
