//! Cron schedules for `--etcd-snapshot-schedule-cron`, in the dialect of robfig/cron v3's default
//! parser (the one K3s uses), with `croner` computing the run times.
//!
//! Rules:
//! * exactly five fields: minute (0-59), hour (0-23), day-of-month (1-31), month (1-12 or
//!   `jan`-`dec`), day-of-week (0-6 or `sun`-`sat`, Sunday is 0, 7 is refused); each field is a
//!   list of `*`, `?`, `N`, `A-B`, with an optional step `/S` (`N/S` means `N-max/S`); names are
//!   case-insensitive;
//! * or a descriptor: `@yearly` (`@annually`), `@monthly`, `@weekly`, `@daily` (`@midnight`),
//!   `@hourly`, or `@every <Go duration>`;
//! * an optional `CRON_TZ=<IANA zone> ` or `TZ=<zone> ` prefix; without it times are local;
//! * day-of-month and day-of-week: when either field starts with `*` or `?` (without a step
//!   above 1) a day must match both, otherwise either one is enough;
//! * `@every D` fires every D from the previous run (or start-up), whole seconds only: shorter
//!   than a second becomes 1s and a fraction of a second is dropped.
//!
//! We parse the fields ourselves and hand `croner` a pattern of plain value lists, so croner's
//! extensions (seconds and year fields, `L`, `W`, `#`) can never leak into the dialect. Where we
//! differ from robfig on purpose, we fail earlier: K3s ignores a bad spec and never snapshots,
//! while we refuse it at start-up, and we also refuse `@every` with a zero or negative duration,
//! a range starting with `*`, and day/month combinations that never occur (`0 0 30 2 *`).
//! Daylight-saving changes follow croner: a wall-clock time skipped by a forward jump runs once
//! when the clock resumes, and a fixed time repeated by a backward jump runs once.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, DurationRound, Local, TimeZone, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use crate::duration::parse_go_duration;

/// K3s's default `--etcd-snapshot-schedule-cron`: 00:00 and 12:00 every day.
pub const DEFAULT_SCHEDULE: &str = "0 */12 * * *";

/// A validated cron schedule: parse it at start-up, then ask it for the next run time.
#[derive(Debug, Clone)]
pub struct Schedule {
    spec: String,
    zone: Zone,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Zone {
    Local,
    Named(chrono_tz::Tz),
}

#[derive(Debug, Clone)]
enum Kind {
    Cron(Box<Cron>),
    Every(Duration),
}

impl Schedule {
    /// Parses `spec` in robfig/cron's default dialect (see the module docs).
    pub fn parse(spec: &str) -> Result<Schedule, ScheduleError> {
        let fail = |problem| ScheduleError {
            spec: spec.to_string(),
            problem,
        };
        let (zone, body) = split_zone(spec.trim()).map_err(fail)?;
        let kind = if let Some(descriptor) = body.strip_prefix('@') {
            parse_descriptor(descriptor)
        } else {
            parse_fields(body)
        }
        .map_err(fail)?;
        Ok(Schedule {
            spec: spec.to_string(),
            zone,
            kind,
        })
    }

    /// The spec as it was given.
    pub fn spec(&self) -> &str {
        &self.spec
    }

    /// The interval of an `@every` schedule, after rounding to whole seconds.
    pub fn every(&self) -> Option<Duration> {
        match self.kind {
            Kind::Every(interval) => Some(interval),
            Kind::Cron(_) => None,
        }
    }

    /// The first run time strictly after `t` (for `@every`: `t`, cut to the second, plus the
    /// interval), or `None` when there is none within croner's search range.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.kind {
            Kind::Every(interval) => {
                let start = t.duration_trunc(chrono::TimeDelta::seconds(1)).ok()?;
                start.checked_add_signed(chrono::TimeDelta::from_std(*interval).ok()?)
            }
            Kind::Cron(cron) => match self.zone {
                Zone::Local => next_in_zone(cron, t, &Local),
                Zone::Named(tz) => next_in_zone(cron, t, &tz),
            },
        }
    }
}

fn next_in_zone<Z: TimeZone>(cron: &Cron, t: DateTime<Utc>, zone: &Z) -> Option<DateTime<Utc>> {
    let next = cron
        .find_next_occurrence(&t.with_timezone(zone), false)
        .ok()?;
    Some(next.with_timezone(&Utc))
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.spec)
    }
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Schedule::parse(s)
    }
}

/// A spec that is not valid in our cron dialect; the message names the spec, the problem and
/// the way to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid --etcd-snapshot-schedule-cron {spec:?}: {problem}")]
pub struct ScheduleError {
    spec: String,
    problem: ScheduleProblem,
}

