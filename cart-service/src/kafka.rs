//! CartService's Kafka side: the topic, loading state from it, and publishing to it.
//!
//! The producer is idempotent with acks=all, so a record that was acknowledged is on every
//! in-sync replica, and retries neither duplicate nor reorder records of one key. A publish
//! waits for that acknowledgement, bounded by `message.timeout.ms`; an unreachable broker is an
//! error after that time, never a hang.
//!
//! A failed publish says whether the record may still land ([`PublishError::InDoubt`]: it may
//! already be on the broker's socket, which no purge can recall) or surely will not
//! (`Unavailable`, `Refused`). Callers keep an in-doubt event and send it again before anything
//! else of that order (see [`crate::orders`]).

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use order_events::OrderEventCodec;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::orders::Orders;

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The record was never handed to a broker (local queue full or purged before sending).
    #[error("Kafka broker unreachable or not acknowledging: {0}")]
    Unavailable(String),
    /// No acknowledgement in time: the record may or may not be written, now or later.
    #[error("Kafka broker unreachable or not acknowledging: {0}")]
    InDoubt(String),
    /// The broker answered with an error: the record is not written.
    #[error("Kafka refused the record: {0}")]
    Refused(String),
}

/// Producer metrics.
#[derive(Clone)]
pub struct PublishMetrics {
    latency: HistogramVec,
    errors: IntCounterVec,
}

impl PublishMetrics {
    pub fn register(registry: &Registry) -> anyhow::Result<Self> {
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "kafka_produce_duration_seconds",
                "Time from send to the broker's acknowledgement",
            )
            .buckets(service_kit::metrics::LATENCY_BUCKETS.to_vec()),
            &["outcome"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new("kafka_produce_errors_total", "Failed publishes by kind"),
            &["kind"],
        )?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        Ok(PublishMetrics { latency, errors })
    }
}

/// Builds librdkafka configurations from the settings.
#[derive(Clone)]
pub struct KafkaConfig {
    pub bootstrap_servers: String,
    pub properties: Vec<(String, String)>,
}

impl KafkaConfig {
    pub fn client(&self, extra: &[(&str, String)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap_servers);
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        for (key, value) in extra {
            config.set(*key, value);
        }
        config
    }
}

/// The single writer of the orders topic.
pub struct Publisher {
    producer: RwLock<Arc<FutureProducer>>,
    config: ClientConfig,
    topic: String,
    timeout: Duration,
    metrics: PublishMetrics,
}

impl Publisher {
    pub fn new(
        kafka: &KafkaConfig,
        topic: &str,
        timeout: Duration,
        linger_ms: u32,
        metrics: PublishMetrics,
    ) -> anyhow::Result<Publisher> {
        let config = kafka.client(&[
            ("acks", "all".into()),
            ("enable.idempotence", "true".into()),
            // With idempotence librdkafka keeps per-partition order with up to 5 in flight.
            ("max.in.flight.requests.per.connection", "5".into()),
            ("linger.ms", linger_ms.to_string()),
            ("message.timeout.ms", timeout.as_millis().to_string()),
            (
                "request.timeout.ms",
                timeout.as_millis().min(30_000).to_string(),
            ),
        ]);
        let producer: FutureProducer = config.create().context("creating the Kafka producer")?;
        Ok(Publisher {
            producer: RwLock::new(Arc::new(producer)),
            config,
            topic: topic.to_string(),
            timeout,
            metrics,
        })
    }

