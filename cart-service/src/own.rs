//! Partition ownership: which instance writes which partition, and where to send the rest.
//!
//! Why it exists: CartService runs as one or several instances with the same `CART_GROUP_ID`,
//! and each partition of the topic must have exactly one writer, or an order's versions fork.
//! Three parts:
//!
//! * **Membership.** The instances join a Kafka consumer group on the topic (cooperative-sticky,
//!   static membership when `CART_INSTANCE_ID` is set). The group's assignment says which
//!   partitions an instance *should* own. The group consumer never reads records (its
//!   partitions are paused): it exists for the assignment and the session. A revoked or lost
//!   partition stops taking writes at once, inside the rebalance callback.
//! * **Claims.** A partition assigned here is only *owned* once [`crate::follow`] has read it to
//!   its end, appended a claim, and seen in the log that the claim took effect
//!   (`order_events::fencing`). Until then requests for it answer 503 with `Retry-After`.
//!   Every write carries the claim it was made under, and is acknowledged only once the log
//!   shows it counts, so a zombie (an instance that lost its partitions without knowing) cannot
//!   acknowledge anything.
//! * **The owner map.** An owner whose claim took effect publishes `partition → (claim, URL)` to
//!   a small compacted topic (`<topic>-owners`) that every instance reads whole; a request for a
//!   partition owned elsewhere is forwarded there once (`crate::routes::forward`). The map is
//!   advice for routing only: a stale entry costs a 503, never a wrong write.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use service_kit::kafka::{KafkaContext, KafkaSettings};
use tokio::sync::{mpsc, watch};

/// What the follower is asked to do when the group moves partitions.
#[derive(Debug)]
pub(crate) enum Command {
    /// Read these partitions to their end, claim them, and report when the claim took effect.
    Own(Vec<i32>),
    /// Stop claiming these partitions (their writes already stopped).
    Release(Vec<i32>),
}

/// Where a request for a partition goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// Owned here: write under this claim.
    Local { claim: i64 },
    /// Owned by the instance at this URL.
    Owner(String),
    /// Between owners (being claimed, or its owner is not known yet): try again shortly.
    Moving,
}

/// One partition's place in the owner map, as published by its owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    claim: i64,
    url: String,
}

/// This instance's partitions and the owner map.
pub(crate) struct Ownership {
    /// The URL other instances reach this one at (`CART_ADVERTISED_URL`).
    me: String,
    /// Partitions assigned here: `None` while being claimed, the claim once owned.
    held: Mutex<HashMap<i32, Option<i64>>>,
    /// The owner map: the latest effective claim of each partition and its owner's URL.
    owners: Mutex<HashMap<i32, Entry>>,
    /// The group has assigned partitions (possibly none) at least once.
    joined: AtomicBool,
    /// Bumped whenever ownership changes here (start-up waits on it).
    changed: watch::Sender<u64>,
    /// Whether this instance is a member of the group: `Some(true)` while it is, `Some(false)`
    /// once it left, `None` if it never joined.
    member: watch::Sender<Option<bool>>,
    metrics: OwnMetrics,
}

/// Ownership metrics (labels from fixed sets).
#[derive(Clone)]
pub(crate) struct OwnMetrics {
    owned: IntGauge,
    known: IntGauge,
    claims: IntCounterVec,
    pub(crate) forwarded: IntCounterVec,
    pub(crate) fenced: prometheus::IntCounter,
}

