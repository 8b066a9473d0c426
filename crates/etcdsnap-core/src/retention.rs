//! Count-based retention as K3s applies it: among a store's files whose name starts with a
//! prefix, keep the newest N and delete the rest (with their extra metadata). The choice is a
//! pure function over records; [`apply_retention`] runs it against any [`SnapshotStore`], so the
//! rule is written once for every store. What "newest" means and whether files below
//! sub-directories count is the store's [`RetentionRule`] (local: the time in the name,
//! recursively; S3: LastModified, the folder's own objects), as K3s has it.

use chrono::{DateTime, Utc};

use crate::Result;
use crate::naming::parse_snapshot_time;
use crate::store::{
    ListDetail, RetentionOrder, RetentionRule, SnapshotRecord, SnapshotStatus, SnapshotStore,
};

fn order_time(r: &SnapshotRecord, order: RetentionOrder) -> DateTime<Utc> {
    match order {
        RetentionOrder::NameTime => parse_snapshot_time(&r.name).unwrap_or(r.modified),
        RetentionOrder::Modified => r.modified,
    }
}

/// The records to delete so that at most `keep` files whose name starts with `prefix` remain,
/// newest kept. `keep < 1` disables retention. Ties on time keep the name that sorts last, so
/// the choice is deterministic. Failed records (no file) are never candidates.
pub fn select_for_deletion<'a>(
    records: &'a [SnapshotRecord],
    prefix: &str,
    keep: i64,
    rule: RetentionRule,
) -> Vec<&'a SnapshotRecord> {
    if keep < 1 {
        return Vec::new();
    }
    let mut matching: Vec<(&SnapshotRecord, DateTime<Utc>)> = records
        .iter()
        .filter(|r| r.status == SnapshotStatus::Successful)
        .filter(|r| r.name.starts_with(prefix))
        .filter(|r| rule.nested || !r.key.contains('/'))
        .map(|r| (r, order_time(r, rule.order)))
        .collect();
    let keep = keep as usize;
    if matching.len() <= keep {
        return Vec::new();
    }
    matching.sort_by(|(a, ta), (b, tb)| tb.cmp(ta).then_with(|| b.name.cmp(&a.name)));
    matching[keep..].iter().map(|(r, _)| *r).collect()
}

/// Applies retention `keep` to `store`'s files named `prefix*`; returns the deleted names. The
/// first failed delete stops it (files already deleted are still reported in the log).
pub async fn apply_retention(
    store: &dyn SnapshotStore,
    prefix: &str,
    keep: i64,
) -> Result<Vec<String>> {
    if keep < 1 {
        return Ok(Vec::new());
    }
    tracing::info!(
        "Applying snapshot retention={keep} to {} with prefix {prefix}",
        store.describe()
    );
    let records = store.list(ListDetail::Basic).await?;
    let mut deleted = Vec::new();
    for r in select_for_deletion(&records, prefix, keep, store.retention_rule()) {
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
            names(select_for_deletion(&files, "a", 1, S3)),
            ["a-y", "a-x"]
        );
        let mut failed = rec("a-9", 9);
        failed.status = SnapshotStatus::Failed;
        let files = vec![rec("a-1", 1), failed];
        assert!(select_for_deletion(&files, "a", 1, LOCAL).is_empty());
    }
}
