//! The follower: reads `order-events` into the order index ([`crate::store`]), from its checkpoint.
//!
//! Why the index is written from the log and not by the request handlers: the log is the
//! system of record, and only a reader of the log can store "everything up to offset N is
//! applied" truthfully. Handlers finish in any order, a record in doubt may land later, and a
//! record can be written twice; a reader that applies records in log order, idempotently by
//! version, with the next offsets in the same SQLite transaction, is right after any crash and
//! resumes exactly where it stopped.
//!
//! So the follower assigns every partition at the stored offsets (or the beginning), decodes
//! each record, and applies what is ready as one batch. Start-up waits until it reached the high
//! watermarks of the moment CartService started (`/ready` says so). Afterwards it reads back
//! CartService's own writes, and [`Progress`] tells [`crate::orders`] which acknowledged events
//! the index now holds, so their in-memory slots can go.
//!
//! Failures: an unreadable record (poison) is skipped with a warning and a metric, as any reader
//! of the topic does; a registry or disk failure is retried on the same record with a capped
//! backoff and shown in `/ready` (`order_index`) meanwhile; nothing is ever skipped because of it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use order_events::OrderEventCodec;
use prometheus::{IntCounter, IntGauge, Registry};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use service_kit::kafka::{watermarks, KafkaContext, KafkaSettings};
use tokio::sync::watch;

use crate::orders::Orders;
use crate::store::{Row, Store};

/// Records applied per SQLite transaction, at most.
const BATCH: usize = 1_000;
/// The longest wait between two attempts at a failing step.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// How far the index is, per partition; and what is wrong with it, if anything.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// The next offset to apply, per partition (everything before it is in the index).
    next: Mutex<HashMap<i32, i64>>,
    /// Why the follower is not making progress, while it is not.
    problem: Mutex<Option<String>>,
    /// Bumped after every applied batch.
    applied: watch::Sender<u64>,
}

impl Progress {
    /// Whether the index holds the record at `offset` of `partition` (and all before it).
    pub(crate) fn holds(&self, partition: i32, offset: i64) -> bool {
        self.next
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&partition)
            .is_some_and(|next| *next > offset)
    }

    /// Whether every partition reached `targets` (next offsets).
    fn reached(&self, targets: &HashMap<i32, i64>) -> bool {
        let next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        targets
            .iter()
            .all(|(p, target)| next.get(p).copied().unwrap_or(0) >= *target)
    }

    fn advance(&self, offsets: &HashMap<i32, i64>) {
        self.next
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(offsets.iter().map(|(p, o)| (*p, *o)));
        self.applied.send_modify(|n| *n += 1);
    }

    #[cfg(test)]
    pub(crate) fn advance_for_test(&self, partition: i32, next: i64) {
        self.advance(&HashMap::from([(partition, next)]));
    }

    /// What keeps the follower from progressing, if anything.
    pub(crate) fn problem(&self) -> Option<String> {
        self.problem
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_problem(&self, problem: Option<String>) {
        *self.problem.lock().unwrap_or_else(PoisonError::into_inner) = problem;
    }

    /// Waits until every partition reached `targets`.
    pub(crate) async fn wait_for(&self, targets: &HashMap<i32, i64>) {
        let mut applied = self.applied.subscribe();
        while !self.reached(targets) {
            if applied.changed().await.is_err() {
                return;
            }
        }
    }
}

/// The follower's metrics.
#[derive(Clone)]
pub(crate) struct FollowMetrics {
    applied: IntCounter,
    skipped: IntCounter,
    indexed: IntGauge,
    in_memory: IntGauge,
}

impl FollowMetrics {
    pub(crate) fn register(registry: &Registry) -> anyhow::Result<FollowMetrics> {
        let applied = IntCounter::new(
            "cart_index_records_read_total",
            "Records of order-events read into the order index since start",
        )?;
        let skipped = IntCounter::new(
            "cart_index_unreadable_records_total",
            "Records of order-events the order index skipped as unreadable",
        )?;
        let indexed = IntGauge::new(
            "cart_index_orders",
            "Orders in the order index, as counted at start-up and after catching up",
        )?;
        let in_memory = IntGauge::new(
            "cart_orders_in_memory",
            "Orders held in memory (being changed, or written and not yet in the index), as of the follower's last batch",
        )?;
        registry.register(Box::new(in_memory.clone()))?;
        registry.register(Box::new(applied.clone()))?;
        registry.register(Box::new(skipped.clone()))?;
        registry.register(Box::new(indexed.clone()))?;
        Ok(FollowMetrics {
            applied,
            skipped,
            indexed,
            in_memory,
        })
    }

