//! Count-based retention as K3s applies it: among a store's files whose name starts with a
//! prefix, keep the newest N and delete the rest (with their extra metadata). The choice is a
//! pure function over records; [`apply_retention`] runs it against any [`SnapshotStore`], so the
//! rule is written once for every store. What "newest" means and whether files below
//! sub-directories count is the store's [`RetentionRule`] (local: the time in the name,
//! recursively; S3: LastModified, the folder's own objects), as K3s has it.
//!
//! Two rules beyond K3s: a name whose time lies in the future (a copied or hand-named file, a
//! clock that was wrong) is ordered by when the file was written, not by its name, else it
//! would outrank every new snapshot for ever and retention would delete each one as it is
//! taken; and the snapshot a save has just written is never deleted by that save's retention.

use chrono::{DateTime, Utc};

use crate::Result;
use crate::naming::{future_name_time, parse_snapshot_time};
use crate::store::{
    ListDetail, RetentionOrder, RetentionRule, SnapshotRecord, SnapshotStatus, SnapshotStore,
};

fn order_time(r: &SnapshotRecord, order: RetentionOrder, now: DateTime<Utc>) -> DateTime<Utc> {
    match order {
        RetentionOrder::NameTime => match parse_snapshot_time(&r.name) {
            Some(t) if future_name_time(&r.name, now).is_none() => t,
            _ => r.modified,
        },
        RetentionOrder::Modified => r.modified,
    }
}

/// What a retention pass is told besides the count.
#[derive(Debug, Clone, Copy)]
pub struct RetentionContext<'a> {
    /// The time names are compared with: a name later than this (beyond a small slack) is
    /// from the future.
    pub now: DateTime<Utc>,
    /// The file the save has just written (its key in the store): always kept.
    pub just_taken: Option<&'a str>,
}

impl RetentionContext<'_> {
    /// Now, with no file to protect (prune, reconcile).
    pub fn now() -> RetentionContext<'static> {
        RetentionContext {
            now: Utc::now(),
            just_taken: None,
        }
    }
}

/// The records to delete so that at most `keep` files whose name starts with `prefix` remain,
/// newest kept. `keep < 1` disables retention. Ties on time keep the name that sorts last, so
/// the choice is deterministic. Failed records (no file) are never candidates, and the file
/// just taken counts as the newest.
pub fn select_for_deletion<'a>(
    records: &'a [SnapshotRecord],
    prefix: &str,
    keep: i64,
    rule: RetentionRule,
    ctx: RetentionContext<'_>,
) -> Vec<&'a SnapshotRecord> {
    if keep < 1 {
        return Vec::new();
    }
    let mut matching: Vec<(&SnapshotRecord, bool, DateTime<Utc>)> = records
        .iter()
        .filter(|r| r.status == SnapshotStatus::Successful)
        .filter(|r| r.name.starts_with(prefix))
        .filter(|r| rule.nested || !r.key.contains('/'))
        .map(|r| {
            let protected = ctx.just_taken == Some(r.key.as_str());
            (r, protected, order_time(r, rule.order, ctx.now))
        })
        .collect();
    let keep = keep as usize;
    if matching.len() <= keep {
        return Vec::new();
    }
    matching.sort_by(|(a, pa, ta), (b, pb, tb)| {
        pb.cmp(pa)
            .then_with(|| tb.cmp(ta))
            .then_with(|| b.name.cmp(&a.name))
    });
    matching[keep..].iter().map(|(r, _, _)| *r).collect()
}

