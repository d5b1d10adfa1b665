//! The order index on disk: restarts from a checkpoint, bounded memory, explicit partitions.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::json;

use crate::common::TestCart;

async fn create_many(cart: &TestCart, prefix: &str, count: usize) {
    for chunk in (0..count).collect::<Vec<_>>().chunks(25) {
        let answers = futures::future::join_all(
            chunk
                .iter()
                .map(|i| cart.create(json!({"orderId": format!("{prefix}-{i}"), "numItems": 1}))),
        )
        .await;
        for (status, body) in answers {
            assert_eq!(status, 201, "{body}");
        }
    }
}

/// Waits until every acknowledged record is in the index and nothing is held in memory.
async fn wait_settled(cart: &TestCart) {
    testkit::wait::until_async("every order indexed", Duration::from_secs(30), || async {
        cart.metric("cart_orders_in_memory").await == 0.0
    })
    .await
    .unwrap();
}

fn data_dir(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("cart")
}

#[tokio::test]
async fn a_restart_reads_only_what_came_after_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let cart = TestCart::start().await;
    let (broker, registry) = cart.stop().await;
    let on_disk = |s: &mut cart_service::Settings| s.data_dir = data_dir(&dir);
    let cart = TestCart::start_with(broker, registry, on_disk).await;
    create_many(&cart, "C", 150).await;
    for i in 0..10 {
        let (status, _) = cart
            .update(json!({"orderId": format!("C-{i}"), "status": "confirmed"}))
            .await;
        assert_eq!(status, 200);
    }
    // Memory does not keep orders once the index holds them.
    wait_settled(&cart).await;
    let records = cart.records().len();
    assert_eq!(records, 160);
    let (broker, registry) = cart.stop().await;

    // Same data directory: nothing to read again.
    let cart = TestCart::start_with(broker, registry, on_disk).await;
    assert_eq!(cart.metric("cart_index_records_read_total").await, 0.0);
    assert_eq!(cart.metric("cart_index_orders").await, 150.0);
    let (status, _) = cart.create(json!({"orderId": "C-3", "numItems": 1})).await;
    assert_eq!(status, 409, "known from the index after a restart");
    let (status, body) = cart
        .update(json!({"orderId": "C-5", "status": "shipped"}))
        .await;
    assert_eq!((status, body["data"]["version"].clone()), (200, json!(3)));
    let (status, body) = cart
        .update(json!({"orderId": "C-100", "status": "confirmed"}))
        .await;
    assert_eq!((status, body["data"]["version"].clone()), (200, json!(2)));
    let (status, _) = cart
        .update(json!({"orderId": "C-150", "status": "confirmed"}))
        .await;
    assert_eq!(status, 404);
    wait_settled(&cart).await;
    let (broker, registry) = cart.stop().await;

    // A new data directory: the index is rebuilt from the whole topic.
    let cart = TestCart::start_with(broker, registry, |_| {}).await;
    assert_eq!(cart.metric("cart_index_records_read_total").await, 162.0);
    assert_eq!(cart.metric("cart_index_orders").await, 150.0);
    let (status, body) = cart
        .update(json!({"orderId": "C-5", "status": "shipped"}))
        .await;
    assert_eq!((status, body["data"]["version"].clone()), (200, json!(3)));
}

#[tokio::test]
async fn an_index_built_from_another_topic_is_rebuilt_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let on_disk = |s: &mut cart_service::Settings| s.data_dir = data_dir(&dir);
    let first = TestCart::start().await;
    let (broker, registry) = first.stop().await;
    let first = TestCart::start_with(broker, registry, on_disk).await;
    create_many(&first, "X", 5).await;
    wait_settled(&first).await;
    drop(first);

    // A new, empty cluster with the old data directory (a wiped broker, a recreated topic).
    let second = TestCart::start().await;
    let (broker, registry) = second.stop().await;
    let second = TestCart::start_with(broker, registry, on_disk).await;
    assert_eq!(second.metric("cart_index_orders").await, 0.0);
    let (status, body) = second
        .create(json!({"orderId": "X-1", "numItems": 1}))
        .await;
    assert_eq!(
        status, 201,
        "the old cluster's order is not in this topic: {body}"
    );
}

