use super::VecFrame as F;
use super::*;
use crate::builder::FrameSpec;
use crate::tables::Tables;
use crate::wire::ones_complement_sum;
use control::Config;
use routing::path::{Health, PathStatus};

const CFG: &str = r#"
[eal]
workers = [1]
[[ports]]
name = "a"
device = "net_null0"
ipv4 = ["192.0.2.1/24"]
ipv6 = ["2001:db8::1/64"]
[[ports]]
name = "b"
device = "net_null1"
mtu = 1000

[[classes]]
name = "voice"
priority = "p0"
dscp = "ef"
[[classes]]
name = "bulk"
priority = "p2"
dscp = "af11"
meter = { type = "token-bucket", rate = "8kbit", burst = 1000 }
exceed = "remark af13"
[[classes]]
name = "capped"
dscp = "cs1"
meter = { type = "token-bucket", rate = "8kbit", burst = 1000 }
exceed = "drop"
[[classes]]
name = "scavenger"
priority = "p1"
meter = { type = "token-bucket", rate = "8kbit", burst = 1000 }
exceed = "demote p3"

[[rules]]
class = "voice"
protocol = "udp"
dst_ports = "5060-5061"
[[rules]]
class = "bulk"
dst = "198.18.1.0/24"
[[rules]]
class = "capped"
dst = "198.18.2.0/24"
[[rules]]
class = "scavenger"
dst = "198.18.3.0/24"

[[paths]]
name = "aws"
cloud = "aws"
port = "b"
next_hop = "203.0.113.1"
next_hop_mac = "02:00:00:00:0b:01"
latency_ms = 10
[[paths]]
name = "gcp"
cloud = "gcp"
port = "b"
next_hop = "203.0.113.2"
next_hop_mac = "02:00:00:00:0b:02"
latency_ms = 11
[[path_groups]]
name = "clouds"
paths = ["aws", "gcp"]
policy = "active-active"
tolerance_pct = 50

[[routes]]
prefix = "198.18.0.0/16"
group = "clouds"
[[routes]]
prefix = "198.19.0.0/16"
port = "a"
next_hop_mac = "02:00:00:00:0a:01"
[[routes]]
prefix = "2001:db8:100::/48"
port = "b"
next_hop_mac = "02:00:00:00:0b:06"
"#;

