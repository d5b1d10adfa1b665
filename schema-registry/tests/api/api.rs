//! HTTP conformance: every endpoint and error code, against a real broker.

use crate::common::{record, TestRegistry, V1};
use serde_json::json;

const F_ID: &str = r#"{"name":"id","type":"string"}"#;
const F_QTY: &str = r#"{"name":"qty","type":"int"}"#;
const F_QTY_DEFAULT: &str = r#"{"name":"qty","type":"int","default":1}"#;

#[tokio::test]
async fn root_and_schema_types_answer() -> anyhow::Result<()> {
    let r = TestRegistry::start().await?;
    assert_eq!(r.get("/").await?, (200, json!({})));
    assert_eq!(r.get("/schemas/types").await?, (200, json!(["AVRO"])));
    Ok(())
}

#[tokio::test]
async fn registration_gives_global_ids_and_per_subject_versions() -> anyhow::Result<()> {
    let r = TestRegistry::start().await?;
    let v1 = record("Order", &[F_ID]);
    let id = r.register("orders-value", &v1).await?;
    assert_eq!(id, 1);
    // Equivalent text (other whitespace and key order) is the same schema.
    let respaced = r#"{ "namespace": "test", "fields": [ { "type": "string", "name": "id" } ], "name": "Order", "type": "record" }"#;
    assert_eq!(r.register("orders-value", respaced).await?, 1);
    assert_eq!(
        r.get("/subjects/orders-value/versions").await?,
        (200, json!([1]))
    );
    // The same schema under another subject keeps its id and starts at version 1 there.
    assert_eq!(r.register("other-value", &v1).await?, 1);
    assert_eq!(
        r.get("/subjects/other-value/versions").await?,
        (200, json!([1]))
    );
    // A new schema gets the next id and the next version.
    let v2 = record("Order", &[F_ID, F_QTY_DEFAULT]);
    assert_eq!(r.register("orders-value", &v2).await?, 2);
    assert_eq!(
        r.get("/subjects/orders-value/versions").await?,
        (200, json!([1, 2]))
    );
    assert_eq!(
        r.get("/subjects").await?,
        (200, json!(["orders-value", "other-value"]))
    );
    assert_eq!(
        r.get("/subjects?subjectPrefix=orders").await?,
        (200, json!(["orders-value"]))
    );

    let (status, body) = r.get("/subjects/orders-value/versions/latest").await?;
    assert_eq!(status, 200);
    assert_eq!(body["subject"], "orders-value");
    assert_eq!(body["version"], 2);
    assert_eq!(body["id"], 2);
    let schema: serde_json::Value = serde_json::from_str(body["schema"].as_str().unwrap_or(""))?;
    assert_eq!(schema["fields"][1]["default"], 1);
    assert!(body.get("schemaType").is_none(), "AVRO omits schemaType");

    let (status, body) = r.get("/subjects/orders-value/versions/1").await?;
    assert_eq!((status, body["id"].clone()), (200, json!(1)));
    let (status, body) = r.get("/subjects/orders-value/versions/-1").await?;
    assert_eq!((status, body["version"].clone()), (200, json!(2)));
    let (status, raw) = r.get("/subjects/orders-value/versions/1/schema").await?;
    assert_eq!((status, raw["name"].clone()), (200, json!("Order")));

    let (status, body) = r.get("/schemas/ids/1").await?;
    assert_eq!(status, 200);
    assert!(body["schema"].as_str().unwrap_or("").contains("\"Order\""));
    let (status, raw) = r.get("/schemas/ids/2/schema").await?;
    assert_eq!((status, raw["type"].clone()), (200, json!("record")));
    assert_eq!(
        r.get("/schemas/ids/1/subjects").await?,
        (200, json!(["orders-value", "other-value"]))
    );
    assert_eq!(
        r.get("/schemas/ids/1/versions").await?,
        (
            200,
            json!([{"subject":"orders-value","version":1},{"subject":"other-value","version":1}])
        )
    );
    assert_eq!(
        r.get("/subjects/orders-value/versions/1/referencedby")
            .await?,
        (200, json!([]))
    );
    Ok(())
}

