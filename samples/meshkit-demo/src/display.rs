//! Live progress: event lines, and a status line (redrawn in place on a terminal,
//! printed every 2 s otherwise).

use std::io::Write;
use std::time::Duration;

use meshkit::health::Verdict;
use meshkit::rollout::Event;
use meshkit::traffic::Weights;
use meshkit::traffic::local::LocalMetrics;

/// What the display knows, updated from events.
#[derive(Debug, Default)]
pub struct Status {
    pub stage: String,
    pub weights: Option<Weights>,
    pub verdict: String,
    /// When the first unhealthy verdict came (rollout time).
    pub first_failure: Option<Duration>,
    /// When the rollback write was read back.
    pub rolled_back_at: Option<Duration>,
    rolling_back: bool,
}

impl Status {
    /// Takes in one event.
    pub fn update(&mut self, at: Duration, event: &Event) {
        match event {
            Event::Started { weights, .. } => self.weights = Some(weights.clone()),
            Event::StageStarted { index, stage } => self.stage = format!("{index}: {stage}"),
            Event::WeightsWritten { weights } => {
                self.weights = Some(weights.clone());
                if self.rolling_back && self.rolled_back_at.is_none() {
                    self.rolled_back_at = Some(at);
                }
            }
            Event::Verdict { verdict, .. } => {
                if matches!(verdict, Verdict::Unhealthy { .. }) && self.first_failure.is_none() {
                    self.first_failure = Some(at);
                }
                self.verdict = match verdict {
                    Verdict::Healthy => "healthy".into(),
                    Verdict::Unhealthy { .. } => "UNHEALTHY".into(),
                    Verdict::Inconclusive { .. } => "inconclusive".into(),
                };
            }
            Event::RollbackStarted { .. } => {
                self.rolling_back = true;
                self.stage = "rolling back".into();
            }
            _ => {}
        }
    }

    /// The status line: weights, observed split, green's success rate and p99.
    pub fn line(&self, at: Duration, metrics: &LocalMetrics) -> String {
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
            .map_or_else(|| "  -   ".to_owned(), |r| format!("{:5.1}%", r * 100.0));
        let p99 = green.p99.map_or_else(
            || "-".to_owned(),
            |d| format!("{:.1}ms", d.as_secs_f64() * 1000.0),
        );
        format!(
            "[{:6.1}s] stage {} | weights {weights} | observed blue {:5.1}% green {:5.1}% | green ok {ok} p99 {p99} | check: {}",
            at.as_secs_f64(),
            if self.stage.is_empty() {
                "-"
            } else {
                &self.stage
            },
            blue.requests as f64 * 100.0 / total,
            green.requests as f64 * 100.0 / total,
            if self.verdict.is_empty() {
                "-"
            } else {
                &self.verdict
            },
        )
    }
}

/// Writes lines to stdout; on a terminal keeps one status line at the bottom.
pub struct Screen {
    tty: bool,
    has_status: bool,
}

impl Screen {
    /// A screen for stdout; `tty` redraws the status line in place.
    pub fn new(tty: bool) -> Self {
        Self {
            tty,
            has_status: false,
        }
    }

    /// How often the status line is refreshed.
    pub fn refresh(&self) -> Duration {
        if self.tty {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(2)
        }
    }

    /// Prints a permanent line.
    pub fn line(&mut self, text: &str) {
        let mut out = std::io::stdout().lock();
        if self.tty && self.has_status {
            let _ = write!(out, "\r\x1b[2K");
        }
        let _ = writeln!(out, "{text}");
        self.has_status = false;
        let _ = out.flush();
    }

    /// Shows the status line (in place on a terminal).
    pub fn status(&mut self, text: &str) {
        if !self.tty {
            self.line(text);
            return;
        }
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "\r\x1b[2K{text}");
        let _ = out.flush();
        self.has_status = true;
    }
}
