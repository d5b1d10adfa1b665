//! Spawns a real Tansu broker and the registry on free ports, as the binary would run.

#![allow(dead_code)]

use schema_registry::{Running, Settings};
use serde_json::Value;
use testkit::Broker;

pub const V1: &str = "application/vnd.schemaregistry.v1+json";

pub struct TestRegistry {
    pub broker: Broker,
    pub url: String,
    pub client: reqwest::Client,
    server: Running,
}

impl TestRegistry {
    pub async fn start() -> anyhow::Result<TestRegistry> {
        let broker = Broker::start()?;
        Self::start_on(broker).await
    }

    /// Starts a registry on an existing broker (for restart tests).
    pub async fn start_on(broker: Broker) -> anyhow::Result<TestRegistry> {
        Self::start_with(broker, |_| {}).await
    }

    /// Starts a registry on `broker` with the test settings changed by `adjust`.
    pub async fn start_with(
        broker: Broker,
        adjust: impl FnOnce(&mut Settings),
    ) -> anyhow::Result<TestRegistry> {
        let mut settings = Settings::for_tests(&broker.bootstrap_servers());
        adjust(&mut settings);
        let server = schema_registry::spawn(settings).await?;
        let url = server.url().to_string();
        Ok(TestRegistry {
            broker,
            url,
            client: reqwest::Client::new(),
            server,
        })
    }

    /// Stops the HTTP server and hands the broker back.
    pub fn stop(self) -> Broker {
        drop(self.server);
        self.broker
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut request = self
            .client
            .request(method, format!("{}{}", self.url, path))
            .header("Accept", V1);
        if let Some(body) = body {
            request = request
                .header("Content-Type", V1)
                .body(serde_json::to_vec(&body)?);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{path}: not JSON ({e}): {text}"))?
        };
        Ok((status, value))
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<(u16, Value)> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> anyhow::Result<(u16, Value)> {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        self.call(reqwest::Method::DELETE, path, None).await
    }

    /// Registers `schema` under `subject` and returns the id, failing on anything but 200.
    pub async fn register(&self, subject: &str, schema: &str) -> anyhow::Result<u64> {
        let (status, body) = self
            .post(
                &format!("/subjects/{subject}/versions"),
                serde_json::json!({ "schema": schema }),
            )
            .await?;
        anyhow::ensure!(status == 200, "register {subject}: {status} {body}");
        body["id"]
            .as_u64()
            .ok_or_else(|| anyhow::anyhow!("no id in {body}"))
    }
}

/// A record schema with the given fields (JSON text of each field).
pub fn record(name: &str, fields: &[&str]) -> String {
    format!(
        r#"{{"type":"record","name":"{name}","namespace":"test","fields":[{}]}}"#,
        fields.join(",")
    )
}
