//! `[telemetry]`: how often the control thread merges the workers' counters into metrics,
//! and where they are served.

use super::{ranged, ConfigError, Source};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use toml::Spanned;

/// Where the Prometheus endpoint listens unless told: loopback only.
pub const DEFAULT_PROMETHEUS: &str = "127.0.0.1:9417";
/// The most flows `top_flows` may ask for.
pub const MAX_TOP_FLOWS: u32 = 20;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTelemetry {
    #[serde(default)]
    interval_ms: Option<Spanned<u32>>,
    #[serde(default)]
    prometheus: Option<Spanned<String>>,
    #[serde(default)]
    top_flows: Option<Spanned<u32>>,
    #[serde(default)]
    ipfix: Option<Spanned<String>>,
    #[serde(default)]
    ipfix_domain: Option<Spanned<u32>>,
    #[serde(default)]
    ipfix_template_s: Option<Spanned<u32>>,
    #[serde(default)]
    otlp: Option<Spanned<String>>,
    #[serde(default)]
    otlp_headers: Option<Spanned<BTreeMap<String, String>>>,
    #[serde(default)]
    otlp_resource: Option<Spanned<BTreeMap<String, String>>>,
    #[serde(default)]
    otlp_interval_ms: Option<Spanned<u32>>,
    #[serde(default)]
    otlp_timeout_ms: Option<Spanned<u32>>,
    #[serde(default)]
    otlp_flows: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Telemetry {
    /// The merge period, in milliseconds.
    pub interval_ms: u32,
    /// The Prometheus endpoint's address; `None` when turned off.
    pub prometheus: Option<SocketAddr>,
    /// Whether that address was configured (then failing to bind it stops the start) or
    /// is the default (then it is a warning).
    pub prometheus_configured: bool,
    /// The largest flows by bytes exported as series (0: none).
    pub top_flows: u32,
    /// The IPFIX collector flow records go to over UDP; `None`: no IPFIX.
    pub ipfix: Option<SocketAddr>,
    /// The IPFIX observation domain.
    pub ipfix_domain: u32,
    /// How often the IPFIX templates are sent again.
    pub ipfix_template_s: u32,
    /// The OTLP/HTTP collector (`http://host:port[/prefix]`); `None`: no OTLP.
    pub otlp: Option<String>,
    /// Headers sent with every OTLP request.
    pub otlp_headers: Vec<(String, String)>,
    /// Resource attributes added to service.name, service.version and host.name.
    pub otlp_resource: Vec<(String, String)>,
    /// How often metrics are exported.
    pub otlp_interval_ms: u32,
    /// The limit of one request (connect, send, answer).
    pub otlp_timeout_ms: u32,
    /// Whether flow records go out as OTLP log records.
    pub otlp_flows: bool,
}

impl Default for Telemetry {
    fn default() -> Telemetry {
        Telemetry {
            interval_ms: 1000,
            prometheus: DEFAULT_PROMETHEUS.parse().ok(),
            prometheus_configured: false,
            top_flows: 0,
            ipfix: None,
            ipfix_domain: 1,
            ipfix_template_s: 60,
            otlp: None,
            otlp_headers: Vec::new(),
            otlp_resource: Vec::new(),
            otlp_interval_ms: 10_000,
            otlp_timeout_ms: 2000,
            otlp_flows: true,
        }
    }
}

pub(super) fn telemetry(src: &Source, raw: RawTelemetry) -> Result<Telemetry, ConfigError> {
    let mut t = Telemetry::default();
    t.interval_ms = ranged(src, &raw.interval_ms, "telemetry.interval_ms", 100..=60_000, "")?.unwrap_or(t.interval_ms);
    if let Some(p) = raw.prometheus {
        t.prometheus_configured = true;
        t.prometheus = match p.get_ref().trim() {
            "off" => None,
            a => Some(a.parse::<SocketAddr>().map_err(|_| {
                src.at(
                    p.span(),
                    "telemetry.prometheus",
                    format!(
                        "\"{a}\" is not an address and port (such as \"{DEFAULT_PROMETHEUS}\" or \"[::1]:9417\"), or \"off\""
                    ),
                )
            })?),
        };
    }
    if let Some(n) = raw.top_flows {
        if *n.get_ref() > MAX_TOP_FLOWS {
            return Err(src.at(
                n.span(),
                "telemetry.top_flows",
                format!(
                    "{} is too many (at most {MAX_TOP_FLOWS}: each is a series of its own)",
                    n.get_ref()
                ),
            ));
        }
        t.top_flows = n.into_inner();
    }
    if let Some(p) = raw.ipfix {
        t.ipfix = match p.get_ref().trim() {
            "off" => None,
            a => Some(a.parse::<SocketAddr>().map_err(|_| {
                src.at(
                    p.span(),
                    "telemetry.ipfix",
                    format!("\"{a}\" is not the collector's address and port (such as \"127.0.0.1:4739\"), or \"off\""),
                )
            })?),
        };
    }
    if let Some(d) = raw.ipfix_domain {
        t.ipfix_domain = d.into_inner();
    }
    t.ipfix_template_s = ranged(
        src,
        &raw.ipfix_template_s,
        "telemetry.ipfix_template_s",
        1..=3600,
        " seconds",
    )?
    .unwrap_or(t.ipfix_template_s);
    if let Some(u) = raw.otlp {
        t.otlp = match u.get_ref().trim() {
            "off" => None,
            url => {
                let err = |why: &str| src.at(u.span(), "telemetry.otlp", format!("\"{url}\": {why}"));
                let rest = url.strip_prefix("http://").ok_or_else(|| {
                    err(if url.starts_with("https://") {
                        "https is not supported: send to an OpenTelemetry Collector on this host (\"http://127.0.0.1:4318\") that forwards over TLS"
                    } else {
                        "expected the collector's OTLP/HTTP address, such as \"http://127.0.0.1:4318\", or \"off\""
                    })
                })?;
                if rest.is_empty() || rest.starts_with('/') || rest.contains(['@', ' ', '?', '#']) {
                    return Err(err("expected http://host:port[/prefix]"));
                }
                Some(url.to_string())
            }
        };
    }
    let header = |k: &str| !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if let Some(h) = raw.otlp_headers {
        let span = h.span();
        for (k, v) in h.into_inner() {
            if !header(&k) || v.contains(['\r', '\n']) {
                return Err(src.at(
                    span,
                    "telemetry.otlp_headers",
                    format!("\"{k}\": a header name is letters, digits and '-', its value one line"),
                ));
            }
            t.otlp_headers.push((k, v));
        }
    }
    if let Some(r) = raw.otlp_resource {
        t.otlp_resource = r.into_inner().into_iter().collect();
    }
    t.otlp_interval_ms = ranged(
        src,
        &raw.otlp_interval_ms,
        "telemetry.otlp_interval_ms",
        1000..=300_000,
        " ms",
    )?
    .unwrap_or(t.otlp_interval_ms);
    t.otlp_timeout_ms = ranged(
        src,
        &raw.otlp_timeout_ms,
        "telemetry.otlp_timeout_ms",
        100..=30_000,
        " ms",
    )?
    .unwrap_or(t.otlp_timeout_ms);
    if let Some(f) = raw.otlp_flows {
        t.otlp_flows = f;
    }
    Ok(t)
}
