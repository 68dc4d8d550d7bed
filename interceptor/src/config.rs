//! The daemon's configuration file, `/etc/interceptor/interceptor.toml`.
//!
//! Every key is an `interceptor daemon` flag without its leading dashes (`listen`,
//! `heartbeat-timeout-ms`, `deny-exec = [...]`), so the file, `--help`, the man page and the
//! commented defaults (`interceptor config defaults`, shipped as the package's config file)
//! are one definition and cannot drift. Precedence: command line, then the flag's
//! environment variable, then the file, then the built-in default.
//!
//! The file is spliced into the command line before clap parses it, so every value goes
//! through the same parser as the flag; a bad one is reported with the file, line and column
//! of the key, and the daemon does not start.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
};

use clap::{ArgAction, CommandFactory as _, FromArgMatches as _, parser::ValueSource};

use crate::cli::Cli;

/// Where the daemon looks for its configuration unless `--config` says otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/interceptor/interceptor.toml";

/// Flags that make no sense in the file. The socket is left out because the commands that
/// talk to the daemon never read this file: both sides take `--socket` or
/// `$INTERCEPTOR_SOCKET`.
const NOT_IN_FILE: [&str; 4] = ["config", "help", "version", "socket"];

/// What is wrong with a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: {message}", path.display())]
    At {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
}

/// One `key = value` of the file, turned into command-line words.
#[derive(Debug)]
pub struct Setting {
    pub key: String,
    /// The clap id of the flag, to ask where its value came from.
    id: String,
    pub words: Vec<OsString>,
}

/// Parses the command line, with the daemon's configuration file merged in for
/// `interceptor daemon`. Clap errors (and `--help`) exit as clap does.
pub fn parse_cli() -> Result<Cli, ConfigError> {
    parse_cli_from(std::env::args_os().collect())
}

/// [`parse_cli`] for a given argv (argv\[0\] included).
pub fn parse_cli_from(argv: Vec<OsString>) -> Result<Cli, ConfigError> {
    let matches = Cli::command().get_matches_from(&argv);
    let Some(("daemon", sub)) = matches.subcommand() else {
        return Ok(finish(&matches));
    };
    let path = sub
        .get_one::<PathBuf>("config")
        .expect("--config has a default")
        .clone();
    let explicit = sub.value_source("config") != Some(ValueSource::DefaultValue);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            return Ok(finish(&matches));
        }
        Err(source) => return Err(ConfigError::Read { path, source }),
    };
    let settings = settings(&text, &path)?;
    let mut words = Vec::new();
    for s in settings {
        // The command line and the environment win over the file.
        let set_elsewhere = matches!(
            sub.value_source(&s.id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        );
        if !set_elsewhere {
            words.extend(s.words);
        }
    }
    let at = subcommand_index(&argv).expect("clap found the daemon subcommand");
    let mut merged = argv;
    merged.splice(at + 1..at + 1, words);
    Ok(finish(&Cli::command().get_matches_from(merged)))
}

/// The typed command line of parsed matches (exits as clap does if they do not fit).
fn finish(matches: &clap::ArgMatches) -> Cli {
    Cli::from_arg_matches(matches).unwrap_or_else(|e| e.exit())
}

fn daemon_command() -> clap::Command {
    let mut cmd = Cli::command();
    cmd.build();
    cmd.find_subcommand("daemon")
        .expect("the daemon subcommand")
        .clone()
}

/// Where `daemon` is in argv: the first word that is neither an option nor the value of
/// one of the two global options that take one.
fn subcommand_index(argv: &[OsString]) -> Option<usize> {
    let mut i = 1;
    while i < argv.len() {
        let word = argv[i].to_str()?;
        if word == "--socket" || word == "--log-format" {
            i += 2;
        } else if word.starts_with('-') {
            i += 1;
        } else {
            return (word == "daemon").then_some(i);
        }
    }
    None
}

