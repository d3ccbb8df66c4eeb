use super::*;
use crate::wire::{be16, ipv4_header_checksum, l4_checksum};

const MS: u64 = 1_000_000;
const LAN_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
const WAN_MAC: [u8; 6] = [2, 0, 0, 0, 2, 1];
const GW_MAC: [u8; 6] = [2, 0, 0, 0, 9, 9];
const HOST_MAC: [u8; 6] = [2, 0, 0, 0, 7, 7];

fn config(extra: &str) -> Config {
    static TREE: std::sync::OnceLock<numa::FakeTree> = std::sync::OnceLock::new();
    let sys = TREE
        .get_or_init(|| numa::FakeTree::new("plane-test").online_cpus("0-3"))
        .system();
    let text = format!(
        r#"
[eal]
workers = [1]
[[ports]]
name = "lan"
device = "net_null0"
ipv4 = ["192.0.2.1/24"]
[[ports]]
name = "wan"
device = "net_null1"
ipv4 = ["203.0.113.1/24"]
ipv6 = ["2001:db8::1/64"]
[[paths]]
name = "aws"
cloud = "aws"
port = "wan"
next_hop = "203.0.113.10"
[[paths]]
name = "gcp"
cloud = "gcp"
port = "wan"
next_hop = "2001:db8::20"
[[paths]]
name = "static"
cloud = "onprem"
port = "lan"
next_hop = "192.0.2.50"
next_hop_mac = "02:00:00:00:05:05"
probe = "none"
[[path_groups]]
name = "g"
paths = ["aws", "gcp", "static"]
[[routes]]
prefix = "198.51.100.0/24"
group = "g"
{extra}
"#
    );
    Config::parse(&text, "t.toml", &sys).unwrap()
}

fn plane(cfg: &Config) -> Plane {
    let ports = PortInfo::from_config(cfg, &[LAN_MAC, WAN_MAC], &[true, true]);
    Plane::new(cfg, ports, 0, 1_700_000_000_000_000_000)
}

/// A cloud gateway owning 203.0.113.10 and 2001:db8::20: answers ARP, ND, echo and STAMP
/// (its clock is 5 s off ours and it holds each STAMP packet 300 µs).
fn gateway(f: &[u8]) -> Option<Vec<u8>> {
    let v4: Ipv4Addr = "203.0.113.10".parse().unwrap();
    let v6: Ipv6Addr = "2001:db8::20".parse().unwrap();
    let ours = |ip: IpAddr| ip == IpAddr::V4(v4) || ip == IpAddr::V6(v6);
    match packet::parse(f, 1).ok()?.pkt {
        Pkt::Arp { op: 1, sha, spa, tpa } if tpa == v4 => Some(packet::arp(2, sha, GW_MAC, v4, sha, spa)),
        Pkt::Solicit { src, target, sll } if target == v6 => {
            Some(packet::neighbor_advert(GW_MAC, v6, Some((src, sll.unwrap()))))
        }
        Pkt::EchoRequest { dst, .. } if ours(dst) => Some(packet::echo_reply(f, GW_MAC)),
        Pkt::Unhandled("udp port") => {
            let v6 = be16(f, 12) == 0x86dd;
            let (l3, l4) = (14, if v6 { 54 } else { 34 });
            let mut r = f[..l4 + 8 + packet::STAMP_LEN].to_vec();
            r.copy_within(6..12, 0);
            r[6..12].copy_from_slice(&GW_MAC);
            if v6 {
                let (a, b) = r[22..54].split_at_mut(16);
                a.swap_with_slice(b);
            } else {
                let (a, b) = r[26..34].split_at_mut(4);
                a.swap_with_slice(b);
                ipv4_header_checksum(&mut r, l3);
            }
            let p = l4 + 8;
            let sender: Vec<u8> = r[p..p + 14].to_vec();
            r[p + 24..p + 38].copy_from_slice(&sender);
            let t2 = ntp_from_unix_ns(1_700_000_005_000_000_000);
            let t3 = ntp_from_unix_ns(1_700_000_005_000_300_000);
            r[p..p + 4].copy_from_slice(&77u32.to_be_bytes());
            r[p + 4..p + 12].copy_from_slice(&t3.to_be_bytes());
            r[p + 16..p + 24].copy_from_slice(&t2.to_be_bytes());
            l4_checksum(&mut r, l3, l4, v6, l4 + 6, true);
            Some(r)
        }
        _ => None,
    }
}

