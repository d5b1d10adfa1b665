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
//! Fencing (`order_events::fencing`, [`crate::own`]): the follower applies every partition in
//! offset order through its [`Fence`], so it alone can tell whether a record counts. A handler's
//! record waits (in [`Log`]) until every offset before it is known, and the handler is then
//! told whether it counts ([`Written::verdict`]): a write is acknowledged only then. The
//! follower also claims the partitions the group assigns here: it reads each to its end,
//! appends a claim, and hands the partition to [`crate::own::Ownership`] once it read its own
//! claim taking effect and stored everything before it.
//!
//! Failures: an unreadable record (poison) is skipped with a warning and a metric, as any reader
//! of the topic does; a registry or disk failure is retried on the same record with a capped
//! backoff and shown in `/ready` (`order_index`) meanwhile; nothing is ever skipped because of it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use order_events::fencing::{self, Marked, Verdict};
use order_events::{Fence, OrderEventCodec};
use prometheus::{IntCounter, IntGauge, Registry};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Headers;
use rdkafka::{Message, Offset, TopicPartitionList};
use service_kit::kafka::{watermarks, KafkaContext, KafkaSettings};
use tokio::sync::{mpsc, oneshot, watch};

use crate::kafka::Publisher;
use crate::orders::Orders;
use crate::own::{Command, Ownership};
use crate::store::{Row, Store};

/// Records applied per SQLite transaction, at most.
const BATCH: usize = 1_000;
/// The longest wait between two attempts at a failing step.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often the follower looks for records it was not told about (see [`Log`]).
const GAP_CHECK: Duration = Duration::from_millis(250);

/// A record this process wrote and the broker acknowledged: the follower indexes it without
/// reading it back, and tells the handler whether it counts.
#[derive(Debug)]
pub(crate) struct Written {
    pub(crate) offset: i64,
    pub(crate) row: Row,
    /// The claim it was written under.
    pub(crate) under: i64,
    /// `true` once the record counts (no newer claim precedes it), `false` if it was fenced.
    pub(crate) verdict: oneshot::Sender<bool>,
}

/// What the follower's channels carry: the handlers' records and the group's commands.
pub(crate) struct Inbox {
    pub(crate) written: mpsc::UnboundedReceiver<Written>,
    pub(crate) commands: mpsc::UnboundedReceiver<Command>,
}

/// What applying records in order produced.
#[derive(Default)]
struct Outcome {
    rows: Vec<Row>,
    verdicts: Vec<(oneshot::Sender<bool>, bool)>,
    /// Claims read: partition, offset, whether it took effect.
    claims: Vec<(i32, i64, bool)>,
}

/// What to do with a record read from the topic.
#[derive(Debug, PartialEq, Eq)]
enum Read {
    /// Already applied, or not an order record that counts: nothing.
    Skip,
    /// An order record that counts, not written by this process: decode and index it.
    Decode,
}

/// The follower's bookkeeping of the log, per partition.
///
/// Records reach the index two ways: those CartService wrote itself come from the handlers once
/// acknowledged ([`Written`]), in offset order per partition but not exactly (handlers finish
/// in any order); everything else (a record whose publish timed out but landed, a claim, a
/// record another instance wrote) can only be read from the topic. `next` is the checkpoint:
/// everything before it is applied. An acknowledged record beyond it waits in `ahead` until the
/// offsets before it are known, because a claim among them would fence it. A partition whose
/// checkpoint is stuck behind `ahead` for a whole [`GAP_CHECK`] has a record nobody told the
/// follower about: the partition is read from its checkpoint until it passes what was ahead
/// (`read_until`), and the records known are taken from `ahead` without decoding. At start-up
/// every partition is read up to the end the topic had; a partition being claimed, up to its
/// end and then up to the claim.
#[derive(Default)]
struct Log {
    next: HashMap<i32, i64>,
    ahead: HashMap<i32, BTreeMap<i64, Written>>,
    read_until: HashMap<i32, i64>,
    /// The checkpoint of each partition with records ahead, as of the last check.
    quiet: HashMap<i32, i64>,
    /// The claims that took effect, in offset order, per partition, since the stored one: the
    /// last is the partition's fence, and the others say which was in effect at an offset
    /// already passed.
    history: HashMap<i32, Vec<i64>>,
}

