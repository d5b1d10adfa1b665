//! The apply loop: `order-events` → fence → decode → view (or dead-letter topic), exactly once.
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
//! * **Fencing**: CartService instances each own some partitions, and one that lost its
//!   partition (a zombie) may still write to it; `order_events::fencing` decides, in offset
//!   order per partition, which records count. Each record's fencing headers are read before
//!   its key or value: a claim moves the partition's [`Fence`], a zombie's record is skipped
//!   (`order_fenced_records_total`), an unreadable header is poison. The fences are kept in
//!   the loop and stored with the offsets in the same transaction, so a restart resumes both.
//! * After each commit, waiting `order-details` requests whose version arrived are woken.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use order_events::{Fence, OrderEvent, OrderEventCodec, OrderId};
use prometheus::IntGauge;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::watch;
use tracing::Instrument;

use crate::dlq::{DeadLetters, Poison};
use crate::fence::marked;
use crate::metrics::ConsumerMetrics;
use crate::store::{Batch, Store};
use crate::waiters::Waiters;
use order_events::fencing::Verdict;
use service_kit::kafka::{ensure_topic, topic_partitions, KafkaContext, KafkaSettings, TopicSpec};

/// The first retry waits this long; each further one twice as long, up to the configured cap.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// How often lag is measured and new partitions are looked for.
const PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// Timeout of metadata and watermark requests.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// What the HTTP side can see of the consumer, and whether it is alive and making progress.
#[derive(Debug)]
pub struct ConsumerState {
    /// Every partition of the topic is assigned.
    pub assigned: AtomicBool,
    /// The assigned partitions.
    pub partitions: Mutex<Vec<i32>>,
    /// The next offset per partition, as committed to SQLite.
    pub next_offsets: Mutex<HashMap<i32, i64>>,
    /// Why the consumer task ended, once it has (it never ends while the service runs).
    ended: Mutex<Option<String>>,
    /// Records waiting (the sum of the lag), as last measured.
    lag: AtomicI64,
    /// The last commit, or the last time nothing was waiting.
    last_progress: Mutex<Instant>,
    /// Longer than this without progress while records wait is a stall.
    stall_timeout: Duration,
    /// The `consumer_up` gauge, kept equal to [`ConsumerState::health`] being `Ok`.
    up: IntGauge,
}

impl ConsumerState {
    pub fn new(stall_timeout: Duration, up: IntGauge) -> ConsumerState {
        up.set(0);
        ConsumerState {
            assigned: AtomicBool::new(false),
            partitions: Mutex::default(),
            next_offsets: Mutex::default(),
            ended: Mutex::default(),
            lag: AtomicI64::new(0),
            last_progress: Mutex::new(Instant::now()),
            stall_timeout,
            up,
        }
    }

    pub fn is_assigned(&self) -> bool {
        self.assigned.load(Ordering::Acquire)
    }

    /// Why the consumer task ended, if it has.
    pub fn ended(&self) -> Option<String> {
        self.ended
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records that the consumer task ended (the first reason wins).
    pub fn mark_ended(&self, reason: impl Into<String>) {
        self.ended
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert_with(|| reason.into());
        self.up.set(0);
    }

    /// The consumer committed something.
    pub fn progressed(&self) {
        *self
            .last_progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }

    /// The lag probe measured `waiting` records in total; nothing waiting counts as progress.
    pub fn observe_lag(&self, waiting: i64) {
        self.lag.store(waiting, Ordering::Release);
        if waiting <= 0 {
            self.progressed();
        }
    }

    /// `Ok` while the consumer is assigned, running, and not stalled (no commit for longer
    /// than the stall timeout while records are waiting); otherwise why not. Also sets the
    /// `consumer_up` gauge.
    pub fn health(&self) -> Result<(), String> {
        let health = self.check();
        self.up.set(i64::from(health.is_ok()));
        health
    }

    fn check(&self) -> Result<(), String> {
        if let Some(reason) = self.ended() {
            return Err(format!("the consumer has stopped: {reason}"));
        }
        if !self.is_assigned() {
            return Err("partitions are not assigned yet".into());
        }
        let waiting = self.lag.load(Ordering::Acquire);
        let idle = self
            .last_progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .elapsed();
        if waiting > 0 && idle > self.stall_timeout {
            return Err(format!(
                "the consumer is stalled: nothing committed for {} s while {waiting} records are waiting",
                idle.as_secs()
            ));
        }
        Ok(())
    }
}

/// How the consumer task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsumerEnd {
    /// The service asked it to stop; everything applied is committed.
    Stopped,
    /// It cannot go on (e.g. a dead letter that can never be published); the reason.
    Failed(String),
    /// It could never start: the cluster refused our certificate check or credentials, or the
    /// configuration is invalid. Retrying cannot help; the service stops with the reason.
    Misconfigured(String),
}

