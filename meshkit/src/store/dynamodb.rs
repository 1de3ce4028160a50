//! [`DynamoStore`]: the rollout store in one DynamoDB table, for several machines.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, KeySchemaElement, KeyType,
    Put, ScalarAttributeType, TransactWriteItem, Update,
};
use serde_json::json;

use super::codec::{holder_from, holder_json, progress_from, progress_json};
use super::time::{from_ms, to_ms};
use super::{
    Clock, Entry, Gate, GateRequest, Holder, Lease, NewRollout, Progress, RecordState,
    RecordUpdate, RolloutRecord, RolloutStore, StoreError, Summary, check_key, system_clock,
};

type Item = HashMap<String, AttributeValue>;

/// The rollout store in one DynamoDB table, for rollouts run from several machines.
/// Every change is a conditional write (the lease's fencing token and expiry are the
/// condition); nothing on a rollout's path scans.
///
/// # Table
///
/// One table, on-demand, key `pk` (string, partition) and `sk` (string, sort);
/// [`DynamoStore::create_table`] makes it. Items:
///
/// | `pk` | `sk` | what |
/// |---|---|---|
/// | `lease#<route>` | `lease` | the route's lease: `token`, `holder`, `since`, `expires` (ms), `rollout` |
/// | `rollout#<id>` | `record` | the rollout: versions, strategy, `plan`, `started_by`, `started`, `ended`, `state`, `detail`, `progress`, `attempts`, `dropped` |
/// | `rollout#<id>` | `e#<ms>#<n>` | one timeline line: `at`, `by`, `kind`, `message`, and `weights` when the line reports a split |
/// | `rollout#<id>` | `g#<ms>#<n>` | one gate: `gate`, `by`, `at`, `applied` |
/// | `history#<route>` and `history` | `<started ms>#<id>` | the history lines of the route and of all routes |
///
/// IAM: `dynamodb:GetItem`, `PutItem`, `UpdateItem`, `DeleteItem`, `Query`,
/// `TransactWriteItems` on the table (and `CreateTable`, `DescribeTable` for
/// [`DynamoStore::create_table`]). Lease expiries compare the machines' clocks: keep
/// them synchronised (NTP) to well within the lease time.
#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    clock: Clock,
    seq: std::sync::Arc<AtomicU64>,
}

impl std::fmt::Debug for DynamoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoStore")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn get_s(item: &Item, k: &str) -> Option<String> {
    item.get(k).and_then(|v| v.as_s().ok()).cloned()
}

fn get_n(item: &Item, k: &str) -> Option<i64> {
    item.get(k)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("DynamoDB item without a valid {what}"))
}

fn sdk_error<E, R>(table: &str, e: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let text = aws_smithy_types::error::display::DisplayErrorContext(&e).to_string();
    match e.code() {
        Some(
            "ProvisionedThroughputExceededException"
            | "ThrottlingException"
            | "RequestLimitExceeded"
            | "TransactionConflictException"
            | "TransactionInProgressException",
        ) => StoreError::Busy(text),
        Some("ResourceNotFoundException") => StoreError::Unavailable(format!(
            "DynamoDB table '{table}' does not exist: create it with `meshkit --store \
             dynamodb:{table} store create-table` (or DynamoStore::create_table)"
        )),
        _ => StoreError::Unavailable(text),
    }
}

fn build<T>(r: Result<T, aws_sdk_dynamodb::error::BuildError>) -> Result<T, StoreError> {
    r.map_err(|e| StoreError::Invalid(format!("DynamoDB request: {e}")))
}

fn lease_key(route: &str) -> Item {
    HashMap::from([
        ("pk".to_owned(), s(format!("lease#{route}"))),
        ("sk".to_owned(), s("lease")),
    ])
}

fn record_key(id: &str) -> Item {
    HashMap::from([
        ("pk".to_owned(), s(format!("rollout#{id}"))),
        ("sk".to_owned(), s("record")),
    ])
}