impl Log {
    fn new(next: HashMap<i32, i64>, claims: &[(i32, i64)]) -> Log {
        let mut log = Log {
            next,
            ..Log::default()
        };
        for (partition, claim) in claims {
            log.history.insert(*partition, vec![*claim]);
        }
        log
    }

    /// The partitions being read.
    fn reading(&self) -> Vec<i32> {
        let mut partitions: Vec<i32> = self
            .read_until
            .iter()
            .filter(|(p, until)| self.next(**p) < **until)
            .map(|(p, _)| *p)
            .collect();
        partitions.sort_unstable();
        partitions
    }

    fn next(&self, partition: i32) -> i64 {
        self.next.get(&partition).copied().unwrap_or(0)
    }

    /// The claim in effect in `partition`, as of its checkpoint.
    fn current(&self, partition: i32) -> Option<i64> {
        self.history
            .get(&partition)
            .and_then(|claims| claims.last().copied())
    }

    /// The claim in effect per partition (stored with the offsets).
    fn claims(&self) -> Vec<(i32, i64)> {
        self.history
            .iter()
            .filter_map(|(p, claims)| claims.last().map(|claim| (*p, *claim)))
            .collect()
    }

    /// Reads to at least `offset` (exclusive) in `partition`.
    fn read_to(&mut self, partition: i32, offset: i64) {
        let until = self.read_until.entry(partition).or_insert(0);
        *until = (*until).max(offset);
    }

    /// Applies a record in log order through the partition's fence.
    fn fence(&mut self, partition: i32, offset: i64, marked: Marked) -> Verdict {
        let before = self.current(partition);
        let mut fence = Fence::new(before);
        let verdict = fence.judge(offset, marked);
        if let Some(now) = fence.current().filter(|now| Some(*now) != before) {
            self.history.entry(partition).or_default().push(now);
        }
        verdict
    }

    /// Whether the claim at `offset` of `partition` (already passed) took effect.
    fn took_effect(&self, partition: i32, offset: i64) -> bool {
        self.history
            .get(&partition)
            .is_some_and(|claims| claims.contains(&offset))
    }

    /// The claim that was in effect at `offset` (already passed).
    fn in_effect_at(&self, partition: i32, offset: i64) -> Option<i64> {
        self.history
            .get(&partition)
            .and_then(|claims| claims.iter().rev().find(|claim| **claim < offset).copied())
    }

    /// An acknowledged record of this process.
    fn acknowledged(&mut self, partition: i32, written: Written, out: &mut Outcome) {
        if written.offset < self.next(partition) {
            // Read from the topic before the handler told us: it was applied (or not) then.
            let counts = self.in_effect_at(partition, written.offset) == Some(written.under);
            out.verdicts.push((written.verdict, counts));
            return;
        }
        self.ahead
            .entry(partition)
            .or_default()
            .insert(written.offset, written);
        self.drain(partition, out);
    }

    /// Applies the acknowledged records that are next in line.
    fn drain(&mut self, partition: i32, out: &mut Outcome) {
        loop {
            let next = self.next(partition);
            let Some(written) = self
                .ahead
                .get_mut(&partition)
                .and_then(|ahead| ahead.remove(&next))
            else {
                return;
            };
            self.apply_own(partition, written, out);
            self.next.insert(partition, next + 1);
        }
    }

    fn apply_own(&mut self, partition: i32, written: Written, out: &mut Outcome) {
        let counts = self.fence(
            partition,
            written.offset,
            Marked::Order {
                under: Some(written.under),
            },
        ) == Verdict::Counts;
        if counts {
            out.rows.push(written.row);
        }
        out.verdicts.push((written.verdict, counts));
    }

