//! TSC pacing: how many packets are due by now at a rate, counted from a fixed start so
//! that rounding never accumulates into drift.

#[derive(Debug, Clone)]
pub struct Pacer {
    start: u64,
    /// Rate in packets per 1000 seconds (milli-pps), against `den` = TSC Hz x 1000.
    num: u128,
    den: u128,
    sent: u64,
}

impl Pacer {
    pub fn new(start_tsc: u64, pps: f64, tsc_hz: u64) -> Pacer {
        Pacer {
            start: start_tsc,
            num: (pps * 1000.0).round().max(1.0) as u128,
            den: tsc_hz as u128 * 1000,
            sent: 0,
        }
    }

    /// Packets due and not yet sent at `now`, at most `max`.
    #[inline(always)]
    pub fn due(&self, now: u64, max: usize) -> usize {
        if now <= self.start {
            return 0;
        }
        let due = ((now - self.start) as u128 * self.num / self.den) as u64;
        (due.saturating_sub(self.sent)).min(max as u64) as usize
    }

    #[inline(always)]
    pub fn sent(&mut self, n: usize) {
        self.sent += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_follows_the_rate_without_drift() {
        let hz = 2_000_000_000;
        let mut p = Pacer::new(1000, 10_000.0, hz);
        assert_eq!(p.due(500, 32), 0);
        assert_eq!(p.due(1000, 32), 0);
        // 10 kpps: one packet per 200 000 ticks.
        assert_eq!(p.due(1000 + 199_999, 32), 0);
        assert_eq!(p.due(1000 + 200_000, 32), 1);
        // Polling every 1234 ticks for one second sends exactly 10 000.
        let mut t = 1000;
        while t <= 1000 + hz {
            let n = p.due(t, 32);
            p.sent(n);
            t += 1234;
        }
        let n = p.due(1000 + hz, 32);
        p.sent(n);
        assert_eq!(p.sent, 10_000);
        // A late poll is capped at a burst, and the rest stays due.
        let mut p = Pacer::new(0, 1e6, hz);
        assert_eq!(p.due(hz, 32), 32);
        p.sent(32);
        assert_eq!(p.due(hz, usize::MAX), 1_000_000 - 32);
    }
}
