//! The view through the HTTP API, against a real broker and the real registry: orders become
//! visible with their shipping cost, versions never go backwards, older and newer compatible
//! writer schemas are read, listing filters and paginates, bad input answers 400 JSON.

use crate::common::*;
use apache_avro::types::Value;
use apache_avro::Schema;
use order_events::{frame, OrderStatus};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_produced_order_is_visible_with_its_shipping_cost() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    let service = env.service(dir.path().to_path_buf()).await;
    let url = service.url();

    let order = simple_order("ORDER-001", "CUST-1", OrderStatus::Pending);
    env.produce(&event(order.clone(), 1)).await;
    let cheap = order_events::Order::new(
        order_events::OrderId::parse("ORDER-CHEAP").unwrap(),
        order_events::CustomerId::parse("CUST-1").unwrap(),
        order.order_date(),
        vec![order_events::OrderItem::new(
            order_events::ItemId::parse("SKU-2").unwrap(),
            order_events::Quantity::new(1).unwrap(),
            order_events::Money::parse("0.25").unwrap(),
        )
        .unwrap()],
        order_events::Money::parse("0.25").unwrap(),
        order.currency(),
        OrderStatus::Pending,
    )
    .unwrap();
    env.produce(&event(cheap, 1)).await;

    let (status, body) = get_json(
        &env.http,
        url,
        "/api/order-details?orderId=ORDER-001&waitMs=10000",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["message"], "Order 'ORDER-001' retrieved successfully");
    let data = body["data"].as_object().unwrap();
    assert_eq!(data["shippingCost"], json!(40.0));
    assert_eq!(data["version"], 1);
    assert_eq!(data["eventType"], "ORDER_CREATED");
    assert_eq!(data["updatedAt"], "2024-05-01T10:00:01Z");
    // The rest is exactly the contract's Order serialization.
    let mut rest = data.clone();
    for extra in ["shippingCost", "version", "eventType", "updatedAt"] {
        rest.remove(extra);
    }
    assert_eq!(
        serde_json::Value::Object(rest),
        serde_json::to_value(&order).unwrap()
    );

    let (status, body) = get_json(
        &env.http,
        url,
        "/api/order-details?orderId=ORDER-CHEAP&waitMs=10000",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["shippingCost"], json!(0.01), "0.005 rounds up");

    let (status, body) = get_json(&env.http, url, "/api/order-details?orderId=ORDER-404").await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!({"success": false, "message": "Order 'ORDER-404' not found", "errors": []})
    );
    // Waiting for an order that never comes answers 404 at the deadline.
    let started = std::time::Instant::now();
    let (status, _) = get_json(
        &env.http,
        url,
        "/api/order-details?orderId=ORDER-404&waitMs=300",
    )
    .await;
    assert_eq!(status, 404);
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_waiting_request_sees_the_order_as_soon_as_it_is_applied() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    let service = env.service(dir.path().to_path_buf()).await;
    let url = service.url().to_owned();

    let http = env.http.clone();
    let waiting = tokio::spawn(async move {
        get_json(
            &http,
            &url,
            "/api/order-details?orderId=ORDER-LATE&waitMs=20000&minVersion=2",
        )
        .await
    });
    let order = simple_order("ORDER-LATE", "CUST-1", OrderStatus::Pending);
    env.produce(&event(order.clone(), 1)).await;
    env.produce(&event(order.with_status(OrderStatus::Confirmed), 2))
        .await;
    let (status, body) = waiting.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["version"], 2);
    assert_eq!(body["data"]["status"], "confirmed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn versions_apply_in_order_and_an_older_replay_does_not_overwrite() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    let service = env.service(dir.path().to_path_buf()).await;
    let url = service.url();

    let v1 = simple_order("ORDER-V", "CUST-1", OrderStatus::Pending);
    let v2 = v1.clone().with_status(OrderStatus::Confirmed);
    let v3 = v1.clone().with_status(OrderStatus::Shipped);
    env.produce(&event(v1, 1)).await;
    env.produce(&event(v2.clone(), 2)).await;
    env.produce(&event(v3, 3)).await;
    let (status, body) = get_json(
        &env.http,
        url,
        "/api/order-details?orderId=ORDER-V&waitMs=10000&minVersion=3",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["status"], "shipped");
    assert_eq!(body["data"]["eventType"], "ORDER_STATUS_UPDATED");

    // Version 2 again, after 3: applied (counted) but ignored.
    env.produce(&event(v2, 2)).await;
    eventually("the replayed version to be consumed", || async {
        metric(&env.http, url, "order_events_stale_total").await >= 1.0
    })
    .await;
    let (status, body) = get_json(&env.http, url, "/api/order-details?orderId=ORDER-V").await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["version"], 3);
    assert_eq!(body["data"]["status"], "shipped");
    assert_eq!(service.store().counter("applied_total").unwrap(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_written_with_older_and_newer_compatible_schemas_are_read() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    let service = env.service(dir.path().to_path_buf()).await;
    let url = service.url();

    // An older producer's schema, registered under its own subject.
    let older_text = fixture_text("order-event-v0-older.avsc");
    let older_id = env.register("legacy-orders-value", &older_text).await;
    let older = Schema::parse_str(&older_text).unwrap();
    let old_event = event(simple_order("ORDER-OLD", "CUST-1", OrderStatus::Pending), 1);
    let value = old_event.to_avro();
    let value = set(
        value,
        "eventId",
        Value::String(old_event.event_id().to_string()),
    );
    let value = set(
        value,
        "orderDate",
        Value::Long(old_event.order().order_date().timestamp_millis()),
    );
    let value = set(
        value,
        "occurredAt",
        Value::Long(old_event.occurred_at().timestamp_millis()),
    );
    let value = set(value, "version", Value::Int(1));
    let datum = write(&older, value);
    env.produce_raw(Some(b"ORDER-OLD"), Some(&frame(older_id, &datum)), None)
        .await;

    // A newer producer's schema: the next version of our subject, with an extra field.
    let newer_text = fixture_text("order-event-v2-newer.avsc");
    let newer_id = env.register("order-events-value", &newer_text).await;
    let newer = Schema::parse_str(&newer_text).unwrap();
    let new_event = event(simple_order("ORDER-NEW", "CUST-2", OrderStatus::Pending), 1);
    let value = set(new_event.to_avro(), "channel", Value::String("app".into()));
    let value = match value {
        Value::Record(fields) => Value::Record(
            fields
                .into_iter()
                .map(|(n, v)| match (n.as_str(), v) {
                    ("items", Value::Array(items)) => (
                        n,
                        Value::Array(
                            items
                                .into_iter()
                                .map(|it| set(it, "sku", Value::Union(0, Box::new(Value::Null))))
                                .collect(),
                        ),
                    ),
                    (_, v) => (n, v),
                })
                .collect(),
        ),
        other => other,
    };
    let datum = write(&newer, value);
    env.produce_raw(Some(b"ORDER-NEW"), Some(&frame(newer_id, &datum)), None)
        .await;

    for (id, customer) in [("ORDER-OLD", "CUST-1"), ("ORDER-NEW", "CUST-2")] {
        let (status, body) = get_json(
            &env.http,
            url,
            &format!("/api/order-details?orderId={id}&waitMs=10000"),
        )
        .await;
        assert_eq!(status, 200, "{id}: {body}");
        assert_eq!(body["data"]["customerId"], customer);
        assert_eq!(body["data"]["shippingCost"], json!(40.0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orders_are_filtered_and_paginated() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    let service = env.service(dir.path().to_path_buf()).await;
    let url = service.url();

    // ORDER-0..6: even ones pending, odd ones confirmed; customers C-0, C-1, C-2 in turn.
    for i in 0..7 {
        let base = simple_order(
            &format!("ORDER-{i}"),
            &format!("C-{}", i % 3),
            OrderStatus::Pending,
        );
        if i % 2 == 0 {
            env.produce(&event(base, 1)).await;
        } else {
            env.produce(&event(base.with_status(OrderStatus::Confirmed), 2))
                .await;
        }
    }
    for i in 0..7 {
        let (status, _) = get_json(
            &env.http,
            url,
            &format!("/api/order-details?orderId=ORDER-{i}&waitMs=10000"),
        )
        .await;
        assert_eq!(status, 200);
    }

    let ids = |body: &serde_json::Value| -> Vec<String> {
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["orderId"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, body) = get_json(&env.http, url, "/api/orders").await;
    assert_eq!(status, 200);
    assert_eq!(body["count"], 7);
    assert_eq!(body["nextCursor"], serde_json::Value::Null);

    let mut seen = Vec::new();
    let mut path = "/api/orders?status=pending&limit=2".to_owned();
    loop {
        let (status, body) = get_json(&env.http, url, &path).await;
        assert_eq!(status, 200, "{body}");
        assert!(body["count"].as_u64().unwrap() <= 2);
        seen.extend(ids(&body));
        match body["nextCursor"].as_str() {
            Some(cursor) => path = format!("/api/orders?status=pending&limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, ["ORDER-0", "ORDER-2", "ORDER-4", "ORDER-6"]);

    let (_, body) = get_json(&env.http, url, "/api/orders?customerId=C-1").await;
    assert_eq!(ids(&body), ["ORDER-1", "ORDER-4"]);
    let (_, body) = get_json(
        &env.http,
        url,
        "/api/orders?customerId=C-1&status=confirmed",
    )
    .await;
    assert_eq!(ids(&body), ["ORDER-1"]);
    assert_eq!(body["data"][0]["shippingCost"], json!(40.0));
    let (_, body) = get_json(&env.http, url, "/api/orders?customerId=NOBODY").await;
    assert_eq!(body["count"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_query_parameters_answer_400_json() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    let service = env.service(dir.path().to_path_buf()).await;
    let url = service.url();

    let table: &[(&str, &str)] = &[
        ("/api/order-details", "orderId"),
        ("/api/order-details?orderId=", "orderId"),
        ("/api/order-details?orderId=has%20space", "orderId"),
        ("/api/order-details?orderId=a/b", "orderId"),
        (
            &format!("/api/order-details?orderId={}", "x".repeat(65)),
            "orderId",
        ),
        ("/api/order-details?orderId=ORDER-1&waitMs=-1", "waitMs"),
        ("/api/order-details?orderId=ORDER-1&waitMs=30001", "waitMs"),
        ("/api/order-details?orderId=ORDER-1&waitMs=abc", "waitMs"),
        (
            "/api/order-details?orderId=ORDER-1&minVersion=0",
            "minVersion",
        ),
        (
            "/api/order-details?orderId=ORDER-1&minVersion=x",
            "minVersion",
        ),
        ("/api/orders?limit=0", "limit"),
        ("/api/orders?limit=501", "limit"),
        ("/api/orders?limit=ten", "limit"),
        ("/api/orders?status=lost", "status"),
        ("/api/orders?customerId=a%20b", "customerId"),
        ("/api/orders?cursor=%2F%2F", "cursor"),
        ("/api/getAllOrderIdsFromTopic", "topicName"),
        ("/api/getAllOrderIdsFromTopic?topicName=", "topicName"),
        ("/api/getAllOrderIdsFromTopic?topicName=..", "topicName"),
        ("/api/getAllOrderIdsFromTopic?topicName=a%2Fb", "topicName"),
        (
            &format!("/api/getAllOrderIdsFromTopic?topicName={}", "t".repeat(250)),
            "topicName",
        ),
    ];
    for (path, field) in table {
        let (status, body) = get_json(&env.http, url, path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["success"], false, "{path}");
        assert!(body["message"].is_string(), "{path}");
        let fields: Vec<&str> = body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert!(fields.contains(field), "{path}: {body}");
    }
    // Both problems reported at once.
    let (status, body) = get_json(&env.http, url, "/api/order-details?orderId=&waitMs=99999").await;
    assert_eq!(status, 400);
    assert_eq!(body["errors"].as_array().unwrap().len(), 2, "{body}");
    // A repeated parameter is a malformed query string, still JSON.
    let (status, body) = get_json(&env.http, url, "/api/order-details?orderId=A&orderId=B").await;
    assert_eq!(status, 400);
    assert_eq!(body["success"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_metrics_openapi_and_docs_are_served() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    let service = env.service(dir.path().to_path_buf()).await;
    let url = service.url();

    let (status, body) = get_json(&env.http, url, "/health").await;
    assert_eq!((status, body), (200, json!({"status": "alive"})));
    let (status, body) = get_json(&env.http, url, "/ready").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");
    let names: Vec<&str> = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["consumer", "kafka", "schema_registry"]);

    env.produce(&event(
        simple_order("ORDER-M", "C", OrderStatus::Pending),
        1,
    ))
    .await;
    let (status, _) = get_json(
        &env.http,
        url,
        "/api/order-details?orderId=ORDER-M&waitMs=10000",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        metric(&env.http, url, "order_events_applied_total").await,
        1.0
    );
    assert_eq!(
        metric(&env.http, url, "order_view_applied_records").await,
        1.0
    );
    let text = env
        .http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for series in [
        "order_events_apply_batch_seconds_bucket",
        "http_requests_total{method=\"GET\",route=\"/api/order-details\",status=\"200\"}",
    ] {
        assert!(text.contains(series), "{series} missing from:\n{text}");
    }
    eventually("the lag gauge", || async {
        env.http
            .get(format!("{url}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .contains("order_events_consumer_lag{partition=\"0\"} 0")
    })
    .await;

    let (status, doc) = get_json(&env.http, url, "/api-docs/openapi.json").await;
    assert_eq!(status, 200);
    for path in [
        "/api/order-details",
        "/api/orders",
        "/api/getAllOrderIdsFromTopic",
        "/health",
        "/ready",
        "/metrics",
    ] {
        assert!(
            doc["paths"][path]["get"].is_object(),
            "{path} not documented"
        );
    }
    assert!(doc["components"]["schemas"]["OrderDto"].is_object());
    let docs = env.http.get(format!("{url}/docs/")).send().await.unwrap();
    assert_eq!(docs.status().as_u16(), 200);
    assert!(docs.text().await.unwrap().contains("swagger"));
    let docs = env.http.get(format!("{url}/docs")).send().await.unwrap();
    assert_eq!(docs.status().as_u16(), 200, "/docs redirects to the UI");

    let (status, body) = get_json(&env.http, url, "/nope").await;
    assert_eq!(status, 404);
    assert_eq!(body["success"], false);
}
