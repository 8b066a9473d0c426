//! Packaging: the systemd unit as systemd reads it, `packaging/install.sh` into a temp root,
//! the config example against the server's flags, and the completion scripts and man pages as
//! bash, fish, zsh and man load them. The tools (systemd-analyze, bash, zsh, fish, man) come
//! from `ci/install-deps.sh test`; a missing one fails the test.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::harness::etcdsnap_bin;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf()
}

fn packaging(file: &str) -> PathBuf {
    repo_root().join("packaging").join(file)
}

/// A tool from PATH; its absence fails the test with the command that installs it.
fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not on PATH: run ci/install-deps.sh test"))
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn etcdsnap(args: &[&str]) -> String {
    ok(Command::new(etcdsnap_bin()).args(args))
}

/// `key=value` settings of one section of a unit file (the last value wins, as for the
/// single-valued settings we check).
fn unit_section(unit: &str, section: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut current = String::new();
    for line in unit.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = s.to_string();
        } else if current == section
            && let Some((k, v)) = line.split_once('=')
        {
            out.insert(k.to_string(), v.to_string());
        }
    }
    out
}

/// The unit with ExecStart pointing at `binary`, in `dir`, named etcdsnap.service.
fn unit_copy(dir: &Path, binary: &Path) -> PathBuf {
    let unit = std::fs::read_to_string(packaging("etcdsnap.service")).unwrap();
    let needle = "ExecStart=/usr/local/bin/etcdsnap server";
    assert!(unit.contains(needle), "{unit}");
    let p = dir.join("etcdsnap.service");
    std::fs::write(
        &p,
        unit.replace(needle, &format!("ExecStart={} server", binary.display())),
    )
    .unwrap();
    p
}

/// `systemd-analyze verify` with MANPATH on `man_dir`, so the unit's Documentation= page is
/// looked up among the pages the binary generates.
fn verify(unit: &Path, man_dir: &Path) -> Output {
    run(Command::new(tool("systemd-analyze"))
        .arg("verify")
        .arg(unit)
        .env("MANPATH", man_dir)
        .env("SYSTEMD_LOG_COLOR", "0"))
}