/// Applies retention `keep` to `store`'s files named `prefix*`; returns the deleted names. The
/// first failed delete stops it (files already deleted are still reported in the log). Names
/// from the future are warned about, once per pass.
pub async fn apply_retention(
    store: &dyn SnapshotStore,
    prefix: &str,
    keep: i64,
    ctx: RetentionContext<'_>,
) -> Result<Vec<String>> {
    if keep < 1 {
        return Ok(Vec::new());
    }
    tracing::info!(
        "Applying snapshot retention={keep} to {} with prefix {prefix}",
        store.describe()
    );
    let records = store.list(ListDetail::Basic).await?;
    let rule = store.retention_rule();
    for r in records.iter().filter(|r| r.name.starts_with(prefix)) {
        if let Some(t) = future_name_time(&r.name, ctx.now) {
            tracing::warn!(
                "snapshot {} in {} is named for {}, in the future: retention orders it by when it was written ({}){}; rename or remove it (the digits after its last - are its unix time)",
                r.name,
                store.describe(),
                t.to_rfc3339(),
                r.modified.to_rfc3339(),
                match rule.order {
                    RetentionOrder::NameTime => ", not by its name",
                    RetentionOrder::Modified => "",
                }
            );
        }
    }
    let mut deleted = Vec::new();
    for r in select_for_deletion(&records, prefix, keep, rule, ctx) {
        tracing::info!("Removing {} snapshot {}", store.kind(), r.location);
        store.delete(&r.key).await?;
        deleted.push(r.name.clone());
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str, modified: i64) -> SnapshotRecord {
        let name = key.rsplit('/').next().unwrap().to_string();
        let t = DateTime::from_timestamp(modified, 0).unwrap();
        SnapshotRecord {
            name,
            key: key.into(),
            location: format!("file:///d/{key}"),
            node_name: "n1".into(),
            node_source: None,
            created_at: t,
            modified: t,
            size: 1,
            status: SnapshotStatus::Successful,
            message: None,
            compressed: false,
            metadata: None,
            token_hash: None,
            s3: None,
        }
    }

    const LOCAL: RetentionRule = RetentionRule {
        order: RetentionOrder::NameTime,
        nested: true,
    };
    const S3: RetentionRule = RetentionRule {
        order: RetentionOrder::Modified,
        nested: false,
    };

    fn at(now: i64) -> RetentionContext<'static> {
        RetentionContext {
            now: DateTime::from_timestamp(now, 0).unwrap(),
            just_taken: None,
        }
    }

    fn names(v: Vec<&SnapshotRecord>) -> Vec<&str> {
        v.into_iter().map(|r| r.key.as_str()).collect()
    }

    #[test]
    fn retention_cases() {
        // The names' times and the files' mtimes disagree on purpose: local retention orders by
        // the name, S3 retention by when the object was written.
        let files = vec![
            rec("etcd-snapshot-n1-100", 900),
            rec("etcd-snapshot-n2-300", 800),
            rec("etcd-snapshot-n1-200.zip", 700),
            rec("on-demand-n1-50", 600),
            rec("etcd-snapshot-n1-400", 500),
            rec("unrelated", 1),
            rec("sub/etcd-snapshot-n1-50", 1000),
        ];
        struct Case {
            prefix: &'static str,
            keep: i64,
            rule: RetentionRule,
            want: &'static [&'static str],
        }
        let cases = [
            Case {
                prefix: "etcd-snapshot",
                keep: 2,
                rule: LOCAL,
                want: &[
                    "etcd-snapshot-n1-200.zip",
                    "etcd-snapshot-n1-100",
                    "sub/etcd-snapshot-n1-50",
                ],
            },
            Case {
                prefix: "etcd-snapshot",
                keep: 2,
                rule: S3,
                want: &["etcd-snapshot-n1-200.zip", "etcd-snapshot-n1-400"],
            },
            Case {
                prefix: "etcd-snapshot",
                keep: 5,
                rule: LOCAL,
                want: &[],
            },
            Case {
                prefix: "etcd-snapshot",
                keep: 4,
                rule: S3,
                want: &[],
            },
            Case {
                prefix: "etcd-snapshot",
                keep: 1,
                rule: LOCAL,
                want: &[
                    "etcd-snapshot-n2-300",
                    "etcd-snapshot-n1-200.zip",
                    "etcd-snapshot-n1-100",
                    "sub/etcd-snapshot-n1-50",
                ],
            },
            Case {
                prefix: "etcd-snapshot",
                keep: 0,
                rule: LOCAL,
                want: &[],
            },
            Case {
                prefix: "etcd-snapshot",
                keep: -3,
                rule: S3,
                want: &[],
            },
            Case {
                prefix: "on-demand",
                keep: 1,
                rule: LOCAL,
                want: &[],
            },
            Case {
                prefix: "etcd-snapshot-n2",
                keep: 1,
                rule: LOCAL,
                want: &[],
            },
            Case {
                prefix: "",
                keep: 6,
                rule: LOCAL,
                want: &["unrelated"],
            },
        ];
        for case in cases {
            let got = names(select_for_deletion(
                &files,
                case.prefix,
                case.keep,
                case.rule,
                at(10_000),
            ));
            assert_eq!(
                got, case.want,
                "prefix {} keep {} {:?}",
                case.prefix, case.keep, case.rule
            );
        }
    }

    #[test]
    fn equal_times_are_deterministic_and_failures_never_count() {
        let files = vec![rec("a-x", 1), rec("a-y", 1), rec("a-z", 1)];
        assert_eq!(
            names(select_for_deletion(&files, "a", 1, S3, at(10))),
            ["a-y", "a-x"]
        );
        let mut failed = rec("a-9", 9);
        failed.status = SnapshotStatus::Failed;
        let files = vec![rec("a-1", 1), failed];
        assert!(select_for_deletion(&files, "a", 1, LOCAL, at(10)).is_empty());
    }

    #[test]
    fn names_from_the_future_are_ordered_by_when_they_were_written() {
        // Now is 10_000. A copy named for the year 2100 was written at 9_000; snapshots taken
        // since were written when their names say.
        let files = vec![
            rec("etcd-snapshot-x-4102444800", 9_000),
            rec("etcd-snapshot-n1-8000", 8_000),
            rec("etcd-snapshot-n1-9500", 9_500),
            rec("etcd-snapshot-n1-9990", 9_990),
        ];
        struct Case {
            keep: i64,
            rule: RetentionRule,
            just_taken: Option<&'static str>,
            want: &'static [&'static str],
        }
        let cases = [
            Case {
                keep: 2,
                rule: LOCAL,
                just_taken: Some("etcd-snapshot-n1-9990"),
                want: &["etcd-snapshot-x-4102444800", "etcd-snapshot-n1-8000"],
            },
            Case {
                keep: 3,
                rule: LOCAL,
                just_taken: None,
                want: &["etcd-snapshot-n1-8000"],
            },
            Case {
                keep: 2,
                rule: S3,
                just_taken: None,
                want: &["etcd-snapshot-x-4102444800", "etcd-snapshot-n1-8000"],
            },
        ];
        for case in cases {
            let ctx = RetentionContext {
                just_taken: case.just_taken,
                ..at(10_000)
            };
            let got = names(select_for_deletion(
                &files,
                "etcd-snapshot",
                case.keep,
                case.rule,
                ctx,
            ));
            assert_eq!(got, case.want, "keep {} {:?}", case.keep, case.rule);
        }
        // Within the slack, a name a little ahead of the clock still orders by its name.
        let skewed = vec![
            rec("etcd-snapshot-n2-10100", 9_000),
            rec("etcd-snapshot-n1-9990", 9_990),
        ];
        assert_eq!(
            names(select_for_deletion(
                &skewed,
                "etcd-snapshot",
                1,
                LOCAL,
                at(10_000)
            )),
            ["etcd-snapshot-n1-9990"]
        );
    }

    #[test]
    fn the_file_just_taken_is_never_deleted() {
        // Its mtime lies before the others' (a clock stepped back, or an S3 server's clock
        // behind ours): still kept, and it counts as one of those kept.
        let files = vec![rec("a-1", 50), rec("a-2", 60), rec("a-3", 10)];
        for rule in [LOCAL, S3] {
            let ctx = RetentionContext {
                just_taken: Some("a-3"),
                ..at(100)
            };
            let got = names(select_for_deletion(&files, "a", 1, rule, ctx));
            assert_eq!(got, ["a-2", "a-1"], "{rule:?}");
            let got = names(select_for_deletion(&files, "a", 2, rule, ctx));
            assert_eq!(got, ["a-1"], "{rule:?}");
        }
    }
}
