//! The S3 store against real servers: s3s-fs (SigV4 checked, plain HTTP) and moto (TLS).
//! Servers come from `ci/install-deps.sh`; `source <(ci/install-deps.sh --env)` first.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use etcdsnap_core::Error;
use etcdsnap_core::error::{RemoteCause, RemoteStage};
use etcdsnap_core::retention::{RetentionContext, apply_retention};
use etcdsnap_core::store::remote::{
    S3Config, S3Identity, S3Store, S3StoreCache, S3Target, UPLOAD_CHUNK_SIZE,
};
use etcdsnap_core::store::{ListDetail, SnapshotStatus, SnapshotStore};
use etcdsnap_testkit::s3::*;
use futures::StreamExt;
use object_store::path::Path as ObjPath;
use object_store::{Attribute, GetOptions, ObjectStore, ObjectStoreExt, PutPayload};

/// Validates the configuration and connects, as the server does.
async fn connect(cfg: &S3Config, identity: S3Identity) -> etcdsnap_core::Result<S3Store> {
    S3Store::connect(&S3Target::new(cfg.clone())?, identity).await
}

const BUCKET: &str = "snapshots";

fn s3s_cfg(server: &S3sFs, folder: &str) -> S3Config {
    S3Config {
        endpoint: server.endpoint(),
        bucket: BUCKET.into(),
        folder: folder.into(),
        insecure: true,
        access_key: ACCESS_KEY.into(),
        secret_key: SECRET_KEY.into(),
        timeout: Duration::from_secs(60),
        // Loopback servers: never through a proxy from the environment.
        proxy: "none".into(),
        ..S3Config::default()
    }
}

fn identity(node: &str) -> S3Identity {
    S3Identity {
        cluster_id: "4f1c2a9e-cluster-uid".into(),
        node_name: node.into(),
        token_hash: "0123456789ab".into(),
    }
}