    pub(crate) fn set_indexed(&self, orders: u64) {
        self.indexed.set(i64::try_from(orders).unwrap_or(i64::MAX));
    }
}

/// What the follower needs.
pub(crate) struct Follower {
    pub(crate) kafka: KafkaSettings,
    pub(crate) topic: String,
    pub(crate) partitions: i32,
    pub(crate) fetch_wait_max_ms: u32,
    pub(crate) store: Arc<Store>,
    pub(crate) codec: Arc<OrderEventCodec>,
    pub(crate) progress: Arc<Progress>,
    pub(crate) orders: Arc<Orders>,
    pub(crate) metrics: FollowMetrics,
    /// The service's lifetime: when its sender goes (the service stopped or was dropped), the
    /// follower stops and lets go of the index, so the data directory is free again.
    pub(crate) alive: watch::Receiver<()>,
}

impl Follower {
    /// Assigns every partition at the index's checkpoint and starts following. Returns what
    /// start-up must wait for: the high watermarks of this moment, and how many records lie
    /// between the checkpoint and them.
    pub(crate) async fn start(self, timeout: Duration) -> anyhow::Result<(HashMap<i32, i64>, i64)> {
        let consumer: StreamConsumer<KafkaContext> = self
            .kafka
            .client("the order index follower")
            // Required by librdkafka's consumer; never used to join a group or commit.
            .tuning("group.id", "cart-service-index")
            .tuning("auto.offset.reset", "earliest")
            .tuning("enable.partition.eof", "false")
            .tuning("fetch.wait.max.ms", self.fetch_wait_max_ms)
            // Many records per fetch under load: each fetch costs the broker a read of every
            // partition, and nobody waits on this consumer once CartService is ready (measured
            // at 1,000 orders/s: CartService CPU per order -30 %, closed loop +15 %).
            .tuning("fetch.min.bytes", 65_536)
            // Memory must not grow with the topic: a bounded prefetch (librdkafka's default
            // queues up to 64 MB).
            .tuning("queued.max.messages.kbytes", 8_192)
            .require(
                "enable.auto.commit",
                "false",
                "the order index's offsets are committed with the index, in SQLite",
            )
            .create()?;
        let consumer = Arc::new(consumer);
        let ends = watermarks(Arc::clone(&consumer), &self.topic, self.partitions, timeout)
            .await
            .context("Kafka broker unreachable")?;
        let mut stored = self.stored_offsets().await?;
        // A checkpoint past a partition's end was made on another topic of that name (a
        // recreated topic, a wiped broker): the index describes orders this topic does not
        // hold. Rebuilt from the topic, as a fresh instance would.
        let foreign = stored
            .iter()
            .find(|(p, next)| ends.get(p).is_none_or(|(_, high)| **next > *high));
        if let Some((partition, next)) = foreign {
            tracing::warn!(
                partition,
                checkpoint = next,
                end = ends.get(partition).map(|(_, high)| *high),
                "the order index's checkpoint lies past the topic's end; rebuilding the index from the topic"
            );
            let store = Arc::clone(&self.store);
            tokio::task::spawn_blocking(move || store.clear())
                .await
                .context("the index task failed")??;
            stored.clear();
        }
        let mut assignment = TopicPartitionList::new();
        let mut behind = 0;
        let mut targets = HashMap::new();
        for partition in 0..self.partitions {
            let (low, high) = ends.get(&partition).copied().unwrap_or((0, 0));
            let start = stored.get(&partition).copied().unwrap_or(low).max(low);
            behind += high - start;
            targets.insert(partition, high);
            assignment
                .add_partition_offset(&self.topic, partition, Offset::Offset(start))
                .context("building the assignment")?;
            stored.insert(partition, start);
        }
        consumer
            .assign(&assignment)
            .context("assigning the partitions")?;
        self.progress.advance(&stored);
        tracing::info!(topic = %self.topic, resumed = ?stored, behind, "following the topic into the order index");
        tokio::spawn(async move { self.run(consumer).await });
        Ok((targets, behind))
    }

