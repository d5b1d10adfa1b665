//! CartService's Kafka side: publishing to the topic (reading it is [`crate::follow`]).
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

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;
use service_kit::kafka::{KafkaContext, KafkaSettings};

type OrderProducer = FutureProducer<KafkaContext>;

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PublishError {
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
pub(crate) struct PublishMetrics {
    latency: HistogramVec,
    errors: IntCounterVec,
}

impl PublishMetrics {
    pub(crate) fn register(registry: &Registry) -> anyhow::Result<Self> {
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

/// The producer of the orders topic (records, claims) and of the owner map.
pub(crate) struct Publisher {
    producer: RwLock<Arc<OrderProducer>>,
    config: ClientConfig,
    topic: String,
    timeout: Duration,
    metrics: PublishMetrics,
}

impl Publisher {
    pub(crate) fn new(
        kafka: &KafkaSettings,
        topic: &str,
        timeout: Duration,
        linger_ms: u32,
        metrics: PublishMetrics,
    ) -> anyhow::Result<Publisher> {
        // acks=all and idempotence cannot be overridden; with idempotence librdkafka keeps
        // per-partition order with up to 5 requests in flight.
        let builder = kafka
            .client("the order-events producer")
            .durable_producer(timeout)
            .tuning("linger.ms", linger_ms);
        let config = builder.config()?;
        let producer: OrderProducer = builder.create()?;
        Ok(Publisher {
            producer: RwLock::new(Arc::new(producer)),
            config,
            topic: topic.to_string(),
            timeout,
            metrics,
        })
    }

    fn producer(&self) -> Arc<OrderProducer> {
        self.producer
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sends one record to `partition` and waits for the broker's acknowledgement (acks=all).
    /// The caller chooses the partition ([`order_events::partition_for`]), never librdkafka's
    /// partitioner, so where a record lands and how it is routed cannot disagree.
    pub(crate) async fn publish(
        &self,
        key: &str,
        partition: i32,
        payload: &[u8],
        headers: &[(&str, &str)],
    ) -> Result<(i32, i64), PublishError> {
        let record = FutureRecord::to(&self.topic)
            .key(key)
            .partition(partition)
            .payload(payload)
            .headers(kafka_headers(headers));
        self.send(record).await
    }

    /// Appends a claim of `partition` (no key, no value, `order_events::fencing` headers) and
    /// returns its offset once acknowledged.
    pub(crate) async fn publish_claim(
        &self,
        partition: i32,
        headers: &[(&str, &str)],
    ) -> Result<i64, PublishError> {
        let record: FutureRecord<'_, (), ()> = FutureRecord::to(&self.topic)
            .partition(partition)
            .headers(kafka_headers(headers));
        Ok(self.send(record).await?.1)
    }

    /// Sends one keyed record to another topic (the ownership map), waiting for the
    /// acknowledgement.
    pub(crate) async fn publish_to(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
    ) -> Result<(i32, i64), PublishError> {
        self.send(FutureRecord::to(topic).key(key).payload(payload))
            .await
    }

    async fn send<K, P>(&self, record: FutureRecord<'_, K, P>) -> Result<(i32, i64), PublishError>
    where
        K: rdkafka::message::ToBytes + ?Sized,
        P: rdkafka::message::ToBytes + ?Sized,
    {
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
    fn replace(&self, failed: Arc<OrderProducer>, why: &str) {
        let mut slot = self.producer.write().unwrap_or_else(|e| e.into_inner());
        let old = if Arc::ptr_eq(&slot, &failed) {
            match self
                .config
                .create_with_context::<_, OrderProducer>(KafkaContext::default())
            {
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

    /// The publish timeout: the longest a publish, and its verdict, may take.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Waits until everything sent is acknowledged (graceful shutdown).
    pub(crate) fn flush(&self, timeout: Duration) {
        if let Err(e) = self.producer().flush(timeout) {
            tracing::warn!(error = %e, "flush at shutdown did not complete");
        }
    }
}

fn kafka_headers(headers: &[(&str, &str)]) -> OwnedHeaders {
    headers
        .iter()
        .fold(OwnedHeaders::new(), |all, (name, value)| {
            all.insert(Header {
                key: name,
                value: Some(*value),
            })
        })
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

/// Is the broker reachable right now?
pub(crate) fn ping(consumer: &BaseConsumer<KafkaContext>, timeout: Duration) -> bool {
    consumer.fetch_metadata(None, timeout).is_ok()
}