impl OwnMetrics {
    pub(crate) fn register(registry: &Registry) -> anyhow::Result<OwnMetrics> {
        let owned = IntGauge::new(
            "cart_partitions_owned",
            "Partitions of the topic this instance owns (its claim took effect)",
        )?;
        let known = IntGauge::new(
            "cart_partition_owners_known",
            "Partitions whose owner this instance knows (itself or from the owner map), as of the last scrape: the others answer 503",
        )?;
        let claims = IntCounterVec::new(
            Opts::new(
                "cart_partition_claims_total",
                "Claims of partitions this instance appended, by outcome (won, lost, failed)",
            ),
            &["outcome"],
        )?;
        let forwarded = IntCounterVec::new(
            Opts::new(
                "cart_forwarded_requests_total",
                "Requests for partitions owned elsewhere, by outcome (forwarded, unreachable, moving)",
            ),
            &["outcome"],
        )?;
        let fenced = prometheus::IntCounter::new(
            "cart_fenced_writes_total",
            "Acknowledged records that did not count: a newer claim of their partition preceded them (answered 503)",
        )?;
        registry.register(Box::new(owned.clone()))?;
        registry.register(Box::new(known.clone()))?;
        registry.register(Box::new(claims.clone()))?;
        registry.register(Box::new(forwarded.clone()))?;
        registry.register(Box::new(fenced.clone()))?;
        Ok(OwnMetrics {
            owned,
            known,
            claims,
            forwarded,
            fenced,
        })
    }
}

