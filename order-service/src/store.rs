//! The durable view: SQLite under `DATA_DIR`, holding the latest version of every order, the
//! consumed offsets and the counters, all changed in one transaction per batch.
//!
//! Why SQLite and why one transaction: the view must survive a `kill -9` without applying a
//! record twice or skipping one, so the offsets are stored in the same transaction as the
//! changes they caused (`service_kit::sqlite`, shared with CartService's order index, says how
//! and why: WAL, `synchronous=NORMAL`, the data directory locked to one process).

use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, Utc};
use order_events::{EventType, Money, Order, OrderEvent, OrderStatus};
use rusqlite::types::Value;
use rusqlite::{params, OptionalExtension};
use service_kit::sqlite::{store_claims, store_offsets, Database};

use crate::domain::shipping_cost;

/// The file name of the database inside `DATA_DIR`.
pub const DB_FILE: &str = "orders.db";

/// Name of the persisted counter of applied records.
pub const APPLIED_TOTAL: &str = "applied_total";
/// Name of the persisted counter of dead-lettered records.
pub const DEAD_LETTERED_TOTAL: &str = "dead_lettered_total";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS orders (
    order_id            TEXT PRIMARY KEY NOT NULL,
    customer_id         TEXT NOT NULL,
    status              TEXT NOT NULL,
    version             INTEGER NOT NULL,
    event_type          TEXT NOT NULL,
    event_id            TEXT NOT NULL,
    updated_at_ms       INTEGER NOT NULL,
    total_cents         INTEGER NOT NULL,
    shipping_cost_cents INTEGER NOT NULL,
    order_json          TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS orders_by_status ON orders (status, order_id);
CREATE INDEX IF NOT EXISTS orders_by_customer ON orders (customer_id, order_id);
CREATE TABLE IF NOT EXISTS counters (
    name  TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
) WITHOUT ROWID;
";

/// One order as the view holds it: the latest version seen, with its shipping cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderView {
    pub order: Order,
    pub shipping_cost: Money,
    pub version: i64,
    pub event_type: EventType,
    /// When the version held here happened (the event's `occurredAt`).
    pub updated_at: DateTime<Utc>,
}

/// What one transaction applies.
#[derive(Debug, Default)]
pub struct Batch {
    /// Decoded events, in consumption order.
    pub events: Vec<OrderEvent>,
    /// Records of this batch that went to the dead-letter topic (already acknowledged there).
    pub dead_lettered: u64,
    /// The next offset to consume per partition, after this batch.
    pub offsets: Vec<(i32, i64)>,
    /// The claim in effect per partition after this batch (`order_events::fencing`), for the
    /// partitions it read that have one: where each fence resumes, stored with the offsets.
    pub claims: Vec<(i32, i64)>,
}

/// What a committed transaction did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    /// `(orderId, version)` of every row that changed, for waking waiters.
    pub changed: Vec<(String, i64)>,
    /// Events that were older than (or equal to) the version already held.
    pub stale: u64,
    /// The persisted `applied_total` after the transaction.
    pub applied_total: i64,
}

/// A page of orders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub orders: Vec<OrderView>,
    /// The last order id of this page when more orders follow.
    pub next_cursor: Option<String>,
}

/// Filters of [`Store::list`].
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub status: Option<OrderStatus>,
    pub customer_id: Option<String>,
    /// Only orders with an id greater than this one.
    pub after: Option<String>,
    pub limit: u32,
}

/// The SQLite view: one writer (the apply loop) and pooled readers (`service_kit::sqlite`).
#[derive(Debug)]
pub struct Store {
    db: Database,
}

impl Store {
    /// Opens (creating if needed) `data_dir/orders.db` with the view's tables.
    pub fn open(data_dir: &Path) -> anyhow::Result<Store> {
        let db = Database::open(data_dir, DB_FILE, SCHEMA).context("opening the view database")?;
        Ok(Store { db })
    }

    /// The stored next offsets of `topic`, by partition.
    pub fn offsets(&self, topic: &str) -> anyhow::Result<Vec<(i32, i64)>> {
        self.db.offsets(topic)
    }

    /// The stored claims in effect of `topic`, by partition (partitions never claimed are
    /// absent): the fences as of the stored offsets.
    pub fn claims(&self, topic: &str) -> anyhow::Result<Vec<(i32, i64)>> {
        self.db.claims(topic)
    }

