//! Object keys and the pure decisions made over listings: which object is a snapshot and which
//! is extra metadata.
//!
//! The folder is a directory: `k3s` holds `k3s/x` but not `k3s-old/x` (K3s matched the raw
//! prefix; reference §11 lists appending `/` as a deliberate fix).

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

/// `<scheme>://<bucket>/<key>`: `s3://`, `gs://` or `azure://`.
pub fn location(scheme: &str, bucket: &str, key: &str) -> String {
    format!("{scheme}://{bucket}/{key}")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_locations() {
        assert_eq!(object_key("", "s-1"), "s-1");
        assert_eq!(object_key("a/b", "s-1"), "a/b/s-1");
        assert_eq!(metadata_key("", "s-1"), ".metadata/s-1");
        assert_eq!(metadata_key("k3s", "s-1.zip"), "k3s/.metadata/s-1.zip");
        assert_eq!(location("s3", "bk", "k3s/s-1"), "s3://bk/k3s/s-1");
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
}
