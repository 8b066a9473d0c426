//! The engine against in-process fakes: an etcd made of bytes and an in-memory remote store.
//! Each test runs in milliseconds; the same behaviours are tested against real etcd and real S3
//! servers in the integration suites.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::plan::{Remote, RemotePlan, SavePlan};
use super::*;
use crate::naming::CompressFormat;
use crate::snapfile::verify::verify_file;
use crate::testing::{FakeEtcd, MemRemotes, MemStore, snapshot_bytes};

struct Rig {
    dir: tempfile::TempDir,
    etcd: Arc<FakeEtcd>,
    remotes: Arc<MemRemotes>,
    engine: Arc<Engine>,
}

fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let etcd = Arc::new(FakeEtcd::new(8));
    let remotes = Arc::new(MemRemotes::default());
    let engine = Arc::new(Engine::new(
        etcd.clone(),
        remotes.clone(),
        EngineConfig {
            node_name: "n1".into(),
            data_dir: dir.path().to_path_buf(),
            token_hash: "0123456789ab".into(),
            idle_timeout: Duration::from_secs(5),
            owns_etcd: false,
        },
    ));
    Rig {
        dir,
        etcd,
        remotes,
        engine,
    }
}

impl Rig {
    fn snapdir(&self) -> std::path::PathBuf {
        self.dir.path().join("server/db/snapshots")
    }

    fn files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.snapdir())
            .map(|rd| {
                rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    fn remote(&self, retention: i64) -> (Arc<MemStore>, RemotePlan) {
        let store = self.remotes.bucket("b");
        let plan = RemotePlan::Ready(Remote {
            store: store.clone(),
            retention,
            spec: None,
        });
        (store, plan)
    }
}

fn plan(prefix: &str, compress: bool, retention: i64, remote: RemotePlan) -> SavePlan {
    SavePlan {
        prefix: prefix.into(),
        dir: None,
        compress,
        compression: Default::default(),
        retention,
        remote,
    }
}

#[tokio::test]
async fn save_writes_a_verified_file_raw_and_zip() {
    let r = rig();
    let res = r
        .engine
        .save(&plan("on-demand", false, 0, RemotePlan::None))
        .await
        .unwrap();
    assert_eq!(res.created.len(), 1);
    let name = &res.created[0];
    assert!(name.starts_with("on-demand-n1-"), "{name}");
    let raw = std::fs::read(r.snapdir().join(name)).unwrap();
    assert_eq!(raw, snapshot_bytes(8));
    let res = r
        .engine
        .save(&plan("on-demand", true, 0, RemotePlan::None))
        .await
        .unwrap();
    let zip = &res.created[0];
    assert!(zip.ends_with(".zip"), "{zip}");
    assert_eq!(
        verify_file(&r.snapdir().join(zip)).unwrap(),
        raw.len() as u64
    );
    let mut zstd = plan("on-demand", true, 0, RemotePlan::None);
    zstd.compression = crate::naming::Compression::new(CompressFormat::Zstd, Some(5)).unwrap();
    let res = r.engine.save(&zstd).await.unwrap();
    let zst = &res.created[0];
    assert!(zst.ends_with(".zst"), "{zst}");
    let back = zstd::decode_all(std::fs::File::open(r.snapdir().join(zst)).unwrap()).unwrap();
    assert!(back == raw, "the .zst does not decompress to the snapshot");
    assert_eq!(r.files().len(), 3, "{:?}", r.files());
}

#[tokio::test]
async fn two_saves_in_one_second_get_two_names() {
    let r = rig();
    let p = plan("twice", false, 0, RemotePlan::None);
    // The clock reads 0.2 s into a second, then 0.499 s (the name is taken: the save waits
    // 1 ms for the next name's second), then the half second that rounds to the next second.
    let at = |ms: i64| chrono::DateTime::from_timestamp_millis(1_700_000_000_000 + ms).unwrap();
    super::clock::fake::set([at(200), at(499), at(500)]);
    let a = r.engine.save(&p).await.unwrap().created.remove(0);
    let b = r.engine.save(&p).await.unwrap().created.remove(0);
    assert_eq!(a, "twice-n1-1700000000");
    assert_eq!(b, "twice-n1-1700000001");
    assert_eq!(r.files(), {
        let mut v = vec![a, b];
        v.sort();
        v
    });
}

#[tokio::test]
async fn a_broken_or_corrupt_stream_leaves_nothing() {
    let r = rig();
    r.etcd.fail_after(Some(1));
    let err = r
        .engine
        .save(&plan("on-demand", false, 0, RemotePlan::None))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("broke"), "{err}");
    assert_eq!(err.http_status(), 503);
    r.etcd.fail_after(None);
    let mut bad = snapshot_bytes(8);
    bad[100] ^= 1;
    r.etcd.set_snapshot(bad);
    for (compress, format) in [
        (false, CompressFormat::Zip),
        (true, CompressFormat::Zip),
        (true, CompressFormat::Zstd),
    ] {
        let mut p = plan("on-demand", compress, 0, RemotePlan::None);
        p.compression.format = format;
        let err = r.engine.save(&p).await.unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
        assert_eq!(err.http_status(), 502);
    }
    assert!(r.files().is_empty(), "{:?}", r.files());
    r.etcd.set_learner(true);
    let err = r
        .engine
        .save(&plan("on-demand", false, 0, RemotePlan::None))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("not supported for learner"),
        "{err}"
    );
}

