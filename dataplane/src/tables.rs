//! The snapshot the workers read: everything compiled from the configuration and the
//! paths' current state (classifier, classes, LPM tables, path groups with their Maglev
//! selections, next-hop rewrites). Immutable once built; the control thread builds a new
//! one for a reload or a path-state change and publishes it with one atomic swap
//! (`Published`), and workers pick it up between bursts.

use crate::parse::Meta;
use arc_swap::ArcSwap;
use control::config::{Config, Prefix};
use qos::{Class, Classifier};
use routing::health::Sla;
use routing::path::{select_for, select_or_hold, PathStatus, Selection};
use routing::{Ipv4Prefix, Ipv6Prefix, Lpm4, Lpm6, Path};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// What a flow's `path` holds when it has no path: the special values below, or a path index.
pub const PATH_NO_ROUTE: u16 = u16::MAX;
/// For the appliance itself (its own addresses, IPv6 link-local and multicast).
pub const PATH_LOCAL: u16 = u16::MAX - 1;
/// IPv4 multicast, broadcast and reserved destinations: never routed.
pub const PATH_NOT_UNICAST: u16 = u16::MAX - 2;
/// The route's group has no usable path right now.
pub const PATH_NONE_USABLE: u16 = u16::MAX - 3;

const LPM_LOCAL: u32 = routing::lpm::MAX_VALUE;
const LPM_NOT_UNICAST: u32 = routing::lpm::MAX_VALUE - 1;

/// Bytes written over the first 12 of a frame, the egress port and its MTU. `hold`: the
/// next hop's MAC is not known yet (the path is chosen only while it is being resolved
/// and nothing else is usable), so packets go to the control thread to wait for it.
#[derive(Debug, Clone, Copy)]
pub struct Hop {
    pub macs: [u8; 12],
    pub port: u16,
    pub mtu: u16,
    pub hold: bool,
}

impl Hop {
    /// No hop: what `Tables::direct_hops` holds for a group with a choice to make. Its
    /// MTU of 0 (ports have at least `MIN_MTU`) is one no frame fits, so the one test of
    /// a frame's length against the hop's MTU also finds the groups with a choice.
    pub const CHOOSE: Hop = Hop {
        macs: [0; 12],
        port: u16::MAX,
        mtu: 0,
        hold: true,
    };
}

pub struct Tables {
    pub generation: u32,
    pub classifier: Classifier,
    pub classes: Vec<Class>,
    v4: Lpm4,
    v6: Lpm6,
    /// Each path group's current choice, by group index.
    pub groups: Vec<Selection>,
    /// The distinct class SLAs; `class_profile[c]` is 0 for a class without one, else
    /// 1 + its index here.
    pub profiles: Vec<Sla>,
    pub class_profile: Vec<u8>,
    /// Per profile, per group: the choice among the paths meeting the SLA, or `None`
    /// when none does (the class then uses `groups`).
    pub sla_groups: Vec<Vec<Option<Selection>>>,
    pub hops: Vec<Hop>,
    /// By group: the hop of the group's path when it has exactly one and its next hop is
    /// known (then a packet of a class without an SLA needs no choosing: route straight
    /// to it); `Hop::CHOOSE` otherwise. Derived from `groups` and `hops`.
    direct: Vec<Hop>,
    pub paths: Vec<Path>,
    /// Path indices mean the same path in every generation since `numbered_since`; a flow
    /// decided from `prev_numbered_since` up to then finds its path through `remap` (by
    /// name; `PATH_NO_ROUTE` for paths that are gone). So a flow keeps the same path, not
    /// merely the same index, across reloads that reorder paths and any number of link
    /// changes.
    numbered_since: u32,
    prev_numbered_since: u32,
    remap: Vec<u16>,
}

