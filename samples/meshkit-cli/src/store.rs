//! The rollout store from the command line: `--store`, `history`, `show`, the lease
//! holder in `status`, and gates (`pause`, `resume`, `promote`, `rollback` while a
//! rollout runs) recorded for the lease holder to apply.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use meshkit::store::{
    DynamoStore, Gate, Holder, Lease, RolloutRecord, RolloutStore, SqliteStore, Summary, utc,
};
use serde_json::json;

use crate::{Cli, aws_env, exit};

/// Where `--store` (or `MESHKIT_STORE`) points: `sqlite:PATH`, `dynamodb:TABLE`, or
/// (unset) the embedded file in the user's state directory. `Err` carries the exit
/// code: 2 for a malformed value or a directory that does not exist, 4 for a store
/// that cannot be opened.
pub(crate) async fn open_coded(cli: &Cli) -> Result<Arc<dyn RolloutStore>, (u8, String)> {
    let given = cli
        .store
        .clone()
        .or_else(|| std::env::var("MESHKIT_STORE").ok())
        .filter(|s| !s.trim().is_empty());
    let failed = |e: meshkit::store::StoreError| (exit::FAILED, e.to_string());
    match given.as_deref().map(|s| s.split_once(':')) {
        None => SqliteStore::open(SqliteStore::default_path())
            .map(|s| Arc::new(s) as Arc<dyn RolloutStore>)
            .map_err(failed),
        Some(Some(("sqlite", path))) if !path.is_empty() => {
            // A given path is not created: a typo must not look like an empty store.
            let dir = std::path::Path::new(path)
                .parent()
                .filter(|d| !d.as_os_str().is_empty());
            if let Some(dir) = dir.filter(|d| !d.is_dir()) {
                return Err((
                    exit::INVALID,
                    format!(
                        "--store sqlite:{path}: the directory {} does not exist",
                        dir.display()
                    ),
                ));
            }
            SqliteStore::open(path)
                .map(|s| Arc::new(s) as Arc<dyn RolloutStore>)
                .map_err(failed)
        }
        Some(Some(("dynamodb", table))) if !table.is_empty() => {
            let sdk = aws_env::sdk(cli).await.map_err(|e| (exit::INVALID, e))?;
            Ok(Arc::new(DynamoStore::new(
                meshkit::sdk::dynamodb::Client::new(&sdk),
                table,
            )))
        }
        _ => Err((
            exit::INVALID,
            format!(
                "--store must be sqlite:PATH or dynamodb:TABLE, not '{}'",
                given.unwrap_or_default()
            ),
        )),
    }
}

/// [`open_coded`] for the commands that only read the store.
pub(crate) async fn open(cli: &Cli) -> Result<Arc<dyn RolloutStore>, String> {
    open_coded(cli).await.map_err(|(_, e)| e)
}

/// Who this process is in leases and records: `--holder` (1-128 printable
/// characters), else `user@host:pid`.
pub(crate) fn holder(cli: &Cli) -> Result<Holder, String> {
    match &cli.holder {
        Some(name) => {
            let ok = !name.trim().is_empty()
                && name.chars().count() <= 128
                && !name.chars().any(char::is_control);
            if ok {
                Ok(Holder::named(name))
            } else {
                Err("--holder must be 1-128 printable characters (no newlines or escapes)".into())
            }
        }
        None => Ok(Holder::current()),
    }
}

/// A stored text for a terminal: control characters shown as `?`, so nothing
/// recorded can fake a line or send escapes.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn when(t: Option<SystemTime>) -> String {
    t.map_or_else(|| "-".to_owned(), utc)
}

fn summary_json(s: &Summary) -> serde_json::Value {
    json!({
        "id": s.id, "route": s.route, "from": s.stable, "to": s.candidate,
        "strategy": s.strategy, "state": s.state.as_str(), "started_by": s.started_by,
        "started": utc(s.started), "ended": s.ended.map(utc), "detail": s.detail,
    })
}

