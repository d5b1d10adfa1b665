//! The follower: reads `order-events` into the order index ([`crate::store`]), from its checkpoint.
//!
//! Why the index is written from the log and not by the request handlers: the log is the
//! system of record, and only a reader of the log can store "everything up to offset N is
//! applied" truthfully. Handlers finish in any order, a record in doubt may land later, and a
//! record can be written twice; a reader that applies records in log order, idempotently by
//! version, with the next offsets in the same SQLite transaction, is right after any crash and
//! resumes exactly where it stopped.
//!
//! At start-up the follower reads every partition from the stored offsets (or the beginning),
//! decodes each record and applies what is ready as one batch, until it reached the high
//! watermarks of the moment CartService started (`/ready` says so). Afterwards it does not read
//! back what CartService writes: the handlers hand over each acknowledged record with its offset
//! ([`Written`]), and the follower reads the topic only where the offsets it was told about
//! leave a hole (a record whose publish timed out but landed; see [`Log`]). Reading back every
//! record cost the embedded broker as much as a consumer does (~0.1 ms of its CPU per order) and
//! a third of the closed loop's throughput on this machine. [`Progress`] tells
//! [`crate::orders`] which acknowledged events the index now holds, so their in-memory slots
//! can go.
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
/// How often the follower looks for records it was not told about (see [`Log`]).
const GAP_CHECK: Duration = Duration::from_millis(250);

/// A record this process wrote and the broker acknowledged: the follower indexes it without
/// reading it back.
#[derive(Debug)]
pub(crate) struct Written {
    pub(crate) offset: i64,
    pub(crate) row: Row,
}

/// The follower's bookkeeping of the log, per partition.
///
/// Records reach the index two ways: those CartService wrote itself come from the handlers once
/// acknowledged ([`Written`]), in offset order per partition but not exactly (handlers finish
/// in any order); everything else (a record whose publish timed out but landed, or one another
/// writer put there) can only be read from the topic. `next` is the checkpoint: everything
/// before it is in the index. An acknowledged offset beyond it waits in `ahead` until the
/// offsets before it are known. A partition whose checkpoint is stuck behind `ahead` for a whole
/// [`GAP_CHECK`] has a record nobody told the follower about: the partition is read from its
/// checkpoint until it passes what was ahead (`read_until`), and the records known to be
/// indexed are skipped without decoding. At start-up every partition is read up to the end the
/// topic had.
struct Log {
    next: HashMap<i32, i64>,
    ahead: HashMap<i32, std::collections::BTreeSet<i64>>,
    read_until: HashMap<i32, i64>,
    /// The checkpoint of each partition with records ahead, as of the last check.
    quiet: HashMap<i32, i64>,
}

impl Log {
    /// The partitions being read.
    fn reading(&self) -> Vec<i32> {
        let mut partitions: Vec<i32> = self
            .read_until
            .iter()
            .filter(|(p, until)| self.next.get(p).copied().unwrap_or(0) < **until)
            .map(|(p, _)| *p)
            .collect();
        partitions.sort_unstable();
        partitions
    }

    /// An acknowledged record at `offset`: whether to index it (not already indexed).
    fn acknowledged(&mut self, partition: i32, offset: i64) -> bool {
        let next = self.next.entry(partition).or_insert(0);
        if offset < *next {
            return false;
        }
        if offset == *next {
            *next += 1;
            let ahead = self.ahead.entry(partition).or_default();
            while ahead.remove(next) {
                *next += 1;
            }
        } else {
            self.ahead.entry(partition).or_default().insert(offset);
        }
        true
    }

    /// A record read from the topic at `offset`: whether to decode and index it (not known).
    fn read(&mut self, partition: i32, offset: i64) -> bool {
        let next = self.next.entry(partition).or_insert(0);
        if offset < *next {
            return false;
        }
        // Offsets missing from the log (control records, compaction) are passed over.
        *next = offset + 1;
        let ahead = self.ahead.entry(partition).or_default();
        let known = ahead.remove(&offset);
        while ahead.first().is_some_and(|first| *first < *next) {
            ahead.pop_first();
        }
        while ahead.remove(next) {
            *next += 1;
        }
        !known
    }

