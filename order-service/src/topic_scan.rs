//! Reading the distinct order ids of a topic straight from Kafka, not from the view.
//!
//! Why a module: `GET /api/getAllOrderIdsFromTopic` answers what *the topic* holds, so it
//! reads the records' keys from the beginning up to the high watermarks taken when the request
//! arrives (records produced during the scan are not waited for). Values are never decoded:
//! the key is the order id by contract, and decoding would put the registry on this path.
//!
//! Each scan uses its own short-lived consumer (no group, partitions assigned directly), runs on
//! a blocking thread, and is bounded: by a deadline, by a cancellation flag (set when the HTTP
//! client goes away, checked at least every 200 ms), and in memory (each distinct key is kept
//! once, keys longer than an order id are skipped, at most `max_keys` distinct keys).
//!
//! Fencing (`order_events::fencing`): the scan lists the orders the topic holds as the view
//! counts them, so it applies the same rule per partition in offset order (from the
//! beginning, so from no claim): claim records and a zombie CartService's late records name no
//! order. Only records with the fencing headers are concerned, in whatever topic; dead letters
//! (copies carrying their source's headers and `dlq.source.*`) were fenced at their source and
//! are listed as they are, and a record whose header is unreadable is listed like any other
//! record the scan does not decode.
//!
//! Which topics may be scanned is the operator's decision ([`AllowedTopics`]); internal topics
//! (the registry's `_schemas`, Kafka's `__*`) never are: their keys are not order ids and listing
//! them leaks internal state.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use order_events::{Fence, MAX_ID_LEN};

use prometheus::IntGauge;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Headers;
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::Semaphore;

use crate::connection::ClientSocket;
use crate::dlq;
use crate::fence::marked;
use crate::metrics::TopicScanMetrics;
use order_events::fencing::Verdict;
use service_kit::kafka::{topic_partitions, KafkaContext, KafkaSettings};

/// How often a running scan looks at its client's socket.
const CLIENT_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// The scan endpoint's gate: which topics may be read, how many scans run at once, and the
/// limits of each. Shared by every HTTP worker.
pub struct Scanner {
    kafka: KafkaSettings,
    allowed: AllowedTopics,
    limits: ScanLimits,
    slots: Arc<Semaphore>,
    max_concurrent: usize,
    metrics: TopicScanMetrics,
}

/// Every scan slot is taken; try again later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

impl Scanner {
    pub fn new(
        kafka: KafkaSettings,
        allowed: AllowedTopics,
        limits: ScanLimits,
        max_concurrent: usize,
        metrics: TopicScanMetrics,
    ) -> Scanner {
        Scanner {
            kafka,
            allowed,
            limits,
            slots: Arc::new(Semaphore::new(max_concurrent.max(1))),
            max_concurrent: max_concurrent.max(1),
            metrics,
        }
    }

    /// The topics that may be scanned.
    pub fn allowed(&self) -> &AllowedTopics {
        &self.allowed
    }

    /// Whether `topic` may be scanned (internal topics never, whatever the list says).
    pub fn is_allowed(&self, topic: &str) -> bool {
        !is_internal_topic(topic) && self.allowed.contains(topic)
    }

    /// The most scans running at once.
    pub fn max_concurrent(&self) -> usize {
        self.max_concurrent
    }

    pub fn metrics(&self) -> &TopicScanMetrics {
        &self.metrics
    }

    /// Scans `topic` on a blocking thread if a slot is free. The slot is held by that thread
    /// (not by this future), so a scan that is still winding down keeps counting. The scan is
    /// cancelled within about 200 ms when `client`'s socket closes or this future is dropped.
    pub async fn scan(
        &self,
        topic: String,
        client: Option<ClientSocket>,
    ) -> Result<Result<ScanResult, ScanError>, Busy> {
        let permit = Arc::clone(&self.slots)
            .try_acquire_owned()
            .map_err(|_| Busy)?;
        let cancel = Arc::new(AtomicBool::new(false));
        let _cancel_on_drop = CancelOnDrop(Arc::clone(&cancel));
        let kafka = self.kafka.clone();
        let limits = self.limits.clone();
        let active = ActiveScan::start(self.metrics.active.clone());
        let cancelled = self.metrics.cancelled.clone();
        let flag = Arc::clone(&cancel);
        let scan = tokio::task::spawn_blocking(move || {
            let _slot = permit;
            let _active = active;
            let mut next_check = Instant::now();
            let mut client_gone = || {
                if flag.load(Ordering::Acquire) {
                    return true;
                }
                if let Some(client) = &client {
                    if Instant::now() >= next_check {
                        next_check = Instant::now() + CLIENT_CHECK_INTERVAL;
                        if client.is_gone() {
                            flag.store(true, Ordering::Release);
                        }
                    }
                }
                flag.load(Ordering::Acquire)
            };
            match scan_keys(&kafka, &topic, &limits, &mut client_gone) {
                // Whatever failed after the client left, the reason the scan ended is that.
                Err(_) if flag.load(Ordering::Acquire) => {
                    cancelled.inc();
                    tracing::info!(topic, "topic scan cancelled: the client went away");
                    Err(ScanError::Cancelled)
                }
                other => other,
            }
        });
        Ok(scan
            .await
            .unwrap_or_else(|e| Err(ScanError::Unavailable(format!("the scan task failed: {e}")))))
    }
}