/// The file's settings as command-line words, each checked by the flag's own parser.
pub fn settings(text: &str, path: &Path) -> Result<Vec<Setting>, ConfigError> {
    use toml::Spanned;
    let at = |offset: usize, message: String| {
        let (line, column) = crate::policy::line_col(text, offset);
        ConfigError::At {
            path: path.to_path_buf(),
            line,
            column,
            message,
        }
    };
    let table: std::collections::BTreeMap<Spanned<String>, Spanned<toml::Value>> =
        toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            at(offset, e.message().to_string())
        })?;
    let daemon = daemon_command();
    let mut out: Vec<Setting> = Vec::new();
    for (key, value) in table {
        let start = key.span().start;
        let key = key.into_inner();
        let arg = daemon
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()))
            .filter(|a| !NOT_IN_FILE.contains(&key.as_str()) && !a.is_hide_set())
            .ok_or_else(|| {
                at(
                    start,
                    format!(
                        "unknown key `{key}`: keys are `interceptor daemon` flags without their dashes (see `interceptor config defaults`)"
                    ),
                )
            })?;
        let flag = format!("--{key}");
        let bad = |what: String| at(start, format!("key `{key}`: {what}"));
        let scalar = |v: &toml::Value| -> Result<String, ConfigError> {
            match v {
                toml::Value::String(s) => Ok(s.clone()),
                toml::Value::Integer(n) => Ok(n.to_string()),
                toml::Value::Float(f) => Ok(f.to_string()),
                toml::Value::Boolean(b) => Ok(b.to_string()),
                other => Err(bad(format!(
                    "expected a string or a number, found {}",
                    other.type_str()
                ))),
            }
        };
        let value = value.into_inner();
        let mut words: Vec<OsString> = Vec::new();
        match arg.get_action() {
            ArgAction::SetTrue => match value {
                toml::Value::Boolean(true) => words.push(flag.clone().into()),
                toml::Value::Boolean(false) => {}
                other => {
                    return Err(bad(format!(
                        "expected true or false, found {}",
                        other.type_str()
                    )));
                }
            },
            ArgAction::Append => {
                let items = match value {
                    toml::Value::Array(items) => items,
                    one => vec![one],
                };
                for item in &items {
                    words.extend([flag.clone().into(), scalar(item)?.into()]);
                }
            }
            _ => words.extend([flag.clone().into(), scalar(&value)?.into()]),
        }
        // The flag's own parser judges the value now, so the error can name the line.
        let mut probe: Vec<OsString> = vec!["interceptor".into(), "daemon".into()];
        probe.extend(words.iter().cloned());
        if let Err(e) = Cli::command().try_get_matches_from(probe) {
            let rendered = e.to_string();
            let first = rendered.lines().next().unwrap_or_default();
            return Err(bad(first.trim_start_matches("error: ").to_string()));
        }
        out.push(Setting {
            key,
            id: arg.get_id().to_string(),
            words,
        });
    }
    Ok(out)
}

/// The configuration file with every key commented out at its built-in default, made from
/// the daemon's flags (`interceptor config defaults`; packaging/interceptor.toml).
pub fn defaults() -> String {
    let mut out = String::from(
        "# interceptor daemon configuration (/etc/interceptor/interceptor.toml).\n\
         #\n\
         # Every key is an `interceptor daemon` flag without its dashes; see\n\
         # `interceptor daemon --help` or man interceptor-daemon(1). A flag given on the command\n\
         # line, or its environment variable, wins over this file; the file wins over the\n\
         # built-in default. Every key below is commented out and shows its default.\n\
         # The control socket is not set here: the daemon and the commands that talk to it\n\
         # both take --socket or $INTERCEPTOR_SOCKET (default /run/interceptor/control.sock).\n\
         # Generated by `interceptor config defaults`.\n",
    );
    for arg in daemon_command().get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if NOT_IN_FILE.contains(&long) || arg.is_hide_set() {
            continue;
        }
        out.push('\n');
        let help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        for line in help.lines() {
            out.push_str(format!("# {line}").trim_end());
            out.push('\n');
        }
        let values: Vec<String> = arg
            .get_possible_values()
            .iter()
            .filter(|v| !v.is_hide_set())
            .map(|v| v.get_name().to_string())
            .collect();
        if !values.is_empty() {
            out.push_str(&format!("# One of: {}.\n", values.join(", ")));
        }
        if let Some(env) = arg.get_env() {
            out.push_str(&format!("# Environment: {}.\n", env.to_string_lossy()));
        }
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| toml_word(&v.to_string_lossy()))
            .collect();
        let line = match arg.get_action() {
            ArgAction::SetTrue => format!("{long} = false"),
            ArgAction::Append => format!("{long} = [{}]", defaults.join(", ")),
            _ => match defaults.first() {
                Some(d) => format!("{long} = {d}"),
                None => format!("{long} = \"\"    # unset by default"),
            },
        };
        out.push_str(&format!("# {line}\n"));
    }
    out
}

