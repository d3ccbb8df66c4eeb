//! The control thread's side of the appliance, run from the control loop on the main
//! lcore: it hands the exception packets the workers pass over (ARP, ND, ICMP, probe
//! answers) to the control plane (`control::plane`) and sends what that answers or
//! originates on each port's own control TX queue; it collects ended flows, follows port
//! links, rebalances the classes' rate shares across workers by demand, and reloads the
//! configuration on SIGHUP. Every change of a path's eligibility (probes, neighbours,
//! links, a reload) is compiled into a new `Tables` snapshot and published with one atomic
//! swap. Snapshots replaced are kept until no worker holds them, so a worker never frees
//! one.

use crate::dpdk::{rdtsc, Burst, Mbuf, Mempool, TxQueue};
use crate::flow::{EndReason, FlowRecord, TopFlows};
use crate::pipeline::Shares;
use crate::quiesce::IoSeq;
use crate::stats::WorkerCounters;
use crate::tables::{Published, Tables};
use control::hold::HoldQueues;
use control::plane::{Plane, PortInfo};
use control::Config;
use log::{error, info, warn};
use routing::path::PathStatus;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A control event, for the telemetry's spans.
#[derive(Debug, Clone)]
pub struct ControlEvent {
    pub at_unix_ns: u64,
    pub name: &'static str,
    pub ok: bool,
    pub message: String,
    pub attrs: Vec<telemetry::otlp::pb::KeyValue>,
}

/// Control events kept for the telemetry period to take.
pub const EVENTS_OUT: usize = 1024;

/// A packet a worker hands to the control thread: the port (configuration index) it came
/// in on and the TSC when the worker had it. `hold`: a routed packet (TTL, DSCP and source
/// MAC already written) waiting for its path's next hop, with the path's index and the
/// generation of the tables that chose it.
pub struct Exception {
    pub mbuf: Mbuf,
    pub tsc: u64,
    pub port: u8,
    pub hold: Option<(u16, u32)>,
}

/// The rings a worker fills for the control thread.
pub struct WorkerRings {
    pub exceptions: rtrb::Producer<Exception>,
    pub records: rtrb::Producer<FlowRecord>,
    pub top: rtrb::Producer<TopFlows>,
}

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
/// How often measured latencies are compared with those the tables were built with.
const LATENCY_CHECK_EVERY: Duration = Duration::from_secs(1);

pub struct SlowPath {
    pub cfg: Config,
    /// The running configuration as TOML text: what `show config` shows, what changes
    /// edit, and what `config save` writes.
    pub cfg_text: String,
    port_macs: Vec<[u8; 6]>,
    pub published: Arc<Published>,
    pub shares: Arc<Shares>,
    pub plane: Plane,
    control_tx: Vec<Option<TxQueue>>,
    /// Odd while this thread is inside a driver's tx burst (see `crate::quiesce`).
    pub io: Arc<IoSeq>,
    /// By port index: the port is being restarted (a memif client reconnecting), and no
    /// thread may call its driver (the workers read these too).
    pub paused: Arc<Vec<AtomicBool>>,
    tsc_hz: u64,
    tsc0: u64,
    exceptions: Vec<rtrb::Consumer<Exception>>,
    /// Routed packets waiting for their next hop's MAC.
    pub holds: HoldQueues<Mbuf>,
    records: Vec<rtrb::Consumer<FlowRecord>>,
    top: Vec<rtrb::Consumer<TopFlows>>,
    /// Each worker's largest live flows, from its last complete walk of its table.
    pub live_top: Vec<TopFlows>,
    retired: Vec<Arc<Tables>>,
    link_up: Vec<bool>,
    /// The statuses the published tables were built from.
    built_from: Vec<PathStatus>,
    last_latency_check: Instant,
    last_demand: Vec<Vec<u64>>,
    last_rebalance: Instant,
    pub exceptions_handled: u64,
    /// Held packets whose path a reload removed before they reached this thread.
    pub hold_orphans: u64,
    /// Control frames the control plane wanted sent that could not be (no mbuf, or the
    /// driver refused them).
    pub control_tx_dropped: u64,
    pub records_by_reason: [u64; EndReason::COUNT],
    /// Flows still live at shutdown, by the path they were on (index; `None` for flows
    /// without one): where a failover left them.
    pub live_at_shutdown: std::collections::BTreeMap<Option<u16>, u64>,
    pub recent: VecDeque<FlowRecord>,
    pub reloads_ok: u64,
    pub reloads_refused: u64,
    pub link_changes: u64,
    /// Snapshots published because a path's state or next hop changed.
    pub path_publishes: u64,
    /// (class, group) pairs where no path meets the class's SLA now, and how many times
    /// such a pair appeared.
    pub sla_unmet: Vec<(usize, usize)>,
    pub sla_fallbacks: u64,
    /// Where ended flows go besides `recent` (IPFIX).
    pub export: crate::flowexport::FlowExport,
    /// Control events (reloads, changes, route changes) for the OTLP spans, oldest first;
    /// the last `EVENTS_OUT` are kept.
    pub events_out: VecDeque<ControlEvent>,
    /// Unix time in ns when the control plane's clock read 0.
    pub unix_ns0: u64,
    /// Set when stopping: the last flow records wait for room in the exporters' queues
    /// until then instead of being dropped.
    pub export_wait_until: Option<Instant>,
}

