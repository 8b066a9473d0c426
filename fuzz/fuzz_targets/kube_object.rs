//! A value of a Kubernetes object as an etcd key holds it: protobuf behind `k8s\0`, JSON, or
//! encrypted at rest behind `k8s:enc:`. Whatever the bytes, nothing panics. The quick look
//! (`peek_protobuf`, `peek_json`) and the full decode (`decode_protobuf`, `from_json`) agree on
//! whether the value is an object and on who it is (`KubeObject::ident`); `object_uid` gives the
//! decoded `metadata.uid`; an encrypted value is reported as encrypted, with its size.

#![no_main]

use etcdsnap_core::kube::{
    ENCRYPTED_PREFIX, Ident, PROTO_PREFIX, decode_protobuf, encrypted, from_json, object_uid,
    peek_json, peek_protobuf,
};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn check_protobuf(value: &[u8], envelope: &[u8]) {
    let full = decode_protobuf(envelope);
    let peek = peek_protobuf(envelope);
    match (&full, &peek) {
        (Ok(obj), Ok(id)) => {
            assert_eq!(&obj.ident(), id, "{:?}", obj.object);
            assert!(serde_json::to_vec(&obj.object).is_ok());
            let uid = obj.object["metadata"]["uid"].as_str();
            // Without a content encoding the raw bytes are the object, and its uid is read.
            if obj
                .note
                .as_deref()
                .is_none_or(|n| !n.contains("content encoding"))
            {
                let got = object_uid(value).unwrap_or_else(|e| panic!("object_uid: {e}"));
                assert_eq!(got.as_deref(), uid, "{:?}", obj.object);
            }
        }
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        (a, b) => panic!("decode gives {a:?}, peek gives {b:?}"),
    }
}

/// The facts the JSON peek and the full decode share; the peek lists data keys in the order of
/// the text, the decoded object in sorted order.
fn sorted(mut id: Ident) -> Ident {
    id.data_keys.sort();
    id.data_keys.dedup();
    id
}

/// A `\uXXXX` escape of a UTF-16 surrogate: the scan skips strings without decoding their
/// escapes, the full parser refuses a lone surrogate. Only a hand-made value has one (Go writes
/// U+FFFD for bad text), so the peek may call such a value an object.
fn has_surrogate_escape(value: &[u8]) -> bool {
    value.windows(4).any(|w| {
        w[0] == b'\\'
            && w[1] == b'u'
            && w[2].eq_ignore_ascii_case(&b'd')
            && b"89abcdefABCDEF".contains(&w[3])
    })
}

fn check_json(value: &[u8]) {
    let Ok(Some(id)) = peek_json(value) else {
        return;
    };
    if has_surrogate_escape(value) {
        return;
    }
    let v: Value = match serde_json::from_slice(value) {
        Ok(v) => v,
        // The scan steps over numbers without reading them; the full parser refuses one
        // beyond f64 (5e344466666666). Go cannot write such a number either, so only a
        // hand-made value has one.
        Err(e) if e.to_string().starts_with("number out of range") => return,
        Err(e) => panic!("peek_json read it as JSON, serde_json refused it: {e}"),
    };
    let obj = from_json(v).unwrap_or_else(|v| panic!("peek found {id:?}, from_json refused {v}"));
    assert_eq!(sorted(obj.ident()), sorted(id));
}

fuzz_target!(|value: &[u8]| {
    let enc = encrypted(value);
    assert_eq!(enc.is_some(), value.starts_with(ENCRYPTED_PREFIX));
    if let Some(e) = enc {
        assert_eq!(e.size, value.len());
        assert!(
            object_uid(value).is_err(),
            "an encrypted value has no readable uid"
        );
        return;
    }
    if let Some(envelope) = value.strip_prefix(PROTO_PREFIX) {
        check_protobuf(value, envelope);
    } else {
        check_json(value);
        let _ = object_uid(value);
    }
});
