//! `gopher-requester`: see the crate docs and README.

use std::process::ExitCode;

use gopher_requester::{App, Config};
use sample_support::{env, init_logs, server, xray::Tracing};

#[tokio::main]
async fn main() -> ExitCode {
    init_logs();
    let cfg = match Config::from_lookup(&env::process) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gopher-requester: {e}");
            return ExitCode::from(2);
        }
    };
    let tracing = Tracing::from_env("requester", "1");
    let listener = match tokio::net::TcpListener::bind(("0.0.0.0", cfg.port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("gopher-requester: cannot listen on port {}: {e}", cfg.port);
            return ExitCode::from(1);
        }
    };
    let port = listener.local_addr().map_or(cfg.port, |a| a.port());
    println!(
        "Gopher requester running on port: {port}, distributor: {}",
        cfg.distributor
    );
    match App::new(cfg, tracing)
        .serve(listener, server::shutdown_signal())
        .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gopher-requester: {e}");
            ExitCode::from(1)
        }
    }
}
