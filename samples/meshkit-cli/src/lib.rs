//! The `meshkit` command as a library: plan, run and inspect rollouts from a spec file
//! (TOML or JSON), or from the AWS canary pipeline's `deploy.json`. `main.rs` only
//! parses the command line and calls [`run`].
//!
//! Exit codes ([`exit`]): 0 promoted (or command done), 2 invalid input, 3 rolled back,
//! 4 stopped with an error, 129/130/143 ended by SIGHUP/SIGINT/SIGTERM (after rolling
//! back).

/// `println!` that ignores a closed stdout (a pipe whose reader went away, a
/// terminal that hung up) instead of panicking.
#[macro_export]
#[doc(hidden)]
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `eprintln!` that ignores a closed stderr.
#[macro_export]
#[doc(hidden)]
macro_rules! err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `eprint!` that ignores a closed stderr.
#[macro_export]
#[doc(hidden)]
macro_rules! err_inline {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($arg)*);
    }};
}

pub mod build;
pub mod deploy;
pub mod spec;

mod aws_env;
mod elb;
mod lattice;
mod load;
mod native;
mod plan;
mod route;
mod run;
mod signals;
mod store;
mod ui;

use clap::{Parser, Subcommand};

pub use load::{Loaded, load_spec};
pub use plan::Calls;

/// The exit codes.
pub mod exit {
    /// Promoted, or the command did what it said.
    pub const OK: u8 = 0;
    /// Invalid input: the spec, a flag, or the AWS settings (endpoint, region,
    /// credentials). Nothing was called.
    pub const INVALID: u8 = 2;
    /// Rolled back by the checks (or by hand from another shell).
    pub const ROLLED_BACK: u8 = 3;
    /// Stopped with an error; the message names the weights in force.
    pub const FAILED: u8 = 4;
    /// Ended by SIGHUP (the terminal went away), after rolling back.
    pub const HANGUP: u8 = 129;
    /// Ended by Ctrl-C (SIGINT), after rolling back or as the person chose.
    pub const INTERRUPTED: u8 = 130;
    /// Ended by SIGTERM (a CI job's timeout, `timeout`, systemd, a container runtime),
    /// after rolling back.
    pub const TERMINATED: u8 = 143;
}

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
    /// What inconclusive checks (no data, timeouts) mean, overriding the spec's
    /// `policy.inconclusive`: `fail` (roll back after 3 in a row, the default), `wait`,
    /// or `pass` (the AWS canary pipeline's rule: no data is healthy).
    #[arg(long, global = true, value_enum)]
    pub inconclusive: Option<spec::Inconclusive>,
    /// The rollout store: `sqlite:PATH` or `dynamodb:TABLE`; `MESHKIT_STORE` works
    /// too. Default: `sqlite:` the file `meshkit/rollouts.db` in `$XDG_STATE_HOME`
    /// (or `~/.local/state`). It holds each route's lease, the record of every rollout
    /// and the gates.
    #[arg(long, global = true)]
    pub store: Option<String>,
    /// Who this process is in leases and records (a CI job, a replica). Default:
    /// `user@host:pid`.
    #[arg(long, global = true)]
    pub holder: Option<String>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the spec and print every step, the checks, what inconclusive checks
    /// mean, and the AWS calls it would make. No call is made.
    Plan {
        /// The spec file (`.toml` or `.json`).
        spec: String,
    },
    /// Run the rollout. Ctrl-C asks whether to roll back (rolls back when there is no
    /// terminal); SIGTERM and SIGHUP roll back. A second signal exits at once.
    Run {
        /// The spec file.
        spec: String,
        /// Resume from a split between the two versions that this plan never writes
        /// (set by a person or another tool), from the first step at or above it.
        #[arg(long)]
        adopt: bool,
        /// When another process holds the route's lease, wait up to this long for it
        /// (`90s`, `10m`) instead of stopping at once.
        #[arg(long, value_parser = parse_wait)]
        wait: Option<std::time::Duration>,
        /// Serve the live web view of this rollout while it runs (the link is printed
        /// on stderr): `--ui`, 127.0.0.1 and a free port, or `--ui=ADDR`.
        #[arg(long, value_name = "ADDR", num_args = 0..=1, require_equals = true, default_missing_value = ui::DEFAULT_LISTEN)]
        ui: Option<std::net::SocketAddr>,
    },
    /// Serve the live web view of the rollout store: every rollout, its weights over
    /// time, the data plane's split, the checks' verdicts, the timeline, and buttons
    /// for the gates. Actions need the token in the printed link
    /// (`MESHKIT_UI_TOKEN` sets it). Runs until Ctrl-C.
    Ui {
        /// Where to listen. Beyond loopback, looking needs the token too.
        #[arg(long, default_value = ui::DEFAULT_LISTEN)]
        listen: std::net::SocketAddr,
        /// How often the store is read while a page watches (50ms to 10s): each
        /// watched rollout costs a record, lease and gates read per poll, the list
        /// one query. Raise it on a provisioned DynamoDB table.
        #[arg(long, value_parser = parse_wait, default_value = "250ms")]
        poll: std::time::Duration,
    },
    /// Hold the running rollout at its current stage (checks keep running): recorded
    /// in the store, applied by the process running it at its next check round.
    Pause {
        /// The spec file.
        spec: String,
    },
    /// Undo `pause`.
    Resume {
        /// The spec file.
        spec: String,
    },
    /// The rollouts recorded in the store, newest first (a table; JSON lines with
    /// `--json`).
    History {
        /// Only this route (as recorded: an ARN, a Lattice route, an App Mesh route).
        route: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// One rollout's record: plan, attempts, progress and its event timeline.
    Show {
        /// The rollout id (from `history`).
        id: String,
    },
    /// Look after the rollout store itself.
    Store {
        /// What to do.
        #[command(subcommand)]
        action: StoreAction,
    },
    /// Print the route's current weights.
    Status {
        /// The spec file.
        spec: String,
    },
    /// Put all traffic on the new version now (retried, read back, refused if the
    /// route changes meanwhile).
    Promote {
        /// The spec file.
        spec: String,
        /// Load balancers: write even when the new version's target group has no
        /// healthy target.
        #[arg(long)]
        force: bool,
    },
    /// Put all traffic back on the stable version now (retried, read back, refused if
    /// the route changes meanwhile).
    Rollback {
        /// The spec file.
        spec: String,
        /// Load balancers: write even when the stable version's target group has no
        /// healthy target (its service retired after a promotion, say).
        #[arg(long)]
        force: bool,
    },
}

