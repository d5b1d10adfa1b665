//! Reading the distinct order ids of a topic straight from Kafka, not from the view.
//!
//! Why a module: `GET /api/getAllOrderIdsFromTopic` answers what *the topic* holds, so it
//! reads the records' keys from the beginning up to the high watermarks taken when the request
//! arrives (records produced during the scan are not waited for). Values are never decoded:
//! the key is the order id by contract, and decoding would put the registry on this path.
//!
//! Each scan uses its own short-lived consumer (no group, partitions assigned directly), runs on
//! a blocking thread, and is bounded by a deadline.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::kafka::{topic_state, KafkaConfig, TopicState};

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

/// Scans `topic` from the beginning to its current high watermarks and returns the distinct
/// UTF-8 keys (blocking: run it on a blocking thread). Records without a key, or with a key
/// that is not UTF-8, name no order and are skipped.
pub fn scan_keys(
    kafka: &KafkaConfig,
    topic: &str,
    fetch_wait_max_ms: u32,
    timeout: Duration,
) -> Result<ScanResult, ScanError> {
    let deadline = Instant::now() + timeout;
    let remaining = || deadline.saturating_duration_since(Instant::now());
    let request_timeout = || remaining().min(Duration::from_secs(10));
    let fetch_wait = fetch_wait_max_ms.to_string();
    let consumer: BaseConsumer = kafka
        .client(&[
            ("group.id", "order-service-topic-scan"),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("enable.partition.eof", "true"),
            ("auto.offset.reset", "earliest"),
            ("fetch.wait.max.ms", &fetch_wait),
        ])
        .create()
        .map_err(|e| ScanError::Unavailable(format!("creating a consumer: {e}")))?;

    let partitions = match topic_state(consumer.client(), topic, request_timeout())
        .map_err(|e| ScanError::Unavailable(format!("{e:#}")))?
    {
        TopicState::Missing => return Err(ScanError::NotFound(topic.to_owned())),
        TopicState::Partitions(n) => n,
    };

    // The end of each partition, as of now; empty partitions are done before they start.
    let mut ends: Vec<(i32, i64)> = Vec::new();
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
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
    let mut seen = HashSet::new();
    let mut result = ScanResult {
        order_ids: Vec::new(),
        records: 0,
    };
    if ends.is_empty() {
        return Ok(result);
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
                result.records += 1;
                if let Some(key) = message.key().and_then(|k| std::str::from_utf8(k).ok()) {
                    if !key.is_empty() && seen.insert(key.to_owned()) {
                        result.order_ids.push(key.to_owned());
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
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafkas_rule() {
        for ok in ["order-events", "a", "A.b_c-9", "..x", &"x".repeat(249)] {
            assert!(check_topic_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a b", "a/b", "ä", "a*", &"x".repeat(250)] {
            assert!(check_topic_name(bad).is_err(), "{bad:?}");
        }
    }
}
