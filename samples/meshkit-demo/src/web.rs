//! `--ui`: the live web view of the demo's rollout, over a store of its own.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use meshkit::store::{RolloutStore, SqliteStore};
use meshkit::traffic::local::LocalMetrics;
use meshkit::ui::{Dashboard, RunningDashboard};

/// The view and the store it shows (a file of this run's own, in a private
/// directory removed at the end).
pub struct Web {
    pub view: RunningDashboard,
    pub store: Arc<dyn RolloutStore>,
    dir: PathBuf,
}

/// A new directory only this user can enter, for the demo's store: another user of
/// the machine cannot plant a file there (gates recorded in it are acted on).
fn private_dir() -> std::io::Result<PathBuf> {
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    let mut last = None;
    for attempt in 0..8u32 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "meshkit-demo-{}-{nanos:08x}{attempt}",
            std::process::id()
        ));
        // `create` fails on a path that exists: never one made by someone else.
        match builder.create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no directory could be made")))
}

impl Web {
    /// Opens a store in a new private directory and serves its view on `listen`,
    /// with the mesh's request counters for the served split.
    pub async fn start(
        listen: SocketAddr,
        route: &str,
        metrics: LocalMetrics,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let dir = private_dir()?;
        let store: Arc<dyn RolloutStore> = Arc::new(SqliteStore::open(dir.join("rollouts.db"))?);
        let view = Dashboard::new(store.clone())
            .listen(listen)
            .served(route, move || metrics.requests())
            .start()
            .await?;
        Ok(Self { view, store, dir })
    }

    /// After the rollout: on a terminal, keeps the view up until Ctrl-C; otherwise
    /// lets open pages receive the end, then stops. Removes the store's directory.
    pub async fn finish(self, mut say: impl FnMut(&str)) {
        if std::io::stdout().is_terminal() {
            say("web view still up for a look at the result; Ctrl-C to quit");
            let _ = tokio::signal::ctrl_c().await;
        } else {
            tokio::time::sleep(meshkit::ui::DEFAULT_POLL * 4).await;
        }
        self.view.shutdown().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