#[tokio::test]
async fn lookups_and_not_found_codes() -> anyhow::Result<()> {
    let r = TestRegistry::start().await?;
    let v1 = record("Order", &[F_ID]);
    r.register("orders-value", &v1).await?;

    let (status, body) = r
        .post("/subjects/orders-value", json!({ "schema": v1 }))
        .await?;
    assert_eq!(status, 200);
    assert_eq!(
        (body["id"].clone(), body["version"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(body["subject"], "orders-value");

    let other = record("Other", &[F_ID]);
    let (status, body) = r
        .post("/subjects/orders-value", json!({ "schema": other }))
        .await?;
    assert_eq!((status, body["error_code"].clone()), (404, json!(40403)));
    let (status, body) = r.post("/subjects/nope", json!({ "schema": v1 })).await?;
    assert_eq!((status, body["error_code"].clone()), (404, json!(40401)));

    for (path, code) in [
        ("/subjects/nope/versions", 40401),
        ("/subjects/nope/versions/1", 40401),
        ("/subjects/orders-value/versions/7", 40402),
        ("/schemas/ids/99", 40403),
        ("/schemas/ids/99/schema", 40403),
        ("/schemas/ids/99/subjects", 40403),
        ("/schemas/ids/99/versions", 40403),
        ("/config/orders-value", 40408),
        ("/mode/orders-value", 40409),
    ] {
        let (status, body) = r.get(path).await?;
        assert_eq!(
            (status, body["error_code"].clone()),
            (404, json!(code)),
            "{path}: {body}"
        );
        assert!(body["message"].is_string(), "{path}: {body}");
    }
    for path in [
        "/subjects/orders-value/versions/0",
        "/subjects/orders-value/versions/abc",
        "/subjects/orders-value/versions/2147483648",
    ] {
        let (status, body) = r.get(path).await?;
        assert_eq!(
            (status, body["error_code"].clone()),
            (422, json!(42202)),
            "{path}"
        );
    }
    let (status, body) = r.get("/no/such/route").await?;
    assert_eq!((status, body["error_code"].clone()), (404, json!(404)));
    Ok(())
}

#[tokio::test]
async fn invalid_bodies_get_confluent_errors() -> anyhow::Result<()> {
    let r = TestRegistry::start().await?;
    let (status, body) = r
        .post(
            "/subjects/s/versions",
            json!({ "schema": "{\"type\":\"recrd\"}" }),
        )
        .await?;
    assert_eq!(
        (status, body["error_code"].clone()),
        (422, json!(42201)),
        "{body}"
    );
    let (status, body) = r
        .post("/subjects/s/versions", json!({ "schema": "not json" }))
        .await?;
    assert_eq!((status, body["error_code"].clone()), (422, json!(42201)));
    let (status, body) = r
        .post(
            "/subjects/s/versions",
            json!({ "schema": "\"string\"", "schemaType": "PROTOBUF" }),
        )
        .await?;
    assert_eq!((status, body["error_code"].clone()), (422, json!(42201)));
    let (status, body) = r.post("/subjects/s/versions", json!({ "nope": 1 })).await?;
    assert_eq!((status, body["error_code"].clone()), (422, json!(422)));

    let malformed = r
        .client
        .post(format!("{}/subjects/s/versions", r.url))
        .header("Content-Type", V1)
        .body("{not json")
        .send()
        .await?;
    assert_eq!(malformed.status().as_u16(), 400);
    let body: serde_json::Value = malformed.json().await?;
    assert_eq!(body["error_code"], 400);

    let wrong_type = r
        .client
        .post(format!("{}/subjects/s/versions", r.url))
        .header("Content-Type", "text/plain")
        .body(r#"{"schema":"\"string\""}"#)
        .send()
        .await?;
    assert_eq!(wrong_type.status().as_u16(), 415);
    Ok(())
}

#[tokio::test]
async fn every_accepted_content_type_works_and_answers_are_v1_json() -> anyhow::Result<()> {
    let r = TestRegistry::start().await?;
    for (i, content_type) in [
        "application/vnd.schemaregistry.v1+json",
        "application/vnd.schemaregistry+json",
        "application/json",
    ]
    .iter()
    .enumerate()
    {
        let response = r
            .client
            .post(format!("{}/subjects/s{i}/versions", r.url))
            .header("Content-Type", *content_type)
            .body(r#"{"schema":"\"string\""}"#)
            .send()
            .await?;
        assert_eq!(response.status().as_u16(), 200, "{content_type}");
        let answered = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        assert!(answered.starts_with(V1), "{answered}");
    }
    Ok(())
}

#[tokio::test]
async fn backward_compatibility_is_enforced_by_default() -> anyhow::Result<()> {
    let r = TestRegistry::start().await?;
    r.register("s", &record("R", &[F_ID])).await?;
    // A new field without a default cannot read old data.
    let (status, body) = r
        .post(
            "/subjects/s/versions",
            json!({ "schema": record("R", &[F_ID, F_QTY]) }),
        )
        .await?;
    assert_eq!(
        (status, body["error_code"].clone()),
        (409, json!(409)),
        "{body}"
    );
    assert!(body["message"]
        .as_str()
        .unwrap_or("")
        .contains("incompatible with an earlier schema"));

    let (status, body) = r
        .post(
            "/compatibility/subjects/s/versions/latest?verbose=true",
            json!({ "schema": record("R", &[F_ID, F_QTY]) }),
        )
        .await?;
    assert_eq!(status, 200);
    assert_eq!(body["is_compatible"], false);
    assert!(!body["messages"]
        .as_array()
        .map(Vec::is_empty)
        .unwrap_or(true));
    let (status, body) = r
        .post(
            "/compatibility/subjects/s/versions/1",
            json!({ "schema": record("R", &[F_ID, F_QTY_DEFAULT]) }),
        )
        .await?;
    assert_eq!((status, body), (200, json!({ "is_compatible": true })));
    let (_, body) = r
        .post(
            "/compatibility/subjects/s/versions",
            json!({ "schema": record("R", &[F_ID, F_QTY_DEFAULT]) }),
        )
        .await?;
    assert_eq!(body["is_compatible"], true);
    let (status, body) = r
        .post(
            "/compatibility/subjects/unknown/versions/1",
            json!({ "schema": record("R", &[F_ID]) }),
        )
        .await?;
    assert_eq!((status, body["error_code"].clone()), (404, json!(40401)));
    let (status, body) = r
        .post(
            "/compatibility/subjects/s/versions/9",
            json!({ "schema": record("R", &[F_ID]) }),
        )
        .await?;
    assert_eq!((status, body["error_code"].clone()), (404, json!(40402)));
    let (status, body) = r
        .post(
            "/compatibility/subjects/unknown/versions/latest",
            json!({ "schema": record("R", &[F_ID]) }),
        )
        .await?;
    assert_eq!((status, body), (200, json!({ "is_compatible": true })));

    // With NONE on the subject, anything goes.
    assert_eq!(
        r.put("/config/s", json!({ "compatibility": "NONE" }))
            .await?,
        (200, json!({ "compatibility": "NONE" }))
    );
    assert_eq!(r.register("s", &record("R", &[F_ID, F_QTY])).await?, 2);
    Ok(())
}

#[tokio::test]
async fn config_is_global_or_per_subject() -> anyhow::Result<()> {
    let r = TestRegistry::start().await?;
    assert_eq!(
        r.get("/config").await?,
        (200, json!({ "compatibilityLevel": "BACKWARD" }))
    );
    for level in [
        "NONE",
        "BACKWARD",
        "BACKWARD_TRANSITIVE",
        "FORWARD",
        "FORWARD_TRANSITIVE",
        "FULL",
        "FULL_TRANSITIVE",
    ] {
        assert_eq!(
            r.put("/config", json!({ "compatibility": level })).await?,
            (200, json!({ "compatibility": level }))
        );
        assert_eq!(
            r.get("/config").await?,
            (200, json!({ "compatibilityLevel": level }))
        );
    }
    let (status, body) = r
        .put("/config", json!({ "compatibility": "SIDEWAYS" }))
        .await?;
    assert_eq!((status, body["error_code"].clone()), (422, json!(42203)));

    let (status, body) = r.get("/config/s").await?;
    assert_eq!((status, body["error_code"].clone()), (404, json!(40408)));
    assert_eq!(
        r.get("/config/s?defaultToGlobal=true").await?,
        (200, json!({ "compatibilityLevel": "FULL_TRANSITIVE" }))
    );
    r.put("/config/s", json!({ "compatibility": "FORWARD" }))
        .await?;
    assert_eq!(
        r.get("/config/s").await?,
        (200, json!({ "compatibilityLevel": "FORWARD" }))
    );
    assert_eq!(
        r.delete("/config/s").await?,
        (200, json!({ "compatibilityLevel": "FORWARD" }))
    );
    let (status, _) = r.get("/config/s").await?;
    assert_eq!(status, 404);
    assert_eq!(
        r.delete("/config").await?,
        (200, json!({ "compatibilityLevel": "FULL_TRANSITIVE" }))
    );
    assert_eq!(
        r.get("/config").await?,
        (200, json!({ "compatibilityLevel": "BACKWARD" }))
    );
    Ok(())
}

#[tokio::test]
async fn modes_gate_writes() -> anyhow::Result<()> {
    let r = TestRegistry::start().await?;
    assert_eq!(r.get("/mode").await?, (200, json!({ "mode": "READWRITE" })));
    assert_eq!(
        r.put("/mode", json!({ "mode": "READONLY" })).await?,
        (200, json!({ "mode": "READONLY" }))
    );
    let (status, body) = r
        .post("/subjects/s/versions", json!({ "schema": "\"string\"" }))
        .await?;
    assert_eq!((status, body["error_code"].clone()), (422, json!(42205)));
    let (status, body) = r.put("/mode", json!({ "mode": "SOMETIMES" })).await?;
    assert_eq!((status, body["error_code"].clone()), (422, json!(42204)));
    r.put("/mode", json!({ "mode": "READWRITE" })).await?;
    r.register("s", "\"string\"").await?;

    // IMPORT on a non-empty registry needs force; then ids and versions are the caller's.
    let (status, body) = r.put("/mode", json!({ "mode": "IMPORT" })).await?;
    assert_eq!((status, body["error_code"].clone()), (422, json!(42205)));
    assert_eq!(
        r.put("/mode/imported?force=true", json!({ "mode": "IMPORT" }))
            .await?,
        (200, json!({ "mode": "IMPORT" }))
    );
    let (status, body) = r
        .post(
            "/subjects/imported/versions",
            json!({ "schema": "\"long\"", "id": 100, "version": 5 }),
        )
        .await?;
    assert_eq!((status, body), (200, json!({ "id": 100 })));
    assert_eq!(
        r.get("/subjects/imported/versions").await?,
        (200, json!([5]))
    );
    let (status, body) = r
        .post(
            "/subjects/imported/versions",
            json!({ "schema": "\"double\"", "id": 100, "version": 6 }),
        )
        .await?;
    assert_eq!((status, body["error_code"].clone()), (422, json!(42207)));
    assert_eq!(
        r.delete("/mode/imported").await?,
        (200, json!({ "mode": "IMPORT" }))
    );
    // The next id continues after the imported one.
    assert_eq!(r.register("s2", "\"int\"").await?, 101);
    Ok(())
}

#[tokio::test]
async fn soft_then_permanent_deletes() -> anyhow::Result<()> {
    let r = TestRegistry::start().await?;
    r.register("s", &record("R", &[F_ID])).await?;
    r.register("s", &record("R", &[F_ID, F_QTY_DEFAULT]))
        .await?;

    let (status, body) = r.delete("/subjects/s/versions/1?permanent=true").await?;
    assert_eq!((status, body["error_code"].clone()), (404, json!(40407)));
    assert_eq!(r.delete("/subjects/s/versions/1").await?, (200, json!(1)));
    let (status, body) = r.delete("/subjects/s/versions/1").await?;
    assert_eq!((status, body["error_code"].clone()), (404, json!(40406)));
    let (status, body) = r.get("/subjects/s/versions/1").await?;
    assert_eq!((status, body["error_code"].clone()), (404, json!(40402)));
    let (status, body) = r.get("/subjects/s/versions/1?deleted=true").await?;
    assert_eq!((status, body["id"].clone()), (200, json!(1)));
    assert_eq!(r.get("/subjects/s/versions").await?, (200, json!([2])));
    assert_eq!(
        r.get("/subjects/s/versions?deleted=true").await?,
        (200, json!([1, 2]))
    );
    assert_eq!(
        r.delete("/subjects/s/versions/1?permanent=true").await?,
        (200, json!(1))
    );
    assert_eq!(
        r.get("/subjects/s/versions?deleted=true").await?,
        (200, json!([2]))
    );

    let (status, body) = r.delete("/subjects/s?permanent=true").await?;
    assert_eq!((status, body["error_code"].clone()), (404, json!(40405)));
    assert_eq!(r.delete("/subjects/s").await?, (200, json!([2])));
    let (status, body) = r.delete("/subjects/s").await?;
    assert_eq!((status, body["error_code"].clone()), (404, json!(40404)));
    assert_eq!(r.get("/subjects").await?, (200, json!([])));
    assert_eq!(r.get("/subjects?deleted=true").await?, (200, json!(["s"])));
    let (status, body) = r.get("/subjects/s/versions").await?;
    assert_eq!((status, body["error_code"].clone()), (404, json!(40401)));
    assert_eq!(
        r.delete("/subjects/s?permanent=true").await?,
        (200, json!([2]))
    );
    assert_eq!(r.get("/subjects?deleted=true").await?, (200, json!([])));
    let (status, body) = r.delete("/subjects/s").await?;
    assert_eq!((status, body["error_code"].clone()), (404, json!(40401)));

    // Ids are never reused: a new schema gets 3, not 1 or 2.
    assert_eq!(r.register("t", &record("T", &[F_ID])).await?, 3);
    Ok(())
}

#[tokio::test]
async fn references_are_resolved_and_protect_their_target() -> anyhow::Result<()> {
    let r = TestRegistry::start().await?;
    let address = r#"{"type":"record","name":"Address","namespace":"test","fields":[{"name":"city","type":"string"}]}"#;
    let address_id = r.register("address", address).await?;
    let customer = r#"{"type":"record","name":"Customer","namespace":"test","fields":[{"name":"home","type":"test.Address"}]}"#;
    let (status, body) = r
        .post(
            "/subjects/customer/versions",
            json!({ "schema": customer,
                    "references": [{"name": "test.Address", "subject": "address", "version": 1}] }),
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    let customer_id = body["id"].clone();
    assert_ne!(customer_id, json!(address_id));
    assert_eq!(
        r.get("/subjects/address/versions/1/referencedby").await?,
        (200, json!([customer_id]))
    );
    let (_, body) = r.get("/subjects/customer/versions/1").await?;
    assert_eq!(
        body["references"],
        json!([{"name": "test.Address", "subject": "address", "version": 1}])
    );
    let (status, body) = r.delete("/subjects/address/versions/1").await?;
    assert_eq!((status, body["error_code"].clone()), (422, json!(42206)));
    let (status, body) = r
        .post(
            "/subjects/broken/versions",
            json!({ "schema": customer,
                    "references": [{"name": "test.Address", "subject": "address", "version": 9}] }),
        )
        .await?;
    assert_eq!((status, body["error_code"].clone()), (422, json!(42201)));
    Ok(())
}

#[tokio::test]
async fn the_ui_is_served_without_external_resources() -> anyhow::Result<()> {
    let r = TestRegistry::start().await?;
    let response = r.client.get(format!("{}/ui", r.url)).send().await?;
    assert_eq!(response.status().as_u16(), 200);
    let html = response.text().await?;
    assert!(html.contains("id=\"subjects\""));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "the UI must load nothing from the network"
    );
    Ok(())
}

/// The operations surface every service shares: `/health`, `/ready` with named checks,
/// `/metrics`, request IDs, and `/docs` sending to the UI (the registry has no OpenAPI document).
#[tokio::test]
async fn the_service_surface_is_the_familys() -> anyhow::Result<()> {
    let mut r = TestRegistry::start().await?;
    assert_eq!(r.get("/health").await?, (200, json!({"status": "alive"})));
    assert_eq!(
        r.get("/ready").await?,
        (
            200,
            json!({"status": "ready", "checks": [
                {"name": "kafka", "state": "ok"},
                {"name": "schemas_reader", "state": "ok"}]})
        )
    );
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let docs = plain.get(format!("{}/docs", r.url)).send().await?;
    assert_eq!(docs.status().as_u16(), 308);
    assert_eq!(
        docs.headers().get("location").map(|v| v.as_bytes()),
        Some(&b"/ui"[..])
    );
    let subjects = plain
        .get(format!("{}/subjects", r.url))
        .header("X-Request-Id", "trace-42")
        .send()
        .await?;
    assert_eq!(subjects.status().as_u16(), 200);
    assert_eq!(
        subjects.headers().get("x-request-id").map(|v| v.as_bytes()),
        Some(&b"trace-42"[..])
    );
    let metrics = plain.get(format!("{}/metrics", r.url)).send().await?;
    assert_eq!(metrics.status().as_u16(), 200);
    let text = metrics.text().await?;
    assert!(
        text.contains(r#"http_requests_total{method="GET",route="/subjects",status="200"} 1"#),
        "{text}"
    );

    // Without the broker, `/ready` says which check fails and why (auth is off).
    r.broker.kill();
    let (status, body) = r.get("/ready").await?;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["checks"][0]["name"], "kafka");
    assert_eq!(body["checks"][0]["state"], "failing");
    assert!(
        body["checks"][0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("Kafka is unreachable")),
        "{body}"
    );
    assert_eq!(body["checks"][1]["name"], "schemas_reader");
    Ok(())
}
