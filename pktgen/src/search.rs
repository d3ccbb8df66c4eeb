//! RFC 2544 throughput search: the highest rate whose loss stays within a bound (0 for
//! the no-drop rate, NDR; a fraction for the partial-drop rate, PDR), by binary search
//! over a fraction of the streams' asked rate, one fixed-length trial per step.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Goal {
    /// Largest acceptable loss ratio (0 for NDR).
    pub max_loss: f64,
    /// Stop when the bracket is narrower than this fraction of the top rate.
    pub resolution: f64,
    pub max_trials: u32,
    /// A rate fails only when this many more trials at it fail too (0: one trial decides).
    /// On shared machines one scheduling hiccup loses packets at any rate; retries tell a
    /// hiccup from a limit.
    pub retries: u32,
}

/// `ndr`, `pdr` (0.5 %) or `pdr=0.1%`.
pub fn parse_goal(text: &str) -> Result<Goal, String> {
    let base = Goal {
        max_loss: 0.0,
        resolution: 0.005,
        max_trials: 20,
        retries: 0,
    };
    match text.trim() {
        "ndr" => Ok(base),
        "pdr" => Ok(Goal {
            max_loss: 0.005,
            ..base
        }),
        t => {
            let v = t
                .strip_prefix("pdr=")
                .and_then(|v| v.trim().strip_suffix('%'))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|v| *v > 0.0 && *v < 100.0)
                .ok_or_else(|| format!("--search {t:?}: use ndr, pdr or pdr=<loss>% (e.g. pdr=0.5%)"))?;
            Ok(Goal {
                max_loss: v / 100.0,
                ..base
            })
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Trial {
    pub scale: f64,
    pub tx_pps: f64,
    pub loss_ratio: f64,
    pub pass: bool,
}

/// Every trial, and the best passing scale with its report.
pub type Outcome<R> = (Vec<Trial>, Option<(f64, R)>);

/// Runs trials through `trial(scale) -> (loss ratio, measured TX pps, its report)` and
/// returns every trial and the best passing one's report (None if none passed).
pub fn search<R>(
    goal: &Goal,
    mut trial: impl FnMut(f64) -> Result<(f64, f64, R), String>,
) -> Result<Outcome<R>, String> {
    let mut trials = Vec::new();
    let mut best: Option<(f64, R)> = None;
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    let mut scale = 1.0;
    let mut attempts_at_scale = 0;
    for _ in 0..goal.max_trials {
        let (loss, pps, rep) = trial(scale)?;
        let pass = loss <= goal.max_loss;
        trials.push(Trial {
            scale,
            tx_pps: pps,
            loss_ratio: loss,
            pass,
        });
        if !pass && attempts_at_scale < goal.retries {
            attempts_at_scale += 1;
            continue;
        }
        attempts_at_scale = 0;
        if pass {
            lo = scale;
            best = Some((scale, rep));
        } else {
            hi = scale;
        }
        if pass && scale == 1.0 || hi - lo < goal.resolution {
            break;
        }
        scale = (lo + hi) / 2.0;
    }
    Ok((trials, best))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goals() {
        assert_eq!(parse_goal("ndr").unwrap().max_loss, 0.0);
        assert_eq!(parse_goal("pdr").unwrap().max_loss, 0.005);
        assert!((parse_goal("pdr=0.1%").unwrap().max_loss - 0.001).abs() < 1e-12);
        assert!(parse_goal("pdr=0.1").is_err());
        assert!(parse_goal("fast").is_err());
    }

    #[test]
    fn finds_the_knee_within_the_resolution() {
        // A device that loses everything above 63.7 % of the asked rate.
        let knee = 0.637;
        let g = parse_goal("ndr").unwrap();
        let (trials, best) = search(&g, |s| Ok((if s > knee { 0.01 } else { 0.0 }, s * 1e6, s))).unwrap();
        let (scale, rep) = best.unwrap();
        assert_eq!(scale, rep);
        assert!(scale <= knee && knee - scale < g.resolution, "{scale}");
        assert!(trials.len() < 12);
        assert!(trials.iter().all(|t| t.pass == (t.scale <= knee)));
        // Passing at the top stops at once; failing everywhere finds nothing.
        let (t, b) = search(&g, |s| Ok((0.0, s, ()))).unwrap();
        assert_eq!(t.len(), 1);
        assert!(b.is_some());
        let (_, b) = search(&g, |s| Ok((0.5, s, ()))).unwrap();
        assert!(b.is_none());
        // With retries, a rate fails only when every attempt fails: a one-off loss at 0.8
        // does not pull the result down to below 0.637.
        let mut g2 = parse_goal("ndr").unwrap();
        g2.retries = 1;
        let mut calls = 0;
        let (t, b) = search(&g2, |s| {
            calls += 1;
            let loss = if s > knee || (calls == 2 && s == 0.5) {
                0.01
            } else {
                0.0
            };
            Ok((loss, s, ()))
        })
        .unwrap();
        assert!(b.unwrap().0 > 0.63);
        assert!(
            t.iter().filter(|t| t.scale == 1.0).count() == 2,
            "the top rate was tried twice"
        );
        // PDR accepts loss up to its bound.
        let p = parse_goal("pdr=1%").unwrap();
        let (_, b) = search(&p, |s| Ok((if s > 0.5 { 0.02 } else { 0.009 }, s, ()))).unwrap();
        assert!(b.unwrap().0 > 0.49);
    }
}