    /// A persisted counter (0 if never written).
    pub fn counter(&self, name: &str) -> anyhow::Result<i64> {
        self.db
            .read(|conn| {
                conn.query_row(
                    "SELECT value FROM counters WHERE name = ?1",
                    [name],
                    |row| row.get(0),
                )
                .optional()
                .map(Option::unwrap_or_default)
            })
            .with_context(|| format!("reading the counter {name}"))
    }

    /// Applies a batch in one transaction: upserts the events (newer versions only), stores
    /// the offsets and claims and adds to the counters. All or nothing; a batch without
    /// events (claims, fenced or dead-lettered records only) commits its offsets all the same.
    pub fn apply(&self, topic: &str, batch: &Batch) -> anyhow::Result<Applied> {
        self.db
            .write(|tx| {
                let mut applied = Applied::default();
                {
                    let mut upsert = tx.prepare_cached(
                "INSERT INTO orders (order_id, customer_id, status, version, event_type, event_id,
                                     updated_at_ms, total_cents, shipping_cost_cents, order_json)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (order_id) DO UPDATE SET
                     customer_id = excluded.customer_id,
                     status = excluded.status,
                     version = excluded.version,
                     event_type = excluded.event_type,
                     event_id = excluded.event_id,
                     updated_at_ms = excluded.updated_at_ms,
                     total_cents = excluded.total_cents,
                     shipping_cost_cents = excluded.shipping_cost_cents,
                     order_json = excluded.order_json
                 WHERE excluded.version > orders.version",
            )?;
                    for event in &batch.events {
                        let order = event.order();
                        let json = serde_json::to_string(order).context("serializing an order")?;
                        let changed = upsert
                            .execute(params![
                                order.order_id().as_str(),
                                order.customer_id().as_str(),
                                order.status().as_str(),
                                event.version(),
                                event.event_type().as_str(),
                                event.event_id().to_string(),
                                event.occurred_at().timestamp_millis(),
                                order.total_amount().cents(),
                                shipping_cost(order.total_amount()).cents(),
                                json,
                            ])
                            .with_context(|| format!("upserting order {}", order.order_id()))?;
                        if changed > 0 {
                            applied
                                .changed
                                .push((order.order_id().as_str().to_owned(), event.version()));
                        } else {
                            applied.stale += 1;
                        }
                    }
                    store_offsets(tx, topic, &batch.offsets)?;
                    store_claims(tx, topic, &batch.claims)?;
                    let mut count = tx.prepare_cached(
                        "INSERT INTO counters (name, value) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
                    )?;
                    let events = i64::try_from(batch.events.len()).unwrap_or(i64::MAX);
                    count
                        .execute(params![APPLIED_TOTAL, events])
                        .context("counting applied records")?;
                    if batch.dead_lettered > 0 {
                        let dead = i64::try_from(batch.dead_lettered).unwrap_or(i64::MAX);
                        count
                            .execute(params![DEAD_LETTERED_TOTAL, dead])
                            .context("counting dead-lettered records")?;
                    }
                    applied.applied_total = tx
                        .query_row(
                            "SELECT value FROM counters WHERE name = ?1",
                            [APPLIED_TOTAL],
                            |row| row.get(0),
                        )
                        .context("reading applied_total")?;
                }
                Ok(applied)
            })
            .context("applying a batch")
    }

    /// The order with this id, if the view has it.
    pub fn get(&self, order_id: &str) -> anyhow::Result<Option<OrderView>> {
        let row = self
            .db
            .read(|conn| {
                conn.query_row(
                    &format!("SELECT {COLUMNS} FROM orders WHERE order_id = ?1"),
                    [order_id],
                    RawRow::from_row,
                )
                .optional()
            })
            .with_context(|| format!("reading order {order_id}"))?;
        row.map(RawRow::into_view).transpose()
    }

    /// The version of an order held by the view, if any (cheaper than [`Store::get`]).
    pub fn version(&self, order_id: &str) -> anyhow::Result<Option<i64>> {
        self.db
            .read(|conn| {
                conn.query_row(
                    "SELECT version FROM orders WHERE order_id = ?1",
                    [order_id],
                    |row| row.get(0),
                )
                .optional()
            })
            .with_context(|| format!("reading the version of order {order_id}"))
    }

    /// Orders by ascending id, filtered, one page at a time.
    pub fn list(&self, query: &ListQuery) -> anyhow::Result<Page> {
        let mut conditions = Vec::new();
        let mut values: Vec<Value> = Vec::new();
        if let Some(status) = query.status {
            values.push(Value::Text(status.as_str().to_owned()));
            conditions.push(format!("status = ?{}", values.len()));
        }
        if let Some(customer) = &query.customer_id {
            values.push(Value::Text(customer.clone()));
            conditions.push(format!("customer_id = ?{}", values.len()));
        }
        if let Some(after) = &query.after {
            values.push(Value::Text(after.clone()));
            conditions.push(format!("order_id > ?{}", values.len()));
        }
        let limit = query.limit.max(1);
        values.push(Value::Integer(i64::from(limit) + 1));
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM orders {filter} ORDER BY order_id LIMIT ?{}",
            values.len()
        );
        let rows = self
            .db
            .read(|conn| {
                let mut stmt = conn.prepare_cached(&sql)?;
                let rows = stmt.query_map(rusqlite::params_from_iter(values), RawRow::from_row)?;
                rows.collect::<Result<Vec<_>, _>>()
            })
            .context("listing orders")?;
        let more = rows.len() > limit as usize;
        let orders = rows
            .into_iter()
            .take(limit as usize)
            .map(RawRow::into_view)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let next_cursor = if more {
            orders
                .last()
                .map(|o| o.order.order_id().as_str().to_owned())
        } else {
            None
        };
        Ok(Page {
            orders,
            next_cursor,
        })
    }

    /// Every order of the view (for tests and tools; the view fits in memory).
    pub fn all(&self) -> anyhow::Result<Vec<OrderView>> {
        let rows = self
            .db
            .read(|conn| {
                let mut stmt =
                    conn.prepare(&format!("SELECT {COLUMNS} FROM orders ORDER BY order_id"))?;
                let rows = stmt.query_map([], RawRow::from_row)?;
                rows.collect::<Result<Vec<_>, _>>()
            })
            .context("reading every order")?;
        rows.into_iter().map(RawRow::into_view).collect()
    }
}

