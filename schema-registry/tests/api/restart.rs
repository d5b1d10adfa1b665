//! The topic is the registry's only storage: a new instance, or a restarted broker, loses nothing.

use crate::common::{record, TestRegistry};
use serde_json::json;

const F_ID: &str = r#"{"name":"id","type":"string"}"#;
const F_QTY_DEFAULT: &str = r#"{"name":"qty","type":"int","default":1}"#;

async fn snapshot(r: &TestRegistry) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut seen = vec![];
    for path in [
        "/subjects?deleted=true",
        "/subjects/a/versions?deleted=true",
        "/subjects/a/versions/1?deleted=true",
        "/subjects/a/versions/2",
        "/subjects/b/versions/1",
        "/config",
        "/config/a",
        "/mode",
        "/schemas/ids/1",
        "/schemas/ids/2",
    ] {
        seen.push(json!({ "path": path, "answer": r.get(path).await? }));
    }
    Ok(seen)
}

#[tokio::test]
async fn a_restarted_registry_keeps_ids_versions_and_config() -> anyhow::Result<()> {
    let r = TestRegistry::start().await?;
    r.register("a", &record("A", &[F_ID])).await?;
    r.register("a", &record("A", &[F_ID, F_QTY_DEFAULT]))
        .await?;
    r.register("b", &record("A", &[F_ID])).await?;
    r.put("/config", json!({ "compatibility": "FULL" })).await?;
    r.put("/config/a", json!({ "compatibility": "NONE" }))
        .await?;
    r.delete("/subjects/a/versions/1").await?;
    let before = snapshot(&r).await?;

    // A new registry process on the same topic.
    let broker = r.stop();
    let r = TestRegistry::start_on(broker).await?;
    assert_eq!(snapshot(&r).await?, before);

    // The broker itself restarts (SQLite storage), then a new registry replays.
    let mut broker = r.stop();
    broker.restart()?;
    let r = TestRegistry::start_on(broker).await?;
    assert_eq!(snapshot(&r).await?, before);

    // And the id sequence goes on where it was.
    assert_eq!(r.register("c", &record("C", &[F_ID])).await?, 3);
    Ok(())
}

#[tokio::test]
async fn two_instances_on_one_topic_never_hand_out_one_id_twice() -> anyhow::Result<()> {
    let first = TestRegistry::start().await?;
    let broker_address = first.broker.bootstrap_servers();
    let second =
        schema_registry::spawn(schema_registry::Settings::for_tests(&broker_address)).await?;
    let second_url = second.url().to_string();

    // Both register different schemas at the same time, many times.
    let mut tasks = vec![];
    for i in 0..20 {
        let url = if i % 2 == 0 {
            first.url.clone()
        } else {
            second_url.clone()
        };
        let client = first.client.clone();
        tasks.push(tokio::spawn(async move {
            let schema = record(&format!("R{i}"), &[F_ID]);
            let response = client
                .post(format!("{url}/subjects/s{i}/versions"))
                .json(&json!({ "schema": schema }))
                .send()
                .await?;
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await?;
            anyhow::ensure!(status == 200, "{status} {body}");
            Ok::<_, anyhow::Error>((i, body["id"].as_u64().unwrap_or(0)))
        }));
    }
    let mut ids = std::collections::BTreeMap::new();
    for task in tasks {
        let (i, id) = task.await??;
        ids.insert(id, i);
    }
    assert_eq!(ids.len(), 20, "every schema got its own id: {ids:?}");
    // And each instance reads every id back as the schema that was registered with it.
    for (id, i) in &ids {
        let (_, body) = first.get(&format!("/schemas/ids/{id}")).await?;
        assert!(
            body["schema"]
                .as_str()
                .unwrap_or("")
                .contains(&format!("\"R{i}\"")),
            "id {id}: {body}"
        );
    }
    drop(second);
    Ok(())
}
