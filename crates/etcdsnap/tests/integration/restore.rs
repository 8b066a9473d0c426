//! Disaster recovery against real etcd 3.4 and 3.5: `server --cluster-reset` with and without a
//! restore path (raw file, .zip, S3 object, snapshots made by etcdctl and zipped the way K3s
//! zips), onto the same machine and onto an empty data dir; everything refused leaves the data
//! dir byte-for-byte unchanged; `etcd-snapshot restore --output-dir` for etcd run elsewhere.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

use crate::harness::*;

pub(crate) const MESSAGE: &str = "Managed etcd cluster membership has been reset, restart without --cluster-reset flag now. Backup and delete";

/// Every key with its value and mod revision.
type Dump = BTreeMap<String, (Vec<u8>, i64)>;

/// Every key of etcd except the server's own ETCDSnapshotFile records and events under
/// `/registry/`, which a restarted server reconciles from the files it finds.
pub(crate) fn dump(s: &Server) -> Dump {
    all_keys(s)
        .into_iter()
        .filter(|(k, _)| !k.starts_with("/registry/"))
        .collect()
}

/// The names of the ETCDSnapshotFile records kept in etcd.
fn record_names(s: &Server) -> Vec<String> {
    all_keys(s)
        .into_keys()
        .filter_map(|k| {
            k.strip_prefix("/registry/k3s.cattle.io/etcdsnapshotfiles/")
                .map(str::to_string)
        })
        .collect()
}

fn all_keys(s: &Server) -> Dump {
    let (ca, cert, key) = s.etcd_tls();
    let ep = s.etcd_endpoint();
    rt().block_on(async {
        let mut c = etcd_client(&ep, Some((&ca, &cert, &key))).await;
        let r = c
            .get("", Some(etcd_client::GetOptions::new().with_all_keys()))
            .await
            .unwrap();
        r.kvs()
            .iter()
            .map(|kv| {
                (
                    String::from_utf8_lossy(kv.key()).into_owned(),
                    (kv.value().to_vec(), kv.mod_revision()),
                )
            })
            .collect()
    })
}

fn members(s: &Server) -> Vec<String> {
    let (ca, cert, key) = s.etcd_tls();
    let ep = s.etcd_endpoint();
    rt().block_on(async {
        let mut c = etcd_client(&ep, Some((&ca, &cert, &key))).await;
        c.member_list()
            .await
            .unwrap()
            .members()
            .iter()
            .map(|m| m.name().to_string())
            .collect()
    })
}

pub(crate) fn kv(prefix: &str, n: usize) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| {
            (
                format!("/{prefix}/{i}"),
                format!("{prefix}-value-{i}").into_bytes(),
            )
        })
        .collect()
}

/// `etcdsnap server --cluster-reset` on `dir` with these ports, as a one-shot process.
pub(crate) fn reset(v: Etcd, dir: &Path, ports: Ports, extra: &[&str]) -> Output {
    reset_cmd(Command::new(etcdsnap_bin()), v, dir, ports, extra)
        .output()
        .unwrap()
}

pub(crate) fn restart(v: Etcd, dir: tempfile::TempDir, ports: Ports) -> Server {
    Server::builder(v).dir(dir).ports(ports).start()
}

/// sha256 of every file below `dir`, by relative path.
fn tree_hashes(dir: &Path) -> BTreeMap<PathBuf, String> {
    files_below(dir)
        .into_iter()
        .map(|rel| {
            let h = hex_of(&std::fs::read(dir.join(&rel)).unwrap());
            (rel, h)
        })
        .collect()
}

