//! The whole pipeline: CartService → Kafka (Avro) → OrderService, on a real Tansu broker with
//! the real registry, plus Confluent's Python client reading CartService's records and writing
//! records OrderService must read.

#![allow(clippy::unwrap_used)]

use serde_json::{json, Value};

struct Stack {
    broker: testkit::Broker,
    registry: schema_registry::Running,
    cart: String,
    /// CartService itself (stops when dropped); `cart` is its URL.
    _cart_service: cart_service::Running,
    order: order_service::Running,
    _data: tempfile::TempDir,
    http: reqwest::Client,
}

async fn stack() -> Stack {
    let broker = testkit::Broker::start().unwrap();
    let registry = schema_registry::spawn(schema_registry::Settings::for_tests(
        &broker.bootstrap_servers(),
    ))
    .await
    .unwrap();
    let cart_service = cart_service::spawn(cart_service::Settings::for_tests(
        &broker.bootstrap_servers(),
        registry.url(),
    ))
    .await
    .unwrap();
    let cart_url = cart_service.url().to_string();
    let data = tempfile::tempdir().unwrap();
    let order = order_service::spawn(order_service::Settings::for_tests(
        &broker.bootstrap_servers(),
        registry.url(),
        data.path().to_path_buf(),
    ))
    .await
    .unwrap();
    let http = reqwest::Client::new();
    for url in [cart_url.as_str(), order.url()] {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while http
            .get(format!("{url}/ready"))
            .send()
            .await
            .map(|r| r.status() != 200)
            .unwrap_or(true)
        {
            assert!(std::time::Instant::now() < deadline, "{url} not ready");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    Stack {
        broker,
        registry,
        cart: cart_url,
        _cart_service: cart_service,
        order,
        _data: data,
        http,
    }
}

impl Stack {
    async fn call(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    async fn details(&self, id: &str, min_version: i64) -> (u16, Value) {
        self.call(self.http.get(format!(
            "{}/api/order-details?orderId={id}&minVersion={min_version}&waitMs=10000",
            self.order.url()
        )))
        .await
    }

    fn python(&self, args: &[&str]) -> String {
        let python = testkit::test_python().unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/confluent_orders.py");
        let bootstrap = self.broker.bootstrap_servers();
        let output = std::process::Command::new(python)
            .arg(script)
            .args(&args[..1])
            .arg(self.registry.url())
            .arg(&bootstrap)
            .args(&args[1..])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }
}

#[tokio::test]
async fn an_order_created_and_updated_in_cart_service_is_read_in_order_service() {
    let s = stack().await;
    let (status, created) = s
        .call(
            s.http
                .post(format!("{}/api/create-order", s.cart))
                .json(&json!({"orderId": "E2E-1", "numItems": 3})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    // Read your own write: no sleep, the request waits for version 1.
    let (status, body) = s.details("E2E-1", 1).await;
    assert_eq!(status, 200, "{body}");
    let total = created["data"]["totalAmount"].as_f64().unwrap();
    let total_cents = (total * 100.0).round() as i64;
    let shipping_cents = (body["data"]["shippingCost"].as_f64().unwrap() * 100.0).round() as i64;
    // 2 % of the total, half-up to cents, in integers.
    assert_eq!(shipping_cents, (total_cents * 2 + 50) / 100);
    assert_eq!(body["data"]["totalAmount"], created["data"]["totalAmount"]);
    assert_eq!(body["data"]["items"], created["data"]["items"]);

    for (status, version) in [("confirmed", 2), ("shipped", 3)] {
        let (code, _) = s
            .call(
                s.http
                    .put(format!("{}/api/update-order", s.cart))
                    .json(&json!({"orderId": "E2E-1", "status": status})),
            )
            .await;
        assert_eq!(code, 200);
        let (code, body) = s.details("E2E-1", version).await;
        assert_eq!((code, body["data"]["status"].clone()), (200, json!(status)));
        assert_eq!(body["data"]["version"], version);
    }
    let (_, ids) = s
        .call(s.http.get(format!(
            "{}/api/getAllOrderIdsFromTopic?topicName=order-events",
            s.order.url()
        )))
        .await;
    assert_eq!(ids["orderIds"], json!(["E2E-1"]));
}

#[tokio::test]
async fn confluents_deserializer_reads_what_cart_service_answered_to_the_cent() {
    let s = stack().await;
    let mut answers = vec![];
    for i in 0..5 {
        let (status, body) = s
            .call(
                s.http
                    .post(format!("{}/api/create-order", s.cart))
                    .json(&json!({"orderId": format!("PY-{i}"), "numItems": 4})),
            )
            .await;
        assert_eq!(status, 201);
        answers.push(body["data"].clone());
    }
    let lines = s.python(&["read"]);
    let records: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 5);
    for answer in answers {
        let id = answer["orderId"].as_str().unwrap();
        let record = records.iter().find(|r| r["key"] == id).unwrap();
        let value = &record["value"];
        // Confluent's deserializer gives Python Decimals: compare as exact decimal strings.
        let money = |v: &Value| format!("{:.2}", v.as_f64().unwrap());
        assert_eq!(
            value["totalAmount"],
            json!(money(&answer["totalAmount"])),
            "{id}"
        );
        for (theirs, ours) in value["items"]
            .as_array()
            .unwrap()
            .iter()
            .zip(answer["items"].as_array().unwrap())
        {
            assert_eq!(theirs["price"], json!(money(&ours["price"])));
            assert_eq!(theirs["quantity"], ours["quantity"]);
            assert_eq!(theirs["itemId"], ours["itemId"]);
        }
        for field in [
            "customerId",
            "currency",
            "status",
            "eventType",
            "version",
            "eventId",
        ] {
            assert_eq!(value[field], answer[field], "{id} {field}");
        }
    }
}

#[tokio::test]
async fn a_record_written_by_confluents_serializer_shows_up_in_order_service() {
    let s = stack().await;
    assert_eq!(s.python(&["write", "PY-WRITTEN"]).trim(), "written");
    let (status, body) = s.details("PY-WRITTEN", 1).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["totalAmount"], json!(999.99));
    assert_eq!(body["data"]["shippingCost"], json!(20.0));
    assert_eq!(body["data"]["currency"], "EUR");
}