    fn producer(&self) -> Arc<FutureProducer> {
        self.producer
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sends one record and waits for the broker's acknowledgement (acks=all).
    pub async fn publish(
        &self,
        key: &str,
        payload: &[u8],
        headers: &[(&str, &str)],
    ) -> Result<(i32, i64), PublishError> {
        let mut kafka_headers = OwnedHeaders::new();
        for (name, value) in headers {
            kafka_headers = kafka_headers.insert(Header {
                key: name,
                value: Some(*value),
            });
        }
        let record = FutureRecord::to(&self.topic)
            .key(key)
            .payload(payload)
            .headers(kafka_headers);
        let started = Instant::now();
        let producer = self.producer();
        let sent =
            match tokio::time::timeout(self.timeout, producer.send(record, self.timeout)).await {
                Ok(sent) => sent,
                Err(_) => {
                    self.metrics.errors.with_label_values(&["in_doubt"]).inc();
                    // The record may be on the socket; at least purge what is still queued so
                    // nothing of this producer is sent from now on (see `replace`).
                    self.replace(producer, "no acknowledgement within the publish timeout");
                    return Err(PublishError::InDoubt(format!(
                        "no acknowledgement within {} ms",
                        self.timeout.as_millis()
                    )));
                }
            };
        match sent {
            Ok(delivery) => {
                self.metrics
                    .latency
                    .with_label_values(&["ok"])
                    .observe(started.elapsed().as_secs_f64());
                Ok((delivery.partition, delivery.offset))
            }
            Err((error, _)) => {
                self.metrics
                    .latency
                    .with_label_values(&["error"])
                    .observe(started.elapsed().as_secs_f64());
                // Any failed publish gets a fresh producer (see `replace`).
                self.replace(producer, &error.to_string());
                Err(classify(error, &self.metrics))
            }
        }
    }

    /// Replaces a producer after a failed publish. After a timeout librdkafka's idempotent
    /// producer bumps its epoch and resumes with its old producer ID; Tansu 0.6 then panics in
    /// its idempotence check (`tansu-storage` lite.rs: "more or less than one row") and stops
    /// serving until restarted. A fresh producer asks for a new ID and works. It also handles
    /// fatal errors, which an idempotent producer never recovers from. Dropping the old producer
    /// purges its queue and stops waiting for its in-flight requests, so nothing more is sent
    /// by it; a request already on the socket may still be written, hence
    /// [`PublishError::InDoubt`].
    fn replace(&self, failed: Arc<FutureProducer>, why: &str) {
        let mut slot = self.producer.write().unwrap_or_else(|e| e.into_inner());
        let old = if Arc::ptr_eq(&slot, &failed) {
            match self.config.create::<FutureProducer>() {
                Ok(fresh) => {
                    tracing::warn!(reason = why, "replacing the Kafka producer");
                    Some(std::mem::replace(&mut *slot, Arc::new(fresh)))
                }
                Err(e) => {
                    tracing::error!(error = %e, "could not create a new producer");
                    None
                }
            }
        } else {
            None
        };
        drop(slot);
        // Destroying a producer blocks while it purges; not on this thread. Whichever of these
        // handles is the last one destroys it.
        tokio::task::spawn_blocking(move || drop((old, failed)));
    }

    /// Waits until everything sent is acknowledged (graceful shutdown).
    pub fn flush(&self, timeout: Duration) {
        if let Err(e) = self.producer().flush(timeout) {
            tracing::warn!(error = %e, "flush at shutdown did not complete");
        }
    }
}

fn classify(error: KafkaError, metrics: &PublishMetrics) -> PublishError {
    let text = error.to_string();
    let (kind, error) = match error.rdkafka_error_code() {
        // Never left this process.
        Some(RDKafkaErrorCode::QueueFull | RDKafkaErrorCode::PurgeQueue) => {
            ("unavailable", PublishError::Unavailable(text))
        }
        // Sent, or maybe sent, without a definite answer.
        Some(
            RDKafkaErrorCode::MessageTimedOut
            | RDKafkaErrorCode::PurgeInflight
            | RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::RequestTimedOut
            | RDKafkaErrorCode::NotEnoughReplicas
            | RDKafkaErrorCode::NotEnoughReplicasAfterAppend
            | RDKafkaErrorCode::LeaderNotAvailable
            | RDKafkaErrorCode::NotLeaderForPartition
            | RDKafkaErrorCode::UnknownTopicOrPartition
            | RDKafkaErrorCode::Unknown
            | RDKafkaErrorCode::OutOfOrderSequenceNumber
            | RDKafkaErrorCode::UnknownProducerId
            | RDKafkaErrorCode::InvalidProducerEpoch
            | RDKafkaErrorCode::Fatal,
        ) => ("in_doubt", PublishError::InDoubt(text)),
        _ => ("refused", PublishError::Refused(text)),
    };
    metrics.errors.with_label_values(&[kind]).inc();
    error
}

/// Creates the topic (with `partitions`) unless it exists; returns its partition count.
pub async fn ensure_topic(
    kafka: &KafkaConfig,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> anyhow::Result<i32> {
    let admin: AdminClient<DefaultClientContext> = kafka
        .client(&[])
        .create()
        .context("creating an admin client")?;
    let existing = partition_count(admin.inner(), topic, timeout)?;
    if let Some(count) = existing {
        return Ok(count);
    }
    // As many replicas as the cluster allows, up to 3 (the registry and OrderService create
    // their topics the same way), so acks=all means what it says on a real cluster.
    let brokers = admin
        .inner()
        .fetch_metadata(None, timeout)
        .context("cannot reach the Kafka broker")?
        .brokers()
        .len();
    let replication = i32::try_from(brokers.clamp(1, 3)).unwrap_or(1);
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
    for result in admin
        .create_topics([&new_topic], &AdminOptions::new())
        .await
        .with_context(|| format!("creating topic {topic}"))?
    {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => anyhow::bail!("creating topic {name}: {code}"),
        }
    }
    Ok(partitions)
}

fn partition_count<C: rdkafka::ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
    timeout: Duration,
) -> anyhow::Result<Option<i32>> {
    let metadata = client
        .fetch_metadata(Some(topic), timeout)
        .context("cannot reach the Kafka broker")?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
        .map(|t| t.partitions().len() as i32))
}

