//! Unit tests of the pieces of `inspect`: names, key layouts, value classification (the cheap
//! glance must agree with the full decode), the trailer, and status/verify/inspect on a
//! hand-built database, raw and zipped. Real etcd snapshots are tested in the binary crate's
//! integration tests.

use std::io::Write;

use super::*;
use crate::bbolt::tests::build::sample;
use crate::kube::tests::{proto_namespace, proto_secret};
use crate::snapfile::verify::with_trailer;

#[test]
fn node_comes_from_names_with_a_default_prefix() {
    assert_eq!(
        node_from_name("on-demand-n1-1730308816").as_deref(),
        Some("n1")
    );
    assert_eq!(
        node_from_name("etcd-snapshot-ip-172-31-16-180-1713817190.zip").as_deref(),
        Some("ip-172-31-16-180")
    );
    assert_eq!(
        node_from_name("nightly-n1-1730308816"),
        None,
        "prefix unknown"
    );
    assert_eq!(node_from_name("on-demand-n1"), None, "no time");
    assert_eq!(node_from_name("on-demand--1730308816"), None, "no node");
}

#[test]
fn registry_keys_give_resource_and_namespace() {
    let p = |k: &str| RegistryKey::parse(k.as_bytes());
    let rk = |r: &str, ns: Option<&str>, n: &str| {
        Some(RegistryKey {
            resource: r.into(),
            namespace: ns.map(Into::into),
            name: n.into(),
        })
    };
    assert_eq!(
        p("/registry/secrets/default/s1"),
        rk("secrets", Some("default"), "s1")
    );
    assert_eq!(
        p("/registry/namespaces/kube-system"),
        rk("namespaces", None, "kube-system")
    );
    assert_eq!(p("/registry/minions/node1"), rk("nodes", None, "node1"));
    assert_eq!(
        p("/registry/services/specs/default/kubernetes"),
        rk("services", Some("default"), "kubernetes")
    );
    assert_eq!(
        p("/registry/services/endpoints/default/kubernetes"),
        rk("endpoints", Some("default"), "kubernetes")
    );
    assert_eq!(
        p("/registry/k3s.cattle.io/etcdsnapshotfiles/snap-1"),
        rk("etcdsnapshotfiles.k3s.cattle.io", None, "snap-1")
    );
    assert_eq!(p("/other/secrets/a/b"), None);
    assert_eq!(p("/registry/a/b/c/d"), None);
}

#[test]
fn kinds_match_resources() {
    assert_eq!(plural("Secret"), "secrets");
    assert_eq!(plural("Ingress"), "ingresses");
    assert_eq!(plural("NetworkPolicy"), "networkpolicies");
    assert_eq!(plural("Gateway"), "gateways");
    assert_eq!(plural("Endpoints"), "endpoints");
    assert!(kind_matches("Secret", Some("Secret"), None));
    assert!(kind_matches("secrets", Some("Secret"), None));
    assert!(kind_matches("secret", None, Some("secrets")));
    assert!(kind_matches("Node", None, Some("nodes")));
    assert!(kind_matches(
        "ETCDSnapshotFile",
        None,
        Some("etcdsnapshotfiles.k3s.cattle.io")
    ));
    assert!(!kind_matches("Secret", Some("ConfigMap"), Some("secrets")));
    assert!(!kind_matches("Secret", None, None));
}

fn json_cm() -> Vec<u8> {
    br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","namespace":"ns","labels":{"a":"b"}},"data":{"x":"1","y":{"nested":true}}}"#.to_vec()
}

