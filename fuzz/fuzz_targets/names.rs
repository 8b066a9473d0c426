//! Snapshot names: the validators accept exactly what their docs promise, names built from
//! valid parts are valid and parse back, legacy keys and ETCDSnapshotFile object names have
//! the shape Kubernetes and K3s expect.

#![no_main]

use chrono::{DateTime, Utc};
use etcdsnap_core::naming::{
    MAX_FILE_NAME, MAX_PREFIX, PART_SUFFIX, ZIP_SUFFIX, ZSTD_SUFFIX, check_name_length, legacy_key,
    parse_snapshot_time, record_object_name, rounded_unix, snapshot_base_name, validate_plain_name,
    validate_prefix,
};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

/// The input is UTF-8 text of up to four lines: name, node, location and the snapshot time in
/// milliseconds (decimal; a time that does not parse is K3s's test vector's). A location that
/// starts with `s3://` makes an S3 record.
struct Input {
    /// A file name, a prefix or a name to parse.
    name: String,
    /// A node name.
    node: String,
    /// An S3 or file location.
    location: String,
    /// Milliseconds since the epoch of the snapshot.
    millis: i64,
    s3: bool,
}

impl Input {
    fn parse(data: &[u8]) -> Option<Input> {
        let text = std::str::from_utf8(data).ok()?;
        let mut lines = text.splitn(4, '\n');
        let name = lines.next().unwrap_or_default().to_string();
        let node = lines.next().unwrap_or_default().to_string();
        let location = lines.next().unwrap_or_default().to_string();
        let millis = lines
            .next()
            .and_then(|m| m.trim().parse().ok())
            .unwrap_or(1_730_308_816_000);
        Some(Input {
            s3: location.starts_with("s3://"),
            name,
            node,
            location,
            millis,
        })
    }
}

/// Error messages name the input through `shown` (64 characters at most, escaped): they stay
/// short whatever the input.
const MAX_MESSAGE: usize = 1024;

fn plain_name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_FILE_NAME
        && !s.contains('/')
        && !s.contains('\\')
        && !s.contains("..")
        && s != "."
        && !s.chars().any(char::is_control)
}