/// Which paths meet which class SLA (in class order), for noticing a crossing.
fn compliance(cfg: &Config, status: &[PathStatus]) -> Vec<bool> {
    cfg.class_slas
        .iter()
        .filter(|s| !s.is_empty())
        .flat_map(|sla| status.iter().map(move |st| st.meets(sla)))
        .collect()
}

/// Whether the latencies `now` would order a policy differently enough from `then` to be
/// worth a new snapshot: any path moved by more than 20 % and 200 µs.
fn latency_moved(then: &[PathStatus], now: &[PathStatus]) -> bool {
    then.iter().zip(now).any(|(a, b)| {
        let d = a.latency_us.abs_diff(b.latency_us);
        d > 200 && d as u64 * 5 > a.latency_us.max(b.latency_us) as u64
    })
}

impl SlowPath {
    /// Compiles the first snapshot. Rings are made per worker: the producers go to the
    /// workers. `control_tx[i]` is port i's queue for the control thread, if it has one.
    pub fn new(
        cfg: Config,
        port_macs: Vec<[u8; 6]>,
        workers: usize,
        control_tx: Vec<Option<TxQueue>>,
        tsc_hz: u64,
    ) -> Result<(SlowPath, Vec<WorkerRings>), String> {
        let link_up = vec![true; cfg.ports.len()];
        let can_send: Vec<bool> = control_tx.iter().map(|q| q.is_some()).collect();
        let unix_now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let plane = Plane::new(&cfg, PortInfo::from_config(&cfg, &port_macs, &can_send), 0, unix_now);
        let export = crate::flowexport::FlowExport::new(&cfg, unix_now / 1_000_000);
        let built_from = plane.statuses(&cfg, &link_up);
        let holds = HoldQueues::new(cfg.neighbors.queue as usize);
        let tables = Tables::build(&cfg, &port_macs, &built_from, 1)?;
        let mut producers = Vec::new();
        let mut exceptions = Vec::new();
        let mut records = Vec::new();
        let mut top = Vec::new();
        for _ in 0..workers {
            let (ep, ec) = rtrb::RingBuffer::new(EXCEPTION_RING);
            let (rp, rc) = rtrb::RingBuffer::new(RECORD_RING);
            let (tp, tc) = rtrb::RingBuffer::new(2);
            producers.push(WorkerRings {
                exceptions: ep,
                records: rp,
                top: tp,
            });
            exceptions.push(ec);
            records.push(rc);
            top.push(tc);
        }
        Ok((
            SlowPath {
                cfg,
                cfg_text: String::new(),
                port_macs,
                published: Arc::new(Published::new(tables)),
                shares: Arc::new(Shares::new(workers)),
                plane,
                control_tx,
                io: Arc::default(),
                paused: Arc::new(link_up.iter().map(|_| AtomicBool::new(false)).collect()),
                tsc_hz: tsc_hz.max(1),
                tsc0: rdtsc(),
                exceptions,
                holds,
                records,
                top,
                live_top: vec![TopFlows::default(); workers],
                retired: Vec::new(),
                link_up,
                built_from,
                last_latency_check: Instant::now(),
                last_demand: vec![Vec::new(); workers],
                last_rebalance: Instant::now(),
                exceptions_handled: 0,
                hold_orphans: 0,
                control_tx_dropped: 0,
                records_by_reason: [0; EndReason::COUNT],
                live_at_shutdown: Default::default(),
                recent: VecDeque::with_capacity(RECENT_RECORDS),
                reloads_ok: 0,
                reloads_refused: 0,
                link_changes: 0,
                path_publishes: 0,
                sla_unmet: Vec::new(),
                sla_fallbacks: 0,
                export,
                export_wait_until: None,
                events_out: VecDeque::new(),
                unix_ns0: unix_now,
            },
            producers,
        ))
    }

