//! Agent scopes configured on the daemon: every process of a Unix uid, or inside a cgroup v2
//! (and its descendants), is an agent — in addition to trees started by `interceptor run`.
//! The kernel adds such a process to its tracked set the first time it sees it, so leaving
//! the cgroup or changing uid afterwards does not end its tracking.

use std::{fmt, os::unix::fs::MetadataExt as _, path::PathBuf, str::FromStr};

/// `statfs.f_type` of cgroup v2.
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// One configured scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentScope {
    /// Every process whose real uid is `uid`.
    Uid { uid: u32, agent: String },
    /// Every process in the cgroup v2 directory `path` or below it.
    Cgroup { path: PathBuf, agent: String },
}

impl AgentScope {
    pub fn agent(&self) -> &str {
        match self {
            Self::Uid { agent, .. } | Self::Cgroup { agent, .. } => agent,
        }
    }
}

impl fmt::Display for AgentScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Uid { uid, agent } => write!(f, "uid {uid} is agent {agent}"),
            Self::Cgroup { path, agent } => {
                write!(f, "cgroup {} (and below) is agent {agent}", path.display())
            }
        }
    }
}

/// `--agent-uid UID[=NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UidScope(pub AgentScope);

impl FromStr for UidScope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (uid, agent) = split_name(s);
        let uid: u32 = uid
            .parse()
            .map_err(|_| format!("{uid:?} is not a numeric uid (expected UID or UID=NAME)"))?;
        let agent = agent.map_or_else(|| format!("uid-{uid}"), str::to_string);
        Ok(Self(AgentScope::Uid { uid, agent }))
    }
}

/// `--agent-cgroup PATH[=NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupScope(pub AgentScope);

impl FromStr for CgroupScope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (path, agent) = split_name(s);
        if !path.starts_with('/') {
            return Err(format!("{path:?} is not an absolute cgroup v2 directory"));
        }
        let path = PathBuf::from(path);
        let agent = match agent {
            Some(agent) => agent.to_string(),
            None => path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or_else(|| {
                    format!(
                        "{} has no last component to name the agent; use PATH=NAME",
                        path.display()
                    )
                })?,
        };
        Ok(Self(AgentScope::Cgroup { path, agent }))
    }
}

fn split_name(s: &str) -> (&str, Option<&str>) {
    match s.split_once('=') {
        Some((value, name)) => (value, Some(name)),
        None => (s, None),
    }
}

/// Checks an agent name: 1-64 characters from `A-Z a-z 0-9 - _ .`.
pub fn validate_agent_name(agent: &str) -> Result<(), String> {
    let valid = !agent.is_empty()
        && agent.len() <= 64
        && agent
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "agent name {agent:?} is invalid: use 1-64 characters from A-Z a-z 0-9 - _ ."
        ))
    }
}

/// The cgroup v2 id of a directory (its inode number on the cgroup2 filesystem).
pub fn cgroup_id(path: &std::path::Path) -> Result<u64, String> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| format!("{} contains a NUL byte", path.display()))?;
    // SAFETY: statfs writes into the zeroed struct we pass; the path is NUL-terminated.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c_path.as_ptr(), &mut fs) } != 0 {
        return Err(format!(
            "{}: {}",
            path.display(),
            std::io::Error::last_os_error()
        ));
    }
    if fs.f_type as i64 != CGROUP2_SUPER_MAGIC {
        return Err(format!(
            "{} is not on a cgroup v2 filesystem (mount -t cgroup2)",
            path.display()
        ));
    }
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_dir() {
        return Err(format!("{} is not a cgroup directory", path.display()));
    }
    Ok(meta.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_scopes_with_and_without_names() {
        assert_eq!(
            "1001".parse::<UidScope>().unwrap().0,
            AgentScope::Uid {
                uid: 1001,
                agent: "uid-1001".into()
            }
        );
        assert_eq!(
            "1001=copilot".parse::<UidScope>().unwrap().0,
            AgentScope::Uid {
                uid: 1001,
                agent: "copilot".into()
            }
        );
        assert!(
            "root"
                .parse::<UidScope>()
                .unwrap_err()
                .contains("not a numeric uid")
        );
        assert_eq!(
            "/sys/fs/cgroup/agents/ci".parse::<CgroupScope>().unwrap().0,
            AgentScope::Cgroup {
                path: "/sys/fs/cgroup/agents/ci".into(),
                agent: "ci".into()
            }
        );
        assert!(
            "agents"
                .parse::<CgroupScope>()
                .unwrap_err()
                .contains("absolute")
        );
    }

    #[test]
    fn agent_names_are_checked() {
        assert!(validate_agent_name("copilot-2.prod_x").is_ok());
        for bad in ["", "has space", "semi;colon", &"x".repeat(65)] {
            assert!(validate_agent_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cgroup_id_refuses_other_filesystems() {
        let err = cgroup_id(std::path::Path::new("/")).unwrap_err();
        assert!(err.contains("not on a cgroup v2 filesystem"), "{err}");
        assert!(cgroup_id(std::path::Path::new("/nonexistent/cg")).is_err());
    }
}
