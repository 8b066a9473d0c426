//! The JSON of `POST /db/snapshot`, shared by the server and the CLI. Field names and omission
//! rules are K3s's, so a K3s CLI can talk to an etcdsnap server and the other way round.

use serde::{Deserialize, Serialize};

use crate::store::s3::S3Config;

/// What the CLI asks the server to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    Save,
    List,
    Prune,
    Delete,
}

/// Body of `POST /db/snapshot`. Optional fields are sent only when the user set them (on the
/// command line or in the config file); the server keeps its own value otherwise.
///
/// An unknown field is refused (serde names it and lists the known ones): a misspelt
/// `retenton` must not be ignored while the server prunes with its own value.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotRequest {
    pub operation: Option<Operation>,
    /// For save and prune: one name prefix. For delete: the snapshot file names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub name: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compress: Option<bool>,
    /// etcdsnap extension for `save`: `zip` (K3s's) or `zstd`; the server's when absent.
    #[serde(
        rename = "compressFormat",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub compress_format: Option<String>,
    /// etcdsnap extension for `save`: the level of the format.
    #[serde(
        rename = "compressLevel",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub compress_level: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Config>,
    /// etcdsnap extension for `list`: read each S3 object's node metadata (one HEAD per object
    /// not yet known). The table output does not need it; JSON and YAML do.
    #[serde(
        rename = "s3NodeMetadata",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub s3_node_metadata: Option<bool>,
}

/// Answer to save, prune and delete: the names created and deleted, once per storage.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotResult {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub created: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deleted: Vec<String>,
    /// etcdsnap extension: a failed S3 upload or retention, reported instead of only logged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The Kubernetes `Status` object K3s returns for errors.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub kind: String,
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub status: String,
    pub message: String,
    pub reason: String,
    pub code: u16,
}

impl Status {
    pub fn failure(code: u16, reason: &str, message: impl Into<String>) -> Self {
        Status {
            kind: "Status".into(),
            api_version: "v1".into(),
            status: "Failure".into(),
            message: message.into(),
            reason: reason.into(),
            code,
        }
    }
}

/// Why a request that changes something must be refused as cross-site, if it must: a browser
/// says so in `Sec-Fetch-Site` (`cross-site`, `same-site`) or sends an `Origin` other than the
/// server's own (`https://` and the request's `Host`). The CLI, joining servers and kubectl
/// send neither. A page elsewhere could otherwise have a browser that holds the Basic login of
/// `/ui` post to the API.
pub fn cross_site(headers: &axum::http::HeaderMap) -> Option<String> {
    let text = |name: &str| {
        headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_string())
    };
    if let Some(site) = text("sec-fetch-site")
        && (site.eq_ignore_ascii_case("cross-site") || site.eq_ignore_ascii_case("same-site"))
    {
        return Some(format!(
            "cross-site request refused (Sec-Fetch-Site: {site}): the API takes changes from the etcdsnap CLI, kubectl and other clients, not from pages of other sites"
        ));
    }
    let origin = text("origin")?;
    let own = text("host").map(|h| format!("https://{h}"));
    if own
        .as_deref()
        .is_some_and(|own| own.eq_ignore_ascii_case(origin.trim_end_matches('/')))
    {
        return None;
    }
    Some(format!(
        "cross-site request refused: Origin {origin:?} is not this server's own origin ({}): the API takes changes from the etcdsnap CLI, kubectl and other clients, not from pages of other sites",
        own.as_deref().unwrap_or("https://<its Host>")
    ))
}

/// Why the request's body type is not one of `allowed` (media types, without parameters), if
/// it is not. A body that is not declared as one of them (`text/plain`, a form) is refused
/// before it is read: those are the types a page of another site can make a browser send.
pub fn not_json(headers: &axum::http::HeaderMap, allowed: &[&str]) -> Option<String> {
    let list = allowed.join(", ");
    let Some(ct) = headers.get(axum::http::header::CONTENT_TYPE) else {
        return Some(format!(
            "the request has no Content-Type: send the body as JSON with Content-Type: application/json (accepted here: {list})"
        ));
    };
    let ct = String::from_utf8_lossy(ct.as_bytes());
    let media = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if allowed.iter().any(|a| a.eq_ignore_ascii_case(&media)) {
        return None;
    }
    Some(format!(
        "Content-Type {ct:?} is not accepted here: send the body as JSON with Content-Type: application/json (accepted here: {list})"
    ))
}

#[cfg(test)]
mod request_checks {
    use axum::http::HeaderMap;

    use super::{cross_site, not_json};

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn cross_site_requests_are_told_apart() {
        let host = ("host", "10.0.0.1:9345");
        for (pairs, refused) in [
            (vec![host], false),
            (vec![host, ("origin", "https://10.0.0.1:9345")], false),
            (vec![host, ("sec-fetch-site", "same-origin")], false),
            (vec![host, ("sec-fetch-site", "none")], false),
            (vec![host, ("origin", "https://evil.example")], true),
            (vec![host, ("origin", "http://10.0.0.1:9345")], true),
            (vec![host, ("origin", "null")], true),
            (vec![("origin", "https://10.0.0.1:9345")], true),
            (vec![host, ("sec-fetch-site", "cross-site")], true),
            (vec![host, ("sec-fetch-site", "same-site")], true),
        ] {
            let why = cross_site(&headers(&pairs));
            assert_eq!(why.is_some(), refused, "{pairs:?}: {why:?}");
            if let Some(w) = why {
                assert!(w.starts_with("cross-site request refused"), "{w}");
            }
        }
    }

    #[test]
    fn only_the_allowed_body_types_pass() {
        let json = ["application/json"];
        assert!(not_json(&headers(&[("content-type", "application/json")]), &json).is_none());
        assert!(
            not_json(
                &headers(&[("content-type", "Application/JSON; charset=utf-8")]),
                &json
            )
            .is_none()
        );
        for ct in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ] {
            let why = not_json(&headers(&[("content-type", ct)]), &json).unwrap();
            assert!(
                why.contains(ct) && why.contains("application/json"),
                "{why}"
            );
        }
        let why = not_json(&HeaderMap::new(), &json).unwrap();
        assert!(why.contains("no Content-Type"), "{why}");
    }
}