/// A default as TOML: numbers bare, everything else quoted.
fn toml_word(value: &str) -> String {
    if value.parse::<i64>().is_ok() {
        value.to_string()
    } else {
        toml::Value::String(value.to_string()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Command_, DaemonArgs};

    const SHIPPED: &str = include_str!("../../packaging/interceptor.toml");

    fn dir() -> PathBuf {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("interceptor-config-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn daemon(file: Option<&str>, args: &[&str]) -> Result<DaemonArgs, ConfigError> {
        let path = dir().join("interceptor.toml");
        if let Some(text) = file {
            std::fs::write(&path, text).unwrap();
        }
        let mut argv: Vec<OsString> = vec!["interceptor".into(), "daemon".into()];
        argv.extend(["--config".into(), path.clone().into_os_string()]);
        argv.extend(args.iter().map(Into::into));
        match parse_cli_from(argv)?.command {
            Command_::Daemon(d) => Ok(d),
            other => panic!("not the daemon: {other:?}"),
        }
    }

    fn error(file: &str) -> String {
        daemon(Some(file), &[]).unwrap_err().to_string()
    }

    #[test]
    fn the_shipped_file_is_the_generated_one() {
        assert_eq!(
            SHIPPED,
            defaults(),
            "packaging/interceptor.toml is stale: regenerate it with `interceptor config defaults`"
        );
    }

    #[test]
    fn every_default_uncommented_changes_nothing() {
        let uncommented: String = defaults()
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| {
                l.split_once(" = ").is_some_and(|(k, _)| !k.contains(' '))
                    && !l.contains("unset by default")
            })
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(uncommented.lines().count() > 10, "{uncommented}");
        let from_file = daemon(Some(&uncommented), &[]).unwrap();
        let plain = daemon(Some(""), &[]).unwrap();
        // The config path differs (each call has its own directory); everything else agrees.
        let strip = |d: DaemonArgs| {
            format!(
                "{:?}",
                DaemonArgs {
                    config: PathBuf::new(),
                    ..d
                }
            )
        };
        assert_eq!(strip(from_file), strip(plain));
    }

    #[test]
    fn file_values_apply_and_the_command_line_and_environment_win() {
        let file = "listen = \"127.0.0.1:9999\"\nheartbeat-timeout-ms = 750\nallow-userns = true\nhold-exec = [\"/usr/bin/curl\", \"/usr/bin/wget\"]\n";
        let d = daemon(Some(file), &[]).unwrap();
        assert_eq!(d.listen, "127.0.0.1:9999");
        assert_eq!(d.heartbeat_timeout_ms, 750);
        assert!(d.allow_userns);
        assert_eq!(d.hold_exec, ["/usr/bin/curl", "/usr/bin/wget"]);
        let d = daemon(
            Some(file),
            &["--listen", "127.0.0.1:1", "--hold-exec", "/bin/nc"],
        )
        .unwrap();
        assert_eq!(d.listen, "127.0.0.1:1", "the command line wins");
        assert_eq!(
            d.hold_exec,
            ["/bin/nc"],
            "a list on the command line replaces the file's"
        );
        assert_eq!(
            d.heartbeat_timeout_ms, 750,
            "what the command line leaves is the file's"
        );
    }

    #[test]
    fn bad_files_name_the_line_the_column_and_the_key() {
        let e = error("listen = \"127.0.0.1:9\"\nheartbeat-timeout = 5\n");
        assert!(e.ends_with(":2:1: unknown key `heartbeat-timeout`: keys are `interceptor daemon` flags without their dashes (see `interceptor config defaults`)"), "{e}");
        let e = error("\n  heartbeat-timeout-ms = \"soon\"\n");
        assert!(
            e.contains(":2:3: key `heartbeat-timeout-ms`: invalid value 'soon'"),
            "{e}"
        );
        let e = error("backend = \"ebpf\"\n");
        assert!(
            e.contains(":1:1: key `backend`: invalid value 'ebpf'"),
            "{e}"
        );
        let e = error("allow-userns = \"yes\"\n");
        assert!(
            e.contains(":1:1: key `allow-userns`: expected true or false, found string"),
            "{e}"
        );
        let e = error("listen = { host = \"x\" }\n");
        assert!(
            e.contains("key `listen`: expected a string or a number, found table"),
            "{e}"
        );
        let e = error("config = \"/elsewhere.toml\"\n");
        assert!(e.contains("unknown key `config`"), "{e}");
        let e = error("listen = \n");
        assert!(e.contains(":1:"), "a TOML syntax error has a position: {e}");
        let e = error("listen = \"a\"\nlisten = \"b\"\n");
        assert!(e.contains(":2:"), "a duplicate key is an error: {e}");
    }

    #[test]
    fn a_missing_file_is_fine_only_at_the_default_path() {
        let missing = dir().join("absent.toml");
        let argv: Vec<OsString> = vec![
            "interceptor".into(),
            "daemon".into(),
            "--config".into(),
            missing.clone().into(),
        ];
        let e = parse_cli_from(argv).unwrap_err().to_string();
        assert!(e.starts_with(&missing.display().to_string()), "{e}");
    }

    #[test]
    fn the_daemon_is_found_after_global_options() {
        let argv = |words: &[&str]| words.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(subcommand_index(&argv(&["i", "daemon"])), Some(1));
        assert_eq!(
            subcommand_index(&argv(&["i", "--socket", "daemon", "daemon"])),
            Some(3)
        );
        assert_eq!(
            subcommand_index(&argv(&["i", "--socket=/s", "daemon"])),
            Some(2)
        );
        assert_eq!(subcommand_index(&argv(&["i", "status"])), None);
    }
}
