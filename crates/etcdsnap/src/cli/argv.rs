//! K3s's command line accepts long flags with one dash as well as two (`-name X`, as its own
//! integration tests write them); clap does not. [`single_dash_long_flags`] rewrites `-name`
//! to `--name` when `name` is a long flag (or alias) of the command being parsed, and leaves
//! everything else alone: short flags (`-d`, `-t`, `-o`, `-c`, `-s`), clustered or attached
//! values (`-dDIR`), and whatever follows `--`.

use std::ffi::OsString;

use clap::Command;

/// The argv with every single-dash long flag given two dashes.
pub fn single_dash_long_flags(cmd: &Command, argv: Vec<OsString>) -> Vec<OsString> {
    let mut root = cmd.clone();
    root.build();
    let mut current = &root;
    let mut out = Vec::with_capacity(argv.len());
    let mut rest = false;
    for (i, arg) in argv.into_iter().enumerate() {
        let Some(text) = arg.to_str().filter(|_| i > 0 && !rest) else {
            out.push(arg);
            continue;
        };
        if text == "--" {
            rest = true;
            out.push(arg);
            continue;
        }
        if !text.starts_with('-') {
            if let Some(sub) = current.find_subcommand(text) {
                current = sub;
            }
            out.push(arg);
            continue;
        }
        let body = &text[1..];
        let name = body.split('=').next().unwrap_or("");
        let is_long = !body.starts_with('-')
            && name.chars().count() > 1
            && current.get_arguments().any(|a| {
                a.get_long() == Some(name)
                    || a.get_all_aliases().is_some_and(|al| al.contains(&name))
            });
        if is_long {
            out.push(format!("-{text}").into());
        } else {
            out.push(arg);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Vec<String> {
        single_dash_long_flags(
            &crate::cli::command(),
            args.iter().map(OsString::from).collect(),
        )
        .into_iter()
        .map(|a| a.into_string().unwrap())
        .collect()
    }

    #[test]
    fn long_flags_with_one_dash_become_two() {
        assert_eq!(
            run(&[
                "etcdsnap",
                "etcd-snapshot",
                "save",
                "-name",
                "X",
                "-s3",
                "-s3-bucket=b"
            ]),
            [
                "etcdsnap",
                "etcd-snapshot",
                "save",
                "--name",
                "X",
                "--s3",
                "--s3-bucket=b"
            ]
        );
        assert_eq!(
            run(&[
                "etcdsnap",
                "etcd-snapshot",
                "ls",
                "-o",
                "json",
                "-d",
                "/x",
                "-etcd-s3"
            ]),
            [
                "etcdsnap",
                "etcd-snapshot",
                "ls",
                "-o",
                "json",
                "-d",
                "/x",
                "--etcd-s3"
            ]
        );
        assert_eq!(
            run(&[
                "etcdsnap",
                "server",
                "-data-dir",
                "/d",
                "-t",
                "tok",
                "-etcd-snapshot-retention=3"
            ]),
            [
                "etcdsnap",
                "server",
                "--data-dir",
                "/d",
                "-t",
                "tok",
                "--etcd-snapshot-retention=3"
            ]
        );
        // Not long flags of the command: left for clap to judge.
        assert_eq!(
            run(&[
                "etcdsnap",
                "etcd-snapshot",
                "save",
                "-dDIR",
                "-nope",
                "--",
                "-name"
            ]),
            [
                "etcdsnap",
                "etcd-snapshot",
                "save",
                "-dDIR",
                "-nope",
                "--",
                "-name"
            ]
        );
        // The server spells S3 flags with etcd-: `-s3-bucket` is not one of its flags.
        assert_eq!(
            run(&["etcdsnap", "server", "-s3-bucket=b"])[2],
            "-s3-bucket=b"
        );
    }
}
