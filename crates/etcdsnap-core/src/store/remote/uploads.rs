//! Incomplete multipart uploads of an S3 bucket: ListMultipartUploads and
//! AbortMultipartUpload, which object_store does not offer (it aborts the uploads it starts,
//! but a killed process leaves its upload, and its parts are billed, until someone aborts it).
//! Written here because no kept crate of our stack lists them: the requests are signed by
//! object_store's own SigV4 signer ([`AwsAuthorizer`]) and sent through the same transport
//! (CA, proxy, timeouts) as every other request of the store, so nothing new reaches the
//! network.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use object_store::aws::{AwsAuthorizer, AwsCredentialProvider};
use object_store::client::{HttpClient, HttpRequest, HttpRequestBody};

/// One upload that was started and neither completed nor aborted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    pub key: String,
    pub upload_id: String,
    pub initiated: Option<DateTime<Utc>>,
}

impl PendingUpload {
    /// Whether this is an upload of a snapshot file directly under `prefix` whose name carries
    /// `mark` (`-<node>-`) and that began before `before` (one without a time is left alone).
    pub fn is_stale_of(&self, prefix: &str, mark: &str, before: DateTime<Utc>) -> bool {
        let Some(name) = self.key.strip_prefix(prefix) else {
            return false;
        };
        !name.contains('/') && name.contains(mark) && self.initiated.is_some_and(|t| t < before)
    }
}

/// Lists and aborts a bucket's incomplete multipart uploads.
pub struct Uploads {
    pub(super) http: HttpClient,
    /// `None`: anonymous requests.
    pub(super) credentials: Option<AwsCredentialProvider>,
    pub(super) region: String,
    /// `https://host/bucket` (path style) or `https://bucket.host`.
    pub(super) bucket_url: String,
}

impl std::fmt::Debug for Uploads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uploads")
            .field("bucket_url", &self.bucket_url)
            .finish_non_exhaustive()
    }
}

/// Query values as S3 wants them: every byte but the unreserved ones percent-encoded.
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The text of each `<tag>…</tag>` in `xml`, in order, XML entities decoded.
fn texts<'a>(xml: &'a str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest: &'a str = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(unescape(&after[..j]));
        rest = &after[j + close.len()..];
    }
    out
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// The uploads of one ListMultipartUploads page, and the markers of the next page.
fn parse_page(xml: &str) -> (Vec<PendingUpload>, Option<(String, String)>) {
    let mut uploads = Vec::new();
    for block in xml.split("<Upload>").skip(1) {
        let block = block.split("</Upload>").next().unwrap_or("");
        let (Some(key), Some(upload_id)) = (
            texts(block, "Key").into_iter().next(),
            texts(block, "UploadId").into_iter().next(),
        ) else {
            continue;
        };
        let initiated = texts(block, "Initiated")
            .into_iter()
            .next()
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.with_timezone(&Utc));
        uploads.push(PendingUpload {
            key,
            upload_id,
            initiated,
        });
    }
    let truncated = texts(xml, "IsTruncated").first().map(String::as_str) == Some("true");
    let next = match (
        texts(xml, "NextKeyMarker").into_iter().next(),
        texts(xml, "NextUploadIdMarker").into_iter().next(),
    ) {
        (Some(k), Some(u)) if truncated && !k.is_empty() => Some((k, u)),
        _ => None,
    };
    (uploads, next)
}

impl Uploads {
    async fn send(&self, method: &str, path_and_query: &str) -> Result<Bytes, String> {
        let url = format!("{}{path_and_query}", self.bucket_url);
        let mut req: HttpRequest = http::Request::builder()
            .method(method)
            .uri(&url)
            .body(HttpRequestBody::empty())
            .map_err(|e| e.to_string())?;
        if let Some(provider) = &self.credentials {
            let cred = provider.get_credential().await.map_err(|e| e.to_string())?;
            AwsAuthorizer::new(&cred, "s3", &self.region)
                .try_authorize(&mut req, None)
                .map_err(|e| e.to_string())?;
        }
        let resp = self.http.execute(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = resp.into_body().bytes().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            let code = texts(&String::from_utf8_lossy(&body), "Code")
                .into_iter()
                .next()
                .unwrap_or_default();
            return Err(format!("HTTP {status} {code}").trim().to_string());
        }
        Ok(body)
    }

