//! `inspect`: the key space at a revision, values decoded (Kubernetes objects, JSON, text),
//! streamed one entry at a time.

use super::*;

/// A stored value, classified for display.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueView {
    Empty,
    /// UTF-8 text.
    Text(String),
    /// Anything else, shown as base64.
    Binary(Vec<u8>),
    /// A JSON object or array that is not a Kubernetes object.
    Json(Value),
    Kube(KubeObject),
    /// Encrypted at rest by the Kubernetes API server: the header only.
    Encrypted(Encrypted),
    /// `k8s\0` followed by something that is not a `runtime.Unknown`.
    BadProtobuf {
        error: String,
        bytes: Vec<u8>,
    },
}

/// Whether `v` starts like a JSON object or array (after white space).
fn looks_like_json(v: &[u8]) -> bool {
    matches!(
        v.iter().find(|b| !b.is_ascii_whitespace()),
        Some(b'{' | b'[')
    )
}

/// The table line of a Kubernetes object: `v1/Secret ns/name (protobuf, N bytes) type=...
/// keys=a,b` (the keys of Secrets and ConfigMaps, never their values).
fn kube_summary(id: &kube::Ident, size: usize) -> String {
    let mut s = format!("{}/{}", id.api_version, id.kind);
    let name = match (id.namespace.as_str(), id.name.as_str()) {
        ("", n) => n.to_string(),
        (ns, n) => format!("{ns}/{n}"),
    };
    if !name.is_empty() {
        s.push(' ');
        s.push_str(&name);
    }
    let enc = match id.encoding {
        Some(kube::Encoding::Protobuf) => "protobuf, ",
        Some(kube::Encoding::Json) => "json, ",
        None => "",
    };
    s.push_str(&format!(" ({enc}{size} bytes)"));
    if let Some(t) = &id.secret_type {
        s.push_str(&format!(" type={t}"));
    }
    if !id.data_keys.is_empty() && matches!(id.kind.as_str(), "Secret" | "ConfigMap") {
        s.push_str(&format!(" keys={}", id.data_keys.join(",")));
    }
    s
}

/// A value read only as far as a listing needs: its type, who it is if it is a Kubernetes
/// object, and its table line. JSON is scanned, not built, and only Secret and ConfigMap
/// bodies are decoded, so that a table of a large database costs little more than reading it.
#[derive(Debug, Clone, PartialEq)]
pub struct Glance {
    pub type_name: &'static str,
    pub ident: Option<kube::Ident>,
    pub summary: String,
}

/// Classifies `v` like [`ValueView::of`], cheaply.
pub fn glance(v: &[u8]) -> Glance {
    let size = v.len();
    let simple = |view: ValueView| Glance {
        type_name: view.type_name(),
        ident: None,
        summary: view.summary(size),
    };
    if v.is_empty() {
        return simple(ValueView::Empty);
    }
    if let Some(e) = kube::encrypted(v) {
        return simple(ValueView::Encrypted(e));
    }
    if let Some(env) = v.strip_prefix(kube::PROTO_PREFIX) {
        return match kube::peek_protobuf(env) {
            Ok(id) => Glance {
                type_name: "kubernetes",
                summary: kube_summary(&id, size),
                ident: Some(id),
            },
            Err(e) => simple(ValueView::BadProtobuf {
                error: e.to_string(),
                bytes: Vec::new(),
            }),
        };
    }
    if looks_like_json(v) {
        match kube::peek_json(v) {
            Ok(Some(id)) => {
                return Glance {
                    type_name: "kubernetes",
                    summary: kube_summary(&id, size),
                    ident: Some(id),
                };
            }
            Ok(None) => return simple(ValueView::Json(Value::Null)),
            Err(_) => {}
        }
    }
    // Text or binary: cheap to classify in full (the text is cut to 60 characters).
    match std::str::from_utf8(v) {
        Ok(t) => simple(ValueView::Text(t.chars().take(61).collect())),
        Err(_) => simple(ValueView::Binary(Vec::new())),
    }
}