fn lease_from(route: &str, item: &Item) -> Result<Lease, StoreError> {
    Ok(Lease {
        route: route.to_owned(),
        holder: get_s(item, "holder")
            .as_deref()
            .and_then(holder_from)
            .ok_or_else(|| corrupt("lease holder"))?,
        token: get_n(item, "token")
            .and_then(|t| u64::try_from(t).ok())
            .ok_or_else(|| corrupt("lease token"))?,
        since: from_ms(get_n(item, "since").unwrap_or(0)),
        expires: from_ms(get_n(item, "expires").unwrap_or(0)),
        rollout: get_s(item, "rollout"),
    })
}

fn summary_from(item: &Item) -> Result<Summary, StoreError> {
    Ok(Summary {
        id: get_s(item, "id").ok_or_else(|| corrupt("id"))?,
        route: get_s(item, "route").ok_or_else(|| corrupt("route"))?,
        stable: get_s(item, "stable").unwrap_or_default(),
        candidate: get_s(item, "candidate").unwrap_or_default(),
        strategy: get_s(item, "strategy").unwrap_or_default(),
        started_by: get_s(item, "started_by_name").unwrap_or_default(),
        started: from_ms(get_n(item, "started").unwrap_or(0)),
        ended: get_n(item, "ended").map(from_ms),
        state: get_s(item, "state")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| corrupt("state"))?,
        detail: get_s(item, "detail"),
    })
}

fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2)
}