#[tokio::test]
async fn local_retention_keeps_the_newest_by_name() {
    let r = rig();
    std::fs::create_dir_all(r.snapdir()).unwrap();
    for old in [
        "etcd-snapshot-n1-100",
        "etcd-snapshot-n1-200",
        "other-n1-50",
    ] {
        std::fs::write(r.snapdir().join(old), "x").unwrap();
    }
    let res = r
        .engine
        .save(&plan("etcd-snapshot", false, 2, RemotePlan::None))
        .await
        .unwrap();
    assert_eq!(res.deleted, ["etcd-snapshot-n1-100"]);
    let files = r.files();
    assert!(
        files.contains(&"etcd-snapshot-n1-200".to_string()),
        "{files:?}"
    );
    assert!(files.contains(&"other-n1-50".to_string()), "{files:?}");
    assert!(files.contains(&res.created[0]), "{files:?}");
}

#[tokio::test]
async fn upload_goes_up_while_saving_and_remote_retention_runs() {
    let r = rig();
    let (store, remote) = r.remote(2);
    let old = chrono::DateTime::from_timestamp(1_000, 0).unwrap();
    store.insert("s-n9-1", b"old".to_vec(), old);
    store.insert(
        "s-n9-2",
        b"old".to_vec(),
        old + chrono::Duration::seconds(1),
    );
    let res = r.engine.save(&plan("s", false, 0, remote)).await.unwrap();
    let name = &res.created[0];
    assert_eq!(res.created, [name.clone(), name.clone()], "local and S3");
    assert_eq!(res.deleted, ["s-n9-1"], "S3 retention by upload time");
    assert_eq!(
        store.object(name).unwrap(),
        std::fs::read(r.snapdir().join(name)).unwrap()
    );
    assert!(res.warnings.is_empty(), "{:?}", res.warnings);
}

#[tokio::test]
async fn a_failed_upload_keeps_the_local_file_and_still_prunes() {
    let r = rig();
    let (store, remote) = r.remote(1);
    store.insert("s-n9-1", b"old".to_vec(), chrono::Utc::now());
    store.insert("s-n9-2", b"old".to_vec(), chrono::Utc::now());
    store.fail_put.store(true, Ordering::SeqCst);
    let res = r.engine.save(&plan("s", false, 0, remote)).await.unwrap();
    assert_eq!(res.created.len(), 1, "only the local copy: {res:?}");
    assert!(r.snapdir().join(&res.created[0]).exists());
    assert!(
        res.warnings.iter().any(|w| w.contains("S3 upload failed")),
        "{:?}",
        res.warnings
    );
    assert_eq!(store.names().len(), 1, "retention ran after the failure");
    // A store that could not be connected does not stop the local snapshot either.
    let res = r
        .engine
        .save(&plan(
            "s",
            false,
            0,
            RemotePlan::Failed {
                message: "bucket gone".into(),
                spec: None,
            },
        ))
        .await
        .unwrap();
    assert_eq!(res.created.len(), 1);
    assert!(
        res.warnings[0].contains("bucket gone"),
        "{:?}",
        res.warnings
    );
}

#[tokio::test]
async fn a_failed_save_abandons_the_upload() {
    let r = rig();
    let (store, remote) = r.remote(5);
    r.etcd.fail_after(Some(2));
    assert!(r.engine.save(&plan("s", false, 0, remote)).await.is_err());
    assert!(store.names().is_empty(), "{:?}", store.names());
    assert!(r.files().is_empty());
}

#[tokio::test]
async fn one_save_at_a_time() {
    let r = rig();
    r.etcd.set_delay(Duration::from_millis(20));
    let engine = r.engine.clone();
    let first = tokio::spawn(async move {
        engine
            .save(&plan("on-demand", false, 0, RemotePlan::None))
            .await
    });
    while r.etcd.snapshots_taken() == 0 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let err = r
        .engine
        .save(&plan("on-demand", false, 0, RemotePlan::None))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::SaveInProgress), "{err:?}");
    assert_eq!(err.http_status(), 409);
    assert!(first.await.unwrap().is_ok());
}

