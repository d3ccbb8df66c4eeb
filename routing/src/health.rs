//! A path's health from its probes, with hysteresis: "fail fast, recover slow".
//!
//! - **Down** after `down_after` consecutive probe rounds go unanswered.
//! - **Degraded** while the windowed figures break the SLA (loss, latency or jitter).
//! - **Up** again only after `up_after` consecutive answered rounds *and* `hold_down`
//!   since the last miss (from Down) or the last SLA breach (from Degraded), so a path that
//!   flaps keeps restarting its own hold-down.
//!
//! Figures per path: RTT as an EWMA (gain 1/8, as TCP's SRTT) and min/avg/max over the
//! window, jitter as RFC 3550 (J += (|D| - J)/16, D the difference between consecutive
//! RTTs), and loss as the share of the window's rounds that went unanswered.

use crate::path::Health;
use std::collections::VecDeque;

/// A service level: a path breaking any limit given is degraded (or, for a class with
/// this SLA, not preferred).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Sla {
    pub max_latency_us: Option<u32>,
    /// Parts per million of rounds lost.
    pub max_loss_ppm: Option<u32>,
    pub max_jitter_us: Option<u32>,
}

impl Sla {
    pub fn is_empty(&self) -> bool {
        self.max_latency_us.is_none() && self.max_loss_ppm.is_none() && self.max_jitter_us.is_none()
    }

    /// Which limit `f` breaks first (latency, loss, jitter), if any. Latency and jitter
    /// are judged only once something was measured.
    pub fn breach(&self, f: &Figures) -> Option<&'static str> {
        let measured = f.answered_in_window > 0;
        if measured && self.max_latency_us.is_some_and(|l| f.rtt_avg_us > l as f64) {
            return Some("latency");
        }
        if self.max_loss_ppm.is_some_and(|l| f.loss_ppm > l) {
            return Some("loss");
        }
        if measured && self.max_jitter_us.is_some_and(|l| f.jitter_us > l as f64) {
            return Some("jitter");
        }
        None
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthSettings {
    pub down_after: u32,
    pub up_after: u32,
    pub hold_down_ns: u64,
    /// Rounds in the sliding window.
    pub window: usize,
    /// The path-level SLA whose breach makes a path degraded.
    pub degrade: Sla,
}

impl Default for HealthSettings {
    fn default() -> HealthSettings {
        HealthSettings {
            down_after: 3,
            up_after: 5,
            hold_down_ns: 3_000_000_000,
            window: 50,
            degrade: Sla::default(),
        }
    }
}

/// What the window says right now.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Figures {
    pub rtt_ewma_us: f64,
    pub rtt_min_us: f64,
    pub rtt_avg_us: f64,
    pub rtt_max_us: f64,
    pub jitter_us: f64,
    pub loss_ppm: u32,
    pub rounds_in_window: usize,
    pub answered_in_window: usize,
}

/// A state change, with why.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub from: Health,
    pub to: Health,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct PathHealth {
    pub state: Health,
    misses_in_a_row: u32,
    good_in_a_row: u32,
    last_miss_ns: Option<u64>,
    last_breach_ns: Option<u64>,
    /// RTT in µs per round, `None` for a miss; newest at the back.
    window: VecDeque<Option<f64>>,
    rtt_ewma_us: Option<f64>,
    last_rtt_us: Option<f64>,
    jitter_us: f64,
    pub since_ns: u64,
    pub rounds: u64,
    pub answered: u64,
    pub missed: u64,
}

impl PathHealth {
    /// A path starts `Up`: traffic need not wait for the first probe, and a dead gateway
    /// is found by the first `down_after` rounds.
    pub fn new(now_ns: u64) -> PathHealth {
        PathHealth {
            state: Health::Up,
            misses_in_a_row: 0,
            good_in_a_row: 0,
            last_miss_ns: None,
            last_breach_ns: None,
            window: VecDeque::new(),
            rtt_ewma_us: None,
            last_rtt_us: None,
            jitter_us: 0.0,
            since_ns: now_ns,
            rounds: 0,
            answered: 0,
            missed: 0,
        }
    }

    pub fn misses_in_a_row(&self) -> u32 {
        self.misses_in_a_row
    }

    fn push(&mut self, s: &HealthSettings, v: Option<f64>) {
        if self.window.len() >= s.window.max(1) {
            self.window.pop_front();
        }
        self.window.push_back(v);
        self.rounds += 1;
    }

