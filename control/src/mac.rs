//! Ethernet MAC addresses as users write them: `02:00:00:00:00:01` (or with dashes).

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a MAC address (expected six hex bytes, e.g. \"02:00:00:00:00:01\")")]
pub struct MacError(String);

impl MacAddr {
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 != 0
    }
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }
}

impl FromStr for MacAddr {
    type Err = MacError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || MacError(s.to_string());
        let parts: Vec<&str> = s.trim().split([':', '-']).collect();
        if parts.len() != 6 {
            return Err(bad());
        }
        let mut m = [0u8; 6];
        for (b, p) in m.iter_mut().zip(parts) {
            if p.len() != 2 {
                return Err(bad());
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        Ok(MacAddr(m))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn round_trip() {
        let m: MacAddr = "02:AA:bb:0c:0d:0e".parse().unwrap();
        assert_eq!(m.0, [2, 0xaa, 0xbb, 0x0c, 0x0d, 0x0e]);
        assert_eq!(m.to_string(), "02:aa:bb:0c:0d:0e");
        assert_eq!("02-aa-bb-0c-0d-0e".parse::<MacAddr>().unwrap(), m);
        for bad in [
            "",
            "02:aa:bb:0c:0d",
            "02:aa:bb:0c:0d:0e:0f",
            "2:aa:bb:0c:0d:0e",
            "zz:aa:bb:0c:0d:0e",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
        assert!("01:00:5e:00:00:01".parse::<MacAddr>().unwrap().is_multicast());
    }
}
