//! What to send: streams read from a TOML file or built from command-line flags, checked
//! into `StreamSpec`s. Frame sizes are Ethernet frames on the wire including the 4-byte
//! FCS (64 = the smallest frame), as RFC 2544 counts them.

use serde::Deserialize;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;

/// The most streams one run may carry (each has its own counters and histograms).
pub const MAX_STREAMS: usize = 256;
/// IMIX 7:4:1 of 64, 570 and 1518-byte frames, interleaved so that any 12 consecutive
/// packets carry the exact proportions.
pub const IMIX: [u16; 12] = [64, 570, 64, 64, 570, 64, 1518, 64, 570, 64, 64, 570];
pub const MIN_FRAME: u16 = 64;
pub const MAX_FRAME: u16 = 1518;
/// Bytes a frame occupies on the wire beyond itself: preamble, SFD and inter-frame gap.
pub const L1_OVERHEAD: u64 = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Udp,
    Tcp,
    Icmp,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Udp => "udp",
            Proto::Tcp => "tcp",
            Proto::Icmp => "icmp",
        }
    }
}

/// A contiguous range of addresses: `count` of them from `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrRange {
    V4 { start: u32, count: u64 },
    V6 { start: u128, count: u64 },
}

impl AddrRange {
    pub fn count(&self) -> u64 {
        match *self {
            AddrRange::V4 { count, .. } | AddrRange::V6 { count, .. } => count,
        }
    }
    pub fn is_v6(&self) -> bool {
        matches!(self, AddrRange::V6 { .. })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub start: u16,
    pub count: u32,
}

/// How fast a stream goes. Bits per second count the frame on the wire with its preamble
/// and inter-frame gap (layer 1), as "percent of link" does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    Pps(f64),
    L1Bps(u64),
    Percent(f64),
    Max,
}

impl Rate {
    /// Packets per second at `avg_frame` bytes per frame on a link of `link_mbps`
    /// (None when the rate is "max").
    pub fn pps(&self, avg_frame: f64, link_mbps: u32) -> Result<Option<f64>, SpecError> {
        let wire_bits = (avg_frame + L1_OVERHEAD as f64) * 8.0;
        match *self {
            Rate::Pps(p) => Ok(Some(p)),
            Rate::L1Bps(b) => Ok(Some(b as f64 / wire_bits)),
            Rate::Percent(p) if link_mbps == 0 => Err(SpecError(format!(
                "rate {p}% needs the link speed, and the port reports none; give packets/s or bits/s"
            ))),
            Rate::Percent(p) => Ok(Some(link_mbps as f64 * 1e6 * p / 100.0 / wire_bits)),
            Rate::Max => Ok(None),
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rate::Pps(p) => write!(f, "{p} pps"),
            Rate::L1Bps(b) => write!(f, "{}", qos::units::format_rate_bps(*b)),
            Rate::Percent(p) => write!(f, "{p}% of link"),
            Rate::Max => write!(f, "max"),
        }
    }
}

/// One checked stream.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    pub name: String,
    /// Index into the generator's ports.
    pub port: usize,
    /// Frame sizes on the wire (with FCS), cycled packet by packet.
    pub sizes: Vec<u16>,
    pub proto: Proto,
    pub src: AddrRange,
    pub dst: AddrRange,
    pub sport: PortRange,
    pub dport: PortRange,
    /// Distinct flows, cycled: destination varies fastest, then source, destination port,
    /// source port.
    pub flows: u64,
    pub vlan: Option<u16>,
    pub dscp: u8,
    pub ecn: u8,
    pub ttl: u8,
    pub rate: Rate,
    /// None: the port's own address.
    pub src_mac: Option<[u8; 6]>,
    pub dst_mac: [u8; 6],
    /// Packets to send (None: until the run's duration ends).
    pub count: Option<u64>,
}

