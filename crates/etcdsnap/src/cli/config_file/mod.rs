//! Config-file layering, K3s style: YAML keys become command-line flags placed right after the
//! command words, so flags typed on the command line (which come later) win.
//!
//! Rules:
//! * the file is the value of `-c`/`--config` in argv, else `$ETCDSNAP_CONFIG_FILE`, else
//!   `/etc/etcdsnap/config.yaml`; a missing default file is fine, a missing chosen file is not;
//! * drop-ins `<file>.d/*.yaml` and `*.yml` (any case) follow the main file, sorted by name;
//! * top-level keys only; a later file replaces a key, a key ending in `+` appends to it; values
//!   are strings, numbers and booleans, or lists of those (one flag per item); a null value is an
//!   empty string; nested mappings are errors; only `true`/`false` (any case) are booleans, so
//!   `yes`, `no`, `on`, `off` stay text (boolean flags still accept them through clap);
//! * keys keep the order in which they first appear; `key: v` becomes `--key=v`, and a one-letter
//!   key becomes its argument's long flag (or `-k v` when it has none);
//! * a key the (sub)command does not know is skipped with K3s's warning
//!   `Unknown flag --<key> found in config.yaml, skipping`; the `config` key is skipped silently;
//! * a key whose argument has an environment variable that is set and not empty is skipped, so the
//!   order is flags > environment > config file > defaults.
//!
//! Unlike K3s, a `-c` flag beats `$ETCDSNAP_CONFIG_FILE` (K3s checks the variable first), and the
//! last `-c` wins, as it does for clap.

//!
//! Files: this one finds and loads the files, [`yaml`] reads one file into keys and values, and
//! [`expand`] turns keys into flags for a (sub)command.

mod expand;
mod yaml;

use std::collections::HashMap;
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

pub use expand::{expand_args, find_subcommand_path};
use yaml::{Flat, read_file};

/// Where the config file comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSource {
    /// The main config file; drop-ins live in `<path>.d/`.
    pub path: PathBuf,
    /// Chosen by `-c`/`--config` or the environment variable (then it must exist), rather than
    /// the default path.
    pub explicit: bool,
}

/// Finds the config file: `-c X`, `-cX`, `-c=X`, `--config X` or `--config=X` in `args` (the last
/// one wins, as in clap), else the non-empty environment variable `env_var`, else `default_path`.
///
/// `args` is the whole argv, program name first; scanning stops at `--`.
pub fn find_config(args: &[OsString], env_var: &str, default_path: &Path) -> ConfigSource {
    find_config_in(args, std::env::var_os(env_var), default_path)
}

fn find_config_in(
    args: &[OsString],
    env_value: Option<OsString>,
    default_path: &Path,
) -> ConfigSource {
    let mut found: Option<OsString> = None;
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        if arg == "--" {
            break;
        }
        if arg == "-c" || arg == "--config" {
            if let Some(value) = rest.next() {
                found = Some(value.clone());
            }
            continue;
        }
        let Some(text) = arg.to_str() else { continue };
        if let Some(value) = text.strip_prefix("--config=") {
            found = Some(value.into());
        } else if let Some(value) = text.strip_prefix("-c") {
            found = Some(value.strip_prefix('=').unwrap_or(value).into());
        }
    }
    match found.or(env_value.filter(|v| !v.is_empty())) {
        Some(path) => ConfigSource {
            path: path.into(),
            explicit: true,
        },
        None => ConfigSource {
            path: default_path.to_path_buf(),
            explicit: false,
        },
    }
}

/// Reads the main config file and its drop-ins and merges them into `(key, value)` pairs, one
/// per flag to pass, in first-appearance order of the keys (see the module docs for the rules).
#[cfg(test)]
pub fn load_config_args(src: &ConfigSource) -> anyhow::Result<Vec<(String, String)>> {
    Ok(load_config(src)?.args)
}

/// The config files' keys as flag arguments, and which file gave each key its value.
#[derive(Debug, Default)]
pub struct Loaded {
    pub args: Vec<(String, String)>,
    /// The file that set (or last appended to) each key.
    pub origin: HashMap<String, PathBuf>,
    /// Keys given as `key+:` somewhere.
    pub appended: std::collections::HashSet<String>,
    /// What was accepted but is likely a mistake (a key given twice in one file).
    pub warnings: Vec<String>,
}

impl Loaded {
    /// A message about `key`'s value, naming the file and the key.
    pub fn blame(&self, key: &str, problem: &str) -> Option<String> {
        self.origin
            .get(key)
            .map(|f| format!("config file {}, key {key}: {problem}", f.display()))
    }
}