    /// The TSC at which the control plane's clock, and the workers' flow clocks, read 0.
    pub fn epoch_tsc(&self) -> u64 {
        self.tsc0
    }

    /// The control plane's clock: ns since start, from the TSC (the workers' time base).
    fn ns(&self, tsc: u64) -> u64 {
        (tsc.saturating_sub(self.tsc0) as u128 * 1_000_000_000 / self.tsc_hz as u128) as u64
    }

    /// Hands the exception packets to the control plane (and frees them), holds routed
    /// packets for next hops being resolved, and collects ended flows. Bounded per call by
    /// the rings' sizes.
    pub fn drain(&mut self) {
        let tables = self.published.load();
        for k in 0..self.exceptions.len() {
            while let Ok(e) = self.exceptions[k].pop() {
                if let Some((path, generation)) = e.hold {
                    self.hold(&tables, e.mbuf, path, generation);
                    continue;
                }
                let at = self.ns(e.tsc);
                if e.mbuf.nb_segs() == 1 {
                    self.plane.receive(e.port as usize, e.mbuf.data(), at);
                } else {
                    self.plane.receive(e.port as usize, &e.mbuf.to_vec(), at);
                }
                self.exceptions_handled += 1;
            }
        }
        let now_ms = self.ns(rdtsc()) / 1_000_000;
        for c in self.records.iter_mut() {
            while let Ok(r) = c.pop() {
                self.export.export(&r, &tables, now_ms, self.export_wait_until);
                self.records_by_reason[r.reason as usize] += 1;
                if r.reason == EndReason::Shutdown {
                    let path = (r.flow.state.path as usize) < self.cfg.paths.len();
                    *self
                        .live_at_shutdown
                        .entry(path.then_some(r.flow.state.path))
                        .or_default() += 1;
                }
                if self.recent.len() == RECENT_RECORDS {
                    self.recent.pop_front();
                }
                self.recent.push_back(r);
            }
        }
        for (c, t) in self.top.iter_mut().zip(self.live_top.iter_mut()) {
            while let Ok(v) = c.pop() {
                *t = v;
            }
        }
        // Snapshots that only this thread still holds can go now.
        self.retired.retain(|t| Arc::strong_count(t) > 1);
    }

    /// Holds a packet routed to `path` (by the tables of `generation`) until its next hop
    /// answers; `release_held` sends it. A packet for a next hop that is no longer being
    /// resolved is dropped and counted there.
    fn hold(&mut self, tables: &Tables, mbuf: Mbuf, path: u16, generation: u32) {
        let path = tables.carry_path(generation, path);
        let Some(p) = self.cfg.paths.get(path as usize) else {
            // Its path went away in a reload: nothing to wait for.
            self.hold_orphans += 1;
            return;
        };
        let (port, ip) = (p.port, p.next_hop);
        if self.plane.neigh.mac(port, ip).is_some() || self.plane.neigh.resolving(port, ip) {
            self.holds.hold(port, ip, mbuf);
        } else {
            self.holds.refuse(port, ip);
        }
    }

    /// Sends what waits for next hops that have answered, with their MAC, on the control
    /// TX queue of their port (what the driver cannot take yet waits for the next turn);
    /// drops what waits for next hops that failed or are gone.
    fn release_held(&mut self) {
        for (port, ip) in self.holds.pending() {
            if let Some(mac) = self.plane.neigh.mac(port, ip) {
                let mut out = self.holds.release(port, ip);
                if self.paused[port].load(Ordering::Relaxed) {
                    // Back in the queue until the port is running again.
                    self.holds.unrelease(port, ip, out.into_iter().collect());
                    continue;
                }
                let Some(q) = self.control_tx[port].as_mut() else {
                    self.control_tx_dropped += out.len() as u64;
                    continue;
                };
                while !out.is_empty() {
                    let mut burst: Burst<32> = Burst::default();
                    while burst.len() < 32 {
                        let Some(mut m) = out.pop_front() else { break };
                        m.data_mut()[..6].copy_from_slice(&mac);
                        if let Err(m) = burst.push(m) {
                            out.push_front(m);
                            break;
                        }
                    }
                    let io = self.io.enter();
                    q.tx_keep(&mut burst);
                    drop(io);
                    if !burst.is_empty() {
                        let rest: Vec<Mbuf> = burst.drain().chain(out.drain(..)).collect();
                        self.holds.unrelease(port, ip, rest);
                        break;
                    }
                }
            } else if !self.plane.neigh.resolving(port, ip) {
                let n = self.holds.discard(port, ip);
                warn!(target: "neighbors", "{ip} on port \"{}\" did not answer: {n} packets waiting for it dropped", self.cfg.ports[port].name);
            }
        }
    }

