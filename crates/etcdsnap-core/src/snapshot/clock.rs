//! The clock a snapshot's name is read from. A name carries the second it was taken
//! (`<prefix>-<node>-<unix seconds>`, [`crate::naming::snapshot_base_name`]) and the engine takes
//! that second here and nowhere else: the system clock in production; tests can set it, so that
//! they never wait for the wall clock to reach a new second.

use chrono::{DateTime, Utc};

/// The time a snapshot taken now is named for: the system clock, unless a test set it
/// ([`fake`] in unit tests, [`distinct`] in debug builds).
pub(super) fn name_time() -> DateTime<Utc> {
    #[cfg(test)]
    if let Some(t) = fake::next() {
        return t;
    }
    let now = Utc::now();
    if cfg!(debug_assertions) {
        distinct::apply(now)
    } else {
        now
    }
}

/// Debug builds only, a test hook: with `ETCDSNAP_TEST_DISTINCT_NAME_SECONDS=1` in the
/// environment of the process that saves (the server), every name takes a later second than
/// the name before it in that process: the clock's own second once it has moved on, else the
/// previous one plus one. A test taking several snapshots in a row then gets distinct names in
/// the order taken at once, where the engine would wait for the next second (one name per
/// second, as K3s names them) and a test saving under two prefixes would have to wait for the
/// order to show. Names run ahead of the clock by at most one second per save within a second,
/// far inside [`crate::naming::FUTURE_NAME_SLACK`]. Unset, and in release builds, names take the
/// system clock unchanged.
mod distinct {
    use std::sync::Mutex;

    use chrono::{DateTime, Utc};

    use crate::naming::rounded_unix;

    /// The variable that turns the hook on (value `1`).
    const VAR: &str = "ETCDSNAP_TEST_DISTINCT_NAME_SECONDS";

    /// The second of the last name handed out.
    static LAST: Mutex<Option<i64>> = Mutex::new(None);

    pub(super) fn apply(now: DateTime<Utc>) -> DateTime<Utc> {
        if std::env::var_os(VAR).is_none_or(|v| v != "1") {
            return now;
        }
        let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
        let t = match *last {
            Some(l) if rounded_unix(now) <= l => DateTime::from_timestamp(l + 1, 0).unwrap_or(now),
            _ => now,
        };
        *last = Some(rounded_unix(t));
        t
    }
}

/// Unit tests: the times the next names on this thread take, in order (then the system clock
/// again). `#[tokio::test]` runs the engine on the test's own thread.
#[cfg(test)]
pub(crate) mod fake {
    use std::cell::RefCell;
    use std::collections::VecDeque;

    use chrono::{DateTime, Utc};

    thread_local! {
        static TIMES: RefCell<VecDeque<DateTime<Utc>>> = const { RefCell::new(VecDeque::new()) };
    }

    /// The next names on this thread take `times`, one each, in order.
    pub(crate) fn set(times: impl IntoIterator<Item = DateTime<Utc>>) {
        TIMES.with(|t| *t.borrow_mut() = times.into_iter().collect());
    }

    pub(super) fn next() -> Option<DateTime<Utc>> {
        TIMES.with(|t| t.borrow_mut().pop_front())
    }
}