impl Tables {
    /// Compiles `cfg` with the paths' current `status` (one per configured path).
    /// `port_macs[i]` is port i's MAC address.
    pub fn build(
        cfg: &Config,
        port_macs: &[[u8; 6]],
        status: &[PathStatus],
        generation: u32,
    ) -> Result<Tables, String> {
        assert_eq!(status.len(), cfg.paths.len());
        let (classifier, v4, v6) = compile_lookups(cfg)?;
        // A group's choice compiled for a class with `sla` (empty: none). Unless flows are
        // to rebalance, a flow also keeps any path the class may still use.
        let new_flows_only = cfg.probes.recovery == control::config::Recovery::NewFlows;
        let compile = |g: &routing::PathGroup, members: Vec<(u16, u32)>, sla: &Sla| {
            let mut s = Selection::compile(members, &cfg.paths);
            if new_flows_only {
                s.keep_healthy(g, &cfg.paths, status, sla);
            }
            s
        };
        let groups: Vec<Selection> = cfg
            .groups
            .iter()
            .map(|g| compile(g, select_or_hold(g, &cfg.paths, status, cfg.site), &Sla::default()))
            .collect();
        let mut profiles: Vec<Sla> = Vec::new();
        let class_profile: Vec<u8> = cfg
            .class_slas
            .iter()
            .map(|s| {
                if s.is_empty() {
                    return 0;
                }
                let i = profiles.iter().position(|p| p == s).unwrap_or_else(|| {
                    profiles.push(*s);
                    profiles.len() - 1
                });
                (i + 1) as u8
            })
            .collect();
        let sla_groups = profiles
            .iter()
            .map(|sla| {
                cfg.groups
                    .iter()
                    .map(|g| {
                        // Nothing usable at all: the same wait for next hops as the group's.
                        select_for(g, &cfg.paths, status, cfg.site, sla).map(|m| {
                            let m = if m.is_empty() {
                                select_or_hold(g, &cfg.paths, status, cfg.site)
                            } else {
                                m
                            };
                            compile(g, m, sla)
                        })
                    })
                    .collect()
            })
            .collect();
        let hops = cfg
            .paths
            .iter()
            .zip(status)
            .map(|(p, st)| {
                // A path without a MAC is selected only to hold its packets.
                let mut macs = [0u8; 12];
                macs[..6].copy_from_slice(&st.mac.unwrap_or_default());
                macs[6..].copy_from_slice(&port_macs[p.port]);
                Hop {
                    macs,
                    port: p.port as u16,
                    mtu: cfg.ports[p.port].mtu,
                    hold: st.mac.is_none(),
                }
            })
            .collect::<Vec<Hop>>();
        let direct = direct_hops(&groups, &hops);
        Ok(Tables {
            generation,
            classifier,
            classes: cfg.classes.clone(),
            v4,
            v6,
            groups,
            profiles,
            class_profile,
            sla_groups,
            hops,
            direct,
            paths: cfg.paths.clone(),
            numbered_since: generation,
            prev_numbered_since: 0,
            remap: Vec::new(),
        })
    }

    /// Records that these tables replace `prev`.
    pub fn follow(&mut self, prev: &Tables) {
        let same =
            prev.paths.len() == self.paths.len() && prev.paths.iter().zip(&self.paths).all(|(a, b)| a.name == b.name);
        if same {
            self.numbered_since = prev.numbered_since;
            self.prev_numbered_since = prev.prev_numbered_since;
            self.remap = prev.remap.clone();
        } else {
            self.numbered_since = self.generation;
            self.prev_numbered_since = prev.numbered_since;
            self.remap = prev
                .paths
                .iter()
                .map(|p| {
                    self.paths
                        .iter()
                        .position(|q| q.name == p.name)
                        .map_or(PATH_NO_ROUTE, |i| i as u16)
                })
                .collect();
        }
    }

    /// (class, group) pairs whose class SLA no path of the group meets now: those
    /// classes use the group's usual choice.
    pub fn sla_unmet(&self) -> Vec<(usize, usize)> {
        let mut v = Vec::new();
        for (c, &k) in self.class_profile.iter().enumerate() {
            if k > 0 {
                for (g, s) in self.sla_groups[k as usize - 1].iter().enumerate() {
                    if s.is_none() {
                        v.push((c, g));
                    }
                }
            }
        }
        v
    }

    /// The path a flow decided under generation `generation` with path `path` has in these
    /// tables: the same index within one numbering, the same path by name across one
    /// renumbering, otherwise unknown (`PATH_NO_ROUTE`: chosen again).
    #[inline]
    pub fn carry_path(&self, generation: u32, path: u16) -> u16 {
        if generation >= self.numbered_since {
            path
        } else if self.prev_numbered_since != 0 && generation >= self.prev_numbered_since {
            self.remap.get(path as usize).copied().unwrap_or(path)
        } else {
            PATH_NO_ROUTE
        }
    }

    /// Memory the LPM tables take (virtual; untouched pages are not resident).
    pub fn memory_bytes(&self) -> usize {
        self.v4.memory_bytes() + self.v6.memory_bytes() + self.classifier.memory_bytes()
    }

    /// The path for a packet of a flow with hash `flow_hash()` (asked for only when the
    /// group has a choice to make) that had path `current`: the current one while it is
    /// still selected for the destination's group, else the group's Maglev choice; or one
    /// of the special `PATH_*` values.
    /// A class with an SLA uses its own choice while some path meets the SLA.
    #[inline]
    pub fn resolve_path(&self, m: &Meta, flow_hash: impl FnOnce() -> u64, current: u16, class: u8) -> u16 {
        let route = if m.is_v6() {
            self.v6.lookup(m.key.dst)
        } else {
            self.v4.lookup(m.key.dst as u32)
        };
        self.resolve_route(route, flow_hash, current, class)
    }

    /// The IPv4 route to `dst`: a group index, or a value no group has (for the
    /// appliance's own addresses and for destinations never routed). `None`: no route.
    #[inline(always)]
    pub fn route_v4(&self, dst: u32) -> Option<u32> {
        self.v4.lookup(dst)
    }