impl DynamoStore {
    /// A store in `table` (which must exist: see [`DynamoStore::create_table`]).
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            clock: system_clock(),
            seq: std::sync::Arc::new(AtomicU64::new(0)),
        }
    }

    /// Reads lease times from `clock` instead of the system clock (for tests).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The table.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table (on-demand capacity, key `pk`/`sk`) and waits until it is
    /// active, up to a minute. A table that already exists is left as it is.
    pub async fn create_table(client: &Client, table: &str) -> Result<(), StoreError> {
        let attr = |name: &str| {
            build(
                AttributeDefinition::builder()
                    .attribute_name(name)
                    .attribute_type(ScalarAttributeType::S)
                    .build(),
            )
        };
        let key = |name: &str, kind: KeyType| {
            build(
                KeySchemaElement::builder()
                    .attribute_name(name)
                    .key_type(kind)
                    .build(),
            )
        };
        let created = client
            .create_table()
            .table_name(table)
            .attribute_definitions(attr("pk")?)
            .attribute_definitions(attr("sk")?)
            .key_schema(key("pk", KeyType::Hash)?)
            .key_schema(key("sk", KeyType::Range)?)
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e) if e.code() == Some("ResourceInUseException") => {}
            Err(e) => return Err(sdk_error(table, e)),
        }
        for _ in 0..120 {
            let d = client
                .describe_table()
                .table_name(table)
                .send()
                .await
                .map_err(|e| sdk_error(table, e))?;
            let active = d
                .table()
                .and_then(|t| t.table_status())
                .is_some_and(|s| s.as_str() == "ACTIVE");
            if active {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(StoreError::Unavailable(format!(
            "DynamoDB table '{table}' did not become active within a minute"
        )))
    }

    fn now(&self) -> i64 {
        to_ms((self.clock)())
    }

    fn next(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// The condition that `lease` is the route's with `margin` left, as a
    /// transaction item.
    fn fence_item(
        &self,
        lease: &Lease,
        now: i64,
        margin: Duration,
    ) -> Result<TransactWriteItem, StoreError> {
        let check = build(
            ConditionCheck::builder()
                .table_name(&self.table)
                .set_key(Some(lease_key(&lease.route)))
                .condition_expression("#t = :t AND #e > :min")
                .expression_attribute_names("#t", "token")
                .expression_attribute_names("#e", "expires")
                .expression_attribute_values(":t", n(i64::try_from(lease.token).unwrap_or(-1)))
                .expression_attribute_values(":min", n(now.saturating_add(ttl_ms(margin))))
                .build(),
        )?;
        Ok(TransactWriteItem::builder().condition_check(check).build())
    }

    fn put(&self, item: Item) -> Result<TransactWriteItem, StoreError> {
        let put = build(
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .build(),
        )?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn entry_item(&self, id: &str, e: &Entry) -> Item {
        let at = to_ms(e.at);
        let mut item = HashMap::from([
            ("pk".to_owned(), s(format!("rollout#{id}"))),
            (
                "sk".to_owned(),
                s(format!("e#{at:013}#{:012}", self.next())),
            ),
            ("at".to_owned(), n(at)),
            ("by".to_owned(), s(&e.by)),
            ("kind".to_owned(), s(&e.kind)),
            ("message".to_owned(), s(&e.message)),
        ]);
        if let Some(w) = &e.weights {
            item.insert("weights".to_owned(), s(w));
        }
        item
    }

    /// Why a fenced transaction was refused: the lease as it is now.
    async fn lost(&self, lease: &Lease, margin: Duration) -> StoreError {
        let now = self.now();
        let detail = match self.get_lease_item(&lease.route).await {
            Ok(None) => "the route has no lease".to_owned(),
            Ok(Some(item)) => match lease_from(&lease.route, &item) {
                Ok(l) if l.token != lease.token => format!(
                    "taken over by {} (fencing token {}, ours {})",
                    l.holder, l.token, lease.token
                ),
                Ok(l) if to_ms(l.expires) <= now => format!(
                    "it expired {} ms ago without renewal",
                    now - to_ms(l.expires)
                ),
                Ok(l) => format!(
                    "only {} ms are left on it (renewals are failing); no write starts with \
                     less than {} ms",
                    to_ms(l.expires) - now,
                    margin.as_millis()
                ),
                Err(e) => e.to_string(),
            },
            Err(e) => return e,
        };
        StoreError::Lost {
            route: lease.route.clone(),
            detail,
        }
    }

    /// One item by key, read consistently.
    async fn get_item(&self, key: Item) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error(&self.table, e))?;
        Ok(out.item)
    }

    async fn get_lease_item(&self, route: &str) -> Result<Option<Item>, StoreError> {
        self.get_item(lease_key(route)).await
    }

    async fn get_record_item(&self, id: &str) -> Result<Option<Item>, StoreError> {
        self.get_item(record_key(id)).await
    }

    /// Runs `items` as one transaction; a failed condition is a lost lease.
    async fn transact(
        &self,
        lease: &Lease,
        margin: Duration,
        items: Vec<TransactWriteItem>,
    ) -> Result<(), StoreError> {
        let r = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) => {
                let failed_condition = matches!(
                    e.as_service_error(),
                    Some(TransactWriteItemsError::TransactionCanceledException(c))
                        if c.cancellation_reasons().first().and_then(|r| r.code()) == Some("ConditionalCheckFailed")
                );
                if failed_condition {
                    Err(self.lost(lease, margin).await)
                } else {
                    Err(sdk_error(&self.table, e))
                }
            }
        }
    }

    /// The record's history items (of its route and of all routes).
    fn history_keys(route: &str, started: i64, id: &str) -> [Item; 2] {
        let sk = format!("{started:013}#{id}");
        [format!("history#{route}"), "history".to_owned()]
            .map(|pk| HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk.clone()))]))
    }

    fn update(
        &self,
        key: Item,
        expr: &str,
        values: Vec<(&str, AttributeValue)>,
        names: &[(&str, &str)],
    ) -> Result<TransactWriteItem, StoreError> {
        let mut b = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key))
            .update_expression(expr)
            .condition_expression("attribute_exists(pk)");
        for (k, v) in values {
            b = b.expression_attribute_values(k, v);
        }
        for (k, v) in names {
            b = b.expression_attribute_names(*k, *v);
        }
        Ok(TransactWriteItem::builder()
            .update(build(b.build())?)
            .build())
    }

    /// The fenced writes of a [`RecordUpdate`]: entries in chunks, the record's
    /// progress and count, and the end on the record and its history lines.
    async fn apply(
        &self,
        lease: &Lease,
        id: &str,
        u: &RecordUpdate,
        margin: Duration,
    ) -> Result<(), StoreError> {
        let now = self.now();
        // The record's route and start name its history lines: read only to end it.
        let (route, started) = match &u.end {
            Some(_) => {
                let rec = self
                    .get_record_item(id)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
                (
                    get_s(&rec, "route").ok_or_else(|| corrupt("route"))?,
                    get_n(&rec, "started").ok_or_else(|| corrupt("started"))?,
                )
            }
            None => (String::new(), 0),
        };
        let chunks: Vec<&[Entry]> = if u.entries.is_empty() {
            vec![&[]]
        } else {
            u.entries.chunks(80).collect()
        };
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.into_iter().enumerate() {
            let mut items = vec![self.fence_item(lease, now, margin)?];
            for e in chunk {
                items.push(self.put(self.entry_item(id, e))?);
            }
            if i == last {
                let mut sets = vec!["dropped = dropped + :d".to_owned()];
                let mut values = vec![(":d", n(i64::try_from(u.dropped).unwrap_or(i64::MAX)))];
                let mut names = vec![];
                if let Some(p) = &u.progress {
                    sets.push("progress = :p".into());
                    values.push((":p", s(progress_json(p))));
                }
                if let Some((state, detail)) = &u.end {
                    sets.push("#st = :s, detail = :dt".into());
                    values.push((":s", s(state.as_str())));
                    values.push((":dt", s(detail)));
                    names.push(("#st", "state"));
                    if !state.is_open() || *state == RecordState::Stopped {
                        sets.push("ended = :e".into());
                        values.push((":e", n(now)));
                    }
                    for key in Self::history_keys(&route, started, id) {
                        let mut hv = vec![(":s", s(state.as_str())), (":dt", s(detail))];
                        let mut expr = "SET #st = :s, detail = :dt".to_owned();
                        if !state.is_open() || *state == RecordState::Stopped {
                            expr.push_str(", ended = :e");
                            hv.push((":e", n(now)));
                        }
                        items.push(self.update(key, &expr, hv, &[("#st", "state")])?);
                    }
                }
                items.push(self.update(
                    record_key(id),
                    &format!("SET {}", sets.join(", ")),
                    values,
                    &names,
                )?);
            }
            self.transact(lease, margin, items).await?;
        }
        Ok(())
    }

    async fn query(
        &self,
        pk: &str,
        prefix: Option<&str>,
        newest_first: bool,
        limit: Option<usize>,
    ) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let mut q = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .scan_index_forward(!newest_first)
                .expression_attribute_values(":pk", s(pk))
                .set_exclusive_start_key(start.take());
            q = match prefix {
                Some(p) => q
                    .key_condition_expression("pk = :pk AND begins_with(sk, :p)")
                    .expression_attribute_values(":p", s(p)),
                None => q.key_condition_expression("pk = :pk"),
            };
            if let Some(l) = limit {
                q = q.limit(i32::try_from(l.saturating_sub(out.len()).max(1)).unwrap_or(i32::MAX));
            }
            let page = q.send().await.map_err(|e| sdk_error(&self.table, e))?;
            out.extend(page.items.unwrap_or_default());
            if limit.is_some_and(|l| out.len() >= l) {
                break;
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        Ok(out)
    }
}

