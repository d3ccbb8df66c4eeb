//! IPv4 and IPv6 prefixes as users write them (`198.18.0.0/15`, `2001:db8::/32`).
//!
//! A prefix keeps the address as written (an interface address such as `192.0.2.1/24`
//! is a prefix with host bits set); `network()` masks them off for routing.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("missing '/LEN' (expected e.g. {example})")]
    MissingLength { example: &'static str },
    #[error("'{0}' is not a valid address (expected e.g. {1})")]
    BadAddress(String, &'static str),
    #[error("prefix length '{got}' must be a number from 0 to {max}")]
    BadLength { got: String, max: u8 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Prefix {
    pub addr: Ipv4Addr,
    pub len: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv6Prefix {
    pub addr: Ipv6Addr,
    pub len: u8,
}

fn split<'a>(s: &'a str, example: &'static str) -> Result<(&'a str, &'a str), PrefixError> {
    s.trim().split_once('/').ok_or(PrefixError::MissingLength { example })
}

fn parse_len(s: &str, max: u8) -> Result<u8, PrefixError> {
    match s.parse::<u8>() {
        Ok(n) if n <= max => Ok(n),
        _ => Err(PrefixError::BadLength {
            got: s.to_string(),
            max,
        }),
    }
}

impl Ipv4Prefix {
    pub const EXAMPLE: &'static str = "\"198.18.0.0/24\"";

    pub fn new(addr: Ipv4Addr, len: u8) -> Self {
        assert!(len <= 32);
        Ipv4Prefix { addr, len }
    }
    pub fn mask(&self) -> u32 {
        if self.len == 0 {
            0
        } else {
            u32::MAX << (32 - self.len)
        }
    }
    /// The prefix with host bits cleared.
    pub fn network(&self) -> Ipv4Prefix {
        Ipv4Prefix {
            addr: Ipv4Addr::from(u32::from(self.addr) & self.mask()),
            len: self.len,
        }
    }
    pub fn contains(&self, a: Ipv4Addr) -> bool {
        (u32::from(a) ^ u32::from(self.addr)) & self.mask() == 0
    }
}

impl Ipv6Prefix {
    pub const EXAMPLE: &'static str = "\"2001:db8::/32\"";

    pub fn new(addr: Ipv6Addr, len: u8) -> Self {
        assert!(len <= 128);
        Ipv6Prefix { addr, len }
    }
    pub fn mask(&self) -> u128 {
        if self.len == 0 {
            0
        } else {
            u128::MAX << (128 - self.len)
        }
    }
    pub fn network(&self) -> Ipv6Prefix {
        Ipv6Prefix {
            addr: Ipv6Addr::from(u128::from(self.addr) & self.mask()),
            len: self.len,
        }
    }
    pub fn contains(&self, a: Ipv6Addr) -> bool {
        (u128::from(a) ^ u128::from(self.addr)) & self.mask() == 0
    }
}

impl FromStr for Ipv4Prefix {
    type Err = PrefixError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, l) = split(s, Self::EXAMPLE)?;
        let addr = a
            .parse()
            .map_err(|_| PrefixError::BadAddress(a.to_string(), Self::EXAMPLE))?;
        Ok(Ipv4Prefix {
            addr,
            len: parse_len(l, 32)?,
        })
    }
}

impl FromStr for Ipv6Prefix {
    type Err = PrefixError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, l) = split(s, Self::EXAMPLE)?;
        let addr = a
            .parse()
            .map_err(|_| PrefixError::BadAddress(a.to_string(), Self::EXAMPLE))?;
        Ok(Ipv6Prefix {
            addr,
            len: parse_len(l, 128)?,
        })
    }
}

impl fmt::Display for Ipv4Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl fmt::Display for Ipv6Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_masks() {
        let p: Ipv4Prefix = "192.0.2.77/24".parse().unwrap();
        assert_eq!(p.network().to_string(), "192.0.2.0/24");
        assert!(p.contains("192.0.2.200".parse().unwrap()));
        assert!(!p.contains("192.0.3.1".parse().unwrap()));
        let z: Ipv4Prefix = "0.0.0.0/0".parse().unwrap();
        assert!(z.contains("255.1.2.3".parse().unwrap()));
        let p6: Ipv6Prefix = "2001:db8:1::5/48".parse().unwrap();
        assert_eq!(p6.network().to_string(), "2001:db8:1::/48");
        assert!(p6.contains("2001:db8:1:ffff::1".parse().unwrap()));
        assert!(!p6.contains("2001:db8:2::1".parse().unwrap()));
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(
            "10.0.0.0".parse::<Ipv4Prefix>(),
            Err(PrefixError::MissingLength { .. })
        ));
        assert!(matches!(
            "10.0.0.0/33".parse::<Ipv4Prefix>(),
            Err(PrefixError::BadLength { .. })
        ));
        assert!(matches!(
            "10.0.0/8".parse::<Ipv4Prefix>(),
            Err(PrefixError::BadAddress(..))
        ));
        assert!(matches!(
            "::/129".parse::<Ipv6Prefix>(),
            Err(PrefixError::BadLength { .. })
        ));
        assert!(matches!(
            "2001:db8::g/32".parse::<Ipv6Prefix>(),
            Err(PrefixError::BadAddress(..))
        ));
        assert!(matches!(
            "10.0.0.0/-1".parse::<Ipv4Prefix>(),
            Err(PrefixError::BadLength { .. })
        ));
    }
}
