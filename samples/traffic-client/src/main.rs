//! `traffic-client`: see the crate docs and README.

use std::io::Write;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use clap::Parser;
use traffic_client::{Options, run};

#[tokio::main]
async fn main() -> ExitCode {
    let opts = Options::parse();
    let url = match opts.url() {
        Ok(u) => u,
        Err(e) => {
            eprintln!("traffic-client: {e}");
            return ExitCode::from(2);
        }
    };
    println!("Running against {url}");
    let out: Arc<Mutex<dyn Write + Send>> = Arc::new(Mutex::new(std::io::stdout()));
    let summary = tokio::select! {
        r = run(&opts, out) => r,
        _ = tokio::signal::ctrl_c() => return ExitCode::from(130),
    };
    match summary {
        Ok(s) if opts.json => {
            println!("{}", serde_json::to_string(&s).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Ok(s) => {
            println!("{s}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("traffic-client: {e}");
            ExitCode::from(2)
        }
    }
}
