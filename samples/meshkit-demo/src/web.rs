//! `--ui`: the live web view of the demo's rollout, over a store of its own.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use meshkit::store::{RolloutStore, SqliteStore};
use meshkit::traffic::local::LocalMetrics;
use meshkit::ui::{Dashboard, RunningDashboard};

/// The view and the store it shows (a file of this run's own, removed at the end).
pub struct Web {
    pub view: RunningDashboard,
    pub store: Arc<dyn RolloutStore>,
    file: PathBuf,
}

impl Web {
    /// Opens a store in the temporary directory and serves its view on `listen`,
    /// with the mesh's request counters for the served split.
    pub async fn start(
        listen: SocketAddr,
        route: &str,
        metrics: LocalMetrics,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let file = std::env::temp_dir().join(format!("meshkit-demo-{}.db", std::process::id()));
        let store: Arc<dyn RolloutStore> = Arc::new(SqliteStore::open(&file)?);
        let view = Dashboard::new(store.clone())
            .listen(listen)
            .served(route, move || metrics.requests())
            .start()
            .await?;
        Ok(Self { view, store, file })
    }

    /// After the rollout: on a terminal, keeps the view up until Ctrl-C; otherwise
    /// lets open pages receive the end, then stops. Removes the store's files.
    pub async fn finish(self, mut say: impl FnMut(&str)) {
        if std::io::stdout().is_terminal() {
            say("web view still up for a look at the result; Ctrl-C to quit");
            let _ = tokio::signal::ctrl_c().await;
        } else {
            tokio::time::sleep(meshkit::ui::DEFAULT_POLL * 4).await;
        }
        self.view.shutdown().await;
        for suffix in ["", "-wal", "-shm"] {
            let mut f = self.file.clone().into_os_string();
            f.push(suffix);
            let _ = std::fs::remove_file(f);
        }
    }
}
