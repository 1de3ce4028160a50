//! `meshkit ui` and `meshkit run --ui`: the live web view of the rollout store.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use meshkit::store::RolloutStore;
use meshkit::ui::{Dashboard, RunningDashboard, Token, UiError};
use serde_json::json;

use crate::signals::Signals;
use crate::{Cli, exit};

/// Where the view listens by default: loopback, a free port.
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:0";

/// The token: `MESHKIT_UI_TOKEN` when set, else a new random one.
fn token() -> Result<Token, String> {
    match std::env::var("MESHKIT_UI_TOKEN") {
        Ok(t) if !t.is_empty() => Token::new(t).map_err(|e| format!("MESHKIT_UI_TOKEN: {e}")),
        _ => Token::generate().map_err(|e| e.to_string()),
    }
}

/// Starts the view of `store` on `listen`; `served` reads a local data plane's
/// request counters for the route keyed `route`. `Err` carries the exit code: 2 for
/// a bad `MESHKIT_UI_TOKEN` or poll interval, 4 when the address cannot be bound.
pub(crate) async fn start(
    store: Arc<dyn RolloutStore>,
    listen: SocketAddr,
    served: Option<(String, meshkit::traffic::local::LocalMetrics)>,
    poll: Duration,
) -> Result<RunningDashboard, (u8, String)> {
    let token = token().map_err(|e| (exit::INVALID, e))?;
    let mut view = Dashboard::new(store)
        .listen(listen)
        .token(token)
        .poll_interval(poll);
    if let Some((key, metrics)) = served {
        view = view.served(key, move || metrics.requests());
    }
    view.start().await.map_err(|e| match e {
        UiError::Invalid(_) => (exit::INVALID, e.to_string()),
        _ => (exit::FAILED, e.to_string()),
    })
}

/// Says where the view is: the address and the link with the token on stderr; with
/// `--json` the address (not the token) as a line on stdout too.
pub(crate) fn announce(cli: &Cli, view: &RunningDashboard, route: Option<&str>) {
    let link = view.link_route(route);
    if cli.json {
        // Not the link: stdout is often kept in a CI log, the token is not for it.
        out!("{}", json!({ "ui": view.url() }));
    }
    err!("meshkit: web view on {}", view.url());
    err!("meshkit: open this link to watch and act (it holds the token): {link}");
    if !view.addr().ip().is_loopback() {
        err!(
            "meshkit: listening beyond loopback ({}): looking needs the token too",
            view.addr()
        );
    }
}

/// `meshkit ui`: serves until SIGINT, SIGTERM or SIGHUP.
pub(crate) async fn serve(cli: &Cli, listen: SocketAddr, poll: Duration) -> u8 {
    let store = match crate::store::open_coded(cli).await {
        Ok(s) => s,
        Err((code, e)) => return crate::failed(cli, code, &e),
    };
    let mut signals = match Signals::new() {
        Ok(s) => s,
        Err(e) => return crate::failed(cli, exit::FAILED, &format!("cannot handle signals: {e}")),
    };
    let view = match start(store, listen, None, poll).await {
        Ok(v) => v,
        Err((code, e)) => return crate::failed(cli, code, &e),
    };
    announce(cli, &view, None);
    let signal = signals.next().await;
    err!("meshkit: {}: the web view stops", signal.name());
    view.shutdown().await;
    exit::OK
}

/// After a run with `--ui`: lets open pages receive the rollout's end (a few store
/// reads), then stops the view.
pub(crate) async fn finish(view: Option<RunningDashboard>) {
    if let Some(view) = view {
        tokio::time::sleep(meshkit::ui::DEFAULT_POLL * 4).await;
        view.shutdown().await;
    }
}
