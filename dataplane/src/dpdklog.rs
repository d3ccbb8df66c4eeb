//! DPDK's own log messages, taken into the process logger (`dpdk::log_to_logger` hands
//! DPDK a stream whose writes come here). Without it DPDK 22.11 writes its messages after
//! start-up to standard output, where they mix with the report, and to syslog, in a
//! format of its own. Here each line becomes one record of the logger (time, level,
//! component `dpdk`), at the level DPDK gave it.
//!
//! A message that keeps coming back (a memif client's driver fails to connect on every
//! try, once a second, for as long as its server is away) is logged the 1st, 2nd, 4th,
//! 8th, ... time it is seen, with how many times so far, and not in between.

use log::Level;
use std::collections::HashMap;

/// Distinct messages whose counts are kept; when more come, the counts start again.
const REMEMBERED: usize = 256;
/// Longest line kept whole (a longer one is cut, and marked so).
const LONGEST: usize = 4096;

/// The logger's level for a DPDK level (`RTE_LOG_EMERG` = 1 ... `RTE_LOG_DEBUG` = 8).
pub fn level_of(rte_level: u32) -> Level {
    match rte_level {
        0..=4 => Level::Error,
        5 => Level::Warn,
        6 | 7 => Level::Info,
        _ => Level::Debug,
    }
}

/// What DPDK has written and not yet logged, and how often each message came.
#[derive(Default)]
pub struct DpdkLog {
    pending: Vec<u8>,
    seen: HashMap<String, u64>,
}

impl DpdkLog {
    /// Takes bytes DPDK wrote for a message at `rte_level`, and returns the records to
    /// log: one for each line they complete that is not a repeat to leave out.
    pub fn take(&mut self, bytes: &[u8], rte_level: u32) -> Vec<(Level, String)> {
        let level = level_of(rte_level);
        let mut out = Vec::new();
        for &b in bytes {
            if b == b'\n' {
                let line = std::mem::take(&mut self.pending);
                if let Some(r) = self.record(&line, level) {
                    out.push(r);
                }
            } else if self.pending.len() < LONGEST {
                self.pending.push(b);
            }
        }
        out
    }

    /// One whole line: the record to log, if any.
    fn record(&mut self, line: &[u8], level: Level) -> Option<(Level, String)> {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end();
        if text.is_empty() {
            return None;
        }
        let cut = if line.len() >= LONGEST { " [cut]" } else { "" };
        if self.seen.len() >= REMEMBERED && !self.seen.contains_key(text) {
            self.seen.clear();
        }
        let n = self.seen.entry(text.to_string()).or_insert(0);
        *n += 1;
        match *n {
            1 => Some((level, format!("{text}{cut}"))),
            n if n.is_power_of_two() => Some((level, format!("{text}{cut} ({n} times so far)"))),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_at_dpdks_levels() {
        let mut l = DpdkLog::default();
        assert_eq!(
            l.take(b"EAL: Detected CPU lcores: 2\nEAL: Detected NUMA", 7),
            vec![(Level::Info, "EAL: Detected CPU lcores: 2".to_string())]
        );
        // The rest of a line comes with a later write.
        assert_eq!(
            l.take(b" nodes: 1\n", 7),
            vec![(Level::Info, "EAL: Detected NUMA nodes: 1".to_string())]
        );
        assert_eq!(l.take(b"\n\n", 7), vec![]);
        assert_eq!(level_of(1), Level::Error);
        assert_eq!(level_of(4), Level::Error);
        assert_eq!(level_of(5), Level::Warn);
        assert_eq!(level_of(6), Level::Info);
        assert_eq!(level_of(8), Level::Debug);
    }

    #[test]
    fn a_message_that_keeps_coming_is_logged_at_powers_of_two() {
        let mut l = DpdkLog::default();
        let mut logged = Vec::new();
        for i in 1..=20u64 {
            for (lv, m) in l.take(b"MEMIF: Failed to connect socket\n", 4) {
                assert_eq!(lv, Level::Error);
                logged.push((i, m));
            }
            // Other messages in between do not reset the count.
            l.take(format!("port {i} started\n").as_bytes(), 7);
        }
        let at: Vec<u64> = logged.iter().map(|(i, _)| *i).collect();
        assert_eq!(at, vec![1, 2, 4, 8, 16]);
        assert_eq!(logged[0].1, "MEMIF: Failed to connect socket");
        assert_eq!(logged[4].1, "MEMIF: Failed to connect socket (16 times so far)");
    }

    #[test]
    fn memory_stays_bounded() {
        let mut l = DpdkLog::default();
        for i in 0..10 * REMEMBERED {
            assert_eq!(l.take(format!("message {i}\n").as_bytes(), 7).len(), 1);
        }
        assert!(l.seen.len() <= REMEMBERED);
        let long = vec![b'x'; 3 * LONGEST];
        let out = l.take(&[&long[..], b"\n"].concat(), 7);
        assert_eq!(out.len(), 1);
        assert!(
            out[0].1.len() < LONGEST + 10 && out[0].1.ends_with("[cut]"),
            "{}",
            out[0].1.len()
        );
        assert!(l.pending.is_empty());
    }
}
