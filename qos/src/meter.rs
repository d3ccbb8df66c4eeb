//! Meters on TSC ticks with integer arithmetic: a single-rate token bucket, srTCM
//! (RFC 2697), trTCM (RFC 2698) and the RFC 4115 variant, colour-blind or colour-aware.
//!
//! Tokens are kept in byte-ticks (bytes × tsc_hz), so refilling is one multiply of the
//! elapsed ticks by the rate in bytes/s, with no division and no rounding drift; the
//! elapsed time is clamped first, so the product never overflows. Bursts are limited to
//! `MAX_BURST_BYTES` so that a full bucket fits in 63 bits at any TSC up to 8 GHz.

/// Largest burst a bucket may hold.
pub const MAX_BURST_BYTES: u64 = 512 << 20;
/// Highest TSC frequency the arithmetic is sized for.
pub const MAX_TSC_HZ: u64 = 8_000_000_000;
/// Highest rate a meter takes (1 Tbit/s).
pub const MAX_RATE_BPS: u64 = 1_000_000_000_000;

/// The colour a meter gives a packet: conform (green), exceed (yellow), violate (red).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Colour {
    Green = 0,
    Yellow = 1,
    Red = 2,
}

impl Colour {
    pub const ALL: [Colour; 3] = [Colour::Green, Colour::Yellow, Colour::Red];
    pub fn name(self) -> &'static str {
        match self {
            Colour::Green => "conform",
            Colour::Yellow => "exceed",
            Colour::Red => "violate",
        }
    }
}

