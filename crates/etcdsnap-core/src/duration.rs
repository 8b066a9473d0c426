//! Go-style durations, as K3s flags and config files spell them (`5m0s`, `1.5h`, `300ms`).
//!
//! Rules (Go's `time.ParseDuration` and `time.Duration.String`):
//! * a duration is an optional sign and one or more `<number><unit>` parts, e.g. `2h45m`; a number
//!   may have a fraction (`1.5h`, `.5s`, `5.s`); units are `ns`, `us` (or `µs`/`μs`), `ms`, `s`,
//!   `m`, `h`; the only unit-less value is `0`;
//! * the total must fit Go's `int64` nanoseconds (about 292 years), and fractions finer than a
//!   nanosecond are dropped;
//! * negative values are refused: `std::time::Duration` has no sign, and no flag of ours takes one
//!   (`-0s` is zero, so it is fine);
//! * formatting prints hours, minutes and seconds for a second or more (`1h0m0s`, `1m30s`, `1.5s`)
//!   and one smaller unit below a second (`1.5ms`, `500µs`, `100ns`); zero is `0s`.

use std::fmt::Write as _;
use std::time::Duration;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// The largest duration Go can represent: `i64::MAX` nanoseconds.
const MAX_NANOS: u128 = i64::MAX as u128;

/// Fraction digits beyond this many cannot change a whole number of nanoseconds for any unit
/// (the largest unit is 3.6e12 ns), and keeping them bounded keeps the arithmetic in `u128`.
const MAX_FRACTION_DIGITS: usize = 20;

const UNITS_HINT: &str = "use ns, us, ms, s, m or h, e.g. 30s, 5m0s or 1h30m";

/// Parses a duration in Go's `time.ParseDuration` syntax (`300ms`, `1.5h`, `2h45m`, `5m0s`, `0`).
///
/// The error text names the input and says what is wrong with it.
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    match parse_go_duration_signed(s)? {
        (true, _) => Err(format!(
            "invalid duration {s:?}: negative durations are not allowed"
        )),
        (false, d) => Ok(d),
    }
}

/// Like [`parse_go_duration`], but a negative value is returned as `(true, magnitude)` instead
/// of refused (K3s reads a negative timeout from JSON and then rejects it as not above 0s).
pub fn parse_go_duration_signed(s: &str) -> Result<(bool, Duration), String> {
    let bad = |problem: String| format!("invalid duration {s:?}: {problem}");

    let (negative, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok((false, Duration::ZERO));
    }
    if rest.is_empty() {
        return Err(bad(format!("no number or unit; {UNITS_HINT}")));
    }

    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_digits, after_int) = rest.split_at(int_len);
        let (frac_digits, after_number) = match after_int.strip_prefix('.') {
            Some(after_dot) => {
                let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
                after_dot.split_at(frac_len)
            }
            None => ("", after_int),
        };
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(bad(format!(
                "expected a number before {rest:?}; {UNITS_HINT}"
            )));
        }

        let unit_len = after_number
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(after_number.len());
        let (unit, after_unit) = after_number.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => NANOS_PER_SEC,
            "m" => 60 * NANOS_PER_SEC,
            "h" => 3_600 * NANOS_PER_SEC,
            "" => return Err(bad(format!("a number needs a unit; {UNITS_HINT}"))),
            other => return Err(bad(format!("unknown unit {other:?}; {UNITS_HINT}"))),
        };

        let too_large = || bad("too large (the maximum is 2562047h47m16.854775807s)".to_string());
        let mut whole: u128 = 0;
        for digit in int_digits.bytes() {
            whole = whole * 10 + u128::from(digit - b'0');
            if whole > MAX_NANOS {
                return Err(too_large());
            }
        }
        let mut part = whole * unit_nanos;
        if !frac_digits.is_empty() {
            let kept = &frac_digits[..frac_digits.len().min(MAX_FRACTION_DIGITS)];
            let numerator: u128 = kept.parse().map_err(|_| too_large())?;
            part += numerator * unit_nanos / 10u128.pow(kept.len() as u32);
        }
        total += part;
        if total > MAX_NANOS {
            return Err(too_large());
        }
        rest = after_unit;
    }

    Ok((negative && total != 0, Duration::from_nanos(total as u64)))
}

