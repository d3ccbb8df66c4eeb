//! The control plane's logic, without DPDK: the appliance's own addresses (answering ARP,
//! ICMP / ICMPv6 echo and neighbour solicitations), next-hop resolution (`neigh`), and the
//! probes on every path with their health (`routing::health`).
//!
//! It is driven by the control thread with a monotonic clock in ns: `receive` for each
//! frame the workers hand over (with the TSC time it arrived), `tick` on every loop. What
//! it wants sent collects in `take_out` as (port, frame); `take_changed` says whether a
//! path's eligibility or figures changed, so the caller rebuilds and publishes the tables
//! from `statuses`. All work per call is bounded by the number of paths and neighbours.
//!
//! Timing of a failure: a round is missed when no answer came within the timeout (by
//! default three times the RTT seen, at least 25 ms). After a miss the next round goes at
//! once instead of after the interval, so `down_after` misses take `down_after` timeouts:
//! with the defaults a gateway that goes silent is declared down at most one interval
//! plus 75 ms later (about 200 ms).

use crate::config::{Config, Probes};
use crate::neigh::{NeighSettings, NeighborCache};
use crate::packet::{self, Pkt};
use crate::wire::{ntp_from_unix_ns, unix_ns_from_ntp};
use log::{info, warn};
use routing::health::{Change, PathHealth};
use routing::path::{Health, PathStatus, ProbeMode};
use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// ICMP echo identifiers of probes: this in the high byte, the path index in the low.
const ICMP_ID_BASE: u16 = 0x5c00;
/// A STAMP probe's sequence number carries its path in the top byte (the reflector echoes
/// it), so paths probing the same target from the same port each get their own answers.
const STAMP_ROUND_BITS: u32 = 24;
const STAMP_ROUND_MASK: u32 = (1 << STAMP_ROUND_BITS) - 1;
const _: () = assert!(
    routing::path::MAX_PATHS <= 256,
    "path indices fit ICMP ids and STAMP tags"
);
/// The payload of an ICMP probe starts with this.
const ICMP_MAGIC: &[u8; 8] = b"SLUICEpr";
/// Timeout bounds when the timeout follows the RTT.
const AUTO_TIMEOUT_MIN_NS: u64 = 25_000_000;
const AUTO_TIMEOUT_UNMEASURED_NS: u64 = 1_000_000_000;
/// Rounds waited on at once per path (more means answers are far slower than rounds).
const MAX_OUTSTANDING: usize = 64;
/// Path state changes kept for `show paths` / the log.
pub const EVENTS_KEPT: usize = 256;

/// A port as the control plane sees it.
#[derive(Debug, Clone)]
pub struct PortInfo {
    pub name: String,
    pub mac: [u8; 6],
    pub ipv4: Vec<Ipv4Addr>,
    pub ipv6: Vec<Ipv6Addr>,
    /// The port has a TX queue for the control thread.
    pub can_send: bool,
}

impl PortInfo {
    pub fn from_config(cfg: &Config, macs: &[[u8; 6]], can_send: &[bool]) -> Vec<PortInfo> {
        cfg.ports
            .iter()
            .enumerate()
            .map(|(i, p)| PortInfo {
                name: p.name.clone(),
                mac: macs[i],
                ipv4: p.ipv4.iter().map(|a| a.addr).collect(),
                ipv6: p.ipv6.iter().map(|a| a.addr).collect(),
                can_send: can_send[i],
            })
            .collect()
    }