    pub fn figures(&self) -> Figures {
        let rtts: Vec<f64> = self.window.iter().flatten().copied().collect();
        let n = self.window.len();
        let lost = n - rtts.len();
        let (min, max) = rtts.iter().fold((f64::MAX, 0.0f64), |(a, b), &x| (a.min(x), b.max(x)));
        Figures {
            rtt_ewma_us: self.rtt_ewma_us.unwrap_or(0.0),
            rtt_min_us: if rtts.is_empty() { 0.0 } else { min },
            rtt_avg_us: if rtts.is_empty() {
                0.0
            } else {
                rtts.iter().sum::<f64>() / rtts.len() as f64
            },
            rtt_max_us: max,
            jitter_us: self.jitter_us,
            loss_ppm: if n == 0 {
                0
            } else {
                (lost as u64 * 1_000_000 / n as u64) as u32
            },
            rounds_in_window: n,
            answered_in_window: rtts.len(),
        }
    }

    /// The largest RTT worth waiting for: the window's maximum or the EWMA, whichever is
    /// larger (the EWMA outlives a window full of misses). `None` before any answer.
    pub fn rtt_bound_us(&self) -> Option<f64> {
        let f = self.figures();
        self.rtt_ewma_us.map(|e| e.max(f.rtt_max_us))
    }

    fn set(&mut self, to: Health, now_ns: u64, reason: String) -> Option<Change> {
        if to == self.state {
            return None;
        }
        let from = self.state;
        self.state = to;
        self.since_ns = now_ns;
        Some(Change { from, to, reason })
    }

    /// A round was answered after `rtt_ns`.
    pub fn answered(&mut self, s: &HealthSettings, rtt_ns: u64, now_ns: u64) -> Option<Change> {
        let rtt = rtt_ns as f64 / 1000.0;
        self.push(s, Some(rtt));
        self.answered += 1;
        self.misses_in_a_row = 0;
        self.good_in_a_row = self.good_in_a_row.saturating_add(1);
        self.rtt_ewma_us = Some(match self.rtt_ewma_us {
            None => rtt,
            Some(e) => e + (rtt - e) / 8.0,
        });
        if let Some(last) = self.last_rtt_us {
            self.jitter_us += ((rtt - last).abs() - self.jitter_us) / 16.0;
        }
        self.last_rtt_us = Some(rtt);
        let breach = s.degrade.breach(&self.figures());
        if breach.is_some() {
            self.last_breach_ns = Some(now_ns);
        }
        let held = |since: Option<u64>| since.is_none_or(|t| now_ns.saturating_sub(t) >= s.hold_down_ns);
        let enough = self.good_in_a_row >= s.up_after;
        match (self.state, breach) {
            (Health::Down, b) if enough && held(self.last_miss_ns) => {
                let to = if b.is_some() { Health::Degraded } else { Health::Up };
                self.set(
                    to,
                    now_ns,
                    format!(
                        "{} answered rounds in a row and {} ms held down",
                        self.good_in_a_row,
                        s.hold_down_ns / 1_000_000
                    ),
                )
            }
            (Health::Up, Some(what)) => self.set(Health::Degraded, now_ns, format!("{what} breaks the SLA")),
            (Health::Degraded, None) if enough && held(self.last_breach_ns) && held(self.last_miss_ns) => self.set(
                Health::Up,
                now_ns,
                format!("within the SLA for {} ms", s.hold_down_ns / 1_000_000),
            ),
            _ => None,
        }
    }

    /// A round went unanswered.
    pub fn missed(&mut self, s: &HealthSettings, now_ns: u64) -> Option<Change> {
        self.push(s, None);
        self.missed += 1;
        self.good_in_a_row = 0;
        self.misses_in_a_row = self.misses_in_a_row.saturating_add(1);
        self.last_miss_ns = Some(now_ns);
        if self.state != Health::Down && self.misses_in_a_row >= s.down_after.max(1) {
            return self.set(
                Health::Down,
                now_ns,
                format!("{} probe rounds in a row unanswered", self.misses_in_a_row),
            );
        }
        if self.state == Health::Up {
            if let Some(what) = s.degrade.breach(&self.figures()) {
                self.last_breach_ns = Some(now_ns);
                return self.set(Health::Degraded, now_ns, format!("{what} breaks the SLA"));
            }
        }
        None
    }
}

