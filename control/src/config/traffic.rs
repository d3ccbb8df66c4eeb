//! The traffic sections of the configuration: classes and their meters, classifier rules,
//! paths and path groups, flow-table settings, and the site's location. Validated into
//! the pure crates' types (`qos::Class`, `qos::Rule`, `routing::Path`, `routing::PathGroup`)
//! with errors that point at the line and field.

use super::{checked_name, ConfigError, Source};
use crate::mac::MacAddr;
use qos::class::{parse_dscp, Action, Class, ClassId, Priority, MAX_CLASSES};
use qos::classify::{Net, Rule, MAX_IN_PORTS, MAX_RULES};
use qos::meter::MeterSpec;
use qos::units::{parse_rate_bps, parse_size_bytes};
use routing::health::Sla;
use routing::path::{AdminState, Cloud, Path, PathGroup, Policy, ProbeMode, MAX_PATHS};
use serde::Deserialize;
use std::collections::HashMap;
use std::net::IpAddr;
use toml::Spanned;

/// A number or a string with units.
#[derive(Deserialize, Clone, Debug)]
#[serde(untagged)]
pub(super) enum Amount {
    Int(u64),
    Text(String),
}

impl Amount {
    fn rate(&self) -> Result<u64, String> {
        match self {
            Amount::Int(n) => Ok(*n),
            Amount::Text(s) => parse_rate_bps(s).map_err(|e| e.to_string()),
        }
    }
    fn size(&self) -> Result<u64, String> {
        match self {
            Amount::Int(n) => Ok(*n),
            Amount::Text(s) => parse_size_bytes(s).map_err(|e| e.to_string()),
        }
    }
    fn dscp(&self) -> Result<u8, String> {
        match self {
            Amount::Int(n) if *n <= 63 => Ok(*n as u8),
            Amount::Int(n) => Err(format!("DSCP {n} is out of range (0 to 63)")),
            Amount::Text(s) => parse_dscp(s),
        }
    }
    /// A port or an inclusive range: `443`, `"443"`, `"5000-5100"`.
    fn ports(&self) -> Result<(u16, u16), String> {
        let one = |s: &str| {
            s.trim()
                .parse::<u16>()
                .map_err(|_| format!("\"{s}\" is not a port number (0 to 65535)"))
        };
        match self {
            Amount::Int(n) => u16::try_from(*n)
                .map(|p| (p, p))
                .map_err(|_| format!("{n} is not a port number (0 to 65535)")),
            Amount::Text(s) => {
                let (lo, hi) = match s.split_once('-') {
                    Some((a, b)) => (one(a)?, one(b)?),
                    None => (one(s)?, one(s)?),
                };
                if lo > hi {
                    return Err(format!(
                        "port range \"{s}\" is empty (the first port is above the last)"
                    ));
                }
                Ok((lo, hi))
            }
        }
    }
    fn protocol(&self) -> Result<u8, String> {
        match self {
            Amount::Int(n) => u8::try_from(*n).map_err(|_| format!("protocol {n} is out of range (0 to 255)")),
            Amount::Text(s) => match s.to_ascii_lowercase().as_str() {
                "tcp" => Ok(6),
                "udp" => Ok(17),
                "icmp" => Ok(1),
                "icmpv6" | "ipv6-icmp" => Ok(58),
                "gre" => Ok(47),
                "esp" => Ok(50),
                "sctp" => Ok(132),
                other => other.parse::<u8>().map_err(|_| {
                    format!("unknown protocol \"{s}\" (accepted: tcp, udp, icmp, icmpv6, gre, esp, sctp or 0 to 255)")
                }),
            },
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMeter {
    #[serde(rename = "type")]
    kind: Spanned<String>,
    rate: Option<Spanned<Amount>>,
    burst: Option<Spanned<Amount>>,
    cir: Option<Spanned<Amount>>,
    cbs: Option<Spanned<Amount>>,
    ebs: Option<Spanned<Amount>>,
    pir: Option<Spanned<Amount>>,
    pbs: Option<Spanned<Amount>>,
    eir: Option<Spanned<Amount>>,
    #[serde(default)]
    colour_aware: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClass {
    name: Spanned<String>,
    #[serde(default)]
    priority: Option<Spanned<String>>,
    #[serde(default)]
    dscp: Option<Spanned<Amount>>,
    #[serde(default)]
    meter: Option<Spanned<RawMeter>>,
    #[serde(default)]
    min_rate: Option<Spanned<Amount>>,
    #[serde(default)]
    exceed: Option<Spanned<String>>,
    #[serde(default)]
    violate: Option<Spanned<String>>,
    #[serde(default)]
    sla: Option<super::probes::RawSla>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    class: Spanned<String>,
    #[serde(default)]
    priority: Option<Spanned<u32>>,
    #[serde(default)]
    src: Option<Spanned<String>>,
    #[serde(default)]
    dst: Option<Spanned<String>>,
    #[serde(default)]
    src_ports: Option<Spanned<Amount>>,
    #[serde(default)]
    dst_ports: Option<Spanned<Amount>>,
    #[serde(default)]
    protocol: Option<Spanned<Amount>>,
    #[serde(default)]
    vlan: Option<Spanned<u16>>,
    #[serde(default)]
    in_port: Option<Spanned<String>>,
    #[serde(default)]
    dscp: Option<Spanned<Amount>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPath {
    name: Spanned<String>,
    cloud: Spanned<String>,
    #[serde(default)]
    region: String,
    port: Spanned<String>,
    next_hop: Spanned<String>,
    #[serde(default)]
    next_hop_mac: Option<Spanned<super::Mac>>,
    #[serde(default)]
    probe: Option<Spanned<String>>,
    #[serde(default)]
    probe_target: Option<Spanned<String>>,
    #[serde(default)]
    cost_per_gb: Option<Spanned<f64>>,
    #[serde(default)]
    bandwidth: Option<Spanned<Amount>>,
    #[serde(default)]
    location: Option<Spanned<Vec<f64>>>,
    #[serde(default)]
    weight: Option<Spanned<u32>>,
    #[serde(default)]
    latency_ms: Option<Spanned<f64>>,
    #[serde(default)]
    state: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScore {
    #[serde(default)]
    latency: f64,
    #[serde(default)]
    cost: f64,
    #[serde(default)]
    bandwidth: f64,
    #[serde(default)]
    distance: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGroup {
    name: Spanned<String>,
    paths: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    policy: Option<Spanned<String>>,
    #[serde(default)]
    tolerance_pct: Option<Spanned<f64>>,
    #[serde(default)]
    score: Option<Spanned<RawScore>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFlows {
    #[serde(default)]
    capacity: Option<Spanned<u64>>,
    #[serde(default)]
    tcp_idle_s: Option<Spanned<u32>>,
    #[serde(default)]
    tcp_closed_idle_s: Option<Spanned<u32>>,
    #[serde(default)]
    udp_idle_s: Option<Spanned<u32>>,
    #[serde(default)]
    other_idle_s: Option<Spanned<u32>>,
    #[serde(default)]
    active_timeout_s: Option<Spanned<u32>>,
    #[serde(default)]
    mode: Option<Spanned<String>>,
}

impl RawFlows {
    /// Where `flows.mode` was written, for errors about what it rules out.
    pub(super) fn mode_span(&self) -> Option<std::ops::Range<usize>> {
        self.mode.as_ref().map(|m| m.span())
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSite {
    #[serde(default)]
    location: Option<Spanned<Vec<f64>>>,
}

/// Whether the workers keep per-flow state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlowMode {
    /// A flow table per worker: a flow is classified once, keeps its path while that path
    /// stays up, and ends as a flow record.
    #[default]
    Flow,
    /// No flow state: every packet is classified and routed on its own (the path from the
    /// same 5-tuple hash, so a flow still takes one path while the path set is unchanged).
    /// No flow records, no live flows.
    Packet,
}

impl FlowMode {
    pub fn name(self) -> &'static str {
        match self {
            FlowMode::Flow => "flow",
            FlowMode::Packet => "packet",
        }
    }
}

/// Flow-table settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flows {
    pub mode: FlowMode,
    /// Concurrent flows the whole appliance holds (split evenly across workers).
    pub capacity: u64,
    pub tcp_idle_s: u32,
    /// After a FIN or RST.
    pub tcp_closed_idle_s: u32,
    pub udp_idle_s: u32,
    pub other_idle_s: u32,
    /// A flow live this long is reported (a flow record with what it carried since the
    /// last one) and its counters start again; it keeps its class and path.
    pub active_timeout_s: u32,
}

pub const MAX_FLOWS: u64 = 64_000_000;

impl Default for Flows {
    fn default() -> Flows {
        Flows {
            mode: FlowMode::Flow,
            capacity: 1 << 20,
            tcp_idle_s: 300,
            tcp_closed_idle_s: 10,
            udp_idle_s: 60,
            other_idle_s: 30,
            active_timeout_s: 120,
        }
    }
}

fn location(src: &Source, l: &Spanned<Vec<f64>>, field: String) -> Result<(f64, f64), ConfigError> {
    match l.get_ref().as_slice() {
        &[lat, lon] if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) => Ok((lat, lon)),
        _ => Err(src.at(
            l.span(),
            field,
            "expected [latitude, longitude] in degrees (latitude -90 to 90, longitude -180 to 180)",
        )),
    }
}

pub(super) fn site(src: &Source, raw: RawSite) -> Result<Option<(f64, f64)>, ConfigError> {
    raw.location
        .map(|l| location(src, &l, "site.location".into()))
        .transpose()
}

pub(super) fn flows(src: &Source, raw: RawFlows) -> Result<Flows, ConfigError> {
    let d = Flows::default();
    let capacity = match raw.capacity {
        Some(c) if !(1024..=MAX_FLOWS).contains(c.get_ref()) => {
            return Err(src.at(
                c.span(),
                "flows.capacity",
                format!("{} is out of range (1024 to {MAX_FLOWS})", c.get_ref()),
            ))
        }
        Some(c) => c.into_inner(),
        None => d.capacity,
    };
    let secs = |v: Option<Spanned<u32>>, name: &str, def: u32| -> Result<u32, ConfigError> {
        match v {
            Some(s) if !(1..=86_400).contains(s.get_ref()) => Err(src.at(
                s.span(),
                format!("flows.{name}"),
                format!("{} is out of range (1 to 86400 seconds)", s.get_ref()),
            )),
            Some(s) => Ok(s.into_inner()),
            None => Ok(def),
        }
    };
    let mode = match &raw.mode {
        None => d.mode,
        Some(m) => match m.get_ref().as_str() {
            "flow" => FlowMode::Flow,
            "packet" => FlowMode::Packet,
            other => {
                return Err(src.at(
                    m.span(),
                    "flows.mode",
                    format!("\"{other}\" is not a mode; accepted: \"flow\" (a flow table per worker) or \"packet\" (no flow state)"),
                ))
            }
        },
    };
    Ok(Flows {
        mode,
        capacity,
        tcp_idle_s: secs(raw.tcp_idle_s, "tcp_idle_s", d.tcp_idle_s)?,
        tcp_closed_idle_s: secs(raw.tcp_closed_idle_s, "tcp_closed_idle_s", d.tcp_closed_idle_s)?,
        udp_idle_s: secs(raw.udp_idle_s, "udp_idle_s", d.udp_idle_s)?,
        other_idle_s: secs(raw.other_idle_s, "other_idle_s", d.other_idle_s)?,
        active_timeout_s: secs(raw.active_timeout_s, "active_timeout_s", d.active_timeout_s)?,
    })
}

fn action(src: &Source, s: &Spanned<String>, field: String, own: Priority) -> Result<Action, ConfigError> {
    let text = s.get_ref().trim();
    let bad = |msg: String| src.at(s.span(), field.clone(), msg);
    let accepted = "accepted: \"drop\", \"transmit\", \"remark <dscp>\" (e.g. \"remark af12\"), \"demote <priority>\" (e.g. \"demote p3\")";
    let mut words = text.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some("drop"), None, None) => Ok(Action::Drop),
        (Some("transmit"), None, None) => Ok(Action::Transmit),
        (Some("remark"), Some(d), None) => parse_dscp(d).map(Action::Remark).map_err(bad),
        (Some("demote"), Some(p), None) => {
            let p: Priority = p.parse().map_err(bad)?;
            if p <= own {
                return Err(bad(format!(
                    "demote must name a lower priority than the class's own ({}); p3 is the lowest",
                    own.name()
                )));
            }
            Ok(Action::Demote(p))
        }
        _ => Err(bad(format!("unknown action \"{text}\" ({accepted})"))),
    }
}

fn meter(src: &Source, m: &Spanned<RawMeter>, f: &dyn Fn(&str) -> String) -> Result<(MeterSpec, bool), ConfigError> {
    let r = m.get_ref();
    let rate = |v: &Option<Spanned<Amount>>, k: &str| -> Result<u64, ConfigError> {
        match v {
            Some(a) => a.get_ref().rate().map_err(|e| src.at(a.span(), f(k), e)),
            None => Err(src.at(
                m.span(),
                f(k),
                format!("is missing (a {} meter needs it)", r.kind.get_ref()),
            )),
        }
    };
    let size = |v: &Option<Spanned<Amount>>, k: &str, def: Option<u64>| -> Result<u64, ConfigError> {
        match (v, def) {
            (Some(a), _) => a.get_ref().size().map_err(|e| src.at(a.span(), f(k), e)),
            (None, Some(d)) => Ok(d),
            (None, None) => Err(src.at(
                m.span(),
                f(k),
                format!("is missing (a {} meter needs it)", r.kind.get_ref()),
            )),
        }
    };
    // A burst defaults to 10 ms at the rate, at least one jumbo frame, at most what a
    // bucket may hold.
    let def_burst = |bps: u64| Some((bps / 8 / 100).clamp(9216, qos::meter::MAX_BURST_BYTES));
    let unused = |names: &[(&str, &Option<Spanned<Amount>>)]| -> Result<(), ConfigError> {
        for (k, v) in names {
            if let Some(v) = v {
                return Err(src.at(
                    v.span(),
                    f(k),
                    format!("does not apply to a {} meter", r.kind.get_ref()),
                ));
            }
        }
        Ok(())
    };
    let spec = match r.kind.get_ref().as_str() {
        "token-bucket" => {
            unused(&[
                ("cir", &r.cir),
                ("cbs", &r.cbs),
                ("ebs", &r.ebs),
                ("pir", &r.pir),
                ("pbs", &r.pbs),
                ("eir", &r.eir),
            ])?;
            let rate_bps = rate(&r.rate, "rate")?;
            MeterSpec::TokenBucket {
                rate_bps,
                burst_bytes: size(&r.burst, "burst", def_burst(rate_bps))?,
            }
        }
        "srtcm" => {
            unused(&[
                ("rate", &r.rate),
                ("burst", &r.burst),
                ("pir", &r.pir),
                ("pbs", &r.pbs),
                ("eir", &r.eir),
            ])?;
            let cir_bps = rate(&r.cir, "cir")?;
            let cbs_bytes = size(&r.cbs, "cbs", def_burst(cir_bps))?;
            MeterSpec::SrTcm {
                cir_bps,
                cbs_bytes,
                ebs_bytes: size(&r.ebs, "ebs", Some(cbs_bytes))?,
            }
        }
        "trtcm" => {
            unused(&[("rate", &r.rate), ("burst", &r.burst), ("ebs", &r.ebs), ("eir", &r.eir)])?;
            let cir_bps = rate(&r.cir, "cir")?;
            let pir_bps = rate(&r.pir, "pir")?;
            MeterSpec::TrTcm {
                cir_bps,
                cbs_bytes: size(&r.cbs, "cbs", def_burst(cir_bps))?,
                pir_bps,
                pbs_bytes: size(&r.pbs, "pbs", def_burst(pir_bps))?,
            }
        }
        "trtcm-4115" => {
            unused(&[("rate", &r.rate), ("burst", &r.burst), ("pir", &r.pir), ("pbs", &r.pbs)])?;
            let cir_bps = rate(&r.cir, "cir")?;
            let eir_bps = rate(&r.eir, "eir")?;
            MeterSpec::TrTcm4115 {
                cir_bps,
                cbs_bytes: size(&r.cbs, "cbs", def_burst(cir_bps))?,
                eir_bps,
                ebs_bytes: size(&r.ebs, "ebs", def_burst(eir_bps))?,
            }
        }
        other => {
            return Err(src.at(
                r.kind.span(),
                f("type"),
                format!("unknown meter type \"{other}\" (accepted: token-bucket, srtcm, trtcm, trtcm-4115)"),
            ))
        }
    };
    spec.validate()
        .map_err(|e| src.at(m.span(), f("type"), e.to_string()))?;
    Ok((spec, r.colour_aware))
}

/// Classes by name; class 0 is `default` (configurable by defining a class of that name).
/// The classes (the default first) and each one's SLA (empty when it has none).
pub(super) fn classes(src: &Source, raw: Vec<RawClass>) -> Result<(Vec<Class>, Vec<Sla>), ConfigError> {
    let mut out = vec![Class::default_class()];
    let mut slas = vec![Sla::default()];
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, c) in raw.into_iter().enumerate() {
        let f = |k: &str| format!("classes[{i}].{k}");
        let name = checked_name(src, &c.name, f("name"))?;
        if seen.insert(name.clone(), i).is_some() {
            return Err(src.at(c.name.span(), f("name"), format!("class \"{name}\" is defined twice")));
        }
        let priority = match &c.priority {
            Some(p) => p.get_ref().parse().map_err(|e| src.at(p.span(), f("priority"), e))?,
            None => Priority::P3,
        };
        let dscp = c
            .dscp
            .as_ref()
            .map(|d| d.get_ref().dscp().map_err(|e| src.at(d.span(), f("dscp"), e)))
            .transpose()?;
        let (meter_spec, colour_aware) = match &c.meter {
            Some(m) => meter(src, m, &|k| f(&format!("meter.{k}")))?,
            None => (MeterSpec::None, false),
        };
        let min_bps = match &c.min_rate {
            Some(a) => a.get_ref().rate().map_err(|e| src.at(a.span(), f("min_rate"), e))?,
            None => 0,
        };
        let exceed = match &c.exceed {
            Some(a) => action(src, a, f("exceed"), priority)?,
            None => Action::Drop,
        };
        let violate = match &c.violate {
            Some(a) => action(src, a, f("violate"), priority)?,
            None => Action::Drop,
        };
        if meter_spec == MeterSpec::None {
            for (k, v) in [("exceed", &c.exceed), ("violate", &c.violate)] {
                if let Some(v) = v {
                    return Err(src.at(
                        v.span(),
                        f(k),
                        "has no effect without a meter; add meter = { type = ... }",
                    ));
                }
            }
        }
        let class = Class {
            name: name.clone(),
            priority,
            meter: meter_spec,
            colour_aware,
            min_bps,
            exceed,
            violate,
            dscp,
        };
        let sla = match &c.sla {
            Some(r) => super::probes::sla(src, r, &f("sla"))?,
            None => Sla::default(),
        };
        if name == "default" {
            out[0] = class;
            slas[0] = sla;
        } else {
            if out.len() >= MAX_CLASSES {
                return Err(src.at(
                    c.name.span(),
                    f("name"),
                    format!("too many classes (at most {MAX_CLASSES})"),
                ));
            }
            out.push(class);
            slas.push(sla);
        }
    }
    Ok((out, slas))
}

fn net(src: &Source, s: &Spanned<String>, field: String) -> Result<Net, ConfigError> {
    let text = s.get_ref();
    let p: super::Prefix = text.parse().map_err(|e: String| src.at(s.span(), field.clone(), e))?;
    Ok(match p {
        super::Prefix::V4(p) => Net::V4 {
            addr: u32::from(p.network().addr),
            len: p.len,
        },
        super::Prefix::V6(p) => Net::V6 {
            addr: u128::from(p.network().addr),
            len: p.len,
        },
    })
}

/// Rules sorted by priority (lower first; file order among equals).
pub(super) fn rules(
    src: &Source,
    raw: Vec<RawRule>,
    classes: &[Class],
    ports: &HashMap<String, usize>,
) -> Result<Vec<Rule>, ConfigError> {
    if raw.len() > MAX_RULES {
        return Err(src.at(
            0..0,
            "rules",
            format!("too many rules: {} (at most {MAX_RULES})", raw.len()),
        ));
    }
    let mut out: Vec<(u32, Rule)> = Vec::new();
    for (i, r) in raw.into_iter().enumerate() {
        let f = |k: &str| format!("rules[{i}].{k}");
        let cname = r.class.get_ref();
        let Some(class) = classes.iter().position(|c| &c.name == cname) else {
            let names: Vec<String> = classes.iter().map(|c| format!("\"{}\"", c.name)).collect();
            return Err(src.at(
                r.class.span(),
                f("class"),
                format!("class \"{cname}\" is not defined (defined: {})", names.join(", ")),
            ));
        };
        let s = r.src.as_ref().map(|s| net(src, s, f("src"))).transpose()?;
        let d = r.dst.as_ref().map(|s| net(src, s, f("dst"))).transpose()?;
        if let (Some(a), Some(b), Some(ds)) = (s, d, &r.dst) {
            if a.is_v6() != b.is_v6() {
                return Err(src.at(
                    ds.span(),
                    f("dst"),
                    "src and dst must be of the same family (both IPv4 or both IPv6)",
                ));
            }
        }
        let ports_of = |v: &Option<Spanned<Amount>>, k: &str| -> Result<(u16, u16), ConfigError> {
            v.as_ref()
                .map(|a| a.get_ref().ports().map_err(|e| src.at(a.span(), f(k), e)))
                .unwrap_or(Ok((0, u16::MAX)))
        };
        let proto = r
            .protocol
            .as_ref()
            .map(|p| p.get_ref().protocol().map_err(|e| src.at(p.span(), f("protocol"), e)))
            .transpose()?;
        let (sp, dp) = (
            ports_of(&r.src_ports, "src_ports")?,
            ports_of(&r.dst_ports, "dst_ports")?,
        );
        if (sp != (0, u16::MAX) || dp != (0, u16::MAX)) && !matches!(proto, Some(6 | 17 | 132)) {
            let at = r
                .src_ports
                .as_ref()
                .or(r.dst_ports.as_ref())
                .map(|a| a.span())
                .unwrap_or(0..0);
            return Err(src.at(
                at,
                f("protocol"),
                "port ranges need protocol = \"tcp\", \"udp\" or \"sctp\"",
            ));
        }
        let vlan = match &r.vlan {
            Some(v) if !(1..=4094).contains(v.get_ref()) => {
                return Err(src.at(
                    v.span(),
                    f("vlan"),
                    format!("{} is out of range (1 to 4094)", v.get_ref()),
                ))
            }
            v => v.as_ref().map(|v| *v.get_ref()),
        };
        let in_port = match &r.in_port {
            Some(p) => match ports.get(p.get_ref()) {
                Some(&i) if i < MAX_IN_PORTS => Some(i as u8),
                Some(_) => {
                    return Err(src.at(
                        p.span(),
                        f("in_port"),
                        format!("rules can name the first {MAX_IN_PORTS} ports only"),
                    ))
                }
                None => {
                    return Err(src.at(
                        p.span(),
                        f("in_port"),
                        format!("port \"{}\" is not defined", p.get_ref()),
                    ))
                }
            },
            None => None,
        };
        let dscp = r
            .dscp
            .as_ref()
            .map(|d| d.get_ref().dscp().map_err(|e| src.at(d.span(), f("dscp"), e)))
            .transpose()?;
        out.push((
            r.priority.map_or(100, |p| p.into_inner()),
            Rule {
                src: s,
                dst: d,
                src_ports: sp,
                dst_ports: dp,
                proto,
                vlan,
                in_port,
                dscp,
                class: ClassId(class as u16),
            },
        ));
    }
    out.sort_by_key(|(p, _)| *p);
    Ok(out.into_iter().map(|(_, r)| r).collect())
}

/// Whether the port has an address of `ip`'s family to send from.
fn has_family(port: &super::Port, ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(_) => !port.ipv4.is_empty(),
        IpAddr::V6(_) => !port.ipv6.is_empty(),
    }
}

fn unicast(ip: IpAddr) -> bool {
    !(ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() || ip == IpAddr::V4(std::net::Ipv4Addr::BROADCAST))
}

pub(super) fn paths(
    src: &Source,
    raw: Vec<RawPath>,
    ports: &HashMap<String, usize>,
    port_list: &[super::Port],
) -> Result<Vec<Path>, ConfigError> {
    let mut out: Vec<Path> = Vec::new();
    for (i, p) in raw.into_iter().enumerate() {
        let f = |k: &str| format!("paths[{i}].{k}");
        let name = checked_name(src, &p.name, f("name"))?;
        if out.iter().any(|o| o.name == name) {
            return Err(src.at(p.name.span(), f("name"), format!("path \"{name}\" is defined twice")));
        }
        if out.len() >= MAX_PATHS {
            return Err(src.at(
                p.name.span(),
                f("name"),
                format!("too many paths (at most {MAX_PATHS})"),
            ));
        }
        let cloud: Cloud = p
            .cloud
            .get_ref()
            .parse()
            .map_err(|e| src.at(p.cloud.span(), f("cloud"), e))?;
        let Some(&port) = ports.get(p.port.get_ref()) else {
            return Err(src.at(
                p.port.span(),
                f("port"),
                format!("port \"{}\" is not defined", p.port.get_ref()),
            ));
        };
        let next_hop: IpAddr = p.next_hop.get_ref().parse().map_err(|_| {
            src.at(
                p.next_hop.span(),
                f("next_hop"),
                format!("\"{}\" is not an IP address", p.next_hop.get_ref()),
            )
        })?;
        let pc = &port_list[port];
        let mac = match &p.next_hop_mac {
            Some(m) => {
                let mac: MacAddr = m.get_ref().0;
                if mac.is_multicast() || mac.is_zero() {
                    return Err(src.at(
                        m.span(),
                        f("next_hop_mac"),
                        format!("{mac} cannot be a next hop (multicast or zero)"),
                    ));
                }
                Some(mac.0)
            }
            None if !unicast(next_hop) => {
                return Err(src.at(
                    p.next_hop.span(),
                    f("next_hop"),
                    format!("{next_hop} cannot be resolved (not a unicast address); give next_hop_mac"),
                ))
            }
            None if !has_family(pc, next_hop) => {
                return Err(src.at(
                    p.next_hop.span(),
                    f("next_hop"),
                    format!(
                        "resolving {next_hop} needs an {} address on port \"{}\" to ask from; add one to the port, or give next_hop_mac",
                        if next_hop.is_ipv4() { "IPv4" } else { "IPv6" },
                        pc.name
                    ),
                ))
            }
            None => None,
        };
        let probe_target = match &p.probe_target {
            None => next_hop,
            Some(t) => match t.get_ref().parse::<IpAddr>() {
                Ok(ip) if unicast(ip) && ip.is_ipv4() == next_hop.is_ipv4() => ip,
                _ => {
                    return Err(src.at(
                        t.span(),
                        f("probe_target"),
                        format!("\"{}\" is not a unicast address of the next hop's family", t.get_ref()),
                    ))
                }
            },
        };
        let probe_ok = unicast(probe_target) && has_family(pc, probe_target);
        let probe = match p.probe.as_ref().map(|s| (s.span(), s.get_ref().as_str())) {
            None | Some((_, "auto")) if probe_ok => ProbeMode::Both,
            None | Some((_, "auto")) | Some((_, "none")) => ProbeMode::None,
            Some((span, mode)) => {
                let m = match mode {
                    "icmp" => ProbeMode::Icmp,
                    "stamp" => ProbeMode::Stamp,
                    "both" => ProbeMode::Both,
                    other => {
                        return Err(src.at(
                            span,
                            f("probe"),
                            format!("unknown probe \"{other}\" (accepted: auto, both, icmp, stamp, none)"),
                        ))
                    }
                };
                if !probe_ok {
                    return Err(src.at(
                        span,
                        f("probe"),
                        format!(
                            "probing {probe_target} needs a unicast target and an {} address on port \"{}\" to send from",
                            if probe_target.is_ipv4() { "IPv4" } else { "IPv6" },
                            pc.name
                        ),
                    ));
                }
                m
            }
        };
        let cost_per_gb = match &p.cost_per_gb {
            Some(c) if !(0.0..=1e6).contains(c.get_ref()) => {
                return Err(src.at(c.span(), f("cost_per_gb"), "must be from 0 to 1000000"))
            }
            c => c.as_ref().map_or(0.0, |c| *c.get_ref()),
        };
        let bandwidth_bps = p
            .bandwidth
            .as_ref()
            .map(|b| b.get_ref().rate().map_err(|e| src.at(b.span(), f("bandwidth"), e)))
            .transpose()?
            .unwrap_or(0);
        let location = p
            .location
            .as_ref()
            .map(|l| location(src, l, f("location")))
            .transpose()?;
        let weight = match &p.weight {
            Some(w) if !(1..=1000).contains(w.get_ref()) => {
                return Err(src.at(w.span(), f("weight"), "must be from 1 to 1000"))
            }
            w => w.as_ref().map_or(1, |w| *w.get_ref()),
        };
        let latency_us = match &p.latency_ms {
            Some(l) if !(0.0..=60_000.0).contains(l.get_ref()) => {
                return Err(src.at(l.span(), f("latency_ms"), "must be from 0 to 60000"))
            }
            l => l.as_ref().map_or(0, |l| (*l.get_ref() * 1000.0).round() as u32),
        };
        let admin = match p.state.as_ref().map(|s| s.get_ref().as_str()) {
            None | Some("up") => AdminState::Up,
            Some("drained") => AdminState::Drained,
            Some(other) => {
                return Err(src.at(
                    p.state.as_ref().map(|s| s.span()).unwrap_or(0..0),
                    f("state"),
                    format!("unknown state \"{other}\" (accepted: up, drained)"),
                ))
            }
        };
        out.push(Path {
            name,
            cloud,
            region: p.region,
            port,
            next_hop,
            next_hop_mac: mac,
            probe,
            probe_target,
            cost_per_gb,
            bandwidth_bps,
            location,
            weight,
            latency_us,
            admin,
        });
    }
    Ok(out)
}

pub(super) fn groups(src: &Source, raw: Vec<RawGroup>, paths: &[Path]) -> Result<Vec<PathGroup>, ConfigError> {
    let mut out: Vec<PathGroup> = Vec::new();
    for (i, g) in raw.into_iter().enumerate() {
        let f = |k: &str| format!("path_groups[{i}].{k}");
        let name = checked_name(src, &g.name, f("name"))?;
        if out.iter().any(|o| o.name == name) {
            return Err(src.at(
                g.name.span(),
                f("name"),
                format!("path group \"{name}\" is defined twice"),
            ));
        }
        if g.paths.get_ref().is_empty() {
            return Err(src.at(g.paths.span(), f("paths"), "a group needs at least one path"));
        }
        let mut members = Vec::new();
        for (j, p) in g.paths.get_ref().iter().enumerate() {
            let Some(k) = paths.iter().position(|x| &x.name == p.get_ref()) else {
                return Err(src.at(
                    p.span(),
                    f(&format!("paths[{j}]")),
                    format!("path \"{}\" is not defined", p.get_ref()),
                ));
            };
            if members.contains(&(k as u16)) {
                return Err(src.at(
                    p.span(),
                    f(&format!("paths[{j}]")),
                    format!("path \"{}\" is listed twice", p.get_ref()),
                ));
            }
            members.push(k as u16);
        }
        let tolerance = match &g.tolerance_pct {
            Some(t) if !(0.0..=1000.0).contains(t.get_ref()) => {
                return Err(src.at(t.span(), f("tolerance_pct"), "must be from 0 to 1000"))
            }
            t => t.as_ref().map_or(10.0, |t| *t.get_ref()),
        };
        let pname = g.policy.as_ref().map_or("lowest-latency", |p| p.get_ref().as_str());
        let policy = match pname {
            "lowest-latency" => Policy::LowestLatency,
            "lowest-cost" => Policy::LowestCost,
            "highest-bandwidth" => Policy::HighestBandwidth,
            "nearest" => Policy::Nearest,
            "weighted-score" => {
                let s = g.score.as_ref().map(|s| s.get_ref());
                let d = RawScore {
                    latency: 1.0,
                    cost: 1.0,
                    bandwidth: 1.0,
                    distance: 0.0,
                };
                let s = s.unwrap_or(&d);
                if [s.latency, s.cost, s.bandwidth, s.distance].iter().any(|w| !(0.0..=1000.0).contains(w)) {
                    return Err(src.at(
                        g.score.as_ref().map(|s| s.span()).unwrap_or(0..0),
                        f("score"),
                        "weights must be from 0 to 1000",
                    ));
                }
                Policy::WeightedScore {
                    latency: s.latency,
                    cost: s.cost,
                    bandwidth: s.bandwidth,
                    distance: s.distance,
                }
            }
            "active-active" => Policy::ActiveActive { tolerance_pct: tolerance },
            other => {
                return Err(src.at(
                    g.policy.as_ref().map(|p| p.span()).unwrap_or(0..0),
                    f("policy"),
                    format!(
                        "unknown policy \"{other}\" (accepted: lowest-latency, lowest-cost, highest-bandwidth, nearest, weighted-score, active-active)"
                    ),
                ))
            }
        };
        if g.score.is_some() && !matches!(policy, Policy::WeightedScore { .. }) {
            return Err(src.at(
                g.score.as_ref().map(|s| s.span()).unwrap_or(0..0),
                f("score"),
                "applies only to policy = \"weighted-score\"",
            ));
        }
        out.push(PathGroup {
            name,
            paths: members,
            policy,
        });
    }
    Ok(out)
}

/// Port rate settings for the egress scheduler.
pub(super) fn port_rate(
    src: &Source,
    rate: &Option<Spanned<Amount>>,
    field: String,
) -> Result<Option<u64>, ConfigError> {
    match rate {
        Some(r) => {
            let v = r.get_ref().rate().map_err(|e| src.at(r.span(), field.clone(), e))?;
            if !(1_000_000..=qos::meter::MAX_RATE_BPS).contains(&v) {
                return Err(src.at(r.span(), field, "must be from 1Mbit to 1Tbit"));
            }
            Ok(Some(v))
        }
        None => Ok(None),
    }
}