fn hex_of(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

fn entries(dir: &Path) -> Vec<String> {
    list_files(dir)
}

both!(reset_restores_raw_and_zip_then_plain_reset, restore_local);
fn restore_local(v: Etcd) {
    let s = Server::start(v);
    s.put(&kv("before", 20));
    let raw = ok(&s.cli(&["save", "--name", "keep"]));
    let raw = raw.split_whitespace().nth(1).unwrap().to_string();
    let zip = ok(&s.cli(&["save", "--name", "keepz", "--snapshot-compress"]));
    let zip = zip.split_whitespace().nth(1).unwrap().to_string();
    let at_snapshot = dump(&s);
    assert!(
        at_snapshot.keys().any(|k| k.starts_with("/bootstrap/")),
        "{:?}",
        at_snapshot.keys()
    );
    s.put(&kv("after", 5));
    let token = s.token();
    let ca = std::fs::read(s.data_dir().join("server/tls/server-ca.crt")).unwrap();
    let snapdir = s.snapshot_dir();
    let (dir, ports) = s.stop();

    // 1. Restore the raw snapshot.
    let path = snapdir.join(&raw);
    let out = reset(
        v,
        dir.path(),
        ports,
        &[&format!("--cluster-reset-restore-path={}", path.display())],
    );
    let text = ok(&out);
    assert!(text.contains(MESSAGE), "{text}\n{}", stderr(&out));
    assert!(
        text.contains(&format!("{}/server/db", dir.path().display())),
        "{text}"
    );
    let log = stderr(&out);
    for step in [
        "snapshot restore into",
        "--force-new-cluster",
        "member list is this member alone",
        "Pre-restore etcd database moved to",
        "backing up certificates directory",
    ] {
        assert!(log.contains(step), "no {step:?} in the log:\n{log}");
    }
    let db = dir.path().join("server/db");
    assert!(db.join("reset-flag").exists());
    let old: Vec<String> = entries(&db)
        .into_iter()
        .filter(|n| n.starts_with("etcd-old-"))
        .collect();
    assert_eq!(old.len(), 1, "{:?}", entries(&db));
    assert!(
        db.join(&old[0]).join("member").is_dir(),
        "the old data is kept"
    );
    assert!(
        !entries(&db).iter().any(|n| n.starts_with("etcd-restore-")),
        "no staging left"
    );
    let tls_backups: Vec<String> = entries(&dir.path().join("server"))
        .into_iter()
        .filter(|n| n.starts_with("tls-"))
        .collect();
    assert_eq!(tls_backups.len(), 1);

    let s = restart(v, dir, ports);
    // The restored server records both local files again, whatever the snapshot held.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let names = record_names(&s);
        let has = |n: &str| names.iter().any(|r| r.starts_with(&format!("local-{n}-")));
        if has(&raw) && has(&zip) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "records: {names:?}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(
        dump(&s),
        at_snapshot,
        "exactly the snapshot's keys, values and mod revisions"
    );
    assert_eq!(members(&s).len(), 1);
    assert!(members(&s)[0].starts_with("n1-"), "{:?}", members(&s));
    assert!(
        !s.data_dir().join("server/db/reset-flag").exists(),
        "the first normal start removes it"
    );
    assert_eq!(
        std::fs::read(s.data_dir().join("server/tls/server-ca.crt")).unwrap(),
        ca
    );
    // The CLI and its old token still work.
    ok(&s.cli(&["save", "--etcd-token", &token]));
    assert!(ok(&s.cli(&["ls"])).contains(&raw));
    let (dir, ports) = s.stop();

    // 2. The zip, decompressed into the snapshot dir (and not left there).
    let before = entries(&snapdir);
    let out = reset(
        v,
        dir.path(),
        ports,
        &[&format!(
            "--cluster-reset-restore-path={}",
            snapdir.join(&zip).display()
        )],
    );
    assert!(ok(&out).contains(MESSAGE));
    assert_eq!(
        entries(&snapdir),
        before,
        "the decompressed copy is removed"
    );
    let s = restart(v, dir, ports);
    assert_eq!(dump(&s), at_snapshot);
    s.put(&kv("later", 3));
    let later = dump(&s);
    let (dir, ports) = s.stop();

    // 3. A plain reset keeps the data; a second one is refused until the flag is gone.
    let out = reset(v, dir.path(), ports, &[]);
    assert!(ok(&out).contains(MESSAGE));
    let flag = dir.path().join("server/db/reset-flag");
    assert!(flag.exists());
    let err = fails(&reset(v, dir.path(), ports, &[]));
    assert!(
        err.contains(&format!("Managed etcd cluster membership was previously reset, please remove the cluster-reset flag and start etcdsnap normally. If you need to perform another cluster reset, you must first manually delete the file at {}", flag.display())),
        "{err}"
    );
    let s = restart(v, dir, ports);
    assert_eq!(dump(&s), later, "a plain reset keeps the data");
    assert_eq!(members(&s).len(), 1);
    assert!(!s.data_dir().join("server/db/reset-flag").exists());
}

#[test]
fn restore_from_s3_zip_onto_an_empty_data_dir() {
    use etcdsnap_testkit::s3::{ACCESS_KEY, S3sFs, SECRET_KEY};
    let fs = S3sFs::start(&["backups"]);
    let s3 = |extra: &[&str]| -> Vec<String> {
        let mut v = vec![
            format!("--s3-endpoint={}", fs.endpoint()),
            "--s3-bucket=backups".into(),
            "--s3-folder=cl".into(),
            "--s3-insecure".into(),
            format!("--s3-access-key={ACCESS_KEY}"),
            format!("--s3-secret-key={SECRET_KEY}"),
        ];
        v.extend(extra.iter().map(|x| x.to_string()));
        v
    };
    let a = Server::start(Etcd::V35);
    a.put(&kv("prod", 30));
    let mut args = vec![
        "save".to_string(),
        "--s3".into(),
        "--snapshot-compress".into(),
    ];
    args.extend(s3(&[]));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = ok(&a.cli(&args));
    let name = out
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    let at_snapshot = dump(&a);
    let token = a.token();
    let ca = std::fs::read(a.data_dir().join("server/tls/server-ca.crt")).unwrap();

    // A new machine: an empty data dir, the old token, the snapshot's name in the bucket.
    let b = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let flags: Vec<String> = s3(&[])
        .into_iter()
        .map(|f| f.replacen("--s3", "--etcd-s3", 1))
        .chain([
            "--etcd-s3".to_string(),
            format!("--token={token}"),
            format!("--cluster-reset-restore-path={name}"),
        ])
        .collect();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let out = reset(Etcd::V35, b.path(), ports, &flags);
    let text = ok(&out);
    assert!(text.contains(MESSAGE), "{text}");
    let log = stderr(&out);
    assert!(
        log.contains(&format!("Retrieving etcd snapshot {name} from S3")),
        "{log}"
    );
    assert!(log.contains("S3 download complete for"), "{log}");
    assert!(!log.contains(SECRET_KEY) && !text.contains(SECRET_KEY));
    assert!(
        b.path().join("server/db/snapshots").join(&name).exists(),
        "the download stays in the snapshot dir"
    );

    let bs = restart(Etcd::V35, b, ports);
    assert_eq!(dump(&bs), at_snapshot);
    assert_eq!(
        std::fs::read(bs.data_dir().join("server/tls/server-ca.crt")).unwrap(),
        ca,
        "the old CA is back"
    );
    assert_eq!(bs.token(), token, "the token file holds the old full token");
    // The old token, with the old CA hash, works against the new machine.
    ok(&bs.cli(&["ls", "--etcd-token", &token]));
}