/// Runs the plane against the gateway in 1 ms steps from `from` to `to` (ns): what it
/// sends on the WAN port comes back after `delay_ms` while `alive(t)`.
fn run(p: &mut Plane, from: u64, to: u64, delay_ms: u64, alive: impl Fn(u64) -> bool) {
    let mut flight: VecDeque<(u64, Vec<u8>)> = VecDeque::new();
    let mut t = from;
    while t < to {
        while flight.front().is_some_and(|(at, _)| *at <= t) {
            let (_, f) = flight.pop_front().unwrap();
            p.receive(1, &f, t);
        }
        p.tick(t);
        for (port, f) in p.take_out() {
            if port == 1 && alive(t) {
                if let Some(r) = gateway(&f) {
                    flight.push_back((t + delay_ms * MS, r));
                }
            }
        }
        t += MS;
    }
}

#[test]
fn answers_arp_echo_and_nd_for_its_own_addresses() {
    let cfg = config("");
    let mut p = plane(&cfg);
    let host: Ipv4Addr = "192.0.2.9".parse().unwrap();
    let me: Ipv4Addr = "192.0.2.1".parse().unwrap();
    p.receive(0, &packet::arp(1, packet::BROADCAST, HOST_MAC, host, [0; 6], me), 0);
    let out = p.take_out();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, 0);
    let r = packet::parse(&out[0].1, 862).unwrap();
    assert_eq!((r.dst_mac, r.src_mac), (HOST_MAC, LAN_MAC));
    assert_eq!(
        r.pkt,
        Pkt::Arp {
            op: 2,
            sha: LAN_MAC,
            spa: me,
            tpa: host
        }
    );
    // ARP for someone else, and for the WAN port's address on the LAN port: no answer.
    p.receive(
        0,
        &packet::arp(
            1,
            packet::BROADCAST,
            HOST_MAC,
            host,
            [0; 6],
            "192.0.2.77".parse().unwrap(),
        ),
        0,
    );
    p.receive(
        0,
        &packet::arp(
            1,
            packet::BROADCAST,
            HOST_MAC,
            host,
            [0; 6],
            "203.0.113.1".parse().unwrap(),
        ),
        0,
    );
    assert!(p.take_out().is_empty());
    // Echo to any own address.
    let ping = packet::echo_request(
        LAN_MAC,
        HOST_MAC,
        IpAddr::V4(host),
        "203.0.113.1".parse().unwrap(),
        9,
        1,
        b"abc",
    );
    p.receive(0, &ping, 0);
    let out = p.take_out();
    assert!(matches!(
        packet::parse(&out[0].1, 862).unwrap().pkt,
        Pkt::EchoReply { id: 9, seq: 1, .. }
    ));
    // IPv6: a solicitation for our address, from a host's link-local address.
    let ll: Ipv6Addr = "fe80::7".parse().unwrap();
    let me6: Ipv6Addr = "2001:db8::1".parse().unwrap();
    p.receive(1, &packet::neighbor_solicit(HOST_MAC, ll, me6, None), 0);
    let out = p.take_out();
    let r = packet::parse(&out[0].1, 862).unwrap();
    assert_eq!(r.dst_mac, HOST_MAC);
    assert_eq!(
        r.pkt,
        Pkt::Advert {
            src: me6,
            target: me6,
            tll: Some(WAN_MAC)
        }
    );
    let ping6 = packet::echo_request(WAN_MAC, HOST_MAC, IpAddr::V6(ll), IpAddr::V6(me6), 3, 4, b"");
    p.receive(1, &ping6, 0);
    assert_eq!(p.take_out().len(), 1);
    assert_eq!(
        (
            p.counters.arp_answered,
            p.counters.echo_answered,
            p.counters.nd_answered
        ),
        (1, 2, 1)
    );
    // Garbage is counted by reason, never answered.
    p.receive(0, &[0u8; 10], 0);
    p.receive(0, &ping[..30], 0);
    assert_eq!(p.counters.malformed.values().sum::<u64>(), 2);
    assert!(p.take_out().is_empty());
}