    /// Starts reading the partitions whose checkpoint has not moved while records waited ahead.
    fn look_for_gaps(&mut self) {
        let mut quiet = HashMap::new();
        for (partition, ahead) in &self.ahead {
            let Some(last) = ahead.last() else { continue };
            let next = self.next.get(partition).copied().unwrap_or(0);
            if self.quiet.get(partition) == Some(&next) {
                let until = self.read_until.entry(*partition).or_insert(0);
                *until = (*until).max(last + 1);
            }
            quiet.insert(*partition, next);
        }
        self.quiet = quiet;
    }
}

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

    /// The next offset to apply, per partition.
    fn snapshot(&self) -> HashMap<i32, i64> {
        self.next
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
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
        registry.register(Box::new(applied.clone()))?;
        registry.register(Box::new(skipped.clone()))?;
        registry.register(Box::new(indexed.clone()))?;
        Ok(FollowMetrics {
            applied,
            skipped,
            indexed,
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
    /// What the handlers wrote and the broker acknowledged (one receiver per service).
    pub(crate) written: Arc<tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<Written>>>,
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
        let mut behind = 0;
        let mut targets = HashMap::new();
        for partition in 0..self.partitions {
            let (low, high) = ends.get(&partition).copied().unwrap_or((0, 0));
            let start = stored.get(&partition).copied().unwrap_or(low).max(low);
            behind += high - start;
            targets.insert(partition, high);
            stored.insert(partition, start);
        }
        self.progress.advance(&stored);
        let targets_for_run = targets.clone();
        tracing::info!(topic = %self.topic, resumed = ?stored, behind, "following the topic into the order index");
        tokio::spawn(async move { self.run(consumer, targets_for_run).await });
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

    async fn run(
        mut self,
        consumer: Arc<StreamConsumer<KafkaContext>>,
        targets: HashMap<i32, i64>,
    ) {
        let written = Arc::clone(&self.written);
        let Ok(mut written) = written.try_lock() else {
            // Another follower of this service already runs (it cannot: start-up starts one).
            tracing::error!("a second order index follower was started; stopping it");
            return;
        };
        let mut log = Log {
            next: self.progress.snapshot(),
            ahead: HashMap::new(),
            read_until: targets,
            quiet: HashMap::new(),
        };
        self.reassign(&consumer, &log);
        let mut chunks = consumer.stream().ready_chunks(BATCH);
        let mut gaps = tokio::time::interval(GAP_CHECK);
        let mut acked = Vec::with_capacity(BATCH);
        let mut stored = log.next.clone();
        loop {
            let mut rows = Vec::new();
            let reading_before = log.reading();
            tokio::select! {
                _ = self.alive.changed() => {
                    tracing::debug!("the service stopped; so does the order index follower");
                    return;
                }
                received = written.recv_many(&mut acked, BATCH) => {
                    if received == 0 {
                        return;
                    }
                    for record in acked.drain(..) {
                        if log.acknowledged(record.row.partition, record.offset) {
                            rows.push(record.row);
                        }
                    }
                }
                chunk = chunks.next() => {
                    let Some(chunk) = chunk else { break };
                    let mut read = 0;
                    for message in chunk {
                        let message = match message {
                            Ok(message) => message,
                            Err(e) => {
                                // librdkafka retries on its own; the stream goes on after this.
                                tracing::warn!(error = %e, "the order index follower's consumer reported an error");
                                continue;
                            }
                        };
                        if !log.read(message.partition(), message.offset()) {
                            continue;
                        }
                        read += 1;
                        if let Some(row) = self.decode(&message).await {
                            rows.push(row);
                        }
                    }
                    self.metrics.applied.inc_by(read);
                }
                _ = gaps.tick() => log.look_for_gaps(),
            }
            if rows.is_empty() && log.next == stored {
                if log.reading() != reading_before {
                    self.reassign(&consumer, &log);
                }
                continue;
            }
            let offsets: Vec<(i32, i64)> = log.next.iter().map(|(p, o)| (*p, *o)).collect();
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
            stored.clone_from(&log.next);
            self.progress.advance(&log.next);
            self.orders.evict_indexed(&self.progress);
            if log.reading() != reading_before {
                self.reassign(&consumer, &log);
            }
        }
        tracing::error!("the order index follower's stream ended");
        self.progress
            .set_problem(Some("the order index follower stopped".into()));
    }

    /// Reads exactly the partitions that have something to read, from their checkpoints.
    fn reassign(&self, consumer: &StreamConsumer<KafkaContext>, log: &Log) {
        let mut assignment = TopicPartitionList::new();
        for partition in log.reading() {
            let next = log.next.get(&partition).copied().unwrap_or(0);
            if let Err(e) =
                assignment.add_partition_offset(&self.topic, partition, Offset::Offset(next))
            {
                tracing::error!(error = %e, partition, "building the follower's assignment");
            }
        }
        if let Err(e) = consumer.assign(&assignment) {
            // The next change retries; meanwhile the checkpoint waits (visible in the lag).
            tracing::error!(error = %e, "assigning the follower's partitions");
        }
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

#[cfg(test)]
mod log_tests {
    use super::*;

    fn log(next: i64) -> Log {
        Log {
            next: HashMap::from([(0, next)]),
            ahead: HashMap::new(),
            read_until: HashMap::new(),
            quiet: HashMap::new(),
        }
    }

    #[test]
    fn acknowledged_records_move_the_checkpoint_in_order_only() {
        let mut log = log(10);
        assert!(log.acknowledged(0, 11)); // 10 not known yet: 11 waits ahead
        assert_eq!(log.next[&0], 10);
        assert!(log.acknowledged(0, 10)); // now both
        assert_eq!(log.next[&0], 12);
        assert!(!log.acknowledged(0, 11), "already indexed");
        assert!(log.reading().is_empty());
    }

    #[test]
    fn a_hole_that_stays_is_read_and_known_records_are_skipped() {
        let mut log = log(10);
        assert!(log.acknowledged(0, 11));
        assert!(log.acknowledged(0, 12));
        log.look_for_gaps();
        assert!(log.reading().is_empty(), "one quiet check is not enough");
        log.look_for_gaps();
        assert_eq!(
            log.reading(),
            vec![0],
            "the checkpoint stayed behind what waits ahead"
        );
        assert!(log.read(0, 10), "the unknown record is decoded");
        assert_eq!(log.next[&0], 13, "and the known ones after it count");
        assert!(
            !log.read(0, 11) && !log.read(0, 12),
            "known records are not decoded"
        );
        assert!(log.reading().is_empty(), "done once past what was ahead");
    }

    #[test]
    fn start_up_reads_to_the_end_and_skips_missing_offsets() {
        let mut log = log(0);
        log.read_until.insert(0, 5);
        assert_eq!(log.reading(), vec![0]);
        assert!(log.read(0, 0));
        assert!(log.read(0, 3), "offsets 1 and 2 are not in the log");
        assert_eq!(log.next[&0], 4);
        assert!(log.read(0, 4));
        assert!(log.reading().is_empty());
    }
}
