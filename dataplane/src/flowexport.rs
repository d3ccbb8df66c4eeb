//! Ended flows, from the workers' rings to the enabled sinks. The control thread turns each
//! `flow::FlowRecord` (worker clock, indices) into a `telemetry::ipfix::FlowRecord` (Unix
//! time, names, interfaces) and queues it for the exporters' threads; nothing here waits
//! on a collector, except at shutdown, when the last records get a bounded wait for room.

use crate::flow::{EndReason, FlowRecord};
use crate::tables::Tables;
use control::Config;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;
use telemetry::ipfix::{self, Ipfix};

/// What a record needs from the configuration, shared rather than copied per record.
struct Names {
    classes: Vec<Arc<str>>,
    /// (name, cloud, next hop) by path index.
    paths: Vec<(Arc<str>, Arc<str>, IpAddr)>,
    none: Arc<str>,
}

impl Names {
    fn of(cfg: &Config) -> Names {
        Names {
            classes: cfg.classes.iter().map(|c| Arc::from(c.name.as_str())).collect(),
            paths: cfg
                .paths
                .iter()
                .map(|p| (Arc::from(p.name.as_str()), Arc::from(p.cloud.name()), p.next_hop))
                .collect(),
            none: Arc::from(""),
        }
    }
}

/// The flow sinks and how to convert records for them.
pub struct FlowExport {
    pub ipfix: Option<Ipfix>,
    names: Names,
    /// Unix time in ms when the workers' flow clock read 0.
    unix_ms0: u64,
    /// Records not exported because they carried no packet (a flow that went idle right
    /// after its active-timeout report).
    pub empty: u64,
}

fn end_reason(r: EndReason) -> ipfix::EndReason {
    match r {
        EndReason::Idle => ipfix::EndReason::Idle,
        EndReason::Closed => ipfix::EndReason::EndOfFlow,
        EndReason::Evicted => ipfix::EndReason::LackOfResources,
        EndReason::Shutdown => ipfix::EndReason::Forced,
        EndReason::Active => ipfix::EndReason::Active,
    }
}

impl FlowExport {
    pub fn new(cfg: &Config, unix_ms0: u64) -> FlowExport {
        FlowExport {
            ipfix: None,
            names: Names::of(cfg),
            unix_ms0,
            empty: 0,
        }
    }

    /// After a reload: the names of the new configuration.
    pub fn reconfigured(&mut self, cfg: &Config) {
        self.names = Names::of(cfg);
    }

    pub fn enabled(&self) -> bool {
        self.ipfix.is_some()
    }

    /// The record for the sinks. `now_ms` is the flow clock now (ms since it started), from
    /// which the worker's wrapping 32-bit times are unwrapped.
    pub fn convert(&self, r: &FlowRecord, t: &Tables, now_ms: u64) -> ipfix::FlowRecord {
        let f = &r.flow;
        let k = &f.key;
        let unwrap = |ms: u32| {
            let back = (now_ms as u32).wrapping_sub(ms);
            // A time "in the future" (it cannot be) is taken as now.
            let back = if back >= 1 << 31 { 0 } else { back as u64 };
            self.unix_ms0 + now_ms.saturating_sub(back)
        };
        let path = t.carry_path(f.generation, f.path);
        let (path_name, cloud, next_hop) = match self.names.paths.get(path as usize) {
            Some((n, c, h)) => (n.clone(), c.clone(), Some(*h)),
            None => (self.names.none.clone(), self.names.none.clone(), None),
        };
        let out_if = if t.hops.get(path as usize).is_some() {
            f.out_port as u32 + 1
        } else {
            0
        };
        let (src, dst) = k.addrs();
        // One tag: its ID; QinQ: outer << 12 | inner.
        let (vlan, inner_vlan) = if k.vlan > 0xfff {
            ((k.vlan >> 12) as u16 & 0xfff, (k.vlan & 0xfff) as u16)
        } else {
            (k.vlan as u16, 0)
        };
        ipfix::FlowRecord {
            src,
            dst,
            src_port: k.src_port,
            dst_port: k.dst_port,
            proto: k.proto,
            vlan,
            inner_vlan,
            in_if: k.in_port as u32 + 1,
            out_if,
            dscp_in: f.dscp_in,
            dscp_out: f.dscp_out,
            packets: f.packets as u64,
            bytes: f.bytes,
            start_ms: unwrap(f.first_ms),
            end_ms: unwrap(f.last_ms),
            reason: end_reason(r.reason),
            next_hop,
            class: self
                .names
                .classes
                .get(f.class as usize)
                .cloned()
                .unwrap_or_else(|| self.names.none.clone()),
            path: path_name,
            cloud,
        }
    }

    /// Hands `r` to every sink. With `wait_until`, a full queue is waited on until then
    /// (shutdown); otherwise the record is dropped and counted by the sink.
    pub fn export(&mut self, r: &FlowRecord, t: &Tables, now_ms: u64, wait_until: Option<Instant>) {
        if !self.enabled() {
            return;
        }
        if r.flow.packets == 0 {
            self.empty += 1;
            return;
        }
        let rec = self.convert(r, t, now_ms);
        if let Some(x) = &self.ipfix {
            match wait_until {
                Some(d) => x.send_until(rec, d),
                None => x.send(rec),
            }
        }
    }
}