    /// By group: the hop every packet routed to the group takes when neither its class
    /// (which must have no SLA) nor its flow has a choice to make: the group's only path,
    /// with its next hop known. `Hop::CHOOSE` when there is a choice.
    #[inline(always)]
    pub fn direct_hops(&self) -> &[Hop] {
        &self.direct
    }

    /// `resolve_path` after the route lookup, which gave `route`.
    #[inline(always)]
    pub fn resolve_route(&self, route: Option<u32>, flow_hash: impl FnOnce() -> u64, current: u16, class: u8) -> u16 {
        let g = match route {
            None => return PATH_NO_ROUTE,
            Some(LPM_LOCAL) => return PATH_LOCAL,
            Some(LPM_NOT_UNICAST) => return PATH_NOT_UNICAST,
            Some(g) => {
                let profile = self.class_profile.get(class as usize).copied().unwrap_or(0);
                match profile {
                    0 => &self.groups[g as usize],
                    k => self.sla_groups[k as usize - 1][g as usize]
                        .as_ref()
                        .unwrap_or(&self.groups[g as usize]),
                }
            }
        };
        // (A packet without a path yet, as every packet in packet mode: nothing to keep.)
        if current != PATH_NO_ROUTE && g.keep.contains(&current) {
            return current;
        }
        // One path takes every flow: no hash needed.
        if let [(only, _)] = g.members[..] {
            return only;
        }
        match g.table.lookup((flow_hash() >> 32) as u32) {
            routing::NO_PATH => PATH_NONE_USABLE,
            p => p,
        }
    }
}

/// See `Tables::direct`.
fn direct_hops(groups: &[Selection], hops: &[Hop]) -> Vec<Hop> {
    groups
        .iter()
        .map(|g| match g.members[..] {
            [(only, _)] => hops.get(only as usize).filter(|h| !h.hold).copied(),
            _ => None,
        })
        .map(|hop| hop.unwrap_or(Hop::CHOOSE))
        .collect()
}

/// The parts of the tables that can fail to compile (classifier, LPM): what
/// `sluiced --check-config` checks, and what `Tables::build` starts from.
fn compile_lookups(cfg: &Config) -> Result<(Classifier, Lpm4, Lpm6), String> {
    let classifier = Classifier::build(&cfg.rules, qos::ClassId(0)).map_err(|e| e.to_string())?;
    let mut r4: Vec<(Ipv4Prefix, u32)> = Vec::new();
    let mut r6: Vec<(Ipv6Prefix, u32)> = Vec::new();
    for r in &cfg.routes {
        match r.prefix {
            Prefix::V4(p) => r4.push((p, r.group as u32)),
            Prefix::V6(p) => r6.push((p, r.group as u32)),
        }
    }
    // Address space that is never forwarded is compiled into the table, so the fast path
    // needs no checks of its own for it. Validation refuses routes inside these ranges and
    // routes to the appliance's own addresses, so nothing collides.
    r4.push((control::config::IPV4_NOT_UNICAST, LPM_NOT_UNICAST));
    r6.extend(control::config::IPV6_LINK_ONLY.iter().map(|&p| (p, LPM_LOCAL)));
    for p in &cfg.ports {
        r4.extend(p.ipv4.iter().map(|a| (Ipv4Prefix::new(a.addr, 32), LPM_LOCAL)));
        r6.extend(p.ipv6.iter().map(|a| (Ipv6Prefix::new(a.addr, 128), LPM_LOCAL)));
    }
    let v4 = Lpm4::build(&r4, Lpm4::DEFAULT_MAX_GROUPS).map_err(|e| e.to_string())?;
    let v6 = Lpm6::build(&r6, Lpm6::DEFAULT_MAX_GROUPS).map_err(|e| e.to_string())?;
    Ok((classifier, v4, v6))
}

/// Whether `cfg`'s classifier and routes compile (everything `Tables::build` can refuse;
/// selections and next-hop rewrites always compile).
pub fn check(cfg: &Config) -> Result<(), String> {
    compile_lookups(cfg).map(|_| ())
}

/// The published snapshot and its generation, which workers check once per burst.
pub struct Published {
    current: ArcSwap<Tables>,
    generation: AtomicU32,
}

impl Published {
    pub fn new(t: Tables) -> Published {
        let g = t.generation;
        Published {
            current: ArcSwap::from_pointee(t),
            generation: AtomicU32::new(g),
        }
    }

    /// Publishes `t`; returns the snapshot it replaced, which the caller keeps until no
    /// worker holds it any more (so a worker never frees a large table on its core).
    pub fn publish(&self, t: Tables) -> Arc<Tables> {
        let g = t.generation;
        let old = self.current.swap(Arc::new(t));
        self.generation.store(g, Ordering::Release);
        old
    }

    #[inline(always)]
    pub fn generation(&self) -> u32 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn load(&self) -> Arc<Tables> {
        self.current.load_full()
    }
}
