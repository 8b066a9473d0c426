//! Count-based retention as K3s applies it: among files whose name starts with a prefix, keep the
//! newest N and delete the rest. Pure choice over a list; stores do the deleting.

use chrono::{DateTime, Utc};

/// A candidate for retention: its name and the time that orders it (the time in the name for
/// local files, LastModified for S3 objects).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub name: String,
    pub time: DateTime<Utc>,
}

/// The names to delete so that at most `keep` files starting with `prefix` remain, newest kept.
/// `keep < 1` disables retention. Ties on time keep the name that sorts last, so the choice is
/// deterministic.
pub fn select_for_deletion(candidates: &[Candidate], prefix: &str, keep: i64) -> Vec<String> {
    if keep < 1 {
        return Vec::new();
    }
    let mut matching: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| c.name.starts_with(prefix))
        .collect();
    let keep = keep as usize;
    if matching.len() <= keep {
        return Vec::new();
    }
    matching.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.name.cmp(&a.name)));
    matching[keep..].iter().map(|c| c.name.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str, t: i64) -> Candidate {
        Candidate {
            name: name.into(),
            time: DateTime::from_timestamp(t, 0).unwrap(),
        }
    }

    #[test]
    fn retention_cases() {
        let files = vec![
            c("etcd-snapshot-n1-100", 100),
            c("etcd-snapshot-n2-300", 300),
            c("etcd-snapshot-n1-200.zip", 200),
            c("on-demand-n1-50", 50),
            c("etcd-snapshot-n1-400", 400),
            c("unrelated", 1),
        ];
        struct Case {
            prefix: &'static str,
            keep: i64,
            want: &'static [&'static str],
        }
        let cases = [
            Case {
                prefix: "etcd-snapshot",
                keep: 2,
                want: &["etcd-snapshot-n1-200.zip", "etcd-snapshot-n1-100"],
            },
            Case {
                prefix: "etcd-snapshot",
                keep: 4,
                want: &[],
            },
            Case {
                prefix: "etcd-snapshot",
                keep: 5,
                want: &[],
            },
            Case {
                prefix: "etcd-snapshot",
                keep: 1,
                want: &[
                    "etcd-snapshot-n2-300",
                    "etcd-snapshot-n1-200.zip",
                    "etcd-snapshot-n1-100",
                ],
            },
            Case {
                prefix: "etcd-snapshot",
                keep: 0,
                want: &[],
            },
            Case {
                prefix: "etcd-snapshot",
                keep: -3,
                want: &[],
            },
            Case {
                prefix: "on-demand",
                keep: 1,
                want: &[],
            },
            Case {
                prefix: "on-demand",
                keep: 0,
                want: &[],
            },
            Case {
                prefix: "etcd-snapshot-n2",
                keep: 1,
                want: &[],
            },
            Case {
                prefix: "",
                keep: 5,
                want: &["unrelated"],
            },
        ];
        for case in cases {
            let got = select_for_deletion(&files, case.prefix, case.keep);
            assert_eq!(got, case.want, "prefix {} keep {}", case.prefix, case.keep);
        }
    }

    #[test]
    fn equal_times_are_deterministic() {
        let files = vec![c("a-1", 1), c("a-2", 1), c("a-3", 1)];
        assert_eq!(select_for_deletion(&files, "a", 1), vec!["a-2", "a-1"]);
    }
}
