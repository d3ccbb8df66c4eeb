//! Paths and path groups: where traffic for a route can leave, and how a group chooses
//! among its paths. The selection is computed on the control thread (at start-up, on
//! reload, on every health change) into a Maglev table; the fast path only indexes it.

use crate::health::Sla;
use crate::maglev::Maglev;
use std::net::IpAddr;

/// Most paths in a configuration (labels stay bounded; path indices fit the flow entry).
pub const MAX_PATHS: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cloud {
    Aws,
    Gcp,
    Azure,
    Onprem,
}

impl Cloud {
    pub fn name(self) -> &'static str {
        match self {
            Cloud::Aws => "aws",
            Cloud::Gcp => "gcp",
            Cloud::Azure => "azure",
            Cloud::Onprem => "onprem",
        }
    }
}

impl std::str::FromStr for Cloud {
    type Err = String;
    fn from_str(s: &str) -> Result<Cloud, String> {
        match s.to_ascii_lowercase().as_str() {
            "aws" => Ok(Cloud::Aws),
            "gcp" => Ok(Cloud::Gcp),
            "azure" => Ok(Cloud::Azure),
            "onprem" | "on-prem" => Ok(Cloud::Onprem),
            _ => Err(format!("unknown cloud \"{s}\" (accepted: aws, gcp, azure, onprem)")),
        }
    }
}

/// Administrative state, from the configuration or the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AdminState {
    #[default]
    Up,
    /// Takes no new flows; existing flows move away at once.
    Drained,
}

/// Health, from the path's probes (`health::PathHealth`); an unprobed path is `Up`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Health {
    #[default]
    Up,
    /// Usable, but breaks an SLA: chosen only when nothing `Up` is left.
    Degraded,
    Down,
}

impl Health {
    pub fn name(self) -> &'static str {
        match self {
            Health::Up => "up",
            Health::Degraded => "degraded",
            Health::Down => "down",
        }
    }
}

/// How a path is probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProbeMode {
    /// Not probed: its health follows its port's link only.
    None,
    Icmp,
    Stamp,
    /// An ICMP echo and a STAMP packet every round; either answer counts.
    #[default]
    Both,
}

impl ProbeMode {
    pub fn name(self) -> &'static str {
        match self {
            ProbeMode::None => "none",
            ProbeMode::Icmp => "icmp",
            ProbeMode::Stamp => "stamp",
            ProbeMode::Both => "icmp+stamp",
        }
    }
    pub fn icmp(self) -> bool {
        matches!(self, ProbeMode::Icmp | ProbeMode::Both)
    }
    pub fn stamp(self) -> bool {
        matches!(self, ProbeMode::Stamp | ProbeMode::Both)
    }
}

/// A path as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    pub name: String,
    pub cloud: Cloud,
    pub region: String,
    /// Index into the configuration's ports.
    pub port: usize,
    pub next_hop: IpAddr,
    /// Static, or `None` to resolve by ARP / neighbour discovery.
    pub next_hop_mac: Option<[u8; 6]>,
    pub probe: ProbeMode,
    /// Where probes go (the next hop unless configured).
    pub probe_target: IpAddr,
    pub cost_per_gb: f64,
    pub bandwidth_bps: u64,
    /// (latitude, longitude) in degrees.
    pub location: Option<(f64, f64)>,
    pub weight: u32,
    /// Expected latency until probes measure it.
    pub latency_us: u32,
    pub admin: AdminState,
}

/// How a group chooses among its usable paths.
#[derive(Debug, Clone, PartialEq)]
pub enum Policy {
    LowestLatency,
    LowestCost,
    HighestBandwidth,
    /// Closest to the appliance's own location (great-circle distance).
    Nearest,
    /// Lowest weighted sum of latency, cost, inverse bandwidth and distance, each scaled
    /// to 0..1 over the group's usable paths.
    WeightedScore {
        latency: f64,
        cost: f64,
        bandwidth: f64,
        distance: f64,
    },
    /// Every usable path whose latency is within `tolerance_pct` of the best one, each
    /// taking flows in proportion to its weight.
    ActiveActive {
        tolerance_pct: f64,
    },
}

