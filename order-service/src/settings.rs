//! OrderService's configuration: environment variables with flags mirroring them (clap).
//!
//! Why a module: every knob the service has is listed here once, with its default for the
//! embedded stack and the reason for the non-obvious ones, so `--help` is the reference.

use std::path::PathBuf;
use std::time::Duration;

use order_events::{ORDER_EVENTS_DLQ_TOPIC, ORDER_EVENTS_TOPIC};

pub use crate::topic_scan::{AllowedTopics, AllowedTopicsError};

/// The service's settings, from flags or the environment.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "order-service", version, about)]
pub struct Settings {
    /// How to reach Kafka (servers, pass-through properties, secret files).
    #[command(flatten)]
    pub kafka: service_kit::kafka::KafkaArgs,
    /// The Schema Registry resolving writer schemas (URL, CA file, basic auth).
    #[command(flatten)]
    pub registry: order_events::RegistryArgs,
    /// The topic to consume.
    #[arg(long, env = "KAFKA_TOPIC", default_value = ORDER_EVENTS_TOPIC)]
    pub kafka_topic: String,
    /// The dead-letter topic for records that can never be applied (created if missing).
    #[arg(long, env = "KAFKA_DLQ_TOPIC", default_value = ORDER_EVENTS_DLQ_TOPIC)]
    pub kafka_dlq_topic: String,
    /// Partitions of the source topic when this service has to create it (Kafka does not
    /// auto-create topics here; CartService creates it too, with the same default).
    #[arg(long, env = "KAFKA_TOPIC_PARTITIONS", default_value_t = 3)]
    pub kafka_topic_partitions: i32,
    /// Address to listen on.
    #[arg(long, env = "API_HOST", default_value = "127.0.0.1")]
    pub api_host: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "API_PORT", default_value_t = 8001)]
    pub api_port: u16,
    /// Directory of the SQLite view (created if missing).
    #[arg(long, env = "DATA_DIR", default_value = "./data/order-service")]
    pub data_dir: PathBuf,
    /// `fetch.wait.max.ms` of the consumer. Tansu holds every fetch for this long even when
    /// records are waiting (librdkafka's default of 500 ms would make every record ~0.5 s
    /// late); Apache Kafka answers as soon as data is there, so a small value costs nothing.
    #[arg(long, env = "KAFKA_FETCH_WAIT_MAX_MS", default_value_t = 10)]
    pub kafka_fetch_wait_max_ms: u32,
    /// The most records applied in one SQLite transaction (1 to 100000).
    #[arg(long, env = "APPLY_BATCH_SIZE", default_value_t = 500,
          value_parser = parse_batch_size)]
    pub apply_batch_size: usize,
    /// Timeout of each Schema Registry request.
    #[arg(long, env = "SCHEMA_REGISTRY_TIMEOUT_MS", default_value_t = 5_000)]
    pub schema_registry_timeout_ms: u64,
    /// Upper bound of the exponential backoff while the registry or broker is unavailable.
    #[arg(long, env = "RETRY_BACKOFF_MAX_MS", default_value_t = 10_000)]
    pub retry_backoff_max_ms: u64,
    /// How long `GET /api/getAllOrderIdsFromTopic` may scan before answering 503.
    #[arg(long, env = "TOPIC_SCAN_TIMEOUT_MS", default_value_t = 60_000)]
    pub topic_scan_timeout_ms: u64,
    /// Topics `GET /api/getAllOrderIdsFromTopic` may scan, comma-separated (default: KAFKA_TOPIC
    /// and KAFKA_DLQ_TOPIC). Others answer 403. Internal topics (`_schemas`, any `__*`) are never
    /// scannable: listing one refuses to start.
    #[arg(
        long,
        env = "TOPIC_SCAN_ALLOWED",
        value_delimiter = ',',
        value_name = "TOPICS"
    )]
    pub topic_scan_allowed: Vec<String>,
    /// The most distinct keys one topic scan keeps; a topic with more answers 503 (this bounds
    /// a scan's memory to about this many order ids).
    #[arg(long, env = "TOPIC_SCAN_MAX_KEYS", default_value_t = 1_000_000,
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub topic_scan_max_keys: u64,
    /// The most topic scans running at once; more answer 429 with Retry-After.
    #[arg(long, env = "TOPIC_SCAN_MAX_CONCURRENT", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub topic_scan_max_concurrent: u32,
    /// `/ready` answers 503 (and `consumer_up` is 0) when the consumer has committed nothing
    /// for this long while records are waiting (lag > 0).
    #[arg(long, env = "CONSUMER_STALL_TIMEOUT_MS", default_value_t = 60_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub consumer_stall_timeout_ms: u64,
    /// Attempts to publish a dead letter that the producer refuses for good (e.g. larger than
    /// its `message.max.bytes`); then the consumer stops, `/ready` answers 503 and the log names
    /// the record. Broker outages are retried without limit (and show up as a stall).
    #[arg(long, env = "DLQ_PUBLISH_MAX_ATTEMPTS", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub dlq_publish_max_attempts: u32,
    /// Test-only fault injection (compiled only with the `fault-injection` feature): the
    /// consumer panics when it reads a record with this key. Hidden from `--help`.
    #[cfg(feature = "fault-injection")]
    #[arg(long, env = "FAULT_PANIC_ON_KEY", hide = true)]
    pub fault_panic_on_key: Option<String>,
}

