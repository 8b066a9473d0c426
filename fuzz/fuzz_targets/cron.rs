//! Cron schedules: parsing never panics, errors name the spec, and a parsed schedule's next run
//! is strictly after the time asked about (on whole minutes for cron fields, on whole seconds
//! plus the interval for `@every`), run after run.

#![no_main]

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use etcdsnap_core::schedule::Schedule;
use libfuzzer_sys::fuzz_target;

/// Instants to ask about: ordinary ones, the ends of months and years, a leap day, DST changes
/// in Europe and the US, and fractions of a second.
const TIMES_MS: &[i64] = &[
    100_000_000_000, // 1973-03-03: after the last zone with an offset in seconds (Monrovia, 1972)
    1_700_000_000_000,
    1_704_067_199_999, // 2023-12-31T23:59:59.999Z
    1_709_164_800_000, // 2024-02-29T00:00:00Z
    1_710_054_000_500, // 2024-03-10T07:00:00.5Z, US spring forward
    1_711_846_800_000, // 2024-03-31T01:00:00Z, EU spring forward
    1_729_990_800_000, // 2024-10-27T01:00:00Z, EU fall back
    1_730_617_200_250, // 2024-11-03T07:00:00.25Z, US fall back
    4_102_444_799_000, // 2099-12-31T23:59:59Z
];

fn check_runs(schedule: &Schedule, start: DateTime<Utc>) {
    let mut t = start;
    for _ in 0..3 {
        let Some(next) = schedule.next_after(t) else {
            return;
        };
        assert!(
            next > t,
            "{:?}: next run after {t} is {next}, not later",
            schedule.spec()
        );
        match schedule.every() {
            Some(every) => {
                assert!(every >= std::time::Duration::from_secs(1));
                assert_eq!(every.subsec_nanos(), 0, "{:?}", schedule.spec());
                let whole = t.duration_trunc(TimeDelta::seconds(1)).unwrap();
                assert_eq!(
                    next,
                    whole + TimeDelta::from_std(every).unwrap(),
                    "{:?} after {t}",
                    schedule.spec()
                );
            }
            None => {
                // Today's zones all have offsets of whole minutes, so cron runs fall on them.
                assert_eq!(next.timestamp_subsec_nanos(), 0, "{:?}", schedule.spec());
                assert_eq!(
                    next.timestamp().rem_euclid(60),
                    0,
                    "{:?}: {next}",
                    schedule.spec()
                );
            }
        }
        t = next;
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = std::str::from_utf8(data) else {
        return;
    };
    match Schedule::parse(spec) {
        Ok(schedule) => {
            assert_eq!(schedule.spec(), spec);
            assert_eq!(schedule.to_string(), spec);
            for &ms in TIMES_MS {
                check_runs(&schedule, DateTime::from_timestamp_millis(ms).unwrap());
            }
        }
        Err(e) => {
            assert_eq!(e.spec(), spec);
            let message = e.to_string();
            let head = format!("invalid --etcd-snapshot-schedule-cron {spec:?}: ");
            assert!(message.starts_with(&head), "{message}");
            assert!(message.len() > head.len(), "{message}: no problem named");
        }
    }
});