    /// Drops every held packet (at shutdown, before the pools go). Returns how many.
    pub fn drop_held(&mut self) -> usize {
        self.holds.clear()
    }

    /// Builds and publishes tables for `cfg` with `status`.
    fn publish_with(&mut self, cfg: &Config, status: Vec<PathStatus>) -> Result<(), String> {
        let next = self.generation().wrapping_add(1).max(1);
        let mut t = Tables::build(cfg, &self.port_macs, &status, next)?;
        t.follow(&self.published.load());
        let unmet = t.sla_unmet();
        let old = self.published.publish(t);
        self.retired.push(old);
        self.built_from = status;
        for &(c, g) in unmet.iter().filter(|u| !self.sla_unmet.contains(u)) {
            self.sla_fallbacks += 1;
            warn!(
                target: "paths",
                "class \"{}\": no path of group \"{}\" meets its SLA; it uses the group's usual choice",
                cfg.classes[c].name,
                cfg.groups[g].name
            );
        }
        self.sla_unmet = unmet;
        Ok(())
    }

    fn publish(&mut self, cfg: &Config) -> Result<(), String> {
        let status = self.plane.statuses(cfg, &self.link_up);
        self.publish_with(cfg, status)
    }

    /// The control plane's turn: time moves on (neighbour requests, probes, timeouts),
    /// what it wants sent leaves on the control TX queues (mbufs from `pool`), and a
    /// change of any path's eligibility publishes new tables at once. Measured latencies
    /// that moved enough to change a latency policy's choice are published at most once
    /// a second.
    pub fn control(&mut self, pool: &Mempool) {
        let now = self.ns(rdtsc());
        self.plane.tick(now);
        self.send(pool);
        // Before new tables let workers send to a next hop that answered, what waited for
        // it leaves first.
        self.release_held();
        let mut changed = self.plane.take_changed();
        if !changed && self.cfg.class_slas.iter().any(|s| !s.is_empty()) {
            // A path crossing a class's SLA changes that class's choice at once.
            let now = self.plane.statuses(&self.cfg, &self.link_up);
            changed = compliance(&self.cfg, &now) != compliance(&self.cfg, &self.built_from);
        }
        if !changed && self.last_latency_check.elapsed() >= LATENCY_CHECK_EVERY {
            self.last_latency_check = Instant::now();
            changed = latency_moved(&self.built_from, &self.plane.statuses(&self.cfg, &self.link_up));
        }
        if changed {
            let now = self.plane.statuses(&self.cfg, &self.link_up);
            if now != self.built_from {
                let cfg = self.cfg.clone();
                match self.publish_with(&cfg, now) {
                    Ok(()) => self.path_publishes += 1,
                    Err(e) => error!(target: "routing", "cannot rebuild the tables after a path change: {e}"),
                }
            }
        }
    }

    /// Sends the control plane's frames on each port's control queue.
    pub fn send(&mut self, pool: &Mempool) {
        let out = self.plane.take_out();
        let mut burst: Burst<32> = Burst::default();
        for port in 0..self.control_tx.len() {
            for (_, f) in out.iter().filter(|(p, _)| *p == port) {
                let Some(mut m) = pool.alloc() else {
                    self.control_tx_dropped += 1;
                    continue;
                };
                match m.append(f.len() as u16) {
                    Some(d) => d.copy_from_slice(f),
                    None => {
                        self.control_tx_dropped += 1;
                        continue;
                    }
                }
                if let Err(m) = burst.push(m) {
                    drop(m);
                    self.control_tx_dropped += 1;
                }
                if burst.len() == 32 {
                    self.flush(port, &mut burst);
                }
            }
            self.flush(port, &mut burst);
        }
    }

