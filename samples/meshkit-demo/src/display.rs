//! Live progress: event lines, and a live view of a few rows (redrawn in place as a
//! block on a terminal, each row cut to the terminal's width; printed as one line every
//! 2 s otherwise).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use meshkit::health::Verdict;
use meshkit::rollout::Event;
use meshkit::strategy::RollbackReason;
use meshkit::traffic::Weights;
use meshkit::traffic::local::LocalMetrics;
use serde::Serialize;

/// The verdicts of one stage.
#[derive(Debug, Default, Clone, Serialize)]
pub struct StageVerdicts {
    /// The stage index.
    pub stage: usize,
    /// The stage, in words.
    pub name: String,
    pub healthy: u32,
    pub unhealthy: u32,
    pub inconclusive: u32,
}

/// What the display knows, updated from events.
#[derive(Debug, Default)]
pub struct Status {
    pub stage: String,
    pub weights: Option<Weights>,
    pub verdict: String,
    /// When the first unhealthy verdict came (rollout time).
    pub first_failure: Option<Duration>,
    /// When the route was known to be back at all-blue after the rollback.
    pub rolled_back_at: Option<Duration>,
    /// The largest share green ever had, in percent.
    pub green_max: f64,
    /// Why the split went back to blue, in words (set when the rollback starts).
    pub why: Option<String>,
    /// Verdicts per stage, in stage order.
    pub verdicts: BTreeMap<usize, StageVerdicts>,
    rolling_back: bool,
}

impl Status {
    /// Takes in one event.
    pub fn update(&mut self, at: Duration, event: &Event) {
        match event {
            Event::Started { weights, .. } => self.weights = Some(weights.clone()),
            Event::StageStarted { index, stage } => {
                self.stage = format!("{index}: {stage}");
                self.stage_verdicts(*index).name = stage.to_string();
            }
            Event::WeightsWritten { weights } | Event::AlreadyInForce { weights } => {
                self.green_max = self.green_max.max(weights.percent_f64("green"));
                self.weights = Some(weights.clone());
                if self.rolling_back && self.rolled_back_at.is_none() {
                    self.rolled_back_at = Some(at);
                }
            }
            Event::TargetRemoved { weights, .. } => self.weights = Some(weights.clone()),
            Event::Verdict { stage, verdict, .. } => {
                let v = self.stage_verdicts(*stage);
                match verdict {
                    Verdict::Healthy => v.healthy += 1,
                    Verdict::Unhealthy { .. } => v.unhealthy += 1,
                    Verdict::Inconclusive { .. } => v.inconclusive += 1,
                }
                if matches!(verdict, Verdict::Unhealthy { .. }) && self.first_failure.is_none() {
                    self.first_failure = Some(at);
                }
                self.verdict = match verdict {
                    Verdict::Healthy => "healthy".into(),
                    Verdict::Unhealthy { .. } => "UNHEALTHY".into(),
                    Verdict::Inconclusive { .. } => "inconclusive".into(),
                };
            }
            Event::RollbackStarted { reason } => {
                self.rolling_back = true;
                self.stage = "rolling back".into();
                self.why = Some(self.why(reason));
            }
            _ => {}
        }
    }

    fn stage_verdicts(&mut self, stage: usize) -> &mut StageVerdicts {
        self.verdicts.entry(stage).or_insert_with(|| StageVerdicts {
            stage,
            ..StageVerdicts::default()
        })
    }

    /// Why the split goes back to blue, for the person watching.
    fn why(&self, reason: &RollbackReason) -> String {
        let now = self
            .weights
            .as_ref()
            .map_or(0.0, |w| w.percent_f64("green"))
            .max(self.green_max);
        let probe = reason.to_string().contains("probe green");
        if now == 0.0 {
            if probe {
                "green failed its probe; no traffic was shifted".into()
            } else {
                format!("green was stopped before any traffic ({reason}); no traffic was shifted")
            }
        } else {
            let what = match reason {
                RollbackReason::Unhealthy(r) if probe => format!("green failed its probe: {r}"),
                RollbackReason::Unhealthy(r) => {
                    format!("green passed its probe but failed its users: {r}")
                }
                other => format!("green was stopped: {other}"),
            };
            format!("{what}; with {now}% of the traffic on green, the split swings back to blue")
        }
    }

    /// How many healthy verdicts came so far.
    fn healthy(&self) -> u32 {
        self.verdicts.values().map(|v| v.healthy).sum()
    }

    /// The live view: stage; weights and observed split; green's success rate, p99 and
    /// the last verdict.
    pub fn rows(&self, at: Duration, metrics: &LocalMetrics) -> [String; 3] {
        let window = Duration::from_secs(2);
        let blue = metrics.window_now("blue", window).unwrap_or_default();
        let green = metrics.window_now("green", window).unwrap_or_default();
        let total = (blue.requests + green.requests).max(1) as f64;
        let weights = self
            .weights
            .as_ref()
            .map_or_else(|| "-".to_owned(), ToString::to_string);
        let ok = green
            .success_rate()
            .map_or_else(|| "-".to_owned(), |r| format!("{:.1}%", r * 100.0));
        let p99 = green.p99.map_or_else(
            || "-".to_owned(),
            |d| format!("{:.1}ms", d.as_secs_f64() * 1000.0),
        );
        let dash = |s: &str| {
            if s.is_empty() {
                "-".to_owned()
            } else {
                s.to_owned()
            }
        };
        [
            format!("[{:6.1}s] stage {}", at.as_secs_f64(), dash(&self.stage)),
            format!(
                "          weights {weights} | observed (2s) blue {:.1}% green {:.1}%",
                blue.requests as f64 * 100.0 / total,
                green.requests as f64 * 100.0 / total,
            ),
            format!(
                "          green ok {ok} p99 {p99} | check: {} ({} healthy so far)",
                dash(&self.verdict),
                self.healthy()
            ),
        ]
    }
}

