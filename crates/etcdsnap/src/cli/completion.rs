//! `etcdsnap completion SHELL`: the shell's completion script, generated from the same command
//! definition that parses the command line ([`super::command`]), so a flag can never be
//! completed that the parser refuses, nor the other way round. Hidden subcommands and flags
//! (`man`, test-only and accepted-but-unused flags) are left out.

use std::io::Write;

use anyhow::{Context, Result};
use clap_complete::Shell;

/// Writes the completion script for `shell` to `out`.
pub fn write(shell: Shell, out: &mut dyn Write) -> Result<()> {
    let mut full = super::command();
    full.build();
    let mut cmd = visible(&full);
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "etcdsnap", &mut buf);
    out.write_all(&buf)
        .and_then(|()| out.flush())
        .context("writing the completion script")
}

/// `cmd` (built) without its hidden subcommands and arguments: clap_complete's generators offer
/// hidden ones too, and clap cannot remove a subcommand or an argument, so the tree is copied.
fn visible(cmd: &clap::Command) -> clap::Command {
    let mut out = clap::Command::new(cmd.get_name().to_owned())
        // The built command already holds its generated help and version flags and help
        // subcommand; they are copied like the others.
        .disable_help_flag(true)
        .disable_version_flag(true)
        .disable_help_subcommand(true)
        .visible_aliases(cmd.get_visible_aliases().map(str::to_owned))
        .args(cmd.get_arguments().filter(|a| !a.is_hide_set()).cloned())
        .subcommands(
            cmd.get_subcommands()
                .filter(|s| !s.is_hide_set())
                .map(visible),
        );
    if let Some(about) = cmd.get_about() {
        out = out.about(about.clone());
    }
    if let Some(version) = cmd.get_version() {
        out = out.version(version.to_owned());
    }
    out
}

/// Prints the completion script for `shell` on standard output.
pub fn run(shell: Shell) -> Result<()> {
    write(shell, &mut std::io::stdout().lock())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(shell: Shell) -> String {
        let mut out = Vec::new();
        write(shell, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn scripts_know_the_subcommands_and_the_server_spelling_of_s3_flags() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let s = script(shell);
            for word in ["etcd-snapshot", "save", "prune", "member", "etcd-s3-bucket"] {
                assert!(s.contains(word), "{shell}: no {word}");
            }
        }
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let s = script(shell);
            // Neither the hidden man page generator nor hidden flags are offered.
            assert!(!s.contains("man pages"), "{shell}");
            assert!(!s.contains("learner-promotion"), "{shell}");
            // Visible aliases are.
            assert!(s.contains("list"), "{shell}");
        }
    }
}
