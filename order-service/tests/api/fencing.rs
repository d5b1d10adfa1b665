//! Fencing (`order_events::fencing`) on the real broker and registry: in one partition, claims
//! move the fence, a zombie's late record (written under a superseded claim) and a record under
//! a claim that lost its race are not applied, an unreadable fencing header is dead-lettered,
//! and the fence is stored with the offsets, so a restarted OrderService still rejects the
//! zombie. The topic scan applies the same rule.
//!
//! Nothing here waits on time: every check follows a sentinel record produced after the records
//! under test in the same partition, so once the sentinel is in the view, they were processed.

use std::path::Path;
use std::time::Duration;

use crate::common::*;
use order_events::fencing::{CLAIMANT_HEADER, CLAIM_HEADER, WRITTEN_UNDER_HEADER};
use order_events::{OrderStatus, ORDER_EVENTS_TOPIC};
use order_service::store::Store;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;

/// Produces to partition 0 (the fence is per partition) and returns the record's offset.
async fn produce_p0(
    env: &Env,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: OwnedHeaders,
) -> i64 {
    let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(ORDER_EVENTS_TOPIC)
        .partition(0)
        .headers(headers);
    if let Some(key) = key {
        record = record.key(key);
    }
    if let Some(value) = value {
        record = record.payload(value);
    }
    let delivery = env
        .producer
        .send(record, Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    assert_eq!(delivery.partition, 0);
    delivery.offset
}

/// A claim of partition 0 as CartService writes it: no key, no value, superseding the claim
/// at `supersedes` (an offset, or `none`). Its offset.
async fn claim(env: &Env, supersedes: &str) -> i64 {
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: CLAIM_HEADER,
            value: Some(supersedes),
        })
        .insert(Header {
            key: CLAIMANT_HEADER,
            value: Some("http://127.0.0.1:8000"),
        });
    produce_p0(env, None, None, headers).await
}

/// Version `version` of order `id` (with `status`) written under the claim `under` (the raw
/// header value). Its offset.
async fn order_under(env: &Env, id: &str, version: i64, status: OrderStatus, under: &str) -> i64 {
    let value = env
        .codec
        .encode(&event(simple_order(id, "CUST-F", status), version))
        .await
        .unwrap();
    let headers = OwnedHeaders::new().insert(Header {
        key: WRITTEN_UNDER_HEADER,
        value: Some(under),
    });
    produce_p0(env, Some(id.as_bytes()), Some(&value), headers).await
}

/// Waits (through the API's read-your-writes wait) until `id` is in the view at `version` or
/// later, and returns its `data`.
async fn visible(env: &Env, url: &str, id: &str, version: i64) -> serde_json::Value {
    let (status, body) = get_json(
        &env.http,
        url,
        &format!("/api/order-details?orderId={id}&minVersion={version}&waitMs=20000"),
    )
    .await;
    assert_eq!(status, 200, "{id} v{version}: {body}");
    body["data"].clone()
}

/// The view's version and status of `id`.
fn held(store: &Store, id: &str) -> Option<(i64, OrderStatus)> {
    store
        .get(id)
        .unwrap()
        .map(|view| (view.version, view.order.status()))
}

async fn fenced(env: &Env, url: &str) -> f64 {
    metric(&env.http, url, "order_fenced_records_total").await
}

