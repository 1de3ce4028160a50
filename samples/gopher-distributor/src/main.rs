//! `gopher-distributor`: see the crate docs and README.

use std::process::ExitCode;

use gopher_distributor::{App, Config};
use sample_support::{env, init_logs, server, xray::Tracing};

#[tokio::main]
async fn main() -> ExitCode {
    init_logs();
    let cfg = match Config::from_lookup(&env::process) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gopher-distributor: {e}");
            return ExitCode::from(2);
        }
    };
    let tracing = Tracing::from_env("distributor", &cfg.version);
    let listener = match tokio::net::TcpListener::bind(("0.0.0.0", cfg.port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "gopher-distributor: cannot listen on port {}: {e}",
                cfg.port
            );
            return ExitCode::from(1);
        }
    };
    let port = listener.local_addr().map_or(cfg.port, |a| a.port());
    println!(
        "Gopher distributor version {} running on port: {port}",
        cfg.version
    );
    match App::new(cfg, tracing)
        .serve(listener, server::shutdown_signal())
        .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gopher-distributor: {e}");
            ExitCode::from(1)
        }
    }
}
