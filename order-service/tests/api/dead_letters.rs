//! Poison records go to the dead-letter topic with their original key, value and headers plus
//! the error and source headers, while the good records behind them are applied; an
//! unreachable registry is retried, never dead-lettered.

use std::time::Duration;

use crate::common::*;
use apache_avro::types::Value;
use apache_avro::Decimal;
use order_events::{frame, OrderStatus, ORDER_EVENTS_DLQ_TOPIC, ORDER_EVENTS_TOPIC};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::ClientConfig;

/// A poison record: key, value and the dead-letter kind it must get.
type Case = (Option<Vec<u8>>, Option<Vec<u8>>, &'static str);

/// Produces to partition 0, so "behind" means behind in one partition.
async fn produce_p0(
    env: &Env,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: Option<OwnedHeaders>,
) {
    let mut record: FutureRecord<'_, [u8], [u8]> =
        FutureRecord::to(ORDER_EVENTS_TOPIC).partition(0);
    if let Some(key) = key {
        record = record.key(key);
    }
    if let Some(value) = value {
        record = record.payload(value);
    }
    if let Some(headers) = headers {
        record = record.headers(headers);
    }
    env.producer
        .send(record, Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_records_are_dead_lettered_and_good_ones_behind_them_applied() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    let service = env.service(dir.path().to_path_buf()).await;
    let url = service.url();

    let good = |id: &str| event(simple_order(id, "CUST-1", OrderStatus::Pending), 1);
    let codec = &env.codec;
    let encoded = |id: &str| {
        let e = good(id);
        async move { codec.encode(&e).await.unwrap() }
    };
    let our_id = env.codec.register().await.unwrap();
    let incompatible = env
        .register(
            "elsewhere-value",
            &fixture_text("order-event-incompatible-no-currency.avsc"),
        )
        .await;

    let g1 = encoded("G-1").await;
    produce_p0(&env, Some(b"G-1"), Some(&g1), None).await;

    // (key, value, expected kind)
    let mut bad_magic = encoded("P-MAGIC").await;
    bad_magic[0] = 1;
    let datum = good("P-X").to_avro_datum().unwrap();
    let corrupt = frame(our_id, &datum[..datum.len() / 2]);
    let unknown = frame(9_999, &datum);
    let unresolvable = frame(incompatible, &datum);
    let wrong_total = {
        let value = set(
            good("P-TOTAL").to_avro(),
            "totalAmount",
            Value::Decimal(Decimal::from(12_345_i64.to_be_bytes())),
        );
        frame(
            our_id,
            &write(order_events::order_event_schema().unwrap(), value),
        )
    };
    let mismatch = encoded("P-VALUE-ID").await;
    let no_key = encoded("P-NOKEY").await;
    let cases: Vec<Case> = vec![
        (Some(b"P-MAGIC".to_vec()), Some(bad_magic), "bad_magic_byte"),
        (
            Some(b"P-UNKNOWN".to_vec()),
            Some(unknown),
            "unknown_schema_id",
        ),
        (Some(b"P-CORRUPT".to_vec()), Some(corrupt), "corrupt_avro"),
        (
            Some(b"P-X".to_vec()),
            Some(unresolvable),
            "unresolvable_schema",
        ),
        (None, Some(no_key), "missing_key"),
        (Some(b"P-KEY-ID".to_vec()), Some(mismatch), "key_mismatch"),
        (Some(b"P-TOTAL".to_vec()), Some(wrong_total), "domain_rule"),
        (Some(b"P-NULL".to_vec()), None, "missing_value"),
        (Some(b"P-SHORT".to_vec()), Some(vec![0, 0, 1]), "too_short"),
        (
            Some(vec![0xff, 0xfe]),
            Some(encoded("P-UTF").await),
            "invalid_key",
        ),
    ];
    for (i, (key, value, _)) in cases.iter().enumerate() {
        let headers = OwnedHeaders::new().insert(Header {
            key: "trace-id",
            value: Some(&format!("t-{i}")),
        });
        produce_p0(&env, key.as_deref(), value.as_deref(), Some(headers)).await;
    }
    let g2 = encoded("G-2").await;
    produce_p0(&env, Some(b"G-2"), Some(&g2), None).await;
    env.produce(&good("G-3")).await;

    for id in ["G-1", "G-2", "G-3"] {
        let (status, body) = get_json(
            &env.http,
            url,
            &format!("/api/order-details?orderId={id}&waitMs=15000"),
        )
        .await;
        assert_eq!(status, 200, "{id}: {body}");
    }

    let letters = env.dead_letters(cases.len()).await;
    assert_eq!(letters.len(), cases.len());
    for (i, ((key, value, kind), letter)) in cases.iter().zip(&letters).enumerate() {
        assert_eq!(letter.header("dlq.error.kind"), Some(*kind), "{letter:?}");
        assert_eq!(&letter.key, key, "{kind}: original key");
        assert_eq!(&letter.value, value, "{kind}: original value");
        assert_eq!(letter.header("trace-id"), Some(format!("t-{i}").as_str()));
        assert_eq!(letter.header("dlq.source.topic"), Some(ORDER_EVENTS_TOPIC));
        assert_eq!(letter.header("dlq.source.partition"), Some("0"));
        // G-1 is offset 0, the poison records follow it.
        assert_eq!(
            letter.header("dlq.source.offset"),
            Some((i + 1).to_string().as_str())
        );
        assert!(!letter.header("dlq.error").unwrap_or_default().is_empty());
    }
    assert!(letters[6]
        .header("dlq.error")
        .unwrap()
        .contains("totalAmount"));

    for (_, _, kind) in &cases {
        let series = format!("order_events_dead_lettered_total{{kind=\"{kind}\"}}");
        assert_eq!(metric(&env.http, url, &series).await, 1.0, "{series}");
    }
    let store = service.store();
    assert_eq!(
        store.counter("dead_lettered_total").unwrap(),
        cases.len() as i64
    );
    assert_eq!(store.counter("applied_total").unwrap(), 3);
    for (key, _, _) in &cases {
        if let Some(id) = key.as_deref().and_then(|k| std::str::from_utf8(k).ok()) {
            assert_eq!(
                store.version(id).unwrap(),
                None,
                "{id} must not be in the view"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_registry_is_retried_not_dead_lettered() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    // The service's registry is not there yet.
    let port = testkit::free_port().unwrap();
    let mut settings = env.settings(dir.path().to_path_buf());
    settings.registry.url = format!("http://127.0.0.1:{port}");
    let service = order_service::spawn(settings).await.unwrap();
    let url = service.url();

    env.produce(&event(
        simple_order("R-1", "CUST-1", OrderStatus::Pending),
        1,
    ))
    .await;
    eventually("registry retries", || async {
        metric(
            &env.http,
            url,
            "order_events_retries_total{cause=\"registry\"}",
        )
        .await
            >= 2.0
    })
    .await;
    let (status, body) = get_json(&env.http, url, "/ready").await;
    assert_eq!(status, 503);
    assert!(unready_reason(&body).contains("registry"), "{body}");
    let (status, _) = get_json(&env.http, url, "/api/order-details?orderId=R-1").await;
    assert_eq!(status, 404);
    // Nothing was dead-lettered: the dead-letter topic is empty.
    let bootstrap = env.broker.bootstrap_servers();
    let (_, high) = tokio::task::spawn_blocking(move || {
        let client: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .create()
            .unwrap();
        client
            .fetch_watermarks(ORDER_EVENTS_DLQ_TOPIC, 0, Duration::from_secs(5))
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(high, 0);
    assert_eq!(service.store().counter("applied_total").unwrap(), 0);

    // The registry comes up (same broker, same schemas): the record is applied.
    let mut registry = schema_registry::Settings::for_tests(&env.broker.bootstrap_servers());
    registry.api_port = port;
    let _registry = schema_registry::spawn(registry).await.unwrap();
    let (status, body) = get_json(
        &env.http,
        url,
        "/api/order-details?orderId=R-1&waitMs=20000",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    wait_ready(&env.http, url).await;
    assert_eq!(service.store().counter("applied_total").unwrap(), 1);
    assert_eq!(service.store().counter("dead_lettered_total").unwrap(), 0);
}