impl StreamSpec {
    pub fn avg_frame(&self) -> f64 {
        self.sizes.iter().map(|&s| s as f64).sum::<f64>() / self.sizes.len() as f64
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError(pub String);

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SpecError {}

fn err<T>(msg: impl Into<String>) -> Result<T, SpecError> {
    Err(SpecError(msg.into()))
}

/// A number or a string in TOML (`sport = 1024` or `sport = "1024-2047"`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum NumOrText {
    Num(u64),
    Text(String),
}

impl NumOrText {
    fn text(&self) -> String {
        match self {
            NumOrText::Num(n) => n.to_string(),
            NumOrText::Text(t) => t.clone(),
        }
    }
}

/// A stream as written, before checking. Every field has a default but `dst`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStream {
    pub name: Option<String>,
    pub port: Option<usize>,
    pub size: Option<NumOrText>,
    pub proto: Option<String>,
    pub src: Option<String>,
    pub dst: Option<String>,
    pub sport: Option<NumOrText>,
    pub dport: Option<NumOrText>,
    pub flows: Option<u64>,
    pub vlan: Option<u16>,
    pub dscp: Option<NumOrText>,
    pub ecn: Option<u8>,
    pub ttl: Option<u8>,
    pub rate: Option<String>,
    pub src_mac: Option<String>,
    pub dst_mac: Option<String>,
    pub count: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamFile {
    #[serde(default)]
    stream: Vec<RawStream>,
}

/// Reads `[[stream]]` tables from a TOML file.
pub fn load_file(path: &Path) -> Result<Vec<RawStream>, SpecError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| SpecError(format!("reading streams file {}: {e}", path.display())))?;
    parse_file(&text).map_err(|e| SpecError(format!("{}: {e}", path.display())))
}

pub fn parse_file(text: &str) -> Result<Vec<RawStream>, SpecError> {
    let de = toml::Deserializer::parse(text).map_err(|e| SpecError(e.to_string()))?;
    let f: StreamFile = serde_path_to_error::deserialize(de).map_err(|e| SpecError(format!("{}: {}", e.path(), e)))?;
    if f.stream.is_empty() {
        return err("no [[stream]] tables");
    }
    Ok(f.stream)
}

/// Checks every stream; `ports` is how many ports the generator has.
pub fn check_all(raw: &[RawStream], ports: usize) -> Result<Vec<StreamSpec>, SpecError> {
    if raw.is_empty() {
        return err("no streams: give --dst (and other stream flags) or --streams FILE");
    }
    if raw.len() > MAX_STREAMS {
        return err(format!("{} streams; at most {MAX_STREAMS} are supported", raw.len()));
    }
    let mut out = Vec::with_capacity(raw.len());
    for (i, r) in raw.iter().enumerate() {
        let s = check(r, i, ports).map_err(|e| {
            let name = r.name.clone().unwrap_or_else(|| format!("#{i}"));
            SpecError(format!("stream {name}: {e}"))
        })?;
        if out.iter().any(|o: &StreamSpec| o.name == s.name) {
            return err(format!("two streams are named {:?}", s.name));
        }
        out.push(s);
    }
    Ok(out)
}

