use super::*;
use crate::builder::{FrameSpec, PROTO_TCP};

fn v4(proto: u8) -> Vec<u8> {
    let mut s = FrameSpec::udp4("10.0.0.1".parse().unwrap(), "198.18.0.5".parse().unwrap(), 80);
    s.proto = proto;
    s.dscp = 46;
    s.ecn = 1;
    s.build()
}

fn ok(f: &[u8]) -> Meta {
    match parse(f, f.len() as u32, 3, RxChecksum::UNKNOWN) {
        Ok(Parsed::Ip(m)) => m,
        other => panic!("{other:?}"),
    }
}

fn err(f: &[u8]) -> DropReason {
    match parse(f, f.len() as u32, 0, RxChecksum::UNKNOWN) {
        Err(e) => e,
        other => panic!("expected a drop, got {other:?}"),
    }
}

/// Recomputes the IPv4 header checksum after a test edits the header.
fn fix_v4(f: &mut [u8], l3: usize) {
    let hl = (f[l3] & 0x0f) as usize * 4;
    f[l3 + 10] = 0;
    f[l3 + 11] = 0;
    let c = wire::checksum(&f[l3..l3 + hl]);
    f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
}

#[test]
fn udp4_fields() {
    let f = v4(PROTO_UDP);
    let m = ok(&f);
    assert_eq!(m.key.src, 0x0a00_0001);
    assert_eq!(m.key.dst, 0xc612_0005);
    assert_eq!((m.key.src_port, m.key.dst_port), (1024, 5001));
    assert_eq!(m.key.proto, 17);
    assert_eq!(m.key.family, 4);
    assert_eq!(m.key.in_port, 3);
    assert_eq!((m.l3, m.l4, m.ip_len), (14, 34, 66));
    assert_eq!((m.dscp(), m.ecn(), m.ttl), (46, 1, 64));
    assert_eq!(m.flags, 0);
}

#[test]
fn tcp_fin_rst_and_bad_offsets() {
    let mut f = v4(PROTO_TCP);
    let m = ok(&f);
    assert_eq!(m.key.proto, 6);
    assert_eq!(m.flags & meta_flag::TCP_END, 0);
    f[34 + 13] |= 0x01; // FIN
    assert_ne!(ok(&f).flags & meta_flag::TCP_END, 0);
    f[34 + 13] = 0x04; // RST
    assert_ne!(ok(&f).flags & meta_flag::TCP_END, 0);
    f[34 + 12] = 0x40; // data offset 16 bytes < 20
    assert_eq!(err(&f), DropReason::BadL4Header);
    f[34 + 12] = 0xf0; // 60 bytes > what is there
    assert_eq!(err(&f), DropReason::BadL4Header);
}

#[test]
fn ipv4_options_and_malformed_headers() {
    // IHL 6: four bytes of options (a NOP x4) inserted after the fixed header.
    let base = v4(PROTO_UDP);
    let mut f = base[..34].to_vec();
    f.extend_from_slice(&[1, 1, 1, 1]);
    f.extend_from_slice(&base[34..]);
    f[14] = 0x46;
    let total = u16::from_be_bytes([f[16], f[17]]) + 4;
    f[16..18].copy_from_slice(&total.to_be_bytes());
    fix_v4(&mut f, 14);
    let m = ok(&f);
    assert_eq!(m.l4, 38);
    assert_eq!(m.key.dst_port, 5001);

    let mut f = base.clone();
    f[14] = 0x44; // IHL 4
    assert_eq!(err(&f), DropReason::BadIpHeader);
    let mut f = base.clone();
    f[14] = 0x65; // version 6 in an IPv4 frame
    assert_eq!(err(&f), DropReason::BadIpHeader);
    let mut f = base.clone();
    f[16..18].copy_from_slice(&10u16.to_be_bytes()); // total length < header
    fix_v4(&mut f, 14);
    assert_eq!(err(&f), DropReason::BadIpHeader);
    let mut f = base.clone();
    f[16..18].copy_from_slice(&1500u16.to_be_bytes()); // longer than the frame
    fix_v4(&mut f, 14);
    assert_eq!(err(&f), DropReason::Truncated);
    let mut f = base.clone();
    f[22] ^= 0xff; // TTL changed, checksum not
    assert_eq!(err(&f), DropReason::BadChecksum);
    // The driver's verdict replaces the software check.
    assert!(parse(&f, f.len() as u32, 0, RxChecksum::GOOD).is_ok());
    assert_eq!(
        parse(&base, base.len() as u32, 0, RxChecksum::BAD),
        Err(DropReason::BadChecksum)
    );
    // Short frames at every length.
    for n in 0..42 {
        assert!(
            parse(&base[..n], n as u32, 0, RxChecksum::UNKNOWN).is_err(),
            "{n} bytes"
        );
    }
    // UDP length beyond the IP packet.
    let mut f = base.clone();
    f[38..40].copy_from_slice(&200u16.to_be_bytes());
    assert_eq!(err(&f), DropReason::BadL4Header);
}