impl Policy {
    pub fn name(&self) -> &'static str {
        match self {
            Policy::LowestLatency => "lowest-latency",
            Policy::LowestCost => "lowest-cost",
            Policy::HighestBandwidth => "highest-bandwidth",
            Policy::Nearest => "nearest",
            Policy::WeightedScore { .. } => "weighted-score",
            Policy::ActiveActive { .. } => "active-active",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PathGroup {
    pub name: String,
    /// Indices into the path list.
    pub paths: Vec<u16>,
    pub policy: Policy,
}

/// What the control thread knows about a path right now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PathStatus {
    pub health: Health,
    /// Measured (or configured) latency.
    pub latency_us: u32,
    /// The egress port has link.
    pub link_up: bool,
    /// The next hop's MAC, static or resolved; `None` while it cannot be resolved.
    pub mac: Option<[u8; 6]>,
    /// Without a MAC, the next hop is being resolved (not failed): the path's packets may
    /// wait for it when its group has nothing else (`select_or_hold`).
    pub resolving: bool,
    /// What its probes measured, when it is probed and has answered.
    pub figures: Option<crate::health::Figures>,
}

impl PathStatus {
    pub fn from_config(p: &Path) -> PathStatus {
        PathStatus {
            health: Health::Up,
            latency_us: p.latency_us,
            link_up: true,
            mac: p.next_hop_mac,
            resolving: false,
            figures: None,
        }
    }

    /// Whether the path's measured figures meet `sla` (a path not measured yet does).
    pub fn meets(&self, sla: &Sla) -> bool {
        self.figures.is_none_or(|f| sla.breach(&f).is_none())
    }
}

/// The group's choice for a class with `sla`: `select` among the paths meeting it, or
/// `None` when paths are usable but none meets it (the class then takes the group's
/// usual choice, and the caller counts it).
pub fn select_for(
    group: &PathGroup,
    paths: &[Path],
    status: &[PathStatus],
    site: Option<(f64, f64)>,
    sla: &Sla,
) -> Option<Vec<(u16, u32)>> {
    let limited: Vec<PathStatus> = status
        .iter()
        .map(|s| {
            if s.meets(sla) {
                *s
            } else {
                PathStatus {
                    health: Health::Down,
                    ..*s
                }
            }
        })
        .collect();
    let chosen = select(group, paths, &limited, site);
    // Nothing usable at all is not the SLA's doing: no fallback to count.
    (!chosen.is_empty() || select(group, paths, status, site).is_empty()).then_some(chosen)
}

/// The group's choice (`select`); when no path is usable but some are only waiting for
/// their next hop's MAC, the choice among those, as if resolved. Their packets are held
/// until the next hop answers, so a group's first packets are not lost to resolution.
pub fn select_or_hold(
    group: &PathGroup,
    paths: &[Path],
    status: &[PathStatus],
    site: Option<(f64, f64)>,
) -> Vec<(u16, u32)> {
    let chosen = select(group, paths, status, site);
    if !chosen.is_empty() {
        return chosen;
    }
    let waiting: Vec<PathStatus> = status
        .iter()
        .map(|s| {
            if s.mac.is_none() && s.resolving {
                PathStatus {
                    mac: Some([0; 6]),
                    ..*s
                }
            } else {
                *s
            }
        })
        .collect();
    select(group, paths, &waiting, site)
}

/// Whether a path may carry traffic at all: not drained, its port has link, its next hop
/// is resolved and its probes say it is not down.
pub fn eligible(p: &Path, s: &PathStatus) -> bool {
    p.admin != AdminState::Drained && s.link_up && s.mac.is_some() && s.health != Health::Down
}

/// Whether a path may carry traffic at all, and whether it is fully healthy.
fn usable(p: &Path, s: &PathStatus) -> Option<bool> {
    if !eligible(p, s) {
        None
    } else {
        Some(s.health == Health::Up)
    }
}

/// Great-circle distance in km.
pub fn distance_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (la1, lo1, la2, lo2) = (a.0.to_radians(), a.1.to_radians(), b.0.to_radians(), b.1.to_radians());
    let h = ((la2 - la1) / 2.0).sin().powi(2) + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
    2.0 * 6371.0 * h.sqrt().asin()
}

