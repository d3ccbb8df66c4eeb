//! Sluice's configuration: a TOML file, parsed strictly and validated before anything
//! starts. Every error names the file, the line and column, the field (as a path such as
//! `ports[1].ipv4[0]`) and what would be accepted.
//!
//! Parsing keeps spans (`toml::Spanned`) on the values that later checks refer to (names,
//! references, cores), so cross-field errors point at the right line too.

use crate::mac::MacAddr;
use numa::System;
use routing::{Ipv4Prefix, Ipv6Prefix};
use serde::{de, Deserialize, Deserializer};
use std::collections::HashMap;
use std::fmt;
use std::path::Path as FsPath;
use std::str::FromStr;
use toml::Spanned;

mod probes;
mod telemetry;
mod traffic;
pub use probes::{Probes, Recovery};
pub use qos::{Class, Rule};
pub use routing::{Path, PathGroup};
pub use telemetry::{Telemetry, DEFAULT_PROMETHEUS, MAX_TOP_FLOWS};
pub use traffic::{FlowMode, Flows, MAX_FLOWS};

/// Largest MTU a port may be given (jumbo frames).
pub const MAX_MTU: u16 = 9000;
/// Smallest MTU: IPv4's minimum.
pub const MIN_MTU: u16 = 68;
/// DPDK builds on Debian allow lcore ids below this.
pub const MAX_LCORE: u32 = 128;
/// Descriptor ring sizes accepted (PMDs clamp further to what the hardware allows).
pub const DESCRIPTORS: std::ops::RangeInclusive<u16> = 64..=16384;
/// IPv4 multicast, broadcast and reserved space: never routed, never an interface address.
pub const IPV4_NOT_UNICAST: Ipv4Prefix = Ipv4Prefix {
    addr: std::net::Ipv4Addr::new(224, 0, 0, 0),
    len: 3,
};
/// IPv6 space that never leaves the link: link-local (fe80::/10) and multicast (ff00::/8).
pub const IPV6_LINK_ONLY: [Ipv6Prefix; 2] = [
    Ipv6Prefix {
        addr: std::net::Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0),
        len: 10,
    },
    Ipv6Prefix {
        addr: std::net::Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0),
        len: 8,
    },
];

/// The never-routed space a prefix lies in, if any, described for a message.
fn unroutable(p: &Prefix) -> Option<String> {
    match p {
        Prefix::V4(p) if p.len >= IPV4_NOT_UNICAST.len && IPV4_NOT_UNICAST.contains(p.addr) => {
            Some(format!("{IPV4_NOT_UNICAST} (multicast, broadcast, reserved)"))
        }
        Prefix::V6(p) => IPV6_LINK_ONLY
            .iter()
            .find(|r| p.len >= r.len && r.contains(p.addr))
            .map(|r| format!("{r} (link-local or multicast)")),
        _ => None,
    }
}

/// DPDK's per-lcore mempool cache limit (RTE_MEMPOOL_CACHE_MAX_SIZE).
pub const MAX_MBUF_CACHE: u32 = 512;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    Io {
        file: String,
        error: String,
    },
    At {
        file: String,
        line: usize,
        col: usize,
        field: String,
        msg: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Io { file, error } => {
                write!(f, "{file}: cannot read the configuration: {error}")
            }
            ConfigError::At {
                file,
                line,
                col,
                field,
                msg,
            } if field.is_empty() => {
                write!(f, "{file}:{line}:{col}: {msg}")
            }
            ConfigError::At {
                file,
                line,
                col,
                field,
                msg,
            } => write!(f, "{file}:{line}:{col}: {field}: {msg}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Whether EAL gets hugepages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum HugepageMode {
    /// Use hugepages when enough are free and mounted, else fall back to `--no-huge`.
    #[default]
    Auto,
    /// Require hugepages.
    On,
    /// Always `--no-huge`.
    Off,
}

/// An IPv4 or IPv6 prefix, as a route destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prefix {
    V4(Ipv4Prefix),
    V6(Ipv6Prefix),
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Prefix::V4(p) => p.fmt(f),
            Prefix::V6(p) => p.fmt(f),
        }
    }
}