/// Sets the flag when dropped: the handler's future is dropped when its client disconnects.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Counts a running scan in the `order_topic_scans_active` gauge until dropped.
struct ActiveScan(IntGauge);

impl ActiveScan {
    fn start(gauge: IntGauge) -> ActiveScan {
        gauge.inc();
        ActiveScan(gauge)
    }
}

impl Drop for ActiveScan {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The longest legal Kafka topic name.
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// Why a scan gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("Topic '{0}' does not exist")]
    NotFound(String),
    #[error("Kafka is unreachable: {0}")]
    Unavailable(String),
    #[error("the scan did not reach the end of topic '{topic}' within {timeout:?}")]
    TimedOut { topic: String, timeout: Duration },
    #[error("topic '{topic}' has more than {max} distinct keys; the scan stopped there")]
    TooManyKeys { topic: String, max: usize },
    #[error("the scan was cancelled (the client went away)")]
    Cancelled,
}

/// The registry's storage topic (Confluent's default name).
pub const SCHEMAS_TOPIC: &str = "_schemas";

/// Whether `name` is an internal topic: the registry's `_schemas`, or Kafka's own (`__*`, e.g.
/// `__consumer_offsets`, `__transaction_state`).
pub fn is_internal_topic(name: &str) -> bool {
    name == SCHEMAS_TOPIC || name.starts_with("__")
}

/// Why a list of scannable topics was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllowedTopicsError {
    #[error("TOPIC_SCAN_ALLOWED lists the internal topic '{0}'; internal topics (_schemas, __*) can never be scanned")]
    Internal(String),
    #[error("TOPIC_SCAN_ALLOWED lists '{name}', which is not a legal topic name: {reason}")]
    Illegal { name: String, reason: String },
    #[error("TOPIC_SCAN_ALLOWED lists no topic")]
    Empty,
}

/// The topics the scan endpoint may read: legal names, none internal, at least one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedTopics(Vec<String>);

impl AllowedTopics {
    /// Parses the operator's list (entries are trimmed; empty entries and duplicates dropped).
    pub fn parse<'a>(
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<AllowedTopics, AllowedTopicsError> {
        let mut topics: Vec<String> = Vec::new();
        for name in names.into_iter().map(str::trim).filter(|n| !n.is_empty()) {
            check_topic_name(name).map_err(|reason| AllowedTopicsError::Illegal {
                name: name.to_owned(),
                reason,
            })?;
            if is_internal_topic(name) {
                return Err(AllowedTopicsError::Internal(name.to_owned()));
            }
            if !topics.iter().any(|t| t == name) {
                topics.push(name.to_owned());
            }
        }
        if topics.is_empty() {
            return Err(AllowedTopicsError::Empty);
        }
        Ok(AllowedTopics(topics))
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.iter().any(|t| t == name)
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

impl std::fmt::Display for AllowedTopics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join(", "))
    }
}

/// Limits of one scan.
#[derive(Debug, Clone)]
pub struct ScanLimits {
    pub fetch_wait_max_ms: u32,
    pub timeout: Duration,
    /// The most distinct keys kept.
    pub max_keys: usize,
}

/// What a scan found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanResult {
    /// Distinct keys, in the order they were first seen.
    pub order_ids: Vec<String>,
    /// Records read (up to the watermarks).
    pub records: u64,
}

/// Kafka's rule for topic names: 1 to 249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn check_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Err(format!(
            "must be at most {MAX_TOPIC_NAME_LEN} characters long, got {}",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is not a legal topic name"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "contains {c:?}; only ASCII letters, digits, '.', '_' and '-' are allowed"
        ));
    }
    Ok(())
}