const COLUMNS: &str = "order_json, shipping_cost_cents, version, event_type, updated_at_ms";

/// A row as stored, before it is parsed back into domain types.
struct RawRow {
    order_json: String,
    shipping_cost_cents: i64,
    version: i64,
    event_type: String,
    updated_at_ms: i64,
}

impl RawRow {
    fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
        Ok(RawRow {
            order_json: row.get(0)?,
            shipping_cost_cents: row.get(1)?,
            version: row.get(2)?,
            event_type: row.get(3)?,
            updated_at_ms: row.get(4)?,
        })
    }

    /// Parses the stored row (through the domain constructors: a corrupted row is an error).
    fn into_view(self) -> anyhow::Result<OrderView> {
        let order: Order =
            serde_json::from_str(&self.order_json).context("a stored order does not parse")?;
        let id = order.order_id().clone();
        Ok(OrderView {
            shipping_cost: Money::from_cents(self.shipping_cost_cents)
                .with_context(|| format!("the stored shipping cost of {id}"))?,
            version: self.version,
            event_type: EventType::parse(&self.event_type)
                .with_context(|| format!("the stored event type of {id}"))?,
            updated_at: DateTime::from_timestamp_millis(self.updated_at_ms)
                .with_context(|| format!("the stored timestamp of {id}"))?,
            order,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use order_events::{Currency, CustomerId, ItemId, OrderId, OrderItem, Quantity};
    use uuid::Uuid;

    pub fn event(id: &str, customer: &str, version: i64, status: OrderStatus) -> OrderEvent {
        let order = Order::new(
            OrderId::parse(id).unwrap(),
            CustomerId::parse(customer).unwrap(),
            DateTime::from_timestamp_millis(1_714_557_600_000).unwrap(),
            vec![OrderItem::new(
                ItemId::parse("sku-1").unwrap(),
                Quantity::new(2).unwrap(),
                Money::parse("999.99").unwrap(),
            )
            .unwrap()],
            Money::parse("1999.98").unwrap(),
            Currency::parse("EUR").unwrap(),
            status,
        )
        .unwrap();
        let event_type = if version == 1 {
            EventType::OrderCreated
        } else {
            EventType::OrderStatusUpdated
        };
        OrderEvent::new(
            Uuid::from_u128(version as u128 + 1),
            event_type,
            version,
            DateTime::from_timestamp_millis(1_714_557_600_000 + version).unwrap(),
            order,
        )
        .unwrap()
    }

    fn batch(events: Vec<OrderEvent>, offsets: Vec<(i32, i64)>) -> Batch {
        Batch {
            events,
            dead_lettered: 0,
            offsets,
            claims: vec![],
        }
    }

    #[test]
    fn applies_newer_versions_only_and_stores_offsets_and_counters() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let applied = store
            .apply(
                "t",
                &batch(
                    vec![
                        event("o-1", "c", 1, OrderStatus::Pending),
                        event("o-1", "c", 3, OrderStatus::Shipped),
                        event("o-1", "c", 2, OrderStatus::Confirmed),
                    ],
                    vec![(0, 3)],
                ),
            )
            .unwrap();
        assert_eq!(applied.changed, vec![("o-1".into(), 1), ("o-1".into(), 3)]);
        assert_eq!(applied.stale, 1);
        assert_eq!(applied.applied_total, 3);
        let view = store.get("o-1").unwrap().unwrap();
        assert_eq!(view.version, 3);
        assert_eq!(view.order.status(), OrderStatus::Shipped);
        assert_eq!(view.shipping_cost, Money::parse("40.00").unwrap());
        assert_eq!(store.offsets("t").unwrap(), vec![(0, 3)]);
        assert!(store.offsets("other").unwrap().is_empty());
        assert_eq!(store.get("nope").unwrap(), None);

        // Survives reopening.
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.counter(APPLIED_TOTAL).unwrap(), 3);
        assert_eq!(store.version("o-1").unwrap(), Some(3));
    }

    #[test]
    fn a_batch_of_claims_and_offsets_only_commits_them_with_the_view() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .apply(
                "t",
                &Batch {
                    events: vec![event("o-1", "c", 1, OrderStatus::Pending)],
                    dead_lettered: 0,
                    offsets: vec![(0, 2), (1, 1)],
                    claims: vec![(0, 0)],
                },
            )
            .unwrap();
        // Only a claim and a fenced record: no event, yet offsets and claim move.
        let applied = store
            .apply(
                "t",
                &Batch {
                    claims: vec![(0, 2)],
                    ..batch(vec![], vec![(0, 4)])
                },
            )
            .unwrap();
        assert_eq!(applied.applied_total, 1);
        assert!(applied.changed.is_empty());
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.offsets("t").unwrap(), vec![(0, 4), (1, 1)]);
        assert_eq!(store.claims("t").unwrap(), vec![(0, 2)]);
        assert!(store.claims("other").unwrap().is_empty());
        assert_eq!(store.version("o-1").unwrap(), Some(1));
    }

    #[test]
    fn lists_by_filter_with_a_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let events = (0..7)
            .map(|i| {
                let status = if i % 2 == 0 {
                    OrderStatus::Pending
                } else {
                    OrderStatus::Confirmed
                };
                let version = if i % 2 == 0 { 1 } else { 2 };
                event(&format!("o-{i}"), &format!("c-{}", i % 3), version, status)
            })
            .collect();
        store.apply("t", &batch(events, vec![])).unwrap();
        let mut query = ListQuery {
            status: Some(OrderStatus::Pending),
            limit: 2,
            ..ListQuery::default()
        };
        let mut seen = vec![];
        loop {
            let page = store.list(&query).unwrap();
            seen.extend(
                page.orders
                    .iter()
                    .map(|o| o.order.order_id().as_str().to_owned()),
            );
            match page.next_cursor {
                Some(c) => query.after = Some(c),
                None => break,
            }
        }
        assert_eq!(seen, ["o-0", "o-2", "o-4", "o-6"]);
        let by_customer = store
            .list(&ListQuery {
                customer_id: Some("c-1".into()),
                limit: 50,
                ..ListQuery::default()
            })
            .unwrap();
        let ids: Vec<_> = by_customer
            .orders
            .iter()
            .map(|o| o.order.order_id().as_str())
            .collect();
        assert_eq!(ids, ["o-1", "o-4"]);
        assert_eq!(by_customer.next_cursor, None);
    }
}