    fn owns(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => self.ipv4.contains(&a),
            IpAddr::V6(a) => self.ipv6.contains(&a),
        }
    }

    /// The address to send from toward `to`.
    fn source_for(&self, to: IpAddr) -> Option<IpAddr> {
        match to {
            IpAddr::V4(_) => self.ipv4.first().map(|a| IpAddr::V4(*a)),
            IpAddr::V6(_) => self.ipv6.first().map(|a| IpAddr::V6(*a)),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Round {
    seq: u32,
    sent_ns: u64,
    /// By one of its probes: the other's answer only counts for its own counter.
    answered: bool,
}

/// One path's prober and health.
#[derive(Debug, Clone)]
pub struct PathProbe {
    pub name: String,
    pub port: usize,
    pub mode: ProbeMode,
    pub target: IpAddr,
    pub next_hop: IpAddr,
    pub static_mac: Option<[u8; 6]>,
    pub health: PathHealth,
    next_round_ns: u64,
    round: u32,
    outstanding: VecDeque<Round>,
    pub icmp_sent: u64,
    pub icmp_answered: u64,
    pub stamp_sent: u64,
    pub stamp_answered: u64,
    /// Answers that came after their round had timed out (or twice).
    pub late: u64,
    /// Rounds not sent because the next hop was not resolved or the port cannot send.
    pub skipped: u64,
    pub last_change: Option<(u64, Change)>,
    /// Times the path stopped being `Up` (to degraded or down): its flows moved away.
    pub failovers: u64,
    /// Round-trip times (ns) of answered rounds not yet taken by telemetry
    /// ([`Plane::take_rtt_samples`]); at most `RTT_SAMPLES_KEPT`, later ones are not kept.
    rtt_samples: Vec<u64>,
}

/// RTT samples a path keeps for telemetry between two takes.
pub const RTT_SAMPLES_KEPT: usize = 4096;

/// A path state change, kept for show commands.
#[derive(Debug, Clone)]
pub struct Event {
    pub at_ns: u64,
    pub path: String,
    pub change: Change,
    /// What the path's probe window said when it changed.
    pub figures: routing::health::Figures,
}

/// Counters of what the control plane received and sent.
#[derive(Debug, Clone, Default)]
pub struct PlaneCounters {
    pub received: u64,
    pub arp_answered: u64,
    pub echo_answered: u64,
    pub nd_answered: u64,
    pub sent: u64,
    /// Frames that did not parse, by reason.
    pub malformed: BTreeMap<&'static str, u64>,
    /// Frames for the appliance that it does not answer, by reason.
    pub unhandled: BTreeMap<&'static str, u64>,
    /// Frames for a port with no control TX queue.
    pub unsendable: u64,
}

#[derive(Clone)]
pub struct Plane {
    pub ports: Vec<PortInfo>,
    pub neigh: NeighborCache,
    pub settings: Probes,
    pub paths: Vec<PathProbe>,
    pub counters: PlaneCounters,
    pub events: VecDeque<Event>,
    /// Events noted since start (`events` keeps the last few).
    pub events_total: u64,
    /// Unix time (ns) at clock zero, for STAMP's NTP timestamps.
    unix_at_zero_ns: u64,
    out: Vec<(usize, Vec<u8>)>,
    changed: bool,
    rng: u64,
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Plane {
    /// The control plane for `cfg` on `ports`, at time `now_ns` of its clock, which was
    /// Unix time `unix_at_zero_ns` at zero.
    pub fn new(cfg: &Config, ports: Vec<PortInfo>, now_ns: u64, unix_at_zero_ns: u64) -> Plane {
        let mut p = Plane {
            ports,
            neigh: NeighborCache::new(NeighSettings::default()),
            settings: cfg.probes,
            paths: Vec::new(),
            counters: PlaneCounters::default(),
            events: VecDeque::new(),
            events_total: 0,
            unix_at_zero_ns,
            out: Vec::new(),
            changed: true,
            rng: unix_at_zero_ns ^ 0x5eed,
        };
        p.reconfigure(cfg, now_ns);
        p
    }

    /// Takes a new configuration (a reload): paths that keep their name keep their health
    /// and figures; next hops no longer used are forgotten.
    pub fn reconfigure(&mut self, cfg: &Config, now_ns: u64) {
        self.settings = cfg.probes;
        self.neigh.settings = cfg.neighbors;
        let old = std::mem::take(&mut self.paths);
        for p in &cfg.paths {
            if p.probe != ProbeMode::None || p.next_hop_mac.is_none() {
                self.neigh.track(p.port, p.next_hop, p.next_hop_mac, now_ns);
            }
            let kept = old
                .iter()
                .find(|o| o.name == p.name && o.port == p.port && o.target == p.probe_target);
            let mut probe = match kept {
                Some(o) => o.clone(),
                None => PathProbe {
                    name: p.name.clone(),
                    port: p.port,
                    mode: p.probe,
                    target: p.probe_target,
                    next_hop: p.next_hop,
                    static_mac: p.next_hop_mac,
                    health: PathHealth::new(now_ns),
                    next_round_ns: now_ns,
                    round: 0,
                    outstanding: VecDeque::new(),
                    icmp_sent: 0,
                    icmp_answered: 0,
                    stamp_sent: 0,
                    stamp_answered: 0,
                    late: 0,
                    skipped: 0,
                    last_change: None,
                    failovers: 0,
                    rtt_samples: Vec::new(),
                },
            };
            probe.mode = p.probe;
            probe.next_hop = p.next_hop;
            probe.static_mac = p.next_hop_mac;
            // Rounds in flight were numbered for the old index: their answers are late.
            probe.outstanding.clear();
            if probe.mode == ProbeMode::None {
                probe.health = PathHealth::new(now_ns);
            }
            self.paths.push(probe);
        }
        let wanted: Vec<(usize, IpAddr)> = cfg
            .paths
            .iter()
            .filter(|p| p.probe != ProbeMode::None || p.next_hop_mac.is_none())
            .map(|p| (p.port, p.next_hop))
            .collect();
        self.neigh.retain(|port, ip| wanted.contains(&(port, ip)));
        self.changed = true;
    }

    /// Announces every address of every port: gratuitous ARP and unsolicited neighbour
    /// advertisements, so neighbours learn (or correct) the appliance's MAC at once.
    pub fn announce(&mut self) {
        for i in 0..self.ports.len() {
            self.announce_port(i);
        }
    }

    /// A port's link came up: announce its addresses and ask for its next hops now.
    pub fn link_up(&mut self, port: usize, now_ns: u64) {
        self.announce_port(port);
        self.neigh.kick(port, now_ns);
    }

    fn announce_port(&mut self, i: usize) {
        let p = &self.ports[i];
        let mut frames = Vec::new();
        for a in &p.ipv4 {
            frames.push(packet::arp(1, packet::BROADCAST, p.mac, *a, [0; 6], *a));
        }
        for a in &p.ipv6 {
            frames.push(packet::neighbor_advert(p.mac, *a, None));
        }
        for f in frames {
            self.send(i, f);
        }
    }

    /// `ip` on `port` is at `mac`: the cache learns it, and a change is logged.
    fn learn(&mut self, port: usize, ip: IpAddr, mac: [u8; 6], now_ns: u64) {
        if self.neigh.learn(port, ip, mac, now_ns) {
            info!(target: "neighbors", "{ip} on port \"{}\" is at {}", self.ports[port].name, crate::MacAddr(mac));
            self.changed = true;
        }
    }

    fn send(&mut self, port: usize, f: Vec<u8>) {
        if self.ports[port].can_send {
            self.counters.sent += 1;
            self.out.push((port, f));
        } else {
            self.counters.unsendable += 1;
        }
    }

    /// Frames to send, by port.
    pub fn take_out(&mut self) -> Vec<(usize, Vec<u8>)> {
        std::mem::take(&mut self.out)
    }

    /// Whether the paths' statuses changed since the last call.
    pub fn take_changed(&mut self) -> bool {
        std::mem::replace(&mut self.changed, false)
    }

    /// Each configured path's status now (`link_up` per port).
    pub fn statuses(&self, cfg: &Config, link_up: &[bool]) -> Vec<PathStatus> {
        // Packets wait for a next hop only if they may be held.
        let hold = cfg.neighbors.queue > 0;
        cfg.paths
            .iter()
            .zip(&self.paths)
            .map(|(p, pr)| {
                let f = pr.health.figures();
                let mac = p.next_hop_mac.or_else(|| self.neigh.mac(p.port, p.next_hop));
                PathStatus {
                    health: pr.health.state,
                    latency_us: if pr.health.answered > 0 {
                        f.rtt_ewma_us.round() as u32
                    } else {
                        p.latency_us
                    },
                    link_up: link_up.get(p.port).copied().unwrap_or(true),
                    mac,
                    resolving: mac.is_none() && hold && self.neigh.resolving(p.port, p.next_hop),
                    figures: (pr.mode != ProbeMode::None && pr.health.answered > 0).then_some(f),
                }
            })
            .collect()
    }

    fn timeout_ns(&self, p: &PathProbe) -> u64 {
        match self.settings.timeout_ns {
            Some(t) => t,
            None => match p.health.rtt_bound_us() {
                Some(us) => ((us * 3000.0) as u64).max(AUTO_TIMEOUT_MIN_NS),
                None => AUTO_TIMEOUT_UNMEASURED_NS,
            },
        }
    }

    fn next_interval(&mut self) -> u64 {
        let base = self.settings.interval_ns;
        let spread = base / 100 * self.settings.jitter_pct as u64;
        if spread == 0 {
            return base;
        }
        base - spread + splitmix(&mut self.rng) % (2 * spread + 1)
    }

    fn note(&mut self, i: usize, change: Option<Change>, now_ns: u64) {
        let Some(c) = change else { return };
        let p = &mut self.paths[i];
        let msg = format!(
            "path \"{}\": {} -> {} ({})",
            p.name,
            c.from.name(),
            c.to.name(),
            c.reason
        );
        if c.to == Health::Up {
            info!(target: "paths", "{msg}");
        } else {
            warn!(target: "paths", "{msg}");
        }
        p.last_change = Some((now_ns, c.clone()));
        if c.from == Health::Up {
            p.failovers += 1;
        }
        if self.events.len() == EVENTS_KEPT {
            self.events.pop_front();
        }
        self.events.push_back(Event {
            at_ns: now_ns,
            path: p.name.clone(),
            change: c,
            figures: p.health.figures(),
        });
        self.events_total += 1;
        self.changed = true;
    }

    /// The round-trip times (ns) path `i` measured since the last take, oldest first.
    pub fn take_rtt_samples(&mut self, i: usize) -> Vec<u64> {
        self.paths
            .get_mut(i)
            .map(|p| std::mem::take(&mut p.rtt_samples))
            .unwrap_or_default()
    }

    /// Time moves on: neighbour requests, probe rounds due, rounds timed out.
    pub fn tick(&mut self, now_ns: u64) {
        let (requests, lost) = self.neigh.tick(now_ns);
        self.changed |= lost;
        for r in requests {
            let port = &self.ports[r.port];
            let Some(src) = port.source_for(r.ip) else { continue };
            let f = match (src, r.ip) {
                (IpAddr::V4(s), IpAddr::V4(t)) => {
                    packet::arp(1, r.unicast.unwrap_or(packet::BROADCAST), port.mac, s, [0; 6], t)
                }
                (IpAddr::V6(s), IpAddr::V6(t)) => packet::neighbor_solicit(port.mac, s, t, r.unicast),
                _ => continue,
            };
            self.send(r.port, f);
        }
        for i in 0..self.paths.len() {
            // Timeouts first, so a miss can bring the next round forward.
            let timeout = self.timeout_ns(&self.paths[i]);
            while let Some(r) = self.paths[i].outstanding.front().copied() {
                if now_ns < r.sent_ns + timeout {
                    break;
                }
                self.paths[i].outstanding.pop_front();
                if r.answered {
                    continue;
                }
                let s = self.settings.health;
                let change = self.paths[i].health.missed(&s, now_ns);
                self.note(i, change, now_ns);
                if self.paths[i].health.state != Health::Down {
                    self.paths[i].next_round_ns = self.paths[i].next_round_ns.min(now_ns);
                }
            }
            if self.paths[i].mode != ProbeMode::None && now_ns >= self.paths[i].next_round_ns {
                self.send_round(i, now_ns);
                let next = self.next_interval();
                self.paths[i].next_round_ns = now_ns + next;
            }
        }
    }

    fn send_round(&mut self, i: usize, now_ns: u64) {
        let (port, target, next_hop, static_mac, mode) = {
            let p = &self.paths[i];
            (p.port, p.target, p.next_hop, p.static_mac, p.mode)
        };
        let mac = static_mac.or_else(|| self.neigh.mac(port, next_hop));
        let src = self.ports[port].source_for(target);
        let (Some(dst_mac), Some(src), true) = (mac, src, self.ports[port].can_send) else {
            self.paths[i].skipped += 1;
            return;
        };
        let p = &mut self.paths[i];
        if p.outstanding.len() >= MAX_OUTSTANDING {
            p.outstanding.pop_front();
        }
        p.round = p.round.wrapping_add(1);
        let seq = p.round;
        p.outstanding.push_back(Round {
            seq,
            sent_ns: now_ns,
            answered: false,
        });
        let our_mac = self.ports[port].mac;
        let mut frames = Vec::new();
        if mode.icmp() {
            let mut data = ICMP_MAGIC.to_vec();
            data.extend_from_slice(&seq.to_be_bytes());
            data.extend_from_slice(&[0; 4]);
            let id = ICMP_ID_BASE | i as u16;
            frames.push(packet::echo_request(
                dst_mac, our_mac, src, target, id, seq as u16, &data,
            ));
            p.icmp_sent += 1;
        }
        if mode.stamp() {
            let t1 = ntp_from_unix_ns(self.unix_at_zero_ns + now_ns);
            let sp = self.settings.stamp_port;
            let tagged = (i as u32) << STAMP_ROUND_BITS | (seq & STAMP_ROUND_MASK);
            frames.push(packet::stamp_request(dst_mac, our_mac, src, target, sp, sp, tagged, t1));
            p.stamp_sent += 1;
        }
        for f in frames {
            self.send(port, f);
        }
    }

    /// A round of path `i` was answered; `rtt_ns` as measured by the answer.
    fn answered(&mut self, i: usize, seq: impl Fn(u32) -> bool, rtt_ns: impl Fn(u64) -> u64, now_ns: u64) -> bool {
        let p = &mut self.paths[i];
        let Some(r) = p.outstanding.iter_mut().find(|r| seq(r.seq)) else {
            p.late += 1;
            return false;
        };
        if r.answered {
            return true;
        }
        r.answered = true;
        let r = *r;
        let s = self.settings.health;
        let rtt = rtt_ns(r.sent_ns);
        if p.rtt_samples.len() < RTT_SAMPLES_KEPT {
            p.rtt_samples.push(rtt);
        }
        let change = p.health.answered(&s, rtt, now_ns);
        self.note(i, change, now_ns);
        true
    }

    /// A frame the workers handed over, received on `port` at `rx_ns`.
    pub fn receive(&mut self, port: usize, f: &[u8], rx_ns: u64) {
        self.counters.received += 1;
        if port >= self.ports.len() {
            *self.counters.malformed.entry("unknown port").or_default() += 1;
            return;
        }
        let parsed = match packet::parse(f, self.settings.stamp_port) {
            Ok(p) => p,
            Err(why) => {
                *self.counters.malformed.entry(why).or_default() += 1;
                return;
            }
        };
        let mac = self.ports[port].mac;
        let unhandled = |c: &mut PlaneCounters, why: &'static str| *c.unhandled.entry(why).or_default() += 1;
        match parsed.pkt {
            Pkt::Arp { op, sha, spa, tpa } => {
                // Anyone may tell us where a next hop is (requests and gratuitous ARP too).
                self.learn(port, IpAddr::V4(spa), sha, rx_ns);
                if op == 1 && self.ports[port].ipv4.contains(&tpa) && spa != tpa {
                    self.counters.arp_answered += 1;
                    self.send(port, packet::arp(2, sha, mac, tpa, sha, spa));
                } else if op != 1 && op != 2 {
                    unhandled(&mut self.counters, "arp operation");
                }
            }
            Pkt::EchoRequest { dst, .. } => {
                if self.ports.iter().any(|p| p.owns(dst)) {
                    self.counters.echo_answered += 1;
                    self.send(port, packet::echo_reply(f, mac));
                } else {
                    unhandled(&mut self.counters, "echo request not to an own address");
                }
            }
            Pkt::EchoReply { src, id, seq, data, .. } => {
                let i = (id & 0xff) as usize;
                let ours = id & 0xff00 == ICMP_ID_BASE && data.starts_with(ICMP_MAGIC);
                if !ours || i >= self.paths.len() || self.paths[i].target != src || self.paths[i].port != port {
                    unhandled(&mut self.counters, "echo reply to no probe");
                    return;
                }
                if self.answered(i, |s| s as u16 == seq, |sent| rx_ns.saturating_sub(sent), rx_ns) {
                    self.paths[i].icmp_answered += 1;
                }
            }
            Pkt::Solicit { src, target, sll } => {
                if !self.ports[port].ipv6.contains(&target) {
                    unhandled(&mut self.counters, "solicitation for another address");
                    return;
                }
                if src.is_unspecified() {
                    // Duplicate address detection by someone else: defend ours to all nodes.
                    self.counters.nd_answered += 1;
                    self.send(port, packet::neighbor_advert(mac, target, None));
                    return;
                }
                let their_mac = sll.unwrap_or(parsed.src_mac);
                self.learn(port, IpAddr::V6(src), their_mac, rx_ns);
                self.counters.nd_answered += 1;
                self.send(port, packet::neighbor_advert(mac, target, Some((src, their_mac))));
            }
            Pkt::Advert { target, tll, .. } => {
                let their_mac = tll.unwrap_or(parsed.src_mac);
                self.learn(port, IpAddr::V6(target), their_mac, rx_ns);
            }
            Pkt::StampReply {
                src, seq, t1, t2, t3, ..
            } => {
                let i = (seq >> STAMP_ROUND_BITS) as usize;
                let ours = self
                    .paths
                    .get(i)
                    .is_some_and(|p| p.port == port && p.target == src && p.mode.stamp());
                if !ours {
                    unhandled(&mut self.counters, "stamp reply to no probe");
                    return;
                }
                // RTT = (T4 - T1) - (T3 - T2): the reflector's own hold time is taken out,
                // and only differences of one clock are used.
                let t4 = self.unix_at_zero_ns + rx_ns;
                let hold = unix_ns_from_ntp(t3).saturating_sub(unix_ns_from_ntp(t2));
                let rtt = t4.saturating_sub(unix_ns_from_ntp(t1)).saturating_sub(hold);
                let round = seq & STAMP_ROUND_MASK;
                if self.answered(i, |s| s & STAMP_ROUND_MASK == round, |_| rtt, rx_ns) {
                    self.paths[i].stamp_answered += 1;
                }
            }
            Pkt::Unhandled(why) => unhandled(&mut self.counters, why),
        }
    }
}

#[cfg(test)]
mod tests;
