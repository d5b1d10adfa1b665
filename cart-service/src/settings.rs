//! CartService's settings: environment variables, with flags of the same name.

use std::path::PathBuf;
use std::time::Duration;

/// Everything CartService reads at start-up.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "cart-service", version, about)]
pub struct Settings {
    /// How to reach Kafka (servers, pass-through properties, secret files).
    #[command(flatten)]
    pub kafka: service_kit::kafka::KafkaArgs,
    /// How to reach the Schema Registry (URL, CA file, basic auth).
    #[command(flatten)]
    pub registry: order_events::RegistryArgs,
    /// The topic CartService is the single writer of.
    #[arg(long, env = "KAFKA_TOPIC", default_value = order_events::ORDER_EVENTS_TOPIC)]
    pub kafka_topic: String,
    /// Partitions to create the topic with when it does not exist.
    #[arg(long, env = "KAFKA_TOPIC_PARTITIONS", default_value_t = 3)]
    pub kafka_topic_partitions: i32,
    /// Address to listen on.
    #[arg(long, env = "API_HOST", default_value = "127.0.0.1")]
    pub api_host: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "API_PORT", default_value_t = 8000)]
    pub api_port: u16,
    /// The longest a create or update waits for the broker's acknowledgement before 503.
    #[arg(long, env = "PUBLISH_TIMEOUT_MS", default_value_t = 5_000)]
    pub publish_timeout_ms: u64,
    /// Producer `linger.ms`: a little batching under load, at most this much added latency.
    #[arg(long, env = "KAFKA_LINGER_MS", default_value_t = 1)]
    pub kafka_linger_ms: u32,
    /// Where the order index lives (SQLite; one instance per directory). A restart reads only
    /// the records after the index's checkpoint.
    #[arg(long, env = "DATA_DIR", default_value = "./data/cart-service")]
    pub data_dir: PathBuf,
    /// `fetch.wait.max.ms` of the consumer that reads the topic into the order index. A waiting
    /// fetch costs the broker CPU while idle, and nothing waits on this consumer once ready
    /// but the release of memory; it also asks for 64 KiB per fetch, so under load a fetch
    /// carries many records instead of one (Tansu holds every fetch this long).
    #[arg(long, env = "KAFKA_FETCH_WAIT_MAX_MS", default_value_t = 500)]
    pub kafka_fetch_wait_max_ms: u32,
    /// ISO 4217 codes a generated order picks its currency from.
    #[arg(
        long,
        env = "ORDER_CURRENCIES",
        default_value = "USD,EUR,GBP",
        value_delimiter = ','
    )]
    pub order_currencies: Vec<String>,
    /// Instances with the same group share the topic's partitions: each owns some (a Kafka
    /// consumer group) and forwards requests for the others to their owner.
    #[arg(long, env = "CART_GROUP_ID", default_value = "cart-service")]
    pub cart_group_id: String,
    /// The URL other instances forward requests to (default `http://<API_HOST>:<port>`, with
    /// 127.0.0.1 for an unspecified host).
    #[arg(long, env = "CART_ADVERTISED_URL")]
    pub cart_advertised_url: Option<String>,
    /// A stable name for this instance in the group (`group.instance.id`, static membership):
    /// a restart within the session timeout keeps its partitions without a rebalance.
    #[arg(long, env = "CART_INSTANCE_ID")]
    pub cart_instance_id: Option<String>,
    /// How long the group waits for a silent instance before giving its partitions to
    /// others (`session.timeout.ms`): the longest a crashed instance's partitions answer 503.
    #[arg(long, env = "CART_SESSION_TIMEOUT_MS", default_value_t = 10_000)]
    pub cart_session_timeout_ms: u32,
    /// The largest request body accepted (413 beyond).
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,
}

impl Settings {
    /// Settings for a broker and registry under test, on a free port, with a fresh data
    /// directory under the system's temporary directory (set `data_dir` to restart on one).
    pub fn for_tests(bootstrap: &str, registry_url: &str) -> Settings {
        Settings {
            kafka: service_kit::kafka::KafkaArgs::new(bootstrap),
            registry: order_events::RegistryArgs::new(registry_url),
            kafka_topic: order_events::ORDER_EVENTS_TOPIC.to_string(),
            kafka_topic_partitions: 3,
            api_host: "127.0.0.1".to_string(),
            api_port: 0,
            publish_timeout_ms: 5_000,
            kafka_linger_ms: 1,
            data_dir: std::env::temp_dir()
                .join(format!("cart-service-test-{}", uuid::Uuid::new_v4())),
            kafka_fetch_wait_max_ms: 10,
            order_currencies: vec!["USD".into(), "EUR".into(), "GBP".into()],
            max_body_bytes: 64 * 1024,
            cart_group_id: "cart-service".into(),
            cart_advertised_url: None,
            cart_instance_id: None,
            cart_session_timeout_ms: 6_000,
        }
    }

    pub(crate) fn publish_timeout(&self) -> Duration {
        Duration::from_millis(self.publish_timeout_ms)
    }
}
