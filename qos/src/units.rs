//! Rates and sizes as operators write them: `250Mbit`, `1.5Gbit`, `10Gbps`, `100kbps`,
//! `12.5MBps` (bytes), `64KiB`, `1500B`, `9k`. Decimal prefixes (k, M, G, T = 10^3n) for
//! both; binary prefixes (Ki, Mi, Gi) for both too. A lowercase `b` or `bit` is bits, an
//! uppercase `B` or `byte` is bytes. A bare number is bits/s for a rate, bytes for a size.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UnitError {
    #[error("\"{0}\" is not a number with an optional unit")]
    NotANumber(String),
    #[error("unknown unit \"{unit}\" in \"{text}\"; {accepted}")]
    UnknownUnit {
        text: String,
        unit: String,
        accepted: &'static str,
    },
    #[error("\"{0}\" is too large")]
    TooLarge(String),
    #[error("\"{0}\" must be a whole number of {1}")]
    Fraction(String, &'static str),
}

const RATE_UNITS: &str =
    "accepted: a number with bit/s units (bps, kbit, Mbit, Gbps, Tbit, ...) or byte/s units (Bps, kBps, MBps, ...)";
const SIZE_UNITS: &str = "accepted: a number with B, kB, KiB, MB, MiB, GB or GiB (k alone means kB)";

/// Splits "1.5Gbit" into (1.5 as a fraction, "Gbit").
fn split(text: &str) -> Result<(u128, u128, &str), UnitError> {
    let t = text.trim();
    let end = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(end);
    let unit = unit.trim();
    let (whole, frac) = match num.split_once('.') {
        Some((w, f)) => (w, f),
        None => (num, ""),
    };
    if whole.is_empty() && frac.is_empty() || frac.contains('.') || frac.len() > 9 {
        return Err(UnitError::NotANumber(text.to_string()));
    }
    let parse = |s: &str| -> Result<u128, UnitError> {
        if s.is_empty() {
            Ok(0)
        } else {
            s.parse::<u128>().map_err(|_| UnitError::TooLarge(text.to_string()))
        }
    };
    // value = mantissa / denominator, exactly.
    let denom = 10u128.pow(frac.len() as u32);
    let mantissa = parse(whole)?
        .checked_mul(denom)
        .and_then(|w| w.checked_add(parse(frac).ok()?))
        .ok_or_else(|| UnitError::TooLarge(text.to_string()))?;
    Ok((mantissa, denom, unit))
}

/// The multiplier of a prefix letter at the start of `u`, and the rest.
fn prefix(u: &str) -> (u128, &str) {
    let bin = |n: u32| 1u128 << (10 * n);
    let dec = |n: u32| 1000u128.pow(n);
    for (p, m) in [
        ("Ki", bin(1)),
        ("Mi", bin(2)),
        ("Gi", bin(3)),
        ("Ti", bin(4)),
        ("k", dec(1)),
        ("K", dec(1)),
        ("M", dec(2)),
        ("m", dec(2)),
        ("G", dec(3)),
        ("g", dec(3)),
        ("T", dec(4)),
        ("t", dec(4)),
    ] {
        if let Some(rest) = u.strip_prefix(p) {
            return (m, rest);
        }
    }
    (1, u)
}

fn finish(text: &str, mantissa: u128, denom: u128, mult: u128, what: &'static str) -> Result<u64, UnitError> {
    let v = mantissa
        .checked_mul(mult)
        .ok_or_else(|| UnitError::TooLarge(text.to_string()))?;
    if v % denom != 0 {
        return Err(UnitError::Fraction(text.to_string(), what));
    }
    u64::try_from(v / denom).map_err(|_| UnitError::TooLarge(text.to_string()))
}