/// What `meshkit store` does.
#[derive(Debug, Subcommand)]
pub enum StoreAction {
    /// Create the DynamoDB table `--store dynamodb:TABLE` names (on-demand, key
    /// `pk`/`sk`); a table that exists is left as it is.
    CreateTable,
    /// Delete the records of rollouts that ended longer ago than `--older-than`
    /// (open rollouts are kept).
    Prune {
        /// The age (`90d` is not a unit: use hours, e.g. `2160h`, or `30m`, `10s`).
        #[arg(long, value_parser = parse_wait)]
        older_than: std::time::Duration,
    },
}

impl Command {
    /// The spec file the command reads (`history` and `show` read only the store).
    pub fn spec(&self) -> Option<&str> {
        match self {
            Self::Plan { spec }
            | Self::Run { spec, .. }
            | Self::Status { spec }
            | Self::Pause { spec }
            | Self::Resume { spec }
            | Self::Promote { spec, .. }
            | Self::Rollback { spec, .. } => Some(spec),
            Self::History { .. } | Self::Show { .. } | Self::Store { .. } | Self::Ui { .. } => None,
        }
    }
}

fn parse_wait(s: &str) -> Result<std::time::Duration, String> {
    spec::Dur::parse(s)
        .map(|d| d.value)
        .ok_or_else(|| format!("'{s}' is not a duration (e.g. 90s, 10m)"))
}

/// Says why the command stops, on stderr, and with `--json` as the last line on
/// stdout too (`{"outcome": "invalid" | "error", "exit": code, "detail": ...}`);
/// returns `code`.
pub(crate) fn failed(cli: &Cli, code: u8, message: &str) -> u8 {
    err!("meshkit: {message}");
    if cli.json {
        let outcome = if code == exit::INVALID {
            "invalid"
        } else {
            "error"
        };
        out!(
            "{}",
            serde_json::json!({"outcome": outcome, "exit": code, "detail": message})
        );
    }
    code
}

/// Runs the command; returns the exit code.
pub async fn run(cli: Cli) -> u8 {
    let path = match &cli.command {
        Command::History { route, limit } => {
            return store::history(&cli, route.as_deref(), *limit).await;
        }
        Command::Show { id } => return store::show(&cli, id).await,
        Command::Store { action } => return store::admin(&cli, action).await,
        Command::Ui { listen, poll } => return ui::serve(&cli, *listen, *poll).await,
        other => other.spec().unwrap_or_default().to_owned(),
    };
    let needs_route = !matches!(cli.command, Command::Plan { .. });
    let loaded = match load::load(&cli, &path, needs_route).await {
        Ok(l) => l,
        Err(load::Loading::Invalid(e)) => {
            return failed(&cli, exit::INVALID, &format!("invalid spec {path}: {e}"));
        }
        Err(load::Loading::Environment(e)) => return failed(&cli, exit::INVALID, &e),
        Err(load::Loading::Failed(e)) => return failed(&cli, exit::FAILED, &e),
        Err(load::Loading::Done(said)) => {
            out!("{said}");
            return exit::OK;
        }
    };
    match &cli.command {
        Command::Plan { .. } => plan::plan(&cli, &loaded),
        Command::Run {
            adopt, wait, ui, ..
        } => run::run(&cli, &loaded, *adopt, *wait, *ui).await,
        Command::Status { .. } => route::status(&cli, &loaded).await,
        Command::Pause { .. } => route::gate(&cli, &loaded, meshkit::store::Gate::Pause).await,
        Command::Resume { .. } => route::gate(&cli, &loaded, meshkit::store::Gate::Resume).await,
        Command::Promote { force, .. } => route::set(&cli, &loaded, 100, *force).await,
        Command::Rollback { force, .. } => route::set(&cli, &loaded, 0, *force).await,
        Command::History { .. }
        | Command::Show { .. }
        | Command::Store { .. }
        | Command::Ui { .. } => exit::OK,
    }
}
