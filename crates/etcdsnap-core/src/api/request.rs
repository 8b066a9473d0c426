//! Checks of a request's headers made before its body is read: requests that change something
//! are refused as cross-site when a browser says they are, and bodies must be declared JSON.

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