fn record_from(item: &Item, entries: Vec<Entry>) -> Result<RolloutRecord, StoreError> {
    let text = |k: &str| get_s(item, k).ok_or_else(|| corrupt(k));
    let plan: Vec<String> = serde_json::from_str(&text("plan")?).map_err(|_| corrupt("plan"))?;
    let attempts: Vec<String> =
        serde_json::from_str(&text("attempts")?).map_err(|_| corrupt("attempts"))?;
    Ok(RolloutRecord {
        rollout: NewRollout {
            id: text("id")?,
            route: text("route")?,
            stable: text("stable")?,
            candidate: text("candidate")?,
            strategy: text("strategy")?,
            plan,
            started_by: holder_from(&text("started_by")?).ok_or_else(|| corrupt("started_by"))?,
        },
        started: from_ms(get_n(item, "started").ok_or_else(|| corrupt("started"))?),
        ended: get_n(item, "ended").map(from_ms),
        state: text("state")?.parse().map_err(|_| corrupt("state"))?,
        detail: get_s(item, "detail"),
        progress: progress_from(&text("progress")?).ok_or_else(|| corrupt("progress"))?,
        attempts,
        entries,
        dropped: get_n(item, "dropped")
            .and_then(|d| u64::try_from(d).ok())
            .unwrap_or(0),
    })
}