impl Ownership {
    pub(crate) fn new(me: String, metrics: OwnMetrics) -> Ownership {
        Ownership {
            me,
            held: Mutex::default(),
            owners: Mutex::default(),
            joined: AtomicBool::new(false),
            changed: watch::channel(0).0,
            member: watch::channel(None).0,
            metrics,
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Option<i64>>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn owners(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Entry>> {
        self.owners.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn metrics(&self) -> &OwnMetrics {
        &self.metrics
    }

    /// This instance's advertised URL.
    pub(crate) fn me(&self) -> &str {
        &self.me
    }

    /// Where a request for `partition` goes.
    pub(crate) fn route(&self, partition: i32) -> Route {
        match self.held().get(&partition) {
            Some(Some(claim)) => return Route::Local { claim: *claim },
            Some(None) => return Route::Moving,
            None => {}
        }
        match self.owners().get(&partition) {
            Some(entry) if entry.url != self.me => Route::Owner(entry.url.clone()),
            _ => Route::Moving,
        }
    }

    /// Sets `cart_partition_owners_known` for a topic of `partitions` (at scrape time).
    pub(crate) fn observe(&self, partitions: i32) {
        let known = (0..partitions)
            .filter(|p| self.route(*p) != Route::Moving)
            .count();
        self.metrics
            .known
            .set(i64::try_from(known).unwrap_or(i64::MAX));
    }

    /// Whether `claim` is still this instance's claim of `partition`.
    pub(crate) fn holds(&self, partition: i32, claim: i64) -> bool {
        self.held().get(&partition) == Some(&Some(claim))
    }

    /// Whether the group assigned partitions at least once and every partition assigned here
    /// is owned (none is still being claimed).
    pub(crate) fn settled(&self) -> bool {
        self.joined.load(Ordering::Acquire) && self.held().values().all(Option::is_some)
    }

    /// Waits until [`Ownership::settled`].
    pub(crate) async fn wait_settled(&self) {
        let mut changed = self.changed.subscribe();
        while !self.settled() {
            if changed.changed().await.is_err() {
                return;
            }
        }
    }

    /// Waits until the group member has left the group (at once if it never joined): a
    /// stopping service waits for this, so that its partitions move at once instead of after
    /// the session timeout (a static member, `CART_INSTANCE_ID`, stays in the group: its
    /// restart takes its partitions back).
    pub(crate) async fn left(&self) {
        let mut member = self.member.subscribe();
        while *member.borrow_and_update() == Some(true) {
            if member.changed().await.is_err() {
                return;
            }
        }
    }

    /// The partitions this instance owns, and those it is claiming.
    pub(crate) fn partitions(&self) -> (Vec<i32>, Vec<i32>) {
        let held = self.held();
        let mut owned: Vec<i32> = held
            .iter()
            .filter(|(_, c)| c.is_some())
            .map(|(p, _)| *p)
            .collect();
        let mut claiming: Vec<i32> = held
            .iter()
            .filter(|(_, c)| c.is_none())
            .map(|(p, _)| *p)
            .collect();
        owned.sort_unstable();
        claiming.sort_unstable();
        (owned, claiming)
    }

    fn notify(&self) {
        let owned = self.held().values().filter(|c| c.is_some()).count();
        self.metrics
            .owned
            .set(i64::try_from(owned).unwrap_or(i64::MAX));
        self.changed.send_modify(|n| *n += 1);
    }

    /// The group assigned `partitions` here: they are being claimed.
    fn assigned(&self, partitions: &[i32]) {
        {
            let mut held = self.held();
            for partition in partitions {
                held.insert(*partition, None);
            }
        }
        self.joined.store(true, Ordering::Release);
        self.notify();
    }

    /// The group took `partitions` away (or the session was lost): no new write starts.
    fn revoked(&self, partitions: &[i32]) {
        {
            let mut held = self.held();
            for partition in partitions {
                held.remove(partition);
            }
        }
        self.notify();
    }

    /// The claim at `claim` of `partition` took effect: owned, if still assigned here.
    /// Returns whether it was.
    pub(crate) fn claimed(&self, partition: i32, claim: i64) -> bool {
        let owned = {
            let mut held = self.held();
            match held.get_mut(&partition) {
                Some(slot) => {
                    *slot = Some(claim);
                    true
                }
                None => false,
            }
        };
        self.metrics.claims.with_label_values(&["won"]).inc();
        if owned {
            self.learn(
                partition,
                Entry {
                    claim,
                    url: self.me.clone(),
                },
            );
        }
        self.notify();
        owned
    }

    /// Another instance's claim of `partition`, at `claim`, took effect: if this instance held
    /// the partition under an older claim, it no longer does (its writes there would not count;
    /// requests go to the owner the owner map names). Returns whether it held it.
    pub(crate) fn superseded(&self, partition: i32, claim: i64) -> bool {
        let lost = {
            let mut held = self.held();
            let lost = matches!(held.get(&partition), Some(Some(ours)) if *ours != claim);
            if lost {
                held.remove(&partition);
            }
            lost
        };
        if lost {
            self.notify();
        }
        lost
    }

    /// A claim of `partition` lost to another (or could not be appended).
    pub(crate) fn claim_failed(&self, lost: bool) {
        let outcome = if lost { "lost" } else { "failed" };
        self.metrics.claims.with_label_values(&[outcome]).inc();
    }

    /// Whether `partition` is still assigned here (being claimed or owned).
    pub(crate) fn assigned_here(&self, partition: i32) -> bool {
        self.held().contains_key(&partition)
    }

    /// An owner-map entry: kept if its claim is newer than the one known.
    fn learn(&self, partition: i32, entry: Entry) {
        let mut owners = self.owners();
        let newer = owners
            .get(&partition)
            .is_none_or(|known| known.claim < entry.claim);
        if newer {
            owners.insert(partition, entry);
        }
    }
}

/// The topic holding the owner map of `topic`.
pub(crate) fn owners_topic(topic: &str) -> String {
    format!("{topic}-owners")
}

/// The owner map's record for a claim that took effect: key and value.
pub(crate) fn owner_record(partition: i32, claim: i64, url: &str) -> (String, Vec<u8>) {
    let entry = Entry {
        claim,
        url: url.to_string(),
    };
    // Serializing two plain fields cannot fail; an empty value would only be ignored by readers.
    (
        partition.to_string(),
        serde_json::to_vec(&entry).unwrap_or_default(),
    )
}

/// Creates the owner-map topic if needed (compacted: only the latest entry per partition
/// matters).
pub(crate) async fn ensure_owners_topic(
    kafka: &KafkaSettings,
    topic: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let spec = service_kit::kafka::TopicSpec {
        name: &owners_topic(topic),
        partitions: 1,
        config: &[("cleanup.policy", "compact")],
        exact_partitions: false,
    };
    service_kit::kafka::ensure_topic(kafka, &spec, timeout)
        .await
        .context("creating the owner-map topic")?;
    Ok(())
}

/// Reads the owner map from its beginning and follows it until the service stops.
pub(crate) fn follow_owner_map(
    kafka: &KafkaSettings,
    topic: &str,
    ownership: Arc<Ownership>,
    mut alive: watch::Receiver<()>,
) -> anyhow::Result<()> {
    let topic = owners_topic(topic);
    let consumer: StreamConsumer<KafkaContext> = kafka
        .client("the owner-map reader")
        // Required by librdkafka's consumer; never used to join a group or commit.
        .tuning("group.id", "cart-service-owner-map")
        .tuning("enable.partition.eof", "false")
        // Ownership changes are rare; a long wait costs the broker nothing while idle.
        .tuning("fetch.wait.max.ms", 500)
        .tuning("isolation.level", "read_committed")
        .require(
            "enable.auto.commit",
            "false",
            "the owner map is read whole at every start",
        )
        .create()?;
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(&topic, 0, Offset::Beginning)
        .context("building the owner map's assignment")?;
    consumer
        .assign(&assignment)
        .context("assigning the owner map")?;
    tokio::spawn(async move {
        let mut stream = consumer.stream();
        loop {
            tokio::select! {
                _ = alive.changed() => return,
                message = stream.next() => {
                    let Some(message) = message else { return };
                    let message = match message {
                        Ok(message) => message,
                        Err(e) => {
                            tracing::warn!(error = %e, "the owner-map reader reported an error");
                            continue;
                        }
                    };
                    let partition = message
                        .key()
                        .and_then(|key| std::str::from_utf8(key).ok())
                        .and_then(|key| key.parse::<i32>().ok());
                    let entry = message
                        .payload()
                        .and_then(|value| serde_json::from_slice::<Entry>(value).ok());
                    match (partition, entry) {
                        (Some(partition), Some(entry)) => {
                            tracing::debug!(partition, claim = entry.claim, url = %entry.url, "owner map");
                            ownership.learn(partition, entry);
                        }
                        _ => tracing::warn!(offset = message.offset(), "skipping an unreadable owner-map record"),
                    }
                }
            }
        }
    });
    Ok(())
}

/// The group consumer's context: reports assignments and revocations to [`Ownership`] and the
/// follower, and logs like every other client.
struct GroupContext {
    base: KafkaContext,
    topic: String,
    ownership: Arc<Ownership>,
    commands: mpsc::UnboundedSender<Command>,
}

impl GroupContext {
    fn partitions(&self, list: &TopicPartitionList) -> Vec<i32> {
        list.elements()
            .iter()
            .filter(|e| e.topic() == self.topic)
            .map(|e| e.partition())
            .collect()
    }
}

impl ClientContext for GroupContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.base.log(level, fac, log_message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.base.error(error, reason);
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let partitions = self.partitions(list);
            tracing::info!(?partitions, "partitions revoked; writes to them stop");
            // Before the group goes on: no write starts on them from here.
            self.ownership.revoked(&partitions);
            let _ = self.commands.send(Command::Release(partitions));
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                // The group consumer never reads: the follower does, where it must.
                if let Err(e) = consumer.pause(list) {
                    tracing::warn!(error = %e, "pausing the group consumer's partitions");
                }
                let partitions = self.partitions(list);
                tracing::info!(?partitions, "partitions assigned; claiming them");
                self.ownership.assigned(&partitions);
                if !partitions.is_empty() {
                    let _ = self.commands.send(Command::Own(partitions));
                }
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "group rebalance error"),
        }
    }
}

/// How the instance joins the group.
pub(crate) struct Membership {
    pub(crate) group_id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) session_timeout_ms: u32,
}