#[test]
fn ipv4_fragments() {
    let base = v4(PROTO_UDP);
    // First fragment: MF set, offset 0 — keyed by its 5-tuple.
    let mut f = base.clone();
    f[20] = 0x20;
    fix_v4(&mut f, 14);
    let m = ok(&f);
    assert_eq!(m.flags, meta_flag::FIRST_FRAGMENT);
    assert_eq!(m.key.dst_port, 5001);
    // A later fragment: offset 185 (1480 bytes), no ports.
    let mut f = base.clone();
    f[20..22].copy_from_slice(&185u16.to_be_bytes());
    fix_v4(&mut f, 14);
    let m = ok(&f);
    assert_eq!(m.flags, meta_flag::LATER_FRAGMENT);
    assert_eq!((m.key.src_port, m.key.dst_port, m.key.proto), (0, 0, 17));
}

#[test]
fn vlan_and_qinq() {
    let mut s = FrameSpec::udp4("10.0.0.1".parse().unwrap(), "198.18.0.5".parse().unwrap(), 80);
    s.vlan = Some(100);
    let f = s.build();
    let m = ok(&f);
    assert_eq!((m.key.vlan, m.l3), (100, 18));
    // QinQ: outer 0x88a8 tag 200, inner 0x8100 tag 100.
    let mut q = f[..12].to_vec();
    q.extend_from_slice(&[0x88, 0xa8, 0x00, 200]);
    q.extend_from_slice(&f[12..]);
    let m = ok(&q);
    assert_eq!((m.key.vlan, m.l3), (200 << 12 | 100, 22));
    // Three tags is one too many.
    let mut t = q[..12].to_vec();
    t.extend_from_slice(&[0x81, 0x00, 0x00, 5]);
    t.extend_from_slice(&q[12..]);
    assert_eq!(err(&t), DropReason::TooManyVlanTags);
}

#[test]
fn arp_and_other_ethertypes() {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06]);
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&[0; 20]);
    assert_eq!(parse(&f, f.len() as u32, 0, RxChecksum::UNKNOWN), Ok(Parsed::Arp));
    assert_eq!(err(&f[..30]), DropReason::Truncated);
    f[12..14].copy_from_slice(&[0x88, 0xcc]); // LLDP
    assert_eq!(err(&f), DropReason::UnsupportedEthertype);
}

fn v6() -> Vec<u8> {
    let mut s = FrameSpec::udp6("2001:db8::1".parse().unwrap(), "2001:db8:100::5".parse().unwrap(), 100);
    s.dscp = 10;
    s.ecn = 2;
    s.build()
}

/// Inserts an extension header of `body` (8n bytes, first byte overwritten with the next
/// header) after the fixed IPv6 header and chains it in as `kind`.
fn with_ext(f: &[u8], kind: u8, body: &[u8]) -> Vec<u8> {
    let mut g = f[..54].to_vec();
    let mut b = body.to_vec();
    b[0] = f[20];
    g.extend_from_slice(&b);
    g.extend_from_slice(&f[54..]);
    g[20] = kind;
    let plen = u16::from_be_bytes([g[18], g[19]]) + body.len() as u16;
    g[18..20].copy_from_slice(&plen.to_be_bytes());
    g
}

#[test]
fn ipv6_fields_and_extension_headers() {
    let f = v6();
    let m = ok(&f);
    assert!(m.is_v6());
    assert_eq!(m.key.family, 6);
    assert_eq!(
        m.key.dst,
        u128::from("2001:db8:100::5".parse::<std::net::Ipv6Addr>().unwrap())
    );
    assert_eq!((m.dscp(), m.ecn(), m.ttl, m.l4), (10, 2, 64, 54));
    assert_eq!(m.key.dst_port, 5001);
    // Hop-by-hop then destination options: both skipped.
    let g = with_ext(
        &with_ext(&f, 60, &[0, 0, 1, 4, 0, 0, 0, 0]),
        0,
        &[0, 0, 1, 4, 0, 0, 0, 0],
    );
    let m = ok(&g);
    assert_eq!((m.key.proto, m.l4, m.key.dst_port), (17, 70, 5001));
    // Hop-by-hop anywhere but first is malformed.
    let g = with_ext(
        &with_ext(&f, 0, &[0, 0, 1, 4, 0, 0, 0, 0]),
        60,
        &[0, 0, 1, 4, 0, 0, 0, 0],
    );
    assert_eq!(err(&g), DropReason::BadExtensionHeader);
    // An extension header longer than the packet.
    let mut g = with_ext(&f, 60, &[0, 0, 1, 4, 0, 0, 0, 0]);
    g[55] = 200;
    assert_eq!(err(&g), DropReason::BadExtensionHeader);
    // A chain longer than the limit.
    let mut g = f.clone();
    for _ in 0..=MAX_EXTENSION_HEADERS {
        g = with_ext(&g, 60, &[0, 0, 1, 4, 0, 0, 0, 0]);
    }
    assert_eq!(err(&g), DropReason::BadExtensionHeader);
    // Fragment header: first fragment keeps its ports, a later one has none.
    let g = with_ext(&f, 44, &[0, 0, 0x00, 0x01, 0, 0, 0, 7]);
    let m = ok(&g);
    assert_eq!(
        (m.flags & meta_flag::FIRST_FRAGMENT, m.key.dst_port),
        (meta_flag::FIRST_FRAGMENT, 5001)
    );
    let g = with_ext(&f, 44, &[0, 0, 0x05, 0xc8, 0, 0, 0, 7]);
    let m = ok(&g);
    assert_eq!(
        (m.flags & meta_flag::LATER_FRAGMENT, m.key.dst_port, m.key.proto),
        (meta_flag::LATER_FRAGMENT, 0, 17)
    );
    // Payload length beyond the frame; wrong version.
    let mut g = f.clone();
    g[18..20].copy_from_slice(&900u16.to_be_bytes());
    assert_eq!(err(&g), DropReason::Truncated);
    let mut g = f.clone();
    g[14] = 0x45;
    assert_eq!(err(&g), DropReason::BadIpHeader);
}

