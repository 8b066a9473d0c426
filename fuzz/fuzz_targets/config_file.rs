//! Config files: the input, split on NUL bytes, is a main `config.yaml` and its drop-ins in
//! `config.yaml.d/`. Whatever `load_config` makes of them (errors are fine), each key's values
//! stay together and are blamed on a file that was written; expanding them into the argv of
//! `server` and `etcd-snapshot save` keeps the program name, the command words and the rest of
//! argv, inserts only flags the command knows, and clap then parses the result without a panic.

#![no_main]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use etcdsnap::cli::command;
use etcdsnap::cli::config_file::{
    ConfigSource, Loaded, check_single_values, expand_args, find_subcommand_path, load_config,
};
use libfuzzer_sys::fuzz_target;

/// Separates the files in the input; YAML text cannot contain it.
const SEPARATOR: u8 = 0;
/// Drop-ins beyond this many add nothing new.
const MAX_DROP_INS: usize = 8;
const PROGRAM: &str = "etcdsnap";
/// What follows the command words in argv; the config flags go before it.
const TAIL: [&str; 2] = ["--", "tail"];

fn scratch() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| etcdsnap_fuzz::scratch_dir("config"))
        .path()
}

/// Writes the files and returns the main file and all files written.
fn write_files(data: &[u8]) -> (PathBuf, Vec<PathBuf>) {
    let root = scratch().join("c");
    let _ = std::fs::remove_dir_all(&root);
    let drop_ins = root.join("config.yaml.d");
    std::fs::create_dir_all(&drop_ins).unwrap();
    let main = root.join("config.yaml");
    let mut pieces = data.split(|b| *b == SEPARATOR);
    std::fs::write(&main, pieces.next().unwrap_or_default()).unwrap();
    let mut written = vec![main.clone()];
    for (i, piece) in pieces.take(MAX_DROP_INS).enumerate() {
        // Both spellings the drop-in rule accepts, and one file it must skip.
        let name = match i % 3 {
            0 => format!("{i:02}-a.yaml"),
            1 => format!("{i:02}-b.YML"),
            _ => format!("{i:02}-c.yaml.txt"),
        };
        let path = drop_ins.join(name);
        std::fs::write(&path, piece).unwrap();
        if i % 3 != 2 {
            written.push(path);
        }
    }
    (main, written)
}

fn check_loaded(loaded: &Loaded, files: &[PathBuf]) {
    // One run of values per key: a key and its appended items are never split up.
    let mut seen: Vec<&str> = Vec::new();
    for (key, _) in &loaded.args {
        if seen.last() != Some(&key.as_str()) {
            assert!(
                !seen.contains(&key.as_str()),
                "key {key:?} comes back in two places: {:?}",
                loaded.args
            );
            seen.push(key);
        }
        let file = loaded
            .origin
            .get(key)
            .unwrap_or_else(|| panic!("key {key:?} has no file"));
        assert!(files.contains(file), "key {key:?} blamed on {file:?}");
        assert!(loaded.blame(key, "x").is_some());
    }
}

/// The flags `path` of the built command knows: each long name and long alias, with the long
/// name of its argument.
fn known_longs(cmd: &clap::Command, path: &[&str]) -> Vec<(String, String)> {
    let mut cur = cmd;
    for word in path {
        cur = cur.find_subcommand(word).expect("the subcommand exists");
    }
    let mut longs = Vec::new();
    for arg in cur.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        longs.push((long.to_string(), long.to_string()));
        if let Some(aliases) = arg.get_all_aliases() {
            longs.extend(
                aliases
                    .into_iter()
                    .map(|a| (a.to_string(), long.to_string())),
            );
        }
    }
    longs
}

/// The command, made once: building it is the slow part of a run.
fn cmd() -> &'static clap::Command {
    static CMD: OnceLock<clap::Command> = OnceLock::new();
    CMD.get_or_init(command)
}

/// Flags whose config key is looked up per run (each lookup builds the command again).
const MAX_BLAME_LOOKUPS: usize = 2;

fn check_expansion(loaded: &Loaded, path: &[&str]) {
    static BUILT: OnceLock<clap::Command> = OnceLock::new();
    let cmd = cmd();
    let built = BUILT.get_or_init(|| {
        let mut c = cmd.clone();
        c.build();
        c
    });
    let argv: Vec<OsString> = std::iter::once(PROGRAM)
        .chain(path.iter().copied())
        .chain(TAIL)
        .map(OsString::from)
        .collect();
    let head = 1 + path.len();
    let _ = check_single_values(cmd, path, loaded);
    let (out, warnings) = expand_args(cmd, path, argv.clone(), loaded.args.clone());
    assert!(out.len() >= argv.len(), "{out:?}");
    assert_eq!(
        out[..head],
        argv[..head],
        "program and command words: {out:?}"
    );
    assert_eq!(
        out[out.len() - TAIL.len()..],
        argv[head..],
        "the rest of argv: {out:?}"
    );
    let inserted = &out[head..out.len() - TAIL.len()];
    if let Some(first) = inserted.first() {
        assert!(
            first.to_str().is_some_and(|f| f.starts_with('-')),
            "{out:?}"
        );
    }
    let longs = known_longs(built, path);
    let mut blamed: Vec<&str> = Vec::new();
    for flag in inserted {
        let Some(long) = flag.to_str().and_then(|f| f.strip_prefix("--")) else {
            continue;
        };
        let name = long.split('=').next().unwrap_or(long);
        let Some((_, canonical)) = longs.iter().find(|(l, _)| l == name) else {
            panic!("--{name} is not a flag of {path:?}: {out:?}");
        };
        // What a bad value's message blames: clap names the flag by its long name.
        if blamed.len() < MAX_BLAME_LOOKUPS && !blamed.contains(&canonical.as_str()) {
            assert!(
                loaded.key_for_flag(cmd, path, canonical).is_some(),
                "no config key for --{canonical}"
            );
            blamed.push(canonical);
        }
    }
    let unknown = loaded
        .args
        .iter()
        .filter(|(k, _)| {
            k != "config" && k.chars().count() > 1 && !longs.iter().any(|(l, _)| l == k)
        })
        .count();
    if unknown > 0 {
        assert!(!warnings.is_empty(), "{unknown} unknown keys, no warning");
    }
    let found = find_subcommand_path(cmd, &out);
    assert_eq!(found, path, "{out:?}");
    // Errors are fine (help and usage errors included); panics are not.
    let _ = cmd.clone().try_get_matches_from(out);
}

fuzz_target!(|data: &[u8]| {
    let (main, files) = write_files(data);
    let src = ConfigSource {
        path: main,
        explicit: true,
    };
    let Ok(loaded) = load_config(&src) else {
        return;
    };
    check_loaded(&loaded, &files);
    let again = load_config(&src).expect("the same files load again");
    assert_eq!(again.args, loaded.args);
    check_expansion(&loaded, &["server"]);
    check_expansion(&loaded, &["etcd-snapshot", "save"]);
});