#[test]
fn values_are_classified_and_glance_agrees_with_the_full_decode() {
    let long = "é".repeat(100);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (Vec::new(), "empty"),
        (b"hello".to_vec(), "text"),
        (long.as_bytes().to_vec(), "text"),
        (vec![0xff, 0x00, 0x01], "binary"),
        (b"k8s\0\x12\xffjunk".to_vec(), "binary"),
        (br#"[1, 2, {"a": 3}]"#.to_vec(), "json"),
        (br#"  {"a": {"kind": 1}}"#.to_vec(), "json"),
        (br#"{"apiVersion": 3, "kind": "X"}"#.to_vec(), "json"),
        (b"{not json".to_vec(), "text"),
        (json_cm(), "kubernetes"),
        (proto_secret(), "kubernetes"),
        (proto_namespace("kube-system", "uid-1"), "kubernetes"),
        (b"k8s:enc:aescbc:v1:key1:\x00\x01\x02".to_vec(), "encrypted"),
        (b"k8s:enc:kms:v2:my-kms:\x0a\x01".to_vec(), "encrypted"),
    ];
    for (v, ty) in cases {
        let full = ValueView::of(&v);
        let g = glance(&v);
        assert_eq!(full.type_name(), ty, "{v:?}");
        assert_eq!(g.type_name, ty, "{v:?}");
        assert_eq!(g.summary, full.summary(v.len()), "{v:?}");
        if let ValueView::Kube(o) = &full {
            assert_eq!(g.ident.as_ref(), Some(&o.ident()), "{v:?}");
        }
    }
    let long_summary = glance(long.as_bytes()).summary;
    assert!(long_summary.ends_with("…\" (200 bytes)"), "{long_summary}");
    assert_eq!(
        glance(&json_cm()).summary,
        "v1/ConfigMap ns/c (json, 135 bytes) keys=x,y"
    );
    let s = glance(&proto_secret()).summary;
    assert!(
        s.starts_with("v1/Secret default/db (protobuf, ")
            && s.ends_with("type=Opaque keys=password"),
        "{s}"
    );
    assert!(!s.contains("hunter2"));
    assert_eq!(
        glance(b"k8s:enc:kms:v2:my-kms:\x0a\x01").summary,
        "encrypted at rest (kms v2, key my-kms), 24 bytes"
    );
}

#[test]
fn filters_use_the_object_then_the_key_layout() {
    let opts = |kind: Option<&str>, ns: Option<&str>| InspectOptions {
        kind: kind.map(Into::into),
        namespace: ns.map(Into::into),
        ..Default::default()
    };
    let secret_key = b"/registry/secrets/default/db";
    let enc = b"k8s:enc:aescbc:v1:key1:xyz";
    assert!(opts(Some("Secret"), None).keep_value(secret_key, &proto_secret()));
    assert!(opts(Some("Secret"), Some("default")).keep_value(secret_key, enc));
    assert!(!opts(Some("Secret"), Some("other")).keep_value(secret_key, enc));
    assert!(!opts(Some("ConfigMap"), None).keep_value(secret_key, &proto_secret()));
    // The decoded namespace wins over the key's.
    assert!(opts(None, Some("ns")).keep_value(b"/registry/configmaps/elsewhere/c", &json_cm()));
    assert!(!opts(Some("Secret"), None).keep_key(b"/k"));
    assert!(InspectOptions::default().keep_key(b"/k"));
}

#[test]
fn trailer_states() {
    let dir = tempfile::tempdir().unwrap();
    let db = vec![7u8; 1024];
    let good = dir.path().join("good");
    std::fs::write(&good, with_trailer(db.clone())).unwrap();
    assert!(
        matches!(check_trailer(&good).unwrap(), Trailer::Valid { sha256 } if sha256.len() == 64)
    );
    let mut bad = with_trailer(db.clone());
    bad[3] ^= 1;
    let badp = dir.path().join("bad");
    std::fs::write(&badp, &bad).unwrap();
    let t = check_trailer(&badp).unwrap();
    assert_eq!(t.word(), "invalid");
    assert!(t.problem().unwrap().contains("checksum mismatch"));
    let raw = dir.path().join("raw");
    std::fs::write(&raw, &db).unwrap();
    assert_eq!(check_trailer(&raw).unwrap(), Trailer::Absent { size: 1024 });
}

fn zip(path: &std::path::Path, entries: &[(&str, &[u8])]) {
    let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    for (name, data) in entries {
        z.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        z.write_all(data).unwrap();
    }
    z.finish().unwrap();
}

#[test]
fn status_verify_and_listing_of_raw_and_zipped_files() {
    let s = sample(4096);
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("on-demand-n1-1730308816");
    let bytes = with_trailer(s.bytes.clone());
    std::fs::write(&raw, &bytes).unwrap();
    let zipped = dir.path().join("on-demand-n1-1730308816.zip");
    zip(&zipped, &[("on-demand-n1-1730308816", &bytes)]);

    for path in [&raw, &zipped] {
        let o = open_local(path, None, None).unwrap();
        let st = status(&o, true).unwrap();
        assert_eq!(
            (st.hash, st.revision, st.total_key),
            (s.hash, 4, s.total_key)
        );
        assert_eq!(st.trailer, "valid");
        assert_eq!(st.node.as_deref(), Some("n1"));
        assert_eq!(st.compacted_revision, Some(2));
        let v = verify(&o, false).unwrap();
        assert_eq!((v.pages, v.revision), (11, 4));
        let mut keys = Vec::new();
        let sum = inspect(&o.db().unwrap(), &InspectOptions::default(), |e| {
            keys.push((e.key.clone(), e.value.clone()));
            Ok(())
        })
        .unwrap();
        assert_eq!(keys, [(b"a".to_vec(), Some(b"3".to_vec()))]);
        assert_eq!(sum.count, 1);
        let old = InspectOptions {
            rev: Some(2),
            keys_only: true,
            ..Default::default()
        };
        let mut n = 0;
        inspect(&o.db().unwrap(), &old, |e| {
            assert!(e.value.is_none());
            n += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 2);
    }
    let o = open_local(&zipped, None, None).unwrap();
    let tmp = o.raw.parent().unwrap().to_path_buf();
    assert!(o.raw.exists());
    drop(o);
    assert!(
        !tmp.exists(),
        "the decompressed copy goes with the Opened value"
    );

    // A zip of two entries, and a raw file without trailer.
    let two = dir.path().join("two.zip");
    zip(&two, &[("a", &bytes), ("b", b"x")]);
    let err = open_local(&two, None, None).unwrap_err().to_string();
    assert!(err.contains("exactly one entry"), "{err}");
    let bare = dir.path().join("db");
    std::fs::write(&bare, &s.bytes).unwrap();
    let o = open_local(&bare, None, None).unwrap();
    let err = verify(&o, false).unwrap_err().to_string();
    assert!(
        err.contains("no SHA-256 trailer") && err.contains("--skip-hash-check"),
        "{err}"
    );
    assert!(verify(&o, true).is_ok());
    assert_eq!(status(&o, true).unwrap().trailer, "absent");
}

#[test]
fn diff_of_two_revisions_of_one_database() {
    // The sample at its latest revision against itself: nothing changed.
    let s = sample(4096);
    let f = crate::bbolt::tests::build::temp_file(&s.bytes);
    let db = Db::open(f.path()).unwrap();
    let r = diff(&db, &db, None).unwrap();
    assert_eq!((r.added, r.removed, r.changed), (0, 0, 0));
}

#[test]
fn differing_paths() {
    let a = json!({"data": {"k": "v", "same": 1}, "metadata": {"resourceVersion": "1"}});
    let b =
        json!({"data": {"k": "w", "same": 1}, "metadata": {"resourceVersion": "2"}, "new": true});
    let mut out = Vec::new();
    differing(&a, &b, "", 3, &mut out);
    assert_eq!(out, ["data.k", "metadata.resourceVersion", "new"]);
}