fn entry_from(item: &Item) -> Option<Entry> {
    Some(Entry {
        at: from_ms(get_n(item, "at")?),
        by: get_s(item, "by")?,
        kind: get_s(item, "kind")?,
        message: get_s(item, "message")?,
        weights: get_s(item, "weights"),
    })
}

#[async_trait::async_trait]
impl RolloutStore for DynamoStore {
    async fn acquire(
        &self,
        route: &str,
        holder: &Holder,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        check_key("a route", route)?;
        for _ in 0..3 {
            let now = self.now();
            let current = self.get_lease_item(route).await?;
            let old_token = match &current {
                Some(item) => {
                    let l = lease_from(route, item)?;
                    if to_ms(l.expires) > now {
                        return Err(StoreError::Held {
                            route: route.to_owned(),
                            holder: Box::new(l.holder),
                            since: l.since,
                            expires: l.expires,
                            rollout: l.rollout,
                        });
                    }
                    Some(i64::try_from(l.token).unwrap_or(i64::MAX - 1))
                }
                None => None,
            };
            let token = old_token.map_or(1, |t| t + 1);
            let expires = now.saturating_add(ttl_ms(ttl));
            let mut item = lease_key(route);
            item.insert("token".into(), n(token));
            item.insert("holder".into(), s(holder_json(holder)));
            item.insert("since".into(), n(now));
            item.insert("expires".into(), n(expires));
            let mut put = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item.clone()));
            put = match old_token {
                None => put.condition_expression("attribute_not_exists(pk)"),
                Some(t) => put
                    .condition_expression("#t = :old AND #e <= :now")
                    .expression_attribute_names("#t", "token")
                    .expression_attribute_names("#e", "expires")
                    .expression_attribute_values(":old", n(t))
                    .expression_attribute_values(":now", n(now)),
            };
            match put.send().await {
                Ok(_) => return lease_from(route, &item),
                // Someone else took it between the read and the write: read again.
                Err(e) if e.code() == Some("ConditionalCheckFailedException") => continue,
                Err(e) => return Err(sdk_error(&self.table, e)),
            }
        }
        Err(StoreError::Busy(format!(
            "the lease of route {route} changed hands three times while taking it"
        )))
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease, StoreError> {
        let now = self.now();
        let expires = now.saturating_add(ttl_ms(ttl));
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(lease_key(&lease.route)))
            .update_expression("SET #e = :new")
            .condition_expression("#t = :t AND #e > :now")
            .expression_attribute_names("#t", "token")
            .expression_attribute_names("#e", "expires")
            .expression_attribute_values(":t", n(i64::try_from(lease.token).unwrap_or(-1)))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":new", n(expires))
            .send()
            .await;
        match r {
            Ok(_) => Ok(Lease {
                expires: from_ms(expires),
                ..lease.clone()
            }),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {
                Err(self.lost(lease, Duration::ZERO).await)
            }
            Err(e) => Err(sdk_error(&self.table, e)),
        }
    }

    async fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(lease_key(&lease.route)))
            .update_expression("SET #e = :zero")
            .condition_expression("#t = :t")
            .expression_attribute_names("#t", "token")
            .expression_attribute_names("#e", "expires")
            .expression_attribute_values(":t", n(i64::try_from(lease.token).unwrap_or(-1)))
            .expression_attribute_values(":zero", n(0))
            .send()
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(()),
            Err(e) => Err(sdk_error(&self.table, e)),
        }
    }

    async fn lease(&self, route: &str) -> Result<Option<Lease>, StoreError> {
        let now = self.now();
        match self.get_lease_item(route).await? {
            Some(item) => {
                let l = lease_from(route, &item)?;
                Ok((to_ms(l.expires) > now).then_some(l))
            }
            None => Ok(None),
        }
    }

    async fn open(&self, lease: &Lease, r: &NewRollout) -> Result<(), StoreError> {
        check_key("a rollout id", &r.id)?;
        let now = self.now();
        // The lease names the rollout: its update is the fence.
        let lease_update = {
            let b = Update::builder()
                .table_name(&self.table)
                .set_key(Some(lease_key(&lease.route)))
                .update_expression("SET rollout = :id")
                .condition_expression("#t = :t AND #e > :now")
                .expression_attribute_names("#t", "token")
                .expression_attribute_names("#e", "expires")
                .expression_attribute_values(":t", n(i64::try_from(lease.token).unwrap_or(-1)))
                .expression_attribute_values(":now", n(now))
                .expression_attribute_values(":id", s(&r.id));
            TransactWriteItem::builder()
                .update(build(b.build())?)
                .build()
        };
        let mut items = vec![lease_update];
        match self.get_record_item(&r.id).await? {
            Some(rec) => {
                let mut attempts: Vec<String> = get_s(&rec, "attempts")
                    .and_then(|a| serde_json::from_str(&a).ok())
                    .ok_or_else(|| corrupt("attempts"))?;
                attempts.push(lease.holder.name.clone());
                let started = get_n(&rec, "started").ok_or_else(|| corrupt("started"))?;
                items.push(self.update(
                    record_key(&r.id),
                    "SET #st = :s, attempts = :a REMOVE ended, detail",
                    vec![(":s", s("running")), (":a", s(json!(attempts).to_string()))],
                    &[("#st", "state")],
                )?);
                for key in Self::history_keys(&r.route, started, &r.id) {
                    items.push(self.update(
                        key,
                        "SET #st = :s REMOVE ended, detail",
                        vec![(":s", s("running"))],
                        &[("#st", "state")],
                    )?);
                }
            }
            None => {
                let mut rec = record_key(&r.id);
                let common = [
                    ("id", s(&r.id)),
                    ("route", s(&r.route)),
                    ("stable", s(&r.stable)),
                    ("candidate", s(&r.candidate)),
                    ("strategy", s(&r.strategy)),
                    ("started", n(now)),
                    ("state", s("running")),
                ];
                for (k, v) in common.clone() {
                    rec.insert(k.to_owned(), v);
                }
                rec.insert("plan".into(), s(json!(r.plan).to_string()));
                rec.insert("started_by".into(), s(holder_json(&r.started_by)));
                rec.insert("progress".into(), s(progress_json(&Progress::default())));
                rec.insert("attempts".into(), s(json!([lease.holder.name]).to_string()));
                rec.insert("dropped".into(), n(0));
                items.push(self.put(rec)?);
                for mut key in Self::history_keys(&r.route, now, &r.id) {
                    for (k, v) in common.clone() {
                        key.insert(k.to_owned(), v);
                    }
                    key.insert("started_by_name".into(), s(&r.started_by.name));
                    items.push(self.put(key)?);
                }
            }
        }
        self.transact(lease, Duration::ZERO, items).await
    }

    async fn record(
        &self,
        lease: &Lease,
        id: &str,
        update: &RecordUpdate,
    ) -> Result<(), StoreError> {
        self.apply(lease, id, update, Duration::ZERO).await
    }

    async fn fence(
        &self,
        lease: &Lease,
        id: &str,
        pending: &Progress,
        update: &RecordUpdate,
        margin: Duration,
    ) -> Result<(), StoreError> {
        let mut u = update.clone();
        u.progress = Some(pending.clone());
        self.apply(lease, id, &u, margin).await
    }

    async fn open_rollout(&self, route: &str) -> Result<Option<RolloutRecord>, StoreError> {
        let last = self
            .query(&format!("history#{route}"), None, true, Some(1))
            .await?;
        match last.first().map(summary_from).transpose()? {
            Some(sum) if sum.state.is_open() => self.get(&sum.id).await,
            _ => Ok(None),
        }
    }

    async fn get(&self, id: &str) -> Result<Option<RolloutRecord>, StoreError> {
        let Some(rec) = self.get_record_item(id).await? else {
            return Ok(None);
        };
        let entries = self
            .query(&format!("rollout#{id}"), Some("e#"), false, None)
            .await?
            .iter()
            .filter_map(entry_from)
            .collect();
        record_from(&rec, entries).map(Some)
    }

    async fn history(&self, route: Option<&str>, limit: usize) -> Result<Vec<Summary>, StoreError> {
        let pk = route.map_or_else(|| "history".to_owned(), |r| format!("history#{r}"));
        self.query(&pk, None, true, Some(limit))
            .await?
            .iter()
            .take(limit)
            .map(summary_from)
            .collect()
    }

    async fn request(&self, id: &str, gate: Gate, by: &str) -> Result<GateRequest, StoreError> {
        let rec = self
            .get_record_item(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
        let state: RecordState = get_s(&rec, "state")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| corrupt("state"))?;
        if !state.is_open() {
            return Err(StoreError::Invalid(format!(
                "rollout {id} has ended ({state}): there is nothing to {gate}"
            )));
        }
        let now = self.now();
        let sk = format!("g#{now:013}#{:012}#{:016x}", self.next(), fastrand::u64(..));
        let item = HashMap::from([
            ("pk".to_owned(), s(format!("rollout#{id}"))),
            ("sk".to_owned(), s(&sk)),
            ("gate".to_owned(), s(gate.as_str())),
            ("by".to_owned(), s(by)),
            ("at".to_owned(), n(now)),
        ]);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| sdk_error(&self.table, e))?;
        Ok(GateRequest {
            id: sk,
            gate,
            by: by.to_owned(),
            at: from_ms(now),
            applied: None,
        })
    }

    async fn gates(&self, id: &str) -> Result<Vec<GateRequest>, StoreError> {
        self.query(&format!("rollout#{id}"), Some("g#"), false, None)
            .await?
            .iter()
            .map(|item| {
                Ok(GateRequest {
                    id: get_s(item, "sk").ok_or_else(|| corrupt("sk"))?,
                    gate: get_s(item, "gate")
                        .and_then(|g| g.parse().ok())
                        .ok_or_else(|| corrupt("gate"))?,
                    by: get_s(item, "by").unwrap_or_default(),
                    at: from_ms(get_n(item, "at").unwrap_or(0)),
                    applied: get_n(item, "applied").map(from_ms),
                })
            })
            .collect()
    }

    async fn gate_applied(
        &self,
        lease: &Lease,
        id: &str,
        gate: &GateRequest,
        entry: &Entry,
    ) -> Result<(), StoreError> {
        let now = self.now();
        let key = HashMap::from([
            ("pk".to_owned(), s(format!("rollout#{id}"))),
            ("sk".to_owned(), s(&gate.id)),
        ]);
        let items = vec![
            self.fence_item(lease, now, Duration::ZERO)?,
            self.update(key, "SET applied = :a", vec![(":a", n(now))], &[])?,
            self.put(self.entry_item(id, entry))?,
        ];
        self.transact(lease, Duration::ZERO, items).await
    }

    async fn prune(&self, ended_before: SystemTime) -> Result<usize, StoreError> {
        let before = to_ms(ended_before);
        let all = self.query("history", None, false, None).await?;
        let mut n_deleted = 0;
        for item in &all {
            let sum = summary_from(item)?;
            let old = !sum.state.is_open() && sum.ended.is_some_and(|e| to_ms(e) < before);
            if !old {
                continue;
            }
            let mut keys: Vec<Item> = self
                .query(&format!("rollout#{}", sum.id), None, false, None)
                .await?
                .into_iter()
                .filter_map(|i| {
                    Some(HashMap::from([
                        ("pk".to_owned(), i.get("pk")?.clone()),
                        ("sk".to_owned(), i.get("sk")?.clone()),
                    ]))
                })
                .collect();
            keys.extend(Self::history_keys(&sum.route, to_ms(sum.started), &sum.id));
            for key in keys {
                self.client
                    .delete_item()
                    .table_name(&self.table)
                    .set_key(Some(key))
                    .send()
                    .await
                    .map_err(|e| sdk_error(&self.table, e))?;
            }
            n_deleted += 1;
        }
        Ok(n_deleted)
    }
}
