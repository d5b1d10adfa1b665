//! Fencing: an instance that lost its partitions without knowing it acknowledges nothing.
//!
//! Deterministic stand-in for a zombie: a second instance in *another* group owns every
//! partition of the same topic too, and claims them all after the first. The first instance's
//! group still assigns it everything, so from then on it is a zombie in every partition: its
//! writes land on the topic after the newer claims, and must neither be acknowledged nor count
//! for any reader. (The process-level zombie, SIGSTOP past the session timeout, is in
//! `e2e/tests/scale_out.rs`.)

use std::time::Duration;

use serde_json::json;

use crate::common::TestCart;

/// The counted records of the topic (`TestCart::events` applies the fence): (order, version),
/// sorted.
async fn counted(cart: &TestCart) -> Vec<(String, i64)> {
    let mut versions: Vec<(String, i64)> = cart
        .events()
        .await
        .into_iter()
        .map(|(record, event)| (record.key, event.version()))
        .collect();
    versions.sort();
    versions
}

#[tokio::test]
async fn a_zombie_acknowledges_nothing_and_its_records_do_not_count() {
    let zombie = TestCart::start().await;
    let (status, body) = zombie
        .create(json!({"orderId": "Z-1", "numItems": 1}))
        .await;
    assert_eq!(status, 201, "{body}");

    // Another instance claims every partition after the first one did.
    let mut settings = cart_service::Settings::for_tests(
        &zombie.broker.bootstrap_servers(),
        zombie.registry.url(),
    );
    settings.cart_group_id = "another-group".into();
    let owner = cart_service::spawn(settings).await.unwrap();
    let owner_url = owner.url().to_string();
    testkit::wait::until_async("the new owner ready", Duration::from_secs(30), || async {
        reqwest::get(format!("{owner_url}/ready"))
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await
    .unwrap();

    // The zombie still believes it owns everything: its writes land after the newer claims.
    let (status, body) = zombie
        .create(json!({"orderId": "Z-2", "numItems": 1}))
        .await;
    assert_eq!(status, 503, "a fenced create: {body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("moved to another CartService instance")),
        "{body}"
    );
    let (status, body) = zombie
        .update(json!({"orderId": "Z-1", "status": "confirmed"}))
        .await;
    assert_eq!(status, 503, "a fenced update: {body}");
    assert_eq!(zombie.metric("cart_fenced_writes_total").await, 2.0);

    // The zombie's records are on the topic, and count for no reader.
    let raw = testkit::topic::read_to_end(
        &zombie.broker.bootstrap_servers(),
        order_events::ORDER_EVENTS_TOPIC,
        Duration::from_secs(30),
    )
    .unwrap();
    assert!(
        raw.iter().any(|r| r.key_text() == "Z-2"),
        "the fenced create was written (the test exercises the fence)"
    );
    assert_eq!(counted(&zombie).await, vec![("Z-1".to_string(), 1)]);

    // The owner never saw Z-2 and continues Z-1 from version 1.
    let client = reqwest::Client::new();
    let create = client
        .post(format!("{owner_url}/api/create-order"))
        .json(&json!({"orderId": "Z-2", "numItems": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(create.status(), 201);
    let update: serde_json::Value = client
        .put(format!("{owner_url}/api/update-order"))
        .json(&json!({"orderId": "Z-1", "status": "confirmed"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(update["data"]["version"], json!(2), "{update}");
    assert_eq!(
        counted(&zombie).await,
        vec![("Z-1".into(), 1), ("Z-1".into(), 2), ("Z-2".into(), 1)]
    );
}
