//! CartService against a real broker and registry: what is answered is what is on the topic.

use crate::common::TestCart;
use serde_json::{json, Value};

#[tokio::test]
async fn a_created_order_is_on_the_topic_exactly_as_answered() {
    let cart = TestCart::start().await;
    let (status, body) = cart
        .create(json!({"orderId": "ORDER-001", "numItems": 3}))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["message"], "Order 'ORDER-001' created successfully");
    let data = &body["data"];
    assert_eq!(data["orderId"], "ORDER-001");
    assert_eq!(data["status"], "pending");
    assert_eq!(data["version"], 1);
    assert_eq!(data["eventType"], "ORDER_CREATED");
    assert_eq!(data["items"].as_array().unwrap().len(), 3);
    assert!(data["customerId"].as_str().unwrap().starts_with("CUST-"));

    let events = cart.events().await;
    assert_eq!(events.len(), 1);
    let (record, event) = &events[0];
    assert_eq!(record.key, "ORDER-001", "keyed by orderId");
    assert_eq!(
        serde_json::to_value(event).unwrap(),
        *data,
        "decodes to the answer"
    );
    assert!(record
        .headers
        .iter()
        .any(|(k, v)| k == "request-id" && !v.is_empty()));
    // The total is the exact sum of the lines, in cents.
    let cents = |v: &Value| (v.as_f64().unwrap() * 100.0).round() as i64;
    let sum: i64 = data["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| cents(&i["price"]) * i["quantity"].as_i64().unwrap())
        .sum();
    assert_eq!(cents(&data["totalAmount"]), sum);
}