/// `meshkit history [ROUTE]`.
pub(crate) async fn history(cli: &Cli, route: Option<&str>, limit: usize) -> u8 {
    let store = match open(cli).await {
        Ok(s) => s,
        Err(e) => return crate::failed(cli, exit::INVALID, &e),
    };
    let lines = match store.history(route, limit).await {
        Ok(l) => l,
        Err(e) => return crate::failed(cli, exit::FAILED, &e.to_string()),
    };
    if cli.json {
        for s in &lines {
            out!("{}", summary_json(s));
        }
        return exit::OK;
    }
    if lines.is_empty() {
        out!(
            "no rollouts recorded{}",
            route.map(|r| format!(" for {r}")).unwrap_or_default()
        );
        return exit::OK;
    }
    out!(
        "{:<20} {:<11} {:<20} {:<17} {:<20} {}",
        "STARTED",
        "STATE",
        "ID",
        "VERSIONS",
        "BY",
        "ROUTE"
    );
    for s in &lines {
        out!(
            "{:<20} {:<11} {:<25} {:<17} {:<20} {}",
            utc(s.started),
            s.state.as_str(),
            clean(&s.id),
            clean(&format!("{} \u{2192} {}", s.stable, s.candidate)),
            clean(&s.started_by),
            clean(&s.route)
        );
    }
    exit::OK
}

/// `meshkit show ID`.
pub(crate) async fn show(cli: &Cli, id: &str) -> u8 {
    let store = match open(cli).await {
        Ok(s) => s,
        Err(e) => return crate::failed(cli, exit::INVALID, &e),
    };
    let rec: RolloutRecord = match store.get(id).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return crate::failed(
                cli,
                exit::INVALID,
                &format!("no rollout '{id}' in the store"),
            );
        }
        Err(e) => return crate::failed(cli, exit::FAILED, &e.to_string()),
    };
    let s = rec.summary();
    if cli.json {
        let mut v = summary_json(&s);
        v["plan"] = json!(rec.rollout.plan);
        v["attempts"] = json!(rec.attempts);
        v["dropped"] = json!(rec.dropped);
        v["progress"] = json!({
            "stage": rec.progress.stage, "written": rec.progress.written,
            "pending": rec.progress.pending, "verified": rec.progress.verified,
            "rolling_back": rec.progress.rolling_back,
        });
        v["events"] = rec
            .entries
            .iter()
            .map(|e| json!({"at": utc(e.at), "by": e.by, "kind": e.kind, "message": e.message}))
            .collect();
        out!("{v}");
        return exit::OK;
    }
    out!("rollout {} on {}", s.id, s.route);
    out!(
        "  {} \u{2192} {}, {} ({})",
        s.stable,
        s.candidate,
        s.strategy,
        rec.rollout.plan.join(", ")
    );
    out!(
        "  started {} by {}; attempts: {}",
        utc(s.started),
        s.started_by,
        rec.attempts.join(", ")
    );
    out!(
        "  state {}{}; ended {}",
        s.state,
        s.detail
            .as_deref()
            .map(|d| format!(": {d}"))
            .unwrap_or_default(),
        when(s.ended)
    );
    for e in &rec.entries {
        out!("{}  {:<14} {}", utc(e.at), clean(&e.by), clean(&e.message));
    }
    if rec.dropped > 0 {
        out!(
            "({} routine lines not kept: the record's bound was reached)",
            rec.dropped
        );
    }
    exit::OK
}

/// The route's lease holder, for `status`: `None` when nobody holds it.
pub(crate) async fn holder_of(cli: &Cli, route: &str) -> Result<Option<Lease>, String> {
    let store = open(cli).await?;
    store.lease(route).await.map_err(|e| e.to_string())
}

/// What happened to a gate.
pub(crate) enum Asked {
    /// Nobody holds the route's lease: no rollout runs.
    NoHolder,
    /// The holder applied it.
    Applied(Lease),
    /// Recorded, but not applied within the wait.
    Waiting(Lease),
}