#[test]
fn packaging_unit_passes_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    let man = dir.path().join("man");
    etcdsnap(&["man", "--dir", man.join("man1").to_str().unwrap()]);
    let unit = unit_copy(dir.path(), &etcdsnap_bin());
    let out = verify(&unit, &man);
    assert!(
        out.status.success() && out.stderr.is_empty() && out.stdout.is_empty(),
        "systemd-analyze verify {} ({}):\n{}{}",
        unit.display(),
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn packaging_verify_catches_a_broken_unit() {
    // Negative controls: the check above would pass on anything if verify never complained.
    let dir = tempfile::tempdir().unwrap();
    let man = dir.path().join("man");
    etcdsnap(&["man", "--dir", man.join("man1").to_str().unwrap()]);
    let missing = unit_copy(dir.path(), &dir.path().join("no-such-etcdsnap"));
    let out = verify(&missing, &man);
    assert!(!out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("no-such-etcdsnap"),
        "{}",
        text(&out.stderr)
    );

    let unit = unit_copy(dir.path(), &etcdsnap_bin());
    let good = std::fs::read_to_string(&unit).unwrap();
    std::fs::write(&unit, good.replace("KillMode=mixed", "KilMode=mixed")).unwrap();
    let out = verify(&unit, &man);
    assert!(
        text(&out.stderr).contains("KilMode"),
        "{}",
        text(&out.stderr)
    );

    // Documentation=man:etcdsnap-server(1) must name a page the binary writes.
    std::fs::write(&unit, good).unwrap();
    let out = verify(&unit, &dir.path().join("no-man-pages"));
    assert!(!out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("etcdsnap-server"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn packaging_unit_stops_the_server_gently_and_keeps_its_hardening() {
    let unit = std::fs::read_to_string(packaging("etcdsnap.service")).unwrap();
    let service = unit_section(&unit, "Service");
    let get = |k: &str| {
        service
            .get(k)
            .unwrap_or_else(|| panic!("no {k}= in [Service]"))
            .as_str()
    };
    assert_eq!(get("ExecStart"), "/usr/local/bin/etcdsnap server");
    // The server sends READY=1 once etcd answers (server::notify_systemd_when_ready).
    assert_eq!(get("Type"), "notify");
    assert_eq!(get("NotifyAccess"), "main");
    assert_eq!(get("Restart"), "always");
    // SIGTERM to the server alone: it finishes a save with its etcd still up, then stops etcd.
    assert_eq!(get("KillMode"), "mixed");
    // Two save graces (scheduled, then on-demand) and etcd's 15 s stop must fit.
    let grace = etcdsnap_core::server::datastore::SHUTDOWN_SAVE_GRACE.as_secs();
    let stop = get("TimeoutStopSec")
        .trim_end_matches('s')
        .parse::<u64>()
        .unwrap();
    assert!(stop > 2 * grace + 15, "TimeoutStopSec={stop}");
    assert!(get("LimitNOFILE").parse::<u64>().unwrap() >= 65536);
    // The data dir (StateDirectory=etcdsnap is /var/lib/etcdsnap) and the kubeconfig's dir
    // stay writable under ProtectSystem=strict.
    assert_eq!(get("ProtectSystem"), "strict");
    assert_eq!(get("StateDirectory"), "etcdsnap");
    assert!(get("ReadWritePaths").contains("/etc/etcdsnap"));
    for k in ["NoNewPrivileges", "PrivateTmp", "ProtectHome"] {
        assert_eq!(get(k), "yes", "{k}");
    }

    // systemd's own score of the sandbox (0 is locked down, 10 is none): the hardening above
    // must not quietly go away.
    let dir = tempfile::tempdir().unwrap();
    let copy = unit_copy(dir.path(), &etcdsnap_bin());
    let out = ok(Command::new(tool("systemd-analyze"))
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&copy)
        .env("SYSTEMD_LOG_COLOR", "0"));
    let score: f64 = out
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for etcdsnap.service: "))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{out}"));
    assert!(score <= 4.5, "exposure {score}:\n{out}");
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn install_sh(root: &Path, extra: &[&str]) -> Output {
    run(Command::new(tool("bash"))
        .arg(packaging("install.sh"))
        .arg("--binary")
        .arg(etcdsnap_bin())
        .arg("--destdir")
        .arg(root)
        .args(extra)
        .env_remove("DESTDIR"))
}

#[test]
fn packaging_install_sh_lays_out_a_temp_root_and_keeps_an_edited_config() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let out = install_sh(&root, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("not started"),
        "{}",
        text(&out.stderr)
    );

    let bin = root.join("usr/local/bin/etcdsnap");
    assert_eq!(
        std::fs::read(&bin).unwrap(),
        std::fs::read(etcdsnap_bin()).unwrap()
    );
    assert_eq!(mode(&bin), 0o755);
    let version = ok(Command::new(&bin).arg("--version"));
    assert!(version.starts_with("etcdsnap "), "{version}");

    let unit = root.join("etc/systemd/system/etcdsnap.service");
    assert_eq!(
        std::fs::read_to_string(&unit).unwrap(),
        std::fs::read_to_string(packaging("etcdsnap.service")).unwrap()
    );
    assert_eq!(mode(&unit), 0o644);

    let example = std::fs::read_to_string(packaging("config.yaml.example")).unwrap();
    let config = root.join("etc/etcdsnap/config.yaml");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), example);
    assert_eq!(mode(&config), 0o600);
    assert_eq!(mode(&root.join("etc/etcdsnap")), 0o700);
    assert_eq!(
        std::fs::read_to_string(root.join("usr/local/share/doc/etcdsnap/config.yaml.example"))
            .unwrap(),
        example
    );
    for f in [
        "usr/local/share/man/man1/etcdsnap.1",
        "usr/local/share/man/man1/etcdsnap-server.1",
        "usr/local/share/man/man1/etcdsnap-etcd-snapshot-save.1",
    ] {
        assert!(root.join(f).is_file(), "{f}");
    }
    let bash =
        std::fs::read_to_string(root.join("usr/local/share/bash-completion/completions/etcdsnap"))
            .unwrap();
    assert_eq!(bash, etcdsnap(&["completion", "bash"]));
    assert!(
        root.join("usr/local/share/zsh/site-functions/_etcdsnap")
            .is_file()
    );
    assert!(
        root.join("usr/local/share/fish/vendor_completions.d/etcdsnap.fish")
            .is_file()
    );

    // A second run (an upgrade) replaces the binary and the unit but keeps the operator's config.
    let edited = format!("{example}etcd-snapshot-retention: 9\n");
    std::fs::write(&config, &edited).unwrap();
    std::fs::write(&bin, b"old").unwrap();
    let out = install_sh(&root, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("kept"), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&config).unwrap(), edited);
    assert_eq!(
        std::fs::read(&bin).unwrap(),
        std::fs::read(etcdsnap_bin()).unwrap()
    );

    // --enable acts on the running system only: with a temp root it refuses and changes nothing.
    let other = dir.path().join("other");
    let out = install_sh(&other, &["--enable"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--destdir"),
        "{}",
        text(&out.stderr)
    );
    assert!(!other.join("usr").exists());

    // Another prefix moves the binary and ExecStart together.
    let usr = dir.path().join("usr-root");
    let out = install_sh(&usr, &["--prefix", "/usr"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(usr.join("usr/bin/etcdsnap").is_file());
    let unit = std::fs::read_to_string(usr.join("etc/systemd/system/etcdsnap.service")).unwrap();
    assert_eq!(
        unit_section(&unit, "Service")["ExecStart"],
        "/usr/bin/etcdsnap server"
    );
}

#[test]
fn packaging_install_sh_refuses_a_missing_binary() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(Command::new(tool("bash"))
        .arg(packaging("install.sh"))
        .args(["--binary", "/nonexistent/etcdsnap", "--destdir"])
        .arg(dir.path()));
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("cargo build --release"),
        "{}",
        text(&out.stderr)
    );
    assert!(!dir.path().join("usr").exists());
}