impl ValueView {
    /// Classifies `v`.
    pub fn of(v: &[u8]) -> ValueView {
        if v.is_empty() {
            return ValueView::Empty;
        }
        if let Some(e) = kube::encrypted(v) {
            return ValueView::Encrypted(e);
        }
        if let Some(env) = v.strip_prefix(kube::PROTO_PREFIX) {
            return match kube::decode_protobuf(env) {
                Ok(o) => ValueView::Kube(o),
                Err(e) => ValueView::BadProtobuf {
                    error: e.to_string(),
                    bytes: v.to_vec(),
                },
            };
        }
        if looks_like_json(v)
            && let Ok(j) = serde_json::from_slice::<Value>(v)
        {
            return match kube::from_json(j) {
                Ok(o) => ValueView::Kube(o),
                Err(j) => ValueView::Json(j),
            };
        }
        match std::str::from_utf8(v) {
            Ok(s) => ValueView::Text(s.to_string()),
            Err(_) => ValueView::Binary(v.to_vec()),
        }
    }

    /// `empty`, `text`, `binary`, `json`, `kubernetes` or `encrypted`.
    pub fn type_name(&self) -> &'static str {
        match self {
            ValueView::Empty => "empty",
            ValueView::Text(_) => "text",
            ValueView::Binary(_) | ValueView::BadProtobuf { .. } => "binary",
            ValueView::Json(_) => "json",
            ValueView::Kube(_) => "kubernetes",
            ValueView::Encrypted(_) => "encrypted",
        }
    }

    /// One line for a table, at most about 100 characters; never a secret's data.
    pub fn summary(&self, size: usize) -> String {
        match self {
            ValueView::Empty => "(empty)".into(),
            ValueView::Text(t) => {
                let shown: String = t.chars().take(60).flat_map(char::escape_debug).collect();
                if t.chars().count() > 60 {
                    format!("\"{shown}…\" ({size} bytes)")
                } else {
                    format!("\"{shown}\"")
                }
            }
            ValueView::Binary(_) => format!("binary, {size} bytes"),
            ValueView::BadProtobuf { .. } => {
                format!("binary, {size} bytes (k8s\\0 prefix, not a valid protobuf object)")
            }
            ValueView::Json(_) => format!("json, {size} bytes"),
            ValueView::Encrypted(e) => {
                let mut what = e.provider.clone();
                if !e.version.is_empty() {
                    what.push(' ');
                    what.push_str(&e.version);
                }
                if !e.key.is_empty() {
                    what.push_str(", key ");
                    what.push_str(&e.key);
                }
                format!("encrypted at rest ({what}), {size} bytes")
            }
            ValueView::Kube(o) => kube_summary(&o.ident(), size),
        }
    }

    /// The fields a JSON entry gets for this value: `value_type`, `value` and more.
    fn put_json(&self, e: &mut Map<String, Value>) {
        e.insert("value_type".into(), json!(self.type_name()));
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        match self {
            ValueView::Empty => {
                e.insert("value".into(), json!(""));
            }
            ValueView::Text(t) => {
                e.insert("value".into(), json!(t));
            }
            ValueView::Binary(b) => {
                e.insert("value".into(), json!(b64(b)));
            }
            ValueView::BadProtobuf { error, bytes } => {
                e.insert("value".into(), json!(b64(bytes)));
                e.insert("note".into(), json!(error));
            }
            ValueView::Json(j) => {
                e.insert("value".into(), j.clone());
            }
            ValueView::Encrypted(x) => {
                e.insert(
                    "encryption".into(),
                    serde_json::to_value(x).unwrap_or(Value::Null),
                );
                e.insert(
                    "note".into(),
                    json!(
                        "encrypted at rest by the Kubernetes API server; etcdsnap cannot decrypt it"
                    ),
                );
            }
            ValueView::Kube(o) => {
                e.insert(
                    "encoding".into(),
                    serde_json::to_value(o.encoding).unwrap_or(Value::Null),
                );
                e.insert("value".into(), o.object.clone());
                if let Some(n) = &o.note {
                    e.insert("note".into(), json!(n));
                }
            }
        }
    }
}