/// Whether a record names an order as far as fencing goes: not a claim, not a record its
/// partition's `fence` rejects (the record at `offset` is applied to it, in offset order).
/// Dead letters are not fenced again, and an unreadable header leaves the record listed.
fn counts<H: Headers>(fence: &mut Fence, offset: i64, headers: Option<&H>) -> bool {
    let dead_letter = headers.is_some_and(|headers| {
        headers
            .iter()
            .any(|header| header.key == dlq::headers::SOURCE_TOPIC)
    });
    if dead_letter {
        return true;
    }
    match marked(headers) {
        Ok(marked) => fence.judge(offset, marked) == Verdict::Counts,
        Err(_) => true,
    }
}

/// Scans `topic` from the beginning to its current high watermarks and returns the distinct
/// UTF-8 keys (blocking: run it on a blocking thread). Records without a key, with a key that
/// is not UTF-8 or longer than an order id ([`MAX_ID_LEN`]) name no order and are skipped, and
/// so are claims and fenced records (`order_events::fencing`, see the module).
/// Returns [`ScanError::Cancelled`] soon after `cancelled` returns true (it is asked before
/// every request to Kafka and at least every 200 ms).
pub fn scan_keys(
    kafka: &KafkaSettings,
    topic: &str,
    limits: &ScanLimits,
    cancelled: &mut dyn FnMut() -> bool,
) -> Result<ScanResult, ScanError> {
    let ScanLimits {
        fetch_wait_max_ms,
        timeout,
        max_keys,
    } = *limits;
    let deadline = Instant::now() + timeout;
    let remaining = || deadline.saturating_duration_since(Instant::now());
    let request_timeout = || remaining().min(Duration::from_secs(10));
    let fetch_wait = fetch_wait_max_ms.to_string();
    let consumer: BaseConsumer<KafkaContext> = kafka
        .client("the topic scan consumer")
        .tuning("group.id", "order-service-topic-scan")
        .tuning("enable.auto.offset.store", "false")
        .tuning("auto.offset.reset", "earliest")
        .tuning("fetch.wait.max.ms", &fetch_wait)
        .require(
            "isolation.level",
            "read_committed",
            "records of aborted Kafka transactions name no order",
        )
        .require(
            "enable.auto.commit",
            "false",
            "a scan never commits offsets",
        )
        .require(
            "enable.partition.eof",
            "true",
            "a scan knows it reached the end of a partition",
        )
        .create()
        .map_err(|e| ScanError::Unavailable(format!("{e:#}")))?;

    let partitions = match topic_partitions(consumer.client(), topic, request_timeout())
        .map_err(|e| ScanError::Unavailable(format!("fetching the cluster metadata: {e}")))?
    {
        None => return Err(ScanError::NotFound(topic.to_owned())),
        Some(n) => n,
    };

    // The end of each partition, as of now; empty partitions are done before they start.
    let mut ends: Vec<(i32, i64)> = Vec::new();
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        if cancelled() {
            return Err(ScanError::Cancelled);
        }
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, request_timeout())
            .map_err(|e| ScanError::Unavailable(format!("reading the watermarks: {e}")))?;
        if high > low {
            ends.push((partition, high));
            assignment
                .add_partition_offset(topic, partition, Offset::Beginning)
                .map_err(|e| ScanError::Unavailable(e.to_string()))?;
        }
    }
    // Each key is allocated once and shared by the set (for "seen?") and the list (for order).
    let mut seen: HashSet<Arc<str>> = HashSet::new();
    let mut order: Vec<Arc<str>> = Vec::new();
    let mut records = 0_u64;
    let mut fences: HashMap<i32, Fence> = HashMap::new();
    if ends.is_empty() {
        return Ok(ScanResult {
            order_ids: Vec::new(),
            records,
        });
    }
    consumer
        .assign(&assignment)
        .map_err(|e| ScanError::Unavailable(format!("assigning partitions: {e}")))?;

    let end_of = |partition: i32, ends: &[(i32, i64)]| {
        ends.iter()
            .find(|(p, _)| *p == partition)
            .map(|(_, high)| *high)
    };
    let mut open = ends.len();
    let mut done: HashSet<i32> = HashSet::new();
    while open > 0 {
        if cancelled() {
            return Err(ScanError::Cancelled);
        }
        if Instant::now() >= deadline {
            return Err(ScanError::TimedOut {
                topic: topic.to_owned(),
                timeout,
            });
        }
        match consumer.poll(remaining().min(Duration::from_millis(200))) {
            None => {}
            Some(Ok(message)) => {
                let partition = message.partition();
                let Some(high) = end_of(partition, &ends) else {
                    continue;
                };
                if done.contains(&partition) || message.offset() >= high {
                    continue;
                }
                records += 1;
                // Every record goes through its partition's fence, keyless claims included.
                let fence = fences.entry(partition).or_default();
                let counted = counts(fence, message.offset(), message.headers());
                let key = message
                    .key()
                    .filter(|k| counted && !k.is_empty() && k.len() <= MAX_ID_LEN)
                    .and_then(|k| std::str::from_utf8(k).ok());
                if let Some(key) = key {
                    if !seen.contains(key) {
                        if seen.len() >= max_keys {
                            return Err(ScanError::TooManyKeys {
                                topic: topic.to_owned(),
                                max: max_keys,
                            });
                        }
                        let key: Arc<str> = Arc::from(key);
                        seen.insert(Arc::clone(&key));
                        order.push(key);
                    }
                }
                if message.offset() + 1 >= high && done.insert(partition) {
                    open -= 1;
                }
            }
            // The end of the partition *now*, which is at or past the watermark taken above
            // (this also ends partitions whose last offsets are not records, e.g. markers).
            Some(Err(KafkaError::PartitionEOF(partition)))
                if end_of(partition, &ends).is_some() && done.insert(partition) =>
            {
                open -= 1;
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "topic scan: consumer error (retrying until the deadline)");
            }
        }
    }
    drop(seen);
    Ok(ScanResult {
        order_ids: order.iter().map(|k| k.to_string()).collect(),
        records,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_and_fenced_records_do_not_count_and_dead_letters_are_not_fenced_again() {
        use rdkafka::message::{Header, OwnedHeaders};
        let headers = |pairs: &[(&str, &str)]| {
            pairs.iter().fold(OwnedHeaders::new(), |h, (key, value)| {
                h.insert(Header {
                    key,
                    value: Some(*value),
                })
            })
        };
        let mut fence = Fence::default();
        assert!(
            counts::<OwnedHeaders>(&mut fence, 0, None),
            "outside the protocol"
        );
        assert!(!counts(
            &mut fence,
            1,
            Some(&headers(&[("cart-claim", "none")]))
        ));
        assert!(counts(
            &mut fence,
            2,
            Some(&headers(&[("cart-claim-offset", "1")]))
        ));
        assert!(!counts(
            &mut fence,
            3,
            Some(&headers(&[("cart-claim", "1")]))
        ));
        assert!(
            !counts(&mut fence, 4, Some(&headers(&[("cart-claim-offset", "1")]))),
            "a zombie's record"
        );
        assert!(counts(
            &mut fence,
            5,
            Some(&headers(&[("cart-claim-offset", "3")]))
        ));
        assert!(
            counts(&mut fence, 6, Some(&headers(&[("cart-claim-offset", "x")]))),
            "unreadable: listed like any undecoded record"
        );
        // A dead letter copied from another partition, under another claim: not fenced here.
        let letter = headers(&[
            ("cart-claim-offset", "40"),
            ("dlq.source.topic", "order-events"),
        ]);
        assert!(counts(&mut fence, 7, Some(&letter)));
        assert_eq!(fence.current(), Some(3));
    }

    #[test]
    fn topic_names_follow_kafkas_rule() {
        for ok in ["order-events", "a", "A.b_c-9", "..x", &"x".repeat(249)] {
            assert!(check_topic_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a b", "a/b", "ä", "a*", &"x".repeat(250)] {
            assert!(check_topic_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn internal_topics_are_refused_even_when_listed() {
        for internal in [
            "_schemas",
            "__consumer_offsets",
            "__transaction_state",
            "__x",
        ] {
            assert_eq!(
                AllowedTopics::parse(["order-events", internal]),
                Err(AllowedTopicsError::Internal(internal.to_owned())),
                "{internal}"
            );
        }
        // A single leading underscore other than _schemas is an ordinary topic.
        assert!(AllowedTopics::parse(["_orders"]).is_ok());
    }

    #[test]
    fn the_allowed_list_is_trimmed_deduplicated_and_never_empty() {
        let allowed =
            AllowedTopics::parse([" order-events", "order-events.dlq ", "", "order-events"])
                .map_err(|e| e.to_string());
        assert_eq!(
            allowed.as_ref().map(AllowedTopics::as_slice),
            Ok(&["order-events".to_owned(), "order-events.dlq".to_owned()][..])
        );
        assert_eq!(
            allowed.map(|a| a.to_string()),
            Ok("order-events, order-events.dlq".to_owned())
        );
        assert_eq!(
            AllowedTopics::parse(["", " "]),
            Err(AllowedTopicsError::Empty)
        );
        assert!(matches!(
            AllowedTopics::parse(["a/b"]),
            Err(AllowedTopicsError::Illegal { .. })
        ));
    }
}
