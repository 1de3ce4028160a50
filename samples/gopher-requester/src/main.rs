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
    let listener = match server::bind_or_exit("gopher-requester", cfg.port).await {
        Ok(l) => l,
        Err(code) => return code,
    };
    let port = listener.local_addr().map_or(cfg.port, |a| a.port());
    println!(
        "Gopher requester running on port: {port}, distributor: {}",
        cfg.distributor
    );
    let result = App::new(cfg, tracing)
        .serve(listener, server::shutdown_signal())
        .await;
    server::exit_code("gopher-requester", result)
}