fn check(r: &RawStream, index: usize, ports: usize) -> Result<StreamSpec, SpecError> {
    let name = r.name.clone().unwrap_or_else(|| format!("s{index}"));
    if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return err(format!("name {name:?}: use 1-64 letters, digits, '-', '_' or '.'"));
    }
    let port = r.port.unwrap_or(0);
    if port >= ports {
        return err(format!(
            "port {port}: the generator has {ports} port(s), numbered from 0"
        ));
    }
    let proto = match r.proto.as_deref().unwrap_or("udp") {
        "udp" => Proto::Udp,
        "tcp" => Proto::Tcp,
        "icmp" => Proto::Icmp,
        p => return err(format!("proto {p:?}: use udp, tcp or icmp")),
    };
    let dst = match &r.dst {
        Some(d) => parse_addr_range(d)?,
        None => return err("dst is required (an address, a range a-b or a prefix)"),
    };
    let src = match &r.src {
        Some(s) => parse_addr_range(s)?,
        None if dst.is_v6() => parse_addr_range("2001:db8::1")?,
        None => parse_addr_range("10.0.0.1")?,
    };
    if src.is_v6() != dst.is_v6() {
        return err("src and dst must both be IPv4 or both IPv6");
    }
    let sport = parse_port_range(&r.sport.clone().unwrap_or(NumOrText::Num(1024)).text())?;
    let dport = parse_port_range(&r.dport.clone().unwrap_or(NumOrText::Num(5001)).text())?;
    let sizes = parse_sizes(&r.size.clone().unwrap_or(NumOrText::Num(64)).text())?;
    let min_size = min_frame(proto, dst.is_v6(), r.vlan.is_some());
    if let Some(&small) = sizes.iter().find(|&&s| s < min_size) {
        return err(format!(
            "frame size {small} is too small for {} over {} with the 16-byte signature{}; the smallest is {min_size}",
            proto.name(),
            if dst.is_v6() { "IPv6" } else { "IPv4" },
            if r.vlan.is_some() { " and a VLAN tag" } else { "" }
        ));
    }
    // ICMP has no ports: the source-port range varies the echo identifier instead.
    let dport = if proto == Proto::Icmp {
        PortRange { start: 0, count: 1 }
    } else {
        dport
    };
    let combos = (dst.count() as u128) * (src.count() as u128) * (dport.count as u128) * (sport.count as u128);
    let flows = match r.flows {
        Some(0) => return err("flows must be at least 1"),
        Some(f) if f as u128 > combos => {
            return err(format!(
                "flows = {f}, but the address and port ranges give only {combos} distinct flows"
            ))
        }
        Some(f) => f,
        None => combos.min(u32::MAX as u128) as u64,
    };
    if let Some(v) = r.vlan {
        if v == 0 || v > 4094 {
            return err(format!("vlan {v}: use 1-4094"));
        }
    }
    let dscp = match &r.dscp {
        None => 0,
        Some(d) => qos::class::parse_dscp(&d.text()).map_err(SpecError)?,
    };
    let ecn = r.ecn.unwrap_or(0);
    if ecn > 3 {
        return err(format!("ecn {ecn}: use 0-3 (1 or 2: ECN-capable, 3: CE)"));
    }
    let ttl = r.ttl.unwrap_or(64);
    if ttl == 0 {
        return err("ttl must be at least 1");
    }
    let rate = parse_rate(r.rate.as_deref().unwrap_or("max"))?;
    let src_mac = r.src_mac.as_deref().map(parse_mac).transpose()?;
    let dst_mac = parse_mac(r.dst_mac.as_deref().unwrap_or("02:00:00:00:00:01"))?;
    if r.count == Some(0) {
        return err("count must be at least 1");
    }
    Ok(StreamSpec {
        name,
        port,
        sizes,
        proto,
        src,
        dst,
        sport,
        dport,
        flows,
        vlan: r.vlan,
        dscp,
        ecn,
        ttl,
        rate,
        src_mac,
        dst_mac,
        count: r.count,
    })
}

/// The smallest frame (with FCS) that holds the headers and the signature.
pub fn min_frame(proto: Proto, v6: bool, vlan: bool) -> u16 {
    let l3 = if v6 { 40 } else { 20 };
    let l4 = if proto == Proto::Tcp { 20 } else { 8 };
    let need = 14 + if vlan { 4 } else { 0 } + l3 + l4 + crate::sig::SIG_LEN as u16 + 4;
    need.max(MIN_FRAME)
}

/// `64`, `imix`, `64-1518` (every size) or `64-1518/64` (every 64th).
pub fn parse_sizes(text: &str) -> Result<Vec<u16>, SpecError> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("imix") {
        return Ok(IMIX.to_vec());
    }
    let one = |s: &str| -> Result<u16, SpecError> {
        let v: u16 = s
            .trim()
            .parse()
            .map_err(|_| SpecError(format!("frame size {s:?}: give bytes, e.g. 64, or imix")))?;
        if !(MIN_FRAME..=MAX_FRAME).contains(&v) {
            return err(format!("frame size {v}: use {MIN_FRAME}-{MAX_FRAME} bytes (with FCS)"));
        }
        Ok(v)
    };
    match t.split_once('-') {
        None => Ok(vec![one(t)?]),
        Some((a, rest)) => {
            let (b, step) = match rest.split_once('/') {
                Some((b, s)) => (
                    b,
                    s.trim()
                        .parse::<u16>()
                        .ok()
                        .filter(|&s| s > 0)
                        .ok_or_else(|| SpecError(format!("size step {s:?}: give a positive number")))?,
                ),
                None => (rest, 1),
            };
            let (a, b) = (one(a)?, one(b)?);
            if a > b {
                return err(format!("size range {t}: the first size must not exceed the second"));
            }
            Ok((a..=b).step_by(step as usize).collect())
        }
    }
}

