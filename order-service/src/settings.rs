//! OrderService's configuration: environment variables with flags mirroring them (clap).
//!
//! Why a module: every knob the service has is listed here once, with its default for the
//! embedded stack and the reason for the non-obvious ones, so `--help` is the reference.

use std::path::PathBuf;
use std::time::Duration;

use order_events::{ORDER_EVENTS_DLQ_TOPIC, ORDER_EVENTS_TOPIC};

/// The service's settings, from flags or the environment.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "order-service", version, about)]
pub struct Settings {
    /// Kafka brokers holding the order-events topic.
    #[arg(
        long,
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:9092"
    )]
    pub kafka_bootstrap_servers: String,
    /// The Schema Registry resolving writer schemas.
    #[arg(
        long,
        env = "SCHEMA_REGISTRY_URL",
        default_value = "http://127.0.0.1:8081"
    )]
    pub schema_registry_url: String,
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
    /// The most records applied in one SQLite transaction.
    #[arg(long, env = "APPLY_BATCH_SIZE", default_value_t = 500)]
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
    /// Extra librdkafka properties, `key=value`, repeatable (also `KAFKA_PROPERTY_<NAME>`).
    #[arg(long = "kafka-property", value_name = "KEY=VALUE")]
    pub kafka_properties: Vec<String>,
}

impl Settings {
    /// Defaults for tests: the given broker, registry and data directory, a free port.
    pub fn for_tests(bootstrap: &str, registry_url: &str, data_dir: PathBuf) -> Settings {
        Settings {
            kafka_bootstrap_servers: bootstrap.to_string(),
            schema_registry_url: registry_url.to_string(),
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
            kafka_properties: vec![],
        }
    }

    pub fn retry_backoff_max(&self) -> Duration {
        Duration::from_millis(self.retry_backoff_max_ms.max(1))
    }

    pub fn topic_scan_timeout(&self) -> Duration {
        Duration::from_millis(self.topic_scan_timeout_ms)
    }
}