/// How connecting ended.
enum Connected {
    /// Assigned, with the stored fence of each partition.
    Consumer(Arc<Consumer_>, Fences),
    Stopped,
    Misconfigured(String),
}

type Consumer_ = StreamConsumer<KafkaContext>;

/// The fence of each partition (`order_events::fencing`), as of the records read so far.
/// Loaded at connect from the stored claims and owned by [`Pipeline::run`]: it is ahead of the
/// stored fences only by the pending records (whose claims are committed with their offsets).
/// A commit is retried until it succeeds or the service stops; every path on which it did not
/// succeed ends `run` (`Flow::Stop`/`Flow::Fail`), dropping this map, and nothing restarts the
/// loop in the same process, so a fence ahead of what is committed is never used.
type Fences = HashMap<i32, Fence>;

/// What to do after a step of the loop.
enum Flow {
    Continue,
    Stop,
    Fail(String),
}

/// Everything the apply loop needs.
pub struct Pipeline {
    pub kafka: KafkaSettings,
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
    /// Attempts to publish a dead letter the producer refuses for good, before stopping.
    pub dlq_max_attempts: u32,
    /// Test-only (feature `fault-injection`): panic on reading a record with this key.
    #[cfg(feature = "fault-injection")]
    pub fault_panic_on_key: Option<String>,
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
    /// The claim in effect per partition (those that have one), as of the same records as
    /// `offsets`.
    claims: BTreeMap<i32, i64>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.events.is_empty()
            && self.dead_lettered == 0
            && self.offsets.is_empty()
            && self.claims.is_empty()
    }

    /// The record at `offset` of `partition` is done with: the partition resumes after it,
    /// with its fence as it is now.
    fn done(&mut self, partition: i32, offset: i64, fence: Option<&Fence>) {
        self.offsets.insert(partition, offset + 1);
        if let Some(claim) = fence.and_then(Fence::current) {
            self.claims.insert(partition, claim);
        }
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
    /// returns after committing the batch in progress. Returns [`ConsumerEnd::Failed`] when it
    /// cannot go on (the caller marks the state; the service is then not ready).
    pub async fn run(self, mut stop: watch::Receiver<bool>) -> ConsumerEnd {
        let (consumer, mut fences) = match self.connect(&mut stop).await {
            Connected::Consumer(consumer, fences) => (consumer, fences),
            Connected::Stopped => return ConsumerEnd::Stopped,
            Connected::Misconfigured(reason) => return ConsumerEnd::Misconfigured(reason),
        };
        // Aborted however this function ends, a panic included.
        let _probe = AbortOnDrop(tokio::spawn(probe_forever(
            Arc::clone(&consumer),
            self.topic.clone(),
            Arc::clone(&self.state),
            self.metrics.clone(),
            stop.clone(),
        )));
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
            let Some(chunk) = chunk else {
                let reason = "the Kafka consumer stream ended".to_owned();
                tracing::error!(topic = %self.topic, "{reason}; consumption stopped");
                return ConsumerEnd::Failed(reason);
            };
            let span = tracing::info_span!("batch", records = chunk.len());
            match self
                .process(chunk, &mut fences, &mut stop)
                .instrument(span)
                .await
            {
                Flow::Continue => {}
                Flow::Stop => break,
                Flow::Fail(reason) => return ConsumerEnd::Failed(reason),
            }
            if *stop.borrow() {
                break;
            }
        }
        tracing::info!("consumer stopped; everything applied is committed");
        ConsumerEnd::Stopped
    }

    /// Ensures the topics exist and assigns every partition from the stored offsets,
    /// retrying with backoff until it works or the service stops.
    async fn connect(&self, stop: &mut watch::Receiver<bool>) -> Connected {
        let mut backoff = Backoff::new(self.backoff_max);
        loop {
            match self.try_connect().await {
                Ok((consumer, fences)) => return Connected::Consumer(consumer, fences),
                Err(e) if service_kit::kafka::is_misconfigured(&e) => {
                    let reason = format!("{e:#}");
                    tracing::error!(error = reason, "cannot consume; retrying cannot fix this");
                    return Connected::Misconfigured(reason);
                }
                Err(e) => {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "cannot start consuming yet; retrying"
                    );
                    self.metrics.retries.with_label_values(&["connect"]).inc();
                    if !backoff.wait(stop).await {
                        return Connected::Stopped;
                    }
                }
            }
        }
    }

    async fn try_connect(&self) -> anyhow::Result<(Arc<Consumer_>, Fences)> {
        // Credentials or a certificate the registry refuses would make every record wait
        // forever; stop with the reason instead. An unreachable registry is retried per record.
        if let Err(e) = self.codec.check_access().await {
            if e.is_fatal() {
                anyhow::bail!(service_kit::kafka::Misconfigured(format!(
                    "Schema Registry: {e}"
                )));
            }
            tracing::warn!(error = %e, "the Schema Registry is not reachable yet");
        }
        let dead_letters = TopicSpec {
            name: self.dead_letters.topic(),
            partitions: 1,
            config: &[],
            exact_partitions: false,
        };
        ensure_topic(&self.kafka, &dead_letters, METADATA_TIMEOUT)
            .await
            .context("ensuring the dead-letter topic")?;
        let source = TopicSpec {
            name: &self.topic,
            partitions: self.topic_partitions,
            config: &[],
            exact_partitions: false,
        };
        let partitions = ensure_topic(&self.kafka, &source, METADATA_TIMEOUT)
            .await
            .context("ensuring the source topic")?;
        let consumer: Consumer_ = self
            .kafka
            .client("the order-events consumer")
            // Required by librdkafka's consumer; never used to join a group or commit.
            .tuning("group.id", "order-service-view")
            .tuning("enable.auto.offset.store", "false")
            .tuning("auto.offset.reset", "earliest")
            .tuning("enable.partition.eof", "false")
            .require(
                "isolation.level",
                "read_committed",
                "the view must never apply a record of an aborted Kafka transaction",
            )
            // Short fetch waits: the embedded broker holds a fetch for up to this long.
            .tuning("fetch.wait.max.ms", self.fetch_wait_max_ms)
            .require(
                "enable.auto.commit",
                "false",
                "the view's offsets are committed with the view, in SQLite",
            )
            .create()?;
        let (stored, fences): (HashMap<i32, i64>, Fences) = {
            let store = Arc::clone(&self.store);
            let topic = self.topic.clone();
            let (offsets, claims) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
                Ok((store.offsets(&topic)?, store.claims(&topic)?))
            })
            .await
            .context("the offsets task failed")??;
            let fences = claims
                .into_iter()
                .map(|(partition, claim)| (partition, Fence::new(Some(claim))))
                .collect();
            (offsets.into_iter().collect(), fences)
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
        self.state.progressed();
        self.state.assigned.store(true, Ordering::Release);
        tracing::info!(
            topic = %self.topic,
            partitions,
            resumed = ?stored,
            claims = ?fences,
            "assigned every partition"
        );
        Ok((Arc::new(consumer), fences))
    }

    /// Fences, decodes, dead-letters and commits one chunk.
    async fn process(
        &self,
        chunk: Vec<KafkaResult<OwnedMessage>>,
        fences: &mut Fences,
        stop: &mut watch::Receiver<bool>,
    ) -> Flow {
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
            #[cfg(feature = "fault-injection")]
            if let Some(key) = &self.fault_panic_on_key {
                assert!(
                    message.key() != Some(key.as_bytes()),
                    "fault injection: FAULT_PANIC_ON_KEY={key} read at {}/{}@{}",
                    message.topic(),
                    message.partition(),
                    message.offset()
                );
            }
            let partition = message.partition();
            let offset = message.offset();
            // The fence first: a claim or a zombie's record is not an order of the view,
            // whatever its key and value.
            let fenced = marked(message.headers()).map(|marked| {
                let fence = fences.entry(partition).or_default();
                fence.judge(offset, marked)
            });
            match fenced {
                Ok(Verdict::Counts) => {}
                Ok(Verdict::Claim { took_effect }) => {
                    let outcome = if took_effect { "took_effect" } else { "lost" };
                    self.metrics.claims.with_label_values(&[outcome]).inc();
                    tracing::info!(
                        partition,
                        offset,
                        took_effect,
                        in_effect = ?fences.get(&partition).and_then(Fence::current),
                        "read a partition claim"
                    );
                    pending.done(partition, offset, fences.get(&partition));
                    continue;
                }
                Ok(Verdict::Fenced { under, in_effect }) => {
                    self.metrics.fenced.inc();
                    tracing::info!(
                        partition,
                        offset,
                        under = ?under,
                        in_effect = ?in_effect,
                        key = %String::from_utf8_lossy(message.key().unwrap_or_default()),
                        "skipped a record written under a claim no longer in effect (a zombie's)"
                    );
                    pending.done(partition, offset, fences.get(&partition));
                    continue;
                }
                Err(bad) => {
                    match self
                        .dead_letter(&message, &Poison::BadFenceHeader(bad), &mut pending, stop)
                        .await
                    {
                        Flow::Continue => {}
                        other => return other,
                    }
                    pending.dead_lettered += 1;
                    pending.done(partition, offset, fences.get(&partition));
                    continue;
                }
            }
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
                            return Flow::Stop;
                        }
                    }
                }
            };
            match outcome {
                Ok(event) => pending.events.push(event),
                Err(poison) => {
                    match self
                        .dead_letter(&message, &poison, &mut pending, stop)
                        .await
                    {
                        Flow::Continue => {}
                        other => return other,
                    }
                    pending.dead_lettered += 1;
                }
            }
            pending.done(partition, offset, fences.get(&partition));
        }
        let ok = self.commit(&mut pending, stop).await;
        self.metrics
            .batch_seconds
            .observe(started.elapsed().as_secs_f64());
        if ok {
            Flow::Continue
        } else {
            Flow::Stop
        }
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

    /// Publishes a poison record until the broker acknowledges it. A broker that is away is
    /// waited for (the stall detection reports it); a record the producer refuses for good
    /// gets `dlq_max_attempts` attempts, then the consumer fails, naming the record.
    async fn dead_letter(
        &self,
        message: &OwnedMessage,
        poison: &Poison,
        pending: &mut Pending,
        stop: &mut watch::Receiver<bool>,
    ) -> Flow {
        let mut backoff = Backoff::new(self.backoff_max);
        let mut refused = 0_u32;
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
                    return Flow::Continue;
                }
                Err(e) => {
                    self.metrics.retries.with_label_values(&["dlq"]).inc();
                    if e.is_permanent() {
                        refused += 1;
                    }
                    // What was decoded before this record is committed either way.
                    let committed = self.commit(pending, stop).await;
                    if refused >= self.dlq_max_attempts {
                        let reason = format!(
                            "the dead letter of topic {} partition {} offset {} cannot be \
                             published after {refused} attempts ({e}); consumption stopped at \
                             that record",
                            message.topic(),
                            message.partition(),
                            message.offset(),
                        );
                        tracing::error!(
                            topic = message.topic(),
                            partition = message.partition(),
                            offset = message.offset(),
                            kind = poison.kind(),
                            dlq_topic = self.dead_letters.topic(),
                            error = %e,
                            "a dead letter cannot be published; consumption stopped"
                        );
                        return Flow::Fail(reason);
                    }
                    tracing::warn!(
                        partition = message.partition(),
                        offset = message.offset(),
                        error = %e,
                        permanent = e.is_permanent(),
                        "dead-letter publish failed; retrying"
                    );
                    if !committed || !backoff.wait(stop).await {
                        return Flow::Stop;
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
            claims: work.claims.into_iter().collect(),
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
                    drop(next);
                    self.state.progressed();
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
    consumer: Arc<Consumer_>,
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
        let probed = Arc::clone(&state);
        let metrics = metrics.clone();
        let result =
            tokio::task::spawn_blocking(move || probe_once(&consumer, &topic, &probed, &metrics))
                .await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = format!("{e:#}"), "lag probe failed"),
            Err(e) => tracing::debug!(error = %e, "lag probe task failed"),
        }
        // Keeps `consumer_up` current between scrapes (a stall is a matter of time passing).
        let _ = state.health();
    }
}