#[tokio::test]
async fn client_values_are_kept_to_the_cent_and_the_request_id_travels() {
    let cart = TestCart::start().await;
    let response = cart
        .client
        .post(format!("{}/api/create-order", cart.url))
        .header("X-Request-Id", "req-42")
        .json(&json!({
            "orderId": "ORDER-EXACT", "customerId": "CUST-1", "currency": "EUR",
            "orderDate": "2026-01-13T10:30:00Z",
            "items": [{"itemId": "A", "quantity": 3, "price": 0.1},
                      {"itemId": "B", "quantity": 1, "price": "1999.99"}],
            "totalAmount": 2000.29
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    assert_eq!(response.headers()["x-request-id"], "req-42");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"]["totalAmount"], json!(2000.29));
    assert_eq!(body["data"]["currency"], "EUR");
    assert_eq!(body["data"]["orderDate"], "2026-01-13T10:30:00Z");
    let events = cart.events().await;
    let (record, event) = &events[0];
    assert_eq!(event.order().total_amount().cents(), 200_029);
    assert_eq!(event.order().items()[0].price().cents(), 10);
    assert!(record
        .headers
        .contains(&("request-id".into(), "req-42".into())));
}

#[tokio::test]
async fn updates_follow_the_lifecycle_and_bump_the_version() {
    let cart = TestCart::start().await;
    cart.create(json!({"orderId": "O-1", "numItems": 1})).await;
    let (status, body) = cart
        .update(json!({"orderId": "O-1", "status": "confirmed"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["version"], 2);
    assert_eq!(body["data"]["status"], "confirmed");
    assert_eq!(body["data"]["eventType"], "ORDER_STATUS_UPDATED");
    // The same status again is an idempotent no-op: 200, no new record.
    let (status, body) = cart
        .update(json!({"orderId": "O-1", "status": "confirmed"}))
        .await;
    assert_eq!((status, body["data"]["version"].clone()), (200, json!(2)));
    let (status, _) = cart
        .update(json!({"orderId": "O-1", "status": "shipped"}))
        .await;
    assert_eq!(status, 200);
    let (status, body) = cart
        .update(json!({"orderId": "O-1", "status": "pending"}))
        .await;
    assert_eq!(status, 409, "{body}");
    let (status, _) = cart
        .update(json!({"orderId": "O-1", "status": "cancelled"}))
        .await;
    assert_eq!(status, 409, "shipped orders cannot be cancelled");
    let (status, body) = cart
        .update(json!({"orderId": "NOPE", "status": "confirmed"}))
        .await;
    assert_eq!((status, body["success"].clone()), (404, json!(false)));

    let versions: Vec<(i64, String)> = cart
        .events()
        .await
        .iter()
        .map(|(_, e)| (e.version(), e.order().status().to_string()))
        .collect();
    assert_eq!(
        versions,
        vec![
            (1, "pending".into()),
            (2, "confirmed".into()),
            (3, "shipped".into())
        ]
    );
}

#[tokio::test]
async fn an_existing_id_is_a_conflict_even_under_concurrency() {
    let cart = TestCart::start().await;
    let mut tasks = vec![];
    for _ in 0..20 {
        let client = cart.client.clone();
        let url = format!("{}/api/create-order", cart.url);
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .json(&json!({"orderId": "RACE", "numItems": 2}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut statuses = vec![];
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        19,
        "{statuses:?}"
    );
    assert_eq!(cart.records().len(), 1);
}

#[tokio::test]
async fn concurrent_updates_to_one_order_never_skip_or_repeat_a_version() {
    let cart = TestCart::start().await;
    cart.create(json!({"orderId": "SER", "numItems": 1})).await;
    let mut tasks = vec![];
    for status in ["confirmed", "shipped", "delivered", "confirmed", "shipped"] {
        let client = cart.client.clone();
        let url = format!("{}/api/update-order", cart.url);
        tasks.push(tokio::spawn(async move {
            client
                .put(url)
                .json(&json!({"orderId": "SER", "status": status}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert!([200, 409].contains(&t.await.unwrap()));
    }
    let versions: Vec<i64> = cart
        .events()
        .await
        .iter()
        .map(|(_, e)| e.version())
        .collect();
    let expected: Vec<i64> = (1..=versions.len() as i64).collect();
    assert_eq!(versions, expected);
}

#[tokio::test]
async fn invalid_input_is_a_400_listing_every_field_never_a_5xx() {
    let cart = TestCart::start().await;
    let cases: Vec<(Value, &[&str])> = vec![
        (json!({}), &["orderId"]),
        (json!({"orderId": "", "numItems": 3}), &["orderId"]),
        (
            json!({"orderId": "x".repeat(65), "numItems": 3}),
            &["orderId"],
        ),
        (json!({"orderId": "bad id", "numItems": 3}), &["orderId"]),
        (json!({"orderId": "A", "numItems": 0}), &["numItems"]),
        (json!({"orderId": "A", "numItems": 101}), &["numItems"]),
        (json!({"orderId": "A", "numItems": "3"}), &["numItems"]),
        (json!({"orderId": "A"}), &["numItems"]),
        (json!({"orderId": "A", "items": []}), &["items"]),
        (
            json!({"orderId": "A", "items": [{"itemId": "I", "quantity": 0, "price": 1}]}),
            &["items[0].quantity"],
        ),
        (
            json!({"orderId": "A", "items": [{"itemId": "I", "quantity": 1, "price": 0}]}),
            &["items[0].price"],
        ),
        (
            json!({"orderId": "A", "items": [{"itemId": "I", "quantity": 1, "price": -1}]}),
            &["items[0].price"],
        ),
        (
            json!({"orderId": "A", "items": [{"itemId": "I", "quantity": 1, "price": 1.005}]}),
            &["items[0].price"],
        ),
        (
            json!({"orderId": "A", "items": [{"itemId": "", "quantity": 1, "price": 1}]}),
            &["items[0].itemId"],
        ),
        (
            json!({"orderId": "A", "items": [{"itemId": "I", "quantity": 2, "price": 1}], "totalAmount": 3}),
            &["totalAmount"],
        ),
        (
            json!({"orderId": "A", "numItems": 1, "currency": "usd"}),
            &["currency"],
        ),
        (
            json!({"orderId": "A", "numItems": 1, "currency": "XYZ"}),
            &["currency"],
        ),
        (
            json!({"orderId": "A", "numItems": 1, "orderDate": "yesterday"}),
            &["orderDate"],
        ),
        (
            json!({"orderId": "A", "numItems": 1, "status": "done"}),
            &["status"],
        ),
        (
            json!({"orderId": "A", "numItems": 1, "surprise": 1}),
            &["surprise"],
        ),
        (
            json!({"orderId": 5, "numItems": 0, "currency": "US"}),
            &["orderId", "numItems", "currency"],
        ),
    ];
    for (body, fields) in cases {
        let (status, answer) = cart.create(body.clone()).await;
        assert_eq!(status, 400, "{body} → {answer}");
        assert_eq!(answer["success"], false);
        let got: Vec<&str> = answer["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        for field in fields {
            assert!(got.contains(field), "{body}: {field} not in {got:?}");
        }
    }
    for body in [
        json!({"orderId": "A"}),
        json!({"status": "shipped"}),
        json!({"orderId": "A", "status": "lost"}),
        json!({"orderId": "A", "status": "shipped", "x": 1}),
    ] {
        let (status, answer) = cart.update(body.clone()).await;
        assert_eq!(status, 400, "{body} → {answer}");
    }
    assert!(cart.records().is_empty(), "nothing invalid was published");
}

#[tokio::test]
async fn malformed_oversized_and_mistyped_bodies_get_clear_json_errors() {
    let cart = TestCart::start().await;
    let post = |body: Vec<u8>, content_type: &'static str| {
        let client = cart.client.clone();
        let url = format!("{}/api/create-order", cart.url);
        async move {
            let response = client
                .post(url)
                .header("Content-Type", content_type)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            (status, body)
        }
    };
    for (body, content_type, expected) in [
        (b"{not json".to_vec(), "application/json", 400),
        (Vec::new(), "application/json", 400),
        (b"[1,2]".to_vec(), "application/json", 400),
        (b"\"text\"".to_vec(), "application/json", 400),
        (
            br#"{"orderId":"A","numItems":1}"#.to_vec(),
            "text/plain",
            415,
        ),
        (vec![b' '; 70 * 1024], "application/json", 413),
    ] {
        let (status, answer) = post(body, content_type).await;
        assert_eq!(status, expected, "{answer}");
        assert_eq!(answer["success"], false);
        assert!(!answer["message"].as_str().unwrap().is_empty());
    }
    let (status, answer) = cart
        .send(reqwest::Method::GET, "/api/nothing-here", json!(null))
        .await;
    assert_eq!((status, answer["success"].clone()), (404, json!(false)));
}

#[tokio::test]
async fn health_ready_metrics_and_docs_answer() {
    let cart = TestCart::start().await;
    cart.create(json!({"orderId": "M-1", "numItems": 1})).await;
    let get = |path: &str| cart.client.get(format!("{}{path}", cart.url)).send();
    assert_eq!(get("/health").await.unwrap().status(), 200);
    let ready = get("/ready").await.unwrap();
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(
        ready,
        json!({"status": "ready", "checks": [
            {"name": "state_loaded", "state": "ok"},
            {"name": "order_index", "state": "ok"},
            {"name": "kafka", "state": "ok"},
            {"name": "schema_registry", "state": "ok"}]})
    );
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let docs = no_redirects
        .get(format!("{}/docs", cart.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        docs.status(),
        308,
        "a permanent redirect, as in every service"
    );
    assert_eq!(docs.headers()["location"], "/docs/");
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains(
            "http_requests_total{method=\"POST\",route=\"/api/create-order\",status=\"201\"} 1"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("kafka_produce_duration_seconds_bucket"));
    let spec: Value = get("/api-docs/openapi.json")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/api/create-order",
        "/api/update-order",
        "/health",
        "/ready",
        "/metrics",
    ] {
        assert!(
            spec["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    let docs = cart
        .client
        .get(format!("{}/docs/", cart.url))
        .send()
        .await
        .unwrap();
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("swagger"));
}

#[tokio::test]
async fn a_60_kb_body_of_empty_items_gets_a_small_answer_that_counts_every_problem() {
    let cart = TestCart::start().await;
    // `{}` and a comma per item: about 20,000 empty items in 60 KB, three problems each.
    let items = vec![json!({}); 20_000];
    let body = serde_json::to_vec(&json!({"orderId": "BIG", "items": items})).unwrap();
    assert!((59_000..64 * 1024).contains(&body.len()), "{}", body.len());
    let response = cart
        .client
        .post(format!("{}/api/create-order", cart.url))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let text = response.text().await.unwrap();
    assert!(text.len() < 8 * 1024, "{} bytes answered", text.len());
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["success"], false);
    // "items" (too many) and three "is required" per item.
    let total = 1 + 3 * 20_000;
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains(&format!("{total} problems")),
        "{answer}"
    );
    let errors = answer["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 21, "the first 20 and the count");
    assert_eq!(errors[0]["field"], "items");
    assert_eq!(errors[1]["field"], "items[0].itemId");
    assert!(
        errors[20]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("{total} in total")),
        "{answer}"
    );
    assert!(cart.records().is_empty());
}

#[tokio::test]
async fn made_up_methods_and_random_paths_add_no_metric_series() {
    let cart = TestCart::start().await;
    let series = || async {
        let scrape = cart.scrape().await;
        let mut series: Vec<String> = scrape
            .lines()
            .filter(|l| l.starts_with("http_requests_total{") && !l.contains("/metrics"))
            .map(|l| l.rsplit_once(' ').unwrap().0.to_string())
            .collect();
        series.sort();
        (series, scrape)
    };
    let junk = |round: usize| {
        let cart = &cart;
        async move {
            for i in 0..50 {
                let method =
                    reqwest::Method::from_bytes(format!("FOO{round}Z{i}").as_bytes()).unwrap();
                for (method, path) in [
                    (method.clone(), format!("/random-{round}/{i}")),
                    (method, "/api/create-order".to_string()),
                    (reqwest::Method::GET, format!("/no/such/{round}/{i}?x={i}")),
                    (reqwest::Method::GET, format!("/docs/junk-{round}-{i}")),
                ] {
                    cart.client
                        .request(method, format!("{}{path}", cart.url))
                        .send()
                        .await
                        .unwrap();
                }
            }
        }
    };
    junk(0).await;
    let (first, _) = series().await;
    junk(1).await;
    let (second, scrape) = series().await;
    assert_eq!(first, second, "new series appeared");
    assert!(first.len() <= 6, "{first:#?}");
    assert!(!scrape.contains("FOO"), "a raw method became a label");
    assert!(!scrape.contains("random-"), "a raw path became a label");
    assert!(
        scrape.contains(r#"method="other",route="unmatched""#),
        "{scrape}"
    );
}
