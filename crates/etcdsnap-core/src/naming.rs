//! Snapshot file names and the names derived from them, in K3s's formats:
//! `<prefix>-<node>-<unix seconds>[.zip]`, legacy map keys `local-…`/`s3-…`, and
//! ETCDSnapshotFile object names; beyond K3s, `.zst` for zstd-compressed snapshots, which K3s
//! cannot read. Pure functions; no I/O.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// Suffix of compressed snapshots in K3s's format (a zip archive of one deflated entry).
pub const ZIP_SUFFIX: &str = ".zip";
/// Suffix of zstd-compressed snapshots (one zstd stream of the raw snapshot; not K3s's).
pub const ZSTD_SUFFIX: &str = ".zst";
/// Suffix of a file being written; never listed as a snapshot.
pub const PART_SUFFIX: &str = ".part";
/// Default prefix of scheduled snapshots.
pub const DEFAULT_SCHEDULED_PREFIX: &str = "etcd-snapshot";
/// Default prefix of on-demand snapshots.
pub const DEFAULT_ON_DEMAND_PREFIX: &str = "on-demand";

/// Unix seconds of `t`, rounded to the nearest second as K3s does.
pub fn rounded_unix(t: DateTime<Utc>) -> i64 {
    (t.timestamp_millis() + 500).div_euclid(1000)
}

/// `<prefix>-<node>-<unix>`: the base name of a snapshot taken at `t`.
pub fn snapshot_base_name(prefix: &str, node: &str, t: DateTime<Utc>) -> String {
    format!("{prefix}-{node}-{}", rounded_unix(t))
}

/// How a compressed snapshot is packed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum CompressFormat {
    /// K3s's format: a zip archive holding the raw snapshot as one deflated entry.
    #[default]
    Zip,
    /// A zstd stream of the raw snapshot (faster and smaller; K3s cannot read it).
    Zstd,
}

impl CompressFormat {
    /// Every format, as the flags spell them.
    pub const NAMES: [&'static str; 2] = ["zip", "zstd"];

    /// The file suffix of this format.
    pub fn suffix(self) -> &'static str {
        match self {
            CompressFormat::Zip => ZIP_SUFFIX,
            CompressFormat::Zstd => ZSTD_SUFFIX,
        }
    }

    /// The flag value naming this format.
    pub fn name(self) -> &'static str {
        match self {
            CompressFormat::Zip => "zip",
            CompressFormat::Zstd => "zstd",
        }
    }

    /// The format a file name says, if it is compressed.
    pub fn of_name(name: &str) -> Option<CompressFormat> {
        if name.ends_with(ZIP_SUFFIX) {
            Some(CompressFormat::Zip)
        } else if name.ends_with(ZSTD_SUFFIX) {
            Some(CompressFormat::Zstd)
        } else {
            None
        }
    }

    /// Parses a flag value (`zip` or `zstd`).
    pub fn parse(value: &str) -> Result<CompressFormat> {
        match value {
            "zip" => Ok(CompressFormat::Zip),
            "zstd" => Ok(CompressFormat::Zstd),
            other => Err(Error::InvalidInput(format!(
                "invalid snapshot compression format {}: use zip (K3s's format) or zstd",
                shown(other)
            ))),
        }
    }

    /// The level used when none is given: the fastest deflate level keeps a zip save near the
    /// speed of etcd's stream; zstd's own default is already faster than that.
    pub fn default_level(self) -> i64 {
        match self {
            CompressFormat::Zip => 1,
            CompressFormat::Zstd => 3,
        }
    }

    /// The levels this format takes.
    pub fn levels(self) -> std::ops::RangeInclusive<i64> {
        match self {
            CompressFormat::Zip => 1..=9,
            CompressFormat::Zstd => 1..=19,
        }
    }

    /// Checks `level` against [`Self::levels`], with a message naming the flag.
    pub fn check_level(self, level: i64) -> Result<i64> {
        let range = self.levels();
        if range.contains(&level) {
            return Ok(level);
        }
        Err(Error::InvalidInput(format!(
            "invalid compression level {level} for {}: use {} (fastest) to {} (smallest) with --etcd-snapshot-compress-level",
            self.name(),
            range.start(),
            range.end()
        )))
    }
}

/// A compression format with its level, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Compression {
    pub format: CompressFormat,
    pub level: i64,
}

impl Default for Compression {
    fn default() -> Self {
        Compression {
            format: CompressFormat::Zip,
            level: CompressFormat::Zip.default_level(),
        }
    }
}