fn probe_once(
    consumer: &Consumer_,
    topic: &str,
    state: &ConsumerState,
    metrics: &ConsumerMetrics,
) -> anyhow::Result<()> {
    if let Some(count) = topic_partitions(consumer.client(), topic, METADATA_TIMEOUT)? {
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
    let mut waiting = 0_i64;
    for partition in partitions {
        let (low, high) = consumer.fetch_watermarks(topic, partition, METADATA_TIMEOUT)?;
        let next = state
            .next_offsets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&partition)
            .copied()
            .unwrap_or(low);
        let lag = (high - next.max(low)).max(0);
        waiting = waiting.saturating_add(lag);
        metrics
            .lag
            .with_label_values(&[&partition.to_string()])
            .set(lag);
    }
    state.observe_lag(waiting);
    Ok(())
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(stall: Duration) -> ConsumerState {
        let up = IntGauge::new("consumer_up", "test").unwrap_or_else(|e| panic!("{e}"));
        let state = ConsumerState::new(stall, up);
        state.assigned.store(true, Ordering::Release);
        state
    }

    #[test]
    fn records_waiting_without_a_commit_for_longer_than_the_bound_is_a_stall() {
        let state = state(Duration::from_millis(30));
        state.observe_lag(5);
        assert_eq!(state.health(), Ok(()));
        assert_eq!(state.up.get(), 1);
        std::thread::sleep(Duration::from_millis(60));
        let stalled = state.health();
        assert!(
            stalled.as_ref().is_err_and(|m| m.contains("stalled")),
            "{stalled:?}"
        );
        assert_eq!(state.up.get(), 0);
        state.progressed();
        assert_eq!(state.health(), Ok(()));
    }

    #[test]
    fn an_idle_consumer_with_nothing_waiting_is_not_stalled() {
        let state = state(Duration::from_millis(30));
        state.observe_lag(0);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(state.health(), Ok(()));
        // Records arriving after a long idle period start the clock at the last probe.
        state.observe_lag(0);
        state.observe_lag(3);
        assert_eq!(state.health(), Ok(()));
    }

    #[test]
    fn an_ended_consumer_is_never_healthy_and_keeps_its_first_reason() {
        let state = state(Duration::from_secs(60));
        state.mark_ended("the consumer task panicked: boom");
        state.mark_ended("later");
        state.progressed();
        let health = state.health();
        assert_eq!(
            health,
            Err("the consumer has stopped: the consumer task panicked: boom".into())
        );
        assert_eq!(state.up.get(), 0);
    }

    #[test]
    fn an_unassigned_consumer_is_not_up() {
        let up = IntGauge::new("consumer_up", "test").unwrap_or_else(|e| panic!("{e}"));
        let state = ConsumerState::new(Duration::from_secs(60), up);
        assert!(state.health().is_err());
    }
}
