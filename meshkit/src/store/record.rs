//! The record of a rollout: what it is, who ran it, what happened, how it ended.

use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use super::Holder;
use crate::traffic::Weights;

/// Where a recorded rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordState {
    /// Its lease holder is running it (or crashed; its lease then expires and the
    /// next run on the route resumes it).
    Running,
    /// Ended with all traffic on the new version.
    Promoted,
    /// Ended with all traffic on the stable version.
    RolledBack,
    /// Stopped with an error, the route possibly between versions: the next run of
    /// the same versions on the route resumes it.
    Stopped,
    /// Left unfinished and then found at a safe end by a rollout of other versions.
    Abandoned,
    /// Refused before its first write (the route was not at its start, the record
    /// did not allow it): nothing to resume.
    Refused,
}

impl RecordState {
    /// The state's name: `running`, `promoted`, `rolled_back`, `stopped`, `abandoned`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Promoted => "promoted",
            Self::RolledBack => "rolled_back",
            Self::Stopped => "stopped",
            Self::Abandoned => "abandoned",
            Self::Refused => "refused",
        }
    }

    /// True for the states a later run carries on from (`running`, `stopped`).
    pub fn is_open(self) -> bool {
        matches!(self, Self::Running | Self::Stopped)
    }
}

impl fmt::Display for RecordState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RecordState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "running" => Self::Running,
            "promoted" => Self::Promoted,
            "rolled_back" => Self::RolledBack,
            "stopped" => Self::Stopped,
            "abandoned" => Self::Abandoned,
            "refused" => Self::Refused,
            other => return Err(format!("unknown rollout state '{other}'")),
        })
    }
}

/// How far a rollout got, kept current as it runs: what a takeover resumes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// The stage running (its index in the plan), once one started.
    pub stage: Option<usize>,
    /// The last weights written (or found already in force) and read back, in
    /// [`encode_weights`] form.
    pub written: Option<String>,
    /// True when the data plane was confirmed applying `written`.
    pub verified: bool,
    /// A write started and not yet read back: it may or may not have landed.
    pub pending: Option<String>,
    /// Set once the rollout is rolling back: why.
    pub rolling_back: Option<String>,
}

/// One line of a rollout's timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// When.
    pub at: SystemTime,
    /// The holder that recorded it.
    pub by: String,
    /// The event's kind (`StageStarted`, `WeightsWritten`, `Verdict`, …, or
    /// `Lease` and `Gate` for the store's own lines).
    pub kind: String,
    /// The event in words.
    pub message: String,
    /// The split the line reports, in [`encode_weights`] form, for the lines that
    /// carry one: `Started` (found on the route), `WeightsWritten`, `AlreadyInForce`,
    /// `TargetRemoved` (in force), `WeightsVerified` (applied by the data plane),
    /// `DeploymentProgress` (ECS's split) and `Stopped` (in force, when known).
    /// Charts are drawn from it; `None` for every other line and for lines recorded
    /// before meshkit 0.1 kept it.
    pub weights: Option<String>,
}

/// What is known about a rollout when it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRollout {
    /// The rollout id.
    pub id: String,
    /// The route (the store's key).
    pub route: String,
    /// The stable version.
    pub stable: String,
    /// The new version.
    pub candidate: String,
    /// The strategy's name.
    pub strategy: String,
    /// The plan: one line per stage.
    pub plan: Vec<String>,
    /// Who started it.
    pub started_by: Holder,
}

/// A stored rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutRecord {
    /// What it is and who started it.
    pub rollout: NewRollout,
    /// When it started.
    pub started: SystemTime,
    /// When it ended (promoted, rolled back, stopped or abandoned).
    pub ended: Option<SystemTime>,
    /// Where it stands.
    pub state: RecordState,
    /// The outcome or error in words, once ended.
    pub detail: Option<String>,
    /// How far it got.
    pub progress: Progress,
    /// Every process that ran it, in order (the first started it; the others took
    /// over after a crash or a stop).
    pub attempts: Vec<String>,
    /// The timeline, oldest first.
    pub entries: Vec<Entry>,
    /// Timeline lines not kept because the record reached its size bound.
    pub dropped: u64,
}

/// One line of the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The rollout id.
    pub id: String,
    /// The route.
    pub route: String,
    /// The stable version.
    pub stable: String,
    /// The new version.
    pub candidate: String,
    /// The strategy's name.
    pub strategy: String,
    /// Who started it.
    pub started_by: String,
    /// When it started.
    pub started: SystemTime,
    /// When it ended.
    pub ended: Option<SystemTime>,
    /// Where it stands.
    pub state: RecordState,
    /// The outcome or error in words, once ended.
    pub detail: Option<String>,
}

impl RolloutRecord {
    /// The history line of this record.
    pub fn summary(&self) -> Summary {
        Summary {
            id: self.rollout.id.clone(),
            route: self.rollout.route.clone(),
            stable: self.rollout.stable.clone(),
            candidate: self.rollout.candidate.clone(),
            strategy: self.rollout.strategy.clone(),
            started_by: self.rollout.started_by.name.clone(),
            started: self.started,
            ended: self.ended,
            state: self.state,
            detail: self.detail.clone(),
        }
    }
}

/// What one fenced [`RolloutStore::record`](super::RolloutStore::record) call changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordUpdate {
    /// Lines to add to the timeline.
    pub entries: Vec<Entry>,
    /// Lines left out since the last update (added to the record's count).
    pub dropped: u64,
    /// The progress now, when it changed.
    pub progress: Option<Progress>,
    /// The end, when the rollout ended: its state and the detail.
    pub end: Option<(RecordState, String)>,
}

/// Weights as the record keeps them: `name:units` pairs in lowest terms, in the
/// route's order (`web-v1:9,web-v2:1`). Exact, and equal for equal splits.
pub fn encode_weights(w: &Weights) -> String {
    w.lowest_terms()
        .into_iter()
        .map(|(n, u)| format!("{n}:{u}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Reads [`encode_weights`]'s form back; `None` when it is not valid weights.
pub fn decode_weights(s: &str) -> Option<Weights> {
    let pairs: Option<Vec<(&str, u32)>> = s
        .split(',')
        .map(|p| {
            let (n, u) = p.rsplit_once(':')?;
            Some((n, u.parse().ok()?))
        })
        .collect();
    Weights::relative(pairs?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_round_trip_exactly() {
        for w in [
            Weights::new([("v1", 90), ("v2", 10)]).unwrap(),
            Weights::relative([("a", 999), ("b", 1)]).unwrap(),
            Weights::relative([("a", 2), ("b", 1), ("old", 0)]).unwrap(),
            Weights::new([("v2", 100)]).unwrap(),
        ] {
            let s = encode_weights(&w);
            assert_eq!(decode_weights(&s), Some(w), "{s}");
        }
        assert_eq!(
            encode_weights(&Weights::new([("v1", 90), ("v2", 10)]).unwrap()),
            "v1:9,v2:1"
        );
        for bad in ["", "v1", "v1:x", "v1:0", ":1", "v1:1,v1:2"] {
            assert_eq!(decode_weights(bad), None, "{bad}");
        }
    }

    #[test]
    fn states_round_trip() {
        for s in [
            RecordState::Running,
            RecordState::Promoted,
            RecordState::RolledBack,
            RecordState::Stopped,
            RecordState::Abandoned,
            RecordState::Refused,
        ] {
            assert_eq!(s.as_str().parse::<RecordState>(), Ok(s));
        }
        assert!("done".parse::<RecordState>().is_err());
    }
}