impl ScheduleError {
    /// The spec that failed to parse.
    pub fn spec(&self) -> &str {
        &self.spec
    }

    /// What is wrong with it.
    pub fn problem(&self) -> &ScheduleProblem {
        &self.problem
    }
}

/// What is wrong with a schedule spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleProblem {
    #[error(
        "the schedule is empty; use 5 fields such as \"0 */12 * * *\" or a descriptor such as @daily or @every 1h"
    )]
    Empty,
    #[error(
        "expected 5 fields (minute hour day-of-month month day-of-week) or a descriptor such as @daily or @every 1h, found {found}{}",
        if *found > 5 { "; seconds and year fields are not supported" } else { "" }
    )]
    FieldCount { found: usize },
    #[error(
        "no schedule follows the {prefix} prefix; separate zone and schedule with a space, e.g. \"{prefix}UTC 0 */12 * * *\""
    )]
    NothingAfterZone { prefix: &'static str },
    #[error("unknown time zone {zone:?}; use an IANA name such as UTC or Europe/Berlin, or Local")]
    UnknownZone { zone: String },
    #[error(
        "unknown descriptor {descriptor:?}; use @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly or @every <duration> (lower case)"
    )]
    UnknownDescriptor { descriptor: String },
    #[error("@every needs a duration such as 30s, 15m or 1h30m: {reason}")]
    EveryDuration { reason: String },
    #[error("@every {text} never repeats; use a duration above zero such as 30s, 15m or 1h30m")]
    EveryNotPositive { text: String },
    #[error("{field} field {text:?}: {reason}")]
    Field {
        field: &'static str,
        text: String,
        reason: FieldProblem,
    },
    #[error(
        "day-of-month {dom:?} never occurs in month {month:?}, so the schedule would never run; pick days that exist in those months"
    )]
    NeverFires { dom: String, month: String },
}

/// What is wrong with one field of a five-field spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldProblem {
    #[error("empty value; write a list like 1,15, a range like 1-5 or a step like */5")]
    EmptyValue,
    #[error("{token:?} is not a number ({allowed})")]
    NotANumber {
        token: String,
        allowed: &'static str,
    },
    #[error(
        "{token:?} uses the L, W or # extension, which this cron dialect (robfig/cron, as in K3s) does not support"
    )]
    Extension { token: String },
    #[error("step {token:?} is not a number; write a step like */5")]
    BadStep { token: String },
    #[error("a step must be 1 or more; write a step like */5")]
    ZeroStep,
    #[error("{value} is below the minimum {min}")]
    Below { value: String, min: u32 },
    #[error("{value} is above the maximum {max}{}", if *sunday_hint { " (Sunday is 0)" } else { "" })]
    Above {
        value: String,
        max: u32,
        sunday_hint: bool,
    },
    #[error("range {start}-{end} starts after it ends; write the smaller value first")]
    Reversed { start: u32, end: u32 },
    #[error("{expr:?} has more than one '-'; write a range like 1-5")]
    TooManyHyphens { expr: String },
    #[error("{expr:?} has more than one '/'; write a step like */5 or 1-30/5")]
    TooManySlashes { expr: String },
    #[error("{expr:?}: * and ? cannot start a range; write * alone or a range like 1-5")]
    StarRange { expr: String },
}

fn split_zone(spec: &str) -> Result<(Zone, &str), ScheduleProblem> {
    let Some((prefix, rest)) = ["CRON_TZ=", "TZ="]
        .into_iter()
        .find_map(|p| spec.strip_prefix(p).map(|rest| (p, rest)))
    else {
        return Ok((Zone::Local, spec));
    };
    let Some((name, body)) = rest.split_once(char::is_whitespace) else {
        return Err(ScheduleProblem::NothingAfterZone { prefix });
    };
    let body = body.trim_start();
    let zone = match name {
        "Local" => Zone::Local,
        _ => chrono_tz::Tz::from_str(name)
            .map(Zone::Named)
            .map_err(|_| ScheduleProblem::UnknownZone {
                zone: name.to_string(),
            })?,
    };
    if body.is_empty() {
        return Err(ScheduleProblem::NothingAfterZone { prefix });
    }
    Ok((zone, body))
}

