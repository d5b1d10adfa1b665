//! The `_schemas` topic as the registry's only storage.
//!
//! One task reads the topic from the beginning, forever, and applies each record to the
//! [`Model`]. Writes never touch the model directly: a writer appends records (acks=all,
//! idempotent), waits until the reader has applied them, and then looks at the model to see
//! whether they won (see `model` for the rules). So a restart, a second instance and this
//! instance all see one history: the log.
//!
//! The reader is watched ([`monitor`]): if it panics or ends, the store says so
//! ([`Store::reader_failure`]) instead of serving a state that silently stops moving, and the
//! application exits so that a supervisor restarts it.

use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use service_kit::kafka::{KafkaContext, KafkaSettings, TopicSpec};
use tokio::sync::{watch, Mutex, MutexGuard};

use crate::model::{Model, Outcome};
use crate::records::Record;

/// How to reach the topic.
#[derive(Debug, Clone)]
pub(crate) struct StoreSettings {
    /// How to reach Kafka (servers, SASL, TLS, ...).
    pub(crate) kafka: KafkaSettings,
    pub(crate) topic: String,
    /// `fetch.wait.max.ms` for the reader. Tansu holds a fetch for this long even when data is
    /// there, so a small value keeps writes fast; Apache Kafka answers early and does not care.
    pub(crate) fetch_wait_max_ms: u32,
    /// How long a write may wait for the broker and for the reader.
    pub(crate) timeout: Duration,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("Error in the backend data store: {0}")]
    Kafka(String),
    #[error("Operation timed out: {0}")]
    Timeout(String),
    /// The broker refused a record as larger than it accepts (its `message.max.bytes`).
    #[error("Invalid schema: the broker refused the record as too large ({0}); register a smaller schema or raise the topic's max.message.bytes")]
    TooLarge(String),
}

/// The model, the reader that keeps it current and the producer that appends to the log.
pub(crate) struct Store {
    model: Arc<RwLock<Model>>,
    producer: FutureProducer<KafkaContext>,
    watermarks: Arc<BaseConsumer<KafkaContext>>,
    applied: watch::Receiver<i64>,
    write_lock: Mutex<()>,
    settings: StoreSettings,
    reader: tokio::task::AbortHandle,
    reader_stopped: watch::Receiver<Option<String>>,
}

impl Store {
    /// Creates the topic if needed, starts the reader and waits until it has replayed the log.
    pub(crate) async fn open(settings: StoreSettings) -> anyhow::Result<Store> {
        // One partition: the log's order is the registry's order of events.
        let topic = TopicSpec {
            name: &settings.topic,
            partitions: 1,
            config: &[("cleanup.policy", "compact")],
            exact_partitions: true,
        };
        service_kit::kafka::ensure_topic(&settings.kafka, &topic, settings.timeout).await?;

        let producer: FutureProducer<KafkaContext> = settings
            .kafka
            .client("the _schemas producer")
            .durable_producer(settings.timeout)
            .tuning("linger.ms", 0)
            .create()?;
        let consumer_config = settings
            .kafka
            .client("the _schemas reader")
            .tuning("group.id", "schema-registry-reader")
            .tuning("enable.auto.offset.store", "false")
            .tuning("fetch.wait.max.ms", settings.fetch_wait_max_ms)
            .tuning("enable.partition.eof", "false")
            .require(
                "enable.auto.commit",
                "false",
                "every instance reads the whole log from the beginning",
            );
        let reader: StreamConsumer<KafkaContext> = consumer_config.create()?;
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(&settings.topic, 0, Offset::Beginning)
            .context("building the reader's assignment")?;
        reader
            .assign(&assignment)
            .context("assigning the _schemas partition")?;
        let watermarks: BaseConsumer<KafkaContext> = consumer_config.create()?;

        let model = Arc::new(RwLock::new(Model::default()));
        let (applied_tx, applied) = watch::channel(0_i64);
        let reader = tokio::spawn(read_forever(reader, model.clone(), applied_tx));
        let reader_abort = reader.abort_handle();
        let reader_stopped = monitor(reader, "the _schemas reader");
        let store = Store {
            model,
            producer,
            watermarks: Arc::new(watermarks),
            applied,
            write_lock: Mutex::new(()),
            settings,
            reader: reader_abort,
            reader_stopped,
        };
        store
            .sync()
            .await
            .context("replaying the _schemas topic at start-up")?;
        Ok(store)
    }

