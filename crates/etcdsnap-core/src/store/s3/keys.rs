//! Object keys and the pure decisions made over listings: which object is a snapshot, which is
//! extra metadata, the timestamp of a name, and which objects retention removes.
//!
//! The folder is a directory: `k3s` holds `k3s/x` but not `k3s-old/x` (K3s matched the raw
//! prefix; reference §11 lists appending `/` as a deliberate fix).

use chrono::{DateTime, TimeZone, Utc};

/// Name of the directory, beside the snapshots, that holds extra-metadata objects.
pub const METADATA_DIR: &str = ".metadata";

/// `<folder>/<file>`, or `<file>` when the folder is empty. `folder` is already trimmed.
pub fn object_key(folder: &str, file_name: &str) -> String {
    if folder.is_empty() {
        file_name.to_string()
    } else {
        format!("{folder}/{file_name}")
    }
}

/// `<folder>/.metadata/<file>`.
pub fn metadata_key(folder: &str, file_name: &str) -> String {
    object_key(folder, &format!("{METADATA_DIR}/{file_name}"))
}

/// `s3://<bucket>/<key>`.
pub fn location(bucket: &str, key: &str) -> String {
    format!("s3://{bucket}/{key}")
}

/// A plain file name usable as the last component of a key.
pub fn check_file_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
        return Err(format!("invalid snapshot name {name:?}"));
    }
    Ok(())
}

/// What an object found under the folder is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectKind<'a> {
    /// A snapshot; `name` is the basename and `dir` the key up to and including the last `/`.
    Snapshot { dir: &'a str, name: &'a str },
    /// `<dir>.metadata/<name>`: the extra metadata of snapshot `<dir><name>`.
    Metadata { dir: &'a str, name: &'a str },
    /// Something else that is not listed: outside the folder, a directory marker, or deeper
    /// inside a `.metadata` directory.
    Ignored,
}

/// Classifies `key` relative to `folder` (trimmed; empty means the whole bucket).
pub fn classify<'a>(folder: &str, key: &'a str) -> ObjectKind<'a> {
    let rel = if folder.is_empty() {
        key
    } else {
        match key.strip_prefix(folder).and_then(|r| r.strip_prefix('/')) {
            Some(r) => r,
            None => return ObjectKind::Ignored,
        }
    };
    if rel.is_empty() || rel.ends_with('/') {
        return ObjectKind::Ignored;
    }
    let parts: Vec<&str> = rel.split('/').collect();
    let n = parts.len();
    if parts[..n - 1].contains(&METADATA_DIR) {
        if n >= 2 && parts[n - 2] == METADATA_DIR && !parts[..n - 2].contains(&METADATA_DIR) {
            let name = parts[n - 1];
            let dir_len = key.len() - name.len() - METADATA_DIR.len() - 1;
            return ObjectKind::Metadata {
                dir: &key[..dir_len],
                name,
            };
        }
        return ObjectKind::Ignored;
    }
    let name = parts[n - 1];
    ObjectKind::Snapshot {
        dir: &key[..key.len() - name.len()],
        name,
    }
}

/// The timestamp in a snapshot name: `.zip` stripped, the digits after the last `-` as unix
/// seconds. `None` when they do not parse.
pub fn name_timestamp(name: &str) -> Option<DateTime<Utc>> {
    let base = name.strip_suffix(".zip").unwrap_or(name);
    let (_, digits) = base.rsplit_once('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = digits.parse().ok()?;
    Utc.timestamp_opt(secs, 0).single()
}

/// One candidate for retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionCandidate {
    pub name: String,
    pub key: String,
    pub last_modified: DateTime<Utc>,
}