impl FromStr for Prefix {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.contains(':') {
            s.parse()
                .map(Prefix::V6)
                .map_err(|e| format!("invalid IPv6 prefix \"{s}\": {e}"))
        } else {
            s.parse()
                .map(Prefix::V4)
                .map_err(|e| format!("invalid IPv4 prefix \"{s}\": {e}"))
        }
    }
}

/// Deserializes any `FromStr` type from a TOML string, keeping its error message.
fn from_str<'de, D: Deserializer<'de>, T: FromStr>(d: D) -> Result<T, D::Error>
where
    T::Err: fmt::Display,
{
    let s = String::deserialize(d)?;
    s.parse().map_err(de::Error::custom)
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct V4(Ipv4Prefix);
#[derive(Debug, Clone, PartialEq, Eq)]
struct V6(Ipv6Prefix);
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mac(MacAddr);
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pfx(Prefix);

impl<'de> Deserialize<'de> for V4 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map(V4)
            .map_err(|e| de::Error::custom(format!("invalid IPv4 address/prefix \"{s}\": {e}")))
    }
}
impl<'de> Deserialize<'de> for V6 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map(V6)
            .map_err(|e| de::Error::custom(format!("invalid IPv6 address/prefix \"{s}\": {e}")))
    }
}
impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_str(d).map(Mac)
    }
}
impl<'de> Deserialize<'de> for Pfx {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_str(d).map(Pfx)
    }
}

// ---- The file as written -------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    eal: RawEal,
    #[serde(default)]
    ports: Vec<RawPort>,
    #[serde(default)]
    routes: Vec<RawRoute>,
    #[serde(default)]
    classes: Vec<traffic::RawClass>,
    #[serde(default)]
    rules: Vec<traffic::RawRule>,
    #[serde(default)]
    paths: Vec<traffic::RawPath>,
    #[serde(default)]
    path_groups: Vec<traffic::RawGroup>,
    #[serde(default)]
    flows: traffic::RawFlows,
    #[serde(default)]
    site: traffic::RawSite,
    #[serde(default)]
    probes: probes::RawProbes,
    #[serde(default)]
    neighbors: probes::RawNeighbors,
    #[serde(default)]
    control: RawControl,
    #[serde(default)]
    telemetry: telemetry::RawTelemetry,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawControl {
    #[serde(default)]
    socket: Option<Spanned<String>>,
}

fn default_prefix() -> Spanned<String> {
    Spanned::new(0..0, "sluice".into())
}
fn default_cache() -> Spanned<u32> {
    Spanned::new(0..0, 256)
}
fn default_desc() -> Spanned<u16> {
    Spanned::new(0..0, 1024)
}
fn default_mtu() -> Spanned<u16> {
    Spanned::new(0..0, 1500)
}
fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEal {
    workers: Spanned<Vec<Spanned<u32>>>,
    #[serde(default)]
    control_core: Option<Spanned<u32>>,
    #[serde(default)]
    hugepages: HugepageMode,
    #[serde(default = "default_prefix")]
    file_prefix: Spanned<String>,
    #[serde(default)]
    memory_mb: Option<Spanned<u32>>,
    #[serde(default)]
    mbufs: Option<Spanned<u32>>,
    #[serde(default = "default_cache")]
    mbuf_cache: Spanned<u32>,
    #[serde(default)]
    extra_args: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPort {
    name: Spanned<String>,
    device: Spanned<String>,
    #[serde(default)]
    ipv4: Vec<Spanned<V4>>,
    #[serde(default)]
    ipv6: Vec<Spanned<V6>>,
    #[serde(default)]
    mac: Option<Spanned<Mac>>,
    #[serde(default = "default_desc")]
    rx_descriptors: Spanned<u16>,
    #[serde(default = "default_desc")]
    tx_descriptors: Spanned<u16>,
    #[serde(default = "default_mtu")]
    mtu: Spanned<u16>,
    #[serde(default)]
    rx_queues: Option<Spanned<u16>>,
    #[serde(default = "yes")]
    promiscuous: bool,
    #[serde(default)]
    rate: Option<Spanned<traffic::Amount>>,
    #[serde(default)]
    queue_packets: Option<Spanned<u32>>,
    #[serde(default)]
    ecn_threshold_packets: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    prefix: Spanned<Pfx>,
    #[serde(default)]
    group: Option<Spanned<String>>,
    #[serde(default)]
    port: Option<Spanned<String>>,
    #[serde(default)]
    next_hop_mac: Option<Spanned<Mac>>,
}

// ---- The validated configuration -----------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub eal: Eal,
    pub ports: Vec<Port>,
    pub routes: Vec<Route>,
    /// Class 0 is `default`: what packets get when no rule matches.
    pub classes: Vec<Class>,
    /// Each class's SLA (by class index; empty: any path will do).
    pub class_slas: Vec<routing::health::Sla>,
    /// In priority order: the first match wins.
    pub rules: Vec<Rule>,
    pub paths: Vec<Path>,
    pub groups: Vec<PathGroup>,
    pub flows: Flows,
    /// (latitude, longitude) of this appliance, for the `nearest` policy.
    pub site: Option<(f64, f64)>,
    pub probes: Probes,
    pub neighbors: crate::neigh::NeighSettings,
    /// The control socket (`sluicectl`); `None`: `default_socket(file_prefix)`.
    pub control_socket: Option<std::path::PathBuf>,
    pub telemetry: Telemetry,
}