fn prefix_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_PREFIX
        && !s.starts_with('.')
        && !s.contains('/')
        && !s.contains('\\')
        && !s.contains("..")
        && !s.chars().any(char::is_control)
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Kubernetes' `IsDNS1123Subdomain`, written out from its regexp
/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*` and its 253-byte limit:
/// lowercase alphanumerics, `-` and `.`, each dot-separated run starting and ending with an
/// alphanumeric. A run has no length limit of its own (63 bytes is the rule for a DNS-1123
/// *label*, which K3s does not apply to names).
fn k8s_subdomain(s: &str) -> bool {
    s.len() <= 253
        && !s.is_empty()
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

/// The most K3s's fallback object name adds to the node name's first label:
/// `local-etcd-snapshot-`, `-`, a Unix time of up to 17 characters, `.zip`, `-` and 6 hex.
const FALLBACK_OVERHEAD: usize = 20 + 1 + 17 + 4 + 1 + 6;

/// A first label of a node name that a cluster can have (node names are DNS-1123 subdomains
/// too, so no 63-byte limit) and that leaves room for the rest of the fallback name.
fn fallback_label_fits(label: &str) -> bool {
    k8s_subdomain(label) && !label.contains('.') && label.len() + FALLBACK_OVERHEAD <= 253
}

fn check_validators(s: &str) {
    match validate_plain_name(s) {
        Ok(()) => assert!(plain_name_ok(s), "validate_plain_name accepted {s:?}"),
        Err(e) => {
            assert!(!plain_name_ok(s), "validate_plain_name refused {s:?}: {e}");
            assert_eq!(e.http_status(), 400);
            assert!(e.to_string().len() < MAX_MESSAGE, "message too long: {e}");
        }
    }
    match validate_prefix(s) {
        Ok(()) => assert!(prefix_ok(s), "validate_prefix accepted {s:?}"),
        Err(e) => {
            assert!(!prefix_ok(s), "validate_prefix refused {s:?}: {e}");
            assert_eq!(e.http_status(), 400);
            assert!(e.to_string().len() < MAX_MESSAGE, "message too long: {e}");
        }
    }
    let fits = s.len() + ZIP_SUFFIX.len() + PART_SUFFIX.len() <= MAX_FILE_NAME;
    assert_eq!(
        check_name_length(s).is_ok(),
        fits,
        "check_name_length({s:?})"
    );
    if let Err(e) = check_name_length(s) {
        assert!(e.to_string().len() < MAX_MESSAGE, "message too long: {e}");
    }
}

fn check_parse_time(s: &str) {
    let Some(t) = parse_snapshot_time(s) else {
        return;
    };
    // The time is the run of digits after the last `-`, once `.zip` or `.zst` is gone.
    let base = s
        .strip_suffix(ZIP_SUFFIX)
        .or_else(|| s.strip_suffix(ZSTD_SUFFIX))
        .unwrap_or(s);
    let (_, digits) = base
        .rsplit_once('-')
        .unwrap_or_else(|| panic!("{s:?} parsed to {t} without a '-'"));
    assert!(
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()),
        "{s:?} parsed to {t}, but {digits:?} is not a run of digits"
    );
    let secs: u64 = digits.parse().expect("digits fit when they parsed");
    assert_eq!(t.timestamp_subsec_nanos(), 0);
    assert_eq!(
        u64::try_from(t.timestamp()).ok(),
        Some(secs),
        "{s:?} parsed to {t}"
    );
}

fn check_legacy_key(kind: &str, s: &str) {
    let key = legacy_key(kind, s);
    let rest = key
        .strip_prefix(kind)
        .and_then(|r| r.strip_prefix('-'))
        .unwrap_or_else(|| panic!("legacy_key({kind:?}, {s:?}) = {key:?}"));
    assert_eq!(rest.chars().count(), s.chars().count(), "{key:?}");
    for (got, was) in rest.chars().zip(s.chars()) {
        let keep = was.is_ascii_alphanumeric() || matches!(was, '-' | '.' | '_');
        assert_eq!(got, if keep { was } else { '_' }, "{s:?} -> {key:?}");
    }
}

fn check_base_name(prefix: &str, node: &str, t: DateTime<Utc>) {
    if validate_prefix(prefix).is_err() || validate_prefix(node).is_err() {
        return;
    }
    let base = snapshot_base_name(prefix, node, t);
    let unix = rounded_unix(t);
    assert_eq!(base, format!("{prefix}-{node}-{unix}"));
    if check_name_length(&base).is_ok() {
        // Valid parts joined by `-`: a plain file name, with .zip and .part too.
        for name in [
            base.clone(),
            format!("{base}{ZIP_SUFFIX}"),
            format!("{base}{ZIP_SUFFIX}{PART_SUFFIX}"),
        ] {
            assert!(validate_plain_name(&name).is_ok(), "{name:?} is refused");
        }
    }
    // Times before 1970 print a `-` that the name format cannot tell from the separator, and
    // chrono cannot hold the rounded value at its very end; any other time reads back.
    if unix >= 0 && DateTime::from_timestamp(unix, 0).is_some() {
        let want = DateTime::from_timestamp(unix, 0);
        assert_eq!(parse_snapshot_time(&base), want, "{base:?}");
        assert_eq!(
            parse_snapshot_time(&format!("{base}{ZIP_SUFFIX}")),
            want,
            "{base:?}.zip"
        );
    }
}

fn check_record_name(kind: &str, file: &str, node: &str, location: &str, t: DateTime<Utc>) {
    let name = record_object_name(kind, file, node, location, t);
    let digest = hex::encode(Sha256::digest(format!("{node}{location}")));
    let body = name
        .strip_prefix(kind)
        .and_then(|r| r.strip_prefix('-'))
        .and_then(|r| r.strip_suffix(&digest[..6]))
        .and_then(|r| r.strip_suffix('-'))
        .unwrap_or_else(|| panic!("record name {name:?} is not <{kind}>-<body>-<hash>"));
    // Go's strings.ToLower maps each character on its own, and `İ` to a plain `i`.
    let lower: String = file
        .chars()
        .map(|c| match c {
            '\u{130}' => "i".to_string(),
            _ => c.to_lowercase().collect(),
        })
        .collect();
    // K3s keeps the lowercased file name when Kubernetes' IsDNS1123Subdomain accepts it and
    // the kind and hash still fit in 253 bytes.
    if k8s_subdomain(&lower) && lower.len() + 13 <= 253 {
        assert_eq!(body, lower, "{file:?} -> {name:?}");
    } else {
        // K3s's fallback body.
        let label = node.split('.').next().unwrap_or(node);
        let mut want = format!("etcd-snapshot-{label}-{}", t.timestamp());
        for suffix in [ZIP_SUFFIX, ZSTD_SUFFIX] {
            if file.ends_with(suffix) {
                want.push_str(suffix);
            }
        }
        assert_eq!(body, want, "{file:?} on {node:?} -> {name:?}");
    }
    // With a node name a cluster can have, the object name is one Kubernetes accepts.
    let label = node.split('.').next().unwrap_or(node);
    if fallback_label_fits(label) && validate_prefix(node).is_ok() {
        assert!(
            k8s_subdomain(&name),
            "{name:?} (file {file:?}, node {node:?}) is not a valid object name"
        );
    }
}

fn check(input: &Input) {
    let Some(t) = DateTime::from_timestamp_millis(input.millis) else {
        return;
    };
    let kind = if input.s3 { "s3" } else { "local" };
    for s in [&input.name, &input.node, &input.location] {
        check_validators(s);
        check_parse_time(s);
    }
    check_legacy_key(kind, &input.name);
    check_base_name(&input.name, &input.node, t);
    check_record_name(kind, &input.name, &input.node, &input.location, t);
    // A base name made from the fuzzed parts is a record file name too.
    let base = snapshot_base_name(&input.name, &input.node, t);
    check_record_name(kind, &base, &input.node, &input.location, t);
    check_parse_time(&base);
}

fuzz_target!(|data: &[u8]| {
    if let Some(input) = Input::parse(data) {
        check(&input);
    }
});
