//! Config keys turned into flags inserted after the command words, checked against what the
//! (sub)command knows (see the rules in the parent module).

use std::ffi::{OsStr, OsString};

use clap::{Arg, ArgAction, Command};

/// Inserts the config flags into `argv` right after the command words `subcommand_path` (e.g.
/// `["etcd-snapshot", "save"]` or `["server"]`), and returns the new argv with the warnings for
/// keys that command does not know.
///
/// `cmd` is the top-level command; the flags are checked against the (sub)command at
/// `subcommand_path`, including global arguments. When argv does not contain those command
/// words, argv comes back unchanged. For later flags to win, the commands must use
/// `args_override_self(true)`; `Append` arguments collect config and command-line values alike.
pub fn expand_args(
    cmd: &Command,
    subcommand_path: &[&str],
    argv: Vec<OsString>,
    config: Vec<(String, String)>,
) -> (Vec<OsString>, Vec<String>) {
    expand_args_with_env(cmd, subcommand_path, argv, config, |name| {
        std::env::var_os(name)
    })
}

pub(super) fn expand_args_with_env(
    cmd: &Command,
    subcommand_path: &[&str],
    argv: Vec<OsString>,
    config: Vec<(String, String)>,
    env: impl Fn(&OsStr) -> Option<OsString>,
) -> (Vec<OsString>, Vec<String>) {
    let mut root = cmd.clone();
    // Building propagates global arguments into subcommands and settles every action.
    root.build();
    let Some((target, insert_at)) = locate(&root, subcommand_path, &argv) else {
        return (argv, Vec::new());
    };

    let mut flags: Vec<OsString> = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    let mut warn = |warning: String| {
        if !warnings.contains(&warning) {
            warnings.push(warning);
        }
    };
    for (key, value) in config {
        if key == "config" {
            continue;
        }
        let shown = if key.chars().count() == 1 {
            format!("-{key}")
        } else {
            format!("--{key}")
        };
        let Some(arg) = find_arg(target, &key) else {
            warn(format!(
                "Unknown flag {shown} found in config.yaml, skipping"
            ));
            continue;
        };
        if arg.get_long() == Some("config") {
            continue;
        }
        if arg
            .get_env()
            .and_then(&env)
            .is_some_and(|value| !value.is_empty())
        {
            continue;
        }
        // Name the flag by its long form when it has one: `--long=value` also carries values
        // that start with `-` or are empty.
        let long = if key.chars().count() == 1 {
            arg.get_long()
        } else {
            Some(key.as_str())
        };
        if arg.get_action().takes_values() {
            match long {
                Some(long) => flags.push(format!("--{long}={value}").into()),
                None => {
                    flags.push(shown.into());
                    flags.push(value.into());
                }
            }
            continue;
        }
        let name: OsString = match long {
            Some(long) => format!("--{long}").into(),
            None => shown.clone().into(),
        };
        let times = match (arg.get_action(), parse_bool(&value)) {
            (ArgAction::SetTrue, Some(on)) | (ArgAction::Count, Some(on)) => usize::from(on),
            (ArgAction::SetFalse, Some(on)) => usize::from(!on),
            (ArgAction::Count, None) if value.parse::<u8>().is_ok() => {
                usize::from(value.parse::<u8>().unwrap_or(0))
            }
            _ => {
                warn(format!(
                    "Invalid value {value:?} for flag {shown} found in config.yaml (expected true or false), skipping"
                ));
                0
            }
        };
        flags.extend(std::iter::repeat_n(name, times));
    }

    let mut out = argv;
    out.splice(insert_at..insert_at, flags);
    (out, warnings)
}

/// The (sub)command at `path` of a built command.
pub(super) fn command_at<'a>(root: &'a Command, path: &[&str]) -> Option<&'a Command> {
    let mut cmd = root;
    for word in path {
        cmd = cmd.find_subcommand(word)?;
    }
    Some(cmd)
}