/// Where the control socket of the instance with EAL file prefix `prefix` is, unless the
/// configuration says: `/run/sluice/<prefix>.sock` for root, else
/// `$XDG_RUNTIME_DIR/sluice/<prefix>.sock` (or `/tmp/sluice-<uid>/<prefix>.sock`).
pub fn default_socket(prefix: &str) -> std::path::PathBuf {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").map_or(0, |m| m.uid());
    let dir = if uid == 0 {
        std::path::PathBuf::from("/run/sluice")
    } else {
        match std::env::var_os("XDG_RUNTIME_DIR") {
            Some(d) if !d.is_empty() => std::path::PathBuf::from(d).join("sluice"),
            _ => std::path::PathBuf::from(format!("/tmp/sluice-{uid}")),
        }
    };
    dir.join(format!("{prefix}.sock"))
}

impl Config {
    /// The control socket's path.
    pub fn socket(&self) -> std::path::PathBuf {
        self.control_socket
            .clone()
            .unwrap_or_else(|| default_socket(&self.eal.file_prefix))
    }
}

// Paths carry f64 figures (cost, location); none is ever NaN after validation.
impl Eq for Config {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eal {
    /// Worker lcores, in the order given.
    pub workers: Vec<u32>,
    /// The control thread's core (EAL's main lcore).
    pub control_core: u32,
    pub hugepages: HugepageMode,
    pub file_prefix: String,
    /// EAL memory (`-m`); when absent, `--no-huge` uses what the pools need (at least
    /// 512 MiB) and hugepages are dynamic.
    pub memory_mb: Option<u32>,
    /// Mbufs per pool; when absent, computed from descriptors, queues and workers.
    pub mbufs: Option<u32>,
    pub mbuf_cache: u32,
    pub extra_args: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    pub name: String,
    /// DPDK device: a PCI address (`0000:03:00.0`) or vdev arguments (`net_pcap0,rx_pcap=F`).
    pub device: String,
    pub ipv4: Vec<Ipv4Prefix>,
    pub ipv6: Vec<Ipv6Prefix>,
    pub mac: Option<MacAddr>,
    pub rx_descriptors: u16,
    pub tx_descriptors: u16,
    pub mtu: u16,
    /// RX queues; when absent, one per worker (limited by what the device offers).
    pub rx_queues: Option<u16>,
    pub promiscuous: bool,
    /// Egress link rate: when set, packets leaving this port wait in four priority
    /// queues drained at this rate.
    pub rate_bps: Option<u64>,
    /// Depth of each priority queue, per worker.
    pub queue_packets: u32,
    /// Queue depth from which ECN-capable packets are CE-marked.
    pub ecn_threshold_packets: u32,
}

impl Port {
    /// Whether the device is a PCI address rather than a virtual device.
    pub fn is_pci(&self) -> bool {
        is_pci_address(self.device.split(',').next().unwrap_or(""))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub prefix: Prefix,
    /// Index into `Config::groups`.
    pub group: usize,
}

/// `DDDD:BB:DD.F` or `BB:DD.F`, hex digits.
pub fn is_pci_address(s: &str) -> bool {
    let hex = |p: &str, n: usize| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit());
    let parts: Vec<&str> = s.split(':').collect();
    let (bus, devfn) = match parts.as_slice() {
        [dom, bus, devfn] if hex(dom, 4) => (*bus, *devfn),
        [bus, devfn] => (*bus, *devfn),
        _ => return false,
    };
    match devfn.split_once('.') {
        Some((dev, func)) => {
            hex(bus, 2) && hex(dev, 2) && func.len() == 1 && func.chars().all(|c| ('0'..='7').contains(&c))
        }
        None => false,
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 32 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A name field (port, class, path, group), checked.
fn checked_name(src: &Source, name: &Spanned<String>, field: String) -> Result<String, ConfigError> {
    let n = name.get_ref();
    if valid_name(n) {
        Ok(n.clone())
    } else {
        Err(src.at(
            name.span(),
            field,
            format!("\"{n}\" is not a valid name (letters, digits, '-' and '_', at most 32)"),
        ))
    }
}

/// Turns byte offsets into line/column for messages.
struct Source<'a> {
    file: &'a str,
    text: &'a str,
}

impl Source<'_> {
    fn at(&self, span: std::ops::Range<usize>, field: impl Into<String>, msg: impl Into<String>) -> ConfigError {
        let start = span.start.min(self.text.len());
        let before = &self.text[..start];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
        ConfigError::At {
            file: self.file.to_string(),
            line,
            col,
            field: field.into(),
            msg: msg.into(),
        }
    }
}

/// A number from the file, if given, checked against `range` (`unit` follows the range
/// in the message).
fn ranged(
    src: &Source,
    v: &Option<Spanned<u32>>,
    field: &str,
    range: std::ops::RangeInclusive<u32>,
    unit: &str,
) -> Result<Option<u32>, ConfigError> {
    match v {
        Some(x) if !range.contains(x.get_ref()) => Err(src.at(
            x.span(),
            field,
            format!(
                "{} is out of range ({} to {}{unit})",
                x.get_ref(),
                range.start(),
                range.end()
            ),
        )),
        Some(x) => Ok(Some(*x.get_ref())),
        None => Ok(None),
    }
}

impl Config {
    /// Reads and validates a configuration file against this machine.
    pub fn load(path: &FsPath) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
            file: file.clone(),
            error: e.to_string(),
        })?;
        Config::parse(&text, &file, &System::default())
    }

    /// Parses and validates configuration text; `file` is only used in messages.
    pub fn parse(text: &str, file: &str, system: &System) -> Result<Config, ConfigError> {
        let src = Source { file, text };
        let de = toml::Deserializer::parse(text)
            .map_err(|e| src.at(e.span().unwrap_or(0..0), "", format!("not valid TOML: {}", e.message())))?;
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            // Spanned<T> adds a private segment to the path; users never wrote it.
            let path = e.path().to_string().replace(".$__serde_spanned_private_value", "");
            let inner = e.into_inner();
            let field = if path == "." { String::new() } else { path };
            src.at(inner.span().unwrap_or(0..0), field, inner.message().to_string())
        })?;
        validate(raw, &src, system)
    }

    pub fn port_index(&self, name: &str) -> Option<usize> {
        self.ports.iter().position(|p| p.name == name)
    }
}

