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

/// An ID of partition 0 (of the topic's 3) with this prefix.
fn in_partition_0(prefix: &str) -> String {
    (0..)
        .map(|n| format!("{prefix}-{n}"))
        .find(|id| order_events::partition_for(id, 3) == 0)
        .unwrap()
}

#[tokio::test]
async fn a_zombie_acknowledges_nothing_its_records_do_not_count_and_it_learns_the_owner() {
    let (first, second) = (in_partition_0("Z1"), in_partition_0("Z2"));
    let zombie = TestCart::start().await;
    let (status, body) = zombie
        .create(json!({"orderId": first, "numItems": 1}))
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

    // The zombie still believes it owns partition 0: its write lands after the newer claim.
    let (status, body) = zombie
        .create(json!({"orderId": second, "numItems": 1}))
        .await;
    assert_eq!(status, 503, "a fenced create: {body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("moved to another CartService instance")),
        "{body}"
    );
    assert_eq!(zombie.metric("cart_fenced_writes_total").await, 1.0);
    // The zombie's record is on the topic, and counts for no reader.
    let raw = testkit::topic::read_to_end(
        &zombie.broker.bootstrap_servers(),
        order_events::ORDER_EVENTS_TOPIC,
        Duration::from_secs(30),
    )
    .unwrap();
    assert!(
        raw.iter().any(|r| r.key_text() == second),
        "the fenced create was written (the test exercises the fence)"
    );
    assert_eq!(counted(&zombie).await, vec![(first.clone(), 1)]);

    // Having read the newer claim, the zombie no longer writes partition 0: it forwards to the
    // owner once the owner map names it (503 meanwhile), and the owner continues the order.
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let forwarded = loop {
        let answer = client
            .put(format!("{}/api/update-order", zombie.url))
            .json(&json!({"orderId": first, "status": "confirmed"}))
            .send()
            .await
            .unwrap();
        if answer.status() != 503 {
            let via = answer.headers().contains_key("x-cart-forwarded");
            let body: serde_json::Value = answer.json().await.unwrap();
            break Some((via, body));
        }
        if std::time::Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (via, body) = forwarded.expect("the zombie answered 503 for 20 s");
    assert!(via, "answered by the owner: {body}");
    assert_eq!(body["data"]["version"], json!(2), "{body}");
    assert_eq!(zombie.metric("cart_fenced_writes_total").await, 1.0);

    // The owner never saw the fenced create.
    let create = client
        .post(format!("{owner_url}/api/create-order"))
        .json(&json!({"orderId": second, "numItems": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(create.status(), 201);
    assert_eq!(
        counted(&zombie).await,
        vec![(first.clone(), 1), (first, 2), (second, 1)]
    );
}