fn parse_descriptor(descriptor: &str) -> Result<Kind, ScheduleProblem> {
    let fields = match descriptor {
        "yearly" | "annually" => "0 0 1 1 *",
        "monthly" => "0 0 1 * *",
        "weekly" => "0 0 * * 0",
        "daily" | "midnight" => "0 0 * * *",
        "hourly" => "0 * * * *",
        "every" => {
            return Err(ScheduleProblem::EveryDuration {
                reason: "no duration given".to_string(),
            });
        }
        _ => {
            let Some(text) = descriptor
                .strip_prefix("every")
                .filter(|rest| rest.starts_with(char::is_whitespace))
                .map(str::trim)
            else {
                return Err(ScheduleProblem::UnknownDescriptor {
                    descriptor: format!("@{descriptor}"),
                });
            };
            return parse_every(text).map(Kind::Every);
        }
    };
    parse_fields(fields)
}

fn parse_every(text: &str) -> Result<Duration, ScheduleProblem> {
    if text.is_empty() {
        return Err(ScheduleProblem::EveryDuration {
            reason: "no duration given".to_string(),
        });
    }
    let interval = match parse_go_duration(text) {
        Ok(d) if d.is_zero() => Err(()),
        Ok(d) => Ok(d),
        Err(_) if parse_go_duration(text.trim_start_matches('-')).is_ok() => Err(()),
        Err(reason) => return Err(ScheduleProblem::EveryDuration { reason }),
    }
    .map_err(|()| ScheduleProblem::EveryNotPositive {
        text: text.to_string(),
    })?;
    // robfig runs @every on whole seconds, at least one apart.
    Ok(Duration::from_secs(interval.as_secs().max(1)))
}

/// Bounds and names of one of the five fields.
struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    allowed: &'static str,
}

const MINUTE: FieldSpec = FieldSpec {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
    allowed: "use 0-59",
};
const HOUR: FieldSpec = FieldSpec {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
    allowed: "use 0-23",
};
const DAY_OF_MONTH: FieldSpec = FieldSpec {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
    allowed: "use 1-31",
};
const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    // Index + 1 is the month number.
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
    allowed: "use 1-12 or jan-dec",
};
const DAY_OF_WEEK: FieldSpec = FieldSpec {
    name: "day-of-week",
    min: 0,
    max: 6,
    // Index is the weekday number, Sunday first.
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
    allowed: "use 0-6 (Sunday is 0) or sun-sat",
};

/// The values a field selects (bit N = value N), and whether robfig counts it as a wildcard
/// for the day-of-month/day-of-week rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FieldSet {
    bits: u64,
    star: bool,
}

impl FieldSet {
    fn contains(self, value: u32) -> bool {
        self.bits & (1 << value) != 0
    }

