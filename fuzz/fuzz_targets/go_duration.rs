//! Go durations: any text that parses formats back to the same duration, the signed and
//! unsigned parsers agree, errors name the input, and every representable duration formats to
//! text that parses back (larger ones are refused as too large).

#![no_main]

use std::time::Duration;

use etcdsnap_core::duration::{format_go_duration, parse_go_duration, parse_go_duration_signed};
use libfuzzer_sys::fuzz_target;

/// Go's `time.Duration` is `int64` nanoseconds.
const MAX_NANOS: u128 = i64::MAX as u128;

fn check_formatted(d: Duration) {
    let text = format_go_duration(d);
    if d.as_nanos() <= MAX_NANOS {
        assert_eq!(parse_go_duration(&text), Ok(d), "{d:?} formats as {text:?}");
        assert_eq!(parse_go_duration_signed(&text), Ok((false, d)), "{text:?}");
        if !d.is_zero() {
            let negative = format!("-{text}");
            assert_eq!(
                parse_go_duration_signed(&negative),
                Ok((true, d)),
                "{negative:?}"
            );
            assert!(parse_go_duration(&negative).is_err(), "{negative:?}");
        }
    } else {
        let err = parse_go_duration(&text).expect_err(&text);
        assert!(err.contains("too large"), "{text:?}: {err}");
    }
}

fn check_text(s: &str) {
    let signed = parse_go_duration_signed(s);
    let unsigned = parse_go_duration(s);
    match (&signed, &unsigned) {
        (Ok((false, d)), Ok(u)) => {
            assert_eq!(d, u, "{s:?}");
            assert!(d.as_nanos() <= MAX_NANOS, "{s:?} parsed to {d:?}");
            // The canonical spelling of what was parsed parses to the same value and is a
            // fixed point of format ∘ parse.
            let text = format_go_duration(*d);
            assert_eq!(
                parse_go_duration(&text).as_ref(),
                Ok(d),
                "{s:?} -> {text:?}"
            );
            assert_eq!(format_go_duration(parse_go_duration(&text).unwrap()), text);
        }
        (Ok((true, d)), Err(e)) => {
            assert!(!d.is_zero(), "{s:?}: a negative zero");
            assert!(d.as_nanos() <= MAX_NANOS, "{s:?} parsed to -{d:?}");
            assert!(e.contains("negative"), "{s:?}: {e}");
            assert!(s.starts_with('-'), "{s:?} is negative without a '-'");
            // Without its sign it is the same magnitude.
            assert_eq!(parse_go_duration(&s[1..]).as_ref(), Ok(d), "{s:?}");
        }
        (Err(a), Err(b)) => {
            assert_eq!(a, b, "{s:?}");
            assert!(a.contains(&format!("{s:?}")), "{a:?} does not name {s:?}");
        }
        _ => panic!("{s:?}: signed {signed:?} but unsigned {unsigned:?}"),
    }
    // A leading '+' changes nothing.
    if !s.starts_with(['+', '-']) {
        let plus = format!("+{s}");
        assert_eq!(
            parse_go_duration_signed(&plus).ok(),
            signed.ok(),
            "{plus:?} vs {s:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        check_text(s);
    }
    // The first 12 bytes as a duration: seconds (u64) and nanoseconds (u32, folded).
    if data.len() >= 12 {
        let secs = u64::from_le_bytes(data[..8].try_into().unwrap());
        let nanos = u32::from_le_bytes(data[8..12].try_into().unwrap()) % 1_000_000_000;
        // Most interesting values are near the representable range: scale seconds down too.
        check_formatted(Duration::new(secs, nanos));
        check_formatted(Duration::new(secs % (1 << 34), nanos));
        check_formatted(Duration::new(secs % 4000, nanos));
    }
});
