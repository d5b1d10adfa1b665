//! Dead letters: why a record can never be applied, and publishing it to the dead-letter topic.
//!
//! Why a module: a poison record must leave the main path without being lost, and the DLQ
//! record must carry everything needed to understand and replay it — the original key, value
//! and headers, plus `dlq.error` (the message), `dlq.error.kind` (a fixed, machine-readable
//! kind, also the metrics label) and `dlq.source.topic` / `.partition` / `.offset`. The
//! producer is idempotent with `acks=all`, and [`DeadLetters::publish`] returns only after the
//! broker acknowledged the record, so the consumer stores the source offset only after that.
//!
//! A failed publish is either transient (the broker is away: retried without limit, and the
//! consumer's stall detection reports it) or [permanent](PublishError::is_permanent) (the record
//! can never be published as configured, e.g. larger than the producer's `message.max.bytes`):
//! the consumer retries that a bounded number of times and then stops, loudly.

use std::time::Duration;

use anyhow::Context;
use order_events::fencing::BadHeader;
use order_events::DecodeError;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::Message;

use service_kit::kafka::{KafkaContext, KafkaSettings};

/// Why a record is poison.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Poison {
    /// No key: the view is keyed by order id and the topic's contract says key = orderId.
    #[error("the record has no key; the key must be the orderId")]
    MissingKey,
    /// A key that is not a valid order id.
    #[error("the record key is not a valid orderId: {0}")]
    InvalidKey(String),
    /// The key names another order than the value.
    #[error("the record key {key:?} differs from the value's orderId {order_id:?}")]
    KeyMismatch { key: String, order_id: String },
    /// The value cannot be decoded, or breaks a domain rule.
    #[error(transparent)]
    Decode(DecodeError),
    /// A fencing header (`order_events::fencing`) that is not an offset: whether the record
    /// counts cannot be decided.
    #[error("unreadable fencing header: {0}")]
    BadFenceHeader(BadHeader),
}

impl Poison {
    /// The `dlq.error.kind` header and metrics label: one of a fixed set.
    pub fn kind(&self) -> &'static str {
        match self {
            Poison::MissingKey => "missing_key",
            Poison::InvalidKey(_) => "invalid_key",
            Poison::KeyMismatch { .. } => "key_mismatch",
            Poison::BadFenceHeader(_) => "bad_fence_header",
            Poison::Decode(e) => match e {
                DecodeError::MissingValue => "missing_value",
                DecodeError::BadMagicByte(_) => "bad_magic_byte",
                DecodeError::TooShort => "too_short",
                DecodeError::UnknownSchemaId(_) => "unknown_schema_id",
                DecodeError::CorruptAvro { .. } => "corrupt_avro",
                DecodeError::UnresolvableSchema { .. } => "unresolvable_schema",
                DecodeError::Domain(_) => "domain_rule",
                _ => "decode_error",
            },
        }
    }
}

/// Header names added to a dead letter.
pub mod headers {
    pub const ERROR: &str = "dlq.error";
    pub const KIND: &str = "dlq.error.kind";
    pub const SOURCE_TOPIC: &str = "dlq.source.topic";
    pub const SOURCE_PARTITION: &str = "dlq.source.partition";
    pub const SOURCE_OFFSET: &str = "dlq.source.offset";
}

/// A dead letter the broker did not acknowledge.
#[derive(Debug, thiserror::Error)]
#[error("publishing a dead letter to {topic}: {source}")]
pub struct PublishError {
    pub topic: String,
    #[source]
    pub source: KafkaError,
}

impl PublishError {
    /// Whether retrying the same record cannot help: it is too large, invalid, or not
    /// authorized, as opposed to a broker that is unreachable or busy for now.
    pub fn is_permanent(&self) -> bool {
        use RDKafkaErrorCode as C;
        matches!(
            self.source.rdkafka_error_code(),
            Some(
                C::MessageSizeTooLarge
                    | C::InvalidMessageSize
                    | C::InvalidMessage
                    | C::MessageBatchTooLarge
                    | C::InvalidRecord
                    | C::InvalidTopic
                    | C::InvalidRequiredAcks
                    | C::TopicAuthorizationFailed
                    | C::ClusterAuthorizationFailed
                    | C::UnsupportedForMessageFormat
                    | C::PolicyViolation
                    | C::InvalidArgument
            )
        )
    }
}

/// The dead-letter producer.
pub struct DeadLetters {
    producer: FutureProducer<KafkaContext>,
    topic: String,
}