    fn flush(&mut self, port: usize, burst: &mut Burst<32>) {
        let paused = self.paused[port].load(Ordering::Relaxed);
        match self.control_tx[port].as_mut().filter(|_| !paused) {
            Some(q) => {
                let _io = self.io.enter();
                self.control_tx_dropped += q.tx(burst).dropped as u64;
            }
            None => {
                self.control_tx_dropped += burst.len() as u64;
                burst.drain().for_each(drop);
            }
        }
    }

    /// Follows the ports' links: a link going down takes its paths out of every group
    /// at once (and back when it returns).
    pub fn links(&mut self, up: &[bool]) {
        if up == self.link_up.as_slice() {
            return;
        }
        let now = self.ns(rdtsc());
        for (i, (&was, &is)) in self.link_up.iter().zip(up).enumerate() {
            if was != is {
                warn!(target: "routing", "port \"{}\": link {}", self.cfg.ports[i].name, if is { "up" } else { "down" });
                if is {
                    self.plane.link_up(i, now);
                }
            }
        }
        self.link_up = up.to_vec();
        self.link_changes += 1;
        let cfg = self.cfg.clone();
        if let Err(e) = self.publish(&cfg) {
            error!(target: "routing", "cannot rebuild the tables after a link change: {e}");
        }
    }

