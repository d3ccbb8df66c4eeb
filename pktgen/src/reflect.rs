//! The reflector's logic, without DPDK: which gateway a frame is for, and the frame
//! rewritten into the answer — ARP reply, IPv6 neighbour advertisement, ICMP/ICMPv6 echo
//! reply, a STAMP (RFC 8762) session-reflector packet, or data returned to its sender —
//! plus each gateway's impairments (delay, jitter, loss, reordering, duplication) and
//! its up/down schedule.

use crate::spec::{parse_duration_ns, parse_mac, SpecError};
pub use dataplane::wire::ntp_from_unix_ns;
use dataplane::wire::{be16, checksum_update16, ipv4_header_checksum, l4_checksum};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::Path;

pub const STAMP_PORT: u16 = 862;
/// A STAMP test packet, unauthenticated, is 44 bytes of UDP payload both ways.
pub const STAMP_LEN: usize = 44;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnMode {
    /// Swap MACs, addresses and ports: the data comes back as the reverse flow.
    Swap,
    /// Swap MACs only: the same packet comes back unchanged above Ethernet.
    MacSwap,
}

#[derive(Debug, Clone)]
pub struct Gateway {
    pub name: String,
    pub ip: IpAddr,
    pub mac: [u8; 6],
    pub delay_ns: u64,
    pub jitter_ns: u64,
    /// Loss probability scaled to 2^32.
    pub loss: u32,
    pub loss_ratio: f64,
    pub reorder_every: u64,
    pub duplicate_every: u64,
    /// Windows [from, to) in ns since the reflector started, when the gateway is silent.
    pub down: Vec<(u64, u64)>,
    pub return_mode: ReturnMode,
    pub stamp_port: u16,
}