impl Compression {
    /// `format` at `level`, or at its default level.
    pub fn new(format: CompressFormat, level: Option<i64>) -> Result<Compression> {
        let level = format.check_level(level.unwrap_or(format.default_level()))?;
        Ok(Compression { format, level })
    }

    /// A request's choice over these settings: a format the request names keeps these settings'
    /// level only when it is the same format (a zip level means nothing to zstd).
    pub fn overridden(self, format: Option<&str>, level: Option<i64>) -> Result<Compression> {
        let format = match format {
            Some(f) => CompressFormat::parse(f)?,
            None => self.format,
        };
        let level = level.or((format == self.format).then_some(self.level));
        Compression::new(format, level)
    }
}

/// Whether a file name is compressed (ends in `.zip` or `.zst`).
pub fn is_compressed(name: &str) -> bool {
    CompressFormat::of_name(name).is_some()
}

/// `name` without its compression suffix, if any.
pub fn strip_compressed_suffix(name: &str) -> &str {
    match CompressFormat::of_name(name) {
        Some(f) => &name[..name.len() - f.suffix().len()],
        None => name,
    }
}

/// The unix time encoded in a snapshot name: the digits after the last `-`, once `.zip` or
/// `.zst` is stripped. `None` when they do not parse; callers fall back to mtime or
/// LastModified.
pub fn parse_snapshot_time(name: &str) -> Option<DateTime<Utc>> {
    let base = strip_compressed_suffix(name);
    let (_, digits) = base.rsplit_once('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = digits.parse().ok()?;
    DateTime::from_timestamp(secs, 0)
}

/// How far ahead of the clock a name's time may be before it counts as from the future:
/// clocks of nodes sharing a bucket or a directory disagree by seconds, not by minutes.
pub const FUTURE_NAME_SLACK: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// The time in `name` when it lies in the future (more than [`FUTURE_NAME_SLACK`] after
/// `now`): such a name cannot be when the file was taken, so it must not order it.
pub fn future_name_time(name: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    parse_snapshot_time(name).filter(|t| *t > now + FUTURE_NAME_SLACK)
}

/// K3s's legacy map key: `<kind>-<name>` with every character outside `[-._a-zA-Z0-9]` as `_`.
pub fn legacy_key(kind: &str, name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{kind}-{clean}")
}

/// File names are at most this many bytes on Linux file systems.
pub const MAX_FILE_NAME: usize = 255;
/// The longest `--name` prefix: room is left for `-<node>-<unix>.zip.part`.
pub const MAX_PREFIX: usize = 128;

/// `s` for a message: at most 64 characters, control characters escaped.
pub fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(64).flat_map(char::escape_debug).collect();
    if s.chars().count() > 64 {
        out.push_str("...");
    }
    format!("\"{out}\"")
}

/// Accepts only a plain file name (no directory part, no `..`, not empty, no control
/// characters, at most 255 bytes), as `delete` and restore-by-name need. K3s joins whatever it
/// gets to the snapshot dir; we refuse instead.
pub fn validate_plain_name(name: &str) -> Result<()> {
    if name.len() > MAX_FILE_NAME {
        return Err(Error::InvalidInput(format!(
            "invalid snapshot name {}: it is {} bytes long, file names have at most {MAX_FILE_NAME}",
            shown(name),
            name.len()
        )));
    }
    let bad = name.is_empty()
        || name == "."
        || name == ".."
        || name.contains('/')
        || name.contains('\\')
        || name.contains("..")
        || name.chars().any(char::is_control);
    if bad {
        return Err(Error::InvalidInput(format!(
            "invalid snapshot name: path traversal not allowed ({}); give the plain file name as `ls` prints it, without a directory, `..` or control characters",
            shown(name)
        )));
    }
    Ok(())
}

/// Validates a `--name`/`--etcd-snapshot-name` prefix (and a node name): it becomes the start
/// of a file name that `ls`, `prune` and `delete` must be able to see, so no directory part,
/// no leading `.` (hidden files are not snapshots), no `..`, no control characters, and short
/// enough for the whole name to fit in 255 bytes.
pub fn validate_prefix(prefix: &str) -> Result<()> {
    let why = if prefix.is_empty() {
        Some("it is empty".to_string())
    } else if prefix.len() > MAX_PREFIX {
        Some(format!(
            "it is {} bytes long, at most {MAX_PREFIX} are allowed",
            prefix.len()
        ))
    } else if prefix.starts_with('.') {
        Some("it starts with '.', and hidden files are not snapshots".into())
    } else if prefix.contains('/') || prefix.contains('\\') || prefix.contains("..") {
        Some("a directory part or '..' is not allowed".into())
    } else if prefix.chars().any(char::is_control) {
        Some("control characters are not allowed".into())
    } else {
        prefix
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
            .map(|c| format!("{c:?} is not allowed"))
    };
    match why {
        Some(why) => Err(Error::InvalidInput(format!(
            "invalid snapshot name prefix {}: {why}; use letters, digits, '-', '_' or '.'",
            shown(prefix)
        ))),
        None => Ok(()),
    }
}

