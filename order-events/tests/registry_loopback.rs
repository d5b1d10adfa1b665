//! `OrderEventCodec` against a scripted fake Schema Registry on 127.0.0.1 (no external
//! network): registering, encoding and decoding, and — the point of this file — how the real
//! errors `schema_registry_converter` produces for 404s, 5xx, refused connections and timeouts
//! are classified into poison versus retry.

#![allow(clippy::unwrap_used)] // Tests fail by panicking.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use order_events::{
    frame, DecodeError, OrderEventCodec, RegistryConfig, ORDER_EVENTS_TOPIC, ORDER_EVENT_SCHEMA,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A canned response: status line and JSON body.
#[derive(Clone)]
struct Reply(u16, String);

/// Responses per "METHOD path"; a list is served in order, its last entry repeated.
type Script = Arc<Mutex<HashMap<String, Vec<Reply>>>>;

struct FakeRegistry {
    url: String,
    script: Script,
    requests: Arc<Mutex<Vec<String>>>,
}

impl FakeRegistry {
    async fn start() -> FakeRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let script: Script = Arc::default();
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let (s, r) = (script.clone(), requests.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(serve(stream, s.clone(), r.clone()));
            }
        });
        FakeRegistry {
            url,
            script,
            requests,
        }
    }

    fn on(&self, route: &str, replies: Vec<Reply>) {
        self.script
            .lock()
            .unwrap()
            .insert(route.to_owned(), replies);
    }

    fn schema(&self, id: u32, schema: &str) {
        let body = serde_json::json!({ "schema": schema }).to_string();
        self.on(
            &format!("GET /schemas/ids/{id}?deleted=true"),
            vec![Reply(200, body)],
        );
    }

    fn count(&self, route: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| *r == route)
            .count()
    }

    fn codec(&self) -> OrderEventCodec {
        let config = RegistryConfig::new(&self.url)
            .without_proxy()
            .with_timeout(Duration::from_secs(5));
        OrderEventCodec::new(&config, ORDER_EVENTS_TOPIC).unwrap()
    }
}

