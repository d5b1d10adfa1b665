//! The apply loop: `order-events` → decode → view (or dead-letter topic), exactly once.
//!
//! Why it is built this way:
//!
//! * **Every replica holds the whole view**, so there is no consumer group: the consumer
//!   *assigns* every partition of the topic, starting at the offsets stored in SQLite (or the
//!   beginning). No group join, no rebalance, no offsets committed to Kafka.
//! * **Exactly once into the view**: records are taken in batches of whatever is ready (up to
//!   `APPLY_BATCH_SIZE`), and one SQLite transaction applies a batch's events *and* stores the
//!   next offsets and the `applied_total` counter. A crash loses either the whole transaction
//!   or nothing, and the restart seeks to what was committed.
//! * **Poison records** (see [`Poison`]) are published to the dead-letter topic and acknowledged
//!   there before the transaction that stores their offset; consumption goes on.
//! * **Transient failures** (registry or broker unavailable, a failing disk) are retried with
//!   capped exponential backoff on the *same* record; nothing is dead-lettered and the offset
//!   does not move past it. What was decoded before it is committed first, so it is visible.
//! * After each commit, waiting `order-details` requests whose version arrived are woken.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use order_events::{OrderEvent, OrderEventCodec, OrderId};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::watch;
use tracing::Instrument;

use crate::dlq::{DeadLetters, Poison};
use crate::kafka::{ensure_topic, topic_state, KafkaConfig, TopicState};
use crate::metrics::ConsumerMetrics;
use crate::store::{Batch, Store};
use crate::waiters::Waiters;

/// The first retry waits this long; each further one twice as long, up to the configured cap.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// How often lag is measured and new partitions are looked for.
const PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// Timeout of metadata and watermark requests.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// What the HTTP side can see of the consumer.
#[derive(Debug, Default)]
pub struct ConsumerState {
    /// Every partition of the topic is assigned.
    pub assigned: AtomicBool,
    /// The assigned partitions.
    pub partitions: Mutex<Vec<i32>>,
    /// The next offset per partition, as committed to SQLite.
    pub next_offsets: Mutex<HashMap<i32, i64>>,
}

impl ConsumerState {
    pub fn is_assigned(&self) -> bool {
        self.assigned.load(Ordering::Acquire)
    }
}

/// Everything the apply loop needs.
pub struct Pipeline {
    pub kafka: KafkaConfig,
    pub topic: String,
    pub topic_partitions: i32,
    pub fetch_wait_max_ms: u32,
    pub batch_size: usize,
    pub backoff_max: Duration,
    pub codec: Arc<OrderEventCodec>,
    pub dead_letters: Arc<DeadLetters>,
    pub store: Arc<Store>,
    pub waiters: Arc<Waiters>,
    pub metrics: ConsumerMetrics,
    pub state: Arc<ConsumerState>,
}

/// Why a record was not decoded.
enum Rejection {
    Poison(Poison),
    Transient(String),
}

/// Work decoded but not yet committed.
#[derive(Default)]
struct Pending {
    events: Vec<OrderEvent>,
    dead_lettered: u64,
    offsets: BTreeMap<i32, i64>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.events.is_empty() && self.dead_lettered == 0 && self.offsets.is_empty()
    }
}

/// Capped exponential backoff that gives up when the service is stopping.
struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    fn new(max: Duration) -> Backoff {
        Backoff {
            next: BACKOFF_START.min(max),
            max,
        }
    }

    /// Sleeps for the current delay (doubling it for next time); `false` if asked to stop.
    async fn wait(&mut self, stop: &mut watch::Receiver<bool>) -> bool {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        if *stop.borrow() {
            return false;
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => true,
            _ = stop.changed() => false,
        }
    }
}