both!(reset_restores_a_zstd_snapshot, restore_zstd);
fn restore_zstd(v: Etcd) {
    let s = Server::start(v);
    s.put(&kv("before", 20));
    let out = ok(&s.cli(&["save", "--snapshot-compress-format=zstd"]));
    let zst = out.split_whitespace().nth(1).unwrap().to_string();
    assert!(zst.ends_with(".zst"), "{out}");
    let at_snapshot = dump(&s);
    s.put(&kv("after", 5));
    let snapdir = s.snapshot_dir();
    let (dir, ports) = s.stop();

    let path = snapdir.join(&zst);
    let out = reset(
        v,
        dir.path(),
        ports,
        &[&format!("--cluster-reset-restore-path={}", path.display())],
    );
    let text = ok(&out);
    assert!(text.contains(MESSAGE), "{text}\n{}", stderr(&out));
    let log = stderr(&out);
    assert!(log.contains("Restore: decompressed and verified"), "{log}");
    // The decompressed copy is gone; the .zst stays.
    assert_eq!(list_files(&snapdir), vec![zst.clone()]);
    let s = restart(v, dir, ports);
    assert_eq!(dump(&s), at_snapshot);
    assert!(s.cli(&["save"]).status.success());
}

/// A `.zst` over HTTPS (moto with a private CA): parts go up with CRC-64/NVME checksums and an
/// unsigned payload, and the object restores onto an empty data dir.
#[test]
fn restore_from_s3_zstd_over_https_onto_an_empty_data_dir() {
    use etcdsnap_testkit::s3::{ACCESS_KEY, MotoTls, SECRET_KEY};
    let moto = MotoTls::start();
    rt().block_on(moto.create_bucket("zbackups"));
    let s3 = vec![
        format!("--s3-endpoint={}", moto.endpoint()),
        "--s3-bucket=zbackups".to_string(),
        "--s3-folder=z".into(),
        format!("--s3-endpoint-ca={}", moto.ca_path().display()),
        format!("--s3-access-key={ACCESS_KEY}"),
        format!("--s3-secret-key={SECRET_KEY}"),
    ];
    let a = Server::start(Etcd::V35);
    // Incompressible, so that the .zst needs several 8 MiB parts.
    let big = noise("big", 20);
    a.put(&big);
    a.put(&kv("small", 10));
    let mut args = vec!["save".to_string(), "--s3".into()];
    args.push("--snapshot-compress-format=zstd".into());
    args.push("--s3-upload-concurrency=3".into());
    args.extend(s3.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = ok(&a.cli(&args));
    let name = out.split_whitespace().nth(1).unwrap().to_string();
    assert!(name.ends_with(".zst"), "{out}");
    let log = std::fs::read_to_string(a.data_dir().join("server.log")).unwrap();
    assert!(
        log.contains("(3 parts in flight, crc64nvme checksum, unsigned payload)"),
        "{log}"
    );
    let token = a.token();
    a.put(&kv("later", 3));

    let b = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let flags: Vec<String> = s3
        .into_iter()
        .map(|f| f.replacen("--s3", "--etcd-s3", 1))
        .chain([
            "--etcd-s3".to_string(),
            format!("--token={token}"),
            format!("--cluster-reset-restore-path={name}"),
        ])
        .collect();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let out = reset(Etcd::V35, b.path(), ports, &flags);
    let text = ok(&out);
    assert!(text.contains(MESSAGE), "{text}\n{}", stderr(&out));
    assert!(!stderr(&out).contains(SECRET_KEY));
    let bs = restart(Etcd::V35, b, ports);
    // Key by key: the values are too big for one read of everything.
    let (ca, cert, key) = bs.etcd_tls();
    let get = |k: &str| get_key(&bs.etcd_endpoint(), Some((&ca, &cert, &key)), k);
    for (k, v) in big.iter().step_by(7).chain(&kv("small", 10)) {
        assert!(get(k).as_ref() == Some(v), "{k} differs after the restore");
    }
    assert_eq!(get("/later/0"), None, "a key written after the snapshot");
}

#[test]
fn refused_snapshots_leave_the_data_dir_unchanged() {
    let s = Server::start(Etcd::V35);
    s.put(&kv("x", 10));
    let name = ok(&s.cli(&["save"]))
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    let good = std::fs::read(s.snapshot_dir().join(&name)).unwrap();
    let (dir, ports) = s.stop();
    let server = dir.path().join("server");
    let db_before = tree_hashes(&server.join("db"));
    let tls_before = tree_hashes(&server.join("tls"));
    let bad = tempfile::tempdir().unwrap();
    let zip_of = |name: &str, data: &[u8]| -> PathBuf {
        use std::io::Write;
        let p = bad.path().join(format!("{name}.zip"));
        let mut z = zip::ZipWriter::new(std::fs::File::create(&p).unwrap());
        z.start_file(name, zip::write::SimpleFileOptions::default())
            .unwrap();
        z.write_all(data).unwrap();
        z.finish().unwrap();
        p
    };
    let write = |name: &str, data: &[u8]| -> PathBuf {
        let p = bad.path().join(name);
        std::fs::write(&p, data).unwrap();
        p
    };
    let mut flipped = good.clone();
    flipped[4096 + 100] ^= 0x10;
    let mut cases: Vec<(PathBuf, &str)> = vec![
        (
            write("truncated", &good[..good.len() - 1000]),
            "sha256 checksum not found",
        ),
        (write("flipped", &flipped), "checksum mismatch"),
        (
            write("no-trailer", &good[..good.len() - 32]),
            "sha256 checksum not found",
        ),
        (zip_of("zflipped", &flipped), "checksum mismatch"),
        (
            zip_of("ztruncated", &good[..good.len() - 512]),
            "checksum mismatch",
        ),
    ];
    let corrupt_zip = {
        let p = zip_of("zgood", &good);
        let mut b = std::fs::read(&p).unwrap();
        let mid = b.len() / 2;
        for x in &mut b[mid..mid + 64] {
            *x ^= 0xff;
        }
        write("zcorrupt.zip", &b)
    };
    cases.push((corrupt_zip, "zcorrupt.zip"));
    // zstd: a flipped snapshot inside a valid stream, a cut stream, and bytes that are not zstd.
    cases.push((
        write("sflipped.zst", &zstd::encode_all(&flipped[..], 3).unwrap()),
        "checksum mismatch",
    ));
    let whole = zstd::encode_all(&good[..], 3).unwrap();
    cases.push((write("scut.zst", &whole[..whole.len() * 2 / 3]), "scut.zst"));
    cases.push((write("snot.zst", b"PK\x03\x04 not zstd"), "snot.zst"));
    cases.push((
        bad.path().join("missing"),
        "etcd: snapshot path does not exist:",
    ));
    cases.push((
        bad.path().to_path_buf(),
        "etcd: snapshot path must be a file, not a directory:",
    ));
    for (path, want) in &cases {
        let out = reset(
            Etcd::V35,
            dir.path(),
            ports,
            &[&format!("--cluster-reset-restore-path={}", path.display())],
        );
        let err = fails(&out);
        assert!(err.contains(want), "{}: {err}", path.display());
        assert_eq!(
            tree_hashes(&server.join("db")),
            db_before,
            "{}: server/db changed",
            path.display()
        );
        assert_eq!(
            tree_hashes(&server.join("tls")),
            tls_before,
            "{}: server/tls changed",
            path.display()
        );
    }
    // A good snapshot with the wrong token: K3s's message, and still nothing changed.
    let good_path = dir.path().join("server/db/snapshots").join(&name);
    let err = fails(&reset(
        Etcd::V35,
        dir.path(),
        ports,
        &[
            "--token=not-the-cluster-token",
            &format!("--cluster-reset-restore-path={}", good_path.display()),
        ],
    ));
    assert!(
        err.contains("bootstrap data already found and encrypted with different token"),
        "{err}"
    );
    assert_eq!(tree_hashes(&server.join("db")), db_before);
    assert_eq!(tree_hashes(&server.join("tls")), tls_before);
    // The good snapshot still restores after all that.
    let out = reset(
        Etcd::V35,
        dir.path(),
        ports,
        &[&format!(
            "--cluster-reset-restore-path={}",
            dir.path().join("server/db/snapshots").join(&name).display()
        )],
    );
    assert!(ok(&out).contains(MESSAGE));
}

#[test]
fn k3s_flag_checks_word_for_word() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| -> String {
        let out = Command::new(etcdsnap_bin())
            .arg("server")
            .arg("-d")
            .arg(dir.path())
            .args(Ports::free().args())
            .arg(format!("--etcd-binary={}", Etcd::V35.etcd().display()))
            .args(args)
            .env("ETCDSNAP_CONFIG_FILE", empty_config(dir.path()))
            .env_remove("ETCDSNAP_TOKEN")
            .output()
            .unwrap();
        fails(&out)
    };
    assert!(
        run(&["--cluster-reset-restore-path=/x"]).contains(
            "invalid flag use; --cluster-reset required with --cluster-reset-restore-path"
        )
    );
    assert!(run(&["--cluster-reset", "--server=https://10.0.0.1:9345"]).contains("cannot perform cluster-reset while server URL is set - remove server from configuration before resetting"));
    let token_file = dir.path().join("server/token");
    assert!(
        run(&["--cluster-reset", "--cluster-reset-restore-path=/x"]).contains(&format!(
            "{} does not exist, please pass --token to complete the restoration",
            token_file.display()
        ))
    );
    assert!(run(&["--cluster-reset", "--cluster-reset-restore-path=x", "--etcd-s3", "--etcd-s3-config-secret=sec"]).contains("cannot use S3 config secret when restoring snapshot; configuration must be set in CLI or config file"));
    // Nothing was created by any of these.
    assert!(
        !dir.path().join("server/db").exists(),
        "{:?}",
        list_files(dir.path())
    );
}

