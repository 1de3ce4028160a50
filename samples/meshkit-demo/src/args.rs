//! Command-line options and the pacing they imply.

use std::time::Duration;

use clap::{Parser, ValueEnum};

/// Which strategy the demo runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StrategyKind {
    /// Explicit canary steps (`--steps`).
    Canary,
    /// 25% more every bake.
    Linear,
    /// Check green with no traffic, one cutover, a bake window with blue kept ready.
    BlueGreen,
    /// Green checked with no traffic, canary steps 10% and 50%, then the cutover.
    CanaryBlueGreen,
}

/// A live rollout on the local embedded mesh: blue (v1) and green (v2) sample services,
/// steady traffic through the mesh, success-rate and p99 checks, and promotion or an
/// automatic rollback.
#[derive(Debug, Clone, Parser)]
#[command(name = "meshkit-demo", version)]
pub struct Args {
    /// The rollout strategy.
    #[arg(long, value_enum, default_value_t = StrategyKind::Canary)]
    pub strategy: StrategyKind,
    /// Start a green whose user requests fail (see --fail-rate) while its health
    /// endpoint stays healthy: its probe passes, it takes real traffic, fails under it,
    /// and the split swings back to blue.
    #[arg(long, conflicts_with = "broken_probe")]
    pub broken: bool,
    /// Start a green whose health endpoint fails too: its probe catches it before any
    /// user traffic is shifted to it.
    #[arg(long)]
    pub broken_probe: bool,
    /// Share of green's user requests that fail with --broken or --broken-probe.
    #[arg(long, default_value_t = 0.5)]
    pub fail_rate: f64,
    /// Short bakes (3 s) and 1 s checks: a whole run in well under 30 s.
    #[arg(long)]
    pub fast: bool,
    /// Canary steps, in percent.
    #[arg(long, value_delimiter = ',', default_values_t = [10u32, 25, 50, 100])]
    pub steps: Vec<u32>,
    /// Requests per second the traffic generator sends through the mesh.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Bake time per step (default 20 s, 3 s with --fast).
    #[arg(long, value_parser = traffic_client::parse_duration)]
    pub bake: Option<Duration>,
    /// Health check interval (default 2 s, 1 s with --fast).
    #[arg(long, value_parser = traffic_client::parse_duration)]
    pub check_interval: Option<Duration>,
    /// Canary only: check green for this long with no user traffic before the first
    /// step (its direct probe can fail it there, before any user sees it).
    #[arg(long, value_parser = traffic_client::parse_duration)]
    pub pre_check: Option<Duration>,
    /// Print the final summary as one JSON line on stdout (progress goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Serve the live web view of the rollout (a link is printed): `--ui`, 127.0.0.1
    /// and a free port, or `--ui=ADDR`. After the rollout, the view stays up until Ctrl-C
    /// when the output is a terminal.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, require_equals = true, default_missing_value = "127.0.0.1:0")]
    pub ui: Option<std::net::SocketAddr>,
}

impl Args {
    /// Bake time per step.
    pub fn bake(&self) -> Duration {
        self.bake.unwrap_or(if self.fast {
            Duration::from_secs(3)
        } else {
            Duration::from_secs(20)
        })
    }

    /// Check interval.
    pub fn check_interval(&self) -> Duration {
        self.check_interval.unwrap_or(if self.fast {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(2)
        })
    }

    /// Share of green's user requests that fail.
    pub fn user_fail_rate(&self) -> f64 {
        if self.broken || self.broken_probe {
            self.fail_rate
        } else {
            0.0
        }
    }

    /// Share of green's health-endpoint requests that fail.
    pub fn health_fail_rate(&self) -> f64 {
        if self.broken_probe { 1.0 } else { 0.0 }
    }

    /// Refuses values that would make a meaningless run (checked before anything
    /// starts; the plan itself is checked by `scenario::validate_plan`).
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.fail_rate) {
            return Err("--fail-rate must be within 0.0-1.0".into());
        }
        if !(1.0..=20_000.0).contains(&self.rate) {
            return Err("--rate must be within 1-20000 requests/s".into());
        }
        if self.check_interval() < Duration::from_millis(100) {
            return Err("--check-interval must be at least 100ms".into());
        }
        Ok(())
    }
}