    /// The field as croner reads it: `*` for a wildcard, else the plain list of values.
    fn croner_field(self, spec: &FieldSpec) -> String {
        if self.star {
            return "*".to_string();
        }
        (spec.min..=spec.max)
            .filter(|v| self.contains(*v))
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn parse_fields(body: &str) -> Result<Kind, ScheduleProblem> {
    let fields: Vec<&str> = body.split_whitespace().collect();
    if fields.is_empty() {
        return Err(ScheduleProblem::Empty);
    }
    if fields.len() != 5 {
        return Err(ScheduleProblem::FieldCount {
            found: fields.len(),
        });
    }
    let specs = [&MINUTE, &HOUR, &DAY_OF_MONTH, &MONTH, &DAY_OF_WEEK];
    let mut sets = [FieldSet {
        bits: 0,
        star: false,
    }; 5];
    for ((set, spec), text) in sets.iter_mut().zip(specs).zip(&fields) {
        *set = parse_field(text, spec).map_err(|reason| ScheduleProblem::Field {
            field: spec.name,
            text: text.to_string(),
            reason,
        })?;
    }
    let [_, _, dom, month, dow] = sets;
    // With a wildcard day-of-week, only day-of-month decides (see the module docs); if none of
    // its days exists in any chosen month, croner would search for years and robfig never runs.
    if !dom.star && dow.star && !(1..=12).any(|m| month.contains(m) && has_day_in(dom, m)) {
        return Err(ScheduleProblem::NeverFires {
            dom: fields[2].to_string(),
            month: fields[3].to_string(),
        });
    }

    let pattern = sets
        .iter()
        .zip(specs)
        .map(|(set, spec)| set.croner_field(spec))
        .collect::<Vec<_>>()
        .join(" ");
    // Our pattern has five plain fields; croner's default OR of day-of-month and day-of-week
    // (unless one is `*`) is robfig's rule.
    let parser = CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .dom_and_dow(false)
        .build();
    let cron = parser
        .parse(&pattern)
        .unwrap_or_else(|e| panic!("croner rejected the generated pattern {pattern:?}: {e}"));
    Ok(Kind::Cron(Box::new(cron)))
}

fn has_day_in(dom: FieldSet, month: u32) -> bool {
    let longest = match month {
        2 => 29,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    (1..=longest).any(|d| dom.contains(d))
}

/// One field, as a comma-separated list of `*`/`?`/`N`/`A-B`, each with an optional `/step`.
fn parse_field(text: &str, spec: &FieldSpec) -> Result<FieldSet, FieldProblem> {
    let mut set = FieldSet {
        bits: 0,
        star: false,
    };
    for expr in text.split(',') {
        let (range, step) = match expr.split('/').collect::<Vec<_>>()[..] {
            [range] => (range, None),
            [range, step] => (range, Some(step)),
            _ => {
                return Err(FieldProblem::TooManySlashes {
                    expr: expr.to_string(),
                });
            }
        };
        let bounds: Vec<&str> = range.split('-').collect();
        let (start, mut end, mut star) = if bounds[0] == "*" || bounds[0] == "?" {
            if bounds.len() > 1 {
                return Err(FieldProblem::StarRange {
                    expr: expr.to_string(),
                });
            }
            (spec.min, spec.max, true)
        } else {
            let start = parse_value(bounds[0], spec)?;
            match bounds[..] {
                [_] => (start, start, false),
                [_, end] => (start, parse_value(end, spec)?, false),
                _ => {
                    return Err(FieldProblem::TooManyHyphens {
                        expr: expr.to_string(),
                    });
                }
            }
        };
        let step = match step {
            None => 1,
            Some(token) => {
                if !is_number(token) {
                    return Err(FieldProblem::BadStep {
                        token: token.to_string(),
                    });
                }
                // A step too large for u32 selects only the start, as any step past the end does.
                let step = parse_number(token).unwrap_or(u32::MAX);
                // `N/S` runs from N to the end of the field.
                if bounds.len() == 1 {
                    end = spec.max;
                }
                if step > 1 {
                    star = false;
                }
                step
            }
        };
        check_range(start, end, step, spec)?;
        for value in (start..=end).step_by(step as usize) {
            set.bits |= 1 << value;
        }
        set.star |= star;
    }
    Ok(set)
}

fn check_range(start: u32, end: u32, step: u32, spec: &FieldSpec) -> Result<(), FieldProblem> {
    if start < spec.min {
        return Err(FieldProblem::Below {
            value: start.to_string(),
            min: spec.min,
        });
    }
    if end > spec.max {
        return Err(above(end.to_string(), spec));
    }
    if start > end {
        return Err(FieldProblem::Reversed { start, end });
    }
    if step == 0 {
        return Err(FieldProblem::ZeroStep);
    }
    Ok(())
}

fn above(value: String, spec: &FieldSpec) -> FieldProblem {
    FieldProblem::Above {
        value,
        max: spec.max,
        sunday_hint: spec.name == DAY_OF_WEEK.name,
    }
}

/// A number or (in the month and day-of-week fields) a three-letter name.
fn parse_value(token: &str, spec: &FieldSpec) -> Result<u32, FieldProblem> {
    if token.is_empty() {
        return Err(FieldProblem::EmptyValue);
    }
    let lower = token.to_ascii_lowercase();
    if let Some(index) = spec.names.iter().position(|n| *n == lower) {
        return Ok(spec.min + index as u32);
    }
    if is_number(token) {
        // Only overflow can fail here, and any overflowing value is above the maximum.
        return parse_number(token).ok_or_else(|| above(token.to_string(), spec));
    }
    if is_extension(&lower) {
        return Err(FieldProblem::Extension {
            token: token.to_string(),
        });
    }
    Err(FieldProblem::NotANumber {
        token: token.to_string(),
        allowed: spec.allowed,
    })
}

/// Decimal digits with an optional `+`, as Go's `strconv.Atoi` (which robfig uses) takes them.
fn is_number(token: &str) -> bool {
    let digits = token.strip_prefix('+').unwrap_or(token);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

fn parse_number(token: &str) -> Option<u32> {
    if !is_number(token) {
        return None;
    }
    token.strip_prefix('+').unwrap_or(token).parse().ok()
}

/// `L`, `5L`, `LW`, `15W`, `5#2`: Quartz-style extensions that croner knows and robfig does not.
fn is_extension(lower: &str) -> bool {
    let letters = lower.trim_start_matches(|c: char| c.is_ascii_digit());
    lower.contains('#') || matches!(letters, "l" | "w" | "lw")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, Timelike};

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    fn parse(spec: &str) -> Schedule {
        Schedule::parse(spec).unwrap_or_else(|e| panic!("{spec:?}: {e}"))
    }

    /// The next `n` run times after `from`.
    fn runs(spec: &str, from: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let schedule = parse(spec);
        let mut out = Vec::new();
        let mut t = from;
        for _ in 0..n {
            t = schedule
                .next_after(t)
                .unwrap_or_else(|| panic!("{spec:?}: no run after {t}"));
            out.push(t);
        }
        out
    }

    #[test]
    fn accepts_robfig_specs() {
        let specs = [
            DEFAULT_SCHEDULE,
            "* * * * *",
            "0 0 * * *",
            "*/5 * * * *",
            "0 */12 * * *",
            "0 0,12 * * *",
            "30 2 * * 1-5",
            "0 0 1 1 *",
            "0 0 29 2 *",
            "0 0 31 * *",
            "0 0 * * sun",
            "0 0 * * SUN",
            "0 0 * * Mon-Fri",
            "0 0 * jan-jun/2 *",
            "0 0 1 JAN,jul *",
            "0 0 ? * mon",
            "0 0 * * ?",
            "? ? ? ? ?",
            "5/15 * * * *",
            "0-59/10 * * * *",
            "1-5,10,20-30/5 1,2,3 1-31 1-12 0-6",
            "*/1 * * * *",
            "+5 * * * *",
            "05 07 * * *",
            "0   0\t*  * *",
            "  0 0 * * *  ",
            "59 23 31 12 6",
            "@yearly",
            "@annually",
            "@monthly",
            "@weekly",
            "@daily",
            "@midnight",
            "@hourly",
            "@every 30s",
            "@every 1h30m",
            "@every 1.5h",
            "@every 500ms",
            "@every  5m",
            "CRON_TZ=UTC 0 */12 * * *",
            "CRON_TZ=Europe/Berlin 0 3 * * *",
            "TZ=America/New_York 0 3 * * *",
            "TZ=Asia/Kolkata @daily",
            "CRON_TZ=UTC @every 1h",
            "CRON_TZ=Local 0 0 * * *",
            "CRON_TZ=UTC   0 0 * * *",
        ];
        for spec in specs {
            let schedule = parse(spec);
            assert_eq!(schedule.to_string(), spec, "Display is the spec as given");
            assert_eq!(schedule.spec(), spec);
            assert!(
                schedule.next_after(utc(2024, 1, 1, 0, 0, 0)).is_some(),
                "{spec:?} has a next run"
            );
        }
    }

    #[test]
    fn rejects_specs_robfig_rejects_or_that_never_run() {
        // (spec, text the error must contain)
        let cases = [
            ("", "the schedule is empty"),
            ("   ", "the schedule is empty"),
            ("0 */12 * *", "found 4"),
            ("0", "found 1"),
            (
                "0 0 * * * *",
                "found 6; seconds and year fields are not supported",
            ),
            ("0 0 0 * * * 2024", "found 7"),
            (
                "60 * * * *",
                "minute field \"60\": 60 is above the maximum 59",
            ),
            (
                "* 24 * * *",
                "hour field \"24\": 24 is above the maximum 23",
            ),
            (
                "* * 0 * *",
                "day-of-month field \"0\": 0 is below the minimum 1",
            ),
            (
                "* * 32 * *",
                "day-of-month field \"32\": 32 is above the maximum 31",
            ),
            ("* * * 0 *", "month field \"0\": 0 is below the minimum 1"),
            ("* * * 13 *", "above the maximum 12"),
            ("* * * * 7", "7 is above the maximum 6 (Sunday is 0)"),
            ("* * * * 1-7", "7 is above the maximum 6"),
            ("* * * * 99999999999999999999999", "is above the maximum 6"),
            ("* * * * mon-sun", "range 1-0 starts after it ends"),
            ("30-10 * * * *", "range 30-10 starts after it ends"),
            ("*/0 * * * *", "a step must be 1 or more"),
            ("*/x * * * *", "step \"x\" is not a number"),
            ("*/-1 * * * *", "step \"-1\" is not a number"),
            ("1-2-3 * * * *", "more than one '-'"),
            ("*/2/3 * * * *", "more than one '/'"),
            ("*-5 * * * *", "cannot start a range"),
            ("1,,2 * * * *", "empty value"),
            ("1- * * * *", "empty value"),
            ("-1 * * * *", "empty value"),
            ("x * * * *", "\"x\" is not a number (use 0-59)"),
            (
                "0 0 * * monday",
                "\"monday\" is not a number (use 0-6 (Sunday is 0) or sun-sat)",
            ),
            ("0 0 * january *", "use 1-12 or jan-dec"),
            ("mon * * * *", "\"mon\" is not a number"),
            ("0 0 * * jan", "\"jan\" is not a number"),
            ("0 0 L * *", "L, W or # extension"),
            ("0 0 15W * *", "L, W or # extension"),
            ("0 0 LW * *", "L, W or # extension"),
            ("0 0 * * 5L", "L, W or # extension"),
            ("0 0 * * 5#3", "L, W or # extension"),
            ("0 0 * * mon#1", "L, W or # extension"),
            ("0 0 * * +mon", "is not a number"),
            ("@reboot", "unknown descriptor \"@reboot\""),
            ("@Daily", "unknown descriptor \"@Daily\""),
            ("@daily 0", "unknown descriptor"),
            ("@every30s", "unknown descriptor"),
            (
                "@every",
                "@every needs a duration such as 30s, 15m or 1h30m: no duration given",
            ),
            ("@every ", "no duration given"),
            (
                "@every 30",
                "@every needs a duration such as 30s, 15m or 1h30m",
            ),
            ("@every 1d", "unknown unit \"d\""),
            ("@every 0s", "never repeats"),
            ("@every 0", "never repeats"),
            ("@every -5m", "never repeats"),
            (
                "CRON_TZ=Mars/Olympus 0 0 * * *",
                "unknown time zone \"Mars/Olympus\"",
            ),
            ("TZ=utc 0 0 * * *", "unknown time zone \"utc\""),
            ("CRON_TZ= 0 0 * * *", "unknown time zone \"\""),
            ("CRON_TZ=UTC", "no schedule follows the CRON_TZ= prefix"),
            ("TZ=UTC ", "no schedule follows the TZ= prefix"),
            ("CRON_TZ=UTC 0 0 * *", "found 4"),
            ("0 0 30 2 *", "never occurs in month"),
            ("0 0 31 4,6,9,11 *", "never occurs in month"),
            ("0 0 30-31 feb *", "never occurs in month"),
        ];
        for (spec, want) in cases {
            let err = Schedule::parse(spec).expect_err(spec);
            let message = err.to_string();
            assert!(
                message.starts_with(&format!("invalid --etcd-snapshot-schedule-cron {spec:?}: ")),
                "{message}"
            );
            assert!(
                message.contains(want),
                "{spec:?}: {message:?} should contain {want:?}"
            );
            assert_eq!(err.spec(), spec);
        }
    }

    #[test]
    fn error_message_names_spec_problem_and_fix() {
        let err = Schedule::parse("0 */12 * *").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid --etcd-snapshot-schedule-cron \"0 */12 * *\": expected 5 fields (minute hour \
             day-of-month month day-of-week) or a descriptor such as @daily or @every 1h, found 4"
        );
        assert_eq!(err.problem(), &ScheduleProblem::FieldCount { found: 4 });
    }

    #[test]
    fn next_run_at_fixed_instants() {
        // (spec, now, expected next run)
        let cases = [
            (
                "CRON_TZ=UTC 0 */12 * * *",
                utc(2024, 3, 10, 5, 17, 3),
                utc(2024, 3, 10, 12, 0, 0),
            ),
            (
                "CRON_TZ=UTC 0 */12 * * *",
                utc(2024, 3, 10, 12, 0, 0),
                utc(2024, 3, 11, 0, 0, 0),
            ),
            (
                "CRON_TZ=UTC 0 */12 * * *",
                utc(2024, 12, 31, 23, 59, 59),
                utc(2025, 1, 1, 0, 0, 0),
            ),
            (
                "CRON_TZ=UTC */5 * * * *",
                utc(2024, 1, 1, 10, 2, 0),
                utc(2024, 1, 1, 10, 5, 0),
            ),
            (
                "CRON_TZ=UTC 5/15 * * * *",
                utc(2024, 1, 1, 10, 21, 0),
                utc(2024, 1, 1, 10, 35, 0),
            ),
            (
                "CRON_TZ=UTC 30 2 * * 1-5",
                utc(2024, 1, 5, 3, 0, 0),
                utc(2024, 1, 8, 2, 30, 0),
            ),
            (
                "CRON_TZ=UTC 0 0 1 * *",
                utc(2024, 1, 15, 0, 0, 0),
                utc(2024, 2, 1, 0, 0, 0),
            ),
            (
                "CRON_TZ=UTC 0 0 29 2 *",
                utc(2024, 3, 1, 0, 0, 0),
                utc(2028, 2, 29, 0, 0, 0),
            ),
            (
                "CRON_TZ=UTC 0 0 31 * *",
                utc(2024, 4, 1, 0, 0, 0),
                utc(2024, 5, 31, 0, 0, 0),
            ),
            (
                "CRON_TZ=UTC 0 9 * feb-mar mon",
                utc(2024, 1, 1, 0, 0, 0),
                utc(2024, 2, 5, 9, 0, 0),
            ),
            (
                "CRON_TZ=UTC 0 0 * * 0",
                utc(2024, 1, 1, 0, 0, 0),
                utc(2024, 1, 7, 0, 0, 0),
            ),
            (
                "CRON_TZ=UTC @yearly",
                utc(2024, 6, 1, 0, 0, 0),
                utc(2025, 1, 1, 0, 0, 0),
            ),
            (
                "CRON_TZ=UTC @annually",
                utc(2024, 1, 1, 0, 0, 0),
                utc(2025, 1, 1, 0, 0, 0),
            ),
            (
                "CRON_TZ=UTC @monthly",
                utc(2024, 1, 31, 12, 0, 0),
                utc(2024, 2, 1, 0, 0, 0),
            ),
            // 2024-01-01 is a Monday.
            (
                "CRON_TZ=UTC @weekly",
                utc(2024, 1, 1, 0, 0, 0),
                utc(2024, 1, 7, 0, 0, 0),
            ),
            (
                "CRON_TZ=UTC @daily",
                utc(2024, 1, 1, 0, 0, 0),
                utc(2024, 1, 2, 0, 0, 0),
            ),
            (
                "CRON_TZ=UTC @midnight",
                utc(2024, 1, 1, 23, 59, 0),
                utc(2024, 1, 2, 0, 0, 0),
            ),
            (
                "CRON_TZ=UTC @hourly",
                utc(2024, 1, 1, 10, 0, 1),
                utc(2024, 1, 1, 11, 0, 0),
            ),
            (
                "TZ=UTC 15 10 * * *",
                utc(2024, 1, 1, 10, 14, 59),
                utc(2024, 1, 1, 10, 15, 0),
            ),
            // Berlin is UTC+1 in January, UTC+2 in July.
            (
                "CRON_TZ=Europe/Berlin 0 3 * * *",
                utc(2024, 1, 1, 0, 0, 0),
                utc(2024, 1, 1, 2, 0, 0),
            ),
            (
                "CRON_TZ=Europe/Berlin 0 3 * * *",
                utc(2024, 7, 1, 0, 0, 0),
                utc(2024, 7, 1, 1, 0, 0),
            ),
            (
                "TZ=Asia/Kolkata @daily",
                utc(2024, 1, 1, 0, 0, 0),
                utc(2024, 1, 1, 18, 30, 0),
            ),
        ];
        for (spec, now, want) in cases {
            assert_eq!(
                parse(spec).next_after(now),
                Some(want),
                "{spec:?} after {now}"
            );
        }
    }

    #[test]
    fn next_run_is_strictly_after_and_ignores_fractions_of_a_second() {
        let schedule = parse("CRON_TZ=UTC 0 12 * * *");
        let noon = utc(2024, 1, 1, 12, 0, 0);
        let half = chrono::TimeDelta::milliseconds(500);
        assert_eq!(schedule.next_after(noon - half), Some(noon));
        assert_eq!(
            schedule.next_after(noon),
            Some(noon + chrono::TimeDelta::days(1))
        );
        assert_eq!(
            schedule.next_after(noon + half),
            Some(noon + chrono::TimeDelta::days(1))
        );
    }

    #[test]
    fn default_schedule_fires_at_midnight_and_noon() {
        let got = runs("CRON_TZ=UTC 0 */12 * * *", utc(2024, 2, 28, 7, 0, 0), 5);
        assert_eq!(
            got,
            [
                utc(2024, 2, 28, 12, 0, 0),
                utc(2024, 2, 29, 0, 0, 0),
                utc(2024, 2, 29, 12, 0, 0),
                utc(2024, 3, 1, 0, 0, 0),
                utc(2024, 3, 1, 12, 0, 0),
            ]
        );
    }

    #[test]
    fn default_schedule_runs_in_local_time() {
        let schedule = parse(DEFAULT_SCHEDULE);
        let mut t = utc(2024, 5, 1, 0, 0, 0);
        for _ in 0..6 {
            t = schedule.next_after(t).unwrap();
            let local = t.with_timezone(&Local);
            assert_eq!((local.minute(), local.second()), (0, 0), "{local}");
            assert!(local.hour() == 0 || local.hour() == 12, "{local}");
        }
    }

    #[test]
    fn every_counts_from_the_previous_run_in_whole_seconds() {
        let schedule = parse("@every 30s");
        assert_eq!(schedule.every(), Some(Duration::from_secs(30)));
        let start = utc(2024, 1, 1, 10, 0, 0) + chrono::TimeDelta::milliseconds(700);
        assert_eq!(
            runs("@every 30s", start, 3),
            [
                utc(2024, 1, 1, 10, 0, 30),
                utc(2024, 1, 1, 10, 1, 0),
                utc(2024, 1, 1, 10, 1, 30),
            ]
        );
        let cases = [
            ("@every 1h30m", 5_400),
            ("@every 1.5h", 5_400),
            ("@every 1ns", 1),
            ("@every 500ms", 1),
            ("@every 1.9s", 1),
            ("@every 2500ms", 2),
            ("@every 5m0s", 300),
            ("CRON_TZ=Asia/Tokyo @every 10s", 10),
        ];
        for (spec, secs) in cases {
            let schedule = parse(spec);
            assert_eq!(schedule.every(), Some(Duration::from_secs(secs)), "{spec}");
            let now = utc(2024, 1, 1, 0, 0, 0);
            assert_eq!(
                schedule.next_after(now),
                Some(now + chrono::TimeDelta::seconds(secs as i64)),
                "{spec}"
            );
        }
        assert_eq!(parse("@daily").every(), None);
    }

    #[test]
    fn day_of_month_and_day_of_week_combine_like_robfig() {
        // Both restricted: either matches. 2024-01-01 is a Monday.
        let got = runs("CRON_TZ=UTC 0 0 13 * 5", utc(2024, 1, 1, 0, 0, 0), 4);
        assert_eq!(
            got,
            [
                utc(2024, 1, 5, 0, 0, 0),
                utc(2024, 1, 12, 0, 0, 0),
                utc(2024, 1, 13, 0, 0, 0),
                utc(2024, 1, 19, 0, 0, 0),
            ]
        );
        // A wildcard on either side (`*`, `?`, `*/1`): the other one decides alone.
        for spec in [
            "CRON_TZ=UTC 0 0 * * 5",
            "CRON_TZ=UTC 0 0 ? * 5",
            "CRON_TZ=UTC 0 0 */1 * 5",
            "CRON_TZ=UTC 0 0 *,3 * 5",
        ] {
            let got = runs(spec, utc(2024, 1, 1, 0, 0, 0), 2);
            assert_eq!(
                got,
                [utc(2024, 1, 5, 0, 0, 0), utc(2024, 1, 12, 0, 0, 0)],
                "{spec}"
            );
        }
        for spec in [
            "CRON_TZ=UTC 0 0 13 * *",
            "CRON_TZ=UTC 0 0 13 * ?",
            "CRON_TZ=UTC 0 0 13 * */1",
        ] {
            let got = runs(spec, utc(2024, 1, 1, 0, 0, 0), 2);
            assert_eq!(
                got,
                [utc(2024, 1, 13, 0, 0, 0), utc(2024, 2, 13, 0, 0, 0)],
                "{spec}"
            );
        }
        // A step above 1 is no wildcard: `*/10` days or Fridays.
        let got = runs("CRON_TZ=UTC 0 0 */10 * 5", utc(2024, 1, 1, 0, 0, 0), 4);
        assert_eq!(
            got,
            [
                utc(2024, 1, 5, 0, 0, 0),
                utc(2024, 1, 11, 0, 0, 0),
                utc(2024, 1, 12, 0, 0, 0),
                utc(2024, 1, 19, 0, 0, 0),
            ]
        );
        // A full range written out is no wildcard either: every day matches through day-of-month.
        let got = runs("CRON_TZ=UTC 0 0 1-31 * 5", utc(2024, 1, 1, 0, 0, 0), 2);
        assert_eq!(got, [utc(2024, 1, 2, 0, 0, 0), utc(2024, 1, 3, 0, 0, 0)]);
    }

    #[test]
    fn names_are_case_insensitive_and_field_specific() {
        let got = runs("CRON_TZ=UTC 0 0 1 FeB,oCt *", utc(2024, 1, 1, 0, 0, 0), 2);
        assert_eq!(got, [utc(2024, 2, 1, 0, 0, 0), utc(2024, 10, 1, 0, 0, 0)]);
        let got = runs("CRON_TZ=UTC 0 0 * * SAT", utc(2024, 1, 1, 0, 0, 0), 1);
        assert_eq!(got[0].weekday(), chrono::Weekday::Sat);
    }

    #[test]
    fn feb_29_is_found_across_a_century_without_leap_day() {
        let got = parse("CRON_TZ=UTC 0 0 29 2 *").next_after(utc(2096, 3, 1, 0, 0, 0));
        assert_eq!(got, Some(utc(2104, 2, 29, 0, 0, 0)));
    }
}