both!(etcdctl_snapshots_and_k3s_zips_restore, restore_etcdctl);
fn restore_etcdctl(v: Etcd) {
    let s = Server::start(v);
    s.put(&kv("k3s", 15));
    let at_snapshot = dump(&s);
    let work = tempfile::tempdir().unwrap();
    let raw = work.path().join("etcd-snapshot-n1-1730308816");
    let (ca, cert, key) = s.etcd_tls();
    ok(&Command::new(v.etcdctl())
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "save"])
        .arg(&raw)
        .arg(format!("--endpoints={}", s.etcd_endpoint()))
        .arg(format!("--cacert={}", ca.display()))
        .arg(format!("--cert={}", cert.display()))
        .arg(format!("--key={}", key.display()))
        .output()
        .unwrap());
    let zip = go_zip(&raw, work.path());
    s.put(&kv("gone", 4));
    let (dir, ports) = s.stop();
    for file in [&raw, &zip] {
        let out = reset(
            v,
            dir.path(),
            ports,
            &[&format!("--cluster-reset-restore-path={}", file.display())],
        );
        assert!(ok(&out).contains(MESSAGE), "{}", file.display());
    }
    let s = restart(v, dir, ports);
    assert_eq!(dump(&s), at_snapshot);
}

/// Zips `raw` as K3s does, with Go's archive/zip (one Deflate entry named after the file).
fn go_zip(raw: &Path, dir: &Path) -> PathBuf {
    let prog = dir.join("zip.go");
    std::fs::write(
        &prog,
        r#"package main

import (
	"archive/zip"
	"io"
	"os"
	"path/filepath"
)

func main() {
	src, dst := os.Args[1], os.Args[2]
	in, err := os.Open(src)
	if err != nil { panic(err) }
	info, err := in.Stat()
	if err != nil { panic(err) }
	out, err := os.Create(dst)
	if err != nil { panic(err) }
	w := zip.NewWriter(out)
	h, err := zip.FileInfoHeader(info)
	if err != nil { panic(err) }
	h.Name = filepath.Base(src)
	h.Method = zip.Deflate
	e, err := w.CreateHeader(h)
	if err != nil { panic(err) }
	if _, err := io.Copy(e, in); err != nil { panic(err) }
	if err := w.Close(); err != nil { panic(err) }
	if err := out.Close(); err != nil { panic(err) }
}
"#,
    )
    .unwrap();
    let zip = dir.join(format!(
        "{}.zip",
        raw.file_name().unwrap().to_string_lossy()
    ));
    ok(&Command::new(env_bin("GO_BIN"))
        .arg("run")
        .arg(&prog)
        .arg(raw)
        .arg(&zip)
        .env("GO111MODULE", "off")
        .env("GOCACHE", dir.join("gocache"))
        .output()
        .unwrap());
    zip
}

