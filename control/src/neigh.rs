//! The neighbour cache: next-hop MAC addresses learned by ARP (IPv4) and neighbour
//! discovery (IPv6), for the next hops the configuration names — and only those, so
//! nothing a host sends can grow it.
//!
//! An entry is `Incomplete` (asking: broadcast / multicast requests every `retry`, up to
//! `tries`), `Reachable` (answered; from `refresh` of its lifetime on, unicast requests
//! ask again so a live neighbour never lapses), or `Failed` (no answer; counted, shown,
//! and asked again after `failed_retry`). A reachable entry not confirmed within
//! `reachable` becomes `Incomplete`. Static entries come from the configuration and never
//! change.
//!
//! An entry is *resolving* while it is `Incomplete` for the first time since it was
//! tracked, last answered, or its port's link came up — not when a failed entry asks
//! again. Packets for a resolving next hop are held (`crate::hold`); those for a failed one
//! are not.

use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NeighSettings {
    pub reachable_ns: u64,
    /// Refresh from this share of `reachable` on.
    pub refresh_pct: u32,
    pub retry_ns: u64,
    pub tries: u32,
    pub failed_retry_ns: u64,
    /// Packets held per next hop while it is resolved (`crate::hold`); 0 holds none.
    pub queue: u32,
}

impl Default for NeighSettings {
    fn default() -> NeighSettings {
        NeighSettings {
            reachable_ns: 60_000_000_000,
            refresh_pct: 80,
            retry_ns: 200_000_000,
            tries: 5,
            failed_retry_ns: 2_000_000_000,
            queue: 64,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeighState {
    Static,
    Incomplete,
    Reachable,
    Failed,
}

impl NeighState {
    pub fn name(self) -> &'static str {
        match self {
            NeighState::Static => "static",
            NeighState::Incomplete => "incomplete",
            NeighState::Reachable => "reachable",
            NeighState::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Neighbor {
    pub port: usize,
    pub ip: IpAddr,
    pub state: NeighState,
    pub mac: Option<[u8; 6]>,
    /// When the state last changed or the entry was last confirmed.
    pub confirmed_ns: u64,
    /// Requests sent since the last answer.
    pub tries: u32,
    /// Asking again after failing: no longer resolving.
    retrying: bool,
    next_request_ns: u64,
    pub requests: u64,
    pub answers: u64,
    pub failures: u64,
}

/// A request the cache wants sent: for `ip` on `port`, to `unicast` when refreshing an
/// entry whose MAC is known, else broadcast (ARP) or to the solicited-node group (ND).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Request {
    pub port: usize,
    pub ip: IpAddr,
    pub unicast: Option<[u8; 6]>,
}

#[derive(Debug, Clone, Default)]
pub struct NeighborCache {
    pub settings: NeighSettings,
    entries: Vec<Neighbor>,
}

impl NeighborCache {
    pub fn new(settings: NeighSettings) -> NeighborCache {
        NeighborCache {
            settings,
            entries: Vec::new(),
        }
    }

    pub fn entries(&self) -> &[Neighbor] {
        &self.entries
    }

    fn find(&self, port: usize, ip: IpAddr) -> Option<usize> {
        self.entries.iter().position(|e| e.port == port && e.ip == ip)
    }

    /// Tracks `ip` on `port` (idempotent): static with `mac`, else to be resolved now.
    pub fn track(&mut self, port: usize, ip: IpAddr, mac: Option<[u8; 6]>, now_ns: u64) {
        if let Some(i) = self.find(port, ip) {
            if let Some(m) = mac {
                self.entries[i].state = NeighState::Static;
                self.entries[i].mac = Some(m);
            }
            return;
        }
        self.entries.push(Neighbor {
            port,
            ip,
            state: if mac.is_some() {
                NeighState::Static
            } else {
                NeighState::Incomplete
            },
            mac,
            confirmed_ns: now_ns,
            tries: 0,
            retrying: false,
            next_request_ns: now_ns,
            requests: 0,
            answers: 0,
            failures: 0,
        });
    }

    /// Keeps only the entries `keep` says yes to (after a reload).
    pub fn retain(&mut self, keep: impl Fn(usize, IpAddr) -> bool) {
        self.entries.retain(|e| keep(e.port, e.ip));
    }

    /// The MAC for `ip` on `port` while it is usable.
    pub fn mac(&self, port: usize, ip: IpAddr) -> Option<[u8; 6]> {
        let e = &self.entries[self.find(port, ip)?];
        match e.state {
            NeighState::Static | NeighState::Reachable => e.mac,
            _ => None,
        }
    }

    /// Whether `ip` on `port` is being resolved and has not failed yet: its packets may
    /// wait for it.
    pub fn resolving(&self, port: usize, ip: IpAddr) -> bool {
        self.find(port, ip)
            .is_some_and(|i| self.entries[i].state == NeighState::Incomplete && !self.entries[i].retrying)
    }

    /// `ip` on `port` says it is at `mac` (an ARP request or reply from it, a neighbour
    /// advertisement, a solicitation with its address). Returns whether a tracked entry's
    /// usable MAC changed (appeared, moved or came back).
    pub fn learn(&mut self, port: usize, ip: IpAddr, mac: [u8; 6], now_ns: u64) -> bool {
        let Some(i) = self.find(port, ip) else {
            return false;
        };
        let e = &mut self.entries[i];
        if e.state == NeighState::Static {
            return false;
        }
        let changed = e.state != NeighState::Reachable || e.mac != Some(mac);
        e.state = NeighState::Reachable;
        e.mac = Some(mac);
        e.confirmed_ns = now_ns;
        e.tries = 0;
        e.retrying = false;
        e.answers += 1;
        let refresh = self.settings.reachable_ns / 100 * self.settings.refresh_pct as u64;
        e.next_request_ns = now_ns + refresh;
        changed
    }

    /// A port's link came up: entries on it that are not reachable ask again now, with
    /// all their tries.
    pub fn kick(&mut self, port: usize, now_ns: u64) {
        for e in self.entries.iter_mut().filter(|e| e.port == port) {
            if matches!(e.state, NeighState::Incomplete | NeighState::Failed) {
                e.state = NeighState::Incomplete;
                e.tries = 0;
                e.retrying = false;
                e.next_request_ns = now_ns;
            }
        }
    }

    /// Moves entries along in time. Returns the requests to send now, and whether any
    /// entry's usable MAC went away (lapsed or failed).
    pub fn tick(&mut self, now_ns: u64) -> (Vec<Request>, bool) {
        let s = self.settings;
        let mut out = Vec::new();
        let mut lost = false;
        for e in self.entries.iter_mut() {
            if e.state == NeighState::Reachable && now_ns >= e.confirmed_ns + s.reachable_ns {
                // Refreshes went unanswered for the rest of its lifetime.
                e.state = NeighState::Incomplete;
                e.tries = 0;
                e.next_request_ns = now_ns;
                lost = true;
            }
            if now_ns < e.next_request_ns {
                continue;
            }
            match e.state {
                NeighState::Static => continue,
                NeighState::Reachable => {
                    out.push(Request {
                        port: e.port,
                        ip: e.ip,
                        unicast: e.mac,
                    });
                    e.next_request_ns = now_ns + s.retry_ns.max(1);
                }
                NeighState::Incomplete => {
                    if e.tries >= s.tries {
                        e.state = NeighState::Failed;
                        e.failures += 1;
                        e.mac = None;
                        e.next_request_ns = now_ns + s.failed_retry_ns;
                        lost = true;
                        continue;
                    }
                    out.push(Request {
                        port: e.port,
                        ip: e.ip,
                        unicast: None,
                    });
                    e.tries += 1;
                    e.next_request_ns = now_ns + s.retry_ns.max(1);
                }
                NeighState::Failed => {
                    e.state = NeighState::Incomplete;
                    e.retrying = true;
                    e.tries = 1;
                    out.push(Request {
                        port: e.port,
                        ip: e.ip,
                        unicast: None,
                    });
                    e.next_request_ns = now_ns + s.retry_ns.max(1);
                }
            }
            e.requests += 1;
        }
        (out, lost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const M: [u8; 6] = [2, 0, 0, 0, 0, 9];

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn settings() -> NeighSettings {
        NeighSettings {
            reachable_ns: 10_000 * MS,
            refresh_pct: 80,
            retry_ns: 200 * MS,
            tries: 3,
            failed_retry_ns: 2000 * MS,
            queue: 8,
        }
    }

    #[test]
    fn resolves_refreshes_and_lapses() {
        let mut c = NeighborCache::new(settings());
        c.track(0, ip("10.0.0.1"), None, 0);
        assert_eq!(c.mac(0, ip("10.0.0.1")), None);
        assert!(c.resolving(0, ip("10.0.0.1")));
        assert!(!c.resolving(1, ip("10.0.0.1")), "not tracked on that port");
        let (req, _) = c.tick(0);
        assert_eq!(
            req,
            vec![Request {
                port: 0,
                ip: ip("10.0.0.1"),
                unicast: None
            }]
        );
        // Nothing more until the retry interval.
        assert!(c.tick(100 * MS).0.is_empty());
        assert!(c.learn(0, ip("10.0.0.1"), M, 150 * MS));
        assert_eq!(c.mac(0, ip("10.0.0.1")), Some(M));
        assert!(!c.resolving(0, ip("10.0.0.1")));
        assert!(!c.learn(0, ip("10.0.0.1"), M, 160 * MS), "same MAC: no change");
        // Unknown addresses are not learned.
        assert!(!c.learn(0, ip("10.0.0.99"), M, 160 * MS));
        assert_eq!(c.entries().len(), 1);
        // At 80 % of its lifetime a unicast refresh goes out.
        assert!(c.tick(8000 * MS).0.is_empty());
        let (req, lost) = c.tick(8160 * MS);
        assert_eq!(req[0].unicast, Some(M));
        assert!(!lost);
        // Unanswered refreshes: the entry lapses at its lifetime and asks by broadcast.
        let (req, lost) = c.tick(10_160 * MS);
        assert!(lost);
        assert_eq!(req[0].unicast, None);
        assert_eq!(c.mac(0, ip("10.0.0.1")), None);
        assert!(c.resolving(0, ip("10.0.0.1")), "a lapsed entry is resolved afresh");
    }

    #[test]
    fn fails_after_tries_and_asks_again_later() {
        let mut c = NeighborCache::new(settings());
        c.track(1, ip("2001:db8::1"), None, 0);
        let mut sent = 0;
        let mut t = 0;
        let mut lost = false;
        let a = ip("2001:db8::1");
        while c.entries()[0].state != NeighState::Failed {
            assert!(c.resolving(1, a));
            let (r, l) = c.tick(t);
            sent += r.len();
            lost |= l;
            t += 200 * MS;
        }
        assert_eq!(sent, 3);
        assert!(lost);
        assert_eq!(c.entries()[0].failures, 1);
        assert!(!c.resolving(1, a));
        // Asked again after the failed-retry time.
        let failed_at = t - 200 * MS;
        assert!(c.tick(failed_at + 1999 * MS).0.is_empty());
        assert_eq!(c.tick(failed_at + 2000 * MS).0.len(), 1);
        assert_eq!(c.entries()[0].state, NeighState::Incomplete);
        // Asking again after a failure is not resolving: nothing waits for it ...
        assert!(!c.resolving(1, a));
        // ... until the port's link comes back, which starts afresh.
        c.kick(1, failed_at + 2100 * MS);
        assert!(c.resolving(1, a));
    }

    #[test]
    fn static_entries_never_change() {
        let mut c = NeighborCache::new(settings());
        c.track(0, ip("10.0.0.1"), Some(M), 0);
        assert_eq!(c.mac(0, ip("10.0.0.1")), Some(M));
        assert!(!c.learn(0, ip("10.0.0.1"), [2, 0, 0, 0, 0, 1], 5));
        assert!(c.tick(1_000_000 * MS).0.is_empty());
        assert_eq!(c.mac(0, ip("10.0.0.1")), Some(M));
    }
}