/// The largest `APPLY_BATCH_SIZE` (a batch is allocated up front).
pub const MAX_APPLY_BATCH_SIZE: usize = 100_000;

fn parse_batch_size(text: &str) -> Result<usize, String> {
    let n: usize = text.parse().map_err(|e| format!("{e}"))?;
    if (1..=MAX_APPLY_BATCH_SIZE).contains(&n) {
        Ok(n)
    } else {
        Err(format!("must be between 1 and {MAX_APPLY_BATCH_SIZE}"))
    }
}

impl Settings {
    /// Defaults for tests: the given broker, registry and data directory, a free port.
    pub fn for_tests(bootstrap: &str, registry_url: &str, data_dir: PathBuf) -> Settings {
        Settings {
            kafka: service_kit::kafka::KafkaArgs::new(bootstrap),
            registry: order_events::RegistryArgs::new(registry_url),
            kafka_topic: ORDER_EVENTS_TOPIC.to_string(),
            kafka_dlq_topic: ORDER_EVENTS_DLQ_TOPIC.to_string(),
            kafka_topic_partitions: 3,
            api_host: "127.0.0.1".to_string(),
            api_port: 0,
            data_dir,
            kafka_fetch_wait_max_ms: 10,
            apply_batch_size: 500,
            schema_registry_timeout_ms: 5_000,
            retry_backoff_max_ms: 2_000,
            topic_scan_timeout_ms: 60_000,
            topic_scan_allowed: vec![],
            topic_scan_max_keys: 1_000_000,
            topic_scan_max_concurrent: 4,
            consumer_stall_timeout_ms: 60_000,
            dlq_publish_max_attempts: 5,
            #[cfg(feature = "fault-injection")]
            fault_panic_on_key: None,
        }
    }

    pub fn retry_backoff_max(&self) -> Duration {
        Duration::from_millis(self.retry_backoff_max_ms.max(1))
    }

    pub fn topic_scan_timeout(&self) -> Duration {
        Duration::from_millis(self.topic_scan_timeout_ms)
    }

    pub fn consumer_stall_timeout(&self) -> Duration {
        Duration::from_millis(self.consumer_stall_timeout_ms.max(1))
    }

    /// The topics the scan endpoint may read: `TOPIC_SCAN_ALLOWED`, or the consumed topic and
    /// its dead-letter topic. An internal topic in the list is an error (refused at start-up).
    pub fn topic_scan_allowed(&self) -> Result<AllowedTopics, AllowedTopicsError> {
        if self.topic_scan_allowed.iter().all(|t| t.trim().is_empty()) {
            AllowedTopics::parse([self.kafka_topic.as_str(), self.kafka_dlq_topic.as_str()])
        } else {
            AllowedTopics::parse(self.topic_scan_allowed.iter().map(String::as_str))
        }
    }
}
