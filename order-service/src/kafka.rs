//! Kafka plumbing shared by the consumer, the dead-letter producer and the topic scan: client
//! configuration, topic metadata, and creating the topics the service relies on.
//!
//! Why a module: every client must get the same bootstrap servers and pass-through properties
//! (SASL/TLS), and Tansu does not auto-create topics, so the service creates what it needs at
//! start-up through the admin API.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{Client, ClientContext, DefaultClientContext};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::ClientConfig;

/// How to reach Kafka: servers and pass-through properties.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    pub bootstrap_servers: String,
    pub properties: Vec<(String, String)>,
}

impl KafkaConfig {
    /// A client configuration with the servers, the service's `extra` settings, and then the
    /// pass-through properties (which win, so operators can override any tuning).
    pub fn client(&self, extra: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap_servers);
        for (key, value) in extra {
            config.set(*key, *value);
        }
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }
}

/// What the metadata says about a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicState {
    Missing,
    Partitions(i32),
}

/// Looks a topic up in the cluster metadata (blocking; call from a blocking context).
pub fn topic_state<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    timeout: Duration,
) -> anyhow::Result<TopicState> {
    let metadata = client
        .fetch_metadata(Some(topic), timeout)
        .context("fetching the cluster metadata")?;
    let state = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .and_then(|t| {
            if t.error().is_none() && !t.partitions().is_empty() {
                i32::try_from(t.partitions().len()).ok()
            } else {
                None
            }
        })
        .map_or(TopicState::Missing, TopicState::Partitions);
    Ok(state)
}

/// Creates `topic` with `partitions` unless it exists; returns its partition count.
pub async fn ensure_topic(
    config: &KafkaConfig,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> anyhow::Result<i32> {
    // The metadata lookup below must not make a broker that auto-creates topics create this
    // one with its own default partition count (librdkafka allows that for non-consumers).
    let admin: Arc<AdminClient<DefaultClientContext>> = Arc::new(
        config
            .client(&[("allow.auto.create.topics", "false")])
            .create()
            .context("creating an admin client")?,
    );
    let servers = config.bootstrap_servers.clone();
    let probe = Arc::clone(&admin);
    let name = topic.to_owned();
    let (state, brokers) = tokio::task::spawn_blocking(move || {
        let brokers = probe
            .inner()
            .fetch_metadata(None, timeout)
            .map(|m| m.brokers().len())
            .with_context(|| format!("cannot reach Kafka at {servers}"))?;
        topic_state(probe.inner(), &name, timeout).map(|s| (s, brokers))
    })
    .await
    .context("the metadata task failed")??;
    if let TopicState::Partitions(n) = state {
        return Ok(n);
    }
    let replication = i32::try_from(brokers.clamp(1, 3)).unwrap_or(1);
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
    let options = AdminOptions::new().operation_timeout(Some(timeout));
    let results = admin
        .create_topics([&new_topic], &options)
        .await
        .with_context(|| format!("creating topic {topic}"))?;
    for result in results {
        match result {
            Ok(_) => tracing::info!(topic, partitions, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => anyhow::bail!("creating topic {name}: {code}"),
        }
    }
    // Another service may have created it first, with another partition count.
    let name = topic.to_owned();
    match tokio::task::spawn_blocking(move || topic_state(admin.inner(), &name, timeout))
        .await
        .context("the metadata task failed")??
    {
        TopicState::Partitions(n) => Ok(n),
        TopicState::Missing => Ok(partitions),
    }
}