impl Pipeline {
    /// Connects, assigns every partition and applies records until `stop` turns true; then
    /// returns after committing the batch in progress.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let Some(consumer) = self.connect(&mut stop).await else {
            return;
        };
        let probe = tokio::spawn(probe_forever(
            Arc::clone(&consumer),
            self.topic.clone(),
            Arc::clone(&self.state),
            self.metrics.clone(),
            stop.clone(),
        ));
        let mut chunks = consumer
            .stream()
            .map(|r| r.map(|m| m.detach()))
            .ready_chunks(self.batch_size.max(1));
        loop {
            let chunk = tokio::select! {
                biased;
                _ = stop.changed() => break,
                chunk = chunks.next() => chunk,
            };
            let Some(chunk) = chunk else { break };
            let span = tracing::info_span!("batch", records = chunk.len());
            if !self.process(chunk, &mut stop).instrument(span).await {
                break;
            }
            if *stop.borrow() {
                break;
            }
        }
        probe.abort();
        tracing::info!("consumer stopped; everything applied is committed");
    }

    /// Ensures the topics exist and assigns every partition from the stored offsets,
    /// retrying with backoff until it works or the service stops.
    async fn connect(&self, stop: &mut watch::Receiver<bool>) -> Option<Arc<StreamConsumer>> {
        let mut backoff = Backoff::new(self.backoff_max);
        loop {
            match self.try_connect().await {
                Ok(consumer) => return Some(consumer),
                Err(e) => {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "cannot start consuming yet; retrying"
                    );
                    self.metrics.retries.with_label_values(&["connect"]).inc();
                    if !backoff.wait(stop).await {
                        return None;
                    }
                }
            }
        }
    }

    async fn try_connect(&self) -> anyhow::Result<Arc<StreamConsumer>> {
        ensure_topic(&self.kafka, self.dead_letters.topic(), 1, METADATA_TIMEOUT)
            .await
            .context("ensuring the dead-letter topic")?;
        let partitions = ensure_topic(
            &self.kafka,
            &self.topic,
            self.topic_partitions,
            METADATA_TIMEOUT,
        )
        .await
        .context("ensuring the source topic")?;
        let fetch_wait = self.fetch_wait_max_ms.to_string();
        let consumer: StreamConsumer = self
            .kafka
            .client(&[
                // Required by librdkafka's consumer; never used to join a group or commit.
                ("group.id", "order-service-view"),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("auto.offset.reset", "earliest"),
                ("enable.partition.eof", "false"),
                // Tansu holds a fetch for fetch.wait.max.ms even when data is waiting.
                ("fetch.wait.max.ms", &fetch_wait),
            ])
            .create()
            .context("creating the consumer")?;
        let stored: HashMap<i32, i64> = {
            let store = Arc::clone(&self.store);
            let topic = self.topic.clone();
            tokio::task::spawn_blocking(move || store.offsets(&topic))
                .await
                .context("the offsets task failed")??
                .into_iter()
                .collect()
        };
        let mut assignment = TopicPartitionList::new();
        for partition in 0..partitions {
            let offset = stored
                .get(&partition)
                .map_or(Offset::Beginning, |next| Offset::Offset(*next));
            assignment
                .add_partition_offset(&self.topic, partition, offset)
                .context("building the assignment")?;
        }
        consumer
            .assign(&assignment)
            .context("assigning the partitions")?;
        *self
            .state
            .partitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = (0..partitions).collect();
        *self
            .state
            .next_offsets
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = stored.clone();
        self.state.assigned.store(true, Ordering::Release);
        tracing::info!(
            topic = %self.topic,
            partitions,
            resumed = ?stored,
            "assigned every partition"
        );
        Ok(Arc::new(consumer))
    }

    /// Decodes, dead-letters and commits one chunk. `false` if the service is stopping.
    async fn process(
        &self,
        chunk: Vec<KafkaResult<OwnedMessage>>,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let started = Instant::now();
        let mut pending = Pending::default();
        for message in chunk {
            let message = match message {
                Ok(m) => m,
                Err(e) => {
                    // librdkafka reconnects by itself; the position has not moved.
                    tracing::warn!(error = %e, "consumer error");
                    continue;
                }
            };
            let mut backoff = Backoff::new(self.backoff_max);
            let outcome = loop {
                match self.check(&message).await {
                    Ok(event) => break Ok(event),
                    Err(Rejection::Poison(p)) => break Err(p),
                    Err(Rejection::Transient(reason)) => {
                        self.metrics.retries.with_label_values(&["registry"]).inc();
                        tracing::warn!(
                            partition = message.partition(),
                            offset = message.offset(),
                            %reason,
                            "schema registry unavailable; retrying the record"
                        );
                        // Whatever was decoded before this record becomes visible meanwhile.
                        if !self.commit(&mut pending, stop).await || !backoff.wait(stop).await {
                            return false;
                        }
                    }
                }
            };
            match outcome {
                Ok(event) => pending.events.push(event),
                Err(poison) => {
                    if !self
                        .dead_letter(&message, &poison, &mut pending, stop)
                        .await
                    {
                        return false;
                    }
                    pending.dead_lettered += 1;
                }
            }
            pending
                .offsets
                .insert(message.partition(), message.offset() + 1);
        }
        let ok = self.commit(&mut pending, stop).await;
        self.metrics
            .batch_seconds
            .observe(started.elapsed().as_secs_f64());
        ok
    }

    /// Checks the key and decodes the value.
    async fn check(&self, message: &OwnedMessage) -> Result<OrderEvent, Rejection> {
        let key = match message.key() {
            None | Some([]) => return Err(Rejection::Poison(Poison::MissingKey)),
            Some(key) => key,
        };
        let key = std::str::from_utf8(key)
            .map_err(|_| Rejection::Poison(Poison::InvalidKey("not UTF-8".into())))?;
        let key = OrderId::parse(key)
            .map_err(|e| Rejection::Poison(Poison::InvalidKey(e.to_string())))?;
        let event = self.codec.decode(message.payload()).await.map_err(|e| {
            if e.is_poison() {
                Rejection::Poison(Poison::Decode(e))
            } else {
                Rejection::Transient(e.to_string())
            }
        })?;
        if event.key() != key.as_str() {
            return Err(Rejection::Poison(Poison::KeyMismatch {
                key: key.into_string(),
                order_id: event.key().to_owned(),
            }));
        }
        Ok(event)
    }

    /// Publishes a poison record until the broker acknowledges it. `false` if stopping.
    async fn dead_letter(
        &self,
        message: &OwnedMessage,
        poison: &Poison,
        pending: &mut Pending,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let mut backoff = Backoff::new(self.backoff_max);
        loop {
            match self.dead_letters.publish(message, poison).await {
                Ok(()) => {
                    self.metrics
                        .dead_lettered
                        .with_label_values(&[poison.kind()])
                        .inc();
                    tracing::warn!(
                        partition = message.partition(),
                        offset = message.offset(),
                        kind = poison.kind(),
                        error = %poison,
                        "dead-lettered a record"
                    );
                    return true;
                }
                Err(e) => {
                    self.metrics.retries.with_label_values(&["dlq"]).inc();
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "dead-letter publish failed; retrying"
                    );
                    if !self.commit(pending, stop).await || !backoff.wait(stop).await {
                        return false;
                    }
                }
            }
        }
    }

    /// Commits the pending work in one transaction (retrying on failure) and wakes waiters.
    /// `false` if the service stopped before it could commit.
    async fn commit(&self, pending: &mut Pending, stop: &mut watch::Receiver<bool>) -> bool {
        if pending.is_empty() {
            return true;
        }
        let work = std::mem::take(pending);
        let batch = Arc::new(Batch {
            events: work.events,
            dead_lettered: work.dead_lettered,
            offsets: work.offsets.into_iter().collect(),
        });
        let mut backoff = Backoff::new(self.backoff_max);
        loop {
            let store = Arc::clone(&self.store);
            let topic = self.topic.clone();
            let job = Arc::clone(&batch);
            let result = tokio::task::spawn_blocking(move || store.apply(&topic, &job))
                .await
                .context("the store task failed")
                .and_then(|r| r);
            match result {
                Ok(applied) => {
                    self.waiters.notify(&applied.changed);
                    let events = u64::try_from(batch.events.len()).unwrap_or(u64::MAX);
                    self.metrics.applied.inc_by(events);
                    self.metrics.stale.inc_by(applied.stale);
                    self.metrics.applied_total.set(applied.applied_total);
                    let mut next = self
                        .state
                        .next_offsets
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    next.extend(batch.offsets.iter().copied());
                    tracing::debug!(
                        events,
                        changed = applied.changed.len(),
                        stale = applied.stale,
                        dead_lettered = batch.dead_lettered,
                        "committed a batch"
                    );
                    return true;
                }
                Err(e) => {
                    self.metrics.retries.with_label_values(&["store"]).inc();
                    tracing::error!(
                        error = format!("{e:#}"),
                        "committing a batch failed; retrying"
                    );
                    if !backoff.wait(stop).await {
                        return false;
                    }
                }
            }
        }
    }
}