both!(restore_to_an_output_dir_boots_with_etcd, restore_output_dir);
fn restore_output_dir(v: Etcd) {
    let s = Server::start(v);
    s.put(&kv("ext", 12));
    let zip = ok(&s.cli(&["save", "--snapshot-compress"]));
    let zip = s
        .snapshot_dir()
        .join(zip.split_whitespace().nth(1).unwrap());
    let want: Dump = dump(&s)
        .into_iter()
        .filter(|(k, _)| k.starts_with("/ext/"))
        .collect();
    let work = tempfile::tempdir().unwrap();
    let out_dir = work.path().join("restored");
    let peer = free_port();
    let restore = |out_dir: &Path| {
        Command::new(etcdsnap_bin())
            .args(["etcd-snapshot", "restore"])
            .arg(&zip)
            .arg(format!("--output-dir={}", out_dir.display()))
            .args(["--name", "m1"])
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
            ))
            .arg(format!("--etcd-binary={}", v.etcd().display()))
            .env("ETCDSNAP_CONFIG_FILE", empty_config(work.path()))
            .output()
            .unwrap()
    };
    let text = ok(&restore(&out_dir));
    assert!(text.contains("etcd --name m1 --data-dir"), "{text}");
    // A non-empty output dir is refused and left alone.
    let err = fails(&restore(&out_dir));
    assert!(err.contains("is not empty"), "{err}");
    let e = PlainEtcd::start(v, Some(out_dir.clone()), "m1", Some(peer), false);
    for (k, (val, _)) in &want {
        assert_eq!(e.get(k).as_deref(), Some(val.as_slice()), "{k}");
    }
    assert_eq!(e.get("/ext/11").as_deref(), Some(&b"ext-value-11"[..]));
    // Corrupt input: nothing is written.
    let bad = work.path().join("bad");
    std::fs::write(&bad, vec![7u8; 8192]).unwrap();
    let out = Command::new(etcdsnap_bin())
        .args(["etcd-snapshot", "restore"])
        .arg(&bad)
        .arg(format!(
            "--output-dir={}",
            work.path().join("never").display()
        ))
        .arg(format!("--etcd-binary={}", v.etcd().display()))
        .env("ETCDSNAP_CONFIG_FILE", empty_config(work.path()))
        .output()
        .unwrap();
    assert!(fails(&out).contains("sha256 checksum not found"));
    assert!(!work.path().join("never").exists());
}