#[test]
fn announces_every_address() {
    let cfg = config("");
    let mut p = plane(&cfg);
    p.announce();
    let out = p.take_out();
    assert_eq!(out.len(), 3);
    let garp = packet::parse(&out[0].1, 862).unwrap();
    assert_eq!(garp.dst_mac, packet::BROADCAST);
    assert!(matches!(garp.pkt, Pkt::Arp { op: 1, spa, tpa, .. } if spa == tpa));
    assert!(matches!(packet::parse(&out[2].1, 862).unwrap().pkt, Pkt::Advert { .. }));
}

#[test]
fn resolves_next_hops_then_probes_and_measures() {
    let cfg = config("");
    let mut p = plane(&cfg);
    let st = p.statuses(&cfg, &[true, true]);
    assert_eq!(st[0].mac, None, "aws is not resolved yet");
    assert_eq!(st[2].mac, Some([2, 0, 0, 0, 5, 5]), "static");
    // Probes wait for resolution; the first requests go out at once.
    p.tick(0);
    let out = p.take_out();
    assert_eq!(out.len(), 2, "an ARP request and a solicitation");
    assert_eq!(p.paths[0].skipped, 1);
    run(&mut p, MS, 2000 * MS, 2, |_| true);
    assert!(p.take_changed());
    let st = p.statuses(&cfg, &[true, true]);
    assert_eq!((st[0].mac, st[1].mac), (Some(GW_MAC), Some(GW_MAC)));
    for i in 0..2 {
        let pr = &p.paths[i];
        assert!(pr.icmp_sent >= 15 && pr.icmp_sent <= 27, "{}", pr.icmp_sent);
        assert_eq!(pr.icmp_sent, pr.stamp_sent);
        // Either answer counts once per round; both were counted for themselves.
        assert!(pr.icmp_answered + 1 >= pr.icmp_sent && pr.stamp_answered + 1 >= pr.stamp_sent);
        assert_eq!(pr.health.state, Health::Up);
        assert_eq!(pr.late, 0);
        // The first answer of a round is the one measured: here the echo, sent first.
        let f = pr.health.figures();
        assert_eq!((f.rtt_min_us, f.rtt_max_us), (2000.0, 2000.0), "{f:?}");
        assert_eq!(pr.failovers, 0);
    }
    assert_eq!(p.paths[2].icmp_sent, 0, "probe = none");
    // Telemetry takes each answered round's RTT once.
    let answered = p.paths[0].health.answered as usize;
    let rtts = p.take_rtt_samples(0);
    assert_eq!(rtts.len(), answered);
    assert!(rtts.iter().all(|&r| r == 2 * MS), "{rtts:?}");
    assert!(p.take_rtt_samples(0).is_empty());
    assert!(p.take_rtt_samples(99).is_empty());
}

#[test]
fn next_hops_are_waited_for_only_while_resolving() {
    let cfg = config("");
    let mut p = plane(&cfg);
    let st = p.statuses(&cfg, &[true, true]);
    assert!(st[0].resolving && st[1].resolving);
    assert!(!st[2].resolving, "static");
    // Holding turned off: nothing is waited for.
    let off = config("[neighbors]\nqueue = 0\n");
    assert!(!p.statuses(&off, &[true, true])[0].resolving);
    // A silent gateway fails after its tries (5 x 200 ms) and is not waited for again,
    // not even while it is asked again.
    run(&mut p, 0, 4000 * MS, 1, |_| false);
    let st = p.statuses(&cfg, &[true, true]);
    assert_eq!(st[0].mac, None);
    assert!(!st[0].resolving && !st[1].resolving);
    // Answered: resolved, not resolving.
    run(&mut p, 4000 * MS, 7000 * MS, 1, |_| true);
    let st = p.statuses(&cfg, &[true, true]);
    assert!(st[0].mac.is_some() && !st[0].resolving);
}