#[test]
fn icmp_echo_ids() {
    // ICMPv4 echo request, id 0x1234.
    let mut f = v4(1);
    f[34..42].copy_from_slice(&[8, 0, 0, 0, 0x12, 0x34, 0, 1]);
    let m = ok(&f);
    assert_eq!((m.key.src_port, m.key.dst_port), (0x0800, 0x1234));
    // ICMPv6 echo reply.
    let mut g = v6();
    g[20] = 58;
    g[54..62].copy_from_slice(&[129, 0, 0, 0, 0xab, 0xcd, 0, 1]);
    let m = ok(&g);
    assert_eq!((m.key.proto, m.key.src_port, m.key.dst_port), (58, 129 << 8, 0xabcd));
    // Destination unreachable: no id.
    f[34] = 3;
    f[35] = 1;
    assert_eq!(ok(&f).key.dst_port, 0);
}

/// The reference: the one's-complement sum of the header's ten big-endian 16-bit words.
fn sums_to_ones_slowly(words: [u32; 5]) -> bool {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let mut sum: u32 = bytes.chunks(2).map(|w| u16::from_be_bytes([w[0], w[1]]) as u32).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum == 0xffff
}

/// The fast path's checksum test against the reference: on random words; on words whose
/// 64-bit sum is just short of 2^32 (a 32-bit fold of it would carry); and on words made
/// to sum right, some with one bit flipped, so that both answers are tested often. Then
/// the ends: every word 0 (wrong: a one's-complement sum is never 0 but for that), every
/// bit set (right), one 16-bit half off by 0xffff (the same sum, right), and a header
/// from the wire.
#[test]
fn checksum_fold_agrees_with_recomputation() {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut yes = 0;
    for i in 0..400_000u32 {
        let mut w = [next() as u32, next() as u32, next() as u32, next() as u32, 0];
        let head: u64 = w[..4].iter().map(|&v| v as u64).sum();
        w[4] = match i % 4 {
            // The low half of the whole sum at 2^32 - 1 - k: the 32-bit fold carries.
            0 => 0xffff_ffffu64.wrapping_sub(next() % 6).wrapping_sub(head) as u32,
            1 => next() as u32,
            // Make the sum right: the last word's high half takes what the others lack.
            _ => {
                let t = w[..4].iter().fold(0u32, |a, &v| {
                    let s = (v & 0xffff) + (v >> 16) + a;
                    (s & 0xffff) + (s >> 16)
                });
                let lo = next() as u32 & 0xffff;
                let s = t + lo;
                let s = (s & 0xffff) + (s >> 16);
                let hi = 0xffff - s;
                let hi = if i % 8 == 2 { hi ^ (1 << (next() % 16)) } else { hi };
                hi << 16 | lo
            }
        };
        let want = sums_to_ones_slowly(w);
        yes += want as u32;
        assert_eq!(sums_to_ones(w), want, "words {w:08x?}");
    }
    // Half the cases were made right and a quarter of those had a bit flipped, so about
    // three in eight are right: both answers ran.
    assert!(yes > 100_000, "only {yes} right sums");
    for w in [
        [0; 5],
        [u32::MAX; 5],
        [0, 0, 0, 0, 0xffff],
        [0xffff_0000, 0, 0, 0, 0],
        [1, 0, 0, 0, 0],
    ] {
        assert_eq!(sums_to_ones(w), sums_to_ones_slowly(w), "words {w:08x?}");
    }
    assert!(!sums_to_ones([0; 5]) && sums_to_ones([u32::MAX; 5]) && sums_to_ones([0, 0, 0xffff, 0, 0]));
    // 45 00 00 73 00 00 40 00 40 11 b8 61 c0 a8 00 01 c0 a8 00 c7 (checksum b861).
    let h = [
        0x45u8, 0, 0, 0x73, 0, 0, 0x40, 0, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0, 1, 0xc0, 0xa8, 0, 0xc7,
    ];
    let words = |h: &[u8]| std::array::from_fn(|i| u32::from_ne_bytes(h[4 * i..4 * i + 4].try_into().unwrap()));
    assert!(sums_to_ones(words(&h)));
    let mut bad = h;
    bad[11] ^= 1;
    assert!(!sums_to_ones(words(&bad)));
}