/// Formats a duration as Go's `time.Duration.String` does: `0s`, `30s`, `1.5s`, `5m0s`,
/// `1h0m0s`, `2h45m0s`, `1.5ms`, `500µs`, `100ns`.
pub fn format_go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < NANOS_PER_SEC {
        let (scale, unit) = match nanos {
            0..1_000 => (1, "ns"),
            1_000..1_000_000 => (1_000, "\u{b5}s"),
            _ => (1_000_000, "ms"),
        };
        return format!("{}{unit}", decimal(nanos, scale));
    }

    let secs = d.as_secs();
    let mut out = String::new();
    if secs >= 3_600 {
        let _ = write!(out, "{}h", secs / 3_600);
    }
    if secs >= 60 {
        let _ = write!(out, "{}m", secs / 60 % 60);
    }
    let _ = write!(
        out,
        "{}s",
        decimal(
            u128::from(secs % 60) * NANOS_PER_SEC + u128::from(d.subsec_nanos()),
            NANOS_PER_SEC
        )
    );
    out
}

/// `value / scale` as a decimal without trailing zeros (`scale` is a power of ten).
fn decimal(value: u128, scale: u128) -> String {
    let whole = value / scale;
    let fraction = value % scale;
    if fraction == 0 {
        return whole.to_string();
    }
    let width = scale.ilog10() as usize;
    let digits = format!("{fraction:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Serde adapter for a [`Duration`](std::time::Duration) held as Go duration text. Negative
/// values read as zero so that validation reports K3s's "must be greater than 0s"; a bare number
/// is nanoseconds, as Go's JSON encoding of a `time.Duration` gives.
pub mod serde_go {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    use super::{format_go_duration, parse_go_duration_signed};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_go_duration(*d))
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Nanos(i64),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Text(t) => match parse_go_duration_signed(&t).map_err(D::Error::custom)? {
                (true, _) => Ok(Duration::ZERO),
                (false, d) => Ok(d),
            },
            Raw::Nanos(n) => Ok(Duration::from_nanos(n.max(0) as u64)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn parses_valid_durations() {
        let cases: &[(&str, u64)] = &[
            ("0", 0),
            ("+0", 0),
            ("-0", 0),
            ("-0s", 0),
            ("0s", 0),
            ("5s", 5 * SEC),
            ("30s", 30 * SEC),
            ("5m0s", 300 * SEC),
            ("1h0m0s", 3_600 * SEC),
            ("2h45m", (2 * 3_600 + 45 * 60) * SEC),
            ("1h30m", 5_400 * SEC),
            ("1.5h", 5_400 * SEC),
            ("1.5s", 1_500_000_000),
            (".5s", 500_000_000),
            ("5.s", 5 * SEC),
            ("300ms", 300_000_000),
            ("1ms", 1_000_000),
            ("2us", 2_000),
            ("2\u{b5}s", 2_000),
            ("2\u{3bc}s", 2_000),
            ("7ns", 7),
            ("1.5ns", 1),
            ("+5m", 300 * SEC),
            ("1h1m1s1ms1us1ns", 3_661 * SEC + 1_001_001),
            ("1s1s", 2 * SEC),
            ("0.000000001s", 1),
            ("0.0000000019s", 1),
            ("1.00000000000000000000000001s", SEC),
            ("2562047h47m16.854775807s", i64::MAX as u64),
            ("9223372036854775807ns", i64::MAX as u64),
        ];
        for &(text, nanos) in cases {
            assert_eq!(
                parse_go_duration(text),
                Ok(Duration::from_nanos(nanos)),
                "parsing {text:?}"
            );
        }
    }

    #[test]
    fn rejects_invalid_durations() {
        let cases: &[(&str, &str)] = &[
            ("", "no number or unit"),
            ("-", "no number or unit"),
            ("+", "no number or unit"),
            ("5", "needs a unit"),
            ("00", "needs a unit"),
            ("1h5", "needs a unit"),
            ("5x", "unknown unit \"x\""),
            ("5 s", "unknown unit \" s\""),
            ("5sec", "unknown unit \"sec\""),
            ("1d", "unknown unit \"d\""),
            ("5S", "unknown unit \"S\""),
            (".s", "expected a number"),
            ("s", "expected a number"),
            ("1h.", "expected a number"),
            (" 5s", "expected a number"),
            ("-5m", "negative"),
            ("-1ns", "negative"),
            ("2562047h47m16.854775808s", "too large"),
            ("9223372036854775808ns", "too large"),
            ("99999999999999999999999999999h", "too large"),
        ];
        for &(text, want) in cases {
            let err = parse_go_duration(text).expect_err(text);
            assert!(
                err.contains(want),
                "{text:?}: error {err:?} should contain {want:?}"
            );
            assert!(
                err.contains(&format!("{text:?}")),
                "{err:?} names the input"
            );
        }
    }

    #[test]
    fn formats_like_go() {
        let cases: &[(u64, &str)] = &[
            (0, "0s"),
            (1, "1ns"),
            (999, "999ns"),
            (1_000, "1\u{b5}s"),
            (1_500, "1.5\u{b5}s"),
            (1_000_000, "1ms"),
            (1_500_000, "1.5ms"),
            (300_000_000, "300ms"),
            (999_999_999, "999.999999ms"),
            (SEC, "1s"),
            (1_500_000_000, "1.5s"),
            (SEC + 1, "1.000000001s"),
            (30 * SEC, "30s"),
            (60 * SEC, "1m0s"),
            (90 * SEC, "1m30s"),
            (300 * SEC, "5m0s"),
            (3_600 * SEC, "1h0m0s"),
            (5_400 * SEC, "1h30m0s"),
            ((2 * 3_600 + 45 * 60) * SEC, "2h45m0s"),
            (100 * 3_600 * SEC, "100h0m0s"),
            (3_661 * SEC + 500_000_000, "1h1m1.5s"),
            (i64::MAX as u64, "2562047h47m16.854775807s"),
        ];
        for &(nanos, want) in cases {
            assert_eq!(format_go_duration(Duration::from_nanos(nanos)), want);
        }
    }

    #[test]
    fn format_then_parse_round_trips() {
        for nanos in [
            1,
            1_500,
            2_000_000,
            SEC,
            90 * SEC,
            3_661 * SEC + 7,
            86_400 * SEC,
        ] {
            let d = Duration::from_nanos(nanos);
            assert_eq!(parse_go_duration(&format_go_duration(d)), Ok(d));
        }
    }

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct T {
        #[serde(with = "super::serde_go")]
        d: Duration,
    }

    #[test]
    fn json_round_trip_and_negative_as_zero() {
        let t = T {
            d: Duration::from_secs(300),
        };
        assert_eq!(serde_json::to_string(&t).unwrap(), r#"{"d":"5m0s"}"#);
        let back: T = serde_json::from_str(r#"{"d":"1h30m"}"#).unwrap();
        assert_eq!(back.d, Duration::from_secs(5400));
        let neg: T = serde_json::from_str(r#"{"d":"-5m"}"#).unwrap();
        assert_eq!(neg.d, Duration::ZERO);
        let nanos: T = serde_json::from_str(r#"{"d":2000000000}"#).unwrap();
        assert_eq!(nanos.d, Duration::from_secs(2));
        assert!(serde_json::from_str::<T>(r#"{"d":"5 m"}"#).is_err());
    }
}