/// `10.0.0.1`, `10.0.0.1-10.0.0.200`, `10.0.0.0/24` (every address of it), IPv6 alike.
/// At most 2^32 addresses.
pub fn parse_addr_range(text: &str) -> Result<AddrRange, SpecError> {
    let t = text.trim();
    let bad = || SpecError(format!("address {t:?}: give an address, a range a-b or a prefix a/len"));
    let ip = |s: &str| s.trim().parse::<IpAddr>().map_err(|_| bad());
    let limit = 1u128 << 32;
    let (first, last): (IpAddr, u128) = if let Some((a, len)) = t.split_once('/') {
        let a = ip(a)?;
        let len: u32 = len.trim().parse().map_err(|_| bad())?;
        let bits = if a.is_ipv4() { 32 } else { 128 };
        if len > bits {
            return Err(bad());
        }
        let n = 1u128.checked_shl(bits - len).unwrap_or(0).max(1);
        if bits - len > 32 {
            return err(format!("prefix {t}: more than 2^32 addresses; use a longer prefix"));
        }
        let v = as_u128(a) & !(n - 1);
        (from_u128(v, a.is_ipv4()), n)
    } else if let Some((a, b)) = t.split_once('-') {
        let (a, b) = (ip(a)?, ip(b)?);
        if a.is_ipv4() != b.is_ipv4() {
            return Err(bad());
        }
        let (x, y) = (as_u128(a), as_u128(b));
        if y < x {
            return err(format!(
                "address range {t}: the first address must not exceed the second"
            ));
        }
        (a, y - x + 1)
    } else {
        (ip(t)?, 1)
    };
    if last > limit {
        return err(format!("address range {t}: more than 2^32 addresses"));
    }
    Ok(match first {
        IpAddr::V4(a) => AddrRange::V4 {
            start: u32::from(a),
            count: last as u64,
        },
        IpAddr::V6(a) => AddrRange::V6 {
            start: u128::from(a),
            count: last as u64,
        },
    })
}

fn as_u128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u32::from(v) as u128,
        IpAddr::V6(v) => u128::from(v),
    }
}

fn from_u128(v: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4((v as u32).into())
    } else {
        IpAddr::V6(v.into())
    }
}

/// `5001` or `1024-2047`.
pub fn parse_port_range(text: &str) -> Result<PortRange, SpecError> {
    let t = text.trim();
    let one = |s: &str| {
        s.trim()
            .parse::<u16>()
            .map_err(|_| SpecError(format!("port {t:?}: give a port 0-65535 or a range a-b")))
    };
    let (a, b) = match t.split_once('-') {
        Some((a, b)) => (one(a)?, one(b)?),
        None => (one(t)?, one(t)?),
    };
    if a > b {
        return err(format!("port range {t}: the first port must not exceed the second"));
    }
    Ok(PortRange {
        start: a,
        count: (b - a) as u32 + 1,
    })
}

/// `max`, `10%`, `1.5Mpps`, `250kpps`, `500Mbit`, `10Gbit` (layer-1 bits).
pub fn parse_rate(text: &str) -> Result<Rate, SpecError> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("max") {
        return Ok(Rate::Max);
    }
    if let Some(p) = t.strip_suffix('%') {
        let v: f64 = p
            .trim()
            .parse()
            .map_err(|_| SpecError(format!("rate {t:?}: give a percentage such as 10%")))?;
        if !(v > 0.0 && v <= 100.0) {
            return err(format!("rate {t}: a percentage of the link must be in (0, 100]"));
        }
        return Ok(Rate::Percent(v));
    }
    if let Some(p) = t.strip_suffix("pps") {
        // Reuse the rate parser for the number and its SI prefix ("1.5M" -> 1 500 000).
        let v = qos::units::parse_rate_bps(&format!("{}bit", p.trim()))
            .map_err(|e| SpecError(format!("rate {t:?}: {e}")))?;
        if v == 0 {
            return err(format!("rate {t}: must be above zero"));
        }
        return Ok(Rate::Pps(v as f64));
    }
    let v = qos::units::parse_rate_bps(t).map_err(|e| {
        SpecError(format!(
            "rate {t:?}: {e}; or give pps (1Mpps), a percentage (10%) or max"
        ))
    })?;
    if v == 0 {
        return err(format!("rate {t}: must be above zero"));
    }
    Ok(Rate::L1Bps(v))
}