#[test]
fn bootstrap_encryption_matches_go() {
    // K3s's scheme done independently with Go's standard library: PBKDF2-HMAC-SHA1 by hand,
    // AES-256-GCM from crypto/cipher (nonce, then ciphertext with the tag appended).
    let dir = tempfile::tempdir().unwrap();
    let prog = dir.path().join("bs.go");
    std::fs::write(
        &prog,
        r#"package main

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"os"
	"strings"
)

func pbkdf2(pass, salt []byte) []byte {
	var out []byte
	for block := uint32(1); len(out) < 32; block++ {
		mac := hmac.New(sha1.New, pass)
		b := make([]byte, 4)
		binary.BigEndian.PutUint32(b, block)
		mac.Write(salt)
		mac.Write(b)
		u := mac.Sum(nil)
		t := append([]byte{}, u...)
		for i := 1; i < 4096; i++ {
			mac = hmac.New(sha1.New, pass)
			mac.Write(u)
			u = mac.Sum(nil)
			for j := range t {
				t[j] ^= u[j]
			}
		}
		out = append(out, t...)
	}
	return out[:32]
}

func gcm(pass, salt string) cipher.AEAD {
	block, err := aes.NewCipher(pbkdf2([]byte(pass), []byte(salt)))
	if err != nil { panic(err) }
	g, err := cipher.NewGCM(block)
	if err != nil { panic(err) }
	return g
}

func main() {
	switch os.Args[1] {
	case "seal":
		g := gcm(os.Args[2], "go1salt8")
		nonce := []byte("twelve bytes")
		sealed := g.Seal(nonce, nonce, []byte(os.Args[3]), nil)
		fmt.Print("go1salt8:" + base64.StdEncoding.EncodeToString(sealed))
	case "open":
		parts := strings.SplitN(os.Args[3], ":", 2)
		raw, err := base64.StdEncoding.DecodeString(parts[1])
		if err != nil { panic(err) }
		g := gcm(os.Args[2], parts[0])
		plain, err := g.Open(nil, raw[:12], raw[12:], nil)
		if err != nil { panic(err) }
		fmt.Print(string(plain))
	}
}
"#,
    )
    .unwrap();
    let go = |args: &[&str]| -> String {
        ok(&Command::new(env_bin("GO_BIN"))
            .arg("run")
            .arg(&prog)
            .args(args)
            .env("GO111MODULE", "off")
            .env("GOCACHE", dir.path().join("gocache"))
            .output()
            .unwrap())
    };
    let json = r#"{"ServerCA":{"Timestamp":"2024-10-30T17:20:16Z","Content":"QUJD"}}"#;
    let sealed_by_go = go(&["seal", "tok3n", json]);
    let plain = etcdsnap_core::bootstrap::decrypt("tok3n", sealed_by_go.as_bytes()).unwrap();
    assert_eq!(plain, json.as_bytes());
    let sealed_by_us = etcdsnap_core::bootstrap::encrypt("tok3n", json.as_bytes()).unwrap();
    assert_eq!(go(&["open", "tok3n", &sealed_by_us]), json);
}

fn has_key(s: &Server, key: &str) -> bool {
    let (ca, cert, key_file) = s.etcd_tls();
    get_key(&s.etcd_endpoint(), Some((&ca, &cert, &key_file)), key).is_some()
}

/// A server with `x` keys and 48 MiB of noise saved in a snapshot, then `after` keys written
/// after it; stopped. Returns the data dir, the ports and the snapshot's path.
fn snapshot_then_more(s: Server) -> (tempfile::TempDir, Ports, PathBuf) {
    s.put(&kv("x", 10));
    s.put(&noise("/noise", 48));
    let name = ok(&s.cli(&["save"]))
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    let snap = s.snapshot_dir().join(&name);
    s.put(&kv("after", 5));
    let (dir, ports) = s.stop();
    let snap = dir
        .path()
        .join("server/db/snapshots")
        .join(snap.file_name().unwrap());
    (dir, ports, snap)
}

/// `db/etcd` file by file (the staging dirs beside it are not the server's data).
fn live_db(dir: &Path) -> BTreeMap<PathBuf, String> {
    tree_hashes(&dir.join("server/db/etcd"))
}

fn staging_dirs(db: &Path) -> Vec<String> {
    entries(db)
        .into_iter()
        .filter(|n| n.starts_with("etcd-restore-"))
        .collect()
}