fn validate(raw: RawConfig, src: &Source, system: &System) -> Result<Config, ConfigError> {
    // ---- eal
    let e = raw.eal;
    let online = system.online_cpus().ok();
    let check_core = |core: &Spanned<u32>, field: String| -> Result<u32, ConfigError> {
        let c = *core.get_ref();
        if c >= MAX_LCORE {
            return Err(src.at(
                core.span(),
                field,
                format!("core {c} is out of range (DPDK accepts 0 to {})", MAX_LCORE - 1),
            ));
        }
        if let Some(on) = &online {
            if !on.contains(&c) {
                let list: Vec<String> = on.iter().map(|c| c.to_string()).collect();
                return Err(src.at(
                    core.span(),
                    field,
                    format!(
                        "core {c} does not exist or is offline on this machine (online cores: {})",
                        list.join(",")
                    ),
                ));
            }
        }
        Ok(c)
    };
    if e.workers.get_ref().is_empty() {
        return Err(src.at(
            e.workers.span(),
            "eal.workers",
            "at least one worker core is needed (e.g. workers = [1])",
        ));
    }
    let control_core = match &e.control_core {
        Some(c) => check_core(c, "eal.control_core".into())?,
        None => 0,
    };
    let mut workers = Vec::new();
    for (i, w) in e.workers.get_ref().iter().enumerate() {
        let c = check_core(w, format!("eal.workers[{i}]"))?;
        if workers.contains(&c) {
            return Err(src.at(
                w.span(),
                format!("eal.workers[{i}]"),
                format!("core {c} is listed twice"),
            ));
        }
        if c == control_core {
            return Err(src.at(
                w.span(),
                format!("eal.workers[{i}]"),
                format!("core {c} is the control core; a worker needs a core of its own (set eal.control_core to another core)"),
            ));
        }
        workers.push(c);
    }
    let fp = e.file_prefix.get_ref();
    if !valid_name(fp) {
        return Err(src.at(
            e.file_prefix.span(),
            "eal.file_prefix",
            format!("\"{fp}\" is not a valid file prefix (letters, digits, '-' and '_', at most 32)"),
        ));
    }
    if let Some(m) = &e.memory_mb {
        if !(64..=1 << 20).contains(m.get_ref()) {
            return Err(src.at(m.span(), "eal.memory_mb", "must be from 64 to 1048576 (MiB)"));
        }
    }
    if let Some(m) = &e.mbufs {
        if !(1024..=1 << 26).contains(m.get_ref()) {
            return Err(src.at(m.span(), "eal.mbufs", "must be from 1024 to 67108864"));
        }
    }
    if *e.mbuf_cache.get_ref() > MAX_MBUF_CACHE {
        return Err(src.at(
            e.mbuf_cache.span(),
            "eal.mbuf_cache",
            format!("must be at most {MAX_MBUF_CACHE} (DPDK's limit)"),
        ));
    }
    let eal = Eal {
        workers,
        control_core,
        hugepages: e.hugepages,
        file_prefix: fp.clone(),
        memory_mb: e.memory_mb.map(|m| m.into_inner()),
        mbufs: e.mbufs.map(|m| m.into_inner()),
        mbuf_cache: e.mbuf_cache.into_inner(),
        extra_args: e.extra_args,
    };

    // ---- ports
    if raw.ports.is_empty() {
        return Err(src.at(
            0..0,
            "ports",
            "no ports are defined; add at least one [[ports]] table with name and device",
        ));
    }
    let mut ports: Vec<Port> = Vec::new();
    let mut by_name: HashMap<String, usize> = HashMap::new();
    let mut devices: HashMap<String, String> = HashMap::new();
    let mut own_v4: HashMap<std::net::Ipv4Addr, String> = HashMap::new();
    let mut own_v6: HashMap<std::net::Ipv6Addr, String> = HashMap::new();
    for (i, p) in raw.ports.into_iter().enumerate() {
        let f = |k: &str| format!("ports[{i}].{k}");
        let name = checked_name(src, &p.name, f("name"))?;
        if by_name.insert(name.clone(), i).is_some() {
            return Err(src.at(p.name.span(), f("name"), format!("port name \"{name}\" is used twice")));
        }
        let device = p.device.get_ref().trim().to_string();
        let dev_key = device.split(',').next().unwrap_or("").to_string();
        if dev_key.is_empty() {
            return Err(src.at(
                p.device.span(),
                f("device"),
                "is empty (expected a PCI address like \"0000:03:00.0\" or vdev arguments like \"net_pcap0,rx_pcap=in.pcap\")",
            ));
        }
        if !is_pci_address(&dev_key) && !dev_key.starts_with("net_") {
            return Err(src.at(
                p.device.span(),
                f("device"),
                format!(
                    "\"{dev_key}\" is neither a PCI address (\"0000:03:00.0\") nor a DPDK network vdev (net_pcap0, net_memif0, net_null0, net_ring0, net_af_packet0, net_tap0, …)"
                ),
            ));
        }
        if let Some(other) = devices.insert(dev_key.clone(), name.clone()) {
            return Err(src.at(
                p.device.span(),
                f("device"),
                format!("device \"{dev_key}\" is already used by port \"{other}\""),
            ));
        }
        let mut ipv4 = Vec::new();
        for (j, a) in p.ipv4.iter().enumerate() {
            let pf = a.get_ref().0;
            if pf.len == 0 {
                return Err(src.at(
                    a.span(),
                    f(&format!("ipv4[{j}]")),
                    "an interface prefix must be longer than /0",
                ));
            }
            if IPV4_NOT_UNICAST.contains(pf.addr) {
                return Err(src.at(
                    a.span(),
                    f(&format!("ipv4[{j}]")),
                    format!("{} is multicast, broadcast or reserved, not a unicast address", pf.addr),
                ));
            }
            if let Some(o) = own_v4.insert(pf.addr, name.clone()) {
                return Err(src.at(
                    a.span(),
                    f(&format!("ipv4[{j}]")),
                    format!("address {} is already on port \"{o}\"", pf.addr),
                ));
            }
            ipv4.push(pf);
        }
        let mut ipv6 = Vec::new();
        for (j, a) in p.ipv6.iter().enumerate() {
            let pf = a.get_ref().0;
            if pf.len == 0 {
                return Err(src.at(
                    a.span(),
                    f(&format!("ipv6[{j}]")),
                    "an interface prefix must be longer than /0",
                ));
            }
            if IPV6_LINK_ONLY[1].contains(pf.addr) {
                return Err(src.at(
                    a.span(),
                    f(&format!("ipv6[{j}]")),
                    format!("{} is a multicast address", pf.addr),
                ));
            }
            if let Some(o) = own_v6.insert(pf.addr, name.clone()) {
                return Err(src.at(
                    a.span(),
                    f(&format!("ipv6[{j}]")),
                    format!("address {} is already on port \"{o}\"", pf.addr),
                ));
            }
            ipv6.push(pf);
        }
        let mac = match p.mac {
            Some(m) => {
                let v = m.get_ref().0;
                if v.is_multicast() || v.is_zero() {
                    return Err(src.at(
                        m.span(),
                        f("mac"),
                        format!("{v} cannot be a port address (it is multicast or zero)"),
                    ));
                }
                Some(v)
            }
            None => None,
        };
        for (k, d) in [
            ("rx_descriptors", &p.rx_descriptors),
            ("tx_descriptors", &p.tx_descriptors),
        ] {
            let v = *d.get_ref();
            if !DESCRIPTORS.contains(&v) || v % 8 != 0 {
                return Err(src.at(
                    d.span(),
                    f(k),
                    format!(
                        "{v} is not accepted (a multiple of 8 from {} to {})",
                        DESCRIPTORS.start(),
                        DESCRIPTORS.end()
                    ),
                ));
            }
        }
        let mtu = *p.mtu.get_ref();
        if !(MIN_MTU..=MAX_MTU).contains(&mtu) {
            return Err(src.at(
                p.mtu.span(),
                f("mtu"),
                format!("{mtu} is out of range ({MIN_MTU} to {MAX_MTU})"),
            ));
        }
        let rx_queues = match p.rx_queues {
            Some(q) => {
                let v = *q.get_ref();
                if v == 0 || v as usize > eal.workers.len() {
                    return Err(src.at(
                        q.span(),
                        f("rx_queues"),
                        format!(
                            "{v} is not accepted (1 to the number of workers, {})",
                            eal.workers.len()
                        ),
                    ));
                }
                Some(v)
            }
            None => None,
        };
        let rate_bps = traffic::port_rate(src, &p.rate, f("rate"))?;
        let queue_packets = match &p.queue_packets {
            Some(q) if !(32..=65536).contains(q.get_ref()) => {
                return Err(src.at(q.span(), f("queue_packets"), "must be from 32 to 65536"))
            }
            q => q.as_ref().map_or(1024, |q| *q.get_ref()),
        };
        let ecn_threshold_packets = match &p.ecn_threshold_packets {
            Some(q) if *q.get_ref() > queue_packets => {
                return Err(src.at(
                    q.span(),
                    f("ecn_threshold_packets"),
                    format!("must be at most queue_packets ({queue_packets})"),
                ))
            }
            q => q.as_ref().map_or(queue_packets / 4, |q| *q.get_ref()),
        };
        if rate_bps.is_none() {
            for (k, v) in [
                ("queue_packets", &p.queue_packets),
                ("ecn_threshold_packets", &p.ecn_threshold_packets),
            ] {
                if let Some(v) = v {
                    return Err(src.at(
                        v.span(),
                        f(k),
                        "has no effect without rate (the port's egress link rate)",
                    ));
                }
            }
        }
        ports.push(Port {
            name,
            device,
            ipv4,
            ipv6,
            mac,
            rx_descriptors: p.rx_descriptors.into_inner(),
            tx_descriptors: p.tx_descriptors.into_inner(),
            mtu,
            rx_queues,
            promiscuous: p.promiscuous,
            rate_bps,
            queue_packets,
            ecn_threshold_packets,
        });
    }

    // ---- classes, rules, paths, groups
    let (classes, class_slas) = traffic::classes(src, raw.classes)?;
    let rules = traffic::rules(src, raw.rules, &classes, &by_name)?;
    let mut paths = traffic::paths(src, raw.paths, &by_name, &ports)?;
    let mut groups = traffic::groups(src, raw.path_groups, &paths)?;
    let mode_span = raw.flows.mode_span();
    let flows = traffic::flows(src, raw.flows)?;
    let site = traffic::site(src, raw.site)?;
    let probes = probes::probes(src, raw.probes)?;
    let neighbors = probes::neighbors(src, raw.neighbors)?;
    let telemetry = telemetry::telemetry(src, raw.telemetry)?;
    if let (FlowMode::Packet, Some(span)) = (flows.mode, mode_span) {
        let wants = [
            (telemetry.ipfix.is_some(), "telemetry.ipfix (flow records)"),
            (telemetry.top_flows > 0, "telemetry.top_flows (the largest live flows)"),
        ];
        if let Some((_, what)) = wants.iter().find(|(on, _)| *on) {
            return Err(src.at(
                span,
                "flows.mode",
                format!(
                    "\"packet\" keeps no flows, so {what} would have nothing to report; remove it or use mode \"flow\""
                ),
            ));
        }
    }
    let control_socket = match &raw.control.socket {
        Some(s) if s.get_ref().is_empty() || s.get_ref().len() > 100 => {
            return Err(src.at(
                s.span(),
                "control.socket",
                "must be a path of 1 to 100 bytes (a Unix socket path is at most 107)",
            ))
        }
        Some(s) => Some(std::path::PathBuf::from(s.get_ref())),
        None => None,
    };

    // ---- routes
    let mut routes = Vec::new();
    let mut seen: HashMap<Prefix, usize> = HashMap::new();
    for (i, r) in raw.routes.into_iter().enumerate() {
        let f = |k: &str| format!("routes[{i}].{k}");
        let prefix = r.prefix.get_ref().0;
        let network = match prefix {
            Prefix::V4(p) => Prefix::V4(p.network()),
            Prefix::V6(p) => Prefix::V6(p.network()),
        };
        if network != prefix {
            return Err(src.at(
                r.prefix.span(),
                f("prefix"),
                format!("{prefix} has host bits set (did you mean {network}?)"),
            ));
        }
        if let Some(space) = unroutable(&prefix) {
            return Err(src.at(
                r.prefix.span(),
                f("prefix"),
                format!("{prefix} lies in {space}, which is never routed"),
            ));
        }
        if let Some(j) = seen.insert(prefix, i) {
            return Err(src.at(
                r.prefix.span(),
                f("prefix"),
                format!("{prefix} is already routed by routes[{j}]"),
            ));
        }
        let host_route_to_self = match prefix {
            Prefix::V4(p) if p.len == 32 => own_v4.get(&p.addr).cloned(),
            Prefix::V6(p) if p.len == 128 => own_v6.get(&p.addr).cloned(),
            _ => None,
        };
        if let Some(owner) = host_route_to_self {
            return Err(src.at(
                r.prefix.span(),
                f("prefix"),
                format!("{prefix} is the address of port \"{owner}\"; the appliance cannot route its own address"),
            ));
        }
        let group = match (&r.group, &r.port, &r.next_hop_mac) {
            (Some(g), None, None) => match groups.iter().position(|x| &x.name == g.get_ref()) {
                Some(k) => k,
                None => {
                    let names: Vec<String> = groups.iter().map(|g| format!("\"{}\"", g.name)).collect();
                    return Err(src.at(
                        g.span(),
                        f("group"),
                        format!(
                            "path group \"{}\" is not defined (defined: {})",
                            g.get_ref(),
                            names.join(", ")
                        ),
                    ));
                }
            },
            (None, Some(pn), Some(m)) => {
                let port = lookup_port(src, &by_name, pn, f("port"))?;
                let mac = m.get_ref().0;
                if mac.is_multicast() || mac.is_zero() {
                    return Err(src.at(
                        m.span(),
                        f("next_hop_mac"),
                        format!("{mac} cannot be a next hop (multicast or zero)"),
                    ));
                }
                direct_group(&mut paths, &mut groups, &ports[port].name, port, mac)
            }
            (Some(g), _, _) => {
                return Err(src.at(
                    g.span(),
                    f("group"),
                    "give either group, or port and next_hop_mac, not both",
                ))
            }
            _ => {
                return Err(src.at(
                    r.prefix.span(),
                    "",
                    format!("routes[{i}] needs group = \"<path group>\", or port and next_hop_mac"),
                ))
            }
        };
        routes.push(Route { prefix, group });
    }
    if paths.len() > routing::path::MAX_PATHS {
        return Err(src.at(
            0..0,
            "routes",
            format!(
                "too many paths (at most {}, counting one per port and next_hop_mac of direct routes)",
                routing::path::MAX_PATHS
            ),
        ));
    }
    Ok(Config {
        eal,
        ports,
        routes,
        classes,
        class_slas,
        rules,
        paths,
        groups,
        flows,
        site,
        probes,
        neighbors,
        control_socket,
        telemetry,
    })
}