/// Checks that a snapshot name, with `.zip` and `.part` added, fits in a file name.
pub fn check_name_length(base_name: &str) -> Result<()> {
    let longest = base_name.len() + ZIP_SUFFIX.len() + PART_SUFFIX.len();
    if longest > MAX_FILE_NAME {
        return Err(Error::InvalidInput(format!(
            "the snapshot file name {} would be {longest} bytes long (with .zip.part), file names have at most {MAX_FILE_NAME}: use a shorter --name or --node-name",
            shown(base_name)
        )));
    }
    Ok(())
}

/// Kubernetes' `IsDNS1123Subdomain`, the rule for object names and the one K3s applies to a
/// record's name body: at most 253 bytes of lowercase alphanumerics, `-` and `.`, each
/// dot-separated part starting and ending with an alphanumeric. Unlike a DNS-1123 label, a
/// part has no 63-byte limit (the regexp Kubernetes matches has none).
pub fn is_dns1123_subdomain(s: &str) -> bool {
    if s.is_empty() || s.len() > 253 {
        return false;
    }
    s.split('.').all(|label| {
        let b = label.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
    })
}

/// Go's `strings.ToLower`: each character's simple lowercase mapping. Rust's `to_lowercase`
/// differs in two places: `İ` (U+0130) becomes `i` plus a combining dot, not plain `i`, and a
/// final `Σ` becomes `ς`, not `σ`. The first matters here, as Go's result can be a valid name.
fn go_to_lower(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\u{130}' => out.push('i'),
            _ => out.extend(c.to_lowercase()),
        }
    }
    out
}

