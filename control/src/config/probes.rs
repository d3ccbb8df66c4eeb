//! `[probes]` (how paths are probed and judged) and `[neighbors]` (ARP / ND timing).

use super::{ranged, ConfigError, Source};
use crate::neigh::NeighSettings;
use routing::health::{HealthSettings, Sla};
use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSla {
    #[serde(default)]
    latency_ms: Option<Spanned<f64>>,
    #[serde(default)]
    loss_pct: Option<Spanned<f64>>,
    #[serde(default)]
    jitter_ms: Option<Spanned<f64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProbes {
    #[serde(default)]
    interval_ms: Option<Spanned<u32>>,
    #[serde(default)]
    jitter_pct: Option<Spanned<u32>>,
    #[serde(default)]
    timeout_ms: Option<Spanned<u32>>,
    #[serde(default)]
    down_after: Option<Spanned<u32>>,
    #[serde(default)]
    up_after: Option<Spanned<u32>>,
    #[serde(default)]
    hold_down_ms: Option<Spanned<u32>>,
    #[serde(default)]
    window: Option<Spanned<u32>>,
    #[serde(default)]
    stamp_port: Option<Spanned<u16>>,
    #[serde(default)]
    recovery: Option<Spanned<String>>,
    #[serde(default)]
    degrade: Option<RawSla>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNeighbors {
    #[serde(default)]
    reachable_s: Option<Spanned<u32>>,
    #[serde(default)]
    retry_ms: Option<Spanned<u32>>,
    #[serde(default)]
    tries: Option<Spanned<u32>>,
    #[serde(default)]
    failed_retry_s: Option<Spanned<u32>>,
    #[serde(default)]
    queue: Option<Spanned<u32>>,
}

/// What happens to flows when a path comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Recovery {
    /// Flows stay where failover put them; new flows use the recovered path.
    #[default]
    NewFlows,
    /// Every flow follows the selection again.
    Rebalance,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Probes {
    pub interval_ns: u64,
    /// Each interval is drawn from interval ± this share, so probes from many appliances
    /// never fall into step.
    pub jitter_pct: u32,
    /// `None`: three times the RTT seen (window maximum or EWMA), at least 25 ms, and
    /// 1 s before any answer.
    pub timeout_ns: Option<u64>,
    pub stamp_port: u16,
    pub recovery: Recovery,
    pub health: HealthSettings,
}

impl Default for Probes {
    fn default() -> Probes {
        Probes {
            interval_ns: 100_000_000,
            jitter_pct: 25,
            timeout_ns: None,
            stamp_port: crate::packet::STAMP_PORT,
            recovery: Recovery::NewFlows,
            health: HealthSettings::default(),
        }
    }
}

fn sla_limit(src: &Source, v: &Option<Spanned<f64>>, field: &str, max: f64) -> Result<Option<f64>, ConfigError> {
    match v {
        Some(x) if !(x.get_ref().is_finite() && *x.get_ref() >= 0.0 && *x.get_ref() <= max) => {
            Err(src.at(x.span(), field, format!("must be from 0 to {max}")))
        }
        Some(x) => Ok(Some(*x.get_ref())),
        None => Ok(None),
    }
}

/// An SLA table (`[probes.degrade]`, a class's `sla`); `at` names it in messages.
pub(super) fn sla(src: &Source, raw: &RawSla, at: &str) -> Result<Sla, ConfigError> {
    Ok(Sla {
        max_latency_us: sla_limit(src, &raw.latency_ms, &format!("{at}.latency_ms"), 60_000.0)?
            .map(|ms| (ms * 1000.0).round() as u32),
        max_loss_ppm: sla_limit(src, &raw.loss_pct, &format!("{at}.loss_pct"), 100.0)?
            .map(|p| (p * 10_000.0).round() as u32),
        max_jitter_us: sla_limit(src, &raw.jitter_ms, &format!("{at}.jitter_ms"), 60_000.0)?
            .map(|ms| (ms * 1000.0).round() as u32),
    })
}

pub(super) fn probes(src: &Source, raw: RawProbes) -> Result<Probes, ConfigError> {
    let d = Probes::default();
    let ms = 1_000_000u64;
    let interval_ns = ranged(src, &raw.interval_ms, "probes.interval_ms", 10..=60_000, " ms")?
        .map_or(d.interval_ns, |v| v as u64 * ms);
    let jitter_pct = ranged(src, &raw.jitter_pct, "probes.jitter_pct", 0..=50, " %")?.unwrap_or(d.jitter_pct);
    let timeout_ns = ranged(src, &raw.timeout_ms, "probes.timeout_ms", 1..=60_000, " ms")?.map(|v| v as u64 * ms);
    let h = d.health;
    let health = HealthSettings {
        down_after: ranged(src, &raw.down_after, "probes.down_after", 1..=100, "")?.unwrap_or(h.down_after),
        up_after: ranged(src, &raw.up_after, "probes.up_after", 1..=1000, "")?.unwrap_or(h.up_after),
        hold_down_ns: ranged(src, &raw.hold_down_ms, "probes.hold_down_ms", 0..=3_600_000, " ms")?
            .map_or(h.hold_down_ns, |v| v as u64 * ms),
        window: ranged(src, &raw.window, "probes.window", 1..=10_000, " rounds")?.map_or(h.window, |v| v as usize),
        degrade: match &raw.degrade {
            Some(r) => sla(src, r, "probes.degrade")?,
            None => Sla::default(),
        },
    };
    let stamp_port = match &raw.stamp_port {
        Some(p) if *p.get_ref() == 0 => return Err(src.at(p.span(), "probes.stamp_port", "must not be 0")),
        Some(p) => *p.get_ref(),
        None => d.stamp_port,
    };
    let recovery = match raw.recovery.as_ref().map(|r| (r.span(), r.get_ref().as_str())) {
        None | Some((_, "new-flows")) => Recovery::NewFlows,
        Some((_, "rebalance")) => Recovery::Rebalance,
        Some((span, other)) => {
            return Err(src.at(
                span,
                "probes.recovery",
                format!("unknown recovery \"{other}\" (accepted: new-flows, rebalance)"),
            ))
        }
    };
    Ok(Probes {
        interval_ns,
        jitter_pct,
        timeout_ns,
        stamp_port,
        recovery,
        health,
    })
}

pub(super) fn neighbors(src: &Source, raw: RawNeighbors) -> Result<NeighSettings, ConfigError> {
    let d = NeighSettings::default();
    let s = 1_000_000_000u64;
    Ok(NeighSettings {
        reachable_ns: ranged(src, &raw.reachable_s, "neighbors.reachable_s", 5..=86_400, " s")?
            .map_or(d.reachable_ns, |v| v as u64 * s),
        refresh_pct: d.refresh_pct,
        retry_ns: ranged(src, &raw.retry_ms, "neighbors.retry_ms", 10..=60_000, " ms")?
            .map_or(d.retry_ns, |v| v as u64 * 1_000_000),
        tries: ranged(src, &raw.tries, "neighbors.tries", 1..=100, "")?.unwrap_or(d.tries),
        failed_retry_ns: ranged(src, &raw.failed_retry_s, "neighbors.failed_retry_s", 1..=3600, " s")?
            .map_or(d.failed_retry_ns, |v| v as u64 * s),
        queue: ranged(
            src,
            &raw.queue,
            "neighbors.queue",
            0..=crate::hold::TOTAL as u32,
            " packets",
        )?
        .unwrap_or(d.queue),
    })
}