async fn head(raw: &object_store::aws::AmazonS3, key: &str) -> object_store::GetResult {
    raw.get_opts(
        &ObjPath::from(key),
        GetOptions {
            head: true,
            ..Default::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("HEAD {key}: {e}"))
}

fn attr(r: &object_store::GetResult, a: Attribute) -> Option<String> {
    r.attributes.get(&a).map(|v| v.as_ref().to_string())
}

fn meta(r: &object_store::GetResult, key: &str) -> Option<String> {
    attr(r, Attribute::Metadata(key.to_string().into()))
}

async fn exists(raw: &object_store::aws::AmazonS3, key: &str) -> bool {
    match raw.head(&ObjPath::from(key)).await {
        Ok(_) => true,
        Err(object_store::Error::NotFound { .. }) => false,
        Err(e) => panic!("HEAD {key}: {e}"),
    }
}

async fn put_raw(raw: &object_store::aws::AmazonS3, key: &str, data: &[u8]) {
    raw.put(&ObjPath::from(key), PutPayload::from(data.to_vec()))
        .await
        .unwrap_or_else(|e| panic!("PUT {key}: {e}"));
}

/// The LastModified the store lists for `key` (a listing, as retention reads it).
async fn listed_modified(
    raw: &object_store::aws::AmazonS3,
    key: &str,
) -> impl Ord + std::fmt::Debug {
    let (folder, _) = key.rsplit_once('/').unwrap();
    let listed: Vec<_> = raw.list(Some(&ObjPath::from(folder))).collect().await;
    listed
        .into_iter()
        .map(|m| m.unwrap_or_else(|e| panic!("LIST {folder}: {e}")))
        .find(|m| m.location.as_ref() == key)
        .unwrap_or_else(|| panic!("{key} is not listed"))
        .last_modified
}

/// Waits until the store stamps a new object later than it lists `key` as last modified, so
/// that the next upload lists after `key` whatever the store's resolution (a second on many):
/// a throwaway object outside every folder under test is written until it does.
async fn after_last_modified(raw: &object_store::aws::AmazonS3, key: &str) {
    const PROBE: &str = "clock-probe/probe";
    let last = listed_modified(raw, key).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        put_raw(raw, PROBE, b"x").await;
        if listed_modified(raw, PROBE).await > last {
            break;
        }
        assert!(Instant::now() < deadline, "the store still stamps {last:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    raw.delete(&ObjPath::from(PROBE)).await.unwrap();
}

#[tokio::test]
async fn upload_writes_k3s_metadata_and_content_type() {
    let server = S3sFs::start(&[BUCKET]);
    let store = connect(&s3s_cfg(&server, "/k3s/"), identity("node-a"))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let raw_name = "on-demand-node-a-1730308816";
    let snap = write_file(dir.path(), raw_name, &raw_snapshot(4096, 1));
    let sidecar = write_file(dir.path(), "sidecar.json", br#"{"a":"b"}"#);
    let rec = store.upload(&snap, Some(&sidecar)).await.unwrap();

    assert_eq!(rec.name, raw_name);
    assert_eq!(rec.location, format!("s3://{BUCKET}/k3s/{raw_name}"));
    assert_eq!(rec.node_name, "s3");
    assert_eq!(rec.node_source.as_deref(), Some("node-a"));
    assert_eq!(rec.size, 4096 + 32);
    assert_eq!(rec.created_at.timestamp(), 1730308816);
    assert!(!rec.compressed);
    assert_eq!(rec.status, SnapshotStatus::Successful);
    assert_eq!(rec.token_hash.as_deref(), Some("0123456789ab"));
    assert_eq!(
        rec.metadata.as_deref(),
        Some(
            base64::engine::general_purpose::STANDARD
                .encode(br#"{"a":"b"}"#)
                .as_str()
        )
    );
    let spec = rec.s3.unwrap();
    assert_eq!(spec.bucket, BUCKET);
    assert_eq!(spec.prefix, "/k3s/");
    assert!(spec.insecure);

    let raw = server.raw_client(BUCKET);
    let h = head(&raw, &format!("k3s/{raw_name}")).await;
    assert_eq!(
        attr(&h, Attribute::ContentType).as_deref(),
        Some("application/octet-stream")
    );
    assert_eq!(
        meta(&h, "k3s-cluster-id").as_deref(),
        Some("4f1c2a9e-cluster-uid")
    );
    assert_eq!(meta(&h, "k3s-node-name").as_deref(), Some("node-a"));
    assert_eq!(meta(&h, "k3s-token-hash").as_deref(), Some("0123456789ab"));

    let m = head(&raw, &format!("k3s/.metadata/{raw_name}")).await;
    assert_eq!(
        attr(&m, Attribute::ContentType).as_deref(),
        Some("application/json")
    );
    assert_eq!(meta(&m, "k3s-node-name").as_deref(), Some("node-a"));
    let body = raw
        .get(&ObjPath::from(format!("k3s/.metadata/{raw_name}")))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&body[..], br#"{"a":"b"}"#);

    // A zip gets application/zip; a sidecar that does not exist is skipped.
    let zip_name = "on-demand-node-a-1730308900.zip";
    let zip = write_file(dir.path(), zip_name, b"PK\x03\x04 not really a zip");
    let rec = store
        .upload(&zip, Some(&dir.path().join("missing.json")))
        .await
        .unwrap();
    assert!(rec.compressed);
    assert_eq!(rec.metadata, None);
    let h = head(&raw, &format!("k3s/{zip_name}")).await;
    assert_eq!(
        attr(&h, Attribute::ContentType).as_deref(),
        Some("application/zip")
    );
    assert!(!exists(&raw, &format!("k3s/.metadata/{zip_name}")).await);
}

#[tokio::test]
async fn multipart_upload_of_large_file_and_download_round_trip() {
    let server = S3sFs::start(&[BUCKET]);
    let store = connect(&s3s_cfg(&server, "big"), identity("node-a"))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let name = "etcd-snapshot-node-a-1730000000";
    // 2.5 chunks of data + the 32-byte trailer: three parts.
    let data = raw_snapshot(UPLOAD_CHUNK_SIZE * 5 / 2, 7);
    assert_eq!(data.len() % 512, 32);
    let snap = write_file(dir.path(), name, &data);
    let rec = store.upload(&snap, None).await.unwrap();
    assert_eq!(rec.size, data.len() as u64);

    let raw = server.raw_client(BUCKET);
    let h = head(&raw, &format!("big/{name}")).await;
    assert_eq!(h.meta.size, data.len() as u64);
    // A multipart ETag is `<md5 of part md5s>-<part count>`.
    let etag = h.meta.e_tag.clone().unwrap_or_default();
    assert!(
        etag.trim_matches('"').ends_with("-3"),
        "expected a 3-part upload, ETag {etag}"
    );
    assert_eq!(meta(&h, "k3s-node-name").as_deref(), Some("node-a"));
    assert_eq!(
        attr(&h, Attribute::ContentType).as_deref(),
        Some("application/octet-stream")
    );

    let restore_dir = tempfile::tempdir().unwrap();
    let snapdir = restore_dir.path().join("snapshots");
    std::fs::create_dir(&snapdir).unwrap();
    let got = store.download(name, &snapdir).await.unwrap();
    assert_eq!(got, snapdir.join(name));
    assert!(
        std::fs::read(&got).unwrap() == data,
        "downloaded bytes differ"
    );
    let mode = std::fs::metadata(&got).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(!snapdir.join(format!("{name}.part")).exists());
}

/// Writes `data` into a file in steps, reporting progress like the snapshot writer; `fail`
/// makes the writer report a failure (a bad checksum, say) after all bytes were written.
async fn write_growing(
    path: &std::path::Path,
    data: &[u8],
    tx: etcdsnap_core::snapfile::growing::GrowthSender,
    fail: bool,
) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .unwrap();
    tx.opened(&f).unwrap();
    for piece in data.chunks(1 << 20) {
        f.write_all(piece).unwrap();
        tx.wrote(piece.len());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if fail {
        tx.failed("snapshot checksum mismatch");
    } else {
        tx.finished(data.len() as u64);
    }
}

#[tokio::test]
async fn growing_upload_streams_parts_and_completes_after_the_writer() {
    let server = S3sFs::start(&[BUCKET]);
    let store = connect(&s3s_cfg(&server, "grow"), identity("node-a"))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let name = "on-demand-node-a-1730000001";
    let data = raw_snapshot(UPLOAD_CHUNK_SIZE * 5 / 2, 9);
    let (tx, rx) = etcdsnap_core::snapfile::growing::growing();
    let path = dir.path().join(name);
    let up = store.upload_growing(name, rx, None);
    let (rec, ()) = tokio::join!(up, write_growing(&path, &data, tx, false));
    let rec = rec.unwrap();
    assert_eq!(rec.size, data.len() as u64);
    let raw = server.raw_client(BUCKET);
    let h = head(&raw, &format!("grow/{name}")).await;
    assert!(
        h.meta
            .e_tag
            .unwrap_or_default()
            .trim_matches('"')
            .ends_with("-3")
    );
    let got = raw
        .get(&ObjPath::from(format!("grow/{name}")))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(got.as_ref() == data.as_slice(), "uploaded bytes differ");
}

#[tokio::test]
async fn growing_upload_is_abandoned_when_the_writer_fails() {
    let server = S3sFs::start(&[BUCKET]);
    let store = connect(&s3s_cfg(&server, "grow"), identity("node-a"))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (name, size) in [
        ("on-demand-node-a-1730000002", UPLOAD_CHUNK_SIZE * 5 / 2),
        ("on-demand-node-a-1730000003", 4096),
    ] {
        let data = raw_snapshot(size, 3);
        let (tx, rx) = etcdsnap_core::snapfile::growing::growing();
        let path = dir.path().join(name);
        let up = store.upload_growing(name, rx, None);
        let (rec, ()) = tokio::join!(up, write_growing(&path, &data, tx, true));
        let err = rec.unwrap_err().to_string();
        assert!(err.contains("snapshot checksum mismatch"), "{err}");
        let raw = server.raw_client(BUCKET);
        assert!(
            !exists(&raw, &format!("grow/{name}")).await,
            "{name} must not be in S3"
        );
    }
}

/// The files s3s-fs keeps for incomplete multipart uploads (it cannot list them over S3).
fn pending_uploads(server: &S3sFs) -> Vec<String> {
    std::fs::read_dir(server.root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".upload"))
        .collect()
}

/// An upload whose future is dropped midway (a request cancelled, a server shutting down
/// while a save uploads) aborts its multipart upload: no parts are left in the bucket.
#[tokio::test]
async fn a_growing_upload_dropped_midway_aborts_its_multipart_upload() {
    use std::io::Write;
    let server = S3sFs::start(&[BUCKET]);
    let store = connect(&s3s_cfg(&server, "grow"), identity("node-a"))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let name = "on-demand-node-a-1730000009";
    let (tx, rx) = etcdsnap_core::snapfile::growing::growing();
    let mut f = std::fs::File::create_new(dir.path().join(name)).unwrap();
    tx.opened(&f).unwrap();
    let data = raw_snapshot(UPLOAD_CHUNK_SIZE * 2 + 1, 4);
    f.write_all(&data).unwrap();
    tx.wrote(data.len());
    // The writer never finishes: the upload sends the two whole parts and waits.
    let up = store.upload_growing(name, rx, None);
    let parts_sent = async {
        while !pending_uploads(&server)
            .iter()
            .any(|n| n.contains(".part-2"))
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::select! {
        r = up => panic!("the upload ended: {r:?}"),
        () = parts_sent => {}
        () = tokio::time::sleep(Duration::from_secs(30)) => panic!("no parts sent"),
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while !pending_uploads(&server).is_empty() {
        assert!(
            Instant::now() < deadline,
            "left in the bucket: {:?}",
            pending_uploads(&server)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(tx);
}

#[tokio::test]
async fn download_verifies_and_fetches_metadata() {
    let server = S3sFs::start(&[BUCKET]);
    let store = connect(&s3s_cfg(&server, "k3s"), identity("node-a"))
        .await
        .unwrap();
    let src = tempfile::tempdir().unwrap();
    let good = "on-demand-node-a-1730000001";
    let data = raw_snapshot(8192, 3);
    let sidecar = write_file(src.path(), "meta.json", br#"{"k":"v"}"#);
    store
        .upload(&write_file(src.path(), good, &data), Some(&sidecar))
        .await
        .unwrap();
    let bad = "on-demand-node-a-1730000002";
    let mut corrupted = raw_snapshot(8192, 4);
    corrupted[100] ^= 0xff;
    store
        .upload(&write_file(src.path(), bad, &corrupted), None)
        .await
        .unwrap();

    let root = tempfile::tempdir().unwrap();
    let snapdir = root.path().join("snapshots");
    std::fs::create_dir(&snapdir).unwrap();

    let got = store.download(good, &snapdir).await.unwrap();
    assert_eq!(std::fs::read(&got).unwrap(), data);
    let meta_file = root.path().join(".metadata").join(good);
    assert_eq!(std::fs::read(&meta_file).unwrap(), br#"{"k":"v"}"#);

    let err = store.download(bad, &snapdir).await.unwrap_err();
    assert!(!snapdir.join(bad).exists(), "corrupt snapshot kept: {err}");
    assert!(!snapdir.join(format!("{bad}.part")).exists());

    let err = store
        .download("on-demand-node-a-404", &snapdir)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Remote {
                stage: RemoteStage::Operation,
                cause: RemoteCause::NotFound,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("snapshot k3s/on-demand-node-a-404 not found in bucket {BUCKET}")
    );
    assert!(!snapdir.join("on-demand-node-a-404.part").exists());

    let names: BTreeSet<String> = std::fs::read_dir(&snapdir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, BTreeSet::from([good.to_string()]));
}

fn zip_of(entry: &str, data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    w.start_file(entry, opts).unwrap();
    w.write_all(data).unwrap();
    w.finish().unwrap().into_inner()
}

#[tokio::test]
async fn download_of_zip_is_verified_too() {
    let server = S3sFs::start(&[BUCKET]);
    let store = connect(&s3s_cfg(&server, "k3s"), identity("node-a"))
        .await
        .unwrap();
    let src = tempfile::tempdir().unwrap();
    let good = "on-demand-node-a-1730000010";
    let zipped = zip_of(good, &raw_snapshot(4096, 1));
    let good_zip = format!("{good}.zip");
    store
        .upload(&write_file(src.path(), &good_zip, &zipped), None)
        .await
        .unwrap();
    let bad = "on-demand-node-a-1730000011";
    let mut corrupted = raw_snapshot(4096, 2);
    corrupted[10] ^= 1;
    let bad_zip = format!("{bad}.zip");
    store
        .upload(
            &write_file(src.path(), &bad_zip, &zip_of(bad, &corrupted)),
            None,
        )
        .await
        .unwrap();

    let snapdir = tempfile::tempdir().unwrap();
    let got = store.download(&good_zip, snapdir.path()).await.unwrap();
    assert_eq!(std::fs::read(&got).unwrap(), zipped);
    assert!(store.download(&bad_zip, snapdir.path()).await.is_err());
    assert!(!snapdir.path().join(&bad_zip).exists());
    assert!(!snapdir.path().join(format!("{bad_zip}.part")).exists());
}

#[tokio::test]
async fn list_treats_folder_as_directory_and_skips_metadata_and_empty_objects() {
    let server = S3sFs::start(&[BUCKET]);
    let raw = server.raw_client(BUCKET);
    let snap = raw_snapshot(512, 9);
    put_raw(&raw, "k3s/etcd-snapshot-n1-1700000001", &snap).await;
    put_raw(
        &raw,
        "k3s/etcd-snapshot-n1-1700000002.zip",
        b"PK\x03\x04zip",
    )
    .await;
    put_raw(
        &raw,
        "k3s/.metadata/etcd-snapshot-n1-1700000001",
        br#"{"x":"y"}"#,
    )
    .await;
    put_raw(&raw, "k3s/.metadata/orphan-1", br#"{}"#).await;
    put_raw(&raw, "k3s/empty-1700000003", b"").await;
    put_raw(&raw, "k3s/odd-name", b"data").await;
    put_raw(&raw, "k3s-old/etcd-snapshot-n1-1600000000", &snap).await;
    put_raw(&raw, "other/etcd-snapshot-n9-1600000001", &snap).await;

    let store = connect(&s3s_cfg(&server, "k3s"), identity("node-a"))
        .await
        .unwrap();
    let recs = store.list(ListDetail::Basic).await.unwrap();
    let by_name: BTreeMap<&str, _> = recs.iter().map(|r| (r.name.as_str(), r)).collect();
    assert_eq!(
        by_name.keys().copied().collect::<Vec<_>>(),
        [
            "etcd-snapshot-n1-1700000001",
            "etcd-snapshot-n1-1700000002.zip",
            "odd-name"
        ]
    );
    let a = by_name["etcd-snapshot-n1-1700000001"];
    assert_eq!(
        a.location,
        format!("s3://{BUCKET}/k3s/etcd-snapshot-n1-1700000001")
    );
    assert_eq!(a.size, snap.len() as u64);
    assert_eq!(a.created_at.timestamp(), 1700000001);
    assert_eq!(a.node_name, "s3");
    assert!(!a.compressed);
    assert_eq!(
        a.metadata.as_deref(),
        Some(
            base64::engine::general_purpose::STANDARD
                .encode(br#"{"x":"y"}"#)
                .as_str()
        )
    );
    assert_eq!(a.s3.as_ref().unwrap().prefix, "k3s");
    let z = by_name["etcd-snapshot-n1-1700000002.zip"];
    assert!(z.compressed);
    assert_eq!(z.metadata, None);
    // No timestamp in the name: LastModified (recent).
    let odd = by_name["odd-name"];
    assert!((chrono::Utc::now() - odd.created_at).num_minutes().abs() < 10);

    // Empty folder: the whole bucket, still without .metadata and empty objects.
    let all = connect(&s3s_cfg(&server, ""), identity("node-a"))
        .await
        .unwrap();
    let names: BTreeSet<String> = all
        .list(ListDetail::Basic)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.location)
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(
            [
                "k3s/etcd-snapshot-n1-1700000001",
                "k3s/etcd-snapshot-n1-1700000002.zip",
                "k3s/odd-name",
                "k3s-old/etcd-snapshot-n1-1600000000",
                "other/etcd-snapshot-n9-1600000001",
            ]
            .map(|k| format!("s3://{BUCKET}/{k}"))
        )
    );
}

#[tokio::test]
async fn node_metadata_comes_from_cache_or_one_head_when_asked() {
    let server = S3sFs::start(&[BUCKET]);
    let proxy = RecordingProxy::start(server.port).await;
    let cfg = S3Config {
        endpoint: format!("127.0.0.1:{}", proxy.port),
        ..s3s_cfg(&server, "k3s")
    };
    let uploader = connect(&cfg, identity("node-a")).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    for i in 0..3 {
        let name = format!("etcd-snapshot-node-a-17000000{i:02}");
        uploader
            .upload(&write_file(dir.path(), &name, &raw_snapshot(512, i)), None)
            .await
            .unwrap();
    }
    // The uploader knows what it wrote: no HEAD needed.
    proxy.clear();
    let recs = uploader.list_records(true).await.unwrap();
    assert_eq!(recs.len(), 3);
    assert!(
        recs.iter()
            .all(|r| r.node_source.as_deref() == Some("node-a"))
    );
    assert!(
        recs.iter()
            .all(|r| r.token_hash.as_deref() == Some("0123456789ab"))
    );
    let lines = proxy.request_lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("GET /snapshots?") && lines[0].contains("list-type=2"));

    // Another node's store: nothing known, and no HEAD unless asked.
    let other = connect(&cfg, identity("node-b")).await.unwrap();
    proxy.clear();
    let recs = other.list(ListDetail::Basic).await.unwrap();
    assert!(recs.iter().all(|r| r.node_source.is_none()));
    assert!(
        proxy
            .request_lines()
            .iter()
            .all(|l| !l.starts_with("HEAD "))
    );

    proxy.clear();
    let recs = other.list_records(true).await.unwrap();
    assert!(
        recs.iter()
            .all(|r| r.node_source.as_deref() == Some("node-a"))
    );
    let heads = proxy
        .request_lines()
        .iter()
        .filter(|l| l.starts_with("HEAD "))
        .count();
    assert_eq!(heads, 3);

    // Now cached: no more HEADs.
    proxy.clear();
    let recs = other.list_records(true).await.unwrap();
    assert!(
        recs.iter()
            .all(|r| r.node_source.as_deref() == Some("node-a"))
    );
    assert_eq!(proxy.request_lines().len(), 1);
}

#[tokio::test]
async fn delete_removes_snapshot_and_metadata() {
    let server = S3sFs::start(&[BUCKET]);
    let store = connect(&s3s_cfg(&server, "k3s"), identity("node-a"))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let name = "on-demand-node-a-1730000000";
    let sidecar = write_file(dir.path(), "m.json", b"{}");
    store
        .upload(
            &write_file(dir.path(), name, &raw_snapshot(512, 1)),
            Some(&sidecar),
        )
        .await
        .unwrap();
    let raw = server.raw_client(BUCKET);
    assert!(exists(&raw, &format!("k3s/{name}")).await);
    assert!(exists(&raw, &format!("k3s/.metadata/{name}")).await);

    assert!(store.delete(name).await.unwrap());
    assert!(!exists(&raw, &format!("k3s/{name}")).await);
    assert!(!exists(&raw, &format!("k3s/.metadata/{name}")).await);
    assert!(!store.delete(name).await.unwrap());
    assert!(store.list(ListDetail::Basic).await.unwrap().is_empty());
    assert!(matches!(
        store.delete("../etc").await,
        Err(Error::InvalidInput(_))
    ));
}

#[tokio::test]
async fn retention_keeps_newest_by_last_modified_across_nodes() {
    let server = S3sFs::start(&[BUCKET]);
    let cfg = s3s_cfg(&server, "k3s");
    let a = connect(&cfg, identity("node-a")).await.unwrap();
    let b = connect(&cfg, identity("node-b")).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sidecar = write_file(dir.path(), "m.json", b"{}");
    // Upload order (= LastModified order) is the reverse of the name timestamps.
    let plan = [
        (&a, "etcd-snapshot-node-a-1700000500"),
        (&b, "etcd-snapshot-node-b-1700000400"),
        (&a, "etcd-snapshot-node-a-1700000300"),
        (&b, "etcd-snapshot-node-b-1700000200"),
        (&a, "etcd-snapshot-node-a-1700000100"),
    ];
    let raw = server.raw_client(BUCKET);
    for (i, (store, name)) in plan.iter().enumerate() {
        if i > 0 {
            after_last_modified(&raw, &format!("k3s/{}", plan[i - 1].1)).await;
        }
        let p = write_file(dir.path(), name, &raw_snapshot(512, i as u8));
        store.upload(&p, Some(&sidecar)).await.unwrap();
    }
    let od = write_file(dir.path(), "on-demand-node-a-1", &raw_snapshot(512, 9));
    a.upload(&od, None).await.unwrap();

    assert!(
        apply_retention(&a, "etcd-snapshot", 0, RetentionContext::now())
            .await
            .unwrap()
            .is_empty()
    );
    let mut deleted = apply_retention(&b, "etcd-snapshot", 2, RetentionContext::now())
        .await
        .unwrap();
    deleted.sort();
    assert_eq!(
        deleted,
        [
            "etcd-snapshot-node-a-1700000500",
            "etcd-snapshot-node-a-1700000300",
            "etcd-snapshot-node-b-1700000400",
        ]
        .iter()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
    );
    for (_, name) in &plan {
        let kept = !deleted.iter().any(|d| d == name);
        assert_eq!(exists(&raw, &format!("k3s/{name}")).await, kept, "{name}");
        assert_eq!(
            exists(&raw, &format!("k3s/.metadata/{name}")).await,
            kept,
            "metadata of {name}"
        );
    }
    assert!(exists(&raw, "k3s/on-demand-node-a-1").await);
    assert!(
        apply_retention(&a, "etcd-snapshot", 2, RetentionContext::now())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn ten_thousand_objects_listed_with_one_request_per_thousand() {
    const N: usize = 10_000;
    let server = S3sFs::start(&[BUCKET]);
    let raw = Arc::new(server.raw_client(BUCKET));
    let started = Instant::now();
    futures::stream::iter(0..N)
        .map(|i| {
            let raw = Arc::clone(&raw);
            async move {
                let key = format!("big/etcd-snapshot-n{}-{}", i % 3, 1_700_000_000 + i);
                put_raw(&raw, &key, b"x").await;
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    put_raw(&raw, "big-old/etcd-snapshot-n0-1", b"x").await;
    eprintln!("created {N} objects in {:?}", started.elapsed());

    let proxy = RecordingProxy::start(server.port).await;
    let cfg = S3Config {
        endpoint: format!("127.0.0.1:{}", proxy.port),
        ..s3s_cfg(&server, "big")
    };
    let store = connect(&cfg, identity("node-a")).await.unwrap();
    proxy.clear();
    let started = Instant::now();
    let recs = store.list(ListDetail::Basic).await.unwrap();
    eprintln!("listed {} objects in {:?}", recs.len(), started.elapsed());
    assert_eq!(recs.len(), N);
    let names: BTreeSet<&str> = recs.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names.len(), N);
    assert!(names.contains("etcd-snapshot-n0-1700000000"));
    assert!(names.contains("etcd-snapshot-n0-1700009999"));
    let lines = proxy.request_lines();
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("GET ") && l.contains("list-type=2"))
    );
    // S3 pages hold at most 1000 keys; no HEAD or GET per object.
    assert_eq!(lines.len(), N.div_ceil(1000), "{lines:?}");
}

#[tokio::test]
async fn wrong_secret_key_fails_fast_with_clear_error() {
    let server = S3sFs::start(&[BUCKET]);
    let cfg = S3Config {
        secret_key: "definitely-wrong-secret-value".into(),
        ..s3s_cfg(&server, "k3s")
    };
    let started = Instant::now();
    let err = connect(&cfg, identity("node-a")).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        matches!(
            err,
            Error::Remote {
                stage: RemoteStage::Unavailable,
                cause: RemoteCause::AccessDenied,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.http_status(), 502);
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(msg.starts_with("failed to initialize S3 client: "), "{msg}");
    assert!(
        msg.contains(&format!("access denied to bucket {BUCKET}")),
        "{msg}"
    );
    assert!(msg.contains("--etcd-s3-secret-key"), "{msg}");
    assert!(!msg.contains("definitely-wrong-secret-value"), "{msg}");
    assert!(!format!("{err:?}").contains("definitely-wrong-secret-value"));
}

#[tokio::test]
async fn missing_bucket_is_reported() {
    let server = S3sFs::start(&[BUCKET]);
    let cfg = S3Config {
        bucket: "nosuchbucket".into(),
        ..s3s_cfg(&server, "k3s")
    };
    let err = connect(&cfg, identity("node-a")).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "failed to initialize S3 client: bucket nosuchbucket does not exist"
    );
    assert_eq!(err.http_status(), 400);
    let empty = S3Config {
        bucket: String::new(),
        ..s3s_cfg(&server, "k3s")
    };
    let err = connect(&empty, identity("node-a")).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "failed to initialize S3 client: s3 bucket name was not set"
    );
}

#[tokio::test]
async fn insecure_means_plain_http() {
    let server = S3sFs::start(&[BUCKET]);
    let store = connect(&s3s_cfg(&server, ""), identity("node-a")).await;
    assert!(store.is_ok(), "{:?}", store.err());
    // The same server without --etcd-s3-insecure: https to a plain HTTP port fails.
    let cfg = S3Config {
        insecure: false,
        timeout: Duration::from_secs(15),
        ..s3s_cfg(&server, "")
    };
    let err = connect(&cfg, identity("node-a")).await.unwrap_err();
    eprintln!("{err}");
    assert_unreachable_over_tls(&err);
    assert!(err.to_string().contains("https://127.0.0.1:"), "{err}");
    assert!(err.to_string().contains("--etcd-s3-insecure"), "{err}");
}

#[tokio::test]
async fn session_token_is_sent() {
    let server = S3sFs::start(&[BUCKET]);
    let proxy = RecordingProxy::start(server.port).await;
    let cfg = S3Config {
        endpoint: format!("127.0.0.1:{}", proxy.port),
        session_token: "session-token-value-123".into(),
        ..s3s_cfg(&server, "k3s")
    };
    // s3s-fs does not check session tokens; what matters is that it is on the wire, signed.
    let _ = connect(&cfg, identity("node-a")).await;
    let text = proxy.text().to_ascii_lowercase();
    assert!(
        text.contains("x-amz-security-token: session-token-value-123"),
        "no session token header in:\n{text}"
    );
    let auth = text
        .lines()
        .find(|l| l.starts_with("authorization:"))
        .unwrap_or_default()
        .to_string();
    assert!(auth.contains("x-amz-security-token"), "{auth}");
}

#[tokio::test]
async fn explicit_proxy_url_is_used() {
    let server = S3sFs::start(&[BUCKET]);
    let proxy = RecordingProxy::start(server.port).await;
    let cfg = S3Config {
        proxy: format!("http://127.0.0.1:{}", proxy.port),
        ..s3s_cfg(&server, "k3s")
    };
    let store = connect(&cfg, identity("node-a")).await.unwrap();
    assert!(store.list(ListDetail::Basic).await.unwrap().is_empty());
    // A forward proxy gets absolute-form request targets.
    let lines = proxy.request_lines();
    let target = format!("GET http://127.0.0.1:{}/{BUCKET}?", server.port);
    assert!(
        lines.len() >= 2 && lines.iter().all(|l| l.starts_with(&target)),
        "{lines:?}"
    );
}

#[tokio::test]
async fn store_cache_reuses_connected_stores() {
    let server = S3sFs::start(&[BUCKET]);
    let cache = S3StoreCache::new();
    let cfg = s3s_cfg(&server, "k3s");
    let a1 = cache
        .get(&S3Target::new(cfg.clone()).unwrap(), identity("node-a"))
        .await
        .unwrap();
    let a2 = cache
        .get(&S3Target::new(cfg.clone()).unwrap(), identity("node-a"))
        .await
        .unwrap();
    assert!(Arc::ptr_eq(&a1, &a2));
    let b = cache
        .get(&S3Target::new(cfg.clone()).unwrap(), identity("node-b"))
        .await
        .unwrap();
    assert!(!Arc::ptr_eq(&a1, &b));
    // A hit makes no request: it works even after the server is gone.
    drop(server);
    let a3 = cache
        .get(&S3Target::new(cfg.clone()).unwrap(), identity("node-a"))
        .await
        .unwrap();
    assert!(Arc::ptr_eq(&a1, &a3));
    assert_eq!(cache.len(), 2);
}

#[tokio::test]
async fn operations_are_bounded_by_the_timeout() {
    // A server that accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let cfg = S3Config {
        endpoint: format!("127.0.0.1:{port}"),
        bucket: BUCKET.into(),
        insecure: true,
        access_key: ACCESS_KEY.into(),
        secret_key: SECRET_KEY.into(),
        timeout: Duration::from_secs(2),
        ..S3Config::default()
    };
    let started = Instant::now();
    let err = connect(&cfg, identity("node-a")).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(msg.starts_with("failed to initialize S3 client:"), "{msg}");
    assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
    assert_eq!(err.http_status(), 504, "{err:?}");
    hold.abort();
}

mod moto {
    use super::*;

    fn moto_cfg(m: &MotoTls, bucket: &str) -> S3Config {
        S3Config {
            endpoint: m.endpoint(),
            bucket: bucket.into(),
            folder: "k3s".into(),
            access_key: "testing".into(),
            secret_key: "testing".into(),
            timeout: Duration::from_secs(30),
            proxy: "none".into(),
            ..S3Config::default()
        }
    }

    async fn round_trip(store: &S3Store) {
        let dir = tempfile::tempdir().unwrap();
        let name = "on-demand-node-a-1730308816";
        let data = raw_snapshot(1024, 5);
        let sidecar = write_file(dir.path(), "m.json", br#"{"m":"1"}"#);
        let rec = store
            .upload(&write_file(dir.path(), name, &data), Some(&sidecar))
            .await
            .unwrap();
        assert_eq!(rec.size, data.len() as u64);
        let recs = store.list_records(true).await.unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].name, name);
        assert_eq!(recs[0].node_source.as_deref(), Some("node-a"));
        assert!(recs[0].metadata.is_some());
        assert!(store.delete(name).await.unwrap());
        assert!(store.list(ListDetail::Basic).await.unwrap().is_empty());
    }

    /// K3s's own S3 tests send anonymous requests (an access key, no secret key) to a bucket
    /// that lets anyone list, upload and delete but not read objects (here a bucket policy:
    /// moto refuses an anonymous HEAD). `delete`, `prune` and S3 retention need only LIST and
    /// DELETE, as in K3s: no HEAD per object.
    #[tokio::test]
    async fn anonymous_delete_and_retention_need_no_head() {
        let m = MotoTls::start();
        m.create_bucket("anon").await;
        m.allow_anonymous(
            "anon",
            &["s3:ListBucket", "s3:PutObject", "s3:DeleteObject"],
        )
        .await;
        let cfg = S3Config {
            endpoint_ca: m.ca_path().display().to_string(),
            secret_key: String::new(),
            ..moto_cfg(&m, "anon")
        };
        let store = connect(&cfg, identity("node-a")).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let sidecar = write_file(dir.path(), "m.json", b"{}");
        let names = [
            "etcd-snapshot-node-a-1700000100",
            "etcd-snapshot-node-a-1700000200",
            "etcd-snapshot-node-a-1700000300",
            "etcd-snapshot-node-a-1700000400",
        ];
        let raw = raw_client(
            &format!("https://{}", m.endpoint()),
            "anon",
            Some(&m.pki.ca_pem),
        );
        for (i, name) in names.iter().enumerate() {
            if i > 0 {
                after_last_modified(&raw, &format!("k3s/{}", names[i - 1])).await;
            }
            let p = write_file(dir.path(), name, &raw_snapshot(512, i as u8));
            store.upload(&p, Some(&sidecar)).await.unwrap();
        }
        // The store really refuses an anonymous HEAD: a client without the uploads in its
        // cache learns no node names.
        let other = connect(&cfg, identity("node-b")).await.unwrap();
        let head = other.list(ListDetail::Full).await.unwrap();
        assert_eq!(head.len(), 4);
        assert!(head.iter().all(|r| r.node_source.is_none()), "{head:?}");

        let mut deleted = apply_retention(&store, "etcd-snapshot", 3, RetentionContext::now())
            .await
            .unwrap();
        assert_eq!(deleted, [names[0]]);
        assert!(store.delete(names[1]).await.unwrap());
        assert!(!store.delete(names[1]).await.unwrap(), "gone already");
        // A name that only prefixes an object is not that object.
        assert!(!store.delete("etcd-snapshot-node-a-17000003").await.unwrap());
        deleted = store
            .list(ListDetail::Basic)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
        deleted.sort();
        assert_eq!(deleted, [names[2], names[3]]);
    }

    /// Starts a multipart upload of `name` in the folder with one part and leaves it, neither
    /// completed nor aborted, as a process killed mid-upload does.
    async fn leave_unfinished_upload(m: &MotoTls, bucket: &str, name: &str) {
        let raw = raw_client(
            &format!("https://127.0.0.1:{}", m.port),
            bucket,
            Some(&m.pki.ca_pem),
        );
        let mut up = raw
            .put_multipart(&ObjPath::from(format!("k3s/{name}")))
            .await
            .unwrap();
        up.put_part(PutPayload::from(vec![7u8; 5 << 20]))
            .await
            .unwrap();
        std::mem::forget(up);
    }

    /// A killed process leaves its multipart upload in the bucket (parts stored and billed);
    /// the next start aborts this node's uploads begun before it, and only those.
    #[tokio::test]
    async fn stale_uploads_of_this_node_are_aborted_and_no_others() {
        let m = MotoTls::start();
        m.create_bucket("stale").await;
        let cfg = S3Config {
            endpoint_ca: m.ca_path().display().to_string(),
            ..moto_cfg(&m, "stale")
        };
        let store = connect(&cfg, identity("node-a")).await.unwrap();
        leave_unfinished_upload(&m, "stale", "etcd-snapshot-node-a-1700000001").await;
        leave_unfinished_upload(&m, "stale", "etcd-snapshot-node-b-1700000002").await;
        // (moto reports every upload as begun in 2010, so uploads begun after the cutoff, which
        // are left alone, are covered by the unit test `only_this_nodes_uploads_begun_before_are_stale`.)
        let now = chrono::Utc::now() + chrono::Duration::seconds(5);
        assert_eq!(store.abort_stale_uploads("node-a", now).await.unwrap(), 1);
        assert_eq!(
            store.abort_stale_uploads("node-a", now).await.unwrap(),
            0,
            "aborted"
        );
        // Another node's upload stays until that node looks.
        assert_eq!(store.abort_stale_uploads("node-b", now).await.unwrap(), 1);
        assert_eq!(store.abort_stale_uploads("node-b", now).await.unwrap(), 0);
        // Nothing of them became an object.
        assert!(store.list(ListDetail::Basic).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn tls_with_custom_ca_file_and_base64() {
        let m = MotoTls::start();
        m.create_bucket("tls-bucket").await;
        let cfg = S3Config {
            endpoint_ca: m.ca_path().display().to_string(),
            ..moto_cfg(&m, "tls-bucket")
        };
        let store = connect(&cfg, identity("node-a")).await.unwrap();
        round_trip(&store).await;

        let b64 = base64::engine::general_purpose::STANDARD.encode(&m.pki.ca_pem);
        let cfg = S3Config {
            endpoint_ca: b64,
            ..moto_cfg(&m, "tls-bucket")
        };
        connect(&cfg, identity("node-a")).await.unwrap();

        let err = connect(&moto_cfg(&m, "no-such-bucket"), identity("node-a"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("etcd-s3-endpoint-ca"), "{err}");
        let cfg = S3Config {
            endpoint_ca: m.ca_path().display().to_string(),
            ..moto_cfg(&m, "no-such-bucket")
        };
        let err = connect(&cfg, identity("node-a")).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "failed to initialize S3 client: bucket no-such-bucket does not exist"
        );
    }

    #[tokio::test]
    async fn tls_without_ca_fails_with_hint() {
        let m = MotoTls::start();
        m.create_bucket("tls-bucket").await;
        let started = Instant::now();
        let err = connect(&moto_cfg(&m, "tls-bucket"), identity("node-a"))
            .await
            .unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{:?}",
            started.elapsed()
        );
        assert_unreachable_over_tls(&err);
        let msg = err.to_string();
        eprintln!("{msg}");
        assert!(msg.contains("--etcd-s3-endpoint-ca"), "{msg}");
        assert!(msg.contains("--etcd-s3-skip-ssl-verify"), "{msg}");
        assert!(!msg.contains("testing"), "{msg}");
    }

    #[tokio::test]
    async fn tls_skip_verify_is_accepted() {
        let m = MotoTls::start();
        m.create_bucket("tls-bucket").await;
        let cfg = S3Config {
            skip_ssl_verify: true,
            // Ignored when skipping verification.
            endpoint_ca: "/no/such/ca.pem".into(),
            ..moto_cfg(&m, "tls-bucket")
        };
        let store = connect(&cfg, identity("node-a")).await.unwrap();
        round_trip(&store).await;
    }
}

/// A store that could not be reached for a TLS failure: 502, cause Tls.
fn assert_unreachable_over_tls(err: &Error) {
    assert!(
        matches!(
            err,
            Error::Remote {
                stage: RemoteStage::Unavailable,
                cause: RemoteCause::Tls,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.http_status(), 502);
}