/// A restore killed (SIGKILL, nothing can clean up) while etcd's tool writes the staging dir,
/// or later while etcd runs on it, leaves `db/etcd` and `tls` as they were: the server starts
/// on its old data, the staging dir is removed with a log line, and the restore run again
/// works.
#[test]
fn a_restore_killed_midway_leaves_the_data_dir_as_it_was() {
    let (mut dir, mut ports, snap) = snapshot_then_more(Server::start(Etcd::V35));
    for step in [
        "while the tool writes",
        "while etcd runs on the restored data",
    ] {
        let db = dir.path().join("server/db");
        let before = live_db(dir.path());
        let tls_before = tree_hashes(&dir.path().join("server/tls"));
        let mut child = reset_cmd(
            Command::new(etcdsnap_bin()),
            Etcd::V35,
            dir.path(),
            ports,
            &[&format!("--cluster-reset-restore-path={}", snap.display())],
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
        let pid = child.id() as i32;
        wait_for(std::time::Duration::from_secs(60), step, || {
            let staged = !staging_dirs(&db).is_empty();
            let etcd_up = crate::server::child_pids(pid).iter().any(|c| {
                std::fs::read_to_string(format!("/proc/{c}/cmdline"))
                    .is_ok_and(|l| l.contains("force-new-cluster"))
            });
            match step {
                "while the tool writes" => staged,
                _ => etcd_up,
            }
            .then_some(())
        });
        let kids = crate::server::child_pids(pid);
        child.kill().unwrap();
        child.wait().unwrap();
        wait_for(
            std::time::Duration::from_secs(10),
            "its children to die",
            || {
                kids.iter()
                    .all(|k| {
                        std::fs::read_to_string(format!("/proc/{k}/stat"))
                            .map(|st| st.contains(") Z "))
                            .unwrap_or(true)
                    })
                    .then_some(())
            },
        );
        assert_eq!(live_db(dir.path()), before, "{step}: db/etcd changed");
        assert_eq!(
            tree_hashes(&dir.path().join("server/tls")),
            tls_before,
            "{step}: tls changed"
        );
        assert!(
            !staging_dirs(&db).is_empty(),
            "{step}: the kill came too late"
        );
        // The server starts on the data it had, written after the snapshot.
        let s = restart(Etcd::V35, dir, ports);
        assert!(staging_dirs(&db).is_empty(), "{step}: staging left");
        assert!(
            s.proc
                .log_text()
                .contains("left by a cluster reset that did not finish"),
            "{}",
            s.proc.log_text()
        );
        assert!(has_key(&s, "/after/0") && has_key(&s, "/x/0"), "{step}");
        (dir, ports) = s.stop();
    }
    // And the restore, run to its end, works.
    assert!(
        ok(&reset(
            Etcd::V35,
            dir.path(),
            ports,
            &[&format!("--cluster-reset-restore-path={}", snap.display())],
        ))
        .contains(MESSAGE)
    );
    let s = restart(Etcd::V35, dir, ports);
    assert!(has_key(&s, "/x/0") && has_key(&s, "/noise/47") && !has_key(&s, "/after/0"));
}

/// The disk fills up while etcd's tool writes the restored data (a wrapper fills it just
/// before the real etcdutl runs): a clear error, `db/etcd` as it was, no staging dir left;
/// with space again the same restore works.
#[test]
fn a_disk_that_fills_up_mid_restore_leaves_the_data_dir_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let disk = SmallDisk::new(&dir.path().join("server"), 400);
    let s = Server::builder(Etcd::V35).dir(dir).on(&disk).start();
    let (dir, ports, snap) = snapshot_then_more(s);
    let server = disk.view(&dir.path().join("server"));
    let before = tree_hashes(&server.join("db/etcd"));
    let tools = tempfile::tempdir().unwrap();
    let filler = dir.path().join("server/filler");
    let wrapper = tools.path().join("etcdutl");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nfree=$(df --output=avail -k {fill_dir} | tail -n 1)\nfallocate -l $(( (free - 256) * 1024 )) {filler} || exit 99\nexec {real} \"$@\"\n",
            fill_dir = filler.parent().unwrap().display(),
            filler = filler.display(),
            real = env_bin("ETCDUTL35_BIN").display()
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let restore_flags = [
        format!("--cluster-reset-restore-path={}", snap.display()),
        format!("--etcdutl-binary={}", wrapper.display()),
    ];
    let flags: Vec<&str> = restore_flags.iter().map(String::as_str).collect();
    let out = reset_cmd(
        disk.command(etcdsnap_bin()),
        Etcd::V35,
        dir.path(),
        ports,
        &flags,
    )
    .output()
    .unwrap();
    let err = fails(&out);
    assert!(
        err.contains("the disk is full") && err.contains("free space on it"),
        "{err}"
    );
    assert!(
        server.join("filler").exists(),
        "the wrapper did not run: {err}"
    );
    assert_eq!(
        tree_hashes(&server.join("db/etcd")),
        before,
        "db/etcd changed"
    );
    assert!(staging_dirs(&server.join("db")).is_empty(), "staging left");
    // Space again: the same restore, with the real tool, works.
    std::fs::remove_file(server.join("filler")).unwrap();
    let out = reset_cmd(
        disk.command(etcdsnap_bin()),
        Etcd::V35,
        dir.path(),
        ports,
        &[&restore_flags[0]],
    )
    .output()
    .unwrap();
    assert!(ok(&out).contains(MESSAGE));
    let s = Server::builder(Etcd::V35)
        .dir(dir)
        .ports(ports)
        .on(&disk)
        .start();
    assert!(has_key(&s, "/x/0") && has_key(&s, "/noise/47") && !has_key(&s, "/after/0"));
}

/// A server with keys `/x/*` saved in a snapshot (zipped with `compress`), then `/after/*`
/// written after it; stopped. Returns the data dir, the ports and the snapshot's path.
fn small_snapshot_then_more(compress: bool) -> (tempfile::TempDir, Ports, PathBuf) {
    let s = Server::start(Etcd::V35);
    s.put(&kv("x", 10));
    let mut args = vec!["save"];
    if compress {
        args.push("--snapshot-compress");
    }
    let name = ok(&s.cli(&args))
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    s.put(&kv("after", 5));
    let (dir, ports) = s.stop();
    let snap = dir.path().join("server/db/snapshots").join(name);
    (dir, ports, snap)
}