/// What `inspect` lists.
#[derive(Debug, Clone, Default)]
pub struct InspectOptions {
    /// Only keys starting with these bytes.
    pub prefix: Option<Vec<u8>>,
    /// The revision (latest when `None`).
    pub rev: Option<i64>,
    /// Keys without values.
    pub keys_only: bool,
    /// Only Kubernetes objects of this kind (`Secret`) or resource (`secrets`).
    pub kind: Option<String>,
    /// Only Kubernetes objects in this namespace.
    pub namespace: Option<String>,
}

/// One key of the listing.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: Vec<u8>,
    pub head: KeyHead,
    /// The value, unless `keys_only`.
    pub value: Option<Vec<u8>>,
}

impl Entry {
    /// The value decoded in full, unless `keys_only`.
    pub fn view(&self) -> Option<ValueView> {
        self.value.as_deref().map(ValueView::of)
    }

    /// The value's table line, unless `keys_only`.
    pub fn summary(&self) -> Option<String> {
        self.value.as_deref().map(|v| glance(v).summary)
    }

    /// The entry as JSON, with etcd's field names for the revisions and the lease, and the
    /// value decoded.
    pub fn to_json(&self) -> Value {
        let mut e = Map::new();
        match std::str::from_utf8(&self.key) {
            Ok(k) => {
                e.insert("key".into(), json!(k));
            }
            Err(_) => {
                e.insert("key".into(), json!(String::from_utf8_lossy(&self.key)));
                e.insert(
                    "key_base64".into(),
                    json!(base64::engine::general_purpose::STANDARD.encode(&self.key)),
                );
            }
        }
        e.insert("create_revision".into(), json!(self.head.create_revision));
        e.insert("mod_revision".into(), json!(self.head.mod_revision));
        e.insert("version".into(), json!(self.head.version));
        e.insert("lease".into(), json!(self.head.lease));
        if let Some(v) = &self.value {
            e.insert("value_size".into(), json!(v.len()));
            ValueView::of(v).put_json(&mut e);
        }
        Value::Object(e)
    }
}

/// The revision listed and how many keys were.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct InspectSummary {
    pub revision: i64,
    pub compacted_revision: Option<i64>,
    pub count: u64,
}

/// The key-layout part of a Kubernetes key: `/registry/<resource>/[<namespace>/]<name>`, with
/// `<group>/<resource>` for API groups with a dot (custom resources), and the API server's
/// historical exceptions (`minions` for nodes, `services/specs`, `services/endpoints`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryKey {
    pub resource: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl RegistryKey {
    pub fn parse(key: &[u8]) -> Option<RegistryKey> {
        let rest = std::str::from_utf8(key).ok()?.strip_prefix("/registry/")?;
        let segs: Vec<&str> = rest.split('/').collect();
        let (resource, skip) = match segs.as_slice() {
            ["services", "specs", ..] => ("services".to_string(), 2),
            ["services", "endpoints", ..] => ("endpoints".to_string(), 2),
            ["minions", ..] => ("nodes".to_string(), 1),
            [group, res, ..] if group.contains('.') => (format!("{res}.{group}"), 2),
            [res, ..] => (res.to_string(), 1),
            [] => return None,
        };
        match &segs[skip..] {
            [name] => Some(RegistryKey {
                resource,
                namespace: None,
                name: name.to_string(),
            }),
            [ns, name] => Some(RegistryKey {
                resource,
                namespace: Some(ns.to_string()),
                name: name.to_string(),
            }),
            _ => None,
        }
    }
}

/// The resource name of a kind, as the API server forms it: lower case, plural.
pub(super) fn plural(kind: &str) -> String {
    let k = kind.to_ascii_lowercase();
    if k == "endpoints" || k.ends_with("ses") {
        return k;
    }
    if k.ends_with('s') || k.ends_with('x') || k.ends_with("ch") || k.ends_with("sh") {
        return format!("{k}es");
    }
    if let Some(stem) = k.strip_suffix('y')
        && !stem.ends_with(['a', 'e', 'i', 'o', 'u'])
    {
        return format!("{stem}ies");
    }
    format!("{k}s")
}