const MAC_A: [u8; 6] = [2, 0xaa, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [2, 0xbb, 0, 0, 0, 2];

fn config() -> Config {
    config_from(CFG)
}

/// A configuration a test derived from `CFG`, on the same two-CPU machine.
fn config_from(text: &str) -> Config {
    static TREE: std::sync::OnceLock<numa::FakeTree> = std::sync::OnceLock::new();
    let sys = TREE
        .get_or_init(|| numa::FakeTree::new("pipeline-test").online_cpus("0-1"))
        .system();
    Config::parse(text, "t.toml", &sys).unwrap()
}

fn tables(cfg: &Config, generation: u32, status: Option<Vec<PathStatus>>) -> Tables {
    let status = status.unwrap_or_else(|| cfg.paths.iter().map(PathStatus::from_config).collect());
    Tables::build(cfg, &[MAC_A, MAC_B], &status, generation).unwrap()
}

struct Rig {
    t: Tables,
    p: Pipeline,
    c: Box<WorkerCounters>,
    shares: Shares,
}

impl Rig {
    fn new() -> Rig {
        let cfg = config();
        let t = tables(&cfg, 1, None);
        let timeouts = crate::flow::Timeouts::from_config(&cfg.flows);
        let mut p = Pipeline::new(4096, timeouts, 0, 1_000_000_000);
        let shares = Shares::new(1);
        p.sync_meters(&t, &shares, rdtsc);
        Rig {
            t,
            p,
            c: Box::default(),
            shares,
        }
    }

    fn run(&mut self, frames: &mut [F]) -> Vec<Verdict> {
        self.p.sync_meters(&self.t, &self.shares, rdtsc);
        self.p.process(&self.t, frames, 0, rdtsc(), &self.c, &mut |_| {});
        // Sent at once, as a worker sends them (`sent` counts the tx stage), and the
        // counts published as a worker's next, idle, poll does.
        self.p.sent(rdtsc(), frames.len() as u64, &self.c);
        self.p.publish_stages(&self.c);
        self.p.verdicts()[..frames.len()].to_vec()
    }

    fn one(&mut self, f: Vec<u8>) -> (Verdict, Vec<u8>) {
        let mut v = [F(f)];
        let out = self.run(&mut v);
        let [F(f)] = v;
        (out[0], f)
    }
}

fn udp4(dst: &str, dport: u16) -> Vec<u8> {
    let mut s = FrameSpec::udp4("10.0.0.1".parse().unwrap(), dst.parse().unwrap(), 100);
    s.dst_port = dport;
    s.ecn = 1;
    s.build()
}

fn out_port(v: Verdict) -> u16 {
    match v {
        Verdict::Out { port, .. } => port,
        other => panic!("expected Out, got {other:?}"),
    }
}

#[test]
fn routes_rewrites_and_keeps_checksums_valid() {
    let mut r = Rig::new();
    let (v, f) = r.one(udp4("198.19.0.9", 80));
    assert_eq!(out_port(v), 0);
    assert_eq!(&f[..6], &[2, 0, 0, 0, 0x0a, 1]);
    assert_eq!(&f[6..12], &MAC_A);
    assert_eq!(f[22], 63);
    assert_eq!(ones_complement_sum(&f[14..34]), 0xffff);
    // Default class: DSCP and ECN untouched.
    assert_eq!(f[15], 1);
    let s = r.c.snapshot(2);
    assert_eq!(s.stage_packets, vec![1, 1, 1, 1, 1, 1]);
    assert_eq!(s.stage_bursts[0], 1);
}

#[test]
fn class_sets_dscp_priority_and_leaves_ecn() {
    let mut r = Rig::new();
    let (v, f) = r.one(udp4("198.19.0.9", 5060));
    assert!(
        matches!(
            v,
            Verdict::Out {
                prio: Priority::P0,
                class: 1,
                ect: true,
                ..
            }
        ),
        "{v:?}"
    );
    assert_eq!(f[15], 46 << 2 | 1);
    assert_eq!(ones_complement_sum(&f[14..34]), 0xffff);
    // IPv6: the traffic class bits around the version and flow label.
    let mut s = FrameSpec::udp6(
        "2001:db8:5::1".parse().unwrap(),
        "2001:db8:100::9".parse().unwrap(),
        100,
    );
    s.dst_port = 5061;
    s.ecn = 2;
    let (v, f) = r.one(s.build());
    assert_eq!(out_port(v), 1);
    let tc = ((f[14] & 0x0f) << 4) | (f[15] >> 4);
    assert_eq!((f[14] >> 4, tc), (6, 46 << 2 | 2));
    assert_eq!(f[21], 63);
    assert_eq!(&f[..6], &[2, 0, 0, 0, 0x0b, 6]);
}

#[test]
fn exceed_actions() {
    let mut r = Rig::new();
    // A 1000-byte bucket: the first 100-byte packet of each class conforms; beyond ten
    // packets, bulk is remarked, capped is dropped, scavenger is demoted.
    let mut last = vec![];
    for _ in 0..12 {
        let mut burst = vec![
            F(udp4("198.18.1.1", 80)),
            F(udp4("198.18.2.1", 80)),
            F(udp4("198.18.3.1", 80)),
        ];
        let v = r.run(&mut burst);
        last = burst.into_iter().map(|f| f.0).collect::<Vec<_>>();
        let _ = v;
    }
    let v = r.p.verdicts()[..3].to_vec();
    assert_eq!(last[0][15] >> 2, 14, "bulk exceeds: af13");
    assert_eq!(ones_complement_sum(&last[0][14..34]), 0xffff);
    assert!(matches!(v[0], Verdict::Out { prio: Priority::P2, .. }));
    assert_eq!(v[1], Verdict::Drop(DropReason::MeterExceed));
    assert!(matches!(v[2], Verdict::Out { prio: Priority::P3, .. }), "{:?}", v[2]);
    let s = r.c.snapshot(2);
    // Ten conform (10 x 100 bytes), two exceed, per class.
    for class in 2..=4 {
        assert_eq!(s.class_packets[class * 3], 10, "class {class}");
        assert_eq!(s.class_packets[class * 3 + 1], 2, "class {class}");
    }
    assert_eq!(s.drop_count(DropReason::MeterExceed), 2);
}

#[test]
fn drops_and_control_plane() {
    let mut r = Rig::new();
    assert_eq!(r.one(udp4("203.0.113.9", 80)).0, Verdict::Drop(DropReason::NoRoute));
    assert_eq!(r.one(udp4("224.0.0.5", 80)).0, Verdict::Drop(DropReason::NotUnicast));
    assert_eq!(r.one(udp4("192.0.2.1", 80)).0, Verdict::Control);
    let mut f = udp4("198.19.0.9", 80);
    f[22] = 1;
    f[24] = 0;
    f[25] = 0;
    let c = crate::wire::checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    assert_eq!(r.one(f).0, Verdict::Drop(DropReason::TtlExpired));
    let big = FrameSpec::udp4("10.0.0.1".parse().unwrap(), "198.18.0.1".parse().unwrap(), 1100).build();
    assert_eq!(r.one(big).0, Verdict::Drop(DropReason::MtuExceeded));
    let mut bad = udp4("198.19.0.9", 80);
    bad[14] = 0x47;
    // IHL 7: the checksum over 28 bytes no longer holds.
    assert_eq!(r.one(bad).0, Verdict::Drop(DropReason::BadChecksum));
    let s = r.c.snapshot(2);
    assert_eq!(s.total_drops(), 5);
    assert_eq!(s.drop_count(DropReason::NoRoute), 1);
}

#[test]
fn flows_are_created_once_and_count() {
    let mut r = Rig::new();
    for _ in 0..5 {
        r.one(udp4("198.18.0.1", 80));
    }
    r.one(udp4("198.18.0.2", 80));
    assert_eq!(r.p.flows.len(), 2);
    assert_eq!(r.p.flows.counters.created, 2);
    let f = r.p.flows.get(r.p.pkts[0].flow);
    assert_eq!(f.state.packets, 1);
    let mut key = r.p.pkts[0].meta.key;
    key.dst = 0xc612_0001;
    let first = r.p.flows.lookup_or_insert(&key, key.hash(), 0, &mut |_| {});
    assert!(!first.new);
    assert_eq!(r.p.flows.get(first.index).state.packets, 5);
    assert_eq!(r.p.flows.get(first.index).state.bytes, 500);
}

/// Spreads 200 flows over the two active paths; draining one moves its flows to the
/// other and leaves the other's where they were.
#[test]
fn flows_keep_their_path_while_it_stays_up() {
    let cfg = config();
    let mut r = Rig::new();
    let mut before = vec![];
    for i in 0..200u16 {
        let v = r.one(udp4("198.18.9.9", 1000 + i));
        out_port(v.0);
        before.push(r.p.flows.get(r.p.pkts[0].flow).state.path);
    }
    let on_aws = before.iter().filter(|&&p| p == 0).count();
    assert!((50..150).contains(&on_aws), "{on_aws} of 200 on aws");
    // gcp goes down: a new snapshot.
    let mut status: Vec<PathStatus> = cfg.paths.iter().map(PathStatus::from_config).collect();
    status[1].health = Health::Down;
    let mut t = tables(&cfg, 2, Some(status));
    t.follow(&r.t);
    r.t = t;
    for i in 0..200u16 {
        let (_, f) = r.one(udp4("198.18.9.9", 1000 + i));
        let path = r.p.flows.get(r.p.pkts[0].flow).state.path;
        assert_eq!(path, 0, "flow {i} must be on aws");
        assert_eq!(&f[..6], &[2, 0, 0, 0, 0x0b, 1]);
    }
    // gcp recovers: flows stay where they are (only new flows would use it).
    let mut t = tables(&cfg, 3, None);
    t.follow(&r.t);
    r.t = t;
    for i in 0..200u16 {
        r.one(udp4("198.18.9.9", 1000 + i));
        assert_eq!(r.p.flows.get(r.p.pkts[0].flow).state.path, 0);
    }
    let mut fresh_on_gcp = 0;
    for i in 0..200u16 {
        r.one(udp4("198.18.9.9", 3000 + i));
        fresh_on_gcp += (r.p.flows.get(r.p.pkts[0].flow).state.path == 1) as usize;
    }
    assert!(fresh_on_gcp > 50, "{fresh_on_gcp}");
}

/// While no path of a group has a next hop MAC but one is being resolved, its packets
/// are routed and marked, then held for the control thread; once resolved they leave
/// directly, on the same path. A failed next hop holds nothing.
#[test]
fn packets_wait_for_a_next_hop_being_resolved() {
    let cfg = config();
    let mut r = Rig::new();
    let unresolved = |resolving: bool| {
        let mut st: Vec<PathStatus> = cfg.paths.iter().map(PathStatus::from_config).collect();
        st[0].mac = None;
        st[0].resolving = resolving;
        st[1].health = Health::Down;
        st
    };
    let mut t = tables(&cfg, 2, Some(unresolved(true)));
    t.follow(&r.t);
    r.t = t;
    let (v, f) = r.one(udp4("198.18.1.9", 80));
    assert_eq!(v, Verdict::Hold { path: 0 });
    // Routed and marked: TTL down, checksum right, class DSCP, our source MAC.
    assert_eq!(f[22], 63);
    assert_eq!(f[15] >> 2, 10, "af11");
    assert_eq!(ones_complement_sum(&f[14..34]), 0xffff);
    assert_eq!(&f[6..12], &MAC_B);
    let flow = r.p.pkts[0].flow;
    assert_eq!(r.p.flows.get(flow).state.path, 0);
    // Resolved: the next packet of the flow leaves directly with the MAC.
    let mut resolved: Vec<PathStatus> = cfg.paths.iter().map(PathStatus::from_config).collect();
    resolved[1].health = Health::Down;
    let mut t = tables(&cfg, 3, Some(resolved));
    t.follow(&r.t);
    r.t = t;
    let (v, f) = r.one(udp4("198.18.1.9", 80));
    assert_eq!(out_port(v), 1);
    assert_eq!(&f[..6], &[2, 0, 0, 0, 0x0b, 1]);
    assert_eq!(r.p.flows.get(r.p.pkts[0].flow).state.path, 0);
    // Failed (not resolving): nothing usable, nothing held.
    let mut t = tables(&cfg, 4, Some(unresolved(false)));
    t.follow(&r.t);
    r.t = t;
    assert_eq!(r.one(udp4("198.18.1.9", 80)).0, Verdict::Drop(DropReason::NoPath));
}

#[test]
fn dscp_rewrite_matches_full_recomputation() {
    // Random headers: the incremental checksum equals a full recomputation.
    let mut next = xorshift(0x1234_5678_9abc_def0);
    for _ in 0..2000 {
        let x = next();
        let mut s = FrameSpec::udp4(
            std::net::Ipv4Addr::from(x as u32),
            std::net::Ipv4Addr::from((x >> 32) as u32),
            60,
        );
        s.dscp = (x >> 8) as u8 & 63;
        s.ecn = (x >> 16) as u8 & 3;
        s.ttl = (x >> 24) as u8;
        let mut f = s.build();
        let m = match parse::parse(&f, 60, 0, RxChecksum::UNKNOWN) {
            Ok(parse::Parsed::Ip(m)) => m,
            other => panic!("{other:?}"),
        };
        let d = (x >> 40) as u8 & 63;
        set_dscp(&mut f, &m, d);
        assert_eq!(f[15], d << 2 | s.ecn);
        assert_eq!(ones_complement_sum(&f[14..34]), 0xffff);
        set_ce(&mut f, &m);
        assert_eq!(f[15] & 3, 3);
        assert_eq!(ones_complement_sum(&f[14..34]), 0xffff);
    }
}

#[test]
fn ttl_decrement_checksum_matches_recomputation() {
    // Every TTL, over headers with many checksum values.
    let mut x = 0x9e37_79b9u32;
    for ttl in 1..=255u8 {
        for _ in 0..40 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let mut s = FrameSpec::udp4(
                std::net::Ipv4Addr::from(x),
                std::net::Ipv4Addr::from(x.rotate_left(7)),
                60,
            );
            s.ttl = ttl;
            s.dscp = (x >> 3) as u8 & 63;
            let mut f = s.build();
            let hc = u16::from_le_bytes([f[24], f[25]]);
            f[22] -= 1;
            f[24..26].copy_from_slice(&checksum_ttl_decrement_le(hc).to_le_bytes());
            assert_eq!(ones_complement_sum(&f[14..34]), 0xffff, "ttl {ttl}");
        }
    }
}

