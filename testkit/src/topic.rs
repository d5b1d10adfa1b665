//! Reading a topic back, as tests do to check what a service really wrote to Kafka.
//!
//! The reader assigns every partition from the beginning (no consumer group, nothing committed),
//! so it sees exactly what the broker holds. It either reads up to the end the topic has when
//! called, or waits for a number of records (a topic a service is still writing to).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// One record as the broker holds it.
#[derive(Debug, Clone)]
pub struct TopicRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// Header values as (lossy) UTF-8.
    pub headers: Vec<(String, String)>,
}

impl TopicRecord {
    /// The value of the first header called `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The headers as (name, value) pairs, as a Kafka client lists them (values as read here:
    /// lossy UTF-8).
    pub fn header_pairs(&self) -> impl Iterator<Item = (&str, Option<&[u8]>)> {
        self.headers
            .iter()
            .map(|(name, value)| (name.as_str(), Some(value.as_bytes())))
    }

    /// The key as (lossy) UTF-8; empty when there is none.
    pub fn key_text(&self) -> String {
        String::from_utf8_lossy(self.key.as_deref().unwrap_or_default()).into_owned()
    }

    fn from_message(message: &BorrowedMessage<'_>) -> Self {
        let headers = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_owned(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        TopicRecord {
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            headers,
        }
    }
}

/// Every record of `topic` from the beginning to the end it has now (its high watermarks), in
/// partition order (each partition in offset order, partitions interleaved as fetched).
pub fn read_to_end(
    bootstrap: &str,
    topic: &str,
    timeout: Duration,
) -> anyhow::Result<Vec<TopicRecord>> {
    read_to_end_with(bootstrap, &[], topic, timeout)
}

/// As [`read_to_end`], with librdkafka `properties` added (a secured broker's
/// [`crate::Broker::client_properties`]).
pub fn read_to_end_with(
    bootstrap: &str,
    properties: &[(String, String)],
    topic: &str,
    timeout: Duration,
) -> anyhow::Result<Vec<TopicRecord>> {
    let deadline = Instant::now() + timeout;
    let consumer = reader(bootstrap, properties)?;
    let partitions = partitions(&consumer, topic, deadline)?;
    let mut assignment = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for p in 0..partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(5))
            .with_context(|| format!("reading the watermarks of {topic}/{p}"))?;
        if high > low {
            ends.insert(p, high);
            assignment.add_partition_offset(topic, p, Offset::Beginning)?;
        }
    }
    let mut records = vec![];
    if ends.is_empty() {
        return Ok(records);
    }
    consumer
        .assign(&assignment)
        .context("assigning partitions")?;
    while !ends.is_empty() {
        if Instant::now() > deadline {
            bail!("reading {topic} to its end took longer than {timeout:?}");
        }
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message.with_context(|| format!("reading {topic}"))?;
        if let Some(end) = ends.get(&message.partition()) {
            if message.offset() + 1 >= *end {
                ends.remove(&message.partition());
            }
        }
        records.push(TopicRecord::from_message(&message));
    }
    Ok(records)
}

/// The first `count` records of `topic`, waiting (up to `timeout`) for the topic to be created
/// and for the records to arrive.
pub fn read_count(
    bootstrap: &str,
    topic: &str,
    count: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<TopicRecord>> {
    read_count_with(bootstrap, &[], topic, count, timeout)
}

/// As [`read_count`], with librdkafka `properties` added (a secured broker's
/// [`crate::Broker::client_properties`]).
pub fn read_count_with(
    bootstrap: &str,
    properties: &[(String, String)],
    topic: &str,
    count: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<TopicRecord>> {
    let deadline = Instant::now() + timeout;
    let consumer = reader(bootstrap, properties)?;
    let partitions = partitions(&consumer, topic, deadline)?;
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer
        .assign(&assignment)
        .context("assigning partitions")?;
    let mut records = Vec::new();
    while records.len() < count {
        if Instant::now() > deadline {
            bail!(
                "only {} of {count} records arrived on {topic} within {timeout:?}",
                records.len()
            );
        }
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.with_context(|| format!("reading {topic}"))?;
            records.push(TopicRecord::from_message(&message));
        }
    }
    Ok(records)
}

fn reader(bootstrap: &str, properties: &[(String, String)]) -> anyhow::Result<BaseConsumer> {
    let mut config = ClientConfig::new();
    for (name, value) in properties {
        config.set(name, value);
    }
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "testkit-reader")
        .set("enable.auto.commit", "false")
        // Tansu holds a fetch for the whole wait even when data is there.
        .set("fetch.wait.max.ms", "10")
        .create()
        .context("creating the topic reader")
}

/// The number of partitions of `topic`, waiting for it to exist.
fn partitions(consumer: &BaseConsumer, topic: &str, deadline: Instant) -> anyhow::Result<i32> {
    loop {
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .with_context(|| format!("reading the metadata of {topic}"))?;
        let found = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map(|t| t.partitions().len());
        match found {
            Some(n) if n > 0 => return i32::try_from(n).context("partition count"),
            _ if Instant::now() > deadline => bail!("topic {topic} does not exist"),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}
