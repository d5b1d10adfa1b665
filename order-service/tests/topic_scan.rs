//! `GET /api/getAllOrderIdsFromTopic` reads the topic itself: exactly the distinct keys
//! produced, in first-seen order, 404 for a missing topic, 400 for an illegal name, 503 when
//! Kafka is gone.

#![allow(clippy::unwrap_used)] // Tests fail by panicking.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::*;
use futures::future::join_all;
use order_events::{OrderStatus, ORDER_EVENTS_TOPIC};
use rdkafka::producer::FutureRecord;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_scan_returns_exactly_the_distinct_keys_produced() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = env.settings(dir.path().to_path_buf());
    settings.topic_scan_timeout_ms = 5_000;
    let service = order_service::spawn(settings).await.unwrap();
    wait_ready(&env.http, service.url()).await;
    let url = service.url();

    // 1500 orders, each with versions 1 and 2 (3000 records) across 3 partitions.
    let orders = 1_500;
    let mut values = Vec::new();
    for i in 0..orders {
        let order = simple_order(&format!("ORDER-{i:05}"), "C", OrderStatus::Pending);
        let v1 = env.codec.encode(&event(order.clone(), 1)).await.unwrap();
        let v2 = env
            .codec
            .encode(&event(order.with_status(OrderStatus::Confirmed), 2))
            .await
            .unwrap();
        values.push((format!("ORDER-{i:05}"), v1, v2));
    }
    let sends = values.iter().flat_map(|(key, v1, v2)| {
        [v1, v2].map(|v| {
            env.producer.send(
                FutureRecord::to(ORDER_EVENTS_TOPIC)
                    .key(key.as_str())
                    .payload(v.as_slice()),
                Duration::from_secs(30),
            )
        })
    });
    for result in join_all(sends).await {
        result.map_err(|(e, _)| e).unwrap();
    }

    let started = Instant::now();
    let (status, body) = get_json(
        &env.http,
        url,
        "/api/getAllOrderIdsFromTopic?topicName=order-events",
    )
    .await;
    let elapsed = started.elapsed();
    assert_eq!(status, 200, "{body}");
    println!("scanned {} records in {elapsed:?}", orders * 2);
    assert_eq!(body["success"], true);
    assert_eq!(body["topicName"], "order-events");
    assert_eq!(body["count"], orders);
    let ids: Vec<&str> = body["orderIds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let distinct: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), ids.len(), "no duplicates");
    let expected: HashSet<String> = values.iter().map(|(k, _, _)| k.clone()).collect();
    assert_eq!(
        distinct,
        expected.iter().map(String::as_str).collect::<HashSet<_>>()
    );

    // First-seen order, on a one-partition topic; values are never decoded.
    env.broker.create_topic("single", 1).await.unwrap();
    for key in ["B", "A", "B", "C", "A"] {
        env.producer
            .send(
                FutureRecord::to("single").key(key).payload("not avro"),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
    env.producer
        .send(
            FutureRecord::<str, str>::to("single").payload("no key"),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    let (status, body) = get_json(
        &env.http,
        url,
        "/api/getAllOrderIdsFromTopic?topicName=single",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["orderIds"], serde_json::json!(["B", "A", "C"]));
    assert_eq!(body["count"], 3);

    // An empty topic answers at once.
    env.broker.create_topic("empty", 3).await.unwrap();
    let (status, body) = get_json(
        &env.http,
        url,
        "/api/getAllOrderIdsFromTopic?topicName=empty",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["orderIds"], serde_json::json!([]));
    assert_eq!(body["count"], 0);

    let (status, body) = get_json(
        &env.http,
        url,
        "/api/getAllOrderIdsFromTopic?topicName=nope",
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["message"], "Topic 'nope' does not exist");
    assert_eq!(body["success"], false);

    let (status, _) = get_json(&env.http, url, "/api/getAllOrderIdsFromTopic?topicName=..").await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_scan_answers_503_when_kafka_is_unreachable() {
    let mut env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = env.settings(dir.path().to_path_buf());
    settings.topic_scan_timeout_ms = 3_000;
    let service = order_service::spawn(settings).await.unwrap();
    wait_ready(&env.http, service.url()).await;
    env.broker.kill();
    let started = Instant::now();
    let (status, body) = get_json(
        &env.http,
        service.url(),
        "/api/getAllOrderIdsFromTopic?topicName=order-events",
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["success"], false);
    assert!(started.elapsed() < Duration::from_secs(10));
}
