//! [`Gate`]: a request, from any machine, that the lease holder pauses, resumes,
//! promotes or rolls back.

use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

/// What a person asks of a running rollout through the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Gate {
    /// Hold at the current stage (checks keep running).
    Pause,
    /// Undo a pause.
    Resume,
    /// Skip to the full cutover.
    Promote,
    /// Roll back now.
    Rollback,
}

impl Gate {
    /// The gate's name: `pause`, `resume`, `promote`, `rollback`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Promote => "promote",
            Self::Rollback => "rollback",
        }
    }
}

impl fmt::Display for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Gate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pause" => Ok(Self::Pause),
            "resume" => Ok(Self::Resume),
            "promote" => Ok(Self::Promote),
            "rollback" => Ok(Self::Rollback),
            other => Err(format!(
                "unknown gate '{other}': expected pause, resume, promote or rollback"
            )),
        }
    }
}

/// A gate as stored: asked by someone, applied by the lease holder at its next check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateRequest {
    /// The request's id in the store (opaque).
    pub id: String,
    /// What was asked.
    pub gate: Gate,
    /// Who asked.
    pub by: String,
    /// When.
    pub at: SystemTime,
    /// When the lease holder applied it (`None` while waiting).
    pub applied: Option<SystemTime>,
}