/// Parses a rate into bits per second.
pub fn parse_rate_bps(text: &str) -> Result<u64, UnitError> {
    let (mantissa, denom, unit) = split(text)?;
    let (mult, rest) = prefix(unit);
    let per_unit: u128 = match rest {
        "bit" | "bits" | "bps" | "b/s" | "bit/s" | "" => 1,
        "B" | "Bps" | "B/s" | "byte/s" | "bytes/s" => 8,
        _ => {
            return Err(UnitError::UnknownUnit {
                text: text.to_string(),
                unit: unit.to_string(),
                accepted: RATE_UNITS,
            })
        }
    };
    finish(text, mantissa, denom, mult * per_unit, "bits/s")
}

/// Parses a size into bytes.
pub fn parse_size_bytes(text: &str) -> Result<u64, UnitError> {
    let (mantissa, denom, unit) = split(text)?;
    let (mult, rest) = prefix(unit);
    match rest {
        "" | "B" | "byte" | "bytes" => {}
        _ => {
            return Err(UnitError::UnknownUnit {
                text: text.to_string(),
                unit: unit.to_string(),
                accepted: SIZE_UNITS,
            })
        }
    }
    finish(text, mantissa, denom, mult, "bytes")
}

/// Formats bits per second the way people read them (`1.5Gbit/s`).
pub fn format_rate_bps(bps: u64) -> String {
    let (v, u) = match bps {
        b if b >= 1_000_000_000_000 => (b as f64 / 1e12, "Tbit/s"),
        b if b >= 1_000_000_000 => (b as f64 / 1e9, "Gbit/s"),
        b if b >= 1_000_000 => (b as f64 / 1e6, "Mbit/s"),
        b if b >= 1_000 => (b as f64 / 1e3, "kbit/s"),
        b => (b as f64, "bit/s"),
    };
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}{u}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate_bps("250Mbit"), Ok(250_000_000));
        assert_eq!(parse_rate_bps("1.5Gbit"), Ok(1_500_000_000));
        assert_eq!(parse_rate_bps("10Gbps"), Ok(10_000_000_000));
        assert_eq!(parse_rate_bps("100kbps"), Ok(100_000));
        assert_eq!(parse_rate_bps("100 kbit"), Ok(100_000));
        assert_eq!(parse_rate_bps("12.5MBps"), Ok(100_000_000));
        assert_eq!(parse_rate_bps("1Mibit"), Ok(1 << 20));
        assert_eq!(parse_rate_bps("64000"), Ok(64_000));
        assert_eq!(parse_rate_bps("1G"), Ok(1_000_000_000));
        assert_eq!(parse_rate_bps(".5Mbit"), Ok(500_000));
        assert!(matches!(parse_rate_bps("10Gb/x"), Err(UnitError::UnknownUnit { .. })));
        assert!(matches!(parse_rate_bps("fast"), Err(UnitError::NotANumber(_))));
        assert!(matches!(parse_rate_bps("1.2.3M"), Err(UnitError::NotANumber(_))));
        assert!(matches!(parse_rate_bps("0.5bit"), Err(UnitError::Fraction(..))));
        assert!(matches!(parse_rate_bps("99999999999Tbit"), Err(UnitError::TooLarge(_))));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size_bytes("64KiB"), Ok(65536));
        assert_eq!(parse_size_bytes("64kB"), Ok(64000));
        assert_eq!(parse_size_bytes("1500B"), Ok(1500));
        assert_eq!(parse_size_bytes("1500"), Ok(1500));
        assert_eq!(parse_size_bytes("9k"), Ok(9000));
        assert_eq!(parse_size_bytes("1.5MiB"), Ok(1_572_864));
        assert!(matches!(parse_size_bytes("64Kbit"), Err(UnitError::UnknownUnit { .. })));
    }

    #[test]
    fn formatting() {
        assert_eq!(format_rate_bps(1_500_000_000), "1.5Gbit/s");
        assert_eq!(format_rate_bps(250_000_000), "250Mbit/s");
        assert_eq!(format_rate_bps(999), "999bit/s");
    }
}