/// Reads the topic from the beginning to the high watermarks of this moment and loads the
/// latest event of every order into `orders`. Returns how many records were read.
pub async fn load_orders(
    kafka: &KafkaConfig,
    topic: &str,
    codec: &OrderEventCodec,
    orders: &Orders,
    fetch_wait_max_ms: u32,
    timeout: Duration,
) -> anyhow::Result<u64> {
    let consumer: StreamConsumer = kafka
        .client(&[
            (
                "group.id",
                format!("cart-service-loader-{}", uuid::Uuid::new_v4()),
            ),
            ("enable.auto.commit", "false".into()),
            ("enable.partition.eof", "false".into()),
            ("fetch.wait.max.ms", fetch_wait_max_ms.to_string()),
        ])
        .create()
        .context("creating the loading consumer")?;
    let count = partition_count(consumer.client(), topic, timeout)?
        .with_context(|| format!("topic {topic} does not exist"))?;
    let mut assignment = TopicPartitionList::new();
    let mut remaining = std::collections::HashMap::new();
    for partition in 0..count {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, timeout)
            .with_context(|| format!("reading the end of {topic}/{partition}"))?;
        if high > low {
            remaining.insert(partition, high);
            assignment
                .add_partition_offset(topic, partition, Offset::Beginning)
                .context("building the assignment")?;
        }
    }
    if remaining.is_empty() {
        return Ok(0);
    }
    consumer
        .assign(&assignment)
        .context("assigning the partitions")?;
    let mut read = 0_u64;
    while !remaining.is_empty() {
        let message = consumer.recv().await.context("reading the orders topic")?;
        read += 1;
        match codec.decode(message.payload()).await {
            Ok(event) => orders.load(event),
            Err(e) if e.is_poison() => tracing::warn!(
                partition = message.partition(),
                offset = message.offset(),
                error = %e,
                "skipping an unreadable record while loading"
            ),
            Err(e) => return Err(anyhow::anyhow!(e).context("decoding while loading")),
        }
        if let Some(end) = remaining.get(&message.partition()) {
            if message.offset() + 1 >= *end {
                remaining.remove(&message.partition());
            }
        }
    }
    Ok(read)
}

/// Is the broker reachable right now?
pub fn ping(consumer: &BaseConsumer, timeout: Duration) -> bool {
    consumer.fetch_metadata(None, timeout).is_ok()
}