#[test]
fn stamp_takes_the_reflector_hold_time_out_whatever_its_clock() {
    let cfg = config("");
    let text_cfg = {
        let mut c = cfg.clone();
        c.paths[0].probe = ProbeMode::Stamp;
        c
    };
    let mut p = plane(&text_cfg);
    run(&mut p, 0, 1000 * MS, 2, |_| true);
    let pr = &p.paths[0];
    assert_eq!(pr.icmp_sent, 0);
    assert!(pr.stamp_answered > 5);
    // 2 ms on the wire less the gateway's 300 µs hold; its clock is 5 s off ours.
    let f = pr.health.figures();
    assert!(
        (f.rtt_min_us - 1700.0).abs() < 0.01 && (f.rtt_max_us - 1700.0).abs() < 0.01,
        "{f:?}"
    );
}

#[test]
fn silent_gateway_is_down_within_200_ms_and_returns_after_hold_down() {
    let cfg = config("");
    let mut p = plane(&cfg);
    run(&mut p, 0, 1000 * MS, 1, |_| true);
    let silent_at = 1000 * MS;
    run(&mut p, silent_at, 4000 * MS, 1, |t| t < silent_at);
    let down = p
        .events
        .iter()
        .find(|e| e.path == "aws" && e.change.to == Health::Down)
        .expect("down");
    let took = down.at_ns - silent_at;
    assert!(took <= 200 * MS, "declared down {} ms after silence", took / MS);
    assert!(p.statuses(&cfg, &[true, true])[0].health == Health::Down);
    assert_eq!(p.paths[0].failovers, 1);
    // Back at 4 s: up only after the hold-down (3 s from the last miss) has run.
    let back_at = 4000 * MS;
    run(&mut p, back_at, 9000 * MS, 1, |_| true);
    let up = p
        .events
        .iter()
        .find(|e| e.path == "aws" && e.change.to == Health::Up)
        .expect("up again");
    assert!(
        up.at_ns >= back_at + 2900 * MS && up.at_ns <= back_at + 3200 * MS,
        "{}",
        up.at_ns / MS
    );
    // Coming back is not a failover.
    assert_eq!(p.paths[0].failovers, 1);
}

#[test]
fn slow_gateway_moves_the_timeout_with_its_rtt() {
    // A 80 ms round trip would miss a fixed 25 ms timeout every round.
    let cfg = config("");
    let mut p = plane(&cfg);
    run(&mut p, 0, 5000 * MS, 80, |_| true);
    assert_eq!(p.paths[0].health.state, Health::Up);
    assert!(p.events.is_empty(), "{:?}", p.events);
    assert!(p.timeout_ns(&p.paths[0]) >= 240 * MS);
}

#[test]
fn reload_keeps_health_by_name() {
    let cfg = config("");
    let mut p = plane(&cfg);
    run(&mut p, 0, 1000 * MS, 1, |_| true);
    let answered = p.paths[0].health.answered;
    assert!(answered > 5);
    let cfg2 = config("[probes]\ninterval_ms = 50\n");
    p.reconfigure(&cfg2, 1000 * MS);
    assert_eq!(p.paths[0].health.answered, answered);
    assert_eq!(p.settings.interval_ns, 50 * MS);
    assert_eq!(p.neigh.entries().len(), 2, "the static next hop is not tracked");
}

#[test]
fn paths_sharing_a_target_each_get_their_own_answers() {
    let cfg = config("[[paths]]\nname = \"aws-stamp\"\ncloud = \"aws\"\nport = \"wan\"\nnext_hop = \"203.0.113.10\"\nprobe = \"stamp\"\n");
    let mut p = plane(&cfg);
    run(&mut p, 0, 2000 * MS, 2, |_| true);
    let (a, b) = (&p.paths[0], &p.paths[3]);
    assert_eq!(b.target, a.target);
    for pr in [a, b] {
        assert!(pr.stamp_sent >= 15, "{}", pr.stamp_sent);
        assert!(
            pr.stamp_answered + 1 >= pr.stamp_sent,
            "{} of {}",
            pr.stamp_answered,
            pr.stamp_sent
        );
        assert_eq!(pr.health.state, Health::Up);
        assert_eq!(pr.health.missed, 0);
    }
    assert!(
        !p.counters.unhandled.contains_key("stamp reply to no probe"),
        "{:?}",
        p.counters.unhandled
    );
}
