//! Shared test support: a real Tansu broker (testkit), the real registry in-process, a
//! producer writing Confluent-framed Avro like CartService will, and helpers to read the
//! dead-letter topic, the metrics and the API.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use chrono::DateTime;
use order_events::{
    Currency, CustomerId, EventType, ItemId, Money, Order, OrderEvent, OrderEventCodec, OrderId,
    OrderItem, OrderStatus, Quantity, RegistryConfig, ORDER_EVENTS_DLQ_TOPIC, ORDER_EVENTS_TOPIC,
};

use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use schema_registry::Running as Registry;
use serde_json::json;
use testkit::Broker;
use uuid::Uuid;

/// Partitions of the test topic.
pub const PARTITIONS: i32 = 3;

/// A broker with the order-events topic, the registry, a producer and a codec.
pub struct Env {
    pub broker: Broker,
    pub registry: Registry,
    pub codec: OrderEventCodec,
    pub producer: FutureProducer,
    pub http: reqwest::Client,
}

impl Env {
    pub async fn start() -> Env {
        service_kit::telemetry::init("info,librdkafka=warn,rdkafka=warn");
        let broker = Broker::start().unwrap();
        broker
            .create_topic(ORDER_EVENTS_TOPIC, PARTITIONS)
            .await
            .unwrap();
        let registry = schema_registry::spawn(schema_registry::Settings::for_tests(
            &broker.bootstrap_servers(),
        ))
        .await
        .unwrap();
        let codec = OrderEventCodec::new(
            &RegistryConfig::new(registry.url()).without_proxy(),
            ORDER_EVENTS_TOPIC,
        )
        .unwrap();
        codec.register().await.unwrap();
        let producer = ClientConfig::new()
            .set("bootstrap.servers", broker.bootstrap_servers())
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .create()
            .unwrap();
        Env {
            broker,
            registry,
            codec,
            producer,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
        }
    }

    pub fn settings(&self, data_dir: PathBuf) -> order_service::Settings {
        order_service::Settings::for_tests(
            &self.broker.bootstrap_servers(),
            self.registry.url(),
            data_dir,
        )
    }

    /// Starts OrderService in-process and waits until it is ready.
    pub async fn service(&self, data_dir: PathBuf) -> order_service::Running {
        let running = order_service::spawn(self.settings(data_dir)).await.unwrap();
        wait_ready(&self.http, running.url()).await;
        running
    }

    /// Produces an event, key = orderId, and waits for the acknowledgement.
    pub async fn produce(&self, event: &OrderEvent) {
        let value = self.codec.encode(event).await.unwrap();
        self.produce_raw(Some(event.key().as_bytes()), Some(&value), None)
            .await;
    }

    /// Produces raw bytes to order-events.
    pub async fn produce_raw(
        &self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: Option<OwnedHeaders>,
    ) -> (i32, i64) {
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(ORDER_EVENTS_TOPIC);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(value) = value {
            record = record.payload(value);
        }
        if let Some(headers) = headers {
            record = record.headers(headers);
        }
        let delivery = self
            .producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
        (delivery.partition, delivery.offset)
    }

    /// Registers a schema text under `subject` and returns its id.
    pub async fn register(&self, subject: &str, schema: &str) -> u32 {
        let response = self
            .http
            .post(format!(
                "{}/subjects/{subject}/versions",
                self.registry.url()
            ))
            .json(&json!({ "schema": schema }))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status().as_u16(),
            200,
            "registering under {subject}"
        );
        let body: serde_json::Value = response.json().await.unwrap();
        body["id"].as_u64().unwrap() as u32
    }

    /// Reads `count` records of the dead-letter topic (waiting up to 30 s for them).
    pub async fn dead_letters(&self, count: usize) -> Vec<DeadLetter> {
        let bootstrap = self.broker.bootstrap_servers();
        tokio::task::spawn_blocking(move || read_topic(&bootstrap, ORDER_EVENTS_DLQ_TOPIC, count))
            .await
            .unwrap()
    }
}

/// A record read back from the dead-letter topic.
pub type DeadLetter = testkit::TopicRecord;