pub fn parse_mac(text: &str) -> Result<[u8; 6], SpecError> {
    let parts: Vec<&str> = text.trim().split(':').collect();
    let bad = || {
        SpecError(format!(
            "MAC address {text:?}: give six hex bytes, e.g. 02:00:00:00:00:01"
        ))
    };
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut m = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.is_empty() || p.len() > 2 {
            return Err(bad());
        }
        m[i] = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    Ok(m)
}

pub fn format_mac(m: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// `10s`, `500ms`, `250us`, `2m`, or plain seconds.
pub fn parse_duration_ns(text: &str) -> Result<u64, SpecError> {
    let t = text.trim();
    let (num, mult) = if let Some(v) = t.strip_suffix("ms") {
        (v, 1e6)
    } else if let Some(v) = t.strip_suffix("us") {
        (v, 1e3)
    } else if let Some(v) = t.strip_suffix("ns") {
        (v, 1.0)
    } else if let Some(v) = t.strip_suffix('s') {
        (v, 1e9)
    } else if let Some(v) = t.strip_suffix('m') {
        (v, 60e9)
    } else {
        (t, 1e9)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| SpecError(format!("duration {t:?}: give e.g. 10s, 500ms or 250us")))?;
    if !(v >= 0.0 && v.is_finite()) || v * mult > 1e15 {
        return err(format!("duration {t}: must be between 0 and about 11 days"));
    }
    Ok((v * mult).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(dst: &str) -> RawStream {
        RawStream {
            dst: Some(dst.into()),
            ..Default::default()
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_sizes("64").unwrap(), vec![64]);
        assert_eq!(parse_sizes("IMIX").unwrap().len(), 12);
        let r = parse_sizes("64-128/32").unwrap();
        assert_eq!(r, vec![64, 96, 128]);
        assert_eq!(parse_sizes("64-70").unwrap().len(), 7);
        assert!(parse_sizes("63").is_err());
        assert!(parse_sizes("1519").is_err());
        assert!(parse_sizes("128-64").is_err());
        assert!(parse_sizes("64-128/0").is_err());
        let imix = parse_sizes("imix").unwrap();
        assert_eq!(imix.iter().filter(|&&s| s == 64).count(), 7);
        assert_eq!(imix.iter().filter(|&&s| s == 570).count(), 4);
        assert_eq!(imix.iter().filter(|&&s| s == 1518).count(), 1);
    }

    #[test]
    fn addresses_and_ports() {
        assert_eq!(
            parse_addr_range("10.0.0.0/24").unwrap(),
            AddrRange::V4 {
                start: 0x0a00_0000,
                count: 256
            }
        );
        assert_eq!(
            parse_addr_range("10.0.0.5/24").unwrap(),
            AddrRange::V4 {
                start: 0x0a00_0000,
                count: 256
            }
        );
        assert_eq!(parse_addr_range("10.0.0.1-10.0.0.3").unwrap().count(), 3);
        assert_eq!(parse_addr_range("2001:db8::/120").unwrap().count(), 256);
        assert_eq!(parse_addr_range("0.0.0.0/0").unwrap().count(), 1 << 32);
        assert!(parse_addr_range("2001:db8::/64").is_err());
        assert!(parse_addr_range("10.0.0.3-10.0.0.1").is_err());
        assert!(parse_addr_range("10.0.0.1-2001:db8::1").is_err());
        assert!(parse_addr_range("10.0.0.1/33").is_err());
        assert!(parse_addr_range("nonsense").is_err());
        assert_eq!(
            parse_port_range("1024-2047").unwrap(),
            PortRange {
                start: 1024,
                count: 1024
            }
        );
        assert!(parse_port_range("70000").is_err());
        assert!(parse_port_range("20-10").is_err());
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("max").unwrap(), Rate::Max);
        assert_eq!(parse_rate("1.5Mpps").unwrap(), Rate::Pps(1.5e6));
        assert_eq!(parse_rate("10kpps").unwrap(), Rate::Pps(1e4));
        assert_eq!(parse_rate("10%").unwrap(), Rate::Percent(10.0));
        assert_eq!(parse_rate("1Gbit").unwrap(), Rate::L1Bps(1_000_000_000));
        assert!(parse_rate("0pps").is_err());
        assert!(parse_rate("150%").is_err());
        assert!(parse_rate("fast").is_err());
        // 1 Gbit/s of 64-byte frames is 1e9 / (84 * 8) packets per second.
        let p = Rate::L1Bps(1_000_000_000).pps(64.0, 0).unwrap().unwrap();
        assert!((p - 1_488_095.2).abs() < 1.0);
        let p = Rate::Percent(100.0).pps(64.0, 10_000).unwrap().unwrap();
        assert!((p - 14_880_952.4).abs() < 1.0);
        assert!(Rate::Percent(10.0).pps(64.0, 0).is_err());
    }

    #[test]
    fn durations_and_macs() {
        assert_eq!(parse_duration_ns("10s").unwrap(), 10_000_000_000);
        assert_eq!(parse_duration_ns("250ms").unwrap(), 250_000_000);
        assert_eq!(parse_duration_ns("3").unwrap(), 3_000_000_000);
        assert_eq!(parse_duration_ns("1m").unwrap(), 60_000_000_000);
        assert!(parse_duration_ns("-1s").is_err());
        assert_eq!(parse_mac("02:00:00:00:00:0a").unwrap(), [2, 0, 0, 0, 0, 10]);
        assert!(parse_mac("02:00:00:00:00").is_err());
        assert!(parse_mac("02:00:00:00:00:zz").is_err());
        assert_eq!(format_mac(&[2, 0, 0, 0, 0, 10]), "02:00:00:00:00:0a");
    }

    #[test]
    fn streams_are_checked() {
        let s = &check_all(&[raw("198.18.0.0/20")], 1).unwrap()[0];
        assert_eq!(s.flows, 4096);
        assert_eq!(s.proto, Proto::Udp);
        assert_eq!(s.sizes, vec![64]);
        let mut r = raw("198.18.0.0/20");
        r.flows = Some(5000);
        assert!(check_all(&[r.clone()], 1).unwrap_err().0.contains("4096 distinct"));
        r.sport = Some(NumOrText::Text("1000-1001".into()));
        assert_eq!(check_all(&[r.clone()], 1).unwrap()[0].flows, 5000);
        r.port = Some(1);
        assert!(check_all(&[r], 1).unwrap_err().0.contains("1 port"));
        let mut r = raw("2001:db8::1");
        r.proto = Some("tcp".into());
        assert!(check_all(&[r.clone()], 1).unwrap_err().0.contains("smallest is 94"));
        r.size = Some(NumOrText::Num(94));
        assert!(check_all(&[r], 1).is_ok());
        let mut r = raw("10.0.0.1");
        r.src = Some("2001:db8::1".into());
        assert!(check_all(&[r], 1).is_err());
        let mut r = raw("10.0.0.1");
        r.dscp = Some(NumOrText::Text("ef".into()));
        assert_eq!(check_all(&[r], 1).unwrap()[0].dscp, 46);
        assert!(check_all(&[raw("10.0.0.1"), raw("10.0.0.2")], 1).is_ok());
        let mut a = raw("10.0.0.1");
        a.name = Some("x".into());
        assert!(check_all(&[a.clone(), a], 1).unwrap_err().0.contains("two streams"));
        assert!(check_all(&[], 1).is_err());
        assert!(check_all(&[RawStream::default()], 1)
            .unwrap_err()
            .0
            .contains("dst is required"));
    }

    #[test]
    fn toml_file() {
        let s = parse_file(
            r#"
            [[stream]]
            name = "voice"
            dst = "198.18.0.0/24"
            sport = "1024-1027"
            size = "imix"
            rate = "10kpps"
            dscp = "ef"

            [[stream]]
            dst = "2001:db8::/120"
            dport = 53
            size = 128
            "#,
        )
        .unwrap();
        let s = check_all(&s, 1).unwrap();
        assert_eq!(s[0].flows, 1024);
        assert_eq!(s[1].dport.start, 53);
        assert!(parse_file("[[stream]]\nbogus = 1\n").unwrap_err().0.contains("bogus"));
        assert!(parse_file("").is_err());
    }
}
