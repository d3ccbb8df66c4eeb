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
use telemetry::otlp::{pb, OtlpSender};

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
    /// Flow records as OTLP log records.
    pub otlp: Option<OtlpSender>,
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
            otlp: None,
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
        self.ipfix.is_some() || self.otlp.is_some()
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
        let path = t.carry_path(f.state.generation, f.state.path);
        let (path_name, cloud, next_hop) = match self.names.paths.get(path as usize) {
            Some((n, c, h)) => (n.clone(), c.clone(), Some(*h)),
            None => (self.names.none.clone(), self.names.none.clone(), None),
        };
        let out_if = if t.hops.get(path as usize).is_some() {
            f.state.out_port as u32 + 1
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
            dscp_in: f.state.dscp_in,
            dscp_out: f.state.dscp_out,
            packets: f.state.packets as u64,
            bytes: f.state.bytes,
            start_ms: unwrap(f.state.first_ms),
            end_ms: unwrap(f.state.last_ms),
            reason: end_reason(r.reason),
            next_hop,
            class: self
                .names
                .classes
                .get(f.state.class as usize)
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
        if r.flow.state.packets == 0 {
            self.empty += 1;
            return;
        }
        let rec = self.convert(r, t, now_ms);
        if let Some(o) = &self.otlp {
            let l = log_record(&rec, r.reason.name());
            match wait_until {
                Some(d) => o.log_until(l, d),
                None => o.log(l),
            }
        }
        if let Some(x) = &self.ipfix {
            match wait_until {
                Some(d) => x.send_until(rec, d),
                None => x.send(rec),
            }
        }
    }
}

/// A flow record as an OTLP log record: event `sluice.flow`, the figures as attributes,
/// timed at the flow's last packet.
fn log_record(r: &ipfix::FlowRecord, reason: &str) -> pb::LogRecord {
    use pb::kv;
    let mut attributes = vec![
        kv("sluice.flow.src", r.src.to_string()),
        kv("sluice.flow.dst", r.dst.to_string()),
        kv("sluice.flow.src_port", r.src_port as i64),
        kv("sluice.flow.dst_port", r.dst_port as i64),
        kv("sluice.flow.proto", r.proto as i64),
        kv("sluice.flow.in_port", r.in_if as i64 - 1),
        kv("sluice.flow.packets", r.packets),
        kv("sluice.flow.bytes", r.bytes),
        kv("sluice.flow.start_ms", r.start_ms),
        kv("sluice.flow.end_ms", r.end_ms),
        kv("sluice.flow.dscp_in", r.dscp_in as i64),
        kv("sluice.flow.dscp_out", r.dscp_out as i64),
        kv("sluice.flow.end", reason),
        kv("sluice.class", &*r.class),
    ];
    if !r.path.is_empty() {
        attributes.push(kv("sluice.path", &*r.path));
        attributes.push(kv("sluice.cloud", &*r.cloud));
    }
    if r.out_if > 0 {
        attributes.push(kv("sluice.flow.out_port", r.out_if as i64 - 1));
    }
    if r.vlan != 0 {
        attributes.push(kv("sluice.flow.vlan", r.vlan as i64));
    }
    if r.inner_vlan != 0 {
        attributes.push(kv("sluice.flow.inner_vlan", r.inner_vlan as i64));
    }
    pb::LogRecord {
        time_unix_nano: r.end_ms * 1_000_000,
        observed_time_unix_nano: telemetry::otlp::unix_ns(),
        severity_number: pb::SEVERITY_INFO,
        severity_text: "INFO".into(),
        body: Some(pb::AnyValue {
            value: Some(
                format!(
                    "flow {}:{} > {}:{} proto {} {} packets {} bytes ({reason})",
                    r.src, r.src_port, r.dst, r.dst_port, r.proto, r.packets, r.bytes
                )
                .into(),
            ),
        }),
        attributes,
        event_name: "sluice.flow".into(),
    }
}
