//! Hostile requests: each is answered quickly, in Confluent's JSON error shape, and leaves the
//! registry serving. Against a real broker, like the other tests.

use std::time::{Duration, Instant};

use crate::common::{record, TestRegistry, V1};
use serde_json::{json, Value};

/// `levels` records, each using the next one twice (by definition, then by name); the last
/// holds one field of type `leaf`. Checked path by path, a change of `leaf` is 2^levels
/// problems.
fn doubling(levels: usize, leaf: &str) -> String {
    let mut schema = json!({"type": "record", "name": format!("L{levels}"), "fields": [
        {"name": "v", "type": leaf}
    ]});
    for level in (0..levels).rev() {
        schema = json!({"type": "record", "name": format!("L{level}"), "fields": [
            {"name": "a", "type": schema},
            {"name": "b", "type": format!("L{}", level + 1)}
        ]});
    }
    schema.to_string()
}

fn code(body: &Value) -> Value {
    body["error_code"].clone()
}

#[tokio::test]
async fn a_schema_whose_types_double_at_each_level_is_checked_quickly() -> anyhow::Result<()> {
    let r = TestRegistry::start().await?;
    r.register("deep", &doubling(30, "int")).await?;
    let candidate = json!({ "schema": doubling(30, "boolean") });

    let started = Instant::now();
    let (status, body) = r
        .post(
            "/compatibility/subjects/deep/versions/latest?verbose=true",
            candidate.clone(),
        )
        .await?;
    let elapsed = started.elapsed();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["is_compatible"], false);
    let messages = body["messages"].as_array().map_or(0, Vec::len);
    // One problem (the leaf pair, listed once) and the three trailing lines.
    assert_eq!(messages, 4, "{body}");
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");

    let started = Instant::now();
    let (status, body) = r.post("/subjects/deep/versions", candidate).await?;
    assert_eq!((status, code(&body)), (409, json!(409)), "{body}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(r.get("/subjects/deep/versions").await?, (200, json!([1])));
    Ok(())
}

#[tokio::test]
async fn a_schema_nested_too_deeply_is_invalid() -> anyhow::Result<()> {
    let r = TestRegistry::start().await?;
    // 70 levels of arrays and unions: one JSON level each, so the JSON parser's own limit
    // (128 levels) lets it through, and the registry's limit (64) must refuse it.
    let mut schema = json!("int");
    for level in 0..70 {
        schema = if level % 2 == 0 {
            json!({"type": "array", "items": schema})
        } else {
            json!(["null", schema])
        };
    }
    let (status, body) = r
        .post(
            "/subjects/nested/versions",
            json!({ "schema": schema.to_string() }),
        )
        .await?;
    assert_eq!((status, code(&body)), (422, json!(42201)), "{body}");
    assert!(
        body["message"].as_str().unwrap_or("").contains("64"),
        "{body}"
    );
    Ok(())
}

#[tokio::test]
async fn ids_end_at_the_largest_signed_32_bit_int() -> anyhow::Result<()> {
    let r = TestRegistry::start().await?;
    let max = i64::from(i32::MAX);
    r.put("/mode", json!({ "mode": "IMPORT" })).await?;
    let (status, body) = r
        .post(
            "/subjects/imported/versions",
            json!({ "schema": "\"long\"", "id": max + 1, "version": 1 }),
        )
        .await?;
    assert_eq!((status, code(&body)), (422, json!(422)), "{body}");
    let (status, body) = r
        .post(
            "/subjects/imported/versions",
            json!({ "schema": "\"long\"", "id": 5, "version": max + 1 }),
        )
        .await?;
    assert_eq!((status, code(&body)), (422, json!(42202)), "{body}");
    let (status, body) = r
        .post(
            "/subjects/imported/versions",
            json!({ "schema": "\"long\"", "id": max, "version": max }),
        )
        .await?;
    assert_eq!((status, body), (200, json!({ "id": max })));
    r.put("/mode", json!({ "mode": "READWRITE" })).await?;

    // No id is left for a new schema, and no version under the imported subject.
    let (status, body) = r
        .post("/subjects/next/versions", json!({ "schema": "\"int\"" }))
        .await?;
    assert_eq!((status, code(&body)), (422, json!(42205)), "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("2147483647"),
        "{body}"
    );
    let (status, body) = r
        .post(
            "/subjects/imported/versions",
            json!({ "schema": "\"long\"" }),
        )
        .await?;
    assert_eq!((status, body), (200, json!({ "id": max })), "already there");
    let (status, _) = r.get(&format!("/schemas/ids/{}", max + 1)).await?;
    assert_eq!(status, 404);
    assert_eq!(
        r.get("/subjects").await?,
        (200, json!(["imported"])),
        "nothing was registered past the limit"
    );
    Ok(())
}

