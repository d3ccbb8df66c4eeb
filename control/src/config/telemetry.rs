//! `[telemetry]`: how often the control thread merges the workers' counters into metrics,
//! and where they are served.

use super::{ConfigError, Source};
use serde::Deserialize;
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
        }
    }
}

pub(super) fn telemetry(src: &Source, raw: RawTelemetry) -> Result<Telemetry, ConfigError> {
    let mut t = Telemetry::default();
    if let Some(i) = raw.interval_ms {
        if !(100..=60_000).contains(i.get_ref()) {
            return Err(src.at(
                i.span(),
                "telemetry.interval_ms",
                format!("{} is out of range (100 to 60000)", i.get_ref()),
            ));
        }
        t.interval_ms = i.into_inner();
    }
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
    if let Some(n) = raw.ipfix_template_s {
        if !(1..=3600).contains(n.get_ref()) {
            return Err(src.at(
                n.span(),
                "telemetry.ipfix_template_s",
                format!("{} is out of range (1 to 3600 seconds)", n.get_ref()),
            ));
        }
        t.ipfix_template_s = n.into_inner();
    }
    Ok(t)
}
