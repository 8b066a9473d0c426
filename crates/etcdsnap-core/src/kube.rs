//! Kubernetes objects as the API server stores them in etcd: JSON, or protobuf behind the
//! 4-byte `k8s\0` prefix (a `runtime.Unknown` envelope whose `raw` field is the object).
//! Values encrypted at rest (`k8s:enc:`) cannot be read and are reported as such.

use crate::{Error, Result};

/// Where the API server keeps the `kube-system` namespace.
pub const KUBE_SYSTEM_KEY: &str = "/registry/namespaces/kube-system";

const PROTO_PREFIX: &[u8] = b"k8s\0";
const ENCRYPTED_PREFIX: &[u8] = b"k8s:enc:";

/// Reads one length-delimited or varint field after another from a protobuf message.
struct Fields<'a> {
    buf: &'a [u8],
}

enum Field<'a> {
    Varint,
    Bytes(&'a [u8]),
}

fn varint(buf: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, b) in buf.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

impl<'a> Iterator for Fields<'a> {
    type Item = Option<(u64, Field<'a>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() {
            return None;
        }
        let parsed = (|| {
            let (key, n) = varint(self.buf)?;
            self.buf = &self.buf[n..];
            let field = match key & 7 {
                0 => {
                    let (_, n) = varint(self.buf)?;
                    self.buf = &self.buf[n..];
                    Field::Varint
                }
                1 => {
                    self.buf = self.buf.get(8..)?;
                    Field::Varint
                }
                2 => {
                    let (len, n) = varint(self.buf)?;
                    let end = n.checked_add(usize::try_from(len).ok()?)?;
                    let bytes = self.buf.get(n..end)?;
                    self.buf = &self.buf[end..];
                    Field::Bytes(bytes)
                }
                5 => {
                    self.buf = self.buf.get(4..)?;
                    Field::Varint
                }
                _ => return None,
            };
            Some((key >> 3, field))
        })();
        if parsed.is_none() {
            // Malformed: stop after reporting it once.
            self.buf = &[];
        }
        Some(parsed)
    }
}

/// The first length-delimited field `number` of a protobuf message.
fn bytes_field(msg: &[u8], number: u64) -> Result<Option<&[u8]>> {
    for f in (Fields { buf: msg }) {
        match f {
            Some((n, Field::Bytes(b))) if n == number => return Ok(Some(b)),
            Some(_) => {}
            None => {
                return Err(Error::Integrity(
                    "malformed protobuf in a Kubernetes object".into(),
                ));
            }
        }
    }
    Ok(None)
}

/// `metadata.uid` of a stored Kubernetes object.
pub fn object_uid(value: &[u8]) -> Result<Option<String>> {
    if value.starts_with(ENCRYPTED_PREFIX) {
        return Err(Error::InvalidInput(
            "the object is encrypted at rest by the Kubernetes API server (k8s:enc:); etcdsnap cannot read it".into(),
        ));
    }
    if let Some(envelope) = value.strip_prefix(PROTO_PREFIX) {
        // runtime.Unknown: 1 typeMeta, 2 raw. The object: 1 metadata. ObjectMeta: 5 uid.
        let Some(raw) = bytes_field(envelope, 2)? else {
            return Ok(None);
        };
        let Some(meta) = bytes_field(raw, 1)? else {
            return Ok(None);
        };
        return Ok(bytes_field(meta, 5)?
            .map(|uid| String::from_utf8_lossy(uid).into_owned())
            .filter(|u| !u.is_empty()));
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