/// ETCDSnapshotFile object name: `<kind>-<lowercased file name>-<6 hex of sha256(node+location)>`,
/// with K3s's fallback body when the name is not a DNS-1123 subdomain or too long.
pub fn record_object_name(
    kind: &str,
    file_name: &str,
    node: &str,
    location: &str,
    created: DateTime<Utc>,
) -> String {
    let digest = hex::encode(Sha256::digest(format!("{node}{location}").as_bytes()));
    let mut body = go_to_lower(file_name);
    if !is_dns1123_subdomain(&body) || body.len() + 13 > 253 {
        let label = node.split('.').next().unwrap_or(node);
        body = format!("etcd-snapshot-{label}-{}", created.timestamp());
        if let Some(f) = CompressFormat::of_name(file_name) {
            body.push_str(f.suffix());
        }
    }
    format!("{kind}-{body}-{}", &digest[..6])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(ms).unwrap()
    }

    #[test]
    fn base_name_rounds_to_nearest_second() {
        let cases = [
            (1_730_308_816_000, "on-demand-n1-1730308816"),
            (1_730_308_816_499, "on-demand-n1-1730308816"),
            (1_730_308_816_500, "on-demand-n1-1730308817"),
            (1_730_308_816_999, "on-demand-n1-1730308817"),
        ];
        for (ms, want) in cases {
            assert_eq!(snapshot_base_name("on-demand", "n1", at(ms)), want);
        }
    }

    #[test]
    fn parses_times_from_names() {
        let cases: &[(&str, Option<i64>)] = &[
            ("etcd-snapshot-node1-1730308816", Some(1730308816)),
            ("etcd-snapshot-node1-1730308816.zip", Some(1730308816)),
            ("on-demand-ip-172-31-16-180-1713817190", Some(1713817190)),
            ("on-demand-n1.example.com-1713817190.zip", Some(1713817190)),
            ("on-demand-n1-1713817190.zst", Some(1713817190)),
            ("on-demand-n1-1713817190.zst.zip", None),
            ("on-demand-n1-1713817190.gz", None),
            ("random-file", None),
            ("nodash", None),
            ("trailing-", None),
            ("x-12a", None),
            ("x-+12", None),
        ];
        for (name, want) in cases {
            assert_eq!(
                parse_snapshot_time(name).map(|t| t.timestamp()),
                *want,
                "{name}"
            );
        }
    }

    #[test]
    fn compression_formats_and_levels() {
        assert_eq!(CompressFormat::parse("zip").unwrap(), CompressFormat::Zip);
        assert_eq!(CompressFormat::parse("zstd").unwrap(), CompressFormat::Zstd);
        let e = CompressFormat::parse("gzip").unwrap_err().to_string();
        assert!(
            e.contains("\"gzip\"") && e.contains("zip") && e.contains("zstd"),
            "{e}"
        );
        assert_eq!(
            CompressFormat::of_name("a-1.zst"),
            Some(CompressFormat::Zstd)
        );
        assert_eq!(
            CompressFormat::of_name("a-1.zip"),
            Some(CompressFormat::Zip)
        );
        assert_eq!(CompressFormat::of_name("a-1"), None);
        assert!(is_compressed("a-1.zst") && is_compressed("a-1.zip") && !is_compressed("a-1"));
        assert_eq!(strip_compressed_suffix("a-1.zst"), "a-1");
        assert_eq!(strip_compressed_suffix("a-1.part"), "a-1.part");
        for f in [CompressFormat::Zip, CompressFormat::Zstd] {
            assert_eq!(CompressFormat::parse(f.name()).unwrap(), f);
            assert!(f.check_level(f.default_level()).is_ok());
            assert!(f.check_level(0).is_err());
            let e = f
                .check_level(*f.levels().end() + 1)
                .unwrap_err()
                .to_string();
            assert!(e.contains("--etcd-snapshot-compress-level"), "{e}");
        }
        assert!(CompressFormat::Zstd.check_level(19).is_ok());
        assert!(CompressFormat::Zip.check_level(10).is_err());

        let zip5 = Compression::new(CompressFormat::Zip, Some(5)).unwrap();
        let zstd = |level| Compression {
            format: CompressFormat::Zstd,
            level,
        };
        // (request format, request level) -> result over a server set to zip level 5
        let cases: &[(Option<&str>, Option<i64>, Option<Compression>)] = &[
            (None, None, Some(zip5)),
            (None, Some(9), Some(Compression { level: 9, ..zip5 })),
            (Some("zip"), None, Some(zip5)),
            (Some("zstd"), None, Some(zstd(3))),
            (Some("zstd"), Some(12), Some(zstd(12))),
            (Some("zstd"), Some(20), None),
            (None, Some(12), None),
            (Some("lz4"), None, None),
        ];
        for (format, level, want) in cases {
            let got = zip5.overridden(*format, *level).ok();
            assert_eq!(got, *want, "{format:?} {level:?}");
        }
        assert!(Compression::new(CompressFormat::Zip, Some(0)).is_err());
        assert_eq!(Compression::default().level, 1);
    }

    #[test]
    fn legacy_keys_are_sanitized() {
        assert_eq!(
            legacy_key("local", "on-demand-n1-1"),
            "local-on-demand-n1-1"
        );
        assert_eq!(legacy_key("s3", "a b/c:d.zip"), "s3-a_b_c_d.zip");
    }

    #[test]
    fn prefixes_that_would_hide_or_escape_are_refused() {
        for ok in ["on-demand", "etcd-snapshot", "a.b", "n1.example.com", "x_y"] {
            assert!(validate_prefix(ok).is_ok(), "{ok}");
        }
        let long = "p".repeat(5000);
        for (bad, why) in [
            ("", "empty"),
            ("..", "starts with '.'"),
            (".x", "starts with '.'"),
            ("a/b", "directory part"),
            ("a..b", "directory part"),
            ("a\nb", "control characters"),
            ("a\u{7f}b", "control characters"),
            ("a b", "' ' is not allowed"),
            ("a:b", "':' is not allowed"),
            (long.as_str(), "5000 bytes long"),
        ] {
            let err = validate_prefix(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad:?}: {err}");
            assert!(
                err.len() < 300,
                "the message echoes too much: {} bytes",
                err.len()
            );
        }
        assert!(check_name_length(&"a".repeat(247)).is_err());
        assert!(check_name_length(&"a".repeat(246)).is_ok());
        assert!(check_name_length("on-demand-n1-1730308816").is_ok());
        let err = validate_plain_name(&"z".repeat(5000))
            .unwrap_err()
            .to_string();
        assert!(err.contains("5000 bytes long") && err.len() < 300, "{err}");
    }

    #[test]
    fn plain_names_only() {
        for ok in ["on-demand-n1-1", "a.zip", "x_y"] {
            assert!(validate_plain_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "/etc/passwd",
            "a\\b",
            "x..y",
            "a\0b",
        ] {
            let err = validate_plain_name(bad).unwrap_err().to_string();
            assert!(err.contains("invalid snapshot name"), "{bad}: {err}");
        }
    }

    #[test]
    fn record_names_match_k3s_vectors() {
        let t = DateTime::from_timestamp(1730308816, 0).unwrap();
        assert_eq!(
            record_object_name(
                "local",
                "on-demand-k3s-server-1-1730308816",
                "k3s-server-1",
                "file:///var/lib/rancher/k3s/server/db/snapshots/on-demand-k3s-server-1-1730308816",
                t
            ),
            "local-on-demand-k3s-server-1-1730308816-3e9290"
        );
        assert_eq!(
            record_object_name(
                "s3",
                "on-demand-k3s-server-1-1730308816",
                "s3",
                "s3://etcd/k3s-test/on-demand-k3s-server-1-1730308816",
                t
            ),
            "s3-on-demand-k3s-server-1-1730308816-79b15c"
        );
        let t2 = DateTime::from_timestamp(1753969041, 0).unwrap();
        let n = record_object_name(
            "local",
            "on-demand-ip-10-11-0-14-1753969041",
            "ip-10-11-0-14",
            "file:///var/lib/rancher/k3s/server/db/snapshots/on-demand-ip-10-11-0-14-1753969041",
            t2,
        );
        assert!(n.ends_with("-9e8c6d"), "{n}");
        // Not a DNS-1123 subdomain: fallback body.
        let n = record_object_name("local", "On_Demand.zip", "node.a.b", "file:///x", t);
        assert!(
            n.starts_with("local-etcd-snapshot-node-1730308816.zip-"),
            "{n}"
        );
    }

    /// A dot-separated part longer than 63 bytes is still a valid subdomain: K3s keeps such a
    /// file name as the record's name body. Found by the `names` fuzz target
    /// (fuzz/artifacts-found/names), which the old per-label limit failed.
    #[test]
    fn record_name_keeps_parts_longer_than_a_dns_label() {
        let t = DateTime::from_timestamp(1730308816, 0).unwrap();
        let node = "a-very-long-node-name-from-a-cloud-pool-12345";
        let file = format!("on-demand-{node}-1730308816");
        assert!(file.len() > 63);
        let location = format!("file:///var/lib/rancher/k3s/server/db/snapshots/{file}");
        let n = record_object_name("local", &file, node, &location, t);
        let hash = &hex::encode(Sha256::digest(format!("{node}{location}")))[..6];
        assert_eq!(n, format!("local-{file}-{hash}"));
        // What the fuzzer found: one 64-byte part, with a node and location left empty.
        let file = "on-demand-demand-k3s-server-1-0k3s-server-1-08816000--1730308816";
        assert_eq!(file.len(), 64);
        let n = record_object_name("local", file, "", "", t);
        assert!(n.starts_with(&format!("local-{file}-")), "{n}");
        // The whole name still has Kubernetes' 253-byte limit: 240 bytes + 13 fit, 241 do not.
        let fits = "a".repeat(240);
        let n = record_object_name("s3", &fits, "n", "s3://b/x", t);
        assert!(n.starts_with(&format!("s3-{fits}-")), "{n}");
        let long = "a".repeat(241);
        let n = record_object_name("s3", &long, "n", "s3://b/x", t);
        assert!(n.starts_with("s3-etcd-snapshot-n-1730308816-"), "{n}");
    }

    #[test]
    fn record_name_lowercases_as_go_does() {
        assert_eq!(go_to_lower("On-Demand-ΣΑΣ-İ"), "on-demand-σασ-i");
        let t = DateTime::from_timestamp(1730308816, 0).unwrap();
        // Go's strings.ToLower("ON-DEMAND-İ-1") is a valid name, so K3s keeps it.
        let n = record_object_name("local", "ON-DEMAND-İ-1", "n1", "file:///x", t);
        assert!(n.starts_with("local-on-demand-i-1-"), "{n}");
    }

    #[test]
    fn dns1123_subdomain_rule() {
        let part = |n| "a".repeat(n);
        for good in [
            "a".to_string(),
            "0".to_string(),
            "a-b.c-d".to_string(),
            "on-demand-n1-1730308816.zip".to_string(),
            part(64),
            format!("{}.{}", part(100), part(100)),
            part(253),
        ] {
            assert!(is_dns1123_subdomain(&good), "{good:?} refused");
        }
        for bad in [
            String::new(),
            part(254),
            "A".to_string(),
            "-a".to_string(),
            "a-".to_string(),
            ".a".to_string(),
            "a.".to_string(),
            "a..b".to_string(),
            "a.-b".to_string(),
            "a-.b".to_string(),
            "a_b".to_string(),
            "a/b".to_string(),
            "é".to_string(),
        ] {
            assert!(!is_dns1123_subdomain(&bad), "{bad:?} accepted");
        }
    }
}
