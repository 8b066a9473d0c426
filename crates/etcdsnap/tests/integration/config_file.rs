//! K3s-style config files (`-c`, `ETCDSNAP_CONFIG_FILE`, drop-ins) applied to `etcd-snapshot`.

use std::process::Command;

use crate::harness::*;

#[test]
fn config_keys_apply_through_etcd_aliases_and_flags_win() {
    // The two saves below are named for two seconds, at once.
    let s = Server::builder(Etcd::V35).distinct_name_seconds().start();
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = cfg_dir.path().join("config.yaml");
    // A K3s server config: server-only keys are warned about and skipped.
    std::fs::write(
        &cfg,
        format!(
            "etcd-snapshot-compress: true\ncluster-init: true\ntoken: abc\netcd-snapshot-schedule-cron: '0 * * * *'\ndata-dir: {}\n",
            s.data_dir().display()
        ),
    )
    .unwrap();
    std::fs::create_dir(cfg_dir.path().join("config.yaml.d")).unwrap();
    std::fs::write(
        cfg_dir.path().join("config.yaml.d/10-name.yaml"),
        "name: fromdropin\n",
    )
    .unwrap();
    let run = |extra: &[&str]| {
        let mut cmd = Command::new(etcdsnap_bin());
        cmd.args(["etcd-snapshot", "save"])
            .args(extra)
            .arg(format!("--etcd-server={}", s.url()))
            .env("ETCDSNAP_CONFIG_FILE", &cfg);
        cmd.output().unwrap()
    };
    let out = run(&[]);
    ok(&out);
    let err = stderr(&out);
    for k in ["cluster-init", "token", "etcd-snapshot-schedule-cron"] {
        assert!(
            err.contains(&format!(
                "Unknown flag --{k} found in config.yaml, skipping"
            )),
            "{err}"
        );
    }
    let files = s.snapshot_files();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(
        files[0].starts_with("fromdropin-n1-") && files[0].ends_with(".zip"),
        "{files:?}"
    );
    // Explicit flags beat the file.
    ok(&run(&["--snapshot-compress=false", "--name", "explicit"]));
    let files = s.snapshot_files();
    assert!(
        files
            .iter()
            .any(|f| f.starts_with("explicit-n1-") && !f.ends_with(".zip")),
        "{files:?}"
    );
    // -c names the file too; an explicit missing file is an error.
    let mut cmd = Command::new(etcdsnap_bin());
    cmd.args(["etcd-snapshot", "ls", "-c", "/nonexistent/etcdsnap.yaml"]);
    let err = fails(&cmd.output().unwrap());
    assert!(err.contains("/nonexistent/etcdsnap.yaml"), "{err}");
}
