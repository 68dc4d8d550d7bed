//! Man pages and shell completions, generated from the command line itself (the clap
//! definition in [`crate::cli`]), so they cannot drift from what the binary accepts.
//! `interceptor man --out DIR` and `interceptor completions SHELL` write them; the Debian
//! package ships their output.

use std::{
    io,
    path::{Path, PathBuf},
};

use clap::CommandFactory as _;

use crate::cli::Cli;

/// Writes the completion script for `shell` to `out`.
pub fn completions(shell: clap_complete::Shell, out: &mut dyn io::Write) -> io::Result<()> {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "interceptor", out);
    out.flush()
}

/// Writes one man page per command and subcommand into `dir` (created if missing), named
/// as `man` looks them up (`interceptor-approvals-list.1`); returns their paths, sorted.
pub fn man_pages(dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(Cli::command(), dir)?;
    let mut pages: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                (n == "interceptor.1" || n.starts_with("interceptor-")) && n.ends_with(".1")
            })
        })
        .collect();
    pages.sort();
    Ok(pages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_visible_command_gets_a_man_page_with_its_options() {
        let dir = std::env::temp_dir().join(format!("interceptor-man-{}", std::process::id()));
        let pages = man_pages(&dir).unwrap();
        let names: Vec<String> = pages
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for want in [
            "interceptor.1",
            "interceptor-daemon.1",
            "interceptor-run.1",
            "interceptor-approvals-approve.1",
            "interceptor-policy-explain.1",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
        }
        let daemon = std::fs::read_to_string(dir.join("interceptor-daemon.1")).unwrap();
        assert!(daemon.starts_with(".ie"), "roff: {}", &daemon[..40]);
        assert!(daemon.contains("heartbeat\\-timeout\\-ms"), "{daemon}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn completions_name_the_subcommands_and_flags() {
        let mut bash = Vec::new();
        completions(clap_complete::Shell::Bash, &mut bash).unwrap();
        let bash = String::from_utf8(bash).unwrap();
        assert!(bash.contains("complete -F _interceptor"), "{bash}");
        for word in ["approvals", "--allow-unprotected", "--heartbeat-timeout-ms"] {
            assert!(bash.contains(word), "{word} not completed");
        }
        let mut zsh = Vec::new();
        completions(clap_complete::Shell::Zsh, &mut zsh).unwrap();
        assert!(
            String::from_utf8(zsh)
                .unwrap()
                .starts_with("#compdef interceptor")
        );
    }
}
