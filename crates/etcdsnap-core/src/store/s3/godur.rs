//! Go's `time.Duration` text form, as K3s writes `--etcd-s3-timeout` into JSON (`"5m0s"`) and
//! accepts it on the command line (`5m`, `1h30m`, `300s`, `1m30.5s`).

use std::time::Duration;

const NANOS_PER: [(&str, u128); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("\u{b5}s", 1_000),
    ("\u{3bc}s", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60 * 1_000_000_000),
    ("h", 3_600 * 1_000_000_000),
];

/// The largest value a Go duration can hold (int64 nanoseconds).
const GO_MAX_NANOS: u128 = i64::MAX as u128;

/// A Go duration, with its sign kept apart because [`Duration`] cannot be negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedDuration {
    pub negative: bool,
    pub magnitude: Duration,
}

/// Parses Go duration syntax, negative values included (`-1m` → negative 60 s).
pub fn parse_go_duration_signed(text: &str) -> Result<SignedDuration, String> {
    let invalid = || format!("time: invalid duration \"{text}\"");
    let mut rest = text;
    let mut negative = false;
    if let Some(r) = rest.strip_prefix('-') {
        negative = true;
        rest = r;
    } else if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    }
    if rest == "0" {
        return Ok(SignedDuration {
            negative: false,
            magnitude: Duration::ZERO,
        });
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, after_int) = rest.split_at(int_len);
        let (frac_part, after_num) = match after_int.strip_prefix('.') {
            Some(f) => {
                let n = f.bytes().take_while(u8::is_ascii_digit).count();
                f.split_at(n)
            }
            None => ("", after_int),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid());
        }
        let unit_len = after_num
            .char_indices()
            .find(|(_, c)| *c == '.' || c.is_ascii_digit())
            .map_or(after_num.len(), |(i, _)| i);
        let (unit, after_unit) = after_num.split_at(unit_len);
        if unit.is_empty() {
            return Err(format!("time: missing unit in duration \"{text}\""));
        }
        let scale = NANOS_PER
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, n)| *n)
            .ok_or_else(|| format!("time: unknown unit \"{unit}\" in duration \"{text}\""))?;
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| invalid())?
        };
        let mut value = whole.checked_mul(scale).ok_or_else(invalid)?;
        // Digits beyond nanosecond precision cannot change the result; ignore them.
        let frac_digits = &frac_part[..frac_part.len().min(18)];
        if !frac_digits.is_empty() {
            let frac: u128 = frac_digits.parse().map_err(|_| invalid())?;
            value += frac * scale / 10u128.pow(frac_digits.len() as u32);
        }
        total = total.checked_add(value).ok_or_else(invalid)?;
        if total > GO_MAX_NANOS {
            return Err(invalid());
        }
        rest = after_unit;
    }
    let magnitude = Duration::new(
        (total / 1_000_000_000) as u64,
        (total % 1_000_000_000) as u32,
    );
    Ok(SignedDuration {
        negative: negative && total > 0,
        magnitude,
    })
}

/// Parses a non-negative Go duration (`5m`, `1h30m`, `1m30.5s`, `0`).
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let d = parse_go_duration_signed(text)?;
    if d.negative {
        return Err(format!("negative duration \"{text}\" is not allowed"));
    }
    Ok(d.magnitude)
}

/// Formats like Go's `Duration.String()`: `5m0s`, `1h30m0s`, `1.5s`, `300ms`, `0s`.
pub fn format_go_duration(d: Duration) -> String {
    let nanos = d.as_nanos().min(GO_MAX_NANOS);
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000_000_000 {
        let (unit, scale) = if nanos < 1_000 {
            ("ns", 1)
        } else if nanos < 1_000_000 {
            ("\u{b5}s", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{unit}", decimal(nanos, scale));
    }
    let hours = nanos / 3_600_000_000_000;
    let minutes = (nanos / 60_000_000_000) % 60;
    let sec_nanos = nanos % 60_000_000_000;
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    out.push_str(&decimal(sec_nanos, 1_000_000_000));
    out.push('s');
    out
}

/// `value / scale` with the fraction's trailing zeros trimmed.
fn decimal(value: u128, scale: u128) -> String {
    let whole = value / scale;
    let frac = value % scale;
    if frac == 0 {
        return whole.to_string();
    }
    let width = scale.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Serde adapter for a [`Duration`] held as Go duration text. Negative values read as zero so
/// that validation reports K3s's "must be greater than 0s"; a bare number is nanoseconds.
pub(crate) mod serde_go {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_go_duration(*d))
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Nanos(i64),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Text(t) => {
                let parsed = super::parse_go_duration_signed(&t).map_err(D::Error::custom)?;
                Ok(if parsed.negative {
                    Duration::ZERO
                } else {
                    parsed.magnitude
                })
            }
            Raw::Nanos(n) => Ok(Duration::from_nanos(n.max(0) as u64)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_forms() {
        let cases: &[(&str, Duration)] = &[
            ("5m", Duration::from_secs(300)),
            ("5m0s", Duration::from_secs(300)),
            ("1h30m", Duration::from_secs(5400)),
            ("300s", Duration::from_secs(300)),
            ("1m30.5s", Duration::from_millis(90_500)),
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("+2s", Duration::from_secs(2)),
            ("1.5h", Duration::from_secs(5400)),
            (".5s", Duration::from_millis(500)),
            ("1.s", Duration::from_secs(1)),
            ("10ms", Duration::from_millis(10)),
            ("7us", Duration::from_micros(7)),
            ("7\u{b5}s", Duration::from_micros(7)),
            ("7\u{3bc}s", Duration::from_micros(7)),
            ("9ns", Duration::from_nanos(9)),
            ("1h1m1s1ms1us1ns", Duration::new(3661, 1_001_001)),
            ("0.000000001s", Duration::from_nanos(1)),
            ("0.1234567891s", Duration::from_nanos(123_456_789)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_go_duration(text).as_ref(), Ok(want), "{text}");
        }
    }

    #[test]
    fn rejects_bad_forms() {
        for text in [
            "", "5", "m", "1x", "1.2.3s", "-", ".s", "5 m", "1h-1m", "3000000h",
        ] {
            assert!(parse_go_duration(text).is_err(), "{text:?} should fail");
        }
        assert!(parse_go_duration("-5m").is_err());
        let neg = parse_go_duration_signed("-5m").unwrap();
        assert!(neg.negative);
        assert_eq!(neg.magnitude, Duration::from_secs(300));
        assert!(!parse_go_duration_signed("-0s").unwrap().negative);
    }

    #[test]
    fn formats_like_go() {
        let cases: &[(Duration, &str)] = &[
            (Duration::ZERO, "0s"),
            (Duration::from_secs(300), "5m0s"),
            (Duration::from_secs(5400), "1h30m0s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (Duration::from_millis(90_500), "1m30.5s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_millis(300), "300ms"),
            (Duration::from_micros(1500), "1.5ms"),
            (Duration::from_nanos(1500), "1.5\u{b5}s"),
            (Duration::from_nanos(12), "12ns"),
            (Duration::from_secs(1), "1s"),
            (Duration::new(1, 1), "1.000000001s"),
            (Duration::from_secs(100 * 3600), "100h0m0s"),
        ];
        for (d, want) in cases {
            assert_eq!(format_go_duration(*d), *want, "{d:?}");
            assert_eq!(parse_go_duration(want).unwrap(), *d, "{want} round trip");
        }
    }
}
