use std::{io::IsTerminal as _, process::ExitCode};

use interceptor::cli::{Command_, LogFormat};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = match interceptor::config::parse_cli() {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("interceptor: error: configuration: {e}");
            return ExitCode::FAILURE;
        }
    };
    if !matches!(cli.command, Command_::Daemon(_)) {
        // A reader that goes away (`| head`) ends a listing quietly, as with other tools.
        // SAFETY: restoring the default disposition of a signal.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    // The daemon logs its work; the client commands only log problems.
    let default_level = if matches!(cli.command, Command_::Daemon(_)) {
        "info"
    } else {
        "warn"
    };
    let filter = EnvFilter::try_from_env("INTERCEPTOR_LOG")
        .unwrap_or_else(|_| EnvFilter::new(default_level));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
    }
    match interceptor::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("interceptor: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