    async fn stored_offsets(&self) -> anyhow::Result<HashMap<i32, i64>> {
        let store = Arc::clone(&self.store);
        let topic = self.topic.clone();
        Ok(tokio::task::spawn_blocking(move || store.offsets(&topic))
            .await
            .context("the offsets task failed")??
            .into_iter()
            .collect())
    }

    async fn run(mut self, consumer: Arc<StreamConsumer<KafkaContext>>) {
        let mut chunks = consumer.stream().ready_chunks(BATCH);
        loop {
            let chunk = tokio::select! {
                chunk = chunks.next() => chunk,
                _ = self.alive.changed() => {
                    tracing::debug!("the service stopped; so does the order index follower");
                    return;
                }
            };
            let Some(chunk) = chunk else { break };
            let mut rows = Vec::with_capacity(chunk.len());
            let mut next = HashMap::new();
            for message in chunk {
                let message = match message {
                    Ok(message) => message,
                    Err(e) => {
                        // librdkafka retries on its own; the stream goes on after this.
                        tracing::warn!(error = %e, "the order index follower's consumer reported an error");
                        continue;
                    }
                };
                if let Some(row) = self.decode(&message).await {
                    rows.push(row);
                }
                next.insert(message.partition(), message.offset() + 1);
            }
            let read = rows.len() as u64;
            let offsets: Vec<(i32, i64)> = next.iter().map(|(p, o)| (*p, *o)).collect();
            let rows = Arc::new(rows);
            self.retry("storing records in the order index", || {
                let store = Arc::clone(&self.store);
                let topic = self.topic.clone();
                let rows = Arc::clone(&rows);
                let offsets = offsets.clone();
                async move {
                    tokio::task::spawn_blocking(move || store.apply(&topic, &rows, &offsets))
                        .await
                        .context("the index task failed")?
                }
            })
            .await;
            self.metrics.applied.inc_by(read);
            self.progress.advance(&next);
            self.orders.evict_indexed(&self.progress);
            self.metrics
                .in_memory
                .set(i64::try_from(self.orders.len()).unwrap_or(i64::MAX));
        }
        tracing::error!("the order index follower's stream ended");
        self.progress
            .set_problem(Some("the order index follower stopped".into()));
    }

    /// The row a record adds to the index, or `None` for an unreadable one (skipped). Retries
    /// while the registry cannot be asked.
    async fn decode(&self, message: &rdkafka::message::BorrowedMessage<'_>) -> Option<Row> {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.codec.decode(message.payload()).await {
                Ok(event) => {
                    self.progress.set_problem(None);
                    return Some(Row {
                        order_id: event.order().order_id().as_str().to_owned(),
                        version: event.version(),
                        partition: message.partition(),
                        record: message.payload().unwrap_or_default().to_vec(),
                    });
                }
                Err(e) if e.is_poison() => {
                    self.metrics.skipped.inc();
                    tracing::warn!(
                        partition = message.partition(),
                        offset = message.offset(),
                        error = %e,
                        "skipping an unreadable record"
                    );
                    return None;
                }
                Err(e) => {
                    let problem = format!("decoding a record: {e}");
                    tracing::warn!(error = problem, "order index follower retrying");
                    self.progress.set_problem(Some(problem));
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// Runs `step` until it succeeds, showing the failure in `/ready` meanwhile.
    async fn retry<F, Fut>(&self, what: &str, mut step: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<()>>,
    {
        let mut backoff = Duration::from_millis(100);
        loop {
            match step().await {
                Ok(()) => {
                    self.progress.set_problem(None);
                    return;
                }
                Err(e) => {
                    let problem = format!("{what}: {e:#}");
                    tracing::error!(error = problem, "order index follower retrying");
                    self.progress.set_problem(Some(problem));
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }
}