impl Loaded {
    /// The config key that set flag `--long` of the (sub)command at `path`, if any (keys may
    /// be aliases, such as `etcd-snapshot-retention` for `--snapshot-retention`).
    pub fn key_for_flag(&self, cmd: &clap::Command, path: &[&str], long: &str) -> Option<String> {
        let mut root = cmd.clone();
        root.build();
        let target = expand::command_at(&root, path)?;
        self.origin
            .keys()
            .find(|k| expand::find_arg(target, k).and_then(|a| a.get_long()) == Some(long))
            .cloned()
    }
}

/// Loads the config files (rules in the module docs), keeping where each key came from.
pub fn load_config(src: &ConfigSource) -> anyhow::Result<Loaded> {
    let mut files = Vec::new();
    match std::fs::metadata(&src.path) {
        Ok(_) => files.push(src.path.clone()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if src.explicit {
                bail!(
                    "config file {} does not exist; create it or point -c/--config (or ETCDSNAP_CONFIG_FILE) at an existing file",
                    src.path.display()
                );
            }
        }
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot read config file {}", src.path.display()));
        }
    }
    files.extend(drop_in_files(&src.path)?);

    let mut order: Vec<String> = Vec::new();
    let mut values: HashMap<String, Flat> = HashMap::new();
    let mut origin: HashMap<String, PathBuf> = HashMap::new();
    let mut appended = std::collections::HashSet::new();
    let mut warnings = Vec::new();
    for file in &files {
        let mut seen = std::collections::HashSet::new();
        for (key, value) in read_file(file)? {
            let (key, append) = match key.strip_suffix('+') {
                Some(key) => (key.to_string(), true),
                None => (key, false),
            };
            if append {
                appended.insert(key.clone());
            } else if !seen.insert(key.clone()) {
                // K3s's YAML reader lets the later one win; so do we, but say so.
                warnings.push(format!(
                    "config file {}: key {key} is given twice; the later value wins (remove one, or write {key}+: to append)",
                    file.display()
                ));
            }
            origin.insert(key.clone(), file.clone());
            match values.get_mut(&key) {
                Some(old) if append => {
                    let mut items = std::mem::replace(old, Flat::Null).into_items();
                    items.extend(value.into_items());
                    *old = Flat::List(items);
                }
                Some(old) => *old = value,
                None => {
                    order.push(key.clone());
                    values.insert(key, value);
                }
            }
        }
    }

    let mut out = Vec::new();
    for key in order {
        match values.remove(&key) {
            Some(Flat::Null) => out.push((key, String::new())),
            Some(Flat::One(value)) => out.push((key, value)),
            Some(Flat::List(items)) => {
                out.extend(items.into_iter().map(|item| (key.clone(), item)))
            }
            None => {}
        }
    }
    Ok(Loaded {
        args: out,
        origin,
        appended,
        warnings,
    })
}

/// Refuses a key that holds a list (or was appended to) when its flag takes one value: clap
/// would silently keep the last item.
pub fn check_single_values(
    cmd: &clap::Command,
    subcommand_path: &[&str],
    loaded: &Loaded,
) -> anyhow::Result<()> {
    let mut root = cmd.clone();
    root.build();
    let Some(target) = expand::command_at(&root, subcommand_path) else {
        return Ok(());
    };
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for (k, _) in &loaded.args {
        *counts.entry(k.as_str()).or_default() += 1;
    }
    for (key, n) in counts {
        let single = expand::find_arg(target, key)
            .filter(|arg| matches!(arg.get_action(), clap::ArgAction::Set));
        let Some(arg) = single else { continue };
        let long = arg.get_long().unwrap_or(key);
        if n > 1 {
            let msg = format!(
                "a list of {n} values is given, but --{long} takes one value; give a single value",
            );
            bail!("{}", loaded.blame(key, &msg).unwrap_or(msg));
        }
        if loaded.appended.contains(key) {
            let msg = format!(
                "{key}+: appends to a list, but --{long} takes one value; write {key}: instead",
            );
            bail!("{}", loaded.blame(key, &msg).unwrap_or(msg));
        }
    }
    Ok(())
}

/// `<path>.d/*.yaml|*.yml`, sorted by file name; none when the directory does not exist.
fn drop_in_files(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut dir = path.as_os_str().to_owned();
    dir.push(".d");
    let dir = PathBuf::from(dir);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(e).with_context(|| {
                format!("cannot read config drop-in directory {}", dir.display())
            });
        }
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry
            .with_context(|| format!("cannot read config drop-in directory {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().to_ascii_lowercase();
        if !(name.ends_with(".yaml") || name.ends_with(".yml")) {
            continue;
        }
        // Follows symlinks, so a link to a file counts and a link to a directory does not.
        if std::fs::metadata(entry.path()).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        files.push(entry.path());
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

#[cfg(test)]
mod tests;