impl DeadLetters {
    /// An idempotent, `acks=all` producer for `topic` (no network call yet).
    pub fn new(config: &KafkaSettings, topic: &str) -> anyhow::Result<DeadLetters> {
        let producer = config
            .client("the dead-letter producer")
            .durable_producer(Duration::from_secs(30))
            .tuning("linger.ms", 0)
            .create()?;
        Ok(DeadLetters {
            producer,
            topic: topic.to_owned(),
        })
    }

    /// The dead-letter topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Publishes `message` with the error headers and waits for the broker's acknowledgement.
    pub async fn publish(
        &self,
        message: &OwnedMessage,
        poison: &Poison,
    ) -> Result<(), PublishError> {
        let headers = dead_letter_headers(message, poison);
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&self.topic).headers(headers);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Some(payload) = message.payload() {
            record = record.payload(payload);
        }
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(source, _)| PublishError {
                topic: self.topic.clone(),
                source,
            })?;
        Ok(())
    }

    /// Waits for outstanding deliveries (at shutdown).
    pub fn flush(&self, timeout: Duration) -> anyhow::Result<()> {
        self.producer
            .flush(timeout)
            .context("flushing the dead-letter producer")
    }
}

/// The original headers followed by the `dlq.*` ones.
pub fn dead_letter_headers(message: &OwnedMessage, poison: &Poison) -> OwnedHeaders {
    let mut out = OwnedHeaders::new();
    if let Some(original) = message.headers() {
        for header in original.iter() {
            out = out.insert(Header {
                key: header.key,
                value: header.value,
            });
        }
    }
    let error = poison.to_string();
    let partition = message.partition().to_string();
    let offset = message.offset().to_string();
    for (key, value) in [
        (headers::ERROR, error.as_str()),
        (headers::KIND, poison.kind()),
        (headers::SOURCE_TOPIC, message.topic()),
        (headers::SOURCE_PARTITION, partition.as_str()),
        (headers::SOURCE_OFFSET, offset.as_str()),
    ] {
        out = out.insert(Header {
            key,
            value: Some(value),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::Timestamp;

    #[test]
    fn oversized_or_invalid_records_are_permanent_failures_and_timeouts_are_not() {
        let error = |code| PublishError {
            topic: "t".into(),
            source: KafkaError::MessageProduction(code),
        };
        assert!(error(RDKafkaErrorCode::MessageSizeTooLarge).is_permanent());
        assert!(error(RDKafkaErrorCode::TopicAuthorizationFailed).is_permanent());
        assert!(!error(RDKafkaErrorCode::MessageTimedOut).is_permanent());
        assert!(!error(RDKafkaErrorCode::AllBrokersDown).is_permanent());
        assert!(!error(RDKafkaErrorCode::NotEnoughReplicas).is_permanent());
    }

    #[test]
    fn an_unreadable_fencing_header_is_its_own_kind_and_names_the_header() {
        let Err(bad) = order_events::fencing::classify(None, Some(b"x")) else {
            panic!("x is not an offset");
        };
        let poison = Poison::BadFenceHeader(bad);
        assert_eq!(poison.kind(), "bad_fence_header");
        assert!(poison.to_string().contains("cart-claim-offset"), "{poison}");
    }

    #[test]
    fn headers_keep_the_originals_and_name_the_error_and_source() {
        let original = OwnedHeaders::new().insert(Header {
            key: "trace",
            value: Some("abc"),
        });
        let message = OwnedMessage::new(
            Some(vec![1, 2]),
            None,
            "order-events".into(),
            Timestamp::NotAvailable,
            2,
            41,
            Some(original),
        );
        let poison = Poison::Decode(DecodeError::BadMagicByte(1));
        let headers = dead_letter_headers(&message, &poison);
        let pairs: Vec<(String, String)> = headers
            .iter()
            .map(|h| {
                (
                    h.key.to_owned(),
                    String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                )
            })
            .collect();
        assert_eq!(pairs[0], ("trace".into(), "abc".into()));
        assert_eq!(pairs[2], ("dlq.error.kind".into(), "bad_magic_byte".into()));
        assert_eq!(pairs[3], ("dlq.source.topic".into(), "order-events".into()));
        assert_eq!(pairs[4], ("dlq.source.partition".into(), "2".into()));
        assert_eq!(pairs[5], ("dlq.source.offset".into(), "41".into()));
        assert!(pairs[1].1.contains("magic byte"));
    }
}
