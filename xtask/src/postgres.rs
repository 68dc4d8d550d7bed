//! A throwaway PostgreSQL server for the audit log's tests and benchmarks: a fresh cluster
//! under `target/pg`, listening on 127.0.0.1 at a free port, stopped when dropped.
//!
//! initdb and postgres refuse to run as root, so as root the cluster belongs to the
//! `postgres` user (from Debian's postgresql package) or, failing that, `nobody`, and the
//! commands run through `runuser`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::Workspace;
use crate::util::{self, output_checked, probe_output};

/// The variable the audit tests and the audit benchmark read the server's URL from.
pub const ENV_PG_URL: &str = "INTERCEPTOR_TEST_PG_URL";

/// The superuser the cluster is created with (trust authentication, loopback only).
const SUPERUSER: &str = "interceptor";

pub struct PgServer {
    bin: PathBuf,
    data: PathBuf,
    /// Who runs the server (`None`: this user).
    owner: Option<String>,
    /// `postgres://interceptor@127.0.0.1:PORT/postgres`
    pub url: String,
}

impl PgServer {
    /// Creates and starts a fresh cluster. `durable: false` turns fsync off (tests: faster,
    /// and nothing to keep); benchmarks want `true` so the numbers mean something.
    pub fn start(ws: &Workspace, durable: bool) -> Result<Self> {
        let bin = server_bin_dir()?;
        let dir = ws.target.join("pg");
        if dir.exists() {
            // A cluster left by a run that was killed: stop it if it still runs, then start over.
            let stale = dir.join("data");
            if stale.join("postmaster.pid").exists() {
                let owner = owner_of(&stale);
                let _ = run_as(
                    &owner,
                    Command::new(bin.join("pg_ctl"))
                        .arg("-D")
                        .arg(&stale)
                        .args(["-m", "immediate", "-w", "stop"]),
                );
            }
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let owner = if util::is_root() {
            let user = ["postgres", "nobody"]
                .into_iter()
                .find(|u| probe_output(Command::new("id").args(["-u", u])).is_some())
                .context("neither a `postgres` nor a `nobody` user exists to run PostgreSQL as (it refuses root)")?;
            chown(&dir, user)?;
            Some(user.to_string())
        } else {
            None
        };
        let data = dir.join("data");
        run_as(
            &owner,
            Command::new(bin.join("initdb"))
                .arg("-D")
                .arg(&data)
                .args(["-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--locale=C"])
                .arg("--no-sync"),
        )
        .context("initdb (is the directory reachable by the server's user?)")?;
        let port = free_port()?;
        let mut options = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {}",
            dir.display()
        );
        if !durable {
            options.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        let server = Self {
            bin,
            data,
            owner,
            url: format!("postgres://{SUPERUSER}@127.0.0.1:{port}/postgres"),
        };
        run_as(
            &server.owner,
            Command::new(server.bin.join("pg_ctl"))
                .arg("-D")
                .arg(&server.data)
                .arg("-l")
                .arg(dir.join("server.log"))
                .args(["-w", "-t", "60", "-o", &options, "start"]),
        )
        .with_context(|| {
            format!(
                "starting PostgreSQL (log: {})",
                dir.join("server.log").display()
            )
        })?;
        println!("xtask: PostgreSQL for the audit tests at {}", server.url);
        Ok(server)
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let result = run_as(
            &self.owner,
            Command::new(self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "fast", "-w", "stop"]),
        );
        if let Err(e) = result {
            eprintln!("xtask: stopping PostgreSQL: {e:#}");
        }
    }
}

/// The newest `/usr/lib/postgresql/N/bin` that has initdb.
fn server_bin_dir() -> Result<PathBuf> {
    let root = Path::new("/usr/lib/postgresql");
    let newest = std::fs::read_dir(root)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .max_by_key(|(v, _)| *v);
    match newest {
        Some((_, bin)) => Ok(bin),
        None => bail!(
            "no PostgreSQL server under {} (the audit tests need one: `cargo xtask setup` installs Debian's postgresql package)",
            root.display()
        ),
    }
}

fn run_as(owner: &Option<String>, cmd: &mut Command) -> Result<()> {
    match owner {
        None => output_checked(cmd).map(drop),
        Some(user) => {
            let mut wrapped = Command::new("runuser");
            wrapped
                .args(["-u", user, "--"])
                .arg(cmd.get_program())
                .args(cmd.get_args());
            output_checked(&mut wrapped).map(drop)
        }
    }
}

fn chown(dir: &Path, user: &str) -> Result<()> {
    let id = |flag: &str| -> Result<u32> {
        output_checked(Command::new("id").args([flag, user]))?
            .trim()
            .parse()
            .with_context(|| format!("`id {flag} {user}` is not a number"))
    };
    std::os::unix::fs::chown(dir, Some(id("-u")?), Some(id("-g")?))
        .with_context(|| format!("giving {} to {user}", dir.display()))
}

fn owner_of(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt as _;
    let uid = std::fs::metadata(path).ok()?.uid();
    if uid == 0 {
        return None;
    }
    probe_output(Command::new("id").args(["-nu", &uid.to_string()])).map(|s| s.trim().to_string())
}

fn free_port() -> Result<u16> {
    // Bound then released: a race with another process taking it is possible but harmless
    // (pg_ctl would fail to start and say so).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}
