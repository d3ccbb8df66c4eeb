//! The control thread's share of the fast path's work, run from the control loop on the
//! main lcore: it frees (and counts) the exception packets the workers hand over, collects
//! ended flows, follows port links, rebalances the classes' rate shares across workers by
//! demand, and reloads the configuration on SIGHUP — every change compiled into a new
//! `Tables` snapshot and published with one atomic swap. Snapshots replaced are kept
//! until no worker holds them, so a worker never frees one.

use crate::dpdk::Mbuf;
use crate::flow::{EndReason, FlowRecord};
use crate::pipeline::Shares;
use crate::stats::WorkerCounters;
use crate::tables::{Published, Tables};
use control::Config;
use log::{error, info, warn};
use routing::path::PathStatus;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Ended flows kept for `show flows` and the telemetry sinks.
pub const RECENT_RECORDS: usize = 4096;
/// Ring sizes per worker.
pub const EXCEPTION_RING: usize = 1024;
pub const RECORD_RING: usize = 16384;
/// How often shares are rebalanced.
const REBALANCE_EVERY: Duration = Duration::from_millis(100);
/// No worker's share of a class falls below this (parts per million of the whole), so a
/// worker whose flows of that class have just started is not starved for a period.
const SHARE_FLOOR_PPM: u32 = 20_000;

pub struct SlowPath {
    pub cfg: Config,
    port_macs: Vec<[u8; 6]>,
    pub published: Arc<Published>,
    pub shares: Arc<Shares>,
    exceptions: Vec<rtrb::Consumer<Mbuf>>,
    records: Vec<rtrb::Consumer<FlowRecord>>,
    retired: Vec<Arc<Tables>>,
    link_up: Vec<bool>,
    last_demand: Vec<Vec<u64>>,
    last_rebalance: Instant,
    pub exceptions_freed: u64,
    pub records_by_reason: [u64; 4],
    pub recent: VecDeque<FlowRecord>,
    pub reloads_ok: u64,
    pub reloads_refused: u64,
    pub link_changes: u64,
}

/// Path status from configuration and the ports' links.
fn statuses(cfg: &Config, link_up: &[bool]) -> Vec<PathStatus> {
    cfg.paths
        .iter()
        .map(|p| PathStatus {
            link_up: link_up.get(p.port).copied().unwrap_or(true),
            ..PathStatus::from_config(p)
        })
        .collect()
}

impl SlowPath {
    /// Compiles the first snapshot. Rings are made per worker: the producers go to the
    /// workers.
    #[allow(clippy::type_complexity)]
    pub fn new(
        cfg: Config,
        port_macs: Vec<[u8; 6]>,
        workers: usize,
    ) -> Result<(SlowPath, Vec<(rtrb::Producer<Mbuf>, rtrb::Producer<FlowRecord>)>), String> {
        let link_up = vec![true; cfg.ports.len()];
        let tables = Tables::build(&cfg, &port_macs, &statuses(&cfg, &link_up), 1)?;
        let mut producers = Vec::new();
        let mut exceptions = Vec::new();
        let mut records = Vec::new();
        for _ in 0..workers {
            let (ep, ec) = rtrb::RingBuffer::new(EXCEPTION_RING);
            let (rp, rc) = rtrb::RingBuffer::new(RECORD_RING);
            producers.push((ep, rp));
            exceptions.push(ec);
            records.push(rc);
        }
        Ok((
            SlowPath {
                cfg,
                port_macs,
                published: Arc::new(Published::new(tables)),
                shares: Arc::new(Shares::new(workers)),
                exceptions,
                records,
                retired: Vec::new(),
                link_up,
                last_demand: vec![Vec::new(); workers],
                last_rebalance: Instant::now(),
                exceptions_freed: 0,
                records_by_reason: [0; 4],
                recent: VecDeque::with_capacity(RECENT_RECORDS),
                reloads_ok: 0,
                reloads_refused: 0,
                link_changes: 0,
            },
            producers,
        ))
    }