/// The command words at the start of `argv` (after the program name and any flags before
/// them), e.g. `["etcd-snapshot", "save"]` for `etcdsnap --debug etcd-snapshot save --s3`.
///
/// Words are returned by their canonical names even when argv uses an alias. Use it to decide
/// which subcommand the config file applies to and to pass that path to [`expand_args`].
pub fn find_subcommand_path(cmd: &Command, argv: &[OsString]) -> Vec<String> {
    let mut root = cmd.clone();
    root.build();
    let mut path = Vec::new();
    let mut current = &root;
    let mut i = 1;
    while let Some(word) = next_word(current, argv, &mut i) {
        let Some(sub) = current.find_subcommand(word) else {
            break;
        };
        path.push(sub.get_name().to_string());
        current = sub;
    }
    path
}

/// Finds the subcommand at `path` and the argv index right after its last command word.
fn locate<'a>(root: &'a Command, path: &[&str], argv: &[OsString]) -> Option<(&'a Command, usize)> {
    let mut current = root;
    let mut i = 1;
    for want in path {
        let word = next_word(current, argv, &mut i)?;
        let sub = current.find_subcommand(word)?;
        if current.find_subcommand(want)?.get_name() != sub.get_name() {
            return None;
        }
        current = sub;
    }
    Some((current, i.min(argv.len())))
}

/// Skips flags of `cmd` (and their separate values) from `argv[*i]` on and returns the next word,
/// leaving `*i` just past it; `None` at `--` or the end.
fn next_word<'a>(cmd: &Command, argv: &'a [OsString], i: &mut usize) -> Option<&'a OsStr> {
    while let Some(arg) = argv.get(*i) {
        *i += 1;
        if arg == "--" {
            return None;
        }
        let Some(text) = arg.to_str() else {
            return Some(arg);
        };
        if let Some(long) = text.strip_prefix("--") {
            if !long.contains('=') && find_long(cmd, long).is_some_and(takes_separate_value) {
                *i += 1;
            }
        } else if let Some(shorts) = text.strip_prefix('-').filter(|s| !s.is_empty()) {
            // `-abc`: flags a, b, c; the first that takes a value takes the rest, or the next arg.
            for (at, c) in shorts.char_indices() {
                let Some(arg) = find_short(cmd, c) else { break };
                if takes_separate_value(arg) {
                    if at + c.len_utf8() == shorts.len() {
                        *i += 1;
                    }
                    break;
                }
            }
        } else {
            return Some(arg);
        }
    }
    None
}

fn takes_separate_value(arg: &Arg) -> bool {
    arg.get_action().takes_values() && arg.get_num_args().is_none_or(|n| n.min_values() > 0)
}

/// The flag argument of `cmd` that `key` names: its long name, a long alias, or for a one-letter
/// key its short name or a short alias. Positionals and help/version flags do not count.
pub(super) fn find_arg<'a>(cmd: &'a Command, key: &str) -> Option<&'a Arg> {
    let mut chars = key.chars();
    if let (Some(c), None) = (chars.next(), chars.next())
        && let Some(arg) = find_short(cmd, c)
    {
        return Some(arg);
    }
    find_long(cmd, key)
}

fn find_long<'a>(cmd: &'a Command, name: &str) -> Option<&'a Arg> {
    cmd.get_arguments().filter(|a| is_flag(a)).find(|a| {
        a.get_long() == Some(name)
            || a.get_all_aliases()
                .is_some_and(|aliases| aliases.contains(&name))
    })
}

fn find_short(cmd: &Command, c: char) -> Option<&Arg> {
    cmd.get_arguments().filter(|a| is_flag(a)).find(|a| {
        a.get_short() == Some(c)
            || a.get_all_short_aliases()
                .is_some_and(|aliases| aliases.contains(&c))
    })
}

fn is_flag(arg: &Arg) -> bool {
    !arg.is_positional()
        && !matches!(
            arg.get_action(),
            ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
        )
}

/// clap's spellings of a boolean (`BoolishValueParser`).
fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "t" | "yes" | "y" | "on" | "1" => Some(true),
        "false" | "f" | "no" | "n" | "off" | "0" => Some(false),
        _ => None,
    }
}
