//! Kubernetes objects as the API server stores them in etcd: JSON, or protobuf behind the
//! 4-byte `k8s\0` prefix (a `runtime.Unknown` envelope: `typeMeta{apiVersion, kind}`, `raw` (the
//! object), `contentEncoding`, `contentType`). Values encrypted at rest (`k8s:enc:`) cannot be
//! read and are reported as such.
//!
//! [`decode_protobuf`] reads the envelope, the full `ObjectMeta` of any kind (field 1 of every
//! top-level kind), and the bodies of Secret and ConfigMap; other kinds' bodies stay protobuf
//! and are named in [`KubeObject::note`]. The result is the object as the API server shows it in
//! JSON (camelCase names, RFC 3339 times, base64 bytes), so that protobuf and JSON objects look
//! alike.
//!
//! [`api`] is the Kubernetes API subset the supervisor serves over the same etcd.

pub(crate) mod api;

use std::collections::BTreeMap;

use base64::Engine;
use prost::Message;
use serde_json::{Map, Value, json};

use crate::{Error, Result};

/// Where the API server keeps the `kube-system` namespace.
pub const KUBE_SYSTEM_KEY: &str = "/registry/namespaces/kube-system";

/// The prefix of protobuf-encoded objects.
pub const PROTO_PREFIX: &[u8] = b"k8s\0";
/// The prefix of values encrypted at rest by the API server.
pub const ENCRYPTED_PREFIX: &[u8] = b"k8s:enc:";