/// Records `gate` for the rollout holding `route`'s lease and waits up to `wait`
/// for the holder to apply it.
pub(crate) async fn ask(
    cli: &Cli,
    route: &str,
    gate: Gate,
    wait: Duration,
) -> Result<Asked, String> {
    let store = open(cli).await?;
    let Some(lease) = store.lease(route).await.map_err(|e| e.to_string())? else {
        return Ok(Asked::NoHolder);
    };
    let Some(id) = lease.rollout.clone() else {
        return Ok(Asked::NoHolder);
    };
    let by = holder(cli)?.name;
    let asked = store
        .request(&id, gate, &by)
        .await
        .map_err(|e| e.to_string())?;
    let until = tokio::time::Instant::now() + wait;
    loop {
        let gates = store.gates(&id).await.map_err(|e| e.to_string())?;
        if gates
            .iter()
            .any(|g| g.id == asked.id && g.applied.is_some())
        {
            return Ok(Asked::Applied(lease));
        }
        if tokio::time::Instant::now() >= until {
            return Ok(Asked::Waiting(lease));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Prints what a gate did; returns the exit code.
pub(crate) fn said(cli: &Cli, gate: Gate, asked: &Asked) -> u8 {
    match asked {
        Asked::NoHolder => crate::failed(
            cli,
            exit::INVALID,
            &format!("no rollout is running on this route: there is nothing to {gate}"),
        ),
        Asked::Applied(lease) => {
            let id = lease.rollout.clone().unwrap_or_default();
            if cli.json {
                out!(
                    "{}",
                    json!({"gate": gate.as_str(), "rollout": id, "holder": lease.holder.name, "applied": true})
                );
            } else {
                out!("{gate}: applied by {} to rollout {id}", lease.holder);
            }
            exit::OK
        }
        Asked::Waiting(lease) => crate::failed(
            cli,
            exit::FAILED,
            &format!(
                "{gate} recorded for rollout {}, but {} has not applied it yet; it will at its next check round",
                lease.rollout.clone().unwrap_or_default(),
                lease.holder
            ),
        ),
    }
}

/// `meshkit store create-table | prune`.
pub(crate) async fn admin(cli: &Cli, action: &crate::StoreAction) -> u8 {
    match action {
        crate::StoreAction::CreateTable => {
            let table = match cli
                .store
                .clone()
                .or_else(|| std::env::var("MESHKIT_STORE").ok())
                .as_deref()
                .and_then(|s| s.strip_prefix("dynamodb:"))
            {
                Some(t) if !t.is_empty() => t.to_owned(),
                _ => {
                    return crate::failed(
                        cli,
                        exit::INVALID,
                        "create-table needs --store dynamodb:TABLE",
                    );
                }
            };
            let sdk = match aws_env::sdk(cli).await {
                Ok(s) => s,
                Err(e) => return crate::failed(cli, exit::INVALID, &e),
            };
            let client = meshkit::sdk::dynamodb::Client::new(&sdk);
            match DynamoStore::create_table(&client, &table).await {
                Ok(()) => {
                    out!("table {table} is ready");
                    exit::OK
                }
                Err(e) => crate::failed(cli, exit::FAILED, &e.to_string()),
            }
        }
        crate::StoreAction::Prune { older_than } => {
            let store = match open(cli).await {
                Ok(s) => s,
                Err(e) => return crate::failed(cli, exit::INVALID, &e),
            };
            let before = SystemTime::now() - *older_than;
            match store.prune(before).await {
                Ok(n) => {
                    if cli.json {
                        out!("{}", json!({"pruned": n, "ended_before": utc(before)}));
                    } else {
                        out!(
                            "pruned {n} rollout record(s) that ended before {}",
                            utc(before)
                        );
                    }
                    exit::OK
                }
                Err(e) => crate::failed(cli, exit::FAILED, &e.to_string()),
            }
        }
    }
}