/// The `# key: value` lines of the config example, in order.
fn example_keys() -> Vec<(String, String)> {
    let example = std::fs::read_to_string(packaging("config.yaml.example")).unwrap();
    let mut out = Vec::new();
    for line in example.lines() {
        let Some(rest) = line.strip_prefix("# ") else {
            continue;
        };
        let Some((key, value)) = rest.split_once(':') else {
            continue;
        };
        if !key.is_empty()
            && key.starts_with(|c: char| c.is_ascii_lowercase())
            && key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            out.push((key.to_string(), value.to_string()));
        }
    }
    out
}

fn server_command() -> clap::Command {
    let mut cmd = etcdsnap::cli::command();
    cmd.build();
    cmd.find_subcommand("server").unwrap().clone()
}

#[test]
fn packaging_config_example_has_every_server_flag_with_its_default() {
    let keys = example_keys();
    let server = server_command();
    let flags: Vec<&clap::Arg> = server
        .get_arguments()
        .filter(|a| !a.is_hide_set())
        .filter(|a| !matches!(a.get_long(), None | Some("config" | "help" | "version")))
        .collect();
    let mut missing = Vec::new();
    for a in &flags {
        let long = a.get_long().unwrap();
        match keys.iter().find(|(k, _)| k == long) {
            None => missing.push(long.to_string()),
            Some((_, v)) => {
                if let Some(default) = a.get_default_values().first() {
                    assert_eq!(v, &default.to_string_lossy(), "default of {long}");
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "server flags missing from the example: {missing:?}"
    );
    let unknown: Vec<&String> = keys
        .iter()
        .map(|(k, _)| k)
        .filter(|k| !flags.iter().any(|a| a.get_long() == Some(k.as_str())))
        .collect();
    assert!(
        unknown.is_empty(),
        "keys that are no server flag: {unknown:?}"
    );
    let mut sorted: Vec<&String> = keys.iter().map(|(k, _)| k).collect();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), keys.len(), "a key appears twice");

    // Uncommented, the whole example is a config file the server accepts: every key known,
    // every value parses.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    let example = std::fs::read_to_string(packaging("config.yaml.example")).unwrap();
    let uncommented: String = example
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("# ")?;
            keys.iter()
                .any(|(k, _)| rest.starts_with(&format!("{k}:")))
                .then(|| format!("{rest}\n"))
        })
        .collect();
    std::fs::write(&file, &uncommented).unwrap();
    use etcdsnap::cli::config_file;
    let argv: Vec<OsString> = ["etcdsnap", "server", "-c", file.to_str().unwrap()]
        .map(OsString::from)
        .to_vec();
    let src = config_file::find_config(
        &argv,
        "ETCDSNAP_TEST_NO_SUCH_VAR",
        Path::new("/nonexistent"),
    );
    let loaded = config_file::load_config(&src).unwrap();
    assert_eq!(loaded.args.len(), keys.len(), "{uncommented}");
    let (argv, warnings) =
        config_file::expand_args(&etcdsnap::cli::command(), &["server"], argv, loaded.args);
    assert!(warnings.is_empty(), "{warnings:?}");
    if let Err(e) = etcdsnap::cli::command().try_get_matches_from(&argv) {
        panic!("{e}\n{argv:?}");
    }
}

