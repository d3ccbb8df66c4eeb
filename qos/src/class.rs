//! Traffic classes: what the classifier's rules lead to. A class has an egress priority,
//! a meter, an optional guaranteed minimum, what to do with packets that exceed (yellow)
//! or violate (red) the meter, and the DSCP/ECN to leave with.

use crate::meter::{Colour, MeterSpec};

/// Index into the snapshot's class table. Class 0 is always the default class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ClassId(pub u16);

/// Most classes a configuration may define (labels stay bounded).
pub const MAX_CLASSES: usize = 64;

/// Egress priority: P0 is served first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(u8)]
pub enum Priority {
    P0 = 0,
    P1 = 1,
    P2 = 2,
    #[default]
    P3 = 3,
}

impl Priority {
    pub const COUNT: usize = 4;
    pub const ALL: [Priority; 4] = [Priority::P0, Priority::P1, Priority::P2, Priority::P3];

    pub fn from_index(i: u8) -> Option<Priority> {
        Priority::ALL.get(i as usize).copied()
    }

    pub fn name(self) -> &'static str {
        ["p0", "p1", "p2", "p3"][self as usize]
    }
}

impl std::str::FromStr for Priority {
    type Err = String;
    fn from_str(s: &str) -> Result<Priority, String> {
        match s.to_ascii_lowercase().as_str() {
            "p0" => Ok(Priority::P0),
            "p1" => Ok(Priority::P1),
            "p2" => Ok(Priority::P2),
            "p3" => Ok(Priority::P3),
            _ => Err(format!(
                "unknown priority \"{s}\" (accepted: p0, p1, p2, p3; p0 is served first)"
            )),
        }
    }
}

/// What happens to a packet the meter colours yellow or red.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Send it as a conforming packet would go.
    Transmit,
    Drop,
    /// Leave with this DSCP instead of the class's.
    Remark(u8),
    /// Queue at this (lower) priority instead of the class's.
    Demote(Priority),
}

/// A class, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Class {
    pub name: String,
    pub priority: Priority,
    pub meter: MeterSpec,
    /// Colour-aware meters take the incoming DSCP's drop precedence as the pre-colour.
    pub colour_aware: bool,
    /// Served before strict priority on a rate-limited egress port.
    pub min_bps: u64,
    pub exceed: Action,
    pub violate: Action,
    /// DSCP to leave with; `None` keeps the packet's own.
    pub dscp: Option<u8>,
}

impl Class {
    /// The class every packet gets when no rule matches: best effort, unmetered.
    pub fn default_class() -> Class {
        Class {
            name: "default".into(),
            priority: Priority::P3,
            meter: MeterSpec::None,
            colour_aware: false,
            min_bps: 0,
            exceed: Action::Drop,
            violate: Action::Drop,
            dscp: None,
        }
    }

    /// The action for a colour; green always transmits.
    #[inline(always)]
    pub fn action(&self, c: Colour) -> Action {
        match c {
            Colour::Green => Action::Transmit,
            Colour::Yellow => self.exceed,
            Colour::Red => self.violate,
        }
    }
}

/// The incoming colour of a packet for colour-aware meters, from its DSCP's drop
/// precedence (RFC 2597 assured forwarding: AFx1 green, AFx2 yellow, AFx3 red); other
/// code points are green.
#[inline(always)]
pub fn pre_colour(dscp: u8) -> Colour {
    let class = dscp >> 3;
    let drop = (dscp >> 1) & 3;
    if (1..=4).contains(&class) && dscp & 1 == 0 {
        match drop {
            2 => Colour::Yellow,
            3 => Colour::Red,
            _ => Colour::Green,
        }
    } else {
        Colour::Green
    }
}

/// DSCP names people write (`ef`, `af41`, `cs6`, `be`) or a number 0–63.
pub fn parse_dscp(s: &str) -> Result<u8, String> {
    let l = s.to_ascii_lowercase();
    let v = match l.as_str() {
        "be" | "default" | "cs0" => Some(0),
        "ef" => Some(46),
        "va" | "voice-admit" => Some(44),
        "le" => Some(1),
        _ => {
            if let Some(n) = l.strip_prefix("cs") {
                n.parse::<u8>().ok().filter(|&n| n <= 7).map(|n| n << 3)
            } else if let Some(n) = l.strip_prefix("af") {
                let b = n.as_bytes();
                if b.len() == 2 && (b'1'..=b'4').contains(&b[0]) && (b'1'..=b'3').contains(&b[1]) {
                    Some(((b[0] - b'0') << 3) | ((b[1] - b'0') << 1))
                } else {
                    None
                }
            } else {
                l.parse::<u8>().ok().filter(|&n| n <= 63)
            }
        }
    };
    v.ok_or_else(|| format!("unknown DSCP \"{s}\" (accepted: 0 to 63, be, ef, le, va, cs0 to cs7, af11 to af43)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dscp_names() {
        assert_eq!(parse_dscp("ef"), Ok(46));
        assert_eq!(parse_dscp("AF41"), Ok(34));
        assert_eq!(parse_dscp("af11"), Ok(10));
        assert_eq!(parse_dscp("af43"), Ok(38));
        assert_eq!(parse_dscp("cs6"), Ok(48));
        assert_eq!(parse_dscp("be"), Ok(0));
        assert_eq!(parse_dscp("63"), Ok(63));
        assert!(parse_dscp("64").is_err());
        assert!(parse_dscp("af51").is_err());
        assert!(parse_dscp("cs8").is_err());
    }

    #[test]
    fn assured_forwarding_pre_colour() {
        assert_eq!(pre_colour(10), Colour::Green); // af11
        assert_eq!(pre_colour(12), Colour::Yellow); // af12
        assert_eq!(pre_colour(14), Colour::Red); // af13
        assert_eq!(pre_colour(38), Colour::Red); // af43
        assert_eq!(pre_colour(46), Colour::Green); // ef
        assert_eq!(pre_colour(0), Colour::Green);
    }

    #[test]
    fn priorities() {
        assert_eq!("P1".parse::<Priority>(), Ok(Priority::P1));
        assert!("p4".parse::<Priority>().is_err());
        assert!(Priority::P0 < Priority::P3);
    }
}