/// The CA certificates and keys of `server/tls` (the leaf certificates are issued again).
fn ca_files(dir: &Path) -> BTreeMap<PathBuf, String> {
    tree_hashes(&dir.join("server/tls"))
        .into_iter()
        .filter(|(p, _)| p.to_string_lossy().contains("-ca."))
        .collect()
}

/// A reset killed at any point of its last step (the moves of `db/etcd`, `tls` and the token
/// file, a test hook exiting there as a kill would) is finished by the next start: the
/// cluster's own CAs are in place (same files, same CA hash in the token, the old full token
/// still accepted) and the restored data is served. Before, a reset killed once `tls` had
/// moved aside left the next start to make new etcd CAs.
#[test]
fn a_reset_killed_while_it_moves_db_and_tls_is_finished_at_the_next_start() {
    let (mut dir, mut ports, snap) = small_snapshot_then_more(false);
    let token = std::fs::read_to_string(dir.path().join("server/token")).unwrap();
    let cas = ca_files(dir.path());
    assert!(cas.len() >= 4, "{cas:?}");
    for point in ["journal", "move-1", "move-2", "move-3", "move-4", "move-5"] {
        let out = reset_cmd(
            Command::new(etcdsnap_bin()),
            Etcd::V35,
            dir.path(),
            ports,
            &[&format!("--cluster-reset-restore-path={}", snap.display())],
        )
        .env("ETCDSNAP_TEST_EXIT_AT", point)
        .output()
        .unwrap();
        assert!(
            !out.status.success() && stderr(&out).contains("ETCDSNAP_TEST_EXIT_AT"),
            "{point}: the reset was not stopped there: {}",
            stderr(&out)
        );
        let s = restart(Etcd::V35, dir, ports);
        assert!(
            s.log_text()
                .contains("Finished the interrupted cluster reset"),
            "{point}: {}",
            s.log_text()
        );
        assert_eq!(ca_files(s.data_dir()), cas, "{point}: the CAs changed");
        assert_eq!(
            std::fs::read_to_string(s.data_dir().join("server/token")).unwrap(),
            token,
            "{point}"
        );
        ok(&s.cli(&["ls", "--etcd-token", token.trim()]));
        assert!(has_key(&s, "/x/0") && !has_key(&s, "/after/0"), "{point}");
        assert_eq!(members(&s).len(), 1, "{point}");
        let server = s.data_dir().join("server");
        let left: Vec<String> = entries(&server)
            .into_iter()
            .chain(entries(&server.join("db")))
            .filter(|n| n.contains("restore") || n == "reset-journal")
            .collect();
        assert!(left.is_empty(), "{point}: {left:?}");
        (dir, ports) = s.stop();
    }
}

/// A wrapper of etcdutl that, asked to restore, touches `marker` and sleeps: the reset or
/// drill is then killed while "the tool runs", at a known point.
pub(crate) fn hanging_etcdutl(tools: &Path, marker: &Path) -> PathBuf {
    let wrapper = tools.join("etcdutl");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nif [ \"$1\" = snapshot ] && [ \"$2\" = restore ]; then touch {marker}; exec sleep 600; fi\nexec {real} \"$@\"\n",
            marker = marker.display(),
            real = env_bin("ETCDUTL35_BIN").display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    wrapper
}

/// SIGKILLs `child` and then its children (nothing of them can clean up).
pub(crate) fn kill_tree(child: &mut std::process::Child) {
    let kids = crate::server::child_pids(child.id() as i32);
    child.kill().unwrap();
    child.wait().unwrap();
    for k in kids {
        // SAFETY: a process this test's child started.
        unsafe {
            libc::kill(k, libc::SIGKILL);
        }
    }
}

/// A restore of a `.zip` killed while etcd's tool runs leaves no decompressed copy in the
/// snapshot dir (it would be listed and recorded as a snapshot): the copy lives in a staging
/// dir of `db/`, which the next start removes.
#[test]
fn a_restore_of_a_zip_killed_midway_leaves_nothing_in_the_snapshot_dir() {
    let (dir, ports, snap) = small_snapshot_then_more(true);
    let snapdir = dir.path().join("server/db/snapshots");
    let before = entries(&snapdir);
    let tools = tempfile::tempdir().unwrap();
    let marker = tools.path().join("restoring");
    let wrapper = hanging_etcdutl(tools.path(), &marker);
    let mut child = reset_cmd(
        Command::new(etcdsnap_bin()),
        Etcd::V35,
        dir.path(),
        ports,
        &[
            &format!("--cluster-reset-restore-path={}", snap.display()),
            &format!("--etcdutl-binary={}", wrapper.display()),
        ],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    wait_for(std::time::Duration::from_secs(60), "etcdutl to run", || {
        marker.exists().then_some(())
    });
    kill_tree(&mut child);
    assert_eq!(entries(&snapdir), before, "left in the snapshot dir");
    let s = restart(Etcd::V35, dir, ports);
    let db = s.data_dir().join("server/db");
    let left: Vec<String> = entries(&db)
        .into_iter()
        .filter(|n| n.contains("restore"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(s.snapshot_files(), before);
    assert!(has_key(&s, "/after/0"), "the data dir was not changed");
}