impl Gateway {
    pub fn is_down(&self, now_ns: u64) -> bool {
        self.down.iter().any(|&(a, b)| now_ns >= a && now_ns < b)
    }
    pub fn impaired(&self) -> bool {
        self.delay_ns > 0 || self.jitter_ns > 0
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGateway {
    name: Option<String>,
    ip: String,
    mac: Option<String>,
    delay: Option<String>,
    jitter: Option<String>,
    /// A ratio (0.01) or a percentage ("1%").
    loss: Option<LossValue>,
    reorder_every: Option<u64>,
    duplicate_every: Option<u64>,
    #[serde(default)]
    down: Vec<[String; 2]>,
    #[serde(rename = "return")]
    return_mode: Option<String>,
    stamp_port: Option<u16>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum LossValue {
    Ratio(f64),
    Text(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReflect {
    seed: Option<u64>,
    queue_limit: Option<u32>,
    #[serde(default)]
    gateway: Vec<RawGateway>,
}

#[derive(Debug, Clone)]
pub struct ReflectConfig {
    pub gateways: Vec<Gateway>,
    pub seed: u64,
    /// Most packets held in the delay queue; more are dropped and counted.
    pub queue_limit: u32,
}

pub fn load(path: &Path) -> Result<ReflectConfig, SpecError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| SpecError(format!("reading reflector config {}: {e}", path.display())))?;
    parse(&text).map_err(|e| SpecError(format!("{}: {e}", path.display())))
}

/// A MAC for a gateway without one: locally administered, from its address.
pub fn default_mac(ip: &IpAddr) -> [u8; 6] {
    let b = match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    let n = b.len();
    [
        0x02,
        0x5c,
        b[n - 4] ^ if ip.is_ipv6() { 0x80 } else { 0 },
        b[n - 3],
        b[n - 2],
        b[n - 1],
    ]
}

pub fn parse(text: &str) -> Result<ReflectConfig, SpecError> {
    let de = toml::Deserializer::parse(text).map_err(|e| SpecError(e.to_string()))?;
    let r: RawReflect = serde_path_to_error::deserialize(de).map_err(|e| SpecError(format!("{}: {}", e.path(), e)))?;
    if r.gateway.is_empty() {
        return Err(SpecError("no [[gateway]] tables".into()));
    }
    let mut gws: Vec<Gateway> = Vec::new();
    for (i, g) in r.gateway.iter().enumerate() {
        let name = g.name.clone().unwrap_or_else(|| format!("gw{i}"));
        let ctx = |m: String| SpecError(format!("gateway {name}: {m}"));
        let ip: IpAddr =
            g.ip.parse()
                .map_err(|_| ctx(format!("ip {:?} is not an IPv4 or IPv6 address", g.ip)))?;
        let mac = match &g.mac {
            Some(m) => parse_mac(m).map_err(|e| ctx(e.0))?,
            None => default_mac(&ip),
        };
        if mac[0] & 1 == 1 {
            return Err(ctx("mac must be a unicast address".into()));
        }
        let dur = |v: &Option<String>| -> Result<u64, SpecError> {
            v.as_deref()
                .map(parse_duration_ns)
                .transpose()
                .map(|d| d.unwrap_or(0))
                .map_err(|e| ctx(e.0))
        };
        let delay_ns = dur(&g.delay)?;
        let jitter_ns = dur(&g.jitter)?;
        if delay_ns > 10_000_000_000 || jitter_ns > 10_000_000_000 {
            return Err(ctx("delay and jitter are limited to 10 s".into()));
        }
        let loss_ratio = match &g.loss {
            None => 0.0,
            Some(LossValue::Ratio(r)) => *r,
            Some(LossValue::Text(t)) => t
                .trim()
                .strip_suffix('%')
                .and_then(|v| v.trim().parse::<f64>().ok())
                .map(|v| v / 100.0)
                .ok_or_else(|| ctx(format!("loss {t:?}: give a ratio (0.01) or a percentage (\"1%\")")))?,
        };
        if !(0.0..=1.0).contains(&loss_ratio) {
            return Err(ctx(format!("loss {loss_ratio} must be between 0 and 1")));
        }
        let mut down = Vec::new();
        for [a, b] in &g.down {
            let (a, b) = (
                parse_duration_ns(a).map_err(|e| ctx(e.0))?,
                parse_duration_ns(b).map_err(|e| ctx(e.0))?,
            );
            if b <= a {
                return Err(ctx(format!("down window {a} ns .. {b} ns ends before it starts")));
            }
            down.push((a, b));
        }
        let return_mode = match g.return_mode.as_deref().unwrap_or("swap") {
            "swap" => ReturnMode::Swap,
            "mac-swap" => ReturnMode::MacSwap,
            m => return Err(ctx(format!("return {m:?}: use swap or mac-swap"))),
        };
        if gws.iter().any(|o| o.ip == ip || o.mac == mac || o.name == name) {
            return Err(ctx("two gateways share a name, an address or a MAC".into()));
        }
        gws.push(Gateway {
            name,
            ip,
            mac,
            delay_ns,
            jitter_ns,
            loss: (loss_ratio * 4_294_967_296.0).min(4_294_967_295.0) as u32,
            loss_ratio,
            reorder_every: g.reorder_every.unwrap_or(0),
            duplicate_every: g.duplicate_every.unwrap_or(0),
            down,
            return_mode,
            stamp_port: g.stamp_port.unwrap_or(STAMP_PORT),
        });
    }
    let queue_limit = r.queue_limit.unwrap_or(65_536);
    if queue_limit == 0 || queue_limit > 4_000_000 {
        return Err(SpecError(format!("queue_limit {queue_limit}: use 1 - 4000000")));
    }
    Ok(ReflectConfig {
        gateways: gws,
        seed: r.seed.unwrap_or(0x5c1e),
        queue_limit,
    })
}

/// What a frame turned out to be, after it was rewritten in place into the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Arp(usize),
    NeighborAdvert(usize),
    Echo(usize),
    /// A STAMP reply; its timestamps are written at release (`stamp_finish`).
    Stamp {
        gw: usize,
        l3: usize,
        l4: usize,
        v6: bool,
    },
    Data(usize),
    /// For a gateway that is down: no answer.
    Down(usize),
    /// Addressed to a gateway, but nothing it answers (counted).
    Unanswered(usize),
    /// A probe or request too short or otherwise malformed.
    Malformed,
    /// For none of our gateways.
    NotOurs,
}

/// Per-gateway counts.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct GwCounters {
    pub name: String,
    pub arp_replies: u64,
    pub nd_adverts: u64,
    pub echo_replies: u64,
    pub probe_replies: u64,
    pub data_packets: u64,
    pub data_returned: u64,
    /// Dropped by the configured loss.
    pub lost: u64,
    /// Dropped while the gateway was scheduled down.
    pub down_drops: u64,
    pub reordered: u64,
    pub duplicated: u64,
    pub queue_overflow: u64,
    pub unanswered: u64,
}

fn swap_range(f: &mut [u8], a: usize, b: usize, len: usize) {
    for i in 0..len {
        f.swap(a + i, b + i);
    }
}

/// Ethernet: the reply goes back to the sender, from the gateway.
fn answer_mac(f: &mut [u8], gw_mac: &[u8; 6]) {
    let (dst, src) = f.split_at_mut(6);
    dst.copy_from_slice(&src[..6]);
    src[..6].copy_from_slice(gw_mac);
}

/// Classifies `f` (whose true length, without padding, the IP header gives) and rewrites
/// it into its answer. `now_ns` is the time since start (for the schedule).
pub fn handle(f: &mut [u8], gws: &[Gateway], now_ns: u64, counters: &mut [GwCounters]) -> Outcome {
    let o = classify_and_answer(f, gws, now_ns);
    match o {
        Outcome::Arp(g) => counters[g].arp_replies += 1,
        Outcome::NeighborAdvert(g) => counters[g].nd_adverts += 1,
        Outcome::Echo(g) => counters[g].echo_replies += 1,
        Outcome::Stamp { gw, .. } => counters[gw].probe_replies += 1,
        Outcome::Data(g) => counters[g].data_packets += 1,
        Outcome::Down(g) => counters[g].down_drops += 1,
        Outcome::Unanswered(g) => counters[g].unanswered += 1,
        Outcome::Malformed | Outcome::NotOurs => {}
    }
    o
}

fn classify_and_answer(f: &mut [u8], gws: &[Gateway], now_ns: u64) -> Outcome {
    if f.len() < 14 {
        return Outcome::Malformed;
    }
    let mut at = 12;
    let mut et = be16(f, at);
    let mut tags = 0;
    while et == 0x8100 || et == 0x88a8 {
        tags += 1;
        if tags > 2 || f.len() < at + 6 {
            return Outcome::Malformed;
        }
        at += 4;
        et = be16(f, at);
    }
    let l3 = at + 2;
    let by_ip = |ip: IpAddr| gws.iter().position(|g| g.ip == ip);
    let by_mac = |m: &[u8]| gws.iter().position(|g| g.mac == m);
    let down = |g: usize| gws[g].is_down(now_ns);
    match et {
        0x0806 => {
            // ARP for IPv4 over Ethernet: htype 1, ptype 0x0800, hlen 6, plen 4.
            if f.len() < l3 + 28 || be16(f, l3) != 1 || be16(f, l3 + 2) != 0x0800 || f[l3 + 4] != 6 || f[l3 + 5] != 4 {
                return Outcome::Malformed;
            }
            let tpa = IpAddr::V4(<[u8; 4]>::try_from(&f[l3 + 24..l3 + 28]).expect("4 bytes").into());
            let Some(g) = by_ip(tpa) else {
                return Outcome::NotOurs;
            };
            if be16(f, l3 + 6) != 1 {
                return Outcome::Unanswered(g); // replies and others
            }
            if down(g) {
                return Outcome::Down(g);
            }
            let mac = gws[g].mac;
            answer_mac(f, &mac);
            f[l3 + 7] = 2;
            // target <- sender; sender <- us.
            let (sha_spa, tha_tpa) = f[l3 + 8..l3 + 28].split_at_mut(10);
            tha_tpa.copy_from_slice(sha_spa);
            f[l3 + 8..l3 + 14].copy_from_slice(&mac);
            if let IpAddr::V4(a) = gws[g].ip {
                f[l3 + 14..l3 + 18].copy_from_slice(&a.octets());
            }
            Outcome::Arp(g)
        }
        0x0800 => {
            if f.len() < l3 + 20 || f[l3] >> 4 != 4 {
                return Outcome::Malformed;
            }
            let ihl = (f[l3] & 0xf) as usize * 4;
            let total = be16(f, l3 + 2) as usize;
            if ihl < 20 || total < ihl || f.len() < l3 + total {
                return Outcome::Malformed;
            }
            let dst = IpAddr::V4(<[u8; 4]>::try_from(&f[l3 + 16..l3 + 20]).expect("4 bytes").into());
            let l4 = l3 + ihl;
            let end = l3 + total;
            if let Some(g) = by_ip(dst) {
                if down(g) {
                    return Outcome::Down(g);
                }
                let proto = f[l3 + 9];
                if proto == 1 && end >= l4 + 8 && f[l4] == 8 {
                    let mac = gws[g].mac;
                    answer_mac(f, &mac);
                    swap_range(f, l3 + 12, l3 + 16, 4);
                    f[l3 + 8] = 64;
                    ipv4_header_checksum(f, l3);
                    f[l4] = 0;
                    let c = checksum_update16(be16(f, l4 + 2), 0x0800, 0x0000);
                    f[l4 + 2..l4 + 4].copy_from_slice(&c.to_be_bytes());
                    return Outcome::Echo(g);
                }
                if proto == 17 && end >= l4 + 8 && be16(f, l4 + 2) == gws[g].stamp_port {
                    return stamp_answer(f, g, &gws[g], l3, l4, end, false);
                }
                return Outcome::Unanswered(g);
            }
            match by_mac(&f[0..6]) {
                Some(g) if down(g) => Outcome::Down(g),
                Some(g) => {
                    let proto = f[l3 + 9];
                    return_data(f, &gws[g], l3, l4, false, proto);
                    Outcome::Data(g)
                }
                None => Outcome::NotOurs,
            }
        }
        0x86dd => {
            if f.len() < l3 + 40 || f[l3] >> 4 != 6 {
                return Outcome::Malformed;
            }
            let plen = be16(f, l3 + 4) as usize;
            let end = l3 + 40 + plen;
            if f.len() < end {
                return Outcome::Malformed;
            }
            let dst = IpAddr::V6(<[u8; 16]>::try_from(&f[l3 + 24..l3 + 40]).expect("16 bytes").into());
            let l4 = l3 + 40;
            let next = f[l3 + 6];
            // Neighbour solicitation: to a solicited-node multicast address, so match the target.
            if next == 58 && plen >= 24 && f[l4] == 135 {
                let target = IpAddr::V6(<[u8; 16]>::try_from(&f[l4 + 8..l4 + 24]).expect("16 bytes").into());
                let Some(g) = by_ip(target) else {
                    return Outcome::NotOurs;
                };
                if down(g) {
                    return Outcome::Down(g);
                }
                return nd_answer(f, g, &gws[g], l3, l4, end);
            }
            if let Some(g) = by_ip(dst) {
                if down(g) {
                    return Outcome::Down(g);
                }
                if next == 58 && plen >= 8 && f[l4] == 128 {
                    let mac = gws[g].mac;
                    answer_mac(f, &mac);
                    swap_range(f, l3 + 8, l3 + 24, 16);
                    f[l3 + 7] = 64;
                    f[l4] = 129;
                    let c = checksum_update16(be16(f, l4 + 2), 0x8000, 0x8100);
                    f[l4 + 2..l4 + 4].copy_from_slice(&c.to_be_bytes());
                    return Outcome::Echo(g);
                }
                if next == 17 && plen >= 8 && be16(f, l4 + 2) == gws[g].stamp_port {
                    return stamp_answer(f, g, &gws[g], l3, l4, end, true);
                }
                return Outcome::Unanswered(g);
            }
            match by_mac(&f[0..6]) {
                Some(g) if down(g) => Outcome::Down(g),
                Some(g) => {
                    return_data(f, &gws[g], l3, l4, true, next);
                    Outcome::Data(g)
                }
                None => Outcome::NotOurs,
            }
        }
        _ => Outcome::NotOurs,
    }
}

/// Data through the gateway goes back where it came from. Swapping address and port
/// pairs leaves every checksum as it was.
fn return_data(f: &mut [u8], g: &Gateway, l3: usize, l4: usize, v6: bool, proto: u8) {
    answer_mac(f, &g.mac);
    if g.return_mode == ReturnMode::MacSwap {
        return;
    }
    if v6 {
        swap_range(f, l3 + 8, l3 + 24, 16);
    } else {
        swap_range(f, l3 + 12, l3 + 16, 4);
    }
    if (proto == 6 || proto == 17) && f.len() >= l4 + 4 {
        swap_range(f, l4, l4 + 2, 2);
    }
}

/// IPv6 neighbour advertisement for `g` in answer to a solicitation (RFC 4861 4.4):
/// solicited and override flags, the target link-layer address option.
fn nd_answer(f: &mut [u8], gi: usize, g: &Gateway, l3: usize, l4: usize, end: usize) -> Outcome {
    // NA = 24 bytes + an 8-byte option; the solicitation is at least 24 (often 32).
    if end < l4 + 32 || f.len() < l4 + 32 {
        return Outcome::Unanswered(gi);
    }
    let mut src = [0u8; 16];
    src.copy_from_slice(&f[l3 + 8..l3 + 24]);
    if src == [0u8; 16] {
        // Duplicate address detection: the answer would go to all nodes; not modelled.
        return Outcome::Unanswered(gi);
    }
    let IpAddr::V6(me) = g.ip else {
        return Outcome::Malformed;
    };
    answer_mac(f, &g.mac);
    f[l3 + 4..l3 + 6].copy_from_slice(&32u16.to_be_bytes());
    f[l3 + 7] = 255;
    f[l3 + 8..l3 + 24].copy_from_slice(&me.octets());
    f[l3 + 24..l3 + 40].copy_from_slice(&src);
    f[l4] = 136;
    f[l4 + 1] = 0;
    f[l4 + 4..l4 + 8].copy_from_slice(&[0x60, 0, 0, 0]); // solicited, override
                                                         // Target stays at l4+8; option 2 (target link-layer address), length 1 (8 bytes).
    f[l4 + 24] = 2;
    f[l4 + 25] = 1;
    f[l4 + 26..l4 + 32].copy_from_slice(&g.mac);
    l4_checksum(f, l3, l4, true, l4 + 2, false);
    Outcome::NeighborAdvert(gi)
}

/// Turns a STAMP session-sender packet into the reflector's reply, timestamps left for
/// `stamp_finish`.
fn stamp_answer(f: &mut [u8], gi: usize, g: &Gateway, l3: usize, l4: usize, end: usize, v6: bool) -> Outcome {
    let p = l4 + 8;
    if end < p + STAMP_LEN {
        return Outcome::Malformed;
    }
    let ttl = if v6 { f[l3 + 7] } else { f[l3 + 8] };
    let mut sender = [0u8; 14];
    sender.copy_from_slice(&f[p..p + 14]); // sequence, timestamp, error estimate
    f[p + 16..p + 24].fill(0); // receive timestamp, written at release
    f[p + 24..p + 38].copy_from_slice(&sender);
    f[p + 38..p + 40].fill(0);
    f[p + 40] = ttl;
    f[p + 41..p + 44].fill(0);
    // Error estimate: not synchronised to UTC (S = 0), scale 0, multiplier 1.
    f[p + 12..p + 16].copy_from_slice(&[0, 1, 0, 0]);
    answer_mac(f, &g.mac);
    if v6 {
        swap_range(f, l3 + 8, l3 + 24, 16);
        f[l3 + 7] = 255;
    } else {
        swap_range(f, l3 + 12, l3 + 16, 4);
        f[l3 + 8] = 255;
        ipv4_header_checksum(f, l3);
    }
    swap_range(f, l4, l4 + 2, 2);
    Outcome::Stamp { gw: gi, l3, l4, v6 }
}

/// Writes the reflector's sequence number, receive (T2) and transmit (T3) timestamps
/// (NTP format) into a STAMP reply and fixes its UDP checksum.
pub fn stamp_finish(f: &mut [u8], l3: usize, l4: usize, v6: bool, seq: u32, t2_ntp: u64, t3_ntp: u64) {
    let p = l4 + 8;
    f[p..p + 4].copy_from_slice(&seq.to_be_bytes());
    f[p + 4..p + 12].copy_from_slice(&t3_ntp.to_be_bytes());
    f[p + 16..p + 24].copy_from_slice(&t2_ntp.to_be_bytes());
    let end = if v6 {
        l3 + 40 + be16(f, l3 + 4) as usize
    } else {
        l3 + be16(f, l3 + 2) as usize
    };
    let end = end.min(f.len());
    l4_checksum(&mut f[..end], l3, l4, v6, l4 + 6, true);
}

/// A small, fast, seedable generator (SplitMix64) for loss and jitter.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// True with probability `p` / 2^32.
    pub fn chance(&mut self, p: u32) -> bool {
        p > 0 && ((self.next_u64() >> 32) as u32) < p
    }
    /// The delay for one packet: `delay` plus uniform jitter in [-jitter, +jitter], at least 0.
    pub fn delay(&mut self, delay: u64, jitter: u64) -> u64 {
        if jitter == 0 {
            return delay;
        }
        let j = self.next_u64() % (2 * jitter + 1);
        (delay + j).saturating_sub(jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::builder::FrameSpec;
    use dataplane::wire::ones_complement_sum;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn cfg() -> ReflectConfig {
        parse(
            r#"
            [[gateway]]
            name = "aws"
            ip = "192.0.2.1"
            delay = "2ms"
            loss = "1%"
            down = [["5s", "8s"]]

            [[gateway]]
            name = "gcp"
            ip = "2001:db8::1"
            mac = "02:00:00:00:00:aa"
            return = "mac-swap"
            "#,
        )
        .unwrap()
    }

    fn counters(c: &ReflectConfig) -> Vec<GwCounters> {
        c.gateways.iter().map(|_| GwCounters::default()).collect()
    }

    #[test]
    fn config() {
        let c = cfg();
        assert_eq!(c.gateways[0].delay_ns, 2_000_000);
        assert!((c.gateways[0].loss_ratio - 0.01).abs() < 1e-12);
        assert_eq!(c.gateways[0].mac, [0x02, 0x5c, 192, 0, 2, 1]);
        assert!(c.gateways[0].is_down(6_000_000_000));
        assert!(!c.gateways[0].is_down(8_000_000_000));
        assert_eq!(c.gateways[1].return_mode, ReturnMode::MacSwap);
        for bad in [
            "",
            "[[gateway]]\nip = \"x\"",
            "[[gateway]]\nip = \"10.0.0.1\"\nloss = 2.0",
            "[[gateway]]\nip = \"10.0.0.1\"\ndown = [[\"5s\", \"1s\"]]",
            "[[gateway]]\nip = \"10.0.0.1\"\nmac = \"01:00:00:00:00:01\"",
            "[[gateway]]\nip = \"10.0.0.1\"\n[[gateway]]\nip = \"10.0.0.1\"",
            "[[gateway]]\nip = \"10.0.0.1\"\nbogus = 1",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    fn arp_request(target: [u8; 4]) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 7, 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&[2, 0, 0, 0, 0, 7, 192, 0, 2, 100]);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&target);
        f.resize(60, 0);
        f
    }

    #[test]
    fn arp_is_answered_unless_down() {
        let c = cfg();
        let mut n = counters(&c);
        let mut f = arp_request([192, 0, 2, 1]);
        assert_eq!(handle(&mut f, &c.gateways, 0, &mut n), Outcome::Arp(0));
        assert_eq!(&f[0..6], &[2, 0, 0, 0, 0, 7]);
        assert_eq!(&f[6..12], &c.gateways[0].mac);
        assert_eq!(f[21], 2, "op = reply");
        assert_eq!(&f[22..28], &c.gateways[0].mac);
        assert_eq!(&f[28..32], &[192, 0, 2, 1]);
        assert_eq!(&f[32..38], &[2, 0, 0, 0, 0, 7]);
        assert_eq!(&f[38..42], &[192, 0, 2, 100]);
        let mut f = arp_request([192, 0, 2, 1]);
        assert_eq!(handle(&mut f, &c.gateways, 6_000_000_000, &mut n), Outcome::Down(0));
        let mut f = arp_request([192, 0, 2, 9]);
        assert_eq!(handle(&mut f, &c.gateways, 0, &mut n), Outcome::NotOurs);
        assert_eq!(
            handle(&mut f[..30].to_vec(), &c.gateways, 0, &mut n),
            Outcome::Malformed
        );
        assert_eq!((n[0].arp_replies, n[0].down_drops), (1, 1));
    }

    fn icmp_echo(dst: Ipv4Addr) -> Vec<u8> {
        let mut f = FrameSpec::udp4(Ipv4Addr::new(192, 0, 2, 100), dst, 60).build();
        f[23] = 1; // ICMP
        f[24] = 0;
        f[25] = 0;
        let c = !ones_complement_sum(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        f[34..42].copy_from_slice(&[8, 0, 0, 0, 0x12, 0x34, 0, 1]);
        let c = !ones_complement_sum(&f[34..60]);
        f[36..38].copy_from_slice(&c.to_be_bytes());
        f
    }

    #[test]
    fn echo_reply_has_valid_checksums() {
        let c = cfg();
        let mut n = counters(&c);
        let mut f = icmp_echo(Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(handle(&mut f, &c.gateways, 0, &mut n), Outcome::Echo(0));
        assert_eq!(f[34], 0);
        assert_eq!(&f[26..30], &[192, 0, 2, 1]);
        assert_eq!(&f[30..34], &[192, 0, 2, 100]);
        assert_eq!(ones_complement_sum(&f[14..34]), 0xffff);
        assert_eq!(ones_complement_sum(&f[34..60]), 0xffff);
        // ICMPv6 echo to the v6 gateway.
        let mut f = FrameSpec::udp6("2001:db8::64".parse().unwrap(), "2001:db8::1".parse().unwrap(), 70).build();
        f[20] = 58;
        f[54..62].copy_from_slice(&[128, 0, 0, 0, 0, 1, 0, 1]);
        l4_checksum(&mut f, 14, 54, true, 56, false);
        assert_eq!(handle(&mut f, &c.gateways, 0, &mut n), Outcome::Echo(1));
        assert_eq!(f[54], 129);
        let mut g = f.clone();
        l4_checksum(&mut g, 14, 54, true, 56, false);
        assert_eq!(f, g, "the incremental ICMPv6 checksum equals a full one");
    }

    #[test]
    fn neighbour_solicitation_gets_an_advertisement() {
        let c = cfg();
        let mut n = counters(&c);
        let mut f = FrameSpec::udp6("2001:db8::64".parse().unwrap(), "ff02::1:ff00:1".parse().unwrap(), 86).build();
        f[20] = 58;
        f[21] = 255;
        f[54] = 135;
        f[55] = 0;
        f[58..62].fill(0);
        let t: Ipv6Addr = "2001:db8::1".parse().unwrap();
        f[62..78].copy_from_slice(&t.octets());
        f[78..86].copy_from_slice(&[1, 1, 2, 0, 0, 0, 0, 7]);
        l4_checksum(&mut f, 14, 54, true, 56, false);
        assert_eq!(handle(&mut f, &c.gateways, 0, &mut n), Outcome::NeighborAdvert(1));
        assert_eq!(f[54], 136);
        assert_eq!(&f[80..86], &[2, 0, 0, 0, 0, 0xaa]);
        assert_eq!(&f[22..38], &t.octets());
        let mut g = f.clone();
        l4_checksum(&mut g, 14, 54, true, 56, false);
        assert_eq!(f, g);
    }

    #[test]
    fn stamp_reply_layout() {
        let c = cfg();
        let mut n = counters(&c);
        let mut f = FrameSpec::udp4(
            Ipv4Addr::new(192, 0, 2, 100),
            Ipv4Addr::new(192, 0, 2, 1),
            14 + 20 + 8 + 44,
        )
        .build();
        f[36..38].copy_from_slice(&STAMP_PORT.to_be_bytes());
        let p = 42;
        f[p..p + 4].copy_from_slice(&7u32.to_be_bytes());
        f[p + 4..p + 12].copy_from_slice(&0x1111_2222_3333_4444u64.to_be_bytes());
        let o = handle(&mut f, &c.gateways, 0, &mut n);
        let Outcome::Stamp {
            gw: 0,
            l3,
            l4,
            v6: false,
        } = o
        else {
            panic!("{o:?}")
        };
        stamp_finish(&mut f, l3, l4, false, 3, 100, 200);
        assert_eq!(&f[p..p + 4], &3u32.to_be_bytes());
        assert_eq!(&f[p + 4..p + 12], &200u64.to_be_bytes());
        assert_eq!(&f[p + 16..p + 24], &100u64.to_be_bytes());
        assert_eq!(&f[p + 24..p + 28], &7u32.to_be_bytes());
        assert_eq!(&f[p + 28..p + 36], &0x1111_2222_3333_4444u64.to_be_bytes());
        assert_eq!(f[p + 40], 64, "the sender's TTL");
        assert_eq!(&f[34..36], &STAMP_PORT.to_be_bytes(), "from the reflector's port");
        assert_eq!(ones_complement_sum(&f[14..34]), 0xffff);
        let mut g = f.clone();
        l4_checksum(&mut g, 14, 34, false, 40, true);
        assert_eq!(f, g);
        // Too short to be STAMP.
        let mut f = FrameSpec::udp4(Ipv4Addr::new(192, 0, 2, 100), Ipv4Addr::new(192, 0, 2, 1), 60).build();
        f[36..38].copy_from_slice(&STAMP_PORT.to_be_bytes());
        assert_eq!(handle(&mut f, &c.gateways, 0, &mut n), Outcome::Malformed);
    }

    /// The appliance's own probes (control::packet) against this reflector, both families:
    /// the answers read back with the appliance's parser as its rounds.
    #[test]
    fn answers_the_appliance_probes() {
        use control::packet::{self as cp, Pkt};
        let c = cfg();
        let mut n = counters(&c);
        let me = [2, 0, 0, 0, 0, 0x11];
        for (gi, (src, dst)) in [("192.0.2.100", "192.0.2.1"), ("2001:db8::100", "2001:db8::1")]
            .iter()
            .enumerate()
        {
            let (src, dst): (IpAddr, IpAddr) = (src.parse().unwrap(), dst.parse().unwrap());
            let gw_mac = c.gateways[gi].mac;
            let mut f = cp::stamp_request(gw_mac, me, src, dst, 862, 862, 41, 0xabcd_0000_0000_1234);
            let Outcome::Stamp { l3, l4, v6, .. } = handle(&mut f, &c.gateways, 0, &mut n) else {
                panic!("not answered as STAMP");
            };
            stamp_finish(&mut f, l3, l4, v6, 5, 1000, 2000);
            let r = cp::parse(&f, 862).unwrap();
            assert_eq!((r.dst_mac, r.src_mac), (me, gw_mac));
            assert_eq!(
                r.pkt,
                Pkt::StampReply {
                    src: dst,
                    dst: src,
                    dst_port: 862,
                    seq: 41,
                    t1: 0xabcd_0000_0000_1234,
                    t2: 1000,
                    t3: 2000
                }
            );
            let mut e = cp::echo_request(gw_mac, me, src, dst, 0x5c01, 9, b"SLUICEpr\0\0\0\x09\0\0\0\0");
            assert_eq!(handle(&mut e, &c.gateways, 0, &mut n), Outcome::Echo(gi));
            assert!(matches!(
                cp::parse(&e, 862).unwrap().pkt,
                Pkt::EchoReply { id: 0x5c01, seq: 9, .. }
            ));
        }
        // Resolution: its ARP request and neighbour solicitation are answered.
        let mut a = cp::arp(
            1,
            cp::BROADCAST,
            me,
            "192.0.2.100".parse().unwrap(),
            [0; 6],
            "192.0.2.1".parse().unwrap(),
        );
        assert_eq!(handle(&mut a, &c.gateways, 0, &mut n), Outcome::Arp(0));
        assert!(matches!(cp::parse(&a, 862).unwrap().pkt, Pkt::Arp { op: 2, .. }));
        let mut s = cp::neighbor_solicit(
            me,
            "2001:db8::100".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
            None,
        );
        assert_eq!(handle(&mut s, &c.gateways, 0, &mut n), Outcome::NeighborAdvert(1));
        assert!(matches!(
            cp::parse(&s, 862).unwrap().pkt,
            Pkt::Advert { tll: Some(m), .. } if m == c.gateways[1].mac
        ));
    }

    #[test]
    fn data_is_returned_by_mac() {
        let c = cfg();
        let mut n = counters(&c);
        let mut spec = FrameSpec::udp4(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(198, 18, 0, 5), 60);
        spec.dst_mac = c.gateways[0].mac;
        let orig = spec.build();
        let mut f = orig.clone();
        assert_eq!(handle(&mut f, &c.gateways, 0, &mut n), Outcome::Data(0));
        assert_eq!(&f[0..6], &orig[6..12]);
        assert_eq!(&f[26..30], &orig[30..34]);
        assert_eq!(&f[34..36], &orig[36..38]);
        assert_eq!(&f[40..42], &orig[40..42], "swapping pairs keeps the checksum");
        spec.dst_mac = [2, 0, 0, 0, 0, 0x55];
        let mut f = spec.build();
        assert_eq!(handle(&mut f, &c.gateways, 0, &mut n), Outcome::NotOurs);
        let mut s6 = FrameSpec::udp6("2001:db8::5".parse().unwrap(), "2001:db8:1::5".parse().unwrap(), 80);
        s6.dst_mac = c.gateways[1].mac;
        let orig = s6.build();
        let mut f = orig.clone();
        assert_eq!(handle(&mut f, &c.gateways, 0, &mut n), Outcome::Data(1));
        assert_eq!(&f[14..], &orig[14..], "mac-swap leaves the packet alone");
        // Truncated IP is malformed, not a crash.
        let mut f = orig[..50].to_vec();
        assert_eq!(handle(&mut f, &c.gateways, 0, &mut n), Outcome::Malformed);
    }

    /// Mangled and truncated frames of every kind get an outcome, never a panic.
    #[test]
    fn mangled_frames_never_panic() {
        let c = cfg();
        let mut n = counters(&c);
        let mut r = Rng::new(3);
        let seeds: Vec<Vec<u8>> = vec![
            arp_request([192, 0, 2, 1]),
            icmp_echo(Ipv4Addr::new(192, 0, 2, 1)),
            FrameSpec::udp6("2001:db8::64".parse().unwrap(), "2001:db8::1".parse().unwrap(), 100).build(),
            {
                let mut s = FrameSpec::udp4(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(192, 0, 2, 1), 90);
                s.dst_port = STAMP_PORT;
                s.build()
            },
        ];
        for i in 0..200_000u64 {
            let mut f = seeds[(i % 4) as usize].clone();
            let flips = r.next_u64() % 6;
            for _ in 0..flips {
                let at = (r.next_u64() as usize) % f.len();
                f[at] = r.next_u64() as u8;
            }
            let len = (r.next_u64() as usize) % (f.len() + 1);
            f.truncate(len);
            let _ = handle(&mut f, &c.gateways, r.next_u64() % 10_000_000_000, &mut n);
            let _ = crate::sig::find(&f);
        }
    }

    #[test]
    fn rng_loss_and_jitter() {
        let mut r = Rng::new(1);
        let p = (0.25 * 4_294_967_296.0) as u32;
        let hits = (0..100_000).filter(|_| r.chance(p)).count();
        assert!((24_000..26_000).contains(&hits), "{hits}");
        assert!(!(0..1000).any(|_| r.chance(0)));
        for _ in 0..1000 {
            let d = r.delay(1000, 300);
            assert!((700..=1300).contains(&d));
        }
        assert!(r.delay(5, 10) <= 15);
        assert_eq!(ntp_from_unix_ns(0) >> 32, 2_208_988_800);
        assert_eq!(ntp_from_unix_ns(500_000_000) & 0xffff_ffff, 1 << 31);
    }
}