    /// Every incomplete upload whose key starts with `prefix`; `None` when the server does not
    /// implement the call (HTTP 501, as s3s-fs answers).
    pub async fn list(&self, prefix: &str) -> Result<Option<Vec<PendingUpload>>, String> {
        let mut all = Vec::new();
        let mut marker: Option<(String, String)> = None;
        // At most 100 pages of 1000: a bound, not a limit anyone should meet.
        for _ in 0..100 {
            let mut query = format!("/?uploads&prefix={}", encode(prefix));
            if let Some((k, u)) = &marker {
                query.push_str(&format!(
                    "&key-marker={}&upload-id-marker={}",
                    encode(k),
                    encode(u)
                ));
            }
            let body = match self.send("GET", &query).await {
                Err(e) if e.starts_with("HTTP 501") => return Ok(None),
                r => r?,
            };
            let (page, next) = parse_page(&String::from_utf8_lossy(&body));
            all.extend(page);
            match next {
                Some(m) => marker = Some(m),
                None => break,
            }
        }
        Ok(Some(all))
    }

    /// Aborts one upload; its parts are freed.
    pub async fn abort(&self, upload: &PendingUpload) -> Result<(), String> {
        let path: String = upload
            .key
            .split('/')
            .map(encode)
            .collect::<Vec<_>>()
            .join("/");
        self.send(
            "DELETE",
            &format!("/{path}?uploadId={}", encode(&upload.upload_id)),
        )
        .await
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_and_markers_are_read() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListMultipartUploadsResult><Bucket>b</Bucket><NextKeyMarker>k3s/b</NextKeyMarker>
<NextUploadIdMarker>u2</NextUploadIdMarker><IsTruncated>true</IsTruncated>
<Upload><Key>k3s/a&amp;b</Key><UploadId>u1</UploadId><Initiated>2026-12-01T10:00:00.000Z</Initiated></Upload>
<Upload><Key>k3s/b</Key><UploadId>u2</UploadId></Upload></ListMultipartUploadsResult>"#;
        let (uploads, next) = parse_page(xml);
        assert_eq!(uploads.len(), 2);
        assert_eq!(uploads[0].key, "k3s/a&b");
        assert_eq!(
            uploads[0].initiated.map(|t| t.timestamp()),
            Some(1796119200)
        );
        assert_eq!(uploads[1].initiated, None);
        assert_eq!(next, Some(("k3s/b".into(), "u2".into())));
        let (none, end) = parse_page(
            "<ListMultipartUploadsResult><IsTruncated>false</IsTruncated></ListMultipartUploadsResult>",
        );
        assert!(none.is_empty() && end.is_none());
        assert_eq!(encode("k3s/x y+z"), "k3s%2Fx%20y%2Bz");
    }

    #[test]
    fn only_this_nodes_uploads_begun_before_are_stale() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let up = |key: &str, t: Option<&str>| PendingUpload {
            key: key.into(),
            upload_id: "u".into(),
            initiated: t.map(at),
        };
        let before = at("2026-12-08T02:00:00Z");
        let (p, m) = ("k3s/", "-n1-");
        let early = Some("2026-12-08T01:00:00Z");
        assert!(up("k3s/etcd-snapshot-n1-1", early).is_stale_of(p, m, before));
        assert!(
            !up("k3s/etcd-snapshot-n1-1", Some("2026-12-08T02:00:01Z")).is_stale_of(p, m, before)
        );
        assert!(!up("k3s/etcd-snapshot-n1-1", None).is_stale_of(p, m, before));
        assert!(!up("k3s/etcd-snapshot-n2-1", early).is_stale_of(p, m, before));
        assert!(!up("k3s/sub/etcd-snapshot-n1-1", early).is_stale_of(p, m, before));
        assert!(!up("other/etcd-snapshot-n1-1", early).is_stale_of(p, m, before));
        assert!(up("etcd-snapshot-n1-1", early).is_stale_of("", m, before));
    }
}