    /// Frees the exception packets and collects ended flows. Bounded per call by the
    /// rings' sizes.
    pub fn drain(&mut self) {
        for c in self.exceptions.iter_mut() {
            while let Ok(m) = c.pop() {
                // The control plane's handling of ARP and packets for the appliance is a
                // later stage; until then they are counted and freed here.
                drop(m);
                self.exceptions_freed += 1;
            }
        }
        for c in self.records.iter_mut() {
            while let Ok(r) = c.pop() {
                self.records_by_reason[r.reason as usize] += 1;
                if self.recent.len() == RECENT_RECORDS {
                    self.recent.pop_front();
                }
                self.recent.push_back(r);
            }
        }
        // Snapshots that only this thread still holds can go now.
        self.retired.retain(|t| Arc::strong_count(t) > 1);
    }

    fn publish(&mut self, cfg: &Config) -> Result<(), String> {
        let next = self.generation().wrapping_add(1).max(1);
        let mut t = Tables::build(cfg, &self.port_macs, &statuses(cfg, &self.link_up), next)?;
        t.follow(&self.published.load());
        let old = self.published.publish(t);
        self.retired.push(old);
        Ok(())
    }

    /// Follows the ports' links: a link going down takes its paths out of every group
    /// at once (and back when it returns).
    pub fn links(&mut self, up: &[bool]) {
        if up == self.link_up.as_slice() {
            return;
        }
        for (i, (&was, &is)) in self.link_up.iter().zip(up).enumerate() {
            if was != is {
                warn!(target: "routing", "port \"{}\": link {}", self.cfg.ports[i].name, if is { "up" } else { "down" });
            }
        }
        self.link_up = up.to_vec();
        self.link_changes += 1;
        let cfg = self.cfg.clone();
        if let Err(e) = self.publish(&cfg) {
            error!(target: "routing", "cannot rebuild the tables after a link change: {e}");
        }
    }

    /// Reloads the configuration file. A valid one that changes only what can change
    /// live (classes, rules, paths, groups, routes) is published; anything else is
    /// refused with the reason, and the running configuration stays.
    pub fn reload(&mut self, path: &std::path::Path) {
        let refuse = |s: &mut SlowPath, why: String| {
            s.reloads_refused += 1;
            error!(target: "reload", "reload refused, the running configuration stays: {why}");
        };
        let new = match Config::load(path) {
            Ok(c) => c,
            Err(e) => return refuse(self, e.to_string()),
        };
        let fixed = [
            (self.cfg.eal != new.eal, "[eal]"),
            (self.cfg.ports != new.ports, "[[ports]]"),
            (self.cfg.flows != new.flows, "[flows]"),
        ];
        if let Some((_, what)) = fixed.iter().find(|(changed, _)| *changed) {
            return refuse(self, format!("{what} changed, which needs a restart"));
        }
        if let Err(e) = self.publish(&new) {
            return refuse(self, e);
        }
        info!(
            target: "reload",
            "configuration reloaded (generation {}): {} classes, {} rules, {} paths, {} routes",
            self.generation(),
            new.classes.len(),
            new.rules.len(),
            new.paths.len(),
            new.routes.len()
        );
        self.cfg = new;
        self.reloads_ok += 1;
    }

    /// Every `REBALANCE_EVERY`, sets each metered class's per-worker shares in proportion
    /// to the bytes each worker was offered for it in the last period.
    pub fn rebalance(&mut self, counters: &[Arc<WorkerCounters>]) {
        if counters.len() < 2 || self.last_rebalance.elapsed() < REBALANCE_EVERY {
            return;
        }
        self.last_rebalance = Instant::now();
        let classes = self.cfg.classes.len();
        let now: Vec<Vec<u64>> = counters.iter().map(|c| c.class_demand(classes)).collect();
        for (class, c) in self.cfg.classes.iter().enumerate() {
            if c.meter == qos::MeterSpec::None {
                continue;
            }
            let demand: Vec<u64> = now
                .iter()
                .zip(&self.last_demand)
                .map(|(n, l)| n[class].saturating_sub(l.get(class).copied().unwrap_or(0)))
                .collect();
            if demand.iter().all(|&d| d == 0) {
                continue;
            }
            let shares = qos::share::rebalance(&demand, SHARE_FLOOR_PPM);
            let current: Vec<u32> = (0..counters.len()).map(|w| self.shares.get(w, class)).collect();
            // Small moves are not worth resetting every worker's meter for.
            let moved = shares.iter().zip(&current).any(|(a, b)| a.abs_diff(*b) > 10_000);
            if moved {
                self.shares.set(class, &shares);
            }
        }
        self.last_demand = now;
    }

