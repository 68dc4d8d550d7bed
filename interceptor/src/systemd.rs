//! systemd's service notification protocol (`sd_notify(3)`), spoken by hand: one datagram
//! per state change to the socket named by `$NOTIFY_SOCKET` (a path, or `@name` in the
//! abstract namespace).
//!
//! The daemon says `READY=1` once the kernel programs enforce, the policy is installed, held
//! tasks are re-adopted and the control socket accepts; `RELOADING=1` around a policy reload;
//! `STOPPING=1` on its way out; and `WATCHDOG=1` from its main loop after each successful
//! kernel heartbeat, so a daemon whose loop is stuck, or whose heartbeat no longer reaches
//! the kernel, is restarted by systemd (`WatchdogSec=` in the unit). Outside systemd
//! (`$NOTIFY_SOCKET` unset) there is no notifier and nothing is sent.

use std::{
    io,
    os::{
        linux::net::SocketAddrExt,
        unix::net::{SocketAddr, UnixDatagram},
    },
    time::Duration,
};

/// Why `$NOTIFY_SOCKET` or `$WATCHDOG_USEC` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("NOTIFY_SOCKET={0:?} is not a socket path or @abstract name")]
    BadSocket(String),
    #[error("WATCHDOG_USEC={0:?} is not a positive number of microseconds")]
    BadWatchdog(String),
    #[error("cannot create the notification socket: {0}")]
    Socket(#[source] io::Error),
}

/// A connection to the service manager's notification socket.
#[derive(Debug, Clone)]
pub struct Notifier {
    socket: std::sync::Arc<UnixDatagram>,
    addr: SocketAddr,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// The notifier systemd asked for through the environment, if any. The variables are
    /// removed so that nothing the daemon starts can speak for it.
    pub fn from_env() -> Result<Option<Self>, NotifyError> {
        let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
            return Ok(None);
        };
        let socket = socket.to_string_lossy().into_owned();
        let usec = std::env::var("WATCHDOG_USEC").ok();
        let pid = std::env::var("WATCHDOG_PID").ok();
        // SAFETY: called once at startup, before the runtime starts other threads.
        unsafe {
            std::env::remove_var("NOTIFY_SOCKET");
            std::env::remove_var("WATCHDOG_USEC");
            std::env::remove_var("WATCHDOG_PID");
        }
        Self::new(&socket, usec.as_deref(), pid.as_deref()).map(Some)
    }

    /// A notifier for `socket`, with the watchdog systemd set (`WATCHDOG_USEC`), unless the
    /// watchdog is meant for another process (`WATCHDOG_PID`).
    pub fn new(socket: &str, usec: Option<&str>, pid: Option<&str>) -> Result<Self, NotifyError> {
        let addr = match socket.strip_prefix('@') {
            Some(name) if !name.is_empty() => SocketAddr::from_abstract_name(name.as_bytes()),
            Some(_) => return Err(NotifyError::BadSocket(socket.into())),
            None if socket.starts_with('/') => SocketAddr::from_pathname(socket),
            None => return Err(NotifyError::BadSocket(socket.into())),
        }
        .map_err(|_| NotifyError::BadSocket(socket.into()))?;
        let ours = pid.is_none_or(|p| p.trim().parse::<u32>().ok() == Some(std::process::id()));
        let watchdog = match usec {
            Some(u) if ours => match u.trim().parse::<u64>() {
                Ok(n) if n > 0 => Some(Duration::from_micros(n)),
                _ => return Err(NotifyError::BadWatchdog(u.into())),
            },
            _ => None,
        };
        let socket = UnixDatagram::unbound().map_err(NotifyError::Socket)?;
        Ok(Self {
            socket: std::sync::Arc::new(socket),
            addr,
            watchdog,
        })
    }

    /// The watchdog timeout systemd enforces, if it set one for this process.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Sends one notification: newline-separated `KEY=VALUE` assignments.
    pub fn send(&self, state: &str) -> io::Result<()> {
        self.socket.send_to_addr(state.as_bytes(), &self.addr)?;
        Ok(())
    }

    /// The service is up; `status` is shown by `systemctl status`.
    pub fn ready(&self, status: &str) -> io::Result<()> {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)))
    }

    /// The main loop is alive (sent only while the watchdog is enabled).
    pub fn alive(&self) -> io::Result<()> {
        if self.watchdog.is_none() {
            return Ok(());
        }
        self.send("WATCHDOG=1")
    }

    /// A reload begins; [`Notifier::ready`] ends it. `MONOTONIC_USEC` lets systemd tell this
    /// reload from an earlier one (required by `Type=notify-reload`).
    pub fn reloading(&self) -> io::Result<()> {
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()))
    }

    /// The daemon is stopping.
    pub fn stopping(&self) -> io::Result<()> {
        self.send("STOPPING=1\nSTATUS=stopping; the kernel keeps enforcing from its pins")
    }
}