/// The group's chosen paths with their weights: (path index, weight). Empty when no
/// path is usable. Paths that are `Up` are preferred; `Degraded` ones are chosen only
/// when no path is `Up`. Ties on a single-best policy keep every tied path.
pub fn select(group: &PathGroup, paths: &[Path], status: &[PathStatus], site: Option<(f64, f64)>) -> Vec<(u16, u32)> {
    let usable: Vec<(u16, bool)> = group
        .paths
        .iter()
        .filter_map(|&i| usable(&paths[i as usize], &status[i as usize]).map(|up| (i, up)))
        .collect();
    let any_up = usable.iter().any(|&(_, up)| up);
    let cands: Vec<u16> = usable
        .iter()
        .filter(|&&(_, up)| up || !any_up)
        .map(|&(i, _)| i)
        .collect();
    if cands.is_empty() {
        return Vec::new();
    }
    let p = |i: u16| &paths[i as usize];
    let lat = |i: u16| status[i as usize].latency_us as f64;
    let dist = |i: u16| match (site, p(i).location) {
        (Some(s), Some(l)) => distance_km(s, l),
        _ => f64::MAX / 4.0,
    };
    // Lower is better for every metric below.
    let metric: Box<dyn Fn(u16) -> f64> = match &group.policy {
        Policy::LowestLatency => Box::new(lat),
        Policy::LowestCost => Box::new(|i| p(i).cost_per_gb),
        Policy::HighestBandwidth => Box::new(|i| -(p(i).bandwidth_bps as f64)),
        Policy::Nearest => Box::new(dist),
        Policy::WeightedScore {
            latency,
            cost,
            bandwidth,
            distance,
        } => {
            let scale = |f: &dyn Fn(u16) -> f64| {
                let v: Vec<f64> = cands.iter().map(|&i| f(i)).collect();
                let (lo, hi) = v.iter().fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
                move |x: f64| if hi > lo { (x - lo) / (hi - lo) } else { 0.0 }
            };
            let sl = scale(&lat);
            let sc = scale(&|i| p(i).cost_per_gb);
            let sb = scale(&|i| -(p(i).bandwidth_bps as f64));
            let sd = scale(&dist);
            let (wl, wc, wb, wd) = (*latency, *cost, *bandwidth, *distance);
            Box::new(move |i| {
                wl * sl(lat(i)) + wc * sc(p(i).cost_per_gb) + wb * sb(-(p(i).bandwidth_bps as f64)) + wd * sd(dist(i))
            })
        }
        Policy::ActiveActive { tolerance_pct } => {
            let best = cands.iter().map(|&i| lat(i)).fold(f64::MAX, f64::min);
            let limit = best * (1.0 + tolerance_pct / 100.0);
            return cands
                .iter()
                .filter(|&&i| lat(i) <= limit)
                .map(|&i| (i, p(i).weight))
                .filter(|&(_, w)| w > 0)
                .collect();
        }
    };
    let best = cands.iter().map(|&i| metric(i)).fold(f64::MAX, f64::min);
    cands
        .iter()
        .filter(|&&i| metric(i) <= best)
        .map(|&i| (i, p(i).weight.max(1)))
        .collect()
}

/// A group's selection compiled for the fast path.
#[derive(Debug, Clone)]
pub struct Selection {
    pub members: Vec<(u16, u32)>,
    /// Paths a flow already on them stays on: the members, and (unless flows are to
    /// rebalance when a path recovers) every other path of the group that is eligible
    /// and fully up — so a recovered primary takes new flows only.
    pub keep: Vec<u16>,
    pub table: Maglev,
}

impl Selection {
    pub fn compile(members: Vec<(u16, u32)>, paths: &[Path]) -> Selection {
        let named: Vec<(u16, &str, u32)> = members
            .iter()
            .map(|&(i, w)| (i, paths[i as usize].name.as_str(), w))
            .collect();
        Selection {
            table: Maglev::build(&named),
            keep: members.iter().map(|&(i, _)| i).collect(),
            members,
        }
    }