async fn serve(mut stream: TcpStream, script: Script, requests: Arc<Mutex<Vec<String>>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let content_length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + content_length {
        let n = stream.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let mut parts = head.split_whitespace();
    let route = format!(
        "{} {}",
        parts.next().unwrap_or(""),
        parts.next().unwrap_or("")
    );
    requests.lock().unwrap().push(route.clone());
    let reply = {
        let mut script = script.lock().unwrap();
        match script.get_mut(&route) {
            Some(replies) if replies.len() > 1 => Some(replies.remove(0)),
            Some(replies) => replies.first().cloned(),
            None => Some(Reply(
                404,
                r#"{"error_code":404,"message":"HTTP 404 Not Found"}"#.into(),
            )),
        }
    };
    let Some(Reply(status, body)) = reply else {
        return;
    };
    if status == 0 {
        // Never answer: lets the client time out.
        tokio::time::sleep(Duration::from_secs(60)).await;
        return;
    }
    let response = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/vnd.schemaregistry.v1+json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

const POST_SUBJECT: &str = "POST /subjects/order-events-value/versions";

#[tokio::test]
async fn register_encode_and_decode_round_trip() {
    let registry = FakeRegistry::start().await;
    registry.on(POST_SUBJECT, vec![Reply(200, r#"{"id":42}"#.into())]);
    registry.schema(42, ORDER_EVENT_SCHEMA);
    let codec = registry.codec();

    assert_eq!(codec.register().await.unwrap(), 42);
    let event = sample_event();
    let bytes = codec.encode(&event).await.unwrap();
    assert_eq!(&bytes[..5], &[0, 0, 0, 0, 42]);
    assert_eq!(codec.decode(Some(&bytes)).await.unwrap(), event);
    assert_eq!(codec.decode(Some(&bytes)).await.unwrap(), event);

    // The schema is registered once and fetched once.
    assert_eq!(registry.count(POST_SUBJECT), 1);
    assert_eq!(registry.count("GET /schemas/ids/42?deleted=true"), 1);
}

#[tokio::test]
async fn the_registered_body_is_our_schema_under_the_value_subject() {
    let registry = FakeRegistry::start().await;
    registry.on(POST_SUBJECT, vec![Reply(200, r#"{"id":1}"#.into())]);
    let codec = registry.codec();
    assert_eq!(codec.subject(), "order-events-value");
    codec.register().await.unwrap();
    assert_eq!(registry.count(POST_SUBJECT), 1);
}

#[tokio::test]
async fn a_record_from_a_newer_producer_is_decoded() {
    let registry = FakeRegistry::start().await;
    let newer = std::fs::read_to_string(format!(
        "{}/tests/fixtures/order-event-v2-newer.avsc",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    registry.schema(43, &newer);
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
        .decode(Some(&frame(43, &datum)))
        .await
        .unwrap();
    assert_eq!(decoded, event);
}

#[tokio::test]
async fn an_unknown_schema_id_is_poison() {
    let registry = FakeRegistry::start().await;
    registry.on(
        "GET /schemas/ids/404?deleted=true",
        vec![Reply(
            404,
            r#"{"error_code":40403,"message":"Schema 404 not found"}"#.into(),
        )],
    );
    let codec = registry.codec();
    let err = codec.decode(Some(&frame(404, &[2, 0]))).await.unwrap_err();
    assert_eq!(err, DecodeError::UnknownSchemaId(404));
    assert!(err.is_poison());
}

#[tokio::test]
async fn a_404_from_something_that_is_not_a_registry_is_retried() {
    let registry = FakeRegistry::start().await;
    registry.on(
        "GET /schemas/ids/9?deleted=true",
        vec![Reply(404, "<html>not found</html>".into())],
    );
    let err = registry
        .codec()
        .decode(Some(&frame(9, &[2, 0])))
        .await
        .unwrap_err();
    assert!(matches!(err, DecodeError::RegistryUnavailable(_)), "{err}");
}

#[tokio::test]
async fn a_server_error_is_retried_and_the_retry_reaches_the_registry() {
    let registry = FakeRegistry::start().await;
    let route = "GET /schemas/ids/42?deleted=true";
    registry.on(
        route,
        vec![
            Reply(500, r#"{"error_code":50001,"message":"boom"}"#.into()),
            Reply(
                200,
                serde_json::json!({ "schema": ORDER_EVENT_SCHEMA }).to_string(),
            ),
        ],
    );
    let codec = registry.codec();
    let bytes = frame(42, &sample_event().to_avro_datum().unwrap());
    let err = codec.decode(Some(&bytes)).await.unwrap_err();
    assert!(matches!(err, DecodeError::RegistryUnavailable(_)), "{err}");
    assert!(!err.is_poison());
    // The crate would have cached the 500 forever; the codec cleared it.
    assert_eq!(codec.decode(Some(&bytes)).await.unwrap(), sample_event());
    assert_eq!(registry.count(route), 2);
}

#[tokio::test]
async fn a_schema_of_another_type_is_unresolvable() {
    let registry = FakeRegistry::start().await;
    registry.on(
        "GET /schemas/ids/45?deleted=true",
        vec![Reply(
            200,
            r#"{"schema":"syntax = \"proto3\";","schemaType":"PROTOBUF"}"#.into(),
        )],
    );
    let err = registry
        .codec()
        .decode(Some(&frame(45, &[2, 0])))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DecodeError::UnresolvableSchema { schema_id: 45, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn an_incompatible_writer_schema_is_unresolvable() {
    let registry = FakeRegistry::start().await;
    let text = std::fs::read_to_string(format!(
        "{}/tests/fixtures/order-event-incompatible-no-currency.avsc",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    registry.schema(44, &text);
    let err = registry
        .codec()
        .decode(Some(&frame(44, &[2, 0])))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DecodeError::UnresolvableSchema { schema_id: 44, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_refused_connection_is_retried_not_dead_lettered() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
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
    let registry = FakeRegistry::start().await;
    registry.on(
        "GET /schemas/ids/1?deleted=true",
        vec![Reply(0, String::new())],
    );
    let config = RegistryConfig::new(&registry.url)
        .without_proxy()
        .with_timeout(Duration::from_millis(300));
    let codec = OrderEventCodec::new(&config, ORDER_EVENTS_TOPIC).unwrap();
    let err = codec.decode(Some(&frame(1, &[2, 0]))).await.unwrap_err();
    assert!(matches!(err, DecodeError::RegistryUnavailable(_)), "{err}");
}

#[tokio::test]
async fn an_incompatible_schema_is_refused_at_registration_and_not_retriable() {
    let registry = FakeRegistry::start().await;
    registry.on(
        POST_SUBJECT,
        vec![Reply(
            409,
            r#"{"error_code":409,"message":"Schema being registered is incompatible"}"#.into(),
        )],
    );
    let err = registry.codec().register().await.unwrap_err();
    assert!(!err.is_retriable(), "{err}");
    assert!(err.to_string().contains("order-events-value"), "{err}");
}

#[tokio::test]
async fn framing_errors_are_reported_without_asking_the_registry() {
    let registry = FakeRegistry::start().await;
    let codec = registry.codec();
    assert_eq!(codec.decode(None).await, Err(DecodeError::MissingValue));
    assert_eq!(
        codec.decode(Some(b"{}")).await,
        Err(DecodeError::BadMagicByte(b'{'))
    );
    assert_eq!(
        codec.decode(Some(&[0, 0])).await,
        Err(DecodeError::TooShort)
    );
    assert!(registry.requests.lock().unwrap().is_empty());
}