/// Runs bash's completion for `line` (cursor at the end) the way readline would, through the
/// function the script registers for `etcdsnap`, and returns COMPREPLY.
fn bash_complete(script: &Path, line: &str) -> Vec<String> {
    let words: Vec<&str> = line.split(' ').collect();
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        r#"set -u
source '{script}'
fn=$(complete -p etcdsnap | sed -n 's/.*-F \([^ ]*\).*/\1/p')
[ -n "$fn" ] || {{ echo "no completion function registered for etcdsnap" >&2; exit 1; }}
COMP_WORDS=({words})
COMP_CWORD={cword}
COMP_LINE='{line}'
COMP_POINT=${{#COMP_LINE}}
COMP_TYPE=9
COMP_KEY=9
"$fn" etcdsnap '{cur}' '{prev}'
printf '%s\n' "${{COMPREPLY[@]}}""#,
        script = script.display(),
        words = quoted.join(" "),
        cword = words.len() - 1,
        cur = words[words.len() - 1],
        prev = words[words.len() - 2],
    );
    let out = ok(Command::new(tool("bash")).args(["--norc", "--noprofile", "-c", &program]));
    out.lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn packaging_bash_completion_completes_subcommands_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("etcdsnap.bash");
    std::fs::write(&script, etcdsnap(&["completion", "bash"])).unwrap();
    assert_eq!(
        bash_complete(&script, "etcdsnap etcd-snapshot sa"),
        ["save"]
    );
    assert_eq!(
        bash_complete(&script, "etcdsnap etcd-snapshot pr"),
        ["prune"]
    );
    assert_eq!(bash_complete(&script, "etcdsnap comp"), ["completion"]);
    // The server spells S3 flags --etcd-s3-*, the etcd-snapshot subcommands --s3-*.
    assert_eq!(
        bash_complete(&script, "etcdsnap server --etcd-s3-buck"),
        ["--etcd-s3-bucket", "--etcd-s3-bucket-lookup-type"]
    );
    assert!(bash_complete(&script, "etcdsnap server --s3-buck").is_empty());
    assert!(
        bash_complete(&script, "etcdsnap etcd-snapshot save --s3-buck")
            .contains(&"--s3-bucket".to_string())
    );
    assert_eq!(bash_complete(&script, "etcdsnap completion fi"), ["fish"]);
    // The hidden man page generator is not offered.
    assert!(bash_complete(&script, "etcdsnap ma").is_empty());
}

#[test]
fn packaging_fish_and_zsh_load_their_completion_scripts() {
    let dir = tempfile::tempdir().unwrap();
    let fish = dir.path().join("etcdsnap.fish");
    std::fs::write(&fish, etcdsnap(&["completion", "fish"])).unwrap();
    ok(Command::new(tool("fish")).arg("--no-execute").arg(&fish));
    // fish completes from the script it sourced, as at a prompt.
    let out = ok(Command::new(tool("fish"))
        .args(["--no-config", "-c"])
        .arg(format!(
            "source '{}'; complete -C 'etcdsnap etcd-snapshot sa'",
            fish.display()
        ))
        .env("HOME", dir.path()));
    let words: Vec<&str> = out.lines().map(|l| l.split('\t').next().unwrap()).collect();
    assert_eq!(words, ["save"], "{out}");

    let zsh = dir.path().join("_etcdsnap");
    let script = etcdsnap(&["completion", "zsh"]);
    assert!(script.starts_with("#compdef etcdsnap"), "{}", &script[..60]);
    std::fs::write(&zsh, &script).unwrap();
    ok(Command::new(tool("zsh")).arg("-n").arg(&zsh));
    // Loaded into a completion-enabled zsh, the function is defined and registered.
    let out = ok(Command::new(tool("zsh"))
        .args(["-f", "-c"])
        .arg(format!(
            "fpath=('{}' $fpath); autoload -Uz compinit; compinit -u -d '{}/zcompdump'; \
             autoload -Uz _etcdsnap; print -r -- ${{_comps[etcdsnap]}}",
            dir.path().display(),
            dir.path().display()
        ))
        .env("HOME", dir.path()));
    assert_eq!(out.trim(), "_etcdsnap");
}

/// Every visible command path, as man page names: `etcdsnap`, `etcdsnap-server`, ...
fn page_names(cmd: &clap::Command, prefix: &str, out: &mut Vec<String>) {
    out.push(format!("{prefix}.1"));
    for sub in cmd.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        page_names(sub, &format!("{prefix}-{}", sub.get_name()), out);
    }
}