/// RFC 1624's eqn. 3 for a TTL decrement, on the big-endian checksum as the RFC writes
/// it: HC' = ~(~HC + ~m + m'), where the word m holding TTL fell by 0x0100.
fn rfc1624_ttl_decrement(hc: u16) -> u16 {
    let mut sum = (!hc as u32) + 0xfeff;
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

#[test]
fn ttl_decrement_checksum_is_rfc1624s() {
    // Every checksum value: the little-endian form writes the bytes the RFC's form
    // writes, including which of the two zeros.
    for hc in 0..=u16::MAX {
        let be = rfc1624_ttl_decrement(hc).to_be_bytes();
        let le = checksum_ttl_decrement_le(u16::from_le_bytes(hc.to_be_bytes())).to_le_bytes();
        assert_eq!(le, be, "checksum {hc:#06x}");
    }
    // The one case with two ways to write the result: zero is written 0x0000, as a full
    // recomputation (the complement of a sum that is never zero) writes it.
    assert_eq!(rfc1624_ttl_decrement(0xfeff), 0x0000);
    assert_eq!(checksum_ttl_decrement_le(0xfffe), 0x0000);
}

/// A table of 1 024 flows flooded with bursts of 32 new flows in the same millisecond:
/// every packet either leaves with its own flow's decisions or is dropped as
/// `flow_evicted`; none uses another flow's entry. Every packet is a flow of its own, so
/// each flow, evicted or still live, counts exactly one packet. In timed bursts (all
/// lookups before the later stages) an eviction can take the flow of an earlier packet
/// of the same burst, which is then dropped; in the others each packet is done with its
/// flow before the next is looked up, and none is.
#[test]
fn eviction_within_a_burst_never_mixes_flows() {
    let cfg = config();
    let t = tables(&cfg, 1, None);
    for every in [1, 0] {
        let mut p = Pipeline::new(1024, crate::flow::Timeouts::from_config(&cfg.flows), 0, 1_000_000_000)
            .stage_timing_every(every);
        let shares = Shares::new(1);
        p.sync_meters(&t, &shares, rdtsc);
        let c: Box<WorkerCounters> = Box::default();
        let mut out = 0;
        let mut ended = Vec::new();
        for b in 0..200u32 {
            let mut burst: Vec<F> = (0..32u32)
                .map(|i| {
                    F(udp4(
                        &format!("198.19.{}.{}", (b * 32 + i) / 250 % 250, (b * 32 + i) % 250 + 1),
                        80,
                    ))
                })
                .collect();
            p.process(&t, &mut burst, 0, rdtsc(), &c, &mut |r| ended.push(r));
            for (i, v) in p.verdicts()[..32].iter().enumerate() {
                if let Verdict::Out { .. } = v {
                    out += 1;
                    if every == 1 {
                        assert_eq!(p.flows.get(p.pkts[i].flow).key, p.pkts[i].meta.key);
                    }
                }
            }
        }
        let s = c.snapshot(2);
        let evicted_drops = s.drop_count(DropReason::FlowEvicted);
        assert_eq!(out + evicted_drops, 200 * 32);
        assert!(p.flows.counters.evicted > 0);
        if every == 0 {
            assert_eq!(evicted_drops, 0);
        }
        p.flows.flush(&mut |r| ended.push(r));
        assert_eq!(ended.len(), 200 * 32);
        assert!(ended.iter().all(|r| r.flow.state.packets == 1), "timing every {every}");
    }
}

/// A reload that reorders the paths: flows stay on the same path by name.
#[test]
fn reload_keeps_paths_by_name() {
    let cfg = config();
    let mut r = Rig::new();
    let mut mac_of = vec![];
    for i in 0..100u16 {
        let (_, f) = r.one(udp4("198.18.9.9", 1000 + i));
        mac_of.push(f[..6].to_vec());
    }
    // The same paths, listed the other way round (indices swap), and a weight change that
    // alters the Maglev table: every flow's path is still selected, so none may move.
    let swapped = CFG
        .replacen("name = \"aws\"", "name = \"tmp\"", 1)
        .replacen("name = \"gcp\"", "name = \"aws\"", 1)
        .replacen("name = \"tmp\"", "name = \"gcp\"", 1)
        .replacen(
            "next_hop_mac = \"02:00:00:00:0b:01\"",
            "next_hop_mac = \"02:00:00:00:0b:XX\"",
            1,
        )
        .replacen(
            "next_hop_mac = \"02:00:00:00:0b:02\"",
            "next_hop_mac = \"02:00:00:00:0b:01\"",
            1,
        )
        .replacen(
            "next_hop_mac = \"02:00:00:00:0b:XX\"",
            "next_hop_mac = \"02:00:00:00:0b:02\"",
            1,
        );
    let cfg2 = config_from(&swapped);
    assert_eq!(cfg2.paths[0].name, "gcp");
    let mut t2 = tables(&cfg2, 2, None);
    t2.follow(&r.t);
    r.t = t2;
    for i in 0..100u16 {
        let (_, f) = r.one(udp4("198.18.9.9", 1000 + i));
        assert_eq!(f[..6].to_vec(), mac_of[i as usize], "flow {i} moved");
    }
    // Across link changes (same numbering) and then a renumbering, a flow decided in
    // generation 2 still finds its path by name in generation 5.
    let mut t3 = tables(&cfg2, 3, None);
    t3.follow(&r.t);
    let mut t4 = tables(&cfg2, 4, None);
    t4.follow(&t3);
    let mut t5 = tables(&cfg, 5, None);
    t5.follow(&t4);
    assert_eq!(
        t5.carry_path(2, 0),
        1,
        "gcp was path 0 in generation 2 and is path 1 now"
    );
    assert_eq!(t5.carry_path(4, 1), 0);
    assert_eq!(
        t5.carry_path(1, 0),
        crate::tables::PATH_NO_ROUTE,
        "two renumberings ago: chosen again"
    );
}

/// Mangled and random frames through the whole pipeline: no panic, every packet gets a
/// verdict, every drop is counted, and whatever leaves still has a valid IPv4 checksum.
#[test]
fn mangled_frames_never_crash_and_are_all_accounted() {
    let mut r = Rig::new();
    let mut next = xorshift(0x0123_4567_89ab_cdef);
    let bases: Vec<Vec<u8>> = vec![
        udp4("198.19.0.9", 80),
        udp4("198.18.1.1", 5060),
        {
            let mut s = FrameSpec::udp6(
                "2001:db8:5::1".parse().unwrap(),
                "2001:db8:100::9".parse().unwrap(),
                120,
            );
            s.vlan = Some(7);
            s.build()
        },
        {
            let mut s = FrameSpec::udp4("10.0.0.1".parse().unwrap(), "198.19.3.3".parse().unwrap(), 90);
            s.proto = crate::builder::PROTO_TCP;
            s.build()
        },
    ];
    let mut total = 0u64;
    let mut out = 0u64;
    let mut control = 0u64;
    for round in 0..3000 {
        let mut burst: Vec<F> = (0..32)
            .map(|_| {
                let mut f = bases[next() as usize % bases.len()].clone();
                match next() % 5 {
                    // Flip a few bytes anywhere (headers most likely matter).
                    0 | 1 => {
                        for _ in 0..1 + next() % 4 {
                            let i = next() as usize % f.len().min(80);
                            f[i] = next() as u8;
                        }
                    }
                    // Cut it short.
                    2 => f.truncate(next() as usize % f.len()),
                    // Random bytes of a random length, with an IP EtherType half the time.
                    3 => {
                        f = (0..next() % 200).map(|_| next() as u8).collect();
                        if f.len() > 14 && next().is_multiple_of(2) {
                            f[12..14].copy_from_slice(if next().is_multiple_of(2) {
                                &[8, 0]
                            } else {
                                &[0x86, 0xdd]
                            });
                        }
                    }
                    // Unchanged.
                    _ => {}
                }
                F(f)
            })
            .collect();
        let v = r.run(&mut burst);
        total += 32;
        for (verdict, f) in v.iter().zip(&burst) {
            match verdict {
                Verdict::Out { .. } => {
                    out += 1;
                    if f.0.len() >= 34 && f.0[12..14] == [8, 0] {
                        assert_eq!(ones_complement_sum(&f.0[14..34]), 0xffff, "round {round}");
                    }
                }
                Verdict::Control | Verdict::Hold { .. } => control += 1,
                Verdict::Drop(_) => {}
            }
        }
    }
    let s = r.c.snapshot(2);
    assert_eq!(out + control + s.total_drops(), total);
    assert!(
        out > 1000 && s.total_drops() > 1000,
        "out {out}, dropped {}",
        s.total_drops()
    );
}

/// xorshift64 from `seed`: deterministic random numbers for the random-burst tests.
fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

/// 32 frames toward every kind of destination (direct route, cloud group and its metered
/// classes, the appliance, no route), some TTLs at the edge, one in eight mangled.
fn random_burst(next: &mut impl FnMut() -> u64) -> Vec<Vec<u8>> {
    (0..32)
        .map(|_| {
            let dst = match next() % 6 {
                0 => format!("198.19.0.{}", next() % 256),
                1..=3 => format!("198.18.{}.{}", next() % 5, next() % 256),
                4 => "192.0.2.1".to_string(),
                _ => format!("203.0.{}.{}", next() % 256, next() % 256),
            };
            let mut s = FrameSpec::udp4(
                "10.0.0.1".parse().unwrap(),
                dst.parse().unwrap(),
                60 + next() as usize % 1200,
            );
            s.src_port = next() as u16;
            s.dst_port = [80, 443, 5060, 5061][next() as usize % 4];
            s.ecn = next() as u8 & 3;
            s.dscp = next() as u8 & 63;
            s.ttl = 1 + next() as u8 % 3;
            let mut f = s.build();
            if next().is_multiple_of(8) {
                let i = next() as usize % f.len().min(60);
                f[i] = next() as u8;
            }
            f
        })
        .collect()
}

/// Packet mode decides every packet as flow mode does (class, DSCP, priority, path, every
/// drop and its reason) and keeps no flows: the same bursts through both, compared verdict
/// by verdict and byte by byte. Meters are set far above what the test sends, so time
/// does not matter.
#[test]
fn packet_mode_decides_as_flow_mode_does() {
    let text = CFG.replace("rate = \"8kbit\"", "rate = \"100Gbit\"");
    let cfg = config_from(&text);
    let t = tables(&cfg, 1, None);
    let timeouts = crate::flow::Timeouts::from_config(&cfg.flows);
    let shares = Shares::new(1);
    let mut flow = Pipeline::new(1 << 16, timeouts, 0, 1_000_000_000);
    let mut packet = Pipeline::new(1 << 16, timeouts, 0, 1_000_000_000).packet_mode();
    assert!(packet.is_packet_mode() && !flow.is_packet_mode());
    let (cf, cp): (Box<WorkerCounters>, Box<WorkerCounters>) = (Box::default(), Box::default());
    let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
    let mut paths_seen = std::collections::HashSet::new();
    for round in 0..400 {
        let burst = random_burst(&mut next);
        let mut a: Vec<F> = burst.iter().cloned().map(F).collect();
        let mut b: Vec<F> = burst.iter().cloned().map(F).collect();
        flow.sync_meters(&t, &shares, rdtsc);
        packet.sync_meters(&t, &shares, rdtsc);
        flow.process(&t, &mut a, 0, rdtsc(), &cf, &mut |_| {});
        packet.process(&t, &mut b, 0, rdtsc(), &cp, &mut |_| {});
        for i in 0..32 {
            assert_eq!(flow.verdicts()[i], packet.verdicts()[i], "round {round} packet {i}");
            assert_eq!(a[i].0, b[i].0, "round {round} packet {i}: bytes out");
            if let Verdict::Out { .. } = flow.verdicts()[i] {
                paths_seen.insert(a[i].0[..6].to_vec());
            }
        }
    }
    // Both paths of the group and the direct route were used; no flow kept in packet mode.
    assert!(paths_seen.len() >= 3, "{paths_seen:?}");
    assert!(flow.flows.len() > 1000);
    assert_eq!(packet.flows.len(), 0);
    flow.publish_stages(&cf);
    packet.publish_stages(&cp);
    let (sf, sp) = (cf.snapshot(2), cp.snapshot(2));
    assert_eq!(sf.stage_packets, sp.stage_packets);
    assert_eq!(sf.class_packets, sp.class_packets);
    assert!(sf.total_drops() > 100);
    for r in DropReason::ALL {
        assert_eq!(sf.drop_count(r), sp.drop_count(r), "{}", r.name());
    }
}

/// A burst whose live packets are all of one class without a meter, and the same packets
/// in a burst with another class among them, decide and count alike.
#[test]
fn an_unmetered_class_alone_shapes_as_in_a_mixed_burst() {
    let voice = |i: u8| {
        let mut s = FrameSpec::udp4("10.0.0.1".parse().unwrap(), [198, 19, 0, i].into(), 100 + i as usize);
        s.dst_port = 5060;
        s.ecn = 1;
        s.build()
    };
    // Eight voice packets and one dropped in parsing (not live: the burst stays uniform).
    let mut alone: Vec<F> = (1..=8).map(|i| F(voice(i))).collect();
    alone.push(F(voice(9)[..30].to_vec()));
    // The same, with one packet of the default class among them.
    let mut mixed: Vec<F> = (1..=8).map(|i| F(voice(i))).collect();
    mixed.push(F(voice(9)[..30].to_vec()));
    mixed.push(F(udp4("198.19.0.10", 80)));

    let mut a = Rig::new();
    let va = a.run(&mut alone);
    let mut b = Rig::new();
    let vb = b.run(&mut mixed);
    assert_eq!(va[..9], vb[..9]);
    assert!(
        va[..8].iter().all(|v| matches!(
            v,
            Verdict::Out {
                prio: Priority::P0,
                class: 1,
                ect: true,
                ..
            }
        )),
        "{va:?}"
    );
    assert_eq!(va[8], Verdict::Drop(DropReason::Truncated));
    for (x, y) in alone.iter().zip(&mixed) {
        assert_eq!(x.0, y.0);
    }
    assert!(alone[..8].iter().all(|f| f.0[15] >> 2 == 46), "voice leaves as EF");
    let (sa, sb) = (a.c.snapshot(2), b.c.snapshot(2));
    let voice_bytes: u64 = (1..=8).map(|i| 100 + i as u64).sum();
    assert_eq!((sa.class_packets[3], sa.class_bytes[3]), (8, voice_bytes));
    assert_eq!((sb.class_packets[3], sb.class_bytes[3]), (8, voice_bytes));
    assert_eq!((sa.class_packets[0], sb.class_packets[0]), (0, 1));
    assert_eq!(sa.stage_packets[Stage::Shape as usize], 8);
    assert_eq!(sb.stage_packets[Stage::Shape as usize], 9);
}

/// Bursts timed stage by stage and bursts run in one pass per packet decide and count
/// alike: the same random bursts through a pipeline that times every burst and one that
/// times none, in flow mode and in packet mode, compared verdict by verdict, byte by
/// byte and counter by counter. The meters are those of `CFG` at 8 bit/s (so remarks,
/// drops and demotions happen), and on a clock said to run at 8 GHz the test's run time
/// refills a fraction of a byte: as packets are whole bytes, both see the same colours.
#[test]
fn fused_bursts_decide_as_staged_bursts_do() {
    let text = CFG.replace("rate = \"8kbit\"", "rate = \"8bit\"");
    let cfg = config_from(&text);
    let t = tables(&cfg, 1, None);
    let timeouts = crate::flow::Timeouts::from_config(&cfg.flows);
    let shares = Shares::new(1);
    for packet_mode in [false, true] {
        let new = |every| {
            let p = Pipeline::new(1 << 16, timeouts, 0, qos::meter::MAX_TSC_HZ).stage_timing_every(every);
            let mut p = if packet_mode { p.packet_mode() } else { p };
            p.sync_meters(&t, &shares, rdtsc);
            p
        };
        let (mut staged, mut fused) = (new(1), new(0));
        let (cs, cf): (Box<WorkerCounters>, Box<WorkerCounters>) = (Box::default(), Box::default());
        let mut next = xorshift(0x2545_f491_4f6c_dd1d);
        for round in 0..300 {
            let burst = random_burst(&mut next);
            let mut a: Vec<F> = burst.iter().cloned().map(F).collect();
            let mut b: Vec<F> = burst.iter().cloned().map(F).collect();
            staged.process(&t, &mut a, 0, rdtsc(), &cs, &mut |_| {});
            fused.process(&t, &mut b, 0, rdtsc(), &cf, &mut |_| {});
            for i in 0..32 {
                let at = format!("packet mode {packet_mode}, round {round}, packet {i}");
                assert_eq!(staged.verdicts()[i], fused.verdicts()[i], "{at}");
                assert_eq!(a[i].0, b[i].0, "{at}: bytes out");
            }
        }
        assert_eq!(staged.flows.len(), fused.flows.len());
        staged.publish_stages(&cs);
        fused.publish_stages(&cf);
        let (ss, sf) = (cs.snapshot(2), cf.snapshot(2));
        assert_same_counts(&ss, &sf, &format!("packet mode {packet_mode}"));
        // Every action of the tight meters happened.
        for r in [DropReason::MeterExceed, DropReason::NoRoute, DropReason::TtlExpired] {
            assert!(ss.drop_count(r) > 0, "{}", r.name());
        }
        assert!(
            ss.class_packets.iter().skip(1).step_by(3).any(|&n| n > 0),
            "no yellow packets"
        );
        // Timed bursts split their cycles between the stages; the others, never timed
        // stage by stage, leave them all unsplit.
        assert!(ss.stage_cycles[..5].iter().all(|&c| c > 0), "{:?}", ss.stage_cycles);
        assert_eq!(sf.stage_cycles[..5], [0; 5]);
    }
}

/// Two workers' counters agree on packets and bursts per stage, per-class packets and
/// bytes, and every drop reason (`at` says where, if not).
fn assert_same_counts(a: &crate::stats::WorkerSnapshot, b: &crate::stats::WorkerSnapshot, at: &str) {
    assert_eq!(a.stage_packets, b.stage_packets, "{at}");
    assert_eq!(a.stage_bursts, b.stage_bursts, "{at}");
    assert_eq!(a.class_packets, b.class_packets, "{at}");
    assert_eq!(a.class_bytes, b.class_bytes, "{at}");
    for r in DropReason::ALL {
        assert_eq!(a.drop_count(r), b.drop_count(r), "{at}: {}", r.name());
    }
}

/// A burst between the timed ones has its cycles, from rx to `sent`, split
/// between the stages (tx included) in the proportions the timed bursts measured.
#[test]
fn untimed_bursts_take_the_timed_split() {
    let mut r = Rig::new();
    r.p = Pipeline::new(4096, r.p.flows.timeouts, 0, 1_000_000_000).stage_timing_every(2);
    let frames: Vec<F> = (1..=32).map(|i| F(udp4(&format!("198.19.0.{i}"), 80))).collect();
    r.run(&mut frames.clone());
    let timed = r.c.snapshot(2);
    let split = r.p.split;
    // The shares add up to the whole, less rounding: each of the six is rounded down,
    // so together they fall short by at most five. (One may be 0: a thread preempted
    // inside one stage leaves the others a tiny share.)
    let shares: u64 = split.iter().sum();
    let short = Stage::COUNT as u64 - 1;
    assert!(((1 << 16) - short..=1 << 16).contains(&shares), "{split:?}");
    r.run(&mut frames.clone());
    let both = r.c.snapshot(2);
    assert_eq!(r.p.split, split, "an untimed burst does not move the split");
    assert_eq!(both.stage_packets, [64; Stage::COUNT]);
    assert_eq!(both.stage_bursts, [2; Stage::COUNT]);
    assert_split_by(&timed.stage_cycles, &both.stage_cycles, &split);
}

/// The stage cycles added between two snapshots, `before` and `after`, are split in the
/// proportions `split` gives. Their sum stands for the cycles split, short of them by the
/// rounding of the shares (at most 5 in 65536) and of each part (under 1 cycle each).
fn assert_split_by(before: &[u64], after: &[u64], split: &[u64; Stage::COUNT]) {
    let added: Vec<u64> = (0..Stage::COUNT).map(|i| after[i] - before[i]).collect();
    let whole: u64 = added.iter().sum();
    assert!(whole > 0, "{added:?}");
    for i in 0..Stage::COUNT {
        let want = (whole * split[i]) >> 16;
        assert!(
            added[i].abs_diff(want) <= Stage::COUNT as u64 + 2 + whole / 8_000,
            "stage {i}: {added:?} against split {split:?}"
        );
    }
}

/// Stage counts of untimed bursts wait in the pipeline until published; a timed burst
/// publishes them (under the split they ran with) before learning its own split, and
/// `publish_stages` does when asked, after which nothing is left to add.
#[test]
fn stage_counts_reach_the_counters_when_published() {
    let mut r = Rig::new();
    r.p = Pipeline::new(4096, r.p.flows.timeouts, 0, 1_000_000_000).stage_timing_every(3);
    r.p.sync_meters(&r.t, &r.shares, rdtsc);
    let frames: Vec<F> = (1..=32).map(|i| F(udp4(&format!("198.19.0.{i}"), 80))).collect();
    let burst = |r: &mut Rig| {
        r.p.process(&r.t, &mut frames.clone(), 0, rdtsc(), &r.c, &mut |_| {});
        r.p.sent(rdtsc(), 32, &r.c);
    };
    // Timed: published at once.
    burst(&mut r);
    let s = r.c.snapshot(2);
    assert_eq!(s.stage_packets, [32; Stage::COUNT]);
    assert_eq!(s.stage_bursts, [1; Stage::COUNT]);
    let split = r.p.split;
    // Two untimed bursts: kept.
    burst(&mut r);
    burst(&mut r);
    let kept = r.c.snapshot(2);
    assert_eq!(kept.stage_packets, [32; Stage::COUNT]);
    assert_eq!(kept.stage_cycles, s.stage_cycles);
    r.p.publish_stages(&r.c);
    let done = r.c.snapshot(2);
    assert_eq!(done.stage_packets, [96; Stage::COUNT]);
    assert_eq!(done.stage_bursts, [3; Stage::COUNT]);
    assert_split_by(&s.stage_cycles, &done.stage_cycles, &split);
    // Nothing left: publishing again adds nothing.
    r.p.publish_stages(&r.c);
    assert_eq!(r.c.snapshot(2), done);
    // The fourth burst is timed and published; the two after it wait again, until the
    // seventh, timed, publishes them with itself.
    burst(&mut r);
    assert_eq!(r.c.snapshot(2).stage_packets, [128; Stage::COUNT]);
    burst(&mut r);
    burst(&mut r);
    assert_eq!(r.c.snapshot(2).stage_packets, [128; Stage::COUNT]);
    burst(&mut r);
    assert_eq!(r.c.snapshot(2).stage_packets, [224; Stage::COUNT]);
    assert_eq!(r.c.snapshot(2).stage_bursts, [7; Stage::COUNT]);
}

/// The rx stage runs from the worker's last clock read (`polled`) to the start of
/// parse/classify, and a burst's arrival, for latency, is that read.
#[test]
fn rx_runs_from_the_clock_read_before_the_burst() {
    let mut r = Rig::new();
    r.p = Pipeline::new(4096, r.p.flows.timeouts, 0, 1_000_000_000).stage_timing_every(1);
    let mut frames: Vec<F> = (1..=32).map(|i| F(udp4(&format!("198.19.0.{i}"), 80))).collect();
    r.p.sync_meters(&r.t, &r.shares, rdtsc);
    // Far enough back that a preemption inside the other stages cannot outweigh it.
    let polled = rdtsc() - 1_000_000_000;
    r.p.process(&r.t, &mut frames, 0, polled, &r.c, &mut |_| {});
    assert_eq!(r.p.burst_tsc, polled);
    r.p.sent(rdtsc(), 32, &r.c);
    let s = r.c.snapshot(2);
    assert_eq!(s.stage_packets[Stage::Rx as usize], 32);
    assert_eq!(s.stage_bursts[Stage::Rx as usize], 1);
    let rx = s.stage_cycles[Stage::Rx as usize];
    assert!(rx >= 1_000_000_000, "{:?}", s.stage_cycles);
    // The split the timed burst taught gives rx nearly all of the whole.
    assert!(r.p.split[Stage::Rx as usize] > 60_000, "{:?}", r.p.split);
}

/// A group whose choice is one path still keeps flows on another path they may stay on
/// (the primary recovered; flows that failed over stay). With `recovery = "rebalance"`
/// nothing else may be kept and every flow goes back to the primary.
#[test]
fn a_one_path_choice_keeps_flows_on_kept_paths() {
    for rebalance in [false, true] {
        let mut text = CFG.replace(
            "policy = \"active-active\"\ntolerance_pct = 50",
            "policy = \"lowest-latency\"",
        );
        if rebalance {
            text.push_str("[probes]\nrecovery = \"rebalance\"\n");
        }
        let cfg = config_from(&text);
        let mut r = Rig::new();
        let mut status: Vec<PathStatus> = cfg.paths.iter().map(PathStatus::from_config).collect();
        status[0].health = Health::Down;
        r.t = tables(&cfg, 2, Some(status));
        r.p.sync_meters(&r.t, &r.shares, rdtsc);
        for i in 0..50u16 {
            let (_, f) = r.one(udp4("198.18.9.9", 1000 + i));
            assert_eq!(&f[..6], &[2, 0, 0, 0, 0x0b, 2], "aws down: flow {i} on gcp");
        }
        // aws is back: the choice is aws alone.
        let mut t = tables(&cfg, 3, None);
        t.follow(&r.t);
        r.t = t;
        let (want, on) = if rebalance { (0, "aws") } else { (1, "gcp") };
        for i in 0..50u16 {
            let (_, f) = r.one(udp4("198.18.9.9", 1000 + i));
            assert_eq!(
                r.p.flows.get(r.p.pkts[0].flow).state.path,
                want,
                "rebalance {rebalance}: flow {i} on {on}"
            );
            assert_eq!(f[5], want as u8 + 1);
        }
        let (_, f) = r.one(udp4("198.18.9.9", 5000));
        assert_eq!(f[5], 1, "a new flow takes aws");
    }
}

/// `one_port` names a port exactly when every packet of the burst leaves by it: on random
/// bursts (drops, control traffic, two ports), on bursts all to port a or all to port b,
/// on a burst of both and on a burst of one port with one packet dropped.
#[test]
fn one_port_only_when_every_packet_leaves_by_it() {
    let reference = |v: &[Verdict]| {
        let ports: Vec<Option<u16>> = v
            .iter()
            .map(|v| match v {
                Verdict::Out { port, .. } => Some(*port),
                _ => None,
            })
            .collect();
        match ports[0] {
            Some(p) if ports.iter().all(|&q| q == Some(p)) => Some(p),
            _ => None,
        }
    };
    let mut r = Rig::new();
    let mut next = xorshift(0x0f1e_2d3c_4b5a_6978);
    let mut seen = [0usize; 3];
    let to = |dst: &str, i: u16| {
        let mut s = FrameSpec::udp4("10.0.0.1".parse().unwrap(), dst.parse().unwrap(), 64);
        s.src_port = 1000 + i;
        F(s.build())
    };
    for round in 0..300 {
        let mut burst: Vec<F> = match round % 5 {
            0 | 1 => random_burst(&mut next).into_iter().map(F).collect(),
            2 => (0..32).map(|i| to(&format!("198.19.0.{i}"), i)).collect(),
            3 => (0..32).map(|i| to(&format!("198.18.0.{i}"), i)).collect(),
            _ => (0..32).map(|i| to(&format!("198.1{}.0.{i}", 8 + i % 2), i)).collect(),
        };
        if round % 10 == 2 {
            burst[7].0[22] = 1; // TTL 1, and the checksum no longer fits: dropped
        }
        let v = r.run(&mut burst);
        let want = reference(&v);
        assert_eq!(r.p.one_port(), want, "round {round}: {v:?}");
        seen[match want {
            None => 0,
            Some(0) => 1,
            Some(_) => 2,
        }] += 1;
    }
    assert!(seen.iter().all(|&k| k >= 30), "{seen:?}");
}

/// Plain forwarding (packet mode, no rules, an unmetered class) decides every packet as
/// the general steps do: the same random bursts, with TCP, IPv6, VLAN-tagged, multicast
/// and mangled frames among them, through a pipeline that takes the plain pass and one
/// timed stage by stage on every burst (which never does), compared verdict by verdict,
/// byte by byte (also after the egress scheduler's CE mark), by the port the whole burst
/// leaves by and counter by counter. For a
/// class that marks, one that does not, and one with an SLA that picks another path than
/// its group's only one; with every path up, with one down (a group of one path) and with
/// one being resolved (held).
#[test]
fn plain_forwarding_decides_as_the_general_steps_do() {
    // Without rules every packet is in class 0, `default`: the implicit one (no DSCP), or
    // `CFG`'s voice class renamed (p0, EF).
    let unmarked = format!(
        "{}{}",
        &CFG[..CFG.find("[[rules]]").unwrap()],
        &CFG[CFG.find("[[paths]]").unwrap()..]
    );
    let marking = unmarked.replacen("name = \"voice\"", "name = \"default\"", 1);
    // The cheapest path (aws) is the group's choice; as measured (below), only the other
    // meets the SLA.
    let sla = marking
        .replacen("dscp = \"ef\"\n", "dscp = \"ef\"\nsla = { latency_ms = 11.5 }\n", 1)
        .replacen("latency_ms = 10\n", "latency_ms = 10\ncost_per_gb = 0.01\n", 1)
        .replacen("latency_ms = 11\n", "latency_ms = 11\ncost_per_gb = 0.09\n", 1)
        .replacen(
            "policy = \"active-active\"\ntolerance_pct = 50\n",
            "policy = \"lowest-cost\"\n",
            1,
        );
    let mut kinds_seen = std::collections::HashSet::new();
    for (name, text) in [("marking", &marking), ("unmarked", &unmarked), ("sla", &sla)] {
        let cfg = config_from(text);
        for status in ["up", "one down", "held"] {
            let mut st: Vec<PathStatus> = cfg.paths.iter().map(PathStatus::from_config).collect();
            // Probed: aws 12 ms, gcp 11 ms (the SLA is judged on the average).
            for (s, ms) in st.iter_mut().zip([12.0, 11.0]) {
                s.figures = Some(routing::health::Figures {
                    rtt_avg_us: ms * 1000.0,
                    rounds_in_window: 10,
                    answered_in_window: 10,
                    ..Default::default()
                });
            }
            match status {
                "one down" => st[1].health = Health::Down,
                "held" => {
                    st[0].mac = None;
                    st[0].resolving = true;
                    st[1].health = Health::Down;
                }
                _ => {}
            }
            let t = tables(&cfg, 1, Some(st));
            let timeouts = crate::flow::Timeouts::from_config(&cfg.flows);
            let shares = Shares::new(1);
            let new = |every| {
                let mut p = Pipeline::new(16, timeouts, 0, 1_000_000_000)
                    .packet_mode()
                    .stage_timing_every(every);
                p.sync_meters(&t, &shares, rdtsc);
                p
            };
            let (mut general, mut plain) = (new(1), new(0));
            // As a worker sends bursts by one port (port 1 has a link rate, say): its
            // verdicts are left unwritten when the burst leaves whole by port 0.
            let mut whole = new(0).sends_whole(1);
            let class = plain::PlainClass::of(&t, &plain.meters).expect("a plain configuration");
            assert_eq!(class.sla, name == "sla");
            assert_eq!(class.dscp.is_some(), name != "unmarked");
            let (cg, cp, cw): (Box<WorkerCounters>, Box<WorkerCounters>, Box<WorkerCounters>) =
                (Box::default(), Box::default(), Box::default());
            let mut next = xorshift(0x6a09_e667_f3bc_c909);
            for round in 0..150 {
                // Half the bursts leave by one port or two: all plain to port 0 or to
                // both ports, all plain to port 1, or to port 0 with one VLAN-tagged
                // frame (which the general steps decide).
                let burst = match round % 6 {
                    3..=5 => (0..32)
                        .map(|i| {
                            let kind = (round % 6, round % 12 == 5);
                            let net = if kind == (4, false) && i == 31 || kind == (5, true) {
                                18
                            } else {
                                19
                            };
                            let dst = format!("198.{net}.0.{}", next() % 256);
                            if kind == (5, false) && i == 7 {
                                let mut s = FrameSpec::udp4("10.0.0.2".parse().unwrap(), dst.parse().unwrap(), 60);
                                s.vlan = Some(7);
                                s.build()
                            } else {
                                udp4(&dst, 80)
                            }
                        })
                        .collect(),
                    _ => varied_burst(&mut next),
                };
                let mut a: Vec<F> = burst.iter().cloned().map(F).collect();
                let mut b: Vec<F> = burst.iter().cloned().map(F).collect();
                let mut w: Vec<F> = burst.iter().cloned().map(F).collect();
                general.process(&t, &mut a, 0, rdtsc(), &cg, &mut |_| {});
                plain.process(&t, &mut b, 0, rdtsc(), &cp, &mut |_| {});
                whole.process(&t, &mut w, 0, rdtsc(), &cw, &mut |_| {});
                assert_eq!(general.bytes(), plain.bytes());
                assert_eq!(general.bytes(), whole.bytes());
                assert_eq!(general.one_port(), plain.one_port(), "{name}, {status}, round {round}");
                assert_eq!(general.one_port(), whole.one_port(), "{name}, {status}, round {round}");
                assert!(plain.has_verdicts());
                assert_eq!(plain.whole_port(), None);
                assert_eq!(whole.whole_port(), whole.one_port().filter(|&p| p == 0));
                // Unwritten exactly for the bursts all plain to port 0.
                match round % 6 {
                    3 => assert!(!whole.has_verdicts(), "{name}, {status}, round {round}"),
                    5 => assert!(whole.has_verdicts(), "{name}, {status}, round {round}"),
                    _ if whole.one_port() != Some(0) => assert!(whole.has_verdicts()),
                    _ => {}
                }
                kinds_seen.insert(format!(
                    "one port {:?}, verdicts {}",
                    plain.one_port(),
                    whole.has_verdicts()
                ));
                for i in 0..32 {
                    let at = format!("{name}, {status}, round {round}, packet {i}");
                    let v = general.verdicts()[i];
                    assert_eq!(v, plain.verdicts()[i], "{at}");
                    assert_eq!(a[i].0, b[i].0, "{at}: bytes out");
                    assert_eq!(a[i].0, w[i].0, "{at}: bytes out");
                    if whole.has_verdicts() {
                        assert_eq!(v, whole.verdicts()[i], "{at}");
                    }
                    if let Verdict::Out { .. } = v {
                        set_ce(&mut a[i].0, general.meta(i));
                        set_ce(&mut b[i].0, plain.meta(i));
                        assert_eq!(a[i].0, b[i].0, "{at}: bytes after a CE mark");
                    }
                    let kind = match v {
                        Verdict::Out { port, .. } => format!("out {port} {:?}", &a[i].0[..6]),
                        other => format!("{other:?}"),
                    };
                    if name == "sla" && status == "up" && a[i].0[12..14] == [8, 0] && a[i].0[30..32] == [198, 18] {
                        kinds_seen.insert(format!("sla: {kind}"));
                    }
                    kinds_seen.insert(kind);
                }
            }
            general.publish_stages(&cg);
            plain.publish_stages(&cp);
            whole.publish_stages(&cw);
            let sg = cg.snapshot(2);
            assert!(sg.stage_packets[Stage::Rx as usize] > 0, "{name}, {status}");
            for sp in [cp.snapshot(2), cw.snapshot(2)] {
                assert_same_counts(&sg, &sp, &format!("{name}, {status}"));
            }
        }
    }
    // Every way out was taken: both cloud paths, the direct route, the held path, the
    // control thread and the drops the bursts provoke.
    for want in [
        "out 1 [2, 0, 0, 0, 11, 1]",
        "out 1 [2, 0, 0, 0, 11, 2]",
        "sla: out 1 [2, 0, 0, 0, 11, 2]",
        "out 0 [2, 0, 0, 0, 10, 1]",
        "Hold { path: 0 }",
        "Control",
        "Drop(NoRoute)",
        "Drop(NotUnicast)",
        "Drop(TtlExpired)",
        "Drop(MtuExceeded)",
        "Drop(BadChecksum)",
        "one port Some(0), verdicts false",
        "one port Some(0), verdicts true",
        "one port Some(1), verdicts true",
        "one port None, verdicts true",
    ] {
        assert!(kinds_seen.contains(want), "{want} not seen in {kinds_seen:?}");
    }
}

/// Flow mode's untimed bursts (`flowpass`) decide every packet as the timed bursts'
/// general steps do, most of them without those steps: bursts drawn from a pool of frames
/// (so most packets belong to flows already in the table), with new flows, TCP FIN, IPv6,
/// VLAN-tagged, multicast, TTL-expiring, oversized and mangled frames among them, through
/// a pipeline timed on every burst and one never timed. Compared verdict by verdict, byte
/// by byte (also after a CE mark), by the port the whole burst leaves by, counter by
/// counter and flow by flow, across a reload that takes a path down and with a next hop
/// being resolved; with the meters as tight as in `CFG` and far above what is sent.
#[test]
fn flow_pass_decides_as_the_general_steps_do() {
    let mut kinds_seen = std::collections::HashSet::new();
    for rate in ["8bit", "100Gbit"] {
        let cfg = config_from(&CFG.replace("rate = \"8kbit\"", &format!("rate = \"{rate}\"")));
        for status in ["up", "held"] {
            let mut st: Vec<PathStatus> = cfg.paths.iter().map(PathStatus::from_config).collect();
            if status == "held" {
                st[0].mac = None;
                st[0].resolving = true;
                st[1].health = Health::Down;
            }
            let before = tables(&cfg, 1, Some(st));
            // After the reload, gcp is down.
            let mut st: Vec<PathStatus> = cfg.paths.iter().map(PathStatus::from_config).collect();
            st[1].health = Health::Down;
            let after = tables(&cfg, 2, Some(st));
            let timeouts = crate::flow::Timeouts::from_config(&cfg.flows);
            let shares = Shares::new(1);
            let epoch = rdtsc();
            let new = |every| {
                Pipeline::new(4096, timeouts, 0, qos::meter::MAX_TSC_HZ)
                    .with_epoch(epoch)
                    .stage_timing_every(every)
            };
            let (mut general, mut fused) = (new(1), new(0));
            let (cg, cf): (Box<WorkerCounters>, Box<WorkerCounters>) = (Box::default(), Box::default());
            let mut next = xorshift(0xbb67_ae85_84ca_a73b);
            // Every kind of frame, and as many plain frames that simply leave, to every
            // class.
            let mut pool: Vec<Vec<u8>> = (0..2).flat_map(|_| varied_burst(&mut next)).collect();
            for i in 0..64u64 {
                let dst = format!("198.{}.{}.{}", 18 + i % 2, i % 4, next() % 256);
                let mut s = FrameSpec::udp4("10.0.0.3".parse().unwrap(), dst.parse().unwrap(), 60 + i as usize);
                s.src_port = next() as u16;
                s.dst_port = [80, 443, 5060][i as usize % 3];
                s.dscp = next() as u8 & 63;
                s.ecn = next() as u8 & 3;
                if i % 5 == 0 {
                    s.proto = parse::PROTO_TCP;
                }
                let f = s.build();
                if i % 10 == 0 {
                    // The same TCP flow ending (FIN, then RST).
                    for flag in [0x01, 0x04] {
                        let mut end = f.clone();
                        end[47] |= flag;
                        pool.push(end);
                    }
                }
                pool.push(f);
            }
            // The frames not for the flow pass: one burst in seven is all of them (but for
            // the odd new flow), which takes the general steps whole.
            let others: Vec<Vec<u8>> = pool
                .iter()
                .filter(|f| parse::plain_v4(f, f.len() as u32, RxChecksum::UNKNOWN).is_none())
                .cloned()
                .collect();
            let (mut fast, mut all, mut whole_bursts) = (0u32, 0u32, 0u32);
            for round in 0..300 {
                let t = if round < 150 { &before } else { &after };
                general.sync_meters(t, &shares, rdtsc);
                fused.sync_meters(t, &shares, rdtsc);
                let burst: Vec<Vec<u8>> = (0..32)
                    .map(|_| match next() % 16 {
                        0 => random_burst(&mut next).swap_remove(0),
                        _ if round % 7 == 3 => others[next() as usize % others.len()].clone(),
                        _ => pool[next() as usize % pool.len()].clone(),
                    })
                    .collect();
                let mut a: Vec<F> = burst.iter().cloned().map(F).collect();
                let mut b: Vec<F> = burst.iter().cloned().map(F).collect();
                let polled = rdtsc();
                general.process(t, &mut a, 0, polled, &cg, &mut |_| {});
                fused.process(t, &mut b, 0, polled, &cf, &mut |_| {});
                let at = format!("{rate}, {status}, round {round}");
                assert_eq!(general.bytes(), fused.bytes(), "{at}");
                assert_eq!(general.one_port(), fused.one_port(), "{at}");
                for i in 0..32 {
                    let at = format!("{at}, packet {i}");
                    let v = general.verdicts()[i];
                    assert_eq!(v, fused.verdicts()[i], "{at}");
                    assert_eq!(a[i].0, b[i].0, "{at}: bytes out");
                    if let Verdict::Out { .. } = v {
                        set_ce(&mut a[i].0, general.meta(i));
                        set_ce(&mut b[i].0, fused.meta(i));
                        assert_eq!(a[i].0, b[i].0, "{at}: bytes after a CE mark");
                    }
                    kinds_seen.insert(match v {
                        Verdict::Out { port, class, .. } => format!("out {port} class {class}"),
                        Verdict::Drop(r) => format!("{:?}", Verdict::Drop(r)),
                        other => format!("{:?}", std::mem::discriminant(&other)),
                    });
                }
                let general_steps = fused.plain_rest.expect("the flow pass ran");
                if round % 7 == 3 {
                    whole_bursts += (general_steps == u32::MAX) as u32;
                }
                fast += 32 - general_steps.count_ones();
                all += 32;
            }
            // (Held packets, until the reload, take the general steps.)
            let least = if status == "held" { 30 } else { 45 };
            assert!(
                fast * 100 > all * least,
                "{rate}, {status}: {fast} of {all} by the flow pass"
            );
            assert!(
                whole_bursts >= 20,
                "{rate}, {status}: {whole_bursts} bursts without plain packets"
            );
            general.publish_stages(&cg);
            fused.publish_stages(&cf);
            let (sg, sf) = (cg.snapshot(2), cf.snapshot(2));
            assert_same_counts(&sg, &sf, &format!("{rate}, {status}"));
            // The same flows, with the same counts and decisions.
            let flows = |p: &mut Pipeline| {
                let mut v = Vec::new();
                p.flows.flush(&mut |r| {
                    let f = r.flow;
                    v.push(format!(
                        "{:?} {} {} {} {} {} {} {} {} {}",
                        f.key,
                        f.state.packets,
                        f.state.bytes,
                        f.state.generation,
                        f.state.path,
                        f.state.class,
                        f.state.dscp_in,
                        f.state.dscp_out,
                        f.state.flags,
                        f.state.out_port
                    ))
                });
                v.sort();
                v
            };
            let (fg, ff) = (flows(&mut general), flows(&mut fused));
            assert!(fg.len() > 100, "{rate}, {status}: {} flows", fg.len());
            assert_eq!(fg.len(), ff.len(), "{rate}, {status}");
            for (g, f) in fg.iter().zip(&ff) {
                assert_eq!(g, f, "{rate}, {status}");
            }
            assert!(
                ff.iter().any(|f| f.contains("proto: 6") && f.ends_with(" 3 1")),
                "no closing flow"
            );
        }
    }
    for want in [
        "out 0 class 0",
        "out 1 class 0",
        "out 1 class 1",
        "out 1 class 2",
        "out 1 class 3",
        "Drop(MeterExceed)",
        "Drop(TtlExpired)",
        "Drop(MtuExceeded)",
        "Drop(NoRoute)",
        "Drop(NotUnicast)",
        "Drop(BadChecksum)",
    ] {
        assert!(kinds_seen.contains(want), "{want} not seen in {kinds_seen:?}");
    }
    assert!(kinds_seen.len() >= 14, "{kinds_seen:?}");
}

/// `random_burst` with one frame in four replaced by TCP (some ending), IPv6, a
/// VLAN-tagged frame or multicast.
fn varied_burst(next: &mut impl FnMut() -> u64) -> Vec<Vec<u8>> {
    let mut burst = random_burst(next);
    for f in burst.iter_mut() {
        let n = next();
        if !n.is_multiple_of(4) {
            continue;
        }
        let mut s = FrameSpec::udp4(
            "10.0.0.2".parse().unwrap(),
            format!("198.{}.{}.{}", 18 + n % 2, n % 5, (n >> 8) % 256)
                .parse()
                .unwrap(),
            60 + (n >> 16) as usize % 200,
        );
        s.ttl = 2 + (n >> 24) as u8 % 3;
        s.src_port = (n >> 32) as u16;
        match (n >> 4) % 4 {
            0 => s.proto = parse::PROTO_TCP,
            1 => {
                s = FrameSpec::udp6(
                    "2001:db8::9".parse().unwrap(),
                    format!("2001:db8:100::{}", n % 1000).parse().unwrap(),
                    80,
                );
                s.ttl = 2;
            }
            2 => s.vlan = Some(7),
            _ => s.src = crate::builder::IpAddrPair::V4("10.0.0.2".parse().unwrap(), "224.0.0.5".parse().unwrap()),
        }
        *f = s.build();
        if s.proto == parse::PROTO_TCP && (n >> 40).is_multiple_of(2) {
            // FIN.
            f[47] |= 0x01;
        }
    }
    burst
}