    /// Adds the group's other eligible, fully up paths that meet `sla` (a class's; empty
    /// for none) to `keep`.
    pub fn keep_healthy(&mut self, group: &PathGroup, paths: &[Path], status: &[PathStatus], sla: &Sla) {
        for &i in &group.paths {
            let (p, s) = (&paths[i as usize], &status[i as usize]);
            if eligible(p, s) && s.health == Health::Up && s.meets(sla) && !self.keep.contains(&i) {
                self.keep.push(i);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(name: &str, cloud: Cloud, lat_us: u32, cost: f64, bw_gbps: u64, loc: (f64, f64)) -> Path {
        Path {
            name: name.into(),
            cloud,
            region: "r".into(),
            port: 0,
            next_hop: "10.0.0.1".parse().unwrap(),
            next_hop_mac: Some([2, 0, 0, 0, 0, 1]),
            probe: ProbeMode::None,
            probe_target: "10.0.0.1".parse().unwrap(),
            cost_per_gb: cost,
            bandwidth_bps: bw_gbps * 1_000_000_000,
            location: Some(loc),
            weight: 1,
            latency_us: lat_us,
            admin: AdminState::Up,
        }
    }

    /// aws: fast, expensive, far; gcp: slower, cheap, near; azure: middling, widest.
    fn set() -> Vec<Path> {
        vec![
            path("aws-use1", Cloud::Aws, 10_000, 0.09, 10, (38.9, -77.0)),
            path("gcp-euw1", Cloud::Gcp, 30_000, 0.02, 5, (50.4, 3.8)),
            path("azure-weu", Cloud::Azure, 20_000, 0.05, 25, (52.4, 4.9)),
        ]
    }

    fn group(policy: Policy) -> PathGroup {
        PathGroup {
            name: "g".into(),
            paths: vec![0, 1, 2],
            policy,
        }
    }

    fn status(paths: &[Path]) -> Vec<PathStatus> {
        paths.iter().map(PathStatus::from_config).collect()
    }

    const PARIS: (f64, f64) = (48.9, 2.35);

    #[test]
    fn each_policy_picks_its_best() {
        let ps = set();
        let st = status(&ps);
        let pick = |pol| select(&group(pol), &ps, &st, Some(PARIS));
        assert_eq!(pick(Policy::LowestLatency), vec![(0, 1)]);
        assert_eq!(pick(Policy::LowestCost), vec![(1, 1)]);
        assert_eq!(pick(Policy::HighestBandwidth), vec![(2, 1)]);
        // Paris: Belgium (gcp) is nearer than Amsterdam (azure) and Virginia (aws).
        assert_eq!(pick(Policy::Nearest), vec![(1, 1)]);
        let ws = |l, c, b, d| Policy::WeightedScore {
            latency: l,
            cost: c,
            bandwidth: b,
            distance: d,
        };
        assert_eq!(pick(ws(1.0, 0.0, 0.0, 0.0)), vec![(0, 1)]);
        assert_eq!(pick(ws(0.0, 1.0, 0.0, 0.0)), vec![(1, 1)]);
        // Azure is second on latency and cost and first on bandwidth: it wins a balance.
        assert_eq!(pick(ws(1.0, 1.0, 1.0, 0.0)), vec![(2, 1)]);
        // Active-active within 100 %: 10 ms and 20 ms qualify, 30 ms does not.
        assert_eq!(
            pick(Policy::ActiveActive { tolerance_pct: 100.0 }),
            vec![(0, 1), (2, 1)]
        );
        assert_eq!(pick(Policy::ActiveActive { tolerance_pct: 0.0 }), vec![(0, 1)]);
    }

    #[test]
    fn unusable_paths_are_skipped() {
        let mut ps = set();
        let mut st = status(&ps);
        let g = group(Policy::LowestLatency);
        st[0].health = Health::Down;
        assert_eq!(select(&g, &ps, &st, None), vec![(2, 1)]);
        st[2].link_up = false;
        assert_eq!(select(&g, &ps, &st, None), vec![(1, 1)]);
        // A next hop that cannot be resolved is not eligible.
        st[1].mac = None;
        assert!(select(&g, &ps, &st, None).is_empty());
        st[1].mac = Some([2, 0, 0, 0, 0, 1]);
        ps[1].admin = AdminState::Drained;
        assert!(select(&g, &ps, &st, None).is_empty());
        // Degraded is used only when nothing is Up.
        let mut st = status(&ps);
        ps[1].admin = AdminState::Up;
        st[0].health = Health::Degraded;
        assert_eq!(select(&g, &ps, &st, None), vec![(2, 1)]);
        st[1].health = Health::Degraded;
        st[2].health = Health::Degraded;
        assert_eq!(select(&g, &ps, &st, None), vec![(0, 1)]);
    }

    #[test]
    fn paths_being_resolved_are_chosen_only_when_nothing_else_is_usable() {
        let ps = set();
        let g = group(Policy::LowestLatency);
        let mut st = status(&ps);
        st[0].mac = None;
        st[0].resolving = true;
        // Another path is usable: it is the choice, and nothing waits.
        assert_eq!(select_or_hold(&g, &ps, &st, None), vec![(2, 1)]);
        st[1].link_up = false;
        st[2].health = Health::Down;
        assert!(select(&g, &ps, &st, None).is_empty());
        assert_eq!(select_or_hold(&g, &ps, &st, None), vec![(0, 1)]);
        // A failed next hop is not waited for, nor is a path that is down or drained.
        st[0].resolving = false;
        assert!(select_or_hold(&g, &ps, &st, None).is_empty());
        st[0].resolving = true;
        st[0].health = Health::Down;
        assert!(select_or_hold(&g, &ps, &st, None).is_empty());
        let mut drained = ps.clone();
        drained[0].admin = AdminState::Drained;
        st[0].health = Health::Up;
        assert!(select_or_hold(&g, &drained, &st, None).is_empty());
    }

    #[test]
    fn ties_share_and_weights_carry() {
        let mut ps = set();
        ps[1].latency_us = 10_000;
        ps[1].weight = 3;
        let st = status(&ps);
        let sel = select(&group(Policy::LowestLatency), &ps, &st, None);
        assert_eq!(sel, vec![(0, 1), (1, 3)]);
        let c = Selection::compile(sel, &ps);
        let s = c.table.shares(3);
        assert!(s[1] > 2 * s[0] && s[2] == 0, "{s:?}");
    }

    #[test]
    fn healthy_paths_keep_their_flows() {
        let ps = set();
        let mut st = status(&ps);
        let g = group(Policy::LowestLatency);
        let mut sel = Selection::compile(select(&g, &ps, &st, None), &ps);
        assert_eq!(sel.keep, vec![0]);
        sel.keep_healthy(&g, &ps, &st, &crate::health::Sla::default());
        assert_eq!(sel.keep, vec![0, 1, 2]);
        st[1].health = Health::Degraded;
        let mut ps = ps;
        ps[2].admin = AdminState::Drained;
        let mut sel = Selection::compile(select(&g, &ps, &st, None), &ps);
        sel.keep_healthy(&g, &ps, &st, &crate::health::Sla::default());
        assert_eq!(sel.keep, vec![0]);
    }

    #[test]
    fn a_class_sla_limits_the_choice_or_falls_back() {
        use crate::health::{Figures, Sla};
        let ps = set();
        let mut st = status(&ps);
        let g = group(Policy::LowestCost);
        let fig = |rtt: f64, loss: u32| {
            Some(Figures {
                rtt_avg_us: rtt,
                loss_ppm: loss,
                answered_in_window: 10,
                rounds_in_window: 10,
                ..Figures::default()
            })
        };
        st[0].figures = fig(10_000.0, 0);
        st[1].figures = fig(30_000.0, 0);
        st[2].figures = fig(20_000.0, 50_000);
        let voice = Sla {
            max_latency_us: Some(25_000),
            max_loss_ppm: Some(10_000),
            max_jitter_us: None,
        };
        // Cheapest is gcp (30 ms), too slow for voice; azure loses 5 %: aws it is.
        assert_eq!(select(&g, &ps, &st, None), vec![(1, 1)]);
        assert_eq!(select_for(&g, &ps, &st, None, &voice), Some(vec![(0, 1)]));
        st[0].figures = fig(40_000.0, 0);
        assert_eq!(select_for(&g, &ps, &st, None, &voice), None);
        assert_eq!(select_for(&g, &ps, &st, None, &Sla::default()), Some(vec![(1, 1)]));
    }

    #[test]
    fn distances() {
        let d = distance_km((51.5, -0.13), (48.86, 2.35));
        assert!((d - 343.0).abs() < 5.0, "{d}");
    }
}