#[tokio::test]
async fn list_delete_and_prune_across_stores() {
    let r = rig();
    let (store, remote) = r.remote(5);
    let Remote {
        store: dynstore, ..
    } = match &remote {
        RemotePlan::Ready(x) => x.clone(),
        _ => unreachable!(),
    };
    let a = r
        .engine
        .save(&plan("p", false, 0, remote.clone()))
        .await
        .unwrap()
        .created[0]
        .clone();
    let b = r
        .engine
        .save(&plan("p", false, 0, remote))
        .await
        .unwrap()
        .created[0]
        .clone();
    let recs = r
        .engine
        .list(None, Some(&dynstore), ListDetail::Basic)
        .await
        .unwrap();
    let names: Vec<(&str, &str)> = recs
        .iter()
        .map(|x| (x.name.as_str(), x.node_name.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            (a.as_str(), "n1"),
            (a.as_str(), "s3"),
            (b.as_str(), "n1"),
            (b.as_str(), "s3")
        ]
    );
    let res = r
        .engine
        .delete(None, &[a.clone(), "nope".into()], Some(&dynstore))
        .await
        .unwrap();
    assert_eq!(res.deleted, [a.clone(), a.clone()]);
    assert_eq!(store.names(), std::slice::from_ref(&b));
    assert!(r.engine.delete(None, &["../x".into()], None).await.is_err());
    assert!(r.engine.delete(None, &[], None).await.is_err());
    let c = r
        .engine
        .save(&plan("p", false, 0, RemotePlan::None))
        .await
        .unwrap()
        .created[0]
        .clone();
    let res = r
        .engine
        .prune(
            None,
            "p",
            1,
            Some(&Remote {
                store: dynstore,
                retention: 0,
                spec: None,
            }),
        )
        .await
        .unwrap();
    assert_eq!(
        res.deleted,
        std::slice::from_ref(&b),
        "local only: S3 retention 0 keeps all"
    );
    assert_eq!(r.files(), [c]);
    assert_eq!(store.names(), [b]);
}

#[tokio::test]
async fn stale_part_files_are_removed_but_not_while_saving() {
    let r = rig();
    std::fs::create_dir_all(r.snapdir().join("sub")).unwrap();
    std::fs::write(r.snapdir().join("on-demand-n1-1.part"), "x").unwrap();
    std::fs::write(r.snapdir().join("sub/a.zip.part"), "x").unwrap();
    std::fs::write(r.snapdir().join("keep-n1-2"), "x").unwrap();
    let removed = r.engine.remove_stale_parts(None).unwrap();
    assert_eq!(removed.len(), 2, "{removed:?}");
    assert_eq!(r.files(), ["keep-n1-2", "sub"]);
    // While a save runs, its .part is not touched.
    r.etcd.set_delay(Duration::from_millis(20));
    let engine = r.engine.clone();
    let save =
        tokio::spawn(async move { engine.save(&plan("slow", false, 0, RemotePlan::None)).await });
    while r.etcd.snapshots_taken() == 0 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(matches!(
        r.engine.remove_stale_parts(None),
        Err(Error::SaveInProgress)
    ));
    assert!(save.await.unwrap().is_ok());
}

#[tokio::test]
async fn a_scheduled_save_waits_for_the_running_one() {
    let r = rig();
    r.etcd.set_delay(Duration::from_millis(10));
    let engine = r.engine.clone();
    let first = tokio::spawn(async move {
        engine
            .save(&plan("on-demand", false, 0, RemotePlan::None))
            .await
    });
    while r.etcd.snapshots_taken() == 0 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let scheduled = r
        .engine
        .save_after_running(
            &plan("etcd-snapshot", false, 0, RemotePlan::None),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert!(first.await.unwrap().is_ok());
    assert_eq!(r.etcd.snapshots_taken(), 2);
    assert!(scheduled.created[0].starts_with("etcd-snapshot-n1-"));
    // Bounded: a wait shorter than the running save gives up.
    let engine = r.engine.clone();
    let long = tokio::spawn(async move {
        engine
            .save(&plan("on-demand", false, 0, RemotePlan::None))
            .await
    });
    while r.etcd.snapshots_taken() == 2 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let err = r
        .engine
        .save_after_running(
            &plan("etcd-snapshot", false, 0, RemotePlan::None),
            Duration::from_millis(5),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::SaveInProgress));
    assert!(long.await.unwrap().is_ok());
}