/// `runtime.Unknown`, the envelope after `k8s\0`.
#[derive(Clone, PartialEq, prost::Message)]
struct Unknown {
    #[prost(message, optional, tag = "1")]
    type_meta: Option<TypeMeta>,
    #[prost(bytes = "vec", tag = "2")]
    raw: Vec<u8>,
    #[prost(string, tag = "3")]
    content_encoding: String,
    #[prost(string, tag = "4")]
    content_type: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct TypeMeta {
    #[prost(string, tag = "1")]
    api_version: String,
    #[prost(string, tag = "2")]
    kind: String,
}

/// Any Kubernetes object: `metadata` is field 1 of every top-level kind.
#[derive(Clone, PartialEq, prost::Message)]
struct Object {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
}

/// `metav1.Time`: seconds and nanoseconds since the epoch (shown to the second, as the API
/// server does).
#[derive(Clone, PartialEq, prost::Message)]
struct Time {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct OwnerReference {
    #[prost(string, tag = "1")]
    kind: String,
    #[prost(string, tag = "3")]
    name: String,
    #[prost(string, tag = "4")]
    uid: String,
    #[prost(string, tag = "5")]
    api_version: String,
    #[prost(bool, optional, tag = "6")]
    controller: Option<bool>,
    #[prost(bool, optional, tag = "7")]
    block_owner_deletion: Option<bool>,
}

/// `ObjectMeta`, without `managedFields` (field 17, bookkeeping of server-side apply).
#[derive(Clone, PartialEq, prost::Message)]
struct ObjectMeta {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    generate_name: String,
    #[prost(string, tag = "3")]
    namespace: String,
    #[prost(string, tag = "4")]
    self_link: String,
    #[prost(string, tag = "5")]
    uid: String,
    #[prost(string, tag = "6")]
    resource_version: String,
    #[prost(int64, tag = "7")]
    generation: i64,
    #[prost(message, optional, tag = "8")]
    creation_timestamp: Option<Time>,
    #[prost(message, optional, tag = "9")]
    deletion_timestamp: Option<Time>,
    #[prost(int64, optional, tag = "10")]
    deletion_grace_period_seconds: Option<i64>,
    #[prost(btree_map = "string, string", tag = "11")]
    labels: BTreeMap<String, String>,
    #[prost(btree_map = "string, string", tag = "12")]
    annotations: BTreeMap<String, String>,
    #[prost(message, repeated, tag = "13")]
    owner_references: Vec<OwnerReference>,
    #[prost(string, repeated, tag = "14")]
    finalizers: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Secret {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
    #[prost(btree_map = "string, bytes", tag = "2")]
    data: BTreeMap<String, Vec<u8>>,
    #[prost(string, optional, tag = "3")]
    r#type: Option<String>,
    #[prost(btree_map = "string, string", tag = "4")]
    string_data: BTreeMap<String, String>,
    #[prost(bool, optional, tag = "5")]
    immutable: Option<bool>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ConfigMap {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
    #[prost(btree_map = "string, string", tag = "2")]
    data: BTreeMap<String, String>,
    #[prost(btree_map = "string, bytes", tag = "3")]
    binary_data: BTreeMap<String, Vec<u8>>,
    #[prost(bool, optional, tag = "4")]
    immutable: Option<bool>,
}

fn malformed(e: prost::DecodeError) -> Error {
    Error::Integrity(format!("malformed protobuf in a Kubernetes object: {e}"))
}

/// How a Kubernetes object was stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    Protobuf,
    Json,
}

/// A stored Kubernetes object, decoded.
#[derive(Clone, Debug, PartialEq)]
pub struct KubeObject {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    pub encoding: Encoding,
    /// The object as the API server shows it in JSON: everything for JSON objects, and for
    /// protobuf what was decoded (see `note`).
    pub object: Value,
    /// What was not decoded, if anything.
    pub note: Option<String>,
}

/// A value encrypted at rest: `k8s:enc:<provider>:<version>:<key name>:<ciphertext>`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Encrypted {
    /// `aescbc`, `aesgcm`, `secretbox`, `kms`, ...
    pub provider: String,
    /// `v1`, `v2` (KMS v2).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// The key (or KMS plugin) name given in the encryption configuration.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub key: String,
    /// Bytes of the whole stored value.
    pub size: usize,
}

/// The encryption header of a value encrypted at rest, `None` for any other value.
pub fn encrypted(value: &[u8]) -> Option<Encrypted> {
    let rest = value.strip_prefix(ENCRYPTED_PREFIX)?;
    // Provider, version and key name are ':'-terminated text; the ciphertext follows.
    let mut fields = Vec::new();
    let mut at = 0;
    for _ in 0..3 {
        match rest[at..].iter().position(|&b| b == b':') {
            Some(n) if n <= 256 => {
                fields.push(String::from_utf8_lossy(&rest[at..at + n]).into_owned());
                at += n + 1;
            }
            _ => break,
        }
    }
    let mut fields = fields.into_iter();
    Some(Encrypted {
        provider: fields.next().unwrap_or_default(),
        version: fields.next().unwrap_or_default(),
        key: fields.next().unwrap_or_default(),
        size: value.len(),
    })
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn time_json(t: &Time) -> Value {
    match chrono::DateTime::from_timestamp(t.seconds, 0) {
        Some(t) => Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        None => json!({"seconds": t.seconds, "nanos": t.nanos}),
    }
}

/// Inserts `v` under `k` unless it is empty, as the API server omits empty fields.
fn put(m: &mut Map<String, Value>, k: &str, v: Value) {
    let empty = match &v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Number(n) => n.as_i64() == Some(0),
        Value::Bool(_) => false,
    };
    if !empty {
        m.insert(k.to_string(), v);
    }
}

fn string_map(m: &BTreeMap<String, String>) -> Value {
    Value::Object(
        m.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

fn bytes_map(m: &BTreeMap<String, Vec<u8>>) -> Value {
    Value::Object(
        m.iter()
            .map(|(k, v)| (k.clone(), Value::String(b64(v))))
            .collect(),
    )
}

fn meta_json(m: &ObjectMeta) -> Value {
    let mut o = Map::new();
    put(&mut o, "name", json!(m.name));
    put(&mut o, "generateName", json!(m.generate_name));
    put(&mut o, "namespace", json!(m.namespace));
    put(&mut o, "selfLink", json!(m.self_link));
    put(&mut o, "uid", json!(m.uid));
    put(&mut o, "resourceVersion", json!(m.resource_version));
    put(&mut o, "generation", json!(m.generation));
    if let Some(t) = &m.creation_timestamp {
        o.insert("creationTimestamp".into(), time_json(t));
    }
    if let Some(t) = &m.deletion_timestamp {
        o.insert("deletionTimestamp".into(), time_json(t));
    }
    if let Some(s) = m.deletion_grace_period_seconds {
        o.insert("deletionGracePeriodSeconds".into(), json!(s));
    }
    put(&mut o, "labels", string_map(&m.labels));
    put(&mut o, "annotations", string_map(&m.annotations));
    let owners: Vec<Value> = m
        .owner_references
        .iter()
        .map(|r| {
            let mut o = Map::new();
            put(&mut o, "apiVersion", json!(r.api_version));
            put(&mut o, "kind", json!(r.kind));
            put(&mut o, "name", json!(r.name));
            put(&mut o, "uid", json!(r.uid));
            if let Some(c) = r.controller {
                o.insert("controller".into(), json!(c));
            }
            if let Some(b) = r.block_owner_deletion {
                o.insert("blockOwnerDeletion".into(), json!(b));
            }
            Value::Object(o)
        })
        .collect();
    put(&mut o, "ownerReferences", Value::Array(owners));
    put(&mut o, "finalizers", json!(m.finalizers));
    Value::Object(o)
}

/// Decodes a protobuf object: `envelope` is the value after the `k8s\0` prefix.
pub fn decode_protobuf(envelope: &[u8]) -> Result<KubeObject> {
    let unknown = Unknown::decode(envelope).map_err(malformed)?;
    let tm = unknown.type_meta.unwrap_or_default();
    let mut obj = Map::new();
    put(&mut obj, "apiVersion", json!(tm.api_version));
    put(&mut obj, "kind", json!(tm.kind));
    let mut note = None;
    if !unknown.content_encoding.is_empty() {
        // Never written by the API server's storage; the raw bytes are not plain protobuf.
        note = Some(format!(
            "the object is stored with content encoding {:?} ({} bytes), which etcdsnap does not decode",
            unknown.content_encoding,
            unknown.raw.len()
        ));
        return Ok(finish(tm, Encoding::Protobuf, obj, None, note));
    }
    let raw = unknown.raw.as_slice();
    let meta = match tm.kind.as_str() {
        "Secret" if tm.api_version == "v1" => {
            let s = Secret::decode(raw).map_err(malformed)?;
            put(&mut obj, "data", bytes_map(&s.data));
            put(&mut obj, "stringData", string_map(&s.string_data));
            if let Some(t) = &s.r#type {
                put(&mut obj, "type", json!(t));
            }
            if let Some(i) = s.immutable {
                obj.insert("immutable".into(), json!(i));
            }
            s.metadata
        }
        "ConfigMap" if tm.api_version == "v1" => {
            let c = ConfigMap::decode(raw).map_err(malformed)?;
            put(&mut obj, "data", string_map(&c.data));
            put(&mut obj, "binaryData", bytes_map(&c.binary_data));
            if let Some(i) = c.immutable {
                obj.insert("immutable".into(), json!(i));
            }
            c.metadata
        }
        _ => {
            let o = Object::decode(raw).map_err(malformed)?;
            let meta_len = o.metadata.as_ref().map_or(0, |m| m.encoded_len());
            let body = raw.len().saturating_sub(meta_len);
            if body > 2 {
                note = Some(format!(
                    "only metadata is decoded; the rest of the {} ({} bytes) is protobuf",
                    if tm.kind.is_empty() {
                        "object"
                    } else {
                        &tm.kind
                    },
                    body
                ));
            }
            o.metadata
        }
    };
    if !unknown.content_type.is_empty() {
        let n = format!("content type {:?}", unknown.content_type);
        note = Some(match note {
            Some(prev) => format!("{prev}; {n}"),
            None => n,
        });
    }
    Ok(finish(tm, Encoding::Protobuf, obj, meta.as_ref(), note))
}

fn finish(
    tm: TypeMeta,
    encoding: Encoding,
    mut obj: Map<String, Value>,
    meta: Option<&ObjectMeta>,
    note: Option<String>,
) -> KubeObject {
    let (name, namespace) = meta
        .map(|m| (m.name.clone(), m.namespace.clone()))
        .unwrap_or_default();
    if let Some(m) = meta {
        obj.insert("metadata".into(), meta_json(m));
    }
    KubeObject {
        api_version: tm.api_version,
        kind: tm.kind,
        name,
        namespace,
        encoding,
        object: Value::Object(obj),
        note,
    }
}

/// A JSON value that is a Kubernetes object (it has string `apiVersion` and `kind`); the
/// value is handed back when it is not one.
pub fn from_json(v: Value) -> std::result::Result<KubeObject, Value> {
    let (Some(api_version), Some(kind)) = (
        v.get("apiVersion").and_then(Value::as_str),
        v.get("kind").and_then(Value::as_str),
    ) else {
        return Err(v);
    };
    let (api_version, kind) = (api_version.to_string(), kind.to_string());
    let field = |k: &str| {
        v.get("metadata")
            .and_then(|m| m.get(k))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    Ok(KubeObject {
        api_version,
        kind,
        name: field("name"),
        namespace: field("namespace"),
        encoding: Encoding::Json,
        object: v,
        note: None,
    })
}

/// Who a stored object is, read without building it: for listings and filters, where decoding
/// every object whole would cost more than reading the file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ident {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub namespace: String,
    pub encoding: Option<Encoding>,
    /// A Secret's `type`.
    pub secret_type: Option<String>,
    /// The keys of `data` and `binaryData` (Secret, ConfigMap).
    pub data_keys: Vec<String>,
}

/// The keys of a JSON object, whatever the values; nothing for other JSON values.
#[derive(Default)]
struct KeysOnly(Vec<String>);

impl<'de> serde::Deserialize<'de> for KeysOnly {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = KeysOnly;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> std::result::Result<KeysOnly, A::Error> {
                let mut keys = Vec::new();
                while let Some((k, _)) = m.next_entry::<String, serde::de::IgnoredAny>()? {
                    keys.push(k);
                }
                Ok(KeysOnly(keys))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut s: A,
            ) -> std::result::Result<KeysOnly, A::Error> {
                while s.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(KeysOnly::default())
            }
            fn visit_str<E>(self, _: &str) -> std::result::Result<KeysOnly, E> {
                Ok(KeysOnly::default())
            }
            fn visit_bool<E>(self, _: bool) -> std::result::Result<KeysOnly, E> {
                Ok(KeysOnly::default())
            }
            fn visit_i64<E>(self, _: i64) -> std::result::Result<KeysOnly, E> {
                Ok(KeysOnly::default())
            }
            fn visit_u64<E>(self, _: u64) -> std::result::Result<KeysOnly, E> {
                Ok(KeysOnly::default())
            }
            fn visit_f64<E>(self, _: f64) -> std::result::Result<KeysOnly, E> {
                Ok(KeysOnly::default())
            }
            fn visit_unit<E>(self) -> std::result::Result<KeysOnly, E> {
                Ok(KeysOnly::default())
            }
        }
        d.deserialize_any(V)
    }
}

/// A string where there is one, nothing for any other JSON value.
#[derive(Default)]
struct AnyString(Option<String>);

impl<'de> serde::Deserialize<'de> for AnyString {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        // Strings are kept; anything else is skipped without being built.
        struct S;
        impl<'de> serde::de::Visitor<'de> for S {
            type Value = AnyString;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E>(self, s: &str) -> std::result::Result<AnyString, E> {
                Ok(AnyString(Some(s.to_string())))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> std::result::Result<AnyString, A::Error> {
                while m
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(AnyString(None))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut s: A,
            ) -> std::result::Result<AnyString, A::Error> {
                while s.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(AnyString(None))
            }
            fn visit_bool<E>(self, _: bool) -> std::result::Result<AnyString, E> {
                Ok(AnyString(None))
            }
            fn visit_i64<E>(self, _: i64) -> std::result::Result<AnyString, E> {
                Ok(AnyString(None))
            }
            fn visit_u64<E>(self, _: u64) -> std::result::Result<AnyString, E> {
                Ok(AnyString(None))
            }
            fn visit_f64<E>(self, _: f64) -> std::result::Result<AnyString, E> {
                Ok(AnyString(None))
            }
            fn visit_unit<E>(self) -> std::result::Result<AnyString, E> {
                Ok(AnyString(None))
            }
        }
        d.deserialize_any(S)
    }
}

/// A JSON object read as `T`, `None` for any other JSON value. A derived `Deserialize` also
/// reads an array, field by field (`["v1","Secret"]` would be a Secret), which the full decode
/// does not.
struct MapOnly<T>(Option<T>);

impl<T> Default for MapOnly<T> {
    fn default() -> Self {
        MapOnly(None)
    }
}

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for MapOnly<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for V<T> {
            type Value = MapOnly<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                m: A,
            ) -> std::result::Result<MapOnly<T>, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(m))
                    .map(|t| MapOnly(Some(t)))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut s: A,
            ) -> std::result::Result<MapOnly<T>, A::Error> {
                while s.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(MapOnly(None))
            }
            fn visit_str<E>(self, _: &str) -> std::result::Result<MapOnly<T>, E> {
                Ok(MapOnly(None))
            }
            fn visit_bool<E>(self, _: bool) -> std::result::Result<MapOnly<T>, E> {
                Ok(MapOnly(None))
            }
            fn visit_i64<E>(self, _: i64) -> std::result::Result<MapOnly<T>, E> {
                Ok(MapOnly(None))
            }
            fn visit_u64<E>(self, _: u64) -> std::result::Result<MapOnly<T>, E> {
                Ok(MapOnly(None))
            }
            fn visit_f64<E>(self, _: f64) -> std::result::Result<MapOnly<T>, E> {
                Ok(MapOnly(None))
            }
            fn visit_unit<E>(self) -> std::result::Result<MapOnly<T>, E> {
                Ok(MapOnly(None))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct MetaPeek {
    name: AnyString,
    namespace: AnyString,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct JsonPeek {
    #[serde(rename = "apiVersion")]
    api_version: AnyString,
    kind: AnyString,
    metadata: MapOnly<MetaPeek>,
    #[serde(rename = "type")]
    type_: AnyString,
    data: KeysOnly,
    #[serde(rename = "binaryData")]
    binary_data: KeysOnly,
}

/// What a JSON value is, scanned without building it: `Ok(Some)` for a Kubernetes object,
/// `Ok(None)` for other JSON, `Err` for text that is not JSON.
pub fn peek_json(v: &[u8]) -> std::result::Result<Option<Ident>, serde_json::Error> {
    // JSON is UTF-8 throughout, but the scan does not check the strings it skips.
    let v = std::str::from_utf8(v).map_err(|e| {
        <serde_json::Error as serde::de::Error>::custom(format!(
            "invalid UTF-8 after byte {}",
            e.valid_up_to()
        ))
    })?;
    let p: JsonPeek = match serde_json::from_str(v) {
        Ok(MapOnly(Some(p))) => p,
        // Valid JSON that is not an object (an array, a number, ...).
        Ok(MapOnly(None)) => return Ok(None),
        Err(_) => {
            serde_json::from_str::<serde::de::IgnoredAny>(v)?;
            return Ok(None);
        }
    };
    let (Some(api_version), Some(kind)) = (p.api_version.0, p.kind.0) else {
        return Ok(None);
    };
    let meta = p.metadata.0.unwrap_or_default();
    let mut data_keys = p.data.0;
    data_keys.extend(p.binary_data.0);
    Ok(Some(Ident {
        secret_type: p.type_.0.filter(|_| kind == "Secret"),
        api_version,
        kind,
        name: meta.name.0.unwrap_or_default(),
        namespace: meta.namespace.0.unwrap_or_default(),
        encoding: Some(Encoding::Json),
        data_keys,
    }))
}

/// Who a protobuf object is (`envelope` follows `k8s\0`): the envelope's type, the metadata
/// and, for Secret and ConfigMap, the type and data keys. The rest of the body is skipped.
pub fn peek_protobuf(envelope: &[u8]) -> Result<Ident> {
    let unknown = Unknown::decode(envelope).map_err(malformed)?;
    let tm = unknown.type_meta.unwrap_or_default();
    let mut id = Ident {
        encoding: Some(Encoding::Protobuf),
        ..Ident::default()
    };
    if unknown.content_encoding.is_empty() {
        let raw = unknown.raw.as_slice();
        let meta = match tm.kind.as_str() {
            "Secret" if tm.api_version == "v1" => {
                let s = Secret::decode(raw).map_err(malformed)?;
                // The API server's JSON leaves out an empty type, and so does the full decode.
                id.secret_type = s.r#type.filter(|t| !t.is_empty());
                id.data_keys = s.data.into_keys().collect();
                s.metadata
            }
            "ConfigMap" if tm.api_version == "v1" => {
                let c = ConfigMap::decode(raw).map_err(malformed)?;
                id.data_keys = c
                    .data
                    .into_keys()
                    .chain(c.binary_data.into_keys())
                    .collect();
                c.metadata
            }
            _ => Object::decode(raw).map_err(malformed)?.metadata,
        };
        if let Some(m) = meta {
            id.name = m.name;
            id.namespace = m.namespace;
        }
    }
    id.api_version = tm.api_version;
    id.kind = tm.kind;
    Ok(id)
}

impl KubeObject {
    /// The same facts as [`peek_json`] and [`peek_protobuf`] give.
    pub fn ident(&self) -> Ident {
        let keys = |f: &str| -> Vec<String> {
            self.object
                .get(f)
                .and_then(Value::as_object)
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default()
        };
        let mut data_keys = keys("data");
        data_keys.extend(keys("binaryData"));
        Ident {
            api_version: self.api_version.clone(),
            kind: self.kind.clone(),
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            encoding: Some(self.encoding),
            secret_type: self
                .object
                .get("type")
                .and_then(Value::as_str)
                .filter(|_| self.kind == "Secret")
                .map(str::to_string),
            data_keys,
        }
    }
}

/// `metadata.uid` of a stored Kubernetes object.
pub fn object_uid(value: &[u8]) -> Result<Option<String>> {
    if value.starts_with(ENCRYPTED_PREFIX) {
        return Err(Error::InvalidInput(
            "the object is encrypted at rest by the Kubernetes API server (k8s:enc:); etcdsnap cannot read it".into(),
        ));
    }
    if let Some(envelope) = value.strip_prefix(PROTO_PREFIX) {
        let unknown = Unknown::decode(envelope).map_err(malformed)?;
        let object = Object::decode(unknown.raw.as_slice()).map_err(malformed)?;
        return Ok(object.metadata.map(|m| m.uid).filter(|u| !u.is_empty()));
    }
    let v: serde_json::Value = serde_json::from_slice(value).map_err(|e| {
        Error::Integrity(format!(
            "a Kubernetes object is neither protobuf (k8s\\0) nor JSON: {e}"
        ))
    })?;
    Ok(v["metadata"]["uid"]
        .as_str()
        .filter(|u| !u.is_empty())
        .map(str::to_string))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn len_field(number: u64, body: &[u8]) -> Vec<u8> {
        let mut out = vec![((number << 3) | 2) as u8];
        let mut len = body.len() as u64;
        loop {
            let b = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
        out.extend_from_slice(body);
        out
    }

    /// A protobuf-encoded Namespace as the API server writes it.
    pub(crate) fn proto_namespace(name: &str, uid: &str) -> Vec<u8> {
        let mut meta = len_field(1, name.as_bytes());
        meta.extend(len_field(5, uid.as_bytes()));
        // creationTimestamp (8) and a varint field (generation, 7) to skip over.
        meta.extend([7 << 3, 0x96, 0x01]);
        let mut ns = len_field(1, &meta);
        ns.extend(len_field(2, b"\x0a\x0akubernetes"));
        let mut type_meta = len_field(1, b"v1");
        type_meta.extend(len_field(2, b"Namespace"));
        let mut env = b"k8s\0".to_vec();
        env.extend(len_field(1, &type_meta));
        env.extend(len_field(2, &ns));
        env.extend(len_field(4, b""));
        env
    }

    fn varint_field(number: u64, v: u64) -> Vec<u8> {
        let mut out = vec![(number << 3) as u8];
        let mut v = v;
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return out;
            }
            out.push(b | 0x80);
        }
    }

    fn map_entry(number: u64, k: &[u8], v: &[u8]) -> Vec<u8> {
        len_field(number, &[len_field(1, k), len_field(2, v)].concat())
    }

    fn envelope(api_version: &str, kind: &str, raw: &[u8], encoding: &str) -> Vec<u8> {
        let type_meta = [
            len_field(1, api_version.as_bytes()),
            len_field(2, kind.as_bytes()),
        ]
        .concat();
        [
            b"k8s\0".to_vec(),
            len_field(1, &type_meta),
            len_field(2, raw),
            len_field(3, encoding.as_bytes()),
            len_field(4, b""),
        ]
        .concat()
    }

    fn meta(name: &str, ns: &str) -> Vec<u8> {
        [
            len_field(1, name.as_bytes()),
            len_field(3, ns.as_bytes()),
            len_field(5, b"uid-1"),
            len_field(6, b"42"),
            len_field(
                8,
                &[varint_field(1, 1_704_164_645), varint_field(2, 5)].concat(),
            ),
            len_field(9, &varint_field(1, 1_704_164_700)),
            varint_field(10, 30),
            map_entry(11, b"app", b"db"),
            map_entry(12, b"note", b"x"),
            len_field(
                13,
                &[
                    len_field(1, b"ReplicaSet"),
                    len_field(3, b"rs"),
                    len_field(4, b"uid-rs"),
                    len_field(5, b"apps/v1"),
                    varint_field(6, 1),
                ]
                .concat(),
            ),
            len_field(14, b"f1"),
        ]
        .concat()
    }

    /// A protobuf Secret `default/db` of type Opaque with `password: hunter2`.
    pub(crate) fn proto_secret() -> Vec<u8> {
        let raw = [
            len_field(1, &meta("db", "default")),
            map_entry(2, b"password", b"hunter2"),
            len_field(3, b"Opaque"),
        ]
        .concat();
        envelope("v1", "Secret", &raw, "")
    }

    #[test]
    fn decodes_secret_configmap_and_metadata_of_other_kinds() {
        let o = decode_protobuf(&proto_secret()[4..]).unwrap();
        assert_eq!(
            (o.kind.as_str(), o.namespace.as_str(), o.name.as_str()),
            ("Secret", "default", "db")
        );
        assert_eq!(o.note, None);
        assert_eq!(
            o.object,
            json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "Opaque",
                "data": {"password": "aHVudGVyMg=="},
                "metadata": {
                    "name": "db",
                    "namespace": "default",
                    "uid": "uid-1",
                    "resourceVersion": "42",
                    "creationTimestamp": "2024-01-02T03:04:05Z",
                    "deletionTimestamp": "2024-01-02T03:05:00Z",
                    "deletionGracePeriodSeconds": 30,
                    "labels": {"app": "db"},
                    "annotations": {"note": "x"},
                    "ownerReferences": [{
                        "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs",
                        "uid": "uid-rs", "controller": true
                    }],
                    "finalizers": ["f1"]
                }
            })
        );
        let cm = [
            len_field(1, &meta("c", "ns")),
            map_entry(2, b"k", b"v"),
            map_entry(3, b"b", &[0, 255]),
            varint_field(4, 1),
        ]
        .concat();
        let o = decode_protobuf(&envelope("v1", "ConfigMap", &cm, "")[4..]).unwrap();
        assert_eq!(o.object["data"], json!({"k": "v"}));
        assert_eq!(o.object["binaryData"], json!({"b": "AP8="}));
        assert_eq!(o.object["immutable"], json!(true));
        let dep = [
            len_field(1, &meta("web", "default")),
            len_field(2, &varint_field(1, 3)),
        ]
        .concat();
        let o = decode_protobuf(&envelope("apps/v1", "Deployment", &dep, "")[4..]).unwrap();
        assert_eq!(o.object["metadata"]["labels"], json!({"app": "db"}));
        assert!(o.object.get("spec").is_none());
        assert!(o.note.unwrap().contains("the rest of the Deployment"));
        let o = decode_protobuf(&envelope("v1", "Secret", b"\xff", "gzip")[4..]).unwrap();
        assert!(o.note.unwrap().contains("gzip"));
        assert!(o.object.get("metadata").is_none());
        assert!(decode_protobuf(&envelope("v1", "Secret", b"\x0a\xff", "")[4..]).is_err());
    }

    /// Found by the kube_object fuzz target: Go's protobuf code writes a Secret's `type` even
    /// when it is empty; the peek kept `Some("")`, so a listing showed `type=` where the full
    /// decode has no type.
    #[test]
    fn peek_and_decode_agree_on_an_empty_secret_type() {
        let raw = [
            len_field(1, &meta("s3", "kube-system")),
            map_entry(2, b"etcd-s3-bucket", b"b"),
            len_field(3, b""),
        ]
        .concat();
        let value = envelope("v1", "Secret", &raw, "");
        let envelope = &value[PROTO_PREFIX.len()..];
        let id = peek_protobuf(envelope).unwrap();
        assert_eq!(id.secret_type, None);
        assert_eq!(decode_protobuf(envelope).unwrap().ident(), id);
    }

    #[test]
    fn encryption_headers() {
        let e = encrypted(b"k8s:enc:aescbc:v1:key1:\x00:\x01").unwrap();
        assert_eq!(
            (
                e.provider.as_str(),
                e.version.as_str(),
                e.key.as_str(),
                e.size
            ),
            ("aescbc", "v1", "key1", 26)
        );
        let e = encrypted(b"k8s:enc:secretbox").unwrap();
        assert_eq!((e.provider.as_str(), e.key.as_str()), ("", ""));
        assert!(encrypted(b"k8s\0abc").is_none());
    }

    #[test]
    fn json_peek_reads_identity_only() {
        let v = br#"{"kind":"Secret","apiVersion":"v1","type":"Opaque","metadata":{"name":"s","namespace":"n","labels":{"a":"b"}},"data":{"x":"eA==","y":"eQ=="},"extra":[1,{"z":null}]}"#;
        let id = peek_json(v).unwrap().unwrap();
        assert_eq!(
            id,
            Ident {
                api_version: "v1".into(),
                kind: "Secret".into(),
                name: "s".into(),
                namespace: "n".into(),
                encoding: Some(Encoding::Json),
                secret_type: Some("Opaque".into()),
                data_keys: vec!["x".into(), "y".into()],
            }
        );
        let full = from_json(serde_json::from_slice(v).unwrap()).unwrap();
        assert_eq!(full.ident(), id);
        assert_eq!(peek_json(br#"{"a":1}"#).unwrap(), None);
        assert_eq!(peek_json(b"[1]").unwrap(), None);
        assert!(peek_json(b"{oops").is_err());
        // Found by the kube_object fuzz target: invalid UTF-8 in a string the scan skips made
        // the peek see an object that the full decode refuses as no JSON.
        let bad = b"{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"x\":\"\x8d\"}";
        assert!(serde_json::from_slice::<Value>(bad).is_err());
        let err = peek_json(bad).unwrap_err().to_string();
        assert!(err.contains("invalid UTF-8 after byte 43"), "{err}");
        // Also found by it: an array was read as an object, field by field.
        assert_eq!(peek_json(br#"["v1","Secret"]"#).unwrap(), None);
        let v = br#"{"apiVersion":"v1","kind":"Secret","metadata":["n","ns"]}"#;
        let id = peek_json(v).unwrap().unwrap();
        assert_eq!((id.name.as_str(), id.namespace.as_str()), ("", ""));
        assert_eq!(
            from_json(serde_json::from_slice(v).unwrap())
                .unwrap()
                .ident(),
            id
        );
    }

    #[test]
    fn reads_uid_from_protobuf_and_json() {
        let uid = "6a0b9c55-1f0e-4a43-9d62-2f3d3b1c1a10";
        assert_eq!(
            object_uid(&proto_namespace("kube-system", uid))
                .unwrap()
                .as_deref(),
            Some(uid)
        );
        let json =
            format!(r#"{{"kind":"Namespace","metadata":{{"name":"kube-system","uid":"{uid}"}}}}"#);
        assert_eq!(object_uid(json.as_bytes()).unwrap().as_deref(), Some(uid));
        assert_eq!(object_uid(br#"{"metadata":{}}"#).unwrap(), None);
    }

    #[test]
    fn refuses_encrypted_and_garbage() {
        let err = object_uid(b"k8s:enc:aescbc:v1:key1:xxxx")
            .unwrap_err()
            .to_string();
        assert!(err.contains("encrypted at rest"), "{err}");
        assert!(object_uid(b"\x00\x01garbage").is_err());
        assert!(object_uid(b"k8s\0\x12\x05ab").is_err());
    }
}