#[test]
fn packaging_man_pages_cover_every_command_and_render() {
    let dir = tempfile::tempdir().unwrap();
    let printed = etcdsnap(&["man", "--dir", dir.path().to_str().unwrap()]);
    let mut cmd = etcdsnap::cli::command();
    cmd.build();
    let mut want = Vec::new();
    page_names(&cmd, "etcdsnap", &mut want);
    want.sort();
    let mut have: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    have.sort();
    assert_eq!(have, want);
    assert_eq!(printed.lines().count(), want.len(), "{printed}");
    assert!(want.contains(&"etcdsnap-etcd-snapshot-save.1".to_string()));

    for page in &want {
        let path = dir.path().join(page);
        let roff = std::fs::read_to_string(&path).unwrap();
        let title = page.trim_end_matches(".1");
        assert!(roff.contains(&format!(".TH {title} 1")), "{page}:\n{roff}");
        // man renders it, with groff's warnings on and none given.
        let out = run(Command::new(tool("man"))
            .args(["--warnings", "-E", "UTF-8", "-l"])
            .arg(&path)
            .env("MANPAGER", "cat")
            .env("PAGER", "cat")
            .env("MANWIDTH", "100"));
        assert!(out.status.success(), "{page}: {}", text(&out.stderr));
        assert!(out.stderr.is_empty(), "{page}: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains(title), "{page}");
    }
    let server = run(Command::new(tool("man"))
        .args(["-l", "-E", "UTF-8"])
        .arg(dir.path().join("etcdsnap-server.1"))
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "200"));
    let server = text(&server.stdout);
    for flag in [
        "--etcd-snapshot-schedule-cron",
        "--etcd-s3-bucket",
        "ETCDSNAP_DATA_DIR",
    ] {
        assert!(
            server.contains(flag),
            "{flag} not in etcdsnap-server(1):\n{server}"
        );
    }
}
