//! Progress bars: drawn on a terminal (a real pseudo-terminal from `script`), never when output
//! is a pipe, never in the server's log. A save's bars come from the server's progress
//! endpoint; a restore's from the work done by the CLI itself (download, decompress, restore).

use std::process::Command;

use crate::harness::*;
use etcdsnap_testkit::s3::{ACCESS_KEY, S3sFs, SECRET_KEY};

const BUCKET: &str = "progressbucket";

fn s3_flags(fs: &S3sFs) -> Vec<String> {
    vec![
        "--s3".into(),
        format!("--s3-endpoint={}", fs.endpoint()),
        "--s3-insecure".into(),
        format!("--s3-bucket={BUCKET}"),
        format!("--s3-access-key={ACCESS_KEY}"),
        format!("--s3-secret-key={SECRET_KEY}"),
        "--s3-folder=p".into(),
    ]
}

fn quote(a: &str) -> String {
    format!("'{}'", a.replace('\'', r"'\''"))
}

/// Runs `etcdsnap <args>` on a 120-column pseudo-terminal; returns what the terminal showed
/// and whether the command succeeded.
fn on_terminal(args: &[String], envs: &[(&str, &str)]) -> (bool, String) {
    let line: Vec<String> = std::iter::once(etcdsnap_bin().display().to_string())
        .chain(args.iter().cloned())
        .map(|a| quote(&a))
        .collect();
    let mut cmd = Command::new("script");
    cmd.args(["-q", "-e", "-c"])
        .arg(format!("stty cols 120 rows 40; exec {}", line.join(" ")))
        .arg("/dev/null")
        .env("TERM", "xterm");
    without_aws_env(&mut cmd);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run script (util-linux)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn server_args(s: &Server, sub: &str, extra: &[String]) -> Vec<String> {
    let mut a = vec![
        "etcd-snapshot".to_string(),
        sub.to_string(),
        "-d".into(),
        s.data_dir().display().to_string(),
        format!("--etcd-server={}", s.url()),
    ];
    a.extend(extra.iter().cloned());
    a
}

/// A bar's rate (`512 B/s`, `12.3 MiB/s`), and not a path such as `/tmp/.tmpXzB/server`.
fn shows_rate(text: &str) -> bool {
    text.contains(" B/s") || text.contains("iB/s")
}

/// Marks of a drawn bar: a transfer rate and the carriage returns or cursor moves of redraws.
fn has_bar(text: &str, label: &str) -> bool {
    text.contains(label) && shows_rate(text) && (text.contains('\r') || text.contains('\x1b'))
}

#[test]
fn save_and_restore_show_progress_on_a_terminal_only() {
    let v = Etcd::V35;
    let fs = S3sFs::start(&[BUCKET]);
    let s = Server::start(v);
    s.put(&noise("big", 24));
    let cfg = empty_config(s.data_dir());
    let cfg_env = ("ETCDSNAP_CONFIG_FILE", cfg.to_str().unwrap());
    let flags = s3_flags(&fs);

    // A save on a terminal: a bar for the save and one for the upload, then the usual lines.
    let mut save = flags.clone();
    save.push("--snapshot-compress".into());
    let (ok_, shown) = on_terminal(&server_args(&s, "save", &save), &[cfg_env]);
    assert!(ok_, "{shown}");
    let name = s
        .snapshot_files()
        .into_iter()
        .find(|f| f.ends_with(".zip"))
        .expect("a zip was saved");
    assert!(
        has_bar(&shown, &format!("save {name}")),
        "no save bar: {shown:?}"
    );
    assert!(
        has_bar(&shown, &format!("upload to s3://{BUCKET}/p/{name}")),
        "no upload bar: {shown:?}"
    );
    assert!(
        shown.contains(&format!("Snapshot {name} saved.")),
        "{shown}"
    );
    // The save bar ends at the database size etcd sent, which is the raw snapshot's size.
    let raw_mib = {
        let st = ok(&s.cli(&["status", &name, "-w", "json"]));
        let v: serde_json::Value = serde_json::from_str(&st).unwrap();
        v["uncompressedSize"].as_u64().unwrap_or(0)
    };
    assert!(raw_mib > 24 << 20, "{raw_mib}");
    let figure = format!("{:.2} MiB", raw_mib as f64 / (1u64 << 20) as f64);
    assert!(shown.contains(&figure), "no {figure} in {shown:?}");

    // The same save through a pipe: no bar, no control characters.
    let mut args = vec!["save"];
    args.extend(save.iter().map(String::as_str));
    let out = s.cli(&args);
    let text = ok(&out) + &stderr(&out);
    assert!(!shows_rate(&text) && !text.contains('\r'), "{text:?}");
    // Turned off on a terminal.
    let (ok_, shown) = on_terminal(
        &server_args(&s, "save", &save),
        &[cfg_env, ("ETCDSNAP_NO_PROGRESS", "1")],
    );
    assert!(ok_, "{shown}");
    assert!(!shows_rate(&shown), "{shown:?}");
    // The server's log has no bars either.
    let log = s.log_text();
    assert!(log.contains(&name) && !shows_rate(&log), "{log}");

    // A restore from S3 on a terminal: download, decompress, restore with the etcd tool.
    let work = tempfile::tempdir().unwrap();
    let out_dir = work.path().join("restored");
    let mut restore = vec![
        "etcd-snapshot".to_string(),
        "restore".into(),
        name.clone(),
        format!("--output-dir={}", out_dir.display()),
        format!("--etcd-binary={}", v.etcd().display()),
    ];
    restore.extend(flags.iter().cloned());
    let (ok_, shown) = on_terminal(&restore, &[cfg_env]);
    assert!(ok_, "{shown}");
    for label in [
        format!("download {name}"),
        format!("decompress {}", name.trim_end_matches(".zip")),
    ] {
        assert!(has_bar(&shown, &label), "no {label} bar: {shown:?}");
    }
    assert!(shown.contains("restore with "), "{shown:?}");
    assert!(out_dir.join("member/snap/db").is_file());
    // Through a pipe: the same restore prints no bar.
    let out_dir2 = work.path().join("restored2");
    restore[3] = format!("--output-dir={}", out_dir2.display());
    let mut cmd = Command::new(etcdsnap_bin());
    cmd.args(&restore).env(cfg_env.0, cfg_env.1);
    without_aws_env(&mut cmd);
    let out = cmd.output().unwrap();
    let text = ok(&out) + &stderr(&out);
    assert!(!shows_rate(&text) && !text.contains('\r'), "{text:?}");
    assert!(out_dir2.join("member/snap/db").is_file());
}
