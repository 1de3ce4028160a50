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
    let listener = match server::bind_or_exit("gopher-distributor", cfg.port).await {
        Ok(l) => l,
        Err(code) => return code,
    };
    let port = listener.local_addr().map_or(cfg.port, |a| a.port());
    println!(
        "Gopher distributor version {} running on port: {port}",
        cfg.version
    );
    let result = App::new(cfg, tracing)
        .serve(listener, server::shutdown_signal())
        .await;
    server::exit_code("gopher-distributor", result)
}