/// The chance that a healthy path with independent random probe loss `p` is taken down
/// falsely in one round (a run of `n` misses ending there), and the mean time between
/// such false failovers at one round every `interval_s`.
pub fn false_down(p: f64, n: u32, interval_s: f64) -> (f64, f64) {
    let per_round = (1.0 - p) * p.powi(n as i32);
    (
        per_round,
        if per_round > 0.0 {
            interval_s / per_round
        } else {
            f64::INFINITY
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn settings() -> HealthSettings {
        HealthSettings {
            down_after: 3,
            up_after: 5,
            hold_down_ns: 1000 * MS,
            window: 10,
            degrade: Sla::default(),
        }
    }

    #[test]
    fn down_after_n_misses_and_up_after_m_good_and_hold_down() {
        let s = settings();
        let mut h = PathHealth::new(0);
        let mut t = 0;
        let step = |h: &mut PathHealth, t: &mut u64, ok: bool| {
            *t += 100 * MS;
            if ok {
                h.answered(&s, 2 * MS, *t)
            } else {
                h.missed(&s, *t)
            }
        };
        assert_eq!(step(&mut h, &mut t, true), None);
        assert_eq!(step(&mut h, &mut t, false), None);
        assert_eq!(step(&mut h, &mut t, false), None);
        // A good round resets the run.
        assert_eq!(step(&mut h, &mut t, true), None);
        assert_eq!(step(&mut h, &mut t, false), None);
        assert_eq!(step(&mut h, &mut t, false), None);
        let c = step(&mut h, &mut t, false).expect("down");
        assert_eq!((c.from, c.to), (Health::Up, Health::Down));
        assert_eq!(h.state, Health::Down);
        let down_at = t;
        // Five good rounds come at 100 ms: 500 ms < the 1 s hold-down.
        for _ in 0..5 {
            assert_eq!(step(&mut h, &mut t, true), None);
        }
        assert_eq!(h.state, Health::Down);
        // Up on the first good round with hold-down served (a miss restarts it).
        while h.state == Health::Down {
            step(&mut h, &mut t, true);
        }
        assert_eq!(t - down_at, 1000 * MS);
        let f = h.figures();
        assert_eq!(f.rounds_in_window, 10);
        assert_eq!(f.loss_ppm, 0);
        assert!((f.rtt_avg_us - 2000.0).abs() < 1e-6);
    }

    #[test]
    fn sla_breach_degrades_and_recovers_after_hold_down() {
        let mut s = settings();
        s.degrade.max_latency_us = Some(10_000);
        let mut h = PathHealth::new(0);
        let mut t = 0;
        for _ in 0..5 {
            t += 100 * MS;
            assert_eq!(h.answered(&s, 5 * MS, t), None);
        }
        // Latency rises: the window average crosses 10 ms on the fourth 30 ms round.
        let mut degraded_after = 0;
        while h.state == Health::Up {
            t += 100 * MS;
            h.answered(&s, 30 * MS, t);
            degraded_after += 1;
        }
        assert_eq!(h.state, Health::Degraded);
        // (5*5 + 30)/6 = 9.2 ms, then (5*5 + 2*30)/7 = 12.1 ms.
        assert_eq!(degraded_after, 2);
        let breach_ended = {
            // Back to 5 ms: the average falls below 10 ms only when the 30 ms rounds leave
            // the window; then the hold-down runs from the last breach.
            let mut last_breach = t;
            while h.state == Health::Degraded {
                t += 100 * MS;
                h.answered(&s, 5 * MS, t);
                if s.degrade.breach(&h.figures()).is_some() {
                    last_breach = t;
                }
            }
            last_breach
        };
        assert_eq!(h.state, Health::Up);
        assert_eq!(t - breach_ended, 1000 * MS);
    }

    #[test]
    fn loss_in_the_window_and_jitter() {
        let mut s = settings();
        s.down_after = 100;
        s.degrade.max_loss_ppm = Some(150_000);
        let mut h = PathHealth::new(0);
        let mut t = 0;
        for i in 0..10 {
            t += 100 * MS;
            h.answered(&s, if i % 2 == 0 { MS } else { 3 * MS }, t);
        }
        // RTTs alternate 1 and 3 ms: |D| = 2000 us every round, jitter converges on it.
        let f = h.figures();
        assert!(f.jitter_us > 800.0 && f.jitter_us < 2000.0, "{f:?}");
        assert_eq!((f.rtt_min_us, f.rtt_max_us), (1000.0, 3000.0));
        h.missed(&s, t + 1);
        assert_eq!(h.state, Health::Up);
        let c = h.missed(&s, t + 2).expect("2 of 10 lost is 20 %");
        assert_eq!(c.to, Health::Degraded);
        assert_eq!(c.reason, "loss breaks the SLA");
        assert_eq!(h.figures().loss_ppm, 200_000);
    }

    #[test]
    fn false_failover_rate() {
        // 1 % random loss, 3 misses, 100 ms rounds: about one false failover in 28 hours.
        let (p, mtbf) = false_down(0.01, 3, 0.1);
        assert!((p - 0.99e-6).abs() < 1e-9);
        assert!((mtbf / 3600.0 - 28.06).abs() < 0.1, "{}", mtbf / 3600.0);
    }
}