fn lookup_port(
    src: &Source,
    by_name: &HashMap<String, usize>,
    pname: &Spanned<String>,
    field: String,
) -> Result<usize, ConfigError> {
    match by_name.get(pname.get_ref()) {
        Some(&p) => Ok(p),
        None => {
            let mut names: Vec<&String> = by_name.keys().collect();
            names.sort();
            let names: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
            Err(src.at(
                pname.span(),
                field,
                format!(
                    "port \"{}\" is not defined (defined ports: {})",
                    pname.get_ref(),
                    names.join(", ")
                ),
            ))
        }
    }
}

/// A route written with port and next_hop_mac goes to a path and group of its own
/// (shared by every route with the same port and MAC), named after them.
fn direct_group(
    paths: &mut Vec<Path>,
    groups: &mut Vec<PathGroup>,
    port_name: &str,
    port: usize,
    mac: MacAddr,
) -> usize {
    let name = format!("{port_name}-via-{}", mac.to_string().replace(':', ""));
    if let Some(g) = groups.iter().position(|g| g.name == name) {
        return g;
    }
    paths.push(Path {
        name: name.clone(),
        cloud: routing::Cloud::Onprem,
        region: String::new(),
        port,
        next_hop: std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        next_hop_mac: Some(mac.0),
        probe: routing::path::ProbeMode::None,
        probe_target: std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        cost_per_gb: 0.0,
        bandwidth_bps: 0,
        location: None,
        weight: 1,
        latency_us: 0,
        admin: routing::AdminState::Up,
    });
    groups.push(PathGroup {
        name,
        paths: vec![(paths.len() - 1) as u16],
        policy: routing::Policy::LowestLatency,
    });
    groups.len() - 1
}

#[cfg(test)]
mod tests;
