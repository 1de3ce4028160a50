//! The hub: one poller for the list and one per rollout being watched, however many
//! pages watch it, each publishing a snapshot only when it changed.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

use super::view;
use crate::store::RolloutStore;

/// How many rollouts the list shows.
pub(crate) const LIST_LIMIT: usize = 100;

/// Cumulative requests served per target, read from a data plane in this process.
pub(crate) type Served = Arc<dyn Fn() -> Option<Vec<(String, u64)>> + Send + Sync>;

/// A published snapshot (`None` until the first poll).
pub(crate) type Snapshot = Option<Arc<Value>>;

pub(crate) struct Hub {
    store: Arc<dyn RolloutStore>,
    poll: Duration,
    list: watch::Sender<Snapshot>,
    list_wanted: Notify,
    rollouts: Mutex<HashMap<String, watch::Sender<Snapshot>>>,
    served: HashMap<String, Served>,
    stop: watch::Receiver<bool>,
}

impl Hub {
    pub(crate) fn new(
        store: Arc<dyn RolloutStore>,
        poll: Duration,
        served: HashMap<String, Served>,
        stop: watch::Receiver<bool>,
    ) -> Arc<Self> {
        let hub = Arc::new(Self {
            store,
            poll,
            list: watch::channel(None).0,
            list_wanted: Notify::new(),
            rollouts: Mutex::new(HashMap::new()),
            served,
            stop,
        });
        tokio::spawn(list_poller(hub.clone()));
        hub
    }

    pub(crate) fn store(&self) -> &Arc<dyn RolloutStore> {
        &self.store
    }

    /// The list, kept current while anyone watches.
    pub(crate) fn list(&self) -> watch::Receiver<Snapshot> {
        let rx = self.list.subscribe();
        self.list_wanted.notify_one();
        rx
    }

    /// Rollout `id`'s live view, kept current while anyone watches.
    pub(crate) fn rollout(self: &Arc<Self>, id: &str) -> watch::Receiver<Snapshot> {
        let mut map = self.rollouts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tx) = map.get(id) {
            return tx.subscribe();
        }
        let (tx, rx) = watch::channel(None);
        map.insert(id.to_owned(), tx.clone());
        tokio::spawn(rollout_poller(self.clone(), id.to_owned(), tx));
        rx
    }

    /// One rollout's view now, read from the store (for a plain GET).
    pub(crate) async fn detail_now(&self, id: &str) -> Result<Option<Value>, String> {
        let Some(rec) = self.store.get(id).await.map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let lease = self
            .store
            .lease(&rec.rollout.route)
            .await
            .map_err(|e| e.to_string())?;
        let gates = self.store.gates(id).await.map_err(|e| e.to_string())?;
        Ok(Some(view::detail(&rec, lease.as_ref(), &gates, None)))
    }

    async fn pause(&self) -> bool {
        let mut stop = self.stop.clone();
        tokio::select! {
            () = tokio::time::sleep(self.poll) => true,
            () = stopped(&mut stop) => false,
        }
    }
}

/// Returns once `stop` turns true (or its sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn list_poller(hub: Arc<Hub>) {
    let mut stop = hub.stop.clone();
    loop {
        if *stop.borrow() {
            return;
        }
        if hub.list.receiver_count() == 0 {
            tokio::select! {
                () = hub.list_wanted.notified() => {}
                () = stopped(&mut stop) => return,
            }
            continue;
        }
        let value = match hub.store.history(None, LIST_LIMIT).await {
            Ok(lines) => view::list(&lines),
            Err(e) => json!({"error": format!("the store cannot be read: {e}")}),
        };
        publish(&hub.list, value);
        if !hub.pause().await {
            return;
        }
    }
}

fn publish(tx: &watch::Sender<Snapshot>, value: Value) {
    tx.send_if_modified(|cur| {
        if cur.as_deref() == Some(&value) {
            false
        } else {
            *cur = Some(Arc::new(value));
            true
        }
    });
}

async fn rollout_poller(hub: Arc<Hub>, id: String, tx: watch::Sender<Snapshot>) {
    let mut counts = Counts::default();
    loop {
        {
            let mut map = hub.rollouts.lock().unwrap_or_else(PoisonError::into_inner);
            if tx.receiver_count() == 0 || *hub.stop.borrow() {
                map.remove(&id);
                return;
            }
        }
        let value = match snapshot(&hub, &id, &mut counts).await {
            Ok(Some(v)) => v,
            Ok(None) => json!({"id": id, "missing": true}),
            Err(e) => json!({"id": id, "error": format!("the store cannot be read: {e}")}),
        };
        publish(&tx, value);
        if !hub.pause().await {
            hub.rollouts
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id);
            return;
        }
    }
}

async fn snapshot(hub: &Hub, id: &str, counts: &mut Counts) -> Result<Option<Value>, String> {
    let store = &hub.store;
    let Some(rec) = store.get(id).await.map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let lease = store
        .lease(&rec.rollout.route)
        .await
        .map_err(|e| e.to_string())?;
    let gates = store.gates(id).await.map_err(|e| e.to_string())?;
    let served = hub
        .served
        .get(&rec.rollout.route)
        .and_then(|read| counts.sample(read()));
    let mut v = view::detail(&rec, lease.as_ref(), &gates, served.as_ref());
    v["served_series"] = Value::Array(counts.series.iter().cloned().collect());
    Ok(Some(v))
}

/// Samples of a data plane's request counters: the split served over the last
/// second or so, and its history (one point a second, the last 10 minutes).
#[derive(Default)]
struct Counts {
    samples: VecDeque<(Instant, Vec<(String, u64)>)>,
    series: VecDeque<Value>,
    last_point: Option<Instant>,
}

impl Counts {
    const WINDOW: Duration = Duration::from_secs(1);
    const POINTS: usize = 600;

    fn sample(&mut self, now_counts: Option<Vec<(String, u64)>>) -> Option<Value> {
        let now = Instant::now();
        self.samples.push_back((now, now_counts?));
        while self.samples.len() > 2
            && self
                .samples
                .get(1)
                .is_some_and(|(t, _)| now.duration_since(*t) >= Self::WINDOW)
        {
            self.samples.pop_front();
        }
        let (first_at, first) = self.samples.front()?;
        let (_, last) = self.samples.back()?;
        let window = now.duration_since(*first_at);
        let deltas: Vec<(String, u64)> = last
            .iter()
            .map(|(name, n)| {
                let before = first.iter().find(|(f, _)| f == name).map_or(0, |(_, b)| *b);
                (name.clone(), n.saturating_sub(before))
            })
            .collect();
        let total: u64 = deltas.iter().map(|(_, d)| d).sum();
        if total == 0 || window.is_zero() {
            return Some(
                json!({"window_ms": window.as_millis() as u64, "requests": 0, "split": null}),
            );
        }
        let split: Vec<Value> = deltas
            .iter()
            .map(|(name, d)| json!([view::public(name), *d as f64 * 100.0 / total as f64]))
            .collect();
        let v = json!({"window_ms": window.as_millis() as u64, "requests": total, "split": split});
        if self
            .last_point
            .is_none_or(|t| now.duration_since(t) >= Self::WINDOW)
        {
            self.last_point = Some(now);
            self.series
                .push_back(json!({"at": view::ms(SystemTime::now()), "split": v["split"]}));
            if self.series.len() > Self::POINTS {
                self.series.pop_front();
            }
        }
        Some(v)
    }
}