/// Every [`PROBE_INTERVAL`]: measures lag per partition and assigns partitions added to the
/// topic since start (from the beginning).
async fn probe_forever(
    consumer: Arc<StreamConsumer>,
    topic: String,
    state: Arc<ConsumerState>,
    metrics: ConsumerMetrics,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(PROBE_INTERVAL) => {}
            _ = stop.changed() => return,
        }
        let consumer = Arc::clone(&consumer);
        let topic = topic.clone();
        let state = Arc::clone(&state);
        let metrics = metrics.clone();
        let result =
            tokio::task::spawn_blocking(move || probe_once(&consumer, &topic, &state, &metrics))
                .await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = format!("{e:#}"), "lag probe failed"),
            Err(e) => tracing::debug!(error = %e, "lag probe task failed"),
        }
    }
}

fn probe_once(
    consumer: &StreamConsumer,
    topic: &str,
    state: &ConsumerState,
    metrics: &ConsumerMetrics,
) -> anyhow::Result<()> {
    if let TopicState::Partitions(count) = topic_state(consumer.client(), topic, METADATA_TIMEOUT)?
    {
        let known = state
            .partitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let new: Vec<i32> = (0..count).filter(|p| !known.contains(p)).collect();
        if !new.is_empty() {
            let mut assignment = TopicPartitionList::new();
            for partition in &new {
                assignment.add_partition_offset(topic, *partition, Offset::Beginning)?;
            }
            consumer
                .incremental_assign(&assignment)
                .context("assigning new partitions")?;
            tracing::info!(?new, "assigned partitions added to the topic");
            state
                .partitions
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(new);
        }
    }
    let partitions = state
        .partitions
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    for partition in partitions {
        let (low, high) = consumer.fetch_watermarks(topic, partition, METADATA_TIMEOUT)?;
        let next = state
            .next_offsets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&partition)
            .copied()
            .unwrap_or(low);
        metrics
            .lag
            .with_label_values(&[&partition.to_string()])
            .set((high - next.max(low)).max(0));
    }
    Ok(())
}