/// A meter as configured: rates in bits/s, bursts in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeterSpec {
    /// Every packet conforms.
    None,
    /// Single-rate, two-colour: conform up to the rate, exceed (yellow) beyond it.
    TokenBucket { rate_bps: u64, burst_bytes: u64 },
    /// RFC 2697: one rate, committed and excess bursts.
    SrTcm {
        cir_bps: u64,
        cbs_bytes: u64,
        ebs_bytes: u64,
    },
    /// RFC 2698: peak and committed rates, the peak bucket bounds everything.
    TrTcm {
        cir_bps: u64,
        cbs_bytes: u64,
        pir_bps: u64,
        pbs_bytes: u64,
    },
    /// RFC 4115: committed and excess rates with independent buckets.
    TrTcm4115 {
        cir_bps: u64,
        cbs_bytes: u64,
        eir_bps: u64,
        ebs_bytes: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MeterError {
    #[error("{0} must be between 8 bit/s and 1 Tbit/s")]
    Rate(&'static str),
    #[error("{0} must be between 64 bytes and 512 MiB")]
    Burst(&'static str),
    #[error("the peak rate (pir) must be at least the committed rate (cir)")]
    PeakBelowCommitted,
}

impl MeterSpec {
    pub fn validate(&self) -> Result<(), MeterError> {
        let rate = |r: u64, name| {
            if (8..=MAX_RATE_BPS).contains(&r) {
                Ok(())
            } else {
                Err(MeterError::Rate(name))
            }
        };
        let burst = |b: u64, name| {
            if (64..=MAX_BURST_BYTES).contains(&b) {
                Ok(())
            } else {
                Err(MeterError::Burst(name))
            }
        };
        match *self {
            MeterSpec::None => Ok(()),
            MeterSpec::TokenBucket { rate_bps, burst_bytes } => {
                rate(rate_bps, "rate")?;
                burst(burst_bytes, "burst")
            }
            MeterSpec::SrTcm {
                cir_bps,
                cbs_bytes,
                ebs_bytes,
            } => {
                rate(cir_bps, "cir")?;
                burst(cbs_bytes, "cbs")?;
                // RFC 2697 allows EBS = 0 (no yellow).
                if ebs_bytes == 0 {
                    Ok(())
                } else {
                    burst(ebs_bytes, "ebs")
                }
            }
            MeterSpec::TrTcm {
                cir_bps,
                cbs_bytes,
                pir_bps,
                pbs_bytes,
            } => {
                rate(cir_bps, "cir")?;
                rate(pir_bps, "pir")?;
                burst(cbs_bytes, "cbs")?;
                burst(pbs_bytes, "pbs")?;
                if pir_bps < cir_bps {
                    return Err(MeterError::PeakBelowCommitted);
                }
                Ok(())
            }
            MeterSpec::TrTcm4115 {
                cir_bps,
                cbs_bytes,
                eir_bps,
                ebs_bytes,
            } => {
                rate(cir_bps, "cir")?;
                rate(eir_bps, "eir")?;
                burst(cbs_bytes, "cbs")?;
                burst(ebs_bytes, "ebs")
            }
        }
    }

    /// The long-term rate of packets the meter lets through as green or yellow.
    pub fn committed_bps(&self) -> u64 {
        match *self {
            MeterSpec::None => 0,
            MeterSpec::TokenBucket { rate_bps, .. } => rate_bps,
            MeterSpec::SrTcm { cir_bps, .. } | MeterSpec::TrTcm { cir_bps, .. } => cir_bps,
            MeterSpec::TrTcm4115 { cir_bps, .. } => cir_bps,
        }
    }

    /// This spec scaled to a share of `ppm` parts per million (one worker's part of the
    /// class). Rates scale exactly; bursts scale too but never below one jumbo frame (or
    /// the configured burst when that is smaller), so a small share can still pass a
    /// full-size packet.
    pub fn share(&self, ppm: u32) -> MeterSpec {
        let r = |x: u64| ((x as u128 * ppm as u128) / 1_000_000).max(8) as u64;
        let b = |x: u64| {
            let floor = x.min(9216);
            (((x as u128 * ppm as u128) / 1_000_000) as u64).max(floor)
        };
        match *self {
            MeterSpec::None => MeterSpec::None,
            MeterSpec::TokenBucket { rate_bps, burst_bytes } => MeterSpec::TokenBucket {
                rate_bps: r(rate_bps),
                burst_bytes: b(burst_bytes),
            },
            MeterSpec::SrTcm {
                cir_bps,
                cbs_bytes,
                ebs_bytes,
            } => MeterSpec::SrTcm {
                cir_bps: r(cir_bps),
                cbs_bytes: b(cbs_bytes),
                ebs_bytes: if ebs_bytes == 0 { 0 } else { b(ebs_bytes) },
            },
            MeterSpec::TrTcm {
                cir_bps,
                cbs_bytes,
                pir_bps,
                pbs_bytes,
            } => MeterSpec::TrTcm {
                cir_bps: r(cir_bps),
                cbs_bytes: b(cbs_bytes),
                pir_bps: r(pir_bps),
                pbs_bytes: b(pbs_bytes),
            },
            MeterSpec::TrTcm4115 {
                cir_bps,
                cbs_bytes,
                eir_bps,
                ebs_bytes,
            } => MeterSpec::TrTcm4115 {
                cir_bps: r(cir_bps),
                cbs_bytes: b(cbs_bytes),
                eir_bps: r(eir_bps),
                ebs_bytes: b(ebs_bytes),
            },
        }
    }
}

/// One bucket: tokens in byte-ticks, filled at `rate` bytes/s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    tokens: u64,
    cap: u64,
    /// Bytes per second, times 1 (ticks are counted in the caller's TSC).
    rate: u64,
    /// Ticks after which an empty bucket is full: elapsed time is clamped to this.
    fill_ticks: u64,
}

impl Bucket {
    /// A full bucket of `burst_bytes` filled at `rate_bps`.
    pub fn new(rate_bps: u64, burst_bytes: u64, tsc_hz: u64) -> Bucket {
        assert!(tsc_hz > 0 && tsc_hz <= MAX_TSC_HZ, "TSC frequency out of range");
        assert!(burst_bytes <= MAX_BURST_BYTES);
        // Rates below 8 bit/s round up to one byte per second.
        let rate = (rate_bps / 8).max(1);
        let cap = burst_bytes * tsc_hz;
        Bucket {
            tokens: cap,
            cap,
            rate,
            fill_ticks: cap / rate + 1,
        }
    }

    /// Adds the tokens for `elapsed` ticks; returns what did not fit (byte-ticks).
    #[inline(always)]
    pub(crate) fn fill(&mut self, elapsed: u64) -> u64 {
        let add = elapsed.min(self.fill_ticks) * self.rate;
        let t = self.tokens + add;
        if t > self.cap {
            self.tokens = self.cap;
            t - self.cap
        } else {
            self.tokens = t;
            0
        }
    }

    #[inline(always)]
    pub(crate) fn has(&self, cost: u64) -> bool {
        self.tokens >= cost
    }

    #[inline(always)]
    pub(crate) fn take(&mut self, cost: u64) {
        self.tokens -= cost;
    }

    /// Takes `cost`, or everything when there is less.
    #[inline(always)]
    pub(crate) fn take_up_to(&mut self, cost: u64) {
        self.tokens = self.tokens.saturating_sub(cost);
    }

    /// Whole bytes in the bucket.
    pub fn bytes(&self, tsc_hz: u64) -> u64 {
        self.tokens / tsc_hz
    }
}

/// A meter's running state. One per (class, worker); only its worker touches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meter {
    kind: Kind,
    tsc_hz: u64,
    last: u64,
    /// Colour-aware meters take the packet's incoming colour into account.
    pub colour_aware: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    None,
    Single(Bucket),
    SrTcm { c: Bucket, e: Bucket },
    TrTcm { c: Bucket, p: Bucket },
    TrTcm4115 { c: Bucket, e: Bucket },
}

impl Meter {
    /// A meter with full buckets at time `now`.
    pub fn new(spec: &MeterSpec, colour_aware: bool, tsc_hz: u64, now: u64) -> Meter {
        let b = |r, s| Bucket::new(r, s, tsc_hz);
        let kind = match *spec {
            MeterSpec::None => Kind::None,
            MeterSpec::TokenBucket { rate_bps, burst_bytes } => Kind::Single(b(rate_bps, burst_bytes)),
            MeterSpec::SrTcm {
                cir_bps,
                cbs_bytes,
                ebs_bytes,
            } => Kind::SrTcm {
                c: {
                    // C's overflow feeds E, so a pause may usefully fill both: clamp
                    // elapsed time to what fills the two together.
                    let mut c = b(cir_bps, cbs_bytes);
                    c.fill_ticks = (cbs_bytes + ebs_bytes) * tsc_hz / c.rate + 1;
                    c
                },
                // The excess bucket fills only from the committed bucket's overflow; its
                // own rate only bounds the clamp of elapsed time.
                e: b(cir_bps, ebs_bytes),
            },
            MeterSpec::TrTcm {
                cir_bps,
                cbs_bytes,
                pir_bps,
                pbs_bytes,
            } => Kind::TrTcm {
                c: b(cir_bps, cbs_bytes),
                p: b(pir_bps, pbs_bytes),
            },
            MeterSpec::TrTcm4115 {
                cir_bps,
                cbs_bytes,
                eir_bps,
                ebs_bytes,
            } => Kind::TrTcm4115 {
                c: b(cir_bps, cbs_bytes),
                e: b(eir_bps, ebs_bytes),
            },
        };
        Meter {
            kind,
            tsc_hz,
            last: now,
            colour_aware,
        }
    }

    /// Changes the rates (a new share) keeping as many tokens as still fit, so a
    /// rebalance neither grants a fresh burst nor takes away what was earned.
    pub fn reconfigure(&mut self, spec: &MeterSpec, now: u64) {
        let mut next = Meter::new(spec, self.colour_aware, self.tsc_hz, now);
        self.refill(now);
        let keep = |old: &Bucket, new: &mut Bucket| new.tokens = old.tokens.min(new.cap);
        match (&self.kind, &mut next.kind) {
            (Kind::Single(a), Kind::Single(b)) => keep(a, b),
            (Kind::SrTcm { c: a, e: x }, Kind::SrTcm { c: b, e: y })
            | (Kind::TrTcm4115 { c: a, e: x }, Kind::TrTcm4115 { c: b, e: y })
            | (Kind::TrTcm { c: a, p: x }, Kind::TrTcm { c: b, p: y }) => {
                keep(a, b);
                keep(x, y);
            }
            _ => {}
        }
        *self = next;
    }

    #[inline(always)]
    fn refill(&mut self, now: u64) {
        // A clock that went backwards (another core's TSC) adds nothing.
        let elapsed = now.saturating_sub(self.last);
        // The packets of a burst after the first arrive at the same time.
        if elapsed == 0 {
            return;
        }
        self.last = now;
        match &mut self.kind {
            Kind::None => {}
            Kind::Single(b) => {
                b.fill(elapsed);
            }
            Kind::SrTcm { c, e } => {
                // RFC 2697: tokens go to C until full, then to E.
                let over = c.fill(elapsed);
                e.tokens = (e.tokens + over).min(e.cap);
            }
            Kind::TrTcm { c, p } => {
                c.fill(elapsed);
                p.fill(elapsed);
            }
            Kind::TrTcm4115 { c, e } => {
                c.fill(elapsed);
                e.fill(elapsed);
            }
        }
    }

    /// Whether this meter has no rate: every packet is green.
    #[inline(always)]
    pub fn unmetered(&self) -> bool {
        matches!(self.kind, Kind::None)
    }

    /// Meters a packet of `bytes` arriving at `now` with incoming colour `pre` (ignored
    /// when colour-blind) and returns its colour.
    #[inline]
    pub fn colour(&mut self, now: u64, bytes: u32, pre: Colour) -> Colour {
        if let Kind::None = self.kind {
            return Colour::Green;
        }
        self.refill(now);
        let cost = bytes as u64 * self.tsc_hz;
        let pre = if self.colour_aware { pre } else { Colour::Green };
        match &mut self.kind {
            Kind::None => Colour::Green,
            Kind::Single(b) => {
                if pre == Colour::Green && b.has(cost) {
                    b.take(cost);
                    Colour::Green
                } else {
                    Colour::Yellow
                }
            }
            // RFC 2697 section 4 and RFC 4115 section 3: the same decision; they differ
            // only in how the buckets fill.
            Kind::SrTcm { c, e } | Kind::TrTcm4115 { c, e } => {
                if pre == Colour::Green && c.has(cost) {
                    c.take(cost);
                    Colour::Green
                } else if pre != Colour::Red && e.has(cost) {
                    e.take(cost);
                    Colour::Yellow
                } else {
                    Colour::Red
                }
            }
            // RFC 2698 section 4.
            Kind::TrTcm { c, p } => {
                if pre == Colour::Red || !p.has(cost) {
                    Colour::Red
                } else if pre == Colour::Yellow || !c.has(cost) {
                    p.take(cost);
                    Colour::Yellow
                } else {
                    p.take(cost);
                    c.take(cost);
                    Colour::Green
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HZ: u64 = 2_000_000_000;

    /// Offers `pkt`-byte packets at `offered_bps` for `secs` seconds of simulated TSC and
    /// returns the bytes per colour.
    fn offer(m: &mut Meter, pkt: u32, offered_bps: u64, secs: u64) -> [u64; 3] {
        let gap = HZ * pkt as u64 * 8 / offered_bps;
        let mut now = 0;
        let mut out = [0u64; 3];
        while now < secs * HZ {
            let c = m.colour(now, pkt, Colour::Green);
            out[c as usize] += pkt as u64;
            now += gap;
        }
        out
    }

    fn within(actual: u64, expected: u64, pct: f64) -> bool {
        let d = (actual as f64 - expected as f64).abs();
        d <= expected as f64 * pct / 100.0
    }

    #[test]
    fn token_bucket_rate_within_one_percent() {
        for &(rate, pkt, offered) in &[
            (10_000_000u64, 64u32, 100_000_000u64),
            (250_000_000, 1500, 1_000_000_000),
            (1_000_000, 1518, 3_000_000),
            (5_000_000_000, 570, 9_000_000_000),
        ] {
            let spec = MeterSpec::TokenBucket {
                rate_bps: rate,
                burst_bytes: 16_000,
            };
            let mut m = Meter::new(&spec, false, HZ, 0);
            let secs = 10;
            let out = offer(&mut m, pkt, offered, secs);
            // What conforms is the rate over the period plus the initial full bucket.
            let expected = rate / 8 * secs + 16_000;
            assert!(within(out[0], expected, 1.0), "rate {rate}: green {} bytes", out[0]);
            assert_eq!(out[2], 0);
        }
    }

    #[test]
    fn under_rate_everything_conforms() {
        let spec = MeterSpec::TokenBucket {
            rate_bps: 100_000_000,
            burst_bytes: 3000,
        };
        let mut m = Meter::new(&spec, false, HZ, 0);
        let out = offer(&mut m, 1500, 90_000_000, 5);
        assert_eq!(out[1], 0);
    }

    #[test]
    fn burst_is_the_bucket_size() {
        let spec = MeterSpec::TokenBucket {
            rate_bps: 8_000,
            burst_bytes: 10_000,
        };
        let mut m = Meter::new(&spec, false, HZ, 0);
        // At one instant, exactly 10 packets of 1000 bytes pass.
        let greens = (0..20)
            .filter(|_| m.colour(5, 1000, Colour::Green) == Colour::Green)
            .count();
        assert_eq!(greens, 10);
        // One second later, exactly one more kilobyte has arrived.
        assert_eq!(m.colour(5 + HZ, 1000, Colour::Green), Colour::Green);
        assert_eq!(m.colour(5 + HZ, 1, Colour::Green), Colour::Yellow);
        // A very long pause refills no more than the burst and does not overflow.
        let later = 5 + HZ + 1_000_000 * HZ;
        let greens = (0..20)
            .filter(|_| m.colour(later, 1000, Colour::Green) == Colour::Green)
            .count();
        assert_eq!(greens, 10);
    }

    #[test]
    fn clock_going_backwards_adds_nothing() {
        let spec = MeterSpec::TokenBucket {
            rate_bps: 8_000,
            burst_bytes: 1000,
        };
        let mut m = Meter::new(&spec, false, HZ, 1_000 * HZ);
        assert_eq!(m.colour(1_000 * HZ, 1000, Colour::Green), Colour::Green);
        assert_eq!(m.colour(0, 1000, Colour::Green), Colour::Yellow);
        assert_eq!(m.colour(1_000 * HZ, 1000, Colour::Green), Colour::Yellow);
    }

    /// RFC 2697 by hand: CIR 8000 bit/s (1000 B/s), CBS 2000, EBS 1000.
    #[test]
    fn srtcm_colour_blind_sequence() {
        let spec = MeterSpec::SrTcm {
            cir_bps: 8000,
            cbs_bytes: 2000,
            ebs_bytes: 1000,
        };
        let mut m = Meter::new(&spec, false, HZ, 0);
        let g = Colour::Green;
        // Tc=2000, Te=1000.
        assert_eq!(m.colour(0, 1500, g), Colour::Green); // Tc=500
        assert_eq!(m.colour(0, 600, g), Colour::Yellow); // Te=400
        assert_eq!(m.colour(0, 500, g), Colour::Green); // Tc=0
        assert_eq!(m.colour(0, 500, g), Colour::Red); // Te=400 < 500
        assert_eq!(m.colour(0, 400, g), Colour::Yellow); // Te=0
                                                         // 2.5 s later: 2500 bytes: Tc fills to 2000, the overflow 500 goes to Te.
        let t = HZ * 5 / 2;
        assert_eq!(m.colour(t, 2000, g), Colour::Green);
        assert_eq!(m.colour(t, 500, g), Colour::Yellow);
        assert_eq!(m.colour(t, 1, g), Colour::Red);
    }

    #[test]
    fn srtcm_colour_aware() {
        let spec = MeterSpec::SrTcm {
            cir_bps: 8000,
            cbs_bytes: 2000,
            ebs_bytes: 1000,
        };
        let mut m = Meter::new(&spec, true, HZ, 0);
        // Pre-coloured yellow never becomes green, even with Tc full.
        assert_eq!(m.colour(0, 100, Colour::Yellow), Colour::Yellow); // Te=900
                                                                      // Pre-coloured red stays red.
        assert_eq!(m.colour(0, 100, Colour::Red), Colour::Red);
        assert_eq!(m.colour(0, 2000, Colour::Green), Colour::Green); // Tc=0
        assert_eq!(m.colour(0, 900, Colour::Green), Colour::Yellow); // Te=0
        assert_eq!(m.colour(0, 1, Colour::Yellow), Colour::Red);
    }

    /// RFC 2698 by hand: CIR 1000 B/s, CBS 1000; PIR 2000 B/s, PBS 3000.
    #[test]
    fn trtcm_2698_sequence() {
        let spec = MeterSpec::TrTcm {
            cir_bps: 8000,
            cbs_bytes: 1000,
            pir_bps: 16000,
            pbs_bytes: 3000,
        };
        let mut m = Meter::new(&spec, false, HZ, 0);
        let g = Colour::Green;
        assert_eq!(m.colour(0, 800, g), Colour::Green); // Tp=2200 Tc=200
        assert_eq!(m.colour(0, 800, g), Colour::Yellow); // Tp=1400
        assert_eq!(m.colour(0, 1400, g), Colour::Yellow); // Tp=0
        assert_eq!(m.colour(0, 1, g), Colour::Red); // exceeds peak
                                                    // 1 s: Tp += 2000, Tc += 1000 (to 1000, the cap).
        assert_eq!(m.colour(HZ, 1000, g), Colour::Green); // Tp=1000 Tc=0
        assert_eq!(m.colour(HZ, 1000, g), Colour::Yellow); // Tp=0
                                                           // Colour-aware: yellow in stays yellow even with both buckets full.
        let mut a = Meter::new(&spec, true, HZ, 0);
        assert_eq!(a.colour(0, 10, Colour::Yellow), Colour::Yellow);
        assert_eq!(a.colour(0, 10, Colour::Red), Colour::Red);
        assert_eq!(a.colour(0, 10, Colour::Green), Colour::Green);
    }

    /// RFC 4115: green does not consume excess tokens; buckets fill independently.
    #[test]
    fn trtcm_4115_sequence() {
        let spec = MeterSpec::TrTcm4115 {
            cir_bps: 8000,
            cbs_bytes: 1000,
            eir_bps: 8000,
            ebs_bytes: 1000,
        };
        let mut m = Meter::new(&spec, false, HZ, 0);
        let g = Colour::Green;
        assert_eq!(m.colour(0, 1000, g), Colour::Green); // Tc=0, Te=1000 untouched
        assert_eq!(m.colour(0, 1000, g), Colour::Yellow); // Te=0
        assert_eq!(m.colour(0, 1, g), Colour::Red);
        // RFC 2698 with the same numbers would have made the second packet red
        // (its peak bucket pays for green too).
        assert_eq!(m.colour(HZ / 2, 500, g), Colour::Green);
        assert_eq!(m.colour(HZ / 2, 500, g), Colour::Yellow);
    }

    #[test]
    fn trtcm_long_term_rates() {
        // Offered 30 Mbit/s against CIR 10, PIR 20: 10 green, 10 yellow, 10 red.
        let spec = MeterSpec::TrTcm {
            cir_bps: 10_000_000,
            cbs_bytes: 15_000,
            pir_bps: 20_000_000,
            pbs_bytes: 15_000,
        };
        let mut m = Meter::new(&spec, false, HZ, 0);
        let out = offer(&mut m, 1000, 30_000_000, 10);
        let bps = |b: u64| b * 8 / 10;
        assert!(within(bps(out[0]), 10_000_000, 1.0), "{out:?}");
        assert!(within(bps(out[1]), 10_000_000, 1.0), "{out:?}");
        assert!(within(bps(out[2]), 10_000_000, 1.5), "{out:?}");
    }

    #[test]
    fn shares_sum_to_the_rate() {
        let spec = MeterSpec::TokenBucket {
            rate_bps: 1_000_000_000,
            burst_bytes: 100_000,
        };
        let parts = [250_000u32, 250_000, 500_000];
        let sum: u64 = parts.iter().map(|&p| spec.share(p).committed_bps()).sum();
        assert_eq!(sum, 1_000_000_000);
        // A tiny share still passes a full-size frame.
        match spec.share(1) {
            MeterSpec::TokenBucket { burst_bytes, .. } => assert_eq!(burst_bytes, 9216),
            _ => unreachable!(),
        }
    }

    #[test]
    fn reconfigure_keeps_earned_tokens() {
        let spec = MeterSpec::TokenBucket {
            rate_bps: 8000,
            burst_bytes: 1000,
        };
        let mut m = Meter::new(&spec, false, HZ, 0);
        assert_eq!(m.colour(0, 600, Colour::Green), Colour::Green); // 400 left
        m.reconfigure(&spec.share(500_000), 0);
        assert_eq!(m.colour(0, 400, Colour::Green), Colour::Green);
        assert_eq!(m.colour(0, 1, Colour::Green), Colour::Yellow);
    }

    #[test]
    fn validation() {
        assert!(MeterSpec::TokenBucket {
            rate_bps: 0,
            burst_bytes: 1000
        }
        .validate()
        .is_err());
        assert_eq!(
            MeterSpec::TrTcm {
                cir_bps: 10,
                cbs_bytes: 100,
                pir_bps: 9,
                pbs_bytes: 100
            }
            .validate(),
            Err(MeterError::PeakBelowCommitted)
        );
        assert!(MeterSpec::SrTcm {
            cir_bps: 8000,
            cbs_bytes: 100,
            ebs_bytes: 0
        }
        .validate()
        .is_ok());
    }
}