    pub fn generation(&self) -> u32 {
        self.published.generation()
    }

    pub fn record_counts(&self) -> Vec<(&'static str, u64)> {
        [
            EndReason::Idle,
            EndReason::Closed,
            EndReason::Evicted,
            EndReason::Shutdown,
        ]
        .iter()
        .map(|r| (r.name(), self.records_by_reason[*r as usize]))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use qos::meter::Colour;

    fn config() -> Config {
        static TREE: std::sync::OnceLock<numa::FakeTree> = std::sync::OnceLock::new();
        let sys = TREE
            .get_or_init(|| numa::FakeTree::new("slowpath-test").online_cpus("0-3"))
            .system();
        Config::parse(
            "[eal]\nworkers = [1, 2]\n[[ports]]\nname = \"a\"\ndevice = \"net_null0\"\n\
             [[classes]]\nname = \"gold\"\nmeter = { type = \"token-bucket\", rate = \"1Gbit\" }\n\
             [[routes]]\nprefix = \"198.18.0.0/16\"\nport = \"a\"\nnext_hop_mac = \"02:00:00:00:00:01\"\n",
            "t.toml",
            &sys,
        )
        .unwrap()
    }

    #[test]
    fn shares_follow_demand_and_sum_to_the_rate() {
        let (mut s, _rings) = SlowPath::new(config(), vec![[2, 0, 0, 0, 0, 1]], 2).unwrap();
        let counters = vec![Arc::new(WorkerCounters::default()), Arc::new(WorkerCounters::default())];
        assert_eq!((s.shares.get(0, 1), s.shares.get(1, 1)), (500_000, 500_000));
        // Worker 1 sees nine times worker 0's traffic of class 1.
        counters[0].class_packets_add(1, Colour::Green, 1, 1000);
        counters[1].class_packets_add(1, Colour::Green, 1, 9000);
        s.last_rebalance = Instant::now() - REBALANCE_EVERY;
        s.rebalance(&counters);
        let (a, b) = (s.shares.get(0, 1), s.shares.get(1, 1));
        assert_eq!(a + b, 1_000_000);
        assert!(a < 150_000 && b > 850_000, "{a} {b}");
        assert_eq!(s.shares.generation.load(std::sync::atomic::Ordering::Relaxed), 1);
        // The unmetered default class is left alone.
        assert_eq!(s.shares.get(0, 0), 500_000);
        // No new traffic: nothing changes.
        s.last_rebalance = Instant::now() - REBALANCE_EVERY;
        s.rebalance(&counters);
        assert_eq!(s.shares.generation.load(std::sync::atomic::Ordering::Relaxed), 1);
    }

    #[test]
    fn link_down_republishes_without_the_port() {
        let (mut s, _rings) = SlowPath::new(config(), vec![[2, 0, 0, 0, 0, 1]], 2).unwrap();
        let g1 = s.published.generation();
        s.links(&[false]);
        assert_eq!(s.published.generation(), g1 + 1);
        assert!(s.published.load().groups[0].members.is_empty());
        s.links(&[false]);
        assert_eq!(s.published.generation(), g1 + 1, "no change, no publish");
        s.links(&[true]);
        assert_eq!(s.published.load().groups[0].members.len(), 1);
        // Replaced snapshots nobody holds are released on the next drain.
        s.drain();
        assert!(s.retired.is_empty());
    }
}