/// Whether `wanted` (a kind such as `Secret` or a resource such as `secrets`) names `kind` or
/// `resource`.
pub(super) fn kind_matches(wanted: &str, kind: Option<&str>, resource: Option<&str>) -> bool {
    let w = wanted.to_ascii_lowercase();
    if let Some(k) = kind.filter(|k| !k.is_empty()) {
        return k.eq_ignore_ascii_case(&w) || plural(k) == w;
    }
    match resource {
        Some(r) => {
            let base = r.split('.').next().unwrap_or(r);
            r == w || base == w || base == plural(&w)
        }
        None => false,
    }
}

impl InspectOptions {
    fn filters_kube(&self) -> bool {
        self.kind.is_some() || self.namespace.is_some()
    }

    pub(super) fn keep_key(&self, key: &[u8]) -> bool {
        if let Some(p) = &self.prefix
            && !key.starts_with(p)
        {
            return false;
        }
        !self.filters_kube() || key.starts_with(b"/registry/")
    }

    /// The kind and namespace filters, on the decoded object when there is one and on the key
    /// layout otherwise (an encrypted Secret has only its key to go by).
    pub(super) fn keep_value(&self, key: &[u8], value: &[u8]) -> bool {
        if !self.filters_kube() {
            return true;
        }
        let layout = RegistryKey::parse(key);
        let g = glance(value);
        let obj = g.ident.as_ref();
        if let Some(k) = &self.kind {
            let kind = obj.map(|o| o.kind.as_str());
            if !kind_matches(k, kind, layout.as_ref().map(|l| l.resource.as_str())) {
                return false;
            }
        }
        if let Some(ns) = &self.namespace {
            let have = match obj {
                Some(o) if !o.name.is_empty() => Some(o.namespace.as_str()),
                _ => layout.as_ref().and_then(|l| l.namespace.as_deref()),
            };
            if have != Some(ns.as_str()) {
                return false;
            }
        }
        true
    }
}

/// The keys `inspect` lists, found but not yet read: the revision is known before any entry
/// is produced, so that output can start with it.
pub struct Listing<'db> {
    db: &'db Db,
    opts: InspectOptions,
    heads: Heads,
}

/// The key space of `db` at `opts.rev`, under the prefix and (for kind and namespace) on
/// Kubernetes keys only: [`Listing::for_each`] reads the values.
pub fn listing<'db>(db: &'db Db, opts: &InspectOptions) -> Result<Listing<'db>> {
    let heads = db.heads_at(opts.rev, |k| opts.keep_key(k))?;
    Ok(Listing {
        db,
        opts: opts.clone(),
        heads,
    })
}

impl Listing<'_> {
    /// The revision listed.
    pub fn revision(&self) -> i64 {
        self.heads.revision
    }

    /// The revision below which the database has no history.
    pub fn compacted_revision(&self) -> Option<i64> {
        self.heads.compacted
    }

    /// Passes each entry to `emit` in key order, reading values one at a time; returns the
    /// number of entries (those the kind and namespace filters kept).
    pub fn for_each(&self, mut emit: impl FnMut(&Entry) -> Result<()>) -> Result<u64> {
        let opts = &self.opts;
        let mut count = 0u64;
        let need_value = !opts.keys_only || opts.filters_kube();
        for (key, head) in &self.heads.keys {
            let value = if need_value {
                Some(self.db.kv_at(head.revision)?.value)
            } else {
                None
            };
            if let Some(v) = &value
                && !opts.keep_value(key, v)
            {
                continue;
            }
            let entry = Entry {
                key: key.clone(),
                head: *head,
                value: if opts.keys_only { None } else { value },
            };
            emit(&entry)?;
            count += 1;
        }
        Ok(count)
    }
}

/// The key space of `db` at `opts.rev`, each entry passed to `emit` in key order.
pub fn inspect(
    db: &Db,
    opts: &InspectOptions,
    emit: impl FnMut(&Entry) -> Result<()>,
) -> Result<InspectSummary> {
    let l = listing(db, opts)?;
    let count = l.for_each(emit)?;
    Ok(InspectSummary {
        revision: l.revision(),
        compacted_revision: l.compacted_revision(),
        count,
    })
}