#[tokio::test]
async fn two_instances_cannot_share_a_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let cart = TestCart::start().await;
    let (broker, registry) = cart.stop().await;
    let cart = TestCart::start_with(broker, registry, |s| s.data_dir = data_dir(&dir)).await;
    let mut settings =
        cart_service::Settings::for_tests(&cart.broker.bootstrap_servers(), cart.registry.url());
    settings.data_dir = data_dir(&dir);
    let error = cart_service::spawn(settings).await.err().unwrap();
    assert!(
        format!("{error:#}").contains("in use by another process"),
        "{error:#}"
    );
}

#[tokio::test]
async fn records_land_in_the_partition_kafkas_java_client_chooses() {
    let cart = TestCart::start().await;
    create_many(&cart, "P", 60).await;
    let records = cart.records();
    assert_eq!(records.len(), 60);
    let mut per_partition = HashMap::new();
    for record in &records {
        assert_eq!(
            record.partition,
            order_events::partition_for(&record.key, 3),
            "{}",
            record.key
        );
        *per_partition.entry(record.partition).or_insert(0) += 1;
    }
    assert_eq!(per_partition.len(), 3, "spread over every partition");

    // An independent implementation agrees: librdkafka's Java-compatible partitioner.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", cart.broker.bootstrap_servers())
        .set("partitioner", "murmur2_random")
        .create()
        .unwrap();
    for i in 0..60 {
        let key = format!("Q-{i}");
        let record = FutureRecord::to(order_events::ORDER_EVENTS_TOPIC)
            .key(&key)
            .payload("not an order");
        let delivery = producer
            .send(record, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(
            delivery.partition,
            order_events::partition_for(&key, 3),
            "{key}"
        );
    }
}

/// A record CartService did not write lands between its own: the index reads that hole instead
/// of trusting only what CartService wrote, and its checkpoint passes it.
#[tokio::test]
async fn a_record_written_by_someone_else_gets_into_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let on_disk = |s: &mut cart_service::Settings| s.data_dir = data_dir(&dir);
    let cart = TestCart::start().await;
    let (broker, registry) = cart.stop().await;
    let cart = TestCart::start_with(broker, registry, on_disk).await;
    create_many(&cart, "H", 1).await;
    let (_, created) = cart.events().await.pop().unwrap();
    // Version 2 of H-0, written straight to its partition by another producer.
    let confirmed = created
        .status_updated(
            order_events::OrderStatus::Confirmed,
            uuid::Uuid::new_v4(),
            chrono::Utc::now(),
        )
        .unwrap()
        .unwrap();
    let payload = cart.codec().encode(&confirmed).await.unwrap();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", cart.broker.bootstrap_servers())
        .create()
        .unwrap();
    let partition = order_events::partition_for("H-0", 3);
    producer
        .send(
            FutureRecord::to(order_events::ORDER_EVENTS_TOPIC)
                .key("H-0")
                .partition(partition)
                .payload(&payload),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    // CartService's own writes after it, in every partition.
    create_many(&cart, "J", 30).await;
    wait_settled(&cart).await;
    assert!(cart.metric("cart_index_records_read_total").await >= 1.0);
    let (status, body) = cart
        .update(json!({"orderId": "H-0", "status": "shipped"}))
        .await;
    assert_eq!(
        (status, body["data"]["version"].clone()),
        (200, json!(3)),
        "built on the other producer's version 2: {body}"
    );
    wait_settled(&cart).await;
    let (broker, registry) = cart.stop().await;
    let cart = TestCart::start_with(broker, registry, on_disk).await;
    assert_eq!(
        cart.metric("cart_index_records_read_total").await,
        0.0,
        "the checkpoint passed the hole"
    );
}
