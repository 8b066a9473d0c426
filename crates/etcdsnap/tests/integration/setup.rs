//! The repository's own set-up scripts: they must never stop, disable or kill the host's services
//! or processes (a host's etcd service may be the very cluster the user wants to back up), and
//! never install a package whose installation starts a daemon.

use std::path::{Path, PathBuf};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf()
}

/// Every shell script of the repository's set-up, CI and bench directories.
fn scripts() -> Vec<PathBuf> {
    let root = repo_root();
    let mut out = vec![root.join(".ci/run")];
    for dir in ["ci", "bench", "bench/lib", "packaging"] {
        let Ok(rd) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for e in rd {
            let p = e.unwrap().path();
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            if p.extension().is_some_and(|x| x == "sh") || text.starts_with("#!/usr/bin/env bash") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The code of a shell line: what precedes a `#` that starts a comment.
fn code(line: &str) -> &str {
    let b = line.as_bytes();
    for i in 0..b.len() {
        if b[i] == b'#' && (i == 0 || b[i - 1].is_ascii_whitespace()) {
            return &line[..i];
        }
    }
    line
}

fn words(line: &str) -> Vec<&str> {
    line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .filter(|w| !w.is_empty())
        .collect()
}

/// A `systemctl` line that acts on etcdsnap's own unit and nothing else (packaging/install.sh
/// --enable), or only reloads the unit files.
fn own_unit_only(w: &[&str]) -> bool {
    let names_etcdsnap = w.contains(&"etcdsnap");
    let names_other_etcd = w.iter().any(|x| x.starts_with("etcd") && *x != "etcdsnap");
    (names_etcdsnap && !names_other_etcd) || w == ["systemctl", "daemon-reload"]
}

#[test]
fn scripts_never_touch_host_services_or_processes() {
    let scripts = scripts();
    for script in [
        "ci/install-deps.sh",
        "packaging/install.sh",
        "packaging/build-deb.sh",
    ] {
        assert!(scripts.iter().any(|p| p.ends_with(script)), "{scripts:?}");
    }
    let mut found = Vec::new();
    for p in &scripts {
        let text = std::fs::read_to_string(p).unwrap();
        for (n, line) in text.lines().enumerate() {
            let w = words(code(line));
            for (i, word) in w.iter().enumerate() {
                let bad = (*word == "systemctl" && !own_unit_only(&w))
                    || matches!(*word, "pkill" | "killall" | "invoke-rc.d")
                    || (*word == "service" && i == 0 && w.len() > 2)
                    // apt-get install of a package that ships a daemon.
                    || (w.contains(&"install")
                        && w.contains(&"apt-get")
                        && word.starts_with("etcd"));
                if bad {
                    found.push(format!("{}:{}: {line}", p.display(), n + 1));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "scripts that touch host services:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_scanner_finds_what_it_looks_for() {
    // The check above would pass on anything if `code`/`words` were broken.
    assert_eq!(
        words(code("  systemctl disable --now etcd # stop it")),
        ["systemctl", "disable", "--now", "etcd"]
    );
    assert_eq!(code("# pkill etcd"), "");
    let own = |l: &str| own_unit_only(&words(code(l)));
    assert!(own("  systemctl enable --now etcdsnap.service"));
    assert!(own("systemctl daemon-reload"));
    assert!(!own("systemctl disable --now etcd"));
    assert!(!own("systemctl stop etcd.service etcdsnap"));
    assert!(!own("systemctl stop kubelet"));
    assert_eq!(words(code("echo a#b")), ["echo", "a", "b"]);
}