#[tokio::test]
async fn read_only_subjects_refuse_deletes() -> anyhow::Result<()> {
    let r = TestRegistry::start().await?;
    r.register(
        "kept",
        &record("Kept", &[r#"{"name":"id","type":"string"}"#]),
    )
    .await?;
    r.put("/mode/kept", json!({ "mode": "READONLY" })).await?;
    for path in [
        "/subjects/kept/versions/1",
        "/subjects/kept/versions/latest",
        "/subjects/kept",
    ] {
        let (status, body) = r.delete(path).await?;
        assert_eq!((status, code(&body)), (422, json!(42205)), "{path}: {body}");
    }
    assert_eq!(r.get("/subjects/kept/versions").await?, (200, json!([1])));

    // READONLY_OVERRIDE as the global mode applies to a subject without its own mode.
    r.delete("/mode/kept").await?;
    r.put("/mode", json!({ "mode": "READONLY_OVERRIDE" }))
        .await?;
    let (status, body) = r.delete("/subjects/kept").await?;
    assert_eq!((status, code(&body)), (422, json!(42205)), "{body}");

    r.put("/mode", json!({ "mode": "READWRITE" })).await?;
    assert_eq!(r.delete("/subjects/kept").await?, (200, json!([1])));
    Ok(())
}

#[tokio::test]
async fn a_write_without_a_content_type_is_refused_with_415() -> anyhow::Result<()> {
    let r = TestRegistry::start().await?;
    for (method, path, body) in [
        (
            reqwest::Method::POST,
            "/subjects/s/versions",
            r#"{"schema":"\"string\""}"#,
        ),
        (
            reqwest::Method::PUT,
            "/config",
            r#"{"compatibility":"NONE"}"#,
        ),
        (reqwest::Method::PUT, "/mode", r#"{"mode":"READONLY"}"#),
    ] {
        let response = r
            .client
            .request(method.clone(), format!("{}{path}", r.url))
            .body(body)
            .send()
            .await?;
        assert_eq!(response.status().as_u16(), 415, "{method} {path}");
        let answer: Value = response.json().await?;
        assert_eq!(code(&answer), json!(415), "{answer}");
    }
    assert_eq!(r.get("/subjects").await?, (200, json!([])));
    assert_eq!(
        r.get("/config").await?,
        (200, json!({ "compatibilityLevel": "BACKWARD" }))
    );
    assert_eq!(r.get("/mode").await?, (200, json!({ "mode": "READWRITE" })));
    Ok(())
}

#[tokio::test]
async fn a_schema_larger_than_the_limit_is_refused_naming_it() -> anyhow::Result<()> {
    let r = TestRegistry::start().await?;
    let doc = "x".repeat(1_200_000);
    let schema = json!({"type": "record", "name": "Big", "doc": doc, "fields": []});
    let (status, body) = r
        .post(
            "/subjects/big/versions",
            json!({ "schema": schema.to_string() }),
        )
        .await?;
    assert_eq!((status, code(&body)), (422, json!(42201)), "{status}");
    let message = body["message"].as_str().unwrap_or("");
    assert!(message.contains("262144"), "{message}");
    assert!(
        message.contains("SCHEMA_REGISTRY_MAX_SCHEMA_BYTES"),
        "{message}"
    );
    let (status, _) = r.get("/subjects/big/versions").await?;
    assert_eq!(status, 404);
    Ok(())
}

#[tokio::test]
async fn a_record_the_broker_refuses_as_too_large_is_a_422() -> anyhow::Result<()> {
    // A limit set above what Kafka takes (1 MB by default): the producer refuses the record.
    let r = TestRegistry::start_with(testkit::Broker::start()?, |settings| {
        settings.max_schema_bytes = 4 * 1024 * 1024;
        settings.max_request_bytes = 8 * 1024 * 1024;
    })
    .await?;
    let doc = "x".repeat(1_200_000);
    let schema = json!({"type": "record", "name": "Big", "doc": doc, "fields": []});
    let (status, body) = r
        .post(
            "/subjects/big/versions",
            json!({ "schema": schema.to_string() }),
        )
        .await?;
    assert_eq!((status, code(&body)), (422, json!(42201)), "{body}");
    assert!(
        body["message"].as_str().unwrap_or("").contains("too large"),
        "{body}"
    );
    // The registry still works.
    r.register("small", "\"string\"").await?;
    Ok(())
}

#[tokio::test]
async fn a_body_over_the_limit_gets_a_json_413() -> anyhow::Result<()> {
    let r = TestRegistry::start().await?;
    let body = format!(r#"{{"schema":"{}"}}"#, "x".repeat(3 * 1024 * 1024));
    let response = r
        .client
        .post(format!("{}/subjects/s/versions", r.url))
        .header("Content-Type", V1)
        .body(body)
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 413);
    let answer: Value = response.json().await?;
    assert_eq!(code(&answer), json!(413), "{answer}");
    assert!(
        answer["message"].as_str().unwrap_or("").contains("2097152"),
        "{answer}"
    );
    Ok(())
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() -> anyhow::Result<()> {
    let r = TestRegistry::start().await?;
    let (status, body) = r.get("/no/such/route").await?;
    assert_eq!((status, code(&body)), (404, json!(404)));
    for (method, path) in [
        (reqwest::Method::PATCH, "/subjects"),
        (reqwest::Method::PUT, "/schemas/types"),
        (reqwest::Method::POST, "/config"),
    ] {
        let (status, body) = r.call(method.clone(), path, Some(json!({}))).await?;
        assert_eq!((status, code(&body)), (405, json!(405)), "{method} {path}");
    }
    Ok(())
}
