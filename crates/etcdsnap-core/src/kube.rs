//! Kubernetes objects as the API server stores them in etcd: JSON, or protobuf behind the
//! 4-byte `k8s\0` prefix (a `runtime.Unknown` envelope whose `raw` field is the object).
//! Values encrypted at rest (`k8s:enc:`) cannot be read and are reported as such.

use crate::{Error, Result};

/// Where the API server keeps the `kube-system` namespace.
pub const KUBE_SYSTEM_KEY: &str = "/registry/namespaces/kube-system";

const PROTO_PREFIX: &[u8] = b"k8s\0";
const ENCRYPTED_PREFIX: &[u8] = b"k8s:enc:";

/// `runtime.Unknown`, the envelope after `k8s\0`: only `raw` (field 2, the object) is read.
#[derive(Clone, PartialEq, prost::Message)]
struct Unknown {
    #[prost(bytes = "vec", tag = "2")]
    raw: Vec<u8>,
}

/// Any Kubernetes object: `metadata` is field 1 of every top-level kind.
#[derive(Clone, PartialEq, prost::Message)]
struct Object {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
}

/// `ObjectMeta`, as far as we read it.
#[derive(Clone, PartialEq, prost::Message)]
struct ObjectMeta {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "3")]
    namespace: String,
    #[prost(string, tag = "5")]
    uid: String,
}

fn malformed(e: prost::DecodeError) -> Error {
    Error::Integrity(format!("malformed protobuf in a Kubernetes object: {e}"))
}

/// `metadata.uid` of a stored Kubernetes object.
pub fn object_uid(value: &[u8]) -> Result<Option<String>> {
    if value.starts_with(ENCRYPTED_PREFIX) {
        return Err(Error::InvalidInput(
            "the object is encrypted at rest by the Kubernetes API server (k8s:enc:); etcdsnap cannot read it".into(),
        ));
    }
    if let Some(envelope) = value.strip_prefix(PROTO_PREFIX) {
        use prost::Message;
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
