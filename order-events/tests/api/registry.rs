//! `OrderEventCodec` against the real schema registry on a real Tansu broker: registering,
//! encoding, decoding any compatible writer schema, and how registry failures are classified
//! into poison (dead-letter it) versus transient (retry).

use std::time::Duration;

use crate::common::*;
use order_events::{
    frame, DecodeError, OrderEventCodec, RegistryConfig, ORDER_EVENTS_TOPIC, ORDER_EVENT_SCHEMA,
};
use schema_registry::{Running, Settings};
use serde_json::json;
use testkit::Broker;

struct Registry {
    _broker: Broker,
    running: Running,
    http: reqwest::Client,
}

impl Registry {
    async fn start() -> Registry {
        let broker = Broker::start().unwrap();
        let running = schema_registry::spawn(Settings::for_tests(&broker.bootstrap_servers()))
            .await
            .unwrap();
        Registry {
            _broker: broker,
            running,
            http: reqwest::Client::new(),
        }
    }

    fn codec(&self) -> OrderEventCodec {
        OrderEventCodec::new(
            &RegistryConfig::new(self.running.url()).without_proxy(),
            ORDER_EVENTS_TOPIC,
        )
        .unwrap()
    }

    /// Registers a schema text under `subject` and returns its id.
    async fn register(&self, subject: &str, schema: &str) -> u32 {
        let response = self
            .http
            .post(format!(
                "{}/subjects/{subject}/versions",
                self.running.url()
            ))
            .json(&json!({ "schema": schema }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let body: serde_json::Value = response.json().await.unwrap();
        body["id"].as_u64().unwrap() as u32
    }
}

fn fixture_text(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[tokio::test]
async fn register_encode_and_decode_round_trip() {
    let registry = Registry::start().await;
    let codec = registry.codec();
    let id = codec.register().await.unwrap();
    assert_eq!(id, 1);
    // Registering again (a restart) finds the same id.
    assert_eq!(registry.codec().register().await.unwrap(), id);

    let event = sample_event();
    let bytes = codec.encode(&event).await.unwrap();
    assert_eq!(&bytes[..5], &[0, 0, 0, 0, 1], "magic byte, then the id");
    assert_eq!(codec.decode(Some(&bytes)).await.unwrap(), event);
    // A codec that never registered anything reads it too, from the registry.
    assert_eq!(registry.codec().decode(Some(&bytes)).await.unwrap(), event);
}

#[tokio::test]
async fn the_schema_is_registered_under_the_value_subject() {
    let registry = Registry::start().await;
    let codec = registry.codec();
    assert_eq!(codec.subject(), "order-events-value");
    let id = codec.register().await.unwrap();
    let body: serde_json::Value = registry
        .http
        .get(format!(
            "{}/subjects/order-events-value/versions/latest",
            registry.running.url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["id"], id);
    let ours: serde_json::Value = serde_json::from_str(ORDER_EVENT_SCHEMA).unwrap();
    let stored: serde_json::Value = serde_json::from_str(body["schema"].as_str().unwrap()).unwrap();
    assert_eq!(stored, ours);
}

#[tokio::test]
async fn a_record_from_a_newer_producer_is_decoded() {
    let registry = Registry::start().await;
    registry.codec().register().await.unwrap();
    // The newer contract is a compatible next version of the subject.
    let newer_id = registry
        .register(
            "order-events-value",
            &fixture_text("order-event-v2-newer.avsc"),
        )
        .await;
    assert_eq!(newer_id, 2);
    let event = sample_event();
    let value = set(
        event.to_avro(),
        "channel",
        apache_avro::types::Value::String("app".into()),
    );
    let value = map_items(value, |_, it| {
        set(
            it,
            "sku",
            apache_avro::types::Value::Union(0, Box::new(apache_avro::types::Value::Null)),
        )
    });
    let datum = write(&fixture("order-event-v2-newer.avsc"), value);
    let decoded = registry
        .codec()
        .decode(Some(&frame(newer_id, &datum)))
        .await
        .unwrap();
    assert_eq!(decoded, event);
}

#[tokio::test]
async fn an_unknown_schema_id_is_poison() {
    let registry = Registry::start().await;
    let err = registry
        .codec()
        .decode(Some(&frame(404, &[2, 0])))
        .await
        .unwrap_err();
    assert_eq!(err, DecodeError::UnknownSchemaId(404));
    assert!(err.is_poison());
}

#[tokio::test]
async fn a_404_from_a_wrong_url_is_retried_not_dead_lettered() {
    let registry = Registry::start().await;
    let config =
        RegistryConfig::new(format!("{}/not-the-registry", registry.running.url())).without_proxy();
    let codec = OrderEventCodec::new(&config, ORDER_EVENTS_TOPIC).unwrap();
    let err = codec.decode(Some(&frame(9, &[2, 0]))).await.unwrap_err();
    assert!(matches!(err, DecodeError::RegistryUnavailable(_)), "{err}");
}

#[tokio::test]
async fn an_incompatible_writer_schema_is_unresolvable() {
    let registry = Registry::start().await;
    // Registered under another subject, so the registry has it; it cannot be read as ours.
    let id = registry
        .register(
            "elsewhere-value",
            &fixture_text("order-event-incompatible-no-currency.avsc"),
        )
        .await;
    let err = registry
        .codec()
        .decode(Some(&frame(id, &[2, 0])))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DecodeError::UnresolvableSchema { schema_id, .. } if schema_id == id),
        "{err}"
    );
    assert!(err.is_poison());
}

#[tokio::test]
async fn a_refused_connection_is_retried_not_dead_lettered() {
    let port = testkit::free_port().unwrap();
    let config = RegistryConfig::new(format!("http://127.0.0.1:{port}")).without_proxy();
    let codec = OrderEventCodec::new(&config, ORDER_EVENTS_TOPIC).unwrap();
    let err = codec.decode(Some(&frame(1, &[2, 0]))).await.unwrap_err();
    assert!(matches!(err, DecodeError::RegistryUnavailable(_)), "{err}");
    assert!(!err.is_poison());
    let reg = codec.register().await.unwrap_err();
    assert!(reg.is_retriable(), "{reg}");
}

#[tokio::test]
async fn a_registry_that_does_not_answer_in_time_is_retried() {
    // A socket that accepts and never answers: a hung server, not a stand-in registry.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let _hold = tokio::spawn(async move {
        let mut held = vec![];
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let config = RegistryConfig::new(url)
        .without_proxy()
        .with_timeout(Duration::from_millis(300));
    let codec = OrderEventCodec::new(&config, ORDER_EVENTS_TOPIC).unwrap();
    let err = codec.decode(Some(&frame(1, &[2, 0]))).await.unwrap_err();
    assert!(matches!(err, DecodeError::RegistryUnavailable(_)), "{err}");
}

#[tokio::test]
async fn an_incompatible_schema_is_refused_at_registration_and_not_retriable() {
    let registry = Registry::start().await;
    // The subject already holds a schema our contract cannot follow under BACKWARD.
    registry
        .register(
            "order-events-value",
            r#"{"type":"record","name":"OrderEvent","namespace":"com.example.orders","fields":[{"name":"legacy","type":"string"}]}"#,
        )
        .await;
    let err = registry.codec().register().await.unwrap_err();
    assert!(!err.is_retriable(), "{err}");
    assert!(err.to_string().contains("order-events-value"), "{err}");
}

#[tokio::test]
async fn framing_errors_are_reported_without_asking_the_registry() {
    // No registry listens here: a framing error must not need one.
    let port = testkit::free_port().unwrap();
    let config = RegistryConfig::new(format!("http://127.0.0.1:{port}")).without_proxy();
    let codec = OrderEventCodec::new(&config, ORDER_EVENTS_TOPIC).unwrap();
    assert_eq!(codec.decode(None).await, Err(DecodeError::MissingValue));
    assert_eq!(
        codec.decode(Some(b"{}")).await,
        Err(DecodeError::BadMagicByte(b'{'))
    );
    assert_eq!(
        codec.decode(Some(&[0, 0])).await,
        Err(DecodeError::TooShort)
    );
}
