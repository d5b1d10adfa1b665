//! Spawns a real Nisshi broker, the real registry and CartService on free ports.

use std::time::Duration;

use cart_service::Settings;
use order_events::{OrderEvent, OrderEventCodec, RegistryConfig};
use serde_json::Value;
use testkit::Broker;

pub struct TestCart {
    pub broker: Broker,
    pub registry: schema_registry::Running,
    pub url: String,
    pub client: reqwest::Client,
    /// Where the service keeps its order index.
    pub data_dir: std::path::PathBuf,
    /// The service (stops when dropped).
    server: cart_service::Running,
}

/// One record of the orders topic.
#[derive(Debug)]
pub struct Record {
    pub partition: i32,
    pub key: String,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

impl TestCart {
    pub async fn start() -> TestCart {
        let broker = Broker::start().unwrap();
        let registry = schema_registry::spawn(schema_registry::Settings::for_tests(
            &broker.bootstrap_servers(),
        ))
        .await
        .unwrap();
        Self::start_with(broker, registry, |_| {}).await
    }

    pub async fn start_with(
        broker: Broker,
        registry: schema_registry::Running,
        tweak: impl FnOnce(&mut Settings),
    ) -> TestCart {
        service_kit::telemetry::init("warn,cart_service=info");
        let mut settings = Settings::for_tests(&broker.bootstrap_servers(), registry.url());
        tweak(&mut settings);
        let data_dir = settings.data_dir.clone();
        let server = cart_service::spawn(settings).await.unwrap();
        let url = server.url().to_string();
        let cart = TestCart {
            broker,
            registry,
            url,
            data_dir,
            client: reqwest::Client::new(),
            server,
        };
        cart.wait_ready(Duration::from_secs(30)).await;
        cart
    }

    /// The whole `/metrics` text.
    pub async fn scrape(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// A sample of `/metrics` (0 when absent).
    pub async fn metric(&self, name: &str) -> f64 {
        testkit::metrics::value(&self.scrape().await, name).unwrap_or(0.0)
    }

    /// Stops the service, keeping broker and registry; returns once its HTTP workers let go
    /// of the data directory (they wind down on their own threads), so a restart can take it.
    pub async fn stop(self) -> (Broker, schema_registry::Running) {
        drop(self.server);
        let lock = self.data_dir.join(".lock");
        testkit::wait::until_async(
            "the data directory to be released",
            Duration::from_secs(15),
            || {
                let free = std::fs::File::open(&lock).is_ok_and(|file| file.try_lock().is_ok());
                async move { free }
            },
        )
        .await
        .unwrap();
        (self.broker, self.registry)
    }

    /// The check of `/ready` named `name` (`{"name", "state", "detail"?}`), and the whole body.
    pub async fn ready_check(&self, name: &str) -> (u16, Value, Value) {
        let response = self
            .client
            .get(format!("{}/ready", self.url))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        let check = ready_check(&body, name);
        (status, check, body)
    }

    pub async fn wait_ready(&self, limit: Duration) {
        testkit::wait::until_async("cart-service ready", limit, || async {
            self.client
                .get(format!("{}/ready", self.url))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await
        .unwrap();
    }

    pub async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .client
            .request(method, format!("{}{}", self.url, path))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{path} answered non-JSON ({e}): {text:?}"));
        (status, value)
    }

    pub async fn create(&self, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, "/api/create-order", body)
            .await
    }

    pub async fn update(&self, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::PUT, "/api/update-order", body)
            .await
    }

    pub fn codec(&self) -> OrderEventCodec {
        OrderEventCodec::new(
            &RegistryConfig::new(self.registry.url()),
            order_events::ORDER_EVENTS_TOPIC,
        )
        .unwrap()
    }

    /// Every record of the orders topic, from the beginning to the current end.
    pub fn records(&self) -> Vec<Record> {
        read_topic(
            &self.broker.bootstrap_servers(),
            order_events::ORDER_EVENTS_TOPIC,
        )
    }

    /// The records of the topic decoded with the registry, in partition order.
    pub async fn events(&self) -> Vec<(Record, OrderEvent)> {
        let codec = self.codec();
        let mut out = vec![];
        for record in self.records() {
            let event = codec.decode(Some(&record.payload)).await.unwrap();
            out.push((record, event));
        }
        out
    }
}

/// The order records of `topic` that count (claims and fenced records left out,
/// `order_events::fencing`).
pub fn read_topic(bootstrap: &str, topic: &str) -> Vec<Record> {
    let mut fences = order_events::Fences::default();
    testkit::topic::read_to_end(bootstrap, topic, Duration::from_secs(30))
        .unwrap()
        .into_iter()
        .filter(|r| fences.counts(r.partition, r.offset, r.header_pairs()))
        .map(|r| Record {
            partition: r.partition,
            key: r.key_text(),
            payload: r.value.unwrap_or_default(),
            headers: r.headers,
        })
        .collect()
}

/// The check named `name` in a `/ready` body (`null` when absent).
pub fn ready_check(body: &Value, name: &str) -> Value {
    body["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["name"] == name))
        .cloned()
        .unwrap_or(Value::Null)
}