    /// Reloads the configuration file (SIGHUP, `sluicectl reload`). A refusal is logged
    /// and counted; the running configuration stays.
    pub fn reload(&mut self, path: &std::path::Path) -> Result<u32, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()));
        let r = text.and_then(|t| self.apply_text(t, &path.display().to_string()));
        if let Err(e) = &r {
            error!(target: "reload", "reload refused, the running configuration stays: {e}");
        }
        self.note_result("config.reload", ("sluice.file", path.display().to_string()), &r);
        r
    }

    /// Keeps a control event for the telemetry (the oldest go when nobody takes them).
    pub fn note_event(
        &mut self,
        name: &'static str,
        ok: bool,
        message: String,
        attrs: Vec<telemetry::otlp::pb::KeyValue>,
    ) {
        if self.events_out.len() == EVENTS_OUT {
            self.events_out.pop_front();
        }
        self.events_out.push_back(ControlEvent {
            at_unix_ns: telemetry::otlp::unix_ns(),
            name,
            ok,
            message,
            attrs,
        });
    }

    /// A reload's or a change's outcome as a control event.
    pub fn note_result(&mut self, name: &'static str, what: (&'static str, String), r: &Result<u32, String>) {
        use telemetry::otlp::pb::kv;
        let mut attrs = vec![
            kv(what.0, what.1),
            kv("sluice.result", if r.is_ok() { "ok" } else { "refused" }),
            kv("sluice.generation", self.generation() as i64),
        ];
        if let Err(e) = r {
            attrs.push(kv("sluice.error", e.as_str()));
        }
        self.note_event(name, r.is_ok(), r.as_ref().err().cloned().unwrap_or_default(), attrs);
    }

    /// Runs configuration `text` (a reloaded file, or the running text after a
    /// `sluicectl` change) if it validates and changes only what can change live
    /// (classes, rules, paths, groups, routes, probes, neighbours): validate, build,
    /// publish with one swap. Otherwise nothing changes and the reason is returned.
    /// Returns the new generation.
    pub fn apply_text(&mut self, text: String, origin: &str) -> Result<u32, String> {
        let r = self.try_apply(text, origin);
        match &r {
            Ok(_) => self.reloads_ok += 1,
            Err(_) => self.reloads_refused += 1,
        }
        r
    }

    fn try_apply(&mut self, text: String, origin: &str) -> Result<u32, String> {
        let new = Config::parse(&text, origin, &numa::System::default()).map_err(|e| e.to_string())?;
        let fixed = [
            (self.cfg.eal != new.eal, "[eal]"),
            (self.cfg.ports != new.ports, "[[ports]]"),
            (self.cfg.flows != new.flows, "[flows]"),
            (self.cfg.control_socket != new.control_socket, "control.socket"),
            (self.cfg.telemetry != new.telemetry, "[telemetry]"),
        ];
        if let Some((_, what)) = fixed.iter().find(|(changed, _)| *changed) {
            return Err(format!("{what} changed, which needs a restart"));
        }
        // The control plane takes the new paths only if the tables build.
        let mut plane = self.plane.clone();
        plane.reconfigure(&new, self.ns(rdtsc()));
        let status = plane.statuses(&new, &self.link_up);
        self.publish_with(&new, status)?;
        self.plane = plane;
        self.plane.take_changed();
        self.holds.set_per_hop(new.neighbors.queue as usize);
        info!(
            target: "reload",
            "configuration from {origin} running (generation {}): {} classes, {} rules, {} paths, {} routes",
            self.generation(),
            new.classes.len(),
            new.rules.len(),
            new.paths.len(),
            new.routes.len()
        );
        let routes = |c: &Config| -> std::collections::BTreeSet<String> {
            c.routes
                .iter()
                .map(|r| {
                    format!(
                        "{} via {}",
                        r.prefix,
                        c.groups.get(r.group).map_or("?", |g| g.name.as_str())
                    )
                })
                .collect()
        };
        let (before, after) = (routes(&self.cfg), routes(&new));
        if before != after {
            use telemetry::otlp::pb::kv;
            let list = |a: &std::collections::BTreeSet<String>, b: &std::collections::BTreeSet<String>| {
                a.difference(b).cloned().collect::<Vec<_>>().join(", ")
            };
            let attrs = vec![
                kv("sluice.routes.added", list(&after, &before)),
                kv("sluice.routes.removed", list(&before, &after)),
                kv("sluice.routes", after.len() as i64),
                kv("sluice.origin", origin),
                kv("sluice.generation", self.generation() as i64),
            ];
            self.note_event("route.change", true, String::new(), attrs);
        }
        self.cfg = new;
        self.cfg_text = text;
        self.export.reconfigured(&self.cfg);
        Ok(self.generation())
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

    /// Each path: state, figures, probes, next hop — for reports and `show paths`.
    /// What the control thread knows of each path now.
    pub fn path_statuses(&self) -> Vec<routing::PathStatus> {
        self.plane.statuses(&self.cfg, &self.link_up)
    }

    /// Each path's share of its group's new flows, in percent (the largest, if in several
    /// groups).
    pub fn new_flow_shares(&self) -> Vec<f64> {
        let t = self.published.load();
        let mut v = vec![0.0f64; self.cfg.paths.len()];
        for g in &t.groups {
            let sh = g.table.shares(self.cfg.paths.len());
            let total: usize = sh.iter().sum();
            for (i, s) in sh.iter().enumerate() {
                if total > 0 {
                    v[i] = v[i].max(*s as f64 * 100.0 / total as f64);
                }
            }
        }
        v
    }

    /// A path's state as shown: drained, link-down, unresolved, or its health.
    pub fn path_state(&self, i: usize, st: &routing::PathStatus) -> &'static str {
        if self.cfg.paths[i].admin == routing::AdminState::Drained {
            "drained"
        } else if !st.link_up {
            "link-down"
        } else if st.mac.is_none() {
            "unresolved"
        } else {
            self.plane.paths[i].health.state.name()
        }
    }

    pub fn paths_json(&self) -> serde_json::Value {
        use serde_json::json;
        let status = self.path_statuses();
        let share = self.new_flow_shares();
        let paths: Vec<_> = self
            .cfg
            .paths
            .iter()
            .zip(&self.plane.paths)
            .zip(&status)
            .enumerate()
            .map(|(i, ((p, pr), st))| {
                let f = pr.health.figures();
                let state = self.path_state(i, st);
                json!({
                    "name": p.name, "cloud": p.cloud.name(), "region": p.region,
                    "port": self.cfg.ports[p.port].name, "next_hop": p.next_hop.to_string(),
                    "next_hop_mac": st.mac.map(|m| control::MacAddr(m).to_string()),
                    "state": state, "health": pr.health.state.name(),
                    "eligible": routing::path::eligible(p, st),
                    "since_ms": pr.health.since_ns / 1_000_000,
                    "probe": p.probe.name(), "probe_target": p.probe_target.to_string(),
                    "rtt_ewma_us": f.rtt_ewma_us, "rtt_min_us": f.rtt_min_us, "rtt_avg_us": f.rtt_avg_us,
                    "rtt_max_us": f.rtt_max_us, "jitter_us": f.jitter_us,
                    "loss_pct": f.loss_ppm as f64 / 10_000.0, "window": f.rounds_in_window,
                    "rounds": pr.health.rounds, "answered": pr.health.answered, "missed": pr.health.missed,
                    "icmp_sent": pr.icmp_sent, "icmp_answered": pr.icmp_answered,
                    "stamp_sent": pr.stamp_sent, "stamp_answered": pr.stamp_answered,
                    "late": pr.late, "skipped": pr.skipped,
                    "new_flow_share_pct": share[i],
                })
            })
            .collect();
        let events: Vec<_> = self
            .plane
            .events
            .iter()
            .map(|e| {
                json!({"at_ms": e.at_ns as f64 / 1e6, "path": e.path,
                       "from": e.change.from.name(),
                       "to": e.change.to.name(), "reason": e.change.reason})
            })
            .collect();
        let live: std::collections::BTreeMap<String, u64> = self
            .live_at_shutdown
            .iter()
            .map(|(p, n)| {
                (
                    p.map_or("none".to_string(), |i| self.cfg.paths[i as usize].name.clone()),
                    *n,
                )
            })
            .collect();
        let unmet: Vec<_> = self
            .sla_unmet
            .iter()
            .map(|&(c, g)| json!({"class": self.cfg.classes[c].name, "group": self.cfg.groups[g].name}))
            .collect();
        json!({"paths": paths, "events": events, "publishes": self.path_publishes, "live_flows_at_shutdown": live,
               "sla_unmet": unmet, "sla_fallbacks": self.sla_fallbacks})
    }

    pub fn neighbors_json(&self) -> serde_json::Value {
        let n: Vec<_> = self
            .plane
            .neigh
            .entries()
            .iter()
            .map(|e| {
                let h = self.holds.hops().iter().find(|h| h.port == e.port && h.ip == e.ip);
                let c = |f: fn(&control::hold::Held<Mbuf>) -> u64| h.map_or(0, f);
                serde_json::json!({
                    "port": self.cfg.ports[e.port].name, "ip": e.ip.to_string(),
                    "mac": e.mac.map(|m| control::MacAddr(m).to_string()), "state": e.state.name(),
                    "requests": e.requests, "answers": e.answers, "failures": e.failures,
                    "waiting": h.map_or(0, |h| h.waiting()), "held": c(|h| h.held),
                    "released": c(|h| h.released), "overflowed": c(|h| h.overflowed),
                    "unresolved": c(|h| h.unresolved),
                })
            })
            .collect();
        serde_json::Value::Array(n)
    }

    /// The control plane's counters; `to_control` is what the workers handed over.
    pub fn control_json(&self, to_control: u64) -> serde_json::Value {
        let c = &self.plane.counters;
        serde_json::json!({
            "packets": to_control, "handled": self.exceptions_handled,
            "arp_answered": c.arp_answered, "echo_answered": c.echo_answered, "nd_answered": c.nd_answered,
            "sent": c.sent, "tx_dropped": self.control_tx_dropped, "unsendable": c.unsendable,
            "malformed": c.malformed, "unhandled": c.unhandled,
            "held_waiting": self.holds.waiting(), "held_orphaned": self.hold_orphans,
        })
    }

    /// A table of the paths for the final report.
    pub fn paths_text(&self) -> String {
        let j = self.paths_json();
        let mut s = format!(
            "{:<16} {:<8} {:<11} {:>10} {:>10} {:>8} {:>8} {:>10}\n",
            "path", "cloud", "state", "rtt_us", "jitter_us", "loss%", "rounds", "answered"
        );
        for p in j["paths"].as_array().into_iter().flatten() {
            s.push_str(&format!(
                "{:<16} {:<8} {:<11} {:>10.1} {:>10.1} {:>8.2} {:>8} {:>10}\n",
                p["name"].as_str().unwrap_or(""),
                p["cloud"].as_str().unwrap_or(""),
                p["state"].as_str().unwrap_or(""),
                p["rtt_ewma_us"].as_f64().unwrap_or(0.0),
                p["jitter_us"].as_f64().unwrap_or(0.0),
                p["loss_pct"].as_f64().unwrap_or(0.0),
                p["rounds"],
                p["answered"]
            ));
        }
        s
    }

    pub fn generation(&self) -> u32 {
        self.published.generation()
    }

    pub fn record_counts(&self) -> Vec<(&'static str, u64)> {
        EndReason::ALL
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
        let (mut s, _rings) = SlowPath::new(config(), vec![[2, 0, 0, 0, 0, 1]], 2, vec![None], 1_000_000_000).unwrap();
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
        let (mut s, _rings) = SlowPath::new(config(), vec![[2, 0, 0, 0, 0, 1]], 2, vec![None], 1_000_000_000).unwrap();
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
