//! `bluegreen-service`: see the crate docs and README.

use std::process::ExitCode;

use bluegreen_service::{App, Config};
use sample_support::{env, init_logs, server, xray::Tracing};

#[tokio::main]
async fn main() -> ExitCode {
    init_logs();
    let cfg = match Config::from_lookup(&env::process) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bluegreen-service: {e}");
            return ExitCode::from(2);
        }
    };
    let tracing = Tracing::from_env(&cfg.name, &cfg.version);
    let listener = match server::bind_or_exit("bluegreen-service", cfg.port).await {
        Ok(l) => l,
        Err(code) => return code,
    };
    let port = listener.local_addr().map_or(cfg.port, |a| a.port());
    println!(
        "Service '{}' (version {}) running on port: {port}",
        cfg.name, cfg.version
    );
    let result = App::new(cfg, tracing)
        .serve(listener, server::shutdown_signal())
        .await;
    server::exit_code("bluegreen-service", result)
}