/// The candidates to delete so that the `keep` newest by LastModified remain (ties: the larger
/// name is newer). `keep < 1` deletes nothing.
pub fn retention_victims(
    mut candidates: Vec<RetentionCandidate>,
    keep: i64,
) -> Vec<RetentionCandidate> {
    if keep < 1 || candidates.len() as u64 <= keep as u64 {
        return Vec::new();
    }
    candidates.sort_by(|a, b| {
        b.last_modified
            .cmp(&a.last_modified)
            .then_with(|| b.name.cmp(&a.name))
    });
    candidates.split_off(keep as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_locations() {
        assert_eq!(object_key("", "s-1"), "s-1");
        assert_eq!(object_key("a/b", "s-1"), "a/b/s-1");
        assert_eq!(metadata_key("", "s-1"), ".metadata/s-1");
        assert_eq!(metadata_key("k3s", "s-1.zip"), "k3s/.metadata/s-1.zip");
        assert_eq!(location("bk", "k3s/s-1"), "s3://bk/k3s/s-1");
        assert!(check_file_name("on-demand-n1-1").is_ok());
        for bad in ["", ".", "..", "a/b", "a\\b"] {
            assert!(check_file_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn folder_is_a_directory() {
        use ObjectKind::*;
        let cases: &[(&str, &str, ObjectKind)] = &[
            (
                "k3s",
                "k3s/snap-1",
                Snapshot {
                    dir: "k3s/",
                    name: "snap-1",
                },
            ),
            ("k3s", "k3s-old/snap-1", Ignored),
            ("k3s", "k3ssnap-1", Ignored),
            ("k3s", "k3s/", Ignored),
            ("k3s", "k3s/sub/", Ignored),
            (
                "k3s",
                "k3s/.metadata/snap-1",
                Metadata {
                    dir: "k3s/",
                    name: "snap-1",
                },
            ),
            ("k3s", "k3s/.metadata/deeper/x", Ignored),
            ("k3s", "k3s/.metadata/.metadata/x", Ignored),
            (
                "k3s",
                "k3s/sub/snap-2",
                Snapshot {
                    dir: "k3s/sub/",
                    name: "snap-2",
                },
            ),
            (
                "",
                "snap-3",
                Snapshot {
                    dir: "",
                    name: "snap-3",
                },
            ),
            (
                "",
                ".metadata/snap-3",
                Metadata {
                    dir: "",
                    name: "snap-3",
                },
            ),
            (
                "a/b",
                "a/b/.metadata/s",
                Metadata {
                    dir: "a/b/",
                    name: "s",
                },
            ),
            ("a/b", "a/bc/s", Ignored),
        ];
        for (folder, key, want) in cases {
            assert_eq!(&classify(folder, key), want, "{folder} {key}");
        }
    }

    #[test]
    fn timestamps_from_names() {
        let t = |s| Utc.timestamp_opt(s, 0).single();
        assert_eq!(name_timestamp("on-demand-n1-1730308816"), t(1730308816));
        assert_eq!(name_timestamp("on-demand-n1-1730308816.zip"), t(1730308816));
        assert_eq!(name_timestamp("etcd-snapshot-a-b-c-5"), t(5));
        assert_eq!(name_timestamp("nodash"), None);
        assert_eq!(name_timestamp("x-"), None);
        assert_eq!(name_timestamp("x-12a"), None);
        assert_eq!(name_timestamp("x-+12"), None);
        assert_eq!(name_timestamp("x-1730308816.tar"), None);
    }

    #[test]
    fn retention_keeps_newest_by_last_modified() {
        let c = |name: &str, secs: i64| RetentionCandidate {
            name: name.into(),
            key: format!("f/{name}"),
            last_modified: Utc.timestamp_opt(secs, 0).unwrap(),
        };
        // Names say n1 is newest; LastModified says otherwise and wins.
        let all = vec![
            c("s-n1-900", 100),
            c("s-n2-100", 400),
            c("s-n1-500", 300),
            c("s-n2-050", 200),
        ];
        let names = |v: Vec<RetentionCandidate>| v.into_iter().map(|c| c.name).collect::<Vec<_>>();
        assert_eq!(
            names(retention_victims(all.clone(), 2)),
            ["s-n2-050", "s-n1-900"]
        );
        assert_eq!(names(retention_victims(all.clone(), 3)), ["s-n1-900"]);
        assert!(retention_victims(all.clone(), 4).is_empty());
        assert!(retention_victims(all.clone(), 10).is_empty());
        assert!(retention_victims(all.clone(), 0).is_empty());
        assert!(retention_victims(all.clone(), -1).is_empty());
        assert_eq!(names(retention_victims(all, 1)).len(), 3);
        // Equal times: the larger name counts as newer.
        let tie = vec![c("s-a", 5), c("s-b", 5), c("s-c", 5)];
        assert_eq!(names(retention_victims(tie, 1)), ["s-b", "s-a"]);
    }
}
