//! `meshkit`: plan, run and inspect rollouts from a spec file (TOML or JSON), or from
//! the AWS canary pipeline's `deploy.json`.
//!
//! Exit codes: 0 promoted (or command done), 2 invalid input, 3 rolled back, 4 stopped
//! with an error, 130 interrupted.

mod build;
mod commands;
mod deploy;
mod spec;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Progressive delivery from the command line: canary, linear and blue/green traffic
/// shifting with health checks and automatic rollback.
#[derive(Debug, Parser)]
#[command(name = "meshkit", version)]
pub struct Cli {
    /// The AWS endpoint to use (e.g. an emulator); `AWS_ENDPOINT_URL` works too.
    #[arg(long, global = true)]
    pub endpoint_url: Option<String>,
    /// One JSON object per line instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// deploy.json only: the service (`<svc>`), when the file has no
    /// `MicroserviceName`.
    #[arg(long, global = true)]
    pub service: Option<String>,
    /// deploy.json only: the stable node. Default: the node the route now sends the
    /// most traffic to (read from App Mesh).
    #[arg(long, global = true)]
    pub stable: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the spec and print every step and the AWS calls it would make. No call
    /// is made.
    Plan {
        /// The spec file (`.toml` or `.json`).
        spec: String,
    },
    /// Run the rollout. Ctrl-C asks whether to roll back (rolls back when there is no
    /// terminal).
    Run {
        /// The spec file.
        spec: String,
    },
    /// Print the route's current weights.
    Status {
        /// The spec file.
        spec: String,
    },
    /// Put all traffic on the new version now.
    Promote {
        /// The spec file.
        spec: String,
    },
    /// Put all traffic back on the stable version now.
    Rollback {
        /// The spec file.
        spec: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MESHKIT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("meshkit: cannot start the async runtime: {e}");
            return ExitCode::from(4);
        }
    };
    ExitCode::from(runtime.block_on(commands::run(cli)))
}