    /// A read view of the current state.
    pub(crate) fn model(&self) -> RwLockReadGuard<'_, Model> {
        // A poisoned lock only means a panic happened while applying; the data is still the
        // last consistent state, because `apply` mutates only after its checks.
        self.model.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Serializes this instance's writes (another instance is handled by the log rules).
    pub(crate) async fn write_lock(&self) -> MutexGuard<'_, ()> {
        self.write_lock.lock().await
    }

    /// Waits until the reader has applied everything in the log at this moment.
    pub(crate) async fn sync(&self) -> Result<(), StoreError> {
        let end = self.end_of_log(self.settings.timeout).await?;
        self.wait_applied(end, self.settings.timeout).await
    }

    /// The end of the log (the offset the next record gets), as the broker says within
    /// `timeout`: an answer also proves the broker reachable.
    pub(crate) async fn end_of_log(&self, timeout: Duration) -> Result<i64, StoreError> {
        let client = self.watermarks.clone();
        let topic = self.settings.topic.clone();
        let (_, high) =
            tokio::task::spawn_blocking(move || client.fetch_watermarks(&topic, 0, timeout))
                .await
                .map_err(|e| StoreError::Kafka(format!("watermark task failed: {e}")))?
                .map_err(|e| StoreError::Kafka(format!("cannot read the end of the log: {e}")))?;
        Ok(high)
    }

    /// Why the log reader stopped, if it did (then the model no longer follows the log).
    pub(crate) fn reader_failure(&self) -> Option<String> {
        self.reader_stopped.borrow().clone()
    }

    /// Waits until the log reader stops, and says why.
    pub(crate) async fn reader_stopped(&self) -> String {
        let mut stopped = self.reader_stopped.clone();
        let reason = match stopped.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone(),
            Err(_) => None,
        };
        reason.unwrap_or_else(|| "its monitor stopped".to_string())
    }

    /// Waits up to `timeout` until the reader's position is past `end` (an exclusive offset).
    pub(crate) async fn wait_applied(&self, end: i64, timeout: Duration) -> Result<(), StoreError> {
        let mut applied = self.applied.clone();
        tokio::time::timeout(timeout, applied.wait_for(|pos| *pos >= end))
            .await
            .map_err(|_| {
                StoreError::Timeout(format!(
                    "the reader did not reach offset {end} within {timeout:?}"
                ))
            })?
            .map_err(|_| StoreError::Kafka("the reader stopped".to_string()))?;
        Ok(())
    }

    /// Appends records in order, waits for the broker's acknowledgement of each and then for
    /// the reader to have applied them.
    pub(crate) async fn append(&self, records: Vec<Record>) -> Result<(), StoreError> {
        let mut last = -1;
        for record in records {
            let (key, value) = record
                .encode()
                .map_err(|e| StoreError::Kafka(e.to_string()))?;
            let mut record = FutureRecord::to(&self.settings.topic)
                .key(&key)
                .partition(0);
            if let Some(value) = value.as_ref() {
                record = record.payload(value);
            }
            let delivery = self
                .producer
                .send(record, self.settings.timeout)
                .await
                .map_err(|(e, _)| match e.rdkafka_error_code() {
                    Some(
                        RDKafkaErrorCode::MessageSizeTooLarge
                        | RDKafkaErrorCode::InvalidMessageSize
                        | RDKafkaErrorCode::MessageBatchTooLarge,
                    ) => StoreError::TooLarge(e.to_string()),
                    _ => StoreError::Kafka(format!("the broker refused a write: {e}")),
                })?;
            last = delivery.offset;
        }
        if last >= 0 {
            self.wait_applied(last + 1, self.settings.timeout).await?;
        }
        Ok(())
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Watches a task that should run forever: once it ends or panics, logs an error and
/// publishes why through the returned receiver (`None` while it runs).
pub(crate) fn monitor(
    task: tokio::task::JoinHandle<()>,
    what: &'static str,
) -> watch::Receiver<Option<String>> {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        let reason = match task.await {
            Ok(()) => format!("{what} ended"),
            Err(e) if e.is_panic() => {
                let payload = e.into_panic();
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a non-text panic".to_string());
                format!("{what} panicked: {message}")
            }
            Err(_) => {
                // Aborted on purpose: the store is being dropped.
                tracing::debug!("{what} was stopped");
                tx.send_replace(Some(format!("{what} was stopped")));
                return;
            }
        };
        tracing::error!(%reason, "a task that must run forever stopped");
        tx.send_replace(Some(reason));
    });
    rx
}

async fn read_forever(
    consumer: StreamConsumer<KafkaContext>,
    model: Arc<RwLock<Model>>,
    applied: watch::Sender<i64>,
) {
    loop {
        match consumer.recv().await {
            Ok(message) => {
                let outcome = match Record::decode(message.key(), message.payload()) {
                    Ok(record) => {
                        let mut model = model.write().unwrap_or_else(|e| e.into_inner());
                        model.apply(record)
                    }
                    Err(e) => Outcome::Rejected(e.to_string()),
                };
                if let Outcome::Rejected(reason) = outcome {
                    tracing::warn!(offset = message.offset(), %reason, "skipped a _schemas record");
                }
                applied.send_replace(message.offset() + 1);
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading _schemas failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_task_is_reported_with_its_message() {
        let task = tokio::spawn(async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            panic!("record 42 broke the model");
        });
        let mut stopped = monitor(task, "the reader");
        assert_eq!(*stopped.borrow(), None, "reported while still running");
        let reason =
            tokio::time::timeout(Duration::from_secs(5), stopped.wait_for(Option::is_some))
                .await
                .expect("the panic is reported within 5 s")
                .expect("the monitor publishes before it exits")
                .clone();
        assert_eq!(
            reason.as_deref(),
            Some("the reader panicked: record 42 broke the model")
        );
    }

    #[tokio::test]
    async fn a_task_that_returns_is_reported_as_ended() {
        let task = tokio::spawn(async {});
        let mut stopped = monitor(task, "the reader");
        let reason =
            tokio::time::timeout(Duration::from_secs(5), stopped.wait_for(Option::is_some))
                .await
                .expect("the end is reported within 5 s")
                .expect("the monitor publishes before it exits")
                .clone();
        assert_eq!(reason.as_deref(), Some("the reader ended"));
    }
}
