//! `meshkit`: plan, run and inspect rollouts. Everything but the command line and
//! the runtime lives in the library (`meshkit_cli`).

use std::process::ExitCode;

use clap::Parser;
use meshkit_cli::{Cli, exit};

/// Our own crates at `warn`; the AWS SDK and everything else at `error`, so no SDK
/// debug output reaches a user who did not ask for it (`MESHKIT_LOG=debug` does).
const DEFAULT_LOG: &str = "error,meshkit=warn,meshkit_cli=warn";

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MESHKIT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG)),
        )
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal, not in a log file or a pipeline.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("meshkit: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILED);
        }
    };
    let code = runtime.block_on(meshkit_cli::run(cli));
    // A question still waiting for an answer on stdin must not keep the process
    // alive: do not wait for blocking tasks.
    runtime.shutdown_background();
    ExitCode::from(code)
}