/// Joins the group on `topic` and serves its callbacks on a thread of its own until the
/// service stops; then leaves the group (its partitions are revoked first, so writes stop).
pub(crate) fn join(
    kafka: &KafkaSettings,
    topic: &str,
    membership: &Membership,
    ownership: Arc<Ownership>,
    commands: mpsc::UnboundedSender<Command>,
    alive: watch::Receiver<()>,
) -> anyhow::Result<()> {
    let mut builder = kafka
        .client("the partition-ownership group member")
        .tuning("group.id", &membership.group_id)
        .tuning("partition.assignment.strategy", "cooperative-sticky")
        .tuning("session.timeout.ms", membership.session_timeout_ms)
        .tuning(
            "heartbeat.interval.ms",
            (membership.session_timeout_ms / 3).max(100),
        )
        .tuning("enable.partition.eof", "false")
        .tuning("fetch.wait.max.ms", 500)
        .require(
            "enable.auto.commit",
            "false",
            "the group only assigns partitions; offsets live in the order index",
        );
    if let Some(instance) = &membership.instance_id {
        builder = builder.tuning("group.instance.id", instance);
    }
    let config = builder.config()?;
    let context = GroupContext {
        base: KafkaContext::default(),
        topic: topic.to_string(),
        ownership,
        commands,
    };
    let member = context.ownership.member.clone();
    let consumer: BaseConsumer<GroupContext> = config
        .create_with_context(context)
        .context("creating the partition-ownership group member")?;
    consumer
        .subscribe(&[topic])
        .context("joining the partition-ownership group")?;
    member.send_replace(Some(true));
    std::thread::Builder::new()
        .name("cart-group".into())
        .spawn(move || {
            // Polling serves the rebalance callbacks; paused partitions deliver nothing.
            while alive.has_changed().is_ok() {
                if let Some(Err(e)) = consumer.poll(Duration::from_millis(200)) {
                    tracing::warn!(error = %e, "the partition-ownership group member reported an error");
                }
            }
            // Leaving the group revokes our partitions (callbacks above) before we go.
            consumer.unsubscribe();
            let _ = consumer.poll(Duration::from_millis(100));
            drop(consumer);
            member.send_replace(Some(false));
            tracing::info!("left the partition-ownership group");
        })
        .context("starting the group member's thread")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ownership() -> Ownership {
        let registry = Registry::new();
        let metrics = OwnMetrics::register(&registry).unwrap_or_else(|e| panic!("{e}"));
        Ownership::new("http://me".into(), metrics)
    }

    #[test]
    fn requests_go_where_the_partition_is_owned() {
        let own = ownership();
        assert_eq!(own.route(0), Route::Moving, "nothing known");
        assert!(!own.settled());
        own.assigned(&[0, 1]);
        assert_eq!(own.route(0), Route::Moving, "being claimed");
        assert!(!own.settled());
        assert!(own.claimed(0, 7));
        assert!(own.claimed(1, 3));
        assert!(own.settled());
        assert_eq!(own.route(0), Route::Local { claim: 7 });
        own.learn(
            2,
            Entry {
                claim: 4,
                url: "http://other".into(),
            },
        );
        assert_eq!(own.route(2), Route::Owner("http://other".into()));
        own.learn(
            2,
            Entry {
                claim: 2,
                url: "http://stale".into(),
            },
        );
        assert_eq!(
            own.route(2),
            Route::Owner("http://other".into()),
            "an older claim does not replace a newer one"
        );
        own.revoked(&[0]);
        assert_eq!(
            own.route(0),
            Route::Moving,
            "revoked: the map still names us, so nobody known owns it yet"
        );
        assert!(!own.claimed(0, 9), "a claim finishing after the revocation");
        assert!(own.holds(1, 3) && !own.holds(1, 2));
        assert_eq!(own.partitions(), (vec![1], vec![]));
        assert!(!own.superseded(1, 3), "its own claim");
        assert!(own.superseded(1, 8), "another's newer claim");
        assert_eq!(own.partitions(), (vec![], vec![]));
    }

    #[test]
    fn owner_records_round_trip() {
        let (key, value) = owner_record(2, 41, "http://a:8000");
        assert_eq!(key, "2");
        let entry: Entry = serde_json::from_slice(&value).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            entry,
            Entry {
                claim: 41,
                url: "http://a:8000".into()
            }
        );
    }
}