fn read_topic(bootstrap: &str, topic: &str, count: usize) -> Vec<DeadLetter> {
    testkit::topic::read_count(bootstrap, topic, count, Duration::from_secs(30)).unwrap()
}

/// Polls `/ready` until it answers 200 (30 s at most).
pub async fn wait_ready(http: &reqwest::Client, url: &str) {
    eventually(&format!("{url} to be ready"), || async {
        http.get(format!("{url}/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
}

/// GETs `path` and returns status and JSON body.
pub async fn get_json(http: &reqwest::Client, url: &str, path: &str) -> (u16, serde_json::Value) {
    let response = http.get(format!("{url}{path}")).send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(serde_json::Value::Null);
    (status, body)
}

/// The value of a metric line (`name{labels}`) in `/metrics`, or 0.
pub async fn metric(http: &reqwest::Client, url: &str, series: &str) -> f64 {
    let text = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    testkit::metrics::value(&text, series).unwrap_or(0.0)
}

/// Polls `check` until it is true (30 s at most), with the workspace's one wait loop.
pub async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    testkit::wait::until_async(what, Duration::from_secs(30), check)
        .await
        .unwrap();
}

/// An order with these lines (id, quantity, unit price); the total is their sum.
pub fn order(id: &str, customer: &str, status: OrderStatus, lines: &[(&str, i64, &str)]) -> Order {
    let items: Vec<OrderItem> = lines
        .iter()
        .map(|(item, qty, price)| {
            OrderItem::new(
                ItemId::parse(*item).unwrap(),
                Quantity::new(*qty).unwrap(),
                Money::parse(price).unwrap(),
            )
            .unwrap()
        })
        .collect();
    let total = Money::checked_sum(items.iter().map(OrderItem::line_total)).unwrap();
    Order::new(
        OrderId::parse(id).unwrap(),
        CustomerId::parse(customer).unwrap(),
        DateTime::from_timestamp_millis(1_714_557_600_000).unwrap(),
        items,
        total,
        Currency::parse("EUR").unwrap(),
        status,
    )
    .unwrap()
}

/// A simple order: one line of 2 x 999.99 = 1999.98 (shipping 40.00).
pub fn simple_order(id: &str, customer: &str, status: OrderStatus) -> Order {
    order(id, customer, status, &[("SKU-1", 2, "999.99")])
}

/// The event of `order` at `version` (ORDER_CREATED for 1).
pub fn event(order: Order, version: i64) -> OrderEvent {
    let event_type = if version == 1 {
        EventType::OrderCreated
    } else {
        EventType::OrderStatusUpdated
    };
    OrderEvent::new(
        Uuid::new_v4(),
        event_type,
        version,
        DateTime::from_timestamp_millis(1_714_557_600_000 + version * 1000).unwrap(),
        order,
    )
    .unwrap()
}

/// A schema from order-events' test fixtures.
pub fn fixture_text(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../order-events/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// Writes `value` as an Avro datum of `schema`.
pub fn write(schema: &Schema, value: Value) -> Vec<u8> {
    GenericDatumWriter::builder(schema)
        .build()
        .unwrap()
        .write_value_to_vec(value)
        .unwrap()
}

/// Replaces (or appends) the field `name` of a record value.
pub fn set(value: Value, name: &str, new: Value) -> Value {
    let mut fields = match value {
        Value::Record(fields) => fields,
        other => panic!("not a record: {other:?}"),
    };
    match fields.iter_mut().find(|(n, _)| n == name) {
        Some((_, v)) => *v = new,
        None => fields.push((name.to_owned(), new)),
    }
    Value::Record(fields)
}

/// The failing checks of a `/ready` answer, `name: detail` each, for assertions on the reason.
pub fn unready_reason(body: &serde_json::Value) -> String {
    body["checks"]
        .as_array()
        .map(|checks| {
            checks
                .iter()
                .filter(|c| c["state"] == "failing")
                .map(|c| {
                    format!(
                        "{}: {}",
                        c["name"].as_str().unwrap_or(""),
                        c["detail"].as_str().unwrap_or("")
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default()
}