/// A status line cannot carry a newline (it would start another assignment).
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes the current time into `ts`, which outlives the call.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(name: &str) -> (UnixDatagram, String, tempfile_dir::Dir) {
        let dir = tempfile_dir::Dir::new(name);
        let path = dir.0.join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        (socket, path.to_str().unwrap().to_string(), dir)
    }

    fn recv(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    /// A scratch directory removed on drop (the crate has no tempfile dependency).
    mod tempfile_dir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new(name: &str) -> Self {
                let dir = std::env::temp_dir()
                    .join(format!("interceptor-notify-{name}-{}", std::process::id()));
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir).unwrap();
                Dir(dir)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn states_reach_a_path_socket_in_the_documented_format() {
        let (socket, path, _dir) = listener("path");
        let n = Notifier::new(&path, Some("30000000"), None).unwrap();
        assert_eq!(n.watchdog(), Some(Duration::from_secs(30)));
        n.ready("enforcing\nwith lsm").unwrap();
        assert_eq!(recv(&socket), "READY=1\nSTATUS=enforcing with lsm");
        n.alive().unwrap();
        assert_eq!(recv(&socket), "WATCHDOG=1");
        n.reloading().unwrap();
        let reloading = recv(&socket);
        let usec = reloading
            .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
            .expect("RELOADING with MONOTONIC_USEC");
        assert!(usec.parse::<u64>().unwrap() > 0);
        n.stopping().unwrap();
        assert!(recv(&socket).starts_with("STOPPING=1\n"));
    }

    #[test]
    fn abstract_sockets_are_reached_by_name() {
        let name = format!("interceptor-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).unwrap();
        let n = Notifier::new(&format!("@{name}"), None, None).unwrap();
        n.ready("up").unwrap();
        assert_eq!(recv(&socket), "READY=1\nSTATUS=up");
    }

    #[test]
    fn no_watchdog_means_no_watchdog_pings() {
        let (socket, path, _dir) = listener("nowd");
        let n = Notifier::new(&path, None, None).unwrap();
        assert_eq!(n.watchdog(), None);
        n.alive().unwrap();
        n.ready("up").unwrap();
        // The first datagram is READY: the ping was never sent.
        assert_eq!(recv(&socket), "READY=1\nSTATUS=up");
    }

    #[test]
    fn a_watchdog_meant_for_another_process_is_ignored() {
        let (_socket, path, _dir) = listener("otherpid");
        let other = (std::process::id() + 1).to_string();
        let n = Notifier::new(&path, Some("1000000"), Some(&other)).unwrap();
        assert_eq!(n.watchdog(), None);
        let ours = std::process::id().to_string();
        let n = Notifier::new(&path, Some("1000000"), Some(&ours)).unwrap();
        assert_eq!(n.watchdog(), Some(Duration::from_secs(1)));
    }

    #[test]
    fn bad_variables_are_errors_naming_the_variable() {
        for bad in ["relative/path", "@", ""] {
            let e = Notifier::new(bad, None, None).unwrap_err();
            assert!(e.to_string().starts_with("NOTIFY_SOCKET="), "{e}");
        }
        for bad in ["0", "-5", "soon"] {
            let e = Notifier::new("/run/x", Some(bad), None).unwrap_err();
            assert!(e.to_string().starts_with("WATCHDOG_USEC="), "{e}");
        }
    }
}