/// A permanent line for an event, or `None` for events the live view shows (healthy
/// verdicts).
pub fn event_line(event: &Event) -> Option<String> {
    Some(match event {
        Event::Verdict {
            verdict: Verdict::Healthy,
            ..
        } => return None,
        // Said before the shift: the checks run first, and the write follows.
        Event::StageStarted { index, stage } => format!("stage {index} starts: {stage}"),
        Event::WeightsWritten { weights } => {
            format!("weights now {weights} (written and read back)")
        }
        Event::AlreadyInForce { weights } => {
            format!("weights already {weights}: nothing to write")
        }
        Event::TargetRemoved { target, weights } => {
            format!("{target} taken off the route: {weights}")
        }
        other => other.to_string(),
    })
}

/// Where progress goes: stdout, or stderr when stdout carries the JSON summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Stdout,
    Stderr,
}

/// Writes progress; on a terminal keeps the live view at the bottom, as a block of
/// rows that each fit the terminal's width.
pub struct Screen {
    target: Target,
    tty: bool,
    width: usize,
    /// Rows of the live view now on screen (0: none).
    drawn: usize,
}

impl Screen {
    /// A screen on `target`; the live view is redrawn in place when it is a terminal.
    pub fn new(target: Target) -> Self {
        let tty = match target {
            Target::Stdout => std::io::stdout().is_terminal(),
            Target::Stderr => std::io::stderr().is_terminal(),
        };
        let mut screen = Self {
            target,
            tty,
            width: 80,
            drawn: 0,
        };
        screen.resized();
        screen
    }

    /// Reads the terminal's width again (at start and on SIGWINCH).
    pub fn resized(&mut self) {
        if self.tty {
            self.width = terminal_width(self.target).unwrap_or(80).max(20);
        }
    }

    /// How often the live view is refreshed.
    pub fn refresh(&self) -> Duration {
        if self.tty {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(2)
        }
    }

    fn write(&self, text: &str) {
        let _ = match self.target {
            Target::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(text.as_bytes()).and_then(|()| out.flush())
            }
            Target::Stderr => {
                let mut out = std::io::stderr().lock();
                out.write_all(text.as_bytes()).and_then(|()| out.flush())
            }
        };
    }

    /// Moves to the first row of the live view and clears it and everything below.
    fn clear(&self, out: &mut String) {
        if self.drawn > 0 {
            out.push('\r');
            if self.drawn > 1 {
                out.push_str(&format!("\x1b[{}A", self.drawn - 1));
            }
            out.push_str("\x1b[J");
        }
    }

    /// Prints a permanent line (above the live view, which the next refresh redraws).
    pub fn line(&mut self, text: &str) {
        let mut out = String::new();
        if self.tty {
            self.clear(&mut out);
        }
        out.push_str(text);
        out.push('\n');
        self.drawn = 0;
        self.write(&out);
    }

    /// Shows the live view: in place on a terminal, every row cut to fit its width so
    /// that none wraps; as one line otherwise.
    pub fn status(&mut self, rows: &[String]) {
        if !self.tty {
            let one: Vec<&str> = rows.iter().map(|r| r.trim()).collect();
            self.line(&one.join(" | "));
            return;
        }
        let mut out = String::new();
        self.clear(&mut out);
        let fitted: Vec<String> = rows.iter().map(|r| fit(r, self.width - 1)).collect();
        out.push_str(&fitted.join("\n"));
        self.drawn = fitted.len();
        self.write(&out);
    }
}

/// `text` cut to at most `width` characters (the last one `~` when cut).
pub fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('~');
    cut
}

/// The width of the terminal behind `target`: `stty size` on that very terminal, else
/// `COLUMNS`. (No ioctl: this crate forbids unsafe code and takes no new crates.)
fn terminal_width(target: Target) -> Option<usize> {
    stty_width(target).or_else(|| {
        std::env::var("COLUMNS")
            .ok()?
            .trim()
            .parse()
            .ok()
            .filter(|w| *w > 0)
    })
}

#[cfg(unix)]
fn stty_width(target: Target) -> Option<usize> {
    use std::os::fd::AsFd;
    use std::process::{Command, Stdio};

    let fd = match target {
        Target::Stdout => std::io::stdout().as_fd().try_clone_to_owned(),
        Target::Stderr => std::io::stderr().as_fd().try_clone_to_owned(),
    }
    .ok()?;
    let out = Command::new("stty")
        .arg("size")
        .stdin(Stdio::from(fd))
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let cols = text.split_whitespace().nth(1)?.parse().ok()?;
    (out.status.success() && cols > 0).then_some(cols)
}

#[cfg(not(unix))]
fn stty_width(_: Target) -> Option<usize> {
    None
}

/// Completes when the terminal is resized (never where that cannot be told).
pub struct Resize {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Resize {
    /// Listens for SIGWINCH.
    pub fn new() -> Self {
        Self {
            #[cfg(unix)]
            signal: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
                .ok(),
        }
    }

    /// The next resize.
    pub async fn next(&mut self) {
        #[cfg(unix)]
        if let Some(s) = self.signal.as_mut() {
            if s.recv().await.is_some() {
                return;
            }
            self.signal = None;
        }
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_cuts_to_the_width() {
        assert_eq!(fit("abcdef", 10), "abcdef");
        assert_eq!(fit("abcdef", 6), "abcdef");
        assert_eq!(fit("abcdef", 4), "abc~");
        assert_eq!(fit("ääää", 3).chars().count(), 3);
    }
}