/// Stops the in-process service and waits until its data directory is free again.
async fn stop(service: order_service::Running, data_dir: &Path) {
    drop(service);
    eventually("the data directory to be released", || async {
        Store::open(data_dir).is_ok()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_zombies_records_are_fenced_and_the_fence_survives_a_restart() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("view");
    let service = env.service(data_dir.clone()).await;
    let url = service.url().to_owned();

    // (a) A first claim, and an order under it: applied.
    let c1 = claim(&env, "none").await;
    let c1s = c1.to_string();
    order_under(&env, "F-1", 1, OrderStatus::Pending, &c1s).await;
    assert_eq!(visible(&env, &url, "F-1", 1).await["version"], 1);
    assert_eq!(
        service.store().claims(ORDER_EVENTS_TOPIC).unwrap(),
        vec![(0, c1)]
    );

    // (b) Another instance claims the partition; the former owner (a zombie) still writes
    // version 2 under c1: not applied.
    let c2 = claim(&env, &c1s).await;
    let c2s = c2.to_string();
    order_under(&env, "F-1", 2, OrderStatus::Cancelled, &c1s).await;
    order_under(&env, "S-1", 1, OrderStatus::Pending, &c2s).await;
    visible(&env, &url, "S-1", 1).await;
    let store = service.store();
    assert_eq!(
        held(store, "F-1"),
        Some((1, OrderStatus::Pending)),
        "the zombie's v2"
    );
    assert_eq!(fenced(&env, &url).await, 1.0);
    // The owner's version 2 is applied.
    order_under(&env, "F-1", 2, OrderStatus::Confirmed, &c2s).await;
    let data = visible(&env, &url, "F-1", 2).await;
    assert_eq!(data["status"], "confirmed", "{data}");
    assert_eq!(fenced(&env, &url).await, 1.0);

    // (c) A claim that lost the race (it supersedes none, but c2 is in effect) changes
    // nothing: a record under it is fenced. So is an order only the zombie ever wrote.
    let lost = claim(&env, "none").await.to_string();
    order_under(&env, "F-1", 3, OrderStatus::Shipped, &lost).await;
    order_under(&env, "F-ZOMBIE", 1, OrderStatus::Pending, &c1s).await;
    // (d) An unreadable fencing header: poison, dead-lettered.
    order_under(&env, "F-BAD", 1, OrderStatus::Pending, "x").await;
    order_under(&env, "S-2", 1, OrderStatus::Pending, &c2s).await;
    visible(&env, &url, "S-2", 1).await;
    assert_eq!(held(store, "F-1"), Some((2, OrderStatus::Confirmed)));
    assert_eq!(held(store, "F-BAD"), None);
    assert_eq!(held(store, "F-ZOMBIE"), None);
    assert_eq!(fenced(&env, &url).await, 3.0);
    assert_eq!(
        metric(
            &env.http,
            &url,
            "order_claims_total{outcome=\"took_effect\"}"
        )
        .await,
        2.0
    );
    assert_eq!(
        metric(&env.http, &url, "order_claims_total{outcome=\"lost\"}").await,
        1.0
    );
    assert_eq!(
        metric(
            &env.http,
            &url,
            "order_events_dead_lettered_total{kind=\"bad_fence_header\"}"
        )
        .await,
        1.0
    );
    let letters = env.dead_letters(1).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].key_text(), "F-BAD");
    assert_eq!(
        letters[0].header("dlq.error.kind"),
        Some("bad_fence_header")
    );
    assert_eq!(letters[0].header(WRITTEN_UNDER_HEADER), Some("x"));
    assert!(
        letters[0]
            .header("dlq.error")
            .is_some_and(|e| e.contains(WRITTEN_UNDER_HEADER)),
        "{:?}",
        letters[0]
    );
    assert_eq!(store.counter("dead_lettered_total").unwrap(), 1);
    // Claims and fenced records are not applied, but their offsets are committed.
    let high = order_under(&env, "S-3", 1, OrderStatus::Pending, &c2s).await;
    visible(&env, &url, "S-3", 1).await;
    assert_eq!(store.counter("applied_total").unwrap(), 5);
    assert_eq!(store.claims(ORDER_EVENTS_TOPIC).unwrap(), vec![(0, c2)]);

    // The topic scan lists what the view counts: no zombie-only order, no claims.
    let (status, body) = get_json(
        &env.http,
        &url,
        "/api/getAllOrderIdsFromTopic?topicName=order-events",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["orderIds"],
        serde_json::json!(["F-1", "S-1", "F-BAD", "S-2", "S-3"]),
        "{body}"
    );

    // (e) Restarted on the same data directory, it resumes with the stored fence: the
    // zombie and the loser are still fenced, the owner is not.
    stop(service, &data_dir).await;
    let service = env.service(data_dir.clone()).await;
    let url = service.url().to_owned();
    assert_eq!(
        service.store().offsets(ORDER_EVENTS_TOPIC).unwrap()[0],
        (0, high + 1),
        "resumed after everything read (nothing read twice)"
    );
    order_under(&env, "F-1", 3, OrderStatus::Cancelled, &c1s).await;
    order_under(&env, "F-1", 4, OrderStatus::Cancelled, &lost).await;
    order_under(&env, "F-1", 3, OrderStatus::Shipped, &c2s).await;
    let data = visible(&env, &url, "F-1", 3).await;
    assert_eq!(data["status"], "shipped", "{data}");
    assert_eq!(
        held(service.store(), "F-1"),
        Some((3, OrderStatus::Shipped))
    );
    assert_eq!(fenced(&env, &url).await, 2.0, "counted by this process");
    assert_eq!(service.store().counter("applied_total").unwrap(), 6);
}