    /// A record read from the topic at `offset`, with its fencing headers.
    fn read(
        &mut self,
        partition: i32,
        offset: i64,
        marked: Result<Marked, fencing::BadHeader>,
        out: &mut Outcome,
    ) -> Read {
        if offset < self.next(partition) {
            return Read::Skip;
        }
        // Records of ours before this offset that the read passed over are not in the log
        // (cannot happen) or were missed: applied in order all the same.
        let passed: Vec<i64> = self
            .ahead
            .get(&partition)
            .map(|ahead| ahead.range(..offset).map(|(o, _)| *o).collect())
            .unwrap_or_default();
        for earlier in passed {
            if let Some(written) = self
                .ahead
                .get_mut(&partition)
                .and_then(|a| a.remove(&earlier))
            {
                self.apply_own(partition, written, out);
            }
        }
        // Offsets missing from the log (control records, compaction) are passed over.
        self.next.insert(partition, offset + 1);
        let action = match self
            .ahead
            .get_mut(&partition)
            .and_then(|a| a.remove(&offset))
        {
            Some(written) => {
                self.apply_own(partition, written, out);
                Read::Skip
            }
            None => match marked {
                Ok(marked) => match self.fence(partition, offset, marked) {
                    Verdict::Claim { took_effect } => {
                        out.claims.push((partition, offset, took_effect));
                        Read::Skip
                    }
                    Verdict::Counts => Read::Decode,
                    Verdict::Fenced { .. } => Read::Skip,
                },
                Err(e) => {
                    tracing::warn!(partition, offset, error = %e, "skipping a record with a bad fencing header");
                    Read::Skip
                }
            },
        };
        self.drain(partition, out);
        action
    }

