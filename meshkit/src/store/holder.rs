//! [`Holder`]: who runs a rollout (a name, the host, the user, the process).

use std::fmt;

/// Who holds a lease or ran a rollout: shown to the person whose run is refused, and
/// kept in the record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Holder {
    /// A name: given (a CI job, a deploy service replica) or `user@host:pid`.
    pub name: String,
    /// The host name.
    pub host: String,
    /// The user name.
    pub user: String,
    /// The process id.
    pub pid: u32,
}

impl Holder {
    /// This process: host from `HOSTNAME` or `/etc/hostname`, user from `USER` or
    /// `LOGNAME`, this process's id; named `user@host:pid`.
    pub fn current() -> Self {
        let host = std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.trim().is_empty())
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unknown-host".to_owned());
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .ok()
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| "unknown-user".to_owned());
        let pid = std::process::id();
        Self {
            name: format!("{user}@{host}:{pid}"),
            host,
            user,
            pid,
        }
    }

    /// This process, under a name of your choice (a CI job id, a replica name). Names
    /// are cut to 128 characters; control characters become `?` (a name is printed
    /// in tables and messages).
    pub fn named(name: impl Into<String>) -> Self {
        let mut name: String = name
            .into()
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        if let Some((cut, _)) = name.char_indices().nth(128) {
            name.truncate(cut);
        }
        Self {
            name,
            ..Self::current()
        }
    }
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plain = format!("{}@{}:{}", self.user, self.host, self.pid);
        if self.name == plain {
            f.write_str(&self.name)
        } else {
            write!(f, "{} ({plain})", self.name)
        }
    }
}
