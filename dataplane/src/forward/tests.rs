use super::*;
use crate::builder::FrameSpec;
use crate::wire::ones_complement_sum;
use control::Config;

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
[[routes]]
prefix = "198.18.0.0/16"
port = "b"
next_hop_mac = "02:00:00:00:0b:01"
[[routes]]
prefix = "198.18.7.0/24"
port = "a"
next_hop_mac = "02:00:00:00:0a:01"
[[routes]]
prefix = "2001:db8:100::/48"
port = "b"
next_hop_mac = "02:00:00:00:0b:06"
[[routes]]
prefix = "192.0.2.0/24"
port = "a"
next_hop_mac = "02:00:00:00:0a:02"
"#;

const MAC_A: [u8; 6] = [2, 0xaa, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [2, 0xbb, 0, 0, 0, 2];

fn table() -> ForwardTable {
    // Built once: tests run in parallel and must not see a half-written file.
    static TREE: std::sync::OnceLock<numa::FakeTree> = std::sync::OnceLock::new();
    let sys = TREE
        .get_or_init(|| numa::FakeTree::new("fwd-test").online_cpus("0-1"))
        .system();
    let cfg = Config::parse(CFG, "t.toml", &sys).unwrap();
    ForwardTable::build(&cfg, &[MAC_A, MAC_B]).unwrap()
}

fn run(t: &ForwardTable, f: &mut [u8]) -> Verdict {
    let len = f.len() as u32;
    t.forward(f, len, RxChecksum::Unknown)
}

fn v4(dst: &str) -> Vec<u8> {
    FrameSpec::udp4("10.0.0.1".parse().unwrap(), dst.parse().unwrap(), 60).build()
}

#[test]
fn forwards_ipv4_and_rewrites() {
    let t = table();
    let orig = v4("198.18.3.4");
    let mut f = orig.clone();
    assert_eq!(run(&t, &mut f), Verdict::Forward(1));
    assert_eq!(&f[0..6], &[2, 0, 0, 0, 0x0b, 1]);
    assert_eq!(&f[6..12], &MAC_B);
    assert_eq!(f[14 + 8], 63);
    assert_eq!(ones_complement_sum(&f[14..34]), 0xffff);
    // Only MACs, TTL and checksum change.
    for i in (12..f.len()).filter(|i| ![22, 24, 25].contains(i)) {
        assert_eq!(f[i], orig[i], "byte {i}");
    }
    // The longer prefix wins.
    let mut g = v4("198.18.7.9");
    assert_eq!(run(&t, &mut g), Verdict::Forward(0));
    assert_eq!(&g[6..12], &MAC_A);
}

#[test]
fn ipv4_drops() {
    let t = table();
    assert_eq!(run(&t, &mut v4("203.0.113.1")), Verdict::Drop(DropReason::NoRoute));
    assert_eq!(
        run(&t, &mut v4("192.0.2.1")),
        Verdict::Drop(DropReason::ForControlPlane)
    );
    assert_eq!(run(&t, &mut v4("192.0.2.77")), Verdict::Forward(0));
    assert_eq!(run(&t, &mut v4("224.0.0.5")), Verdict::Drop(DropReason::NotUnicast));
    assert_eq!(
        run(&t, &mut v4("255.255.255.255")),
        Verdict::Drop(DropReason::NotUnicast)
    );
    let mut ttl1 = v4("198.18.3.4");
    ttl1[22] = 1;
    ttl1[24..26].copy_from_slice(&[0, 0]);
    let c = crate::wire::checksum(&ttl1[14..34]);
    ttl1[24..26].copy_from_slice(&c.to_be_bytes());
    let before = ttl1.clone();
    assert_eq!(run(&t, &mut ttl1), Verdict::Drop(DropReason::TtlExpired));
    assert_eq!(ttl1, before, "a dropped packet is not modified");
    let mut bad = v4("198.18.3.4");
    bad[25] ^= 1;
    assert_eq!(run(&t, &mut bad), Verdict::Drop(DropReason::BadChecksum));
    // The device's verdict is trusted when it has one.
    let mut bad2 = v4("198.18.3.4");
    bad2[25] ^= 1;
    let l = bad2.len() as u32;
    assert_eq!(t.forward(&mut bad2, l, RxChecksum::Good), Verdict::Forward(1));
    let mut good = v4("198.18.3.4");
    assert_eq!(
        t.forward(&mut good, l, RxChecksum::Bad),
        Verdict::Drop(DropReason::BadChecksum)
    );
    assert_eq!(
        run(&t, &mut v4("198.18.3.4")[..30]),
        Verdict::Drop(DropReason::Truncated)
    );
    assert_eq!(
        run(&t, &mut v4("198.18.3.4")[..10]),
        Verdict::Drop(DropReason::Truncated)
    );
    let mut ihl = v4("198.18.3.4");
    ihl[14] = 0x43;
    assert_eq!(run(&t, &mut ihl), Verdict::Drop(DropReason::BadIpHeader));
    // Total length beyond the frame.
    let mut long = v4("198.18.3.4");
    long[16..18].copy_from_slice(&100u16.to_be_bytes());
    assert_eq!(run(&t, &mut long), Verdict::Drop(DropReason::Truncated));
    // Port b has MTU 1000.
    let mut big = FrameSpec::udp4("10.0.0.1".parse().unwrap(), "198.18.3.4".parse().unwrap(), 1100).build();
    assert_eq!(run(&t, &mut big), Verdict::Drop(DropReason::MtuExceeded));
    let mut arp = v4("198.18.3.4");
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    assert_eq!(run(&t, &mut arp), Verdict::Drop(DropReason::ForControlPlane));
    let mut lldp = v4("198.18.3.4");
    lldp[12..14].copy_from_slice(&[0x88, 0xcc]);
    assert_eq!(run(&t, &mut lldp), Verdict::Drop(DropReason::UnsupportedEthertype));
}

#[test]
fn ethernet_padding_and_chained_length() {
    let t = table();
    // A 60-byte frame whose IP packet is shorter (Ethernet padding) is forwarded.
    let mut f = FrameSpec::udp4("10.0.0.1".parse().unwrap(), "198.18.3.4".parse().unwrap(), 60).build();
    f[16..18].copy_from_slice(&40u16.to_be_bytes());
    f[24..26].copy_from_slice(&[0, 0]);
    let c = crate::wire::checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    assert_eq!(run(&t, &mut f), Verdict::Forward(1));
    // Headers in the first segment, payload in later ones: pkt_len counts the whole chain.
    let mut whole = FrameSpec::udp4("10.0.0.1".parse().unwrap(), "198.18.7.4".parse().unwrap(), 1500).build();
    assert_eq!(
        t.forward(&mut whole[..128], 1500, RxChecksum::Unknown),
        Verdict::Forward(0)
    );
}

#[test]
fn vlan_tagged() {
    let t = table();
    let mut s = FrameSpec::udp4("10.0.0.1".parse().unwrap(), "198.18.3.4".parse().unwrap(), 64);
    s.vlan = Some(100);
    let mut f = s.build();
    assert_eq!(run(&t, &mut f), Verdict::Forward(1));
    assert_eq!(&f[12..16], &[0x81, 0x00, 0, 100]);
    assert_eq!(f[18 + 8], 63);
    assert_eq!(ones_complement_sum(&f[18..38]), 0xffff);
}

#[test]
fn ipv6() {
    let t = table();
    let spec = |d: &str| FrameSpec::udp6("2001:db8::5".parse().unwrap(), d.parse().unwrap(), 80).build();
    let mut f = spec("2001:db8:100::9");
    assert_eq!(run(&t, &mut f), Verdict::Forward(1));
    assert_eq!(f[14 + 7], 63);
    assert_eq!(&f[0..6], &[2, 0, 0, 0, 0x0b, 6]);
    assert_eq!(&f[6..12], &MAC_B);
    assert_eq!(run(&t, &mut spec("2001:db9::1")), Verdict::Drop(DropReason::NoRoute));
    assert_eq!(
        run(&t, &mut spec("2001:db8::1")),
        Verdict::Drop(DropReason::ForControlPlane)
    );
    assert_eq!(
        run(&t, &mut spec("fe80::1")),
        Verdict::Drop(DropReason::ForControlPlane)
    );
    assert_eq!(
        run(&t, &mut spec("ff02::1:ff00:1")),
        Verdict::Drop(DropReason::ForControlPlane)
    );
    let mut hl = spec("2001:db8:100::9");
    hl[21] = 1;
    assert_eq!(run(&t, &mut hl), Verdict::Drop(DropReason::TtlExpired));
    let mut v = spec("2001:db8:100::9");
    v[14] = 0x40;
    assert_eq!(run(&t, &mut v), Verdict::Drop(DropReason::BadIpHeader));
    assert_eq!(
        run(&t, &mut spec("2001:db8:100::9")[..50]),
        Verdict::Drop(DropReason::Truncated)
    );
}