    /// Starts reading the partitions whose checkpoint has not moved while records waited ahead.
    fn look_for_gaps(&mut self) {
        let mut quiet = HashMap::new();
        let mut stuck = Vec::new();
        for (partition, ahead) in &self.ahead {
            let Some((last, _)) = ahead.last_key_value() else {
                continue;
            };
            let next = self.next(*partition);
            if self.quiet.get(partition) == Some(&next) {
                stuck.push((*partition, last + 1));
            }
            quiet.insert(*partition, next);
        }
        for (partition, until) in stuck {
            self.read_to(partition, until);
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

/// A record's fencing headers, classified.
fn marked(message: &rdkafka::message::BorrowedMessage<'_>) -> Result<Marked, fencing::BadHeader> {
    fencing::classify_headers(
        message
            .headers()
            .into_iter()
            .flat_map(|headers| headers.iter().map(|h| (h.key, h.value))),
    )
}

/// Where a partition assigned here is in being claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Reading to the end the partition had when it was assigned.
    CatchingUp,
    /// The claim is being appended.
    Appending,
    /// The claim is at this offset: reading up to it to see whether it took effect.
    Verifying(i64),
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
    pub(crate) ownership: Arc<Ownership>,
    pub(crate) publisher: Arc<Publisher>,
    pub(crate) metrics: FollowMetrics,
    /// What the handlers wrote and the group commands (one receiver per service).
    pub(crate) inbox: Arc<tokio::sync::Mutex<Inbox>>,
    /// The service's lifetime: when its sender goes (the service stopped or was dropped), the
    /// follower stops and lets go of the index, so the data directory is free again.
    pub(crate) alive: watch::Receiver<()>,
}

impl Follower {
    /// Reads the index's checkpoint and starts following. Returns what start-up must wait for:
    /// the high watermarks of this moment, and how many records lie between the checkpoint and
    /// them.
    pub(crate) async fn start(self, timeout: Duration) -> anyhow::Result<(HashMap<i32, i64>, i64)> {
        let consumer: StreamConsumer<KafkaContext> = self
            .kafka
            .client("the order index follower")
            // Required by librdkafka's consumer; never used to join a group or commit.
            .tuning("group.id", "cart-service-index")
            .tuning("auto.offset.reset", "earliest")
            .tuning("enable.partition.eof", "false")
            // Only waits while there is nothing to read: it reads at start-up, for a claim and
            // for a hole, and a write's acknowledgement may wait for the latter two.
            .tuning("fetch.wait.max.ms", self.fetch_wait_max_ms)
            // Memory must not grow with the topic: a bounded prefetch (librdkafka's default
            // queues up to 64 MB).
            .tuning("queued.max.messages.kbytes", 8_192)
            .tuning("isolation.level", "read_committed")
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
        let mut claims = {
            let store = Arc::clone(&self.store);
            let topic = self.topic.clone();
            tokio::task::spawn_blocking(move || store.claims(&topic))
                .await
                .context("the claims task failed")??
        };
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
            claims.clear();
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
        let mut log = Log::new(stored.clone(), &claims);
        log.read_until.clone_from(&targets);
        tracing::info!(topic = %self.topic, resumed = ?stored, behind, "following the topic into the order index");
        tokio::spawn(async move { self.run(consumer, log).await });
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

    async fn run(mut self, consumer: Arc<StreamConsumer<KafkaContext>>, mut log: Log) {
        let inbox = Arc::clone(&self.inbox);
        let Ok(mut inbox) = inbox.try_lock() else {
            // Another follower of this service already runs (it cannot: start-up starts one).
            tracing::error!("a second order index follower was started; stopping it");
            return;
        };
        let inbox = &mut *inbox;
        let mut resumed = std::collections::HashSet::new();
        self.assign_all(&consumer, &log, &mut resumed);
        let mut chunks = consumer.stream().ready_chunks(BATCH);
        let mut gaps = tokio::time::interval(GAP_CHECK);
        let mut acked = Vec::with_capacity(BATCH);
        let mut stored = log.next.clone();
        let mut stages: HashMap<i32, Stage> = HashMap::new();
        // The claims this process appended (one per claim attempt: bounded by rebalances).
        let mut ours: std::collections::HashSet<(i32, i64)> = std::collections::HashSet::new();
        let (appended_tx, mut appended) = mpsc::unbounded_channel::<(i32, i64)>();
        loop {
            let mut out = Outcome::default();
            let reading_before = log.reading();
            tokio::select! {
                _ = self.alive.changed() => {
                    tracing::debug!("the service stopped; so does the order index follower");
                    return;
                }
                received = inbox.written.recv_many(&mut acked, BATCH) => {
                    if received == 0 {
                        return;
                    }
                    for written in acked.drain(..) {
                        log.acknowledged(written.row.partition, written, &mut out);
                    }
                }
                Some(command) = inbox.commands.recv() => {
                    self.command(command, &consumer, &mut log, &mut stages).await;
                }
                Some((partition, offset)) = appended.recv() => {
                    ours.insert((partition, offset));
                    if stages.get(&partition) == Some(&Stage::Appending) {
                        stages.insert(partition, Stage::Verifying(offset));
                        if log.next(partition) > offset {
                            // Already read past it (a hole): the history knows its outcome.
                            out.claims.push((partition, offset, log.took_effect(partition, offset)));
                        } else {
                            log.read_to(partition, offset + 1);
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
                        let marked = marked(&message);
                        if log.read(message.partition(), message.offset(), marked, &mut out) == Read::Skip {
                            continue;
                        }
                        read += 1;
                        if let Some(row) = self.decode(&message).await {
                            out.rows.push(row);
                        }
                    }
                    self.metrics.applied.inc_by(read);
                }
                _ = gaps.tick() => log.look_for_gaps(),
            }
            let fenced = out.verdicts.iter().filter(|(_, counts)| !counts).count();
            self.ownership
                .metrics()
                .fenced
                .inc_by(u64::try_from(fenced).unwrap_or(u64::MAX));
            for (verdict, counts) in out.verdicts.drain(..) {
                // A handler that went away (client disconnected) no longer waits.
                let _ = verdict.send(counts);
            }
            let mut won = Vec::new();
            for (partition, offset, took_effect) in out.claims.drain(..) {
                if stages.get(&partition) != Some(&Stage::Verifying(offset)) {
                    if !took_effect {
                        continue;
                    }
                    if ours.contains(&(partition, offset)) {
                        // An earlier attempt of ours took effect late: the partition is ours
                        // under that claim, if the group still assigns it here.
                        if self.ownership.assigned_here(partition) {
                            won.push((partition, offset));
                            stages.remove(&partition);
                        }
                    } else if self.ownership.superseded(partition, offset) {
                        tracing::warn!(
                            partition,
                            claim = offset,
                            "another instance's claim of a partition owned here took effect: \
                             no more writes to it from here; its requests go to the owner map's owner"
                        );
                    }
                    continue;
                }
                if took_effect {
                    won.push((partition, offset));
                    stages.remove(&partition);
                } else {
                    tracing::warn!(
                        partition,
                        offset,
                        "our claim lost to another; claiming again"
                    );
                    self.ownership.claim_failed(true);
                    stages.insert(partition, Stage::CatchingUp);
                }
            }
            if !out.rows.is_empty() || log.next != stored || !won.is_empty() {
                let offsets: Vec<(i32, i64)> = log.next.iter().map(|(p, o)| (*p, *o)).collect();
                let claims = log.claims();
                let rows = Arc::new(std::mem::take(&mut out.rows));
                self.retry("storing records in the order index", || {
                    let store = Arc::clone(&self.store);
                    let topic = self.topic.clone();
                    let rows = Arc::clone(&rows);
                    let offsets = offsets.clone();
                    let claims = claims.clone();
                    async move {
                        tokio::task::spawn_blocking(move || {
                            store.apply(&topic, &rows, &offsets, &claims)
                        })
                        .await
                        .context("the index task failed")?
                    }
                })
                .await;
                stored.clone_from(&log.next);
                self.progress.advance(&log.next);
                self.orders.evict_indexed(&self.progress);
            }
            // Owned only now: the index holds everything before the claim.
            for (partition, claim) in won {
                if self.ownership.claimed(partition, claim) {
                    tracing::info!(
                        partition,
                        claim,
                        "claim took effect; the partition is owned here"
                    );
                    self.announce(partition, claim);
                }
            }
            self.start_claims(&log, &mut stages, &appended_tx);
            if log.reading() != reading_before {
                self.reassign(&consumer, &log, &mut resumed);
            }
        }
        tracing::error!("the order index follower's stream ended");
        self.progress
            .set_problem(Some("the order index follower stopped".into()));
    }

    /// The group assigned or revoked partitions.
    async fn command(
        &self,
        command: Command,
        consumer: &Arc<StreamConsumer<KafkaContext>>,
        log: &mut Log,
        stages: &mut HashMap<i32, Stage>,
    ) {
        match command {
            Command::Own(partitions) => {
                for partition in partitions {
                    let end = self.end_of(consumer, partition).await;
                    log.read_to(partition, end);
                    stages.insert(partition, Stage::CatchingUp);
                }
            }
            Command::Release(partitions) => {
                for partition in partitions {
                    stages.remove(&partition);
                }
            }
        }
    }

    /// The high watermark of `partition`, retried until the broker answers.
    async fn end_of(&self, consumer: &Arc<StreamConsumer<KafkaContext>>, partition: i32) -> i64 {
        let mut backoff = Duration::from_millis(100);
        loop {
            let consumer = Arc::clone(consumer);
            let topic = self.topic.clone();
            let result = tokio::task::spawn_blocking(move || {
                consumer.fetch_watermarks(&topic, partition, Duration::from_secs(5))
            })
            .await;
            match result {
                Ok(Ok((_, high))) => return high,
                Ok(Err(e)) => {
                    tracing::warn!(partition, error = %e, "reading a partition's end to claim it; retrying")
                }
                Err(e) => {
                    tracing::warn!(partition, error = %e, "reading a partition's end to claim it; retrying")
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Appends a claim for every partition that has been read to its end.
    fn start_claims(
        &self,
        log: &Log,
        stages: &mut HashMap<i32, Stage>,
        appended: &mpsc::UnboundedSender<(i32, i64)>,
    ) {
        for (partition, stage) in stages.iter_mut() {
            let caught_up = log
                .read_until
                .get(partition)
                .is_none_or(|until| log.next(*partition) >= *until);
            if *stage != Stage::CatchingUp || !caught_up {
                continue;
            }
            *stage = Stage::Appending;
            let supersedes = log.current(*partition);
            let partition = *partition;
            let publisher = Arc::clone(&self.publisher);
            let ownership = Arc::clone(&self.ownership);
            let appended = appended.clone();
            tokio::spawn(async move {
                let mut backoff = Duration::from_millis(100);
                let header = fencing::claim_header(supersedes);
                while ownership.assigned_here(partition) {
                    let headers = [
                        (fencing::CLAIM_HEADER, header.as_str()),
                        (fencing::CLAIMANT_HEADER, ownership.me()),
                    ];
                    match publisher.publish_claim(partition, &headers).await {
                        Ok(offset) => {
                            tracing::info!(partition, offset, supersedes = ?supersedes, "claim appended");
                            let _ = appended.send((partition, offset));
                            return;
                        }
                        Err(e) => {
                            ownership.claim_failed(false);
                            tracing::warn!(partition, error = %e, "appending a claim failed; retrying");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(BACKOFF_MAX);
                        }
                    }
                }
            });
        }
    }

    /// Publishes that `partition` is owned here under `claim` to the owner map.
    fn announce(&self, partition: i32, claim: i64) {
        let publisher = Arc::clone(&self.publisher);
        let ownership = Arc::clone(&self.ownership);
        let topic = crate::own::owners_topic(&self.topic);
        tokio::spawn(async move {
            let (key, value) = crate::own::owner_record(partition, claim, ownership.me());
            let mut backoff = Duration::from_millis(100);
            while ownership.holds(partition, claim) {
                match publisher.publish_to(&topic, &key, &value).await {
                    Ok(_) => return,
                    Err(e) => {
                        tracing::warn!(partition, error = %e, "publishing to the owner map failed; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                    }
                }
            }
        });
    }

    /// Assigns every partition once, at its checkpoint, and pauses those with nothing to read.
    ///
    /// Why assign once and pause, instead of assigning only what is read: librdkafka 2.12 can
    /// abort the process when assignments change quickly (`rd_kafka_assignment_partition_stopped:
    /// Assertion rktp->rktp_started failed`, confluentinc/librdkafka#5573, fixed after 2.15);
    /// claims and holes changed this follower's assignment often enough to hit it in tests.
    /// Pausing does not stop a partition's fetcher, so it cannot.
    fn assign_all(
        &self,
        consumer: &StreamConsumer<KafkaContext>,
        log: &Log,
        resumed: &mut std::collections::HashSet<i32>,
    ) {
        let mut assignment = TopicPartitionList::new();
        for partition in 0..self.partitions {
            if let Err(e) = assignment.add_partition_offset(
                &self.topic,
                partition,
                Offset::Offset(log.next(partition)),
            ) {
                tracing::error!(error = %e, partition, "building the follower's assignment");
            }
        }
        if let Err(e) = consumer.assign(&assignment) {
            tracing::error!(error = %e, "assigning the follower's partitions");
        }
        resumed.extend(0..self.partitions);
        self.reassign(consumer, log, resumed);
    }

    /// Reads exactly the partitions that have something to read, from their checkpoints: the
    /// others are paused; a partition resumed is first moved to its checkpoint (records
    /// acknowledged to this process since it was paused are not read back).
    fn reassign(
        &self,
        consumer: &StreamConsumer<KafkaContext>,
        log: &Log,
        resumed: &mut std::collections::HashSet<i32>,
    ) {
        let wanted: std::collections::HashSet<i32> = log.reading().into_iter().collect();
        let list = |partitions: &mut dyn Iterator<Item = &i32>| {
            let mut list = TopicPartitionList::new();
            for partition in partitions {
                list.add_partition(&self.topic, *partition);
            }
            list
        };
        let pause = list(&mut resumed.difference(&wanted));
        if pause.count() > 0 {
            if let Err(e) = consumer.pause(&pause) {
                tracing::error!(error = %e, "pausing the follower's partitions");
            }
        }
        for partition in wanted.difference(resumed) {
            let next = Offset::Offset(log.next(*partition));
            if let Err(e) = consumer.seek(&self.topic, *partition, next, Duration::ZERO) {
                tracing::error!(error = %e, partition, "moving the follower to its checkpoint");
            }
        }
        let resume = list(&mut wanted.difference(resumed));
        if resume.count() > 0 {
            if let Err(e) = consumer.resume(&resume) {
                tracing::error!(error = %e, "resuming the follower's partitions");
            }
        }
        *resumed = wanted;
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

    const ORDER: Marked = Marked::Order { under: None };

    fn log(next: i64) -> Log {
        Log::new(HashMap::from([(0, next)]), &[(0, 3)])
    }

    /// A record of ours at `offset` written under `under`, and the handler's end.
    fn ours(offset: i64, under: i64) -> (Written, oneshot::Receiver<bool>) {
        let (verdict, answer) = oneshot::channel();
        let row = Row {
            order_id: format!("O-{offset}"),
            version: 1,
            partition: 0,
            record: vec![],
        };
        (
            Written {
                offset,
                row,
                under,
                verdict,
            },
            answer,
        )
    }

    fn settle(out: Outcome) -> Vec<String> {
        for (verdict, counts) in out.verdicts {
            let _ = verdict.send(counts);
        }
        out.rows.into_iter().map(|r| r.order_id).collect()
    }

    #[test]
    fn acknowledged_records_count_in_order_only() {
        let mut log = log(10);
        let mut out = Outcome::default();
        let (w11, mut a11) = ours(11, 3);
        log.acknowledged(0, w11, &mut out);
        assert!(out.verdicts.is_empty(), "10 is not known yet: 11 waits");
        assert_eq!(log.next[&0], 10);
        let (w10, mut a10) = ours(10, 3);
        log.acknowledged(0, w10, &mut out);
        assert_eq!(settle(out), vec!["O-10", "O-11"]);
        assert_eq!(log.next[&0], 12);
        assert_eq!((a10.try_recv(), a11.try_recv()), (Ok(true), Ok(true)));
        assert!(log.reading().is_empty());
    }

    #[test]
    fn a_hole_that_stays_is_read_and_a_claim_in_it_fences_what_follows() {
        let mut log = log(10);
        let mut out = Outcome::default();
        let (w11, mut a11) = ours(11, 3);
        let (w12, mut a12) = ours(12, 3);
        log.acknowledged(0, w11, &mut out);
        log.acknowledged(0, w12, &mut out);
        log.look_for_gaps();
        assert!(log.reading().is_empty(), "one quiet check is not enough");
        log.look_for_gaps();
        assert_eq!(log.reading(), vec![0], "the checkpoint stayed behind");
        // Another instance claimed the partition at 10.
        let claim = Ok(Marked::Claim {
            supersedes: Some(3),
        });
        assert_eq!(log.read(0, 10, claim, &mut out), Read::Skip);
        assert_eq!(out.claims, vec![(0, 10, true)]);
        assert_eq!(log.next[&0], 13, "the known ones after it are applied");
        assert!(settle(out).is_empty(), "and do not count");
        assert_eq!((a11.try_recv(), a12.try_recv()), (Ok(false), Ok(false)));
        let mut out = Outcome::default();
        assert_eq!(
            log.read(0, 11, Ok(ORDER), &mut out),
            Read::Skip,
            "already applied"
        );
        assert!(log.reading().is_empty(), "done once past what was ahead");
        assert_eq!(log.claims(), vec![(0, 10)]);
    }

    #[test]
    fn records_read_from_the_topic_count_by_the_fence() {
        let mut log = log(0);
        log.read_until.insert(0, 9);
        let mut out = Outcome::default();
        assert_eq!(log.read(0, 0, Ok(ORDER), &mut out), Read::Decode);
        assert_eq!(
            log.read(0, 2, Ok(Marked::Order { under: Some(3) }), &mut out),
            Read::Decode,
            "offset 1 is not in the log; under the claim in effect"
        );
        assert_eq!(log.next[&0], 3);
        let lost = Ok(Marked::Claim {
            supersedes: Some(1),
        });
        assert_eq!(log.read(0, 3, lost, &mut out), Read::Skip);
        let won = Ok(Marked::Claim {
            supersedes: Some(3),
        });
        assert_eq!(log.read(0, 4, won, &mut out), Read::Skip);
        assert_eq!(out.claims, vec![(0, 3, false), (0, 4, true)]);
        assert_eq!(
            log.read(0, 5, Ok(Marked::Order { under: Some(3) }), &mut out),
            Read::Skip,
            "a zombie's record"
        );
        assert_eq!(
            log.read(0, 6, Ok(Marked::Order { under: Some(4) }), &mut out),
            Read::Decode
        );
        // A handler that tells us late about its record at 5 (written under 3) and at 6.
        let (w5, mut a5) = ours(5, 3);
        let (w6, mut a6) = ours(6, 4);
        log.acknowledged(0, w5, &mut out);
        log.acknowledged(0, w6, &mut out);
        settle(out);
        assert_eq!((a5.try_recv(), a6.try_recv()), (Ok(false), Ok(true)));
    }
}
