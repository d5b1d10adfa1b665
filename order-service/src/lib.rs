//! OrderService: consumes `order-events` into a durable, queryable view.
//!
//! Every replica reads every partition of the topic (no consumer group), decodes the
//! Confluent-framed Avro records through the Schema Registry, and applies them to a SQLite
//! view in batches, storing the consumed offsets in the same transaction, so a crash never
//! applies a record twice or skips one. Records that can never be applied go to the
//! dead-letter topic. The HTTP API reads the view (with read-your-writes waiting) and can scan
//! the topic itself.
//!
//! Map: [`settings`] (configuration), [`domain`] (shipping cost), [`store`] (SQLite),
//! [`consumer`] (the apply loop), [`dlq`] (dead letters), [`waiters`] (read-your-writes),
//! [`topic_scan`] (reading a topic's keys), [`kafka`] (client plumbing), [`metrics`],
//! [`routes`] (HTTP), [`openapi`] (the API document and Swagger UI).

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::web::{self, Data};
use actix_web::{App, HttpServer};
use anyhow::Context;
use order_events::{OrderEventCodec, RegistryConfig};
use service_kit::metrics::{record_http, Metrics};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub mod consumer;
pub mod dlq;
pub mod domain;
pub mod kafka;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod settings;
pub mod store;
pub mod topic_scan;
pub mod waiters;

pub use settings::Settings;

use consumer::{ConsumerState, Pipeline};
use dlq::DeadLetters;
use kafka::KafkaConfig;
use metrics::ConsumerMetrics;
use routes::AppState;
use store::Store;
use waiters::Waiters;

/// The built service: the view opened, the listener bound, the consumer started.
pub struct Application {
    port: u16,
    server: Server,
    consumer: JoinHandle<()>,
    stop: watch::Sender<bool>,
    dead_letters: Arc<DeadLetters>,
    store: Arc<Store>,
}

impl Application {
    /// Opens the view, starts the consumer (which connects in the background and makes `/ready`
    /// answer 200 once every partition is assigned), binds the listener and builds the server.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let store = Arc::new(Store::open(&settings.data_dir)?);
        let kafka = KafkaConfig {
            bootstrap_servers: settings.kafka_bootstrap_servers.clone(),
            properties: service_kit::kafka_properties(&settings.kafka_properties)?,
        };
        let mut registry = RegistryConfig::new(settings.schema_registry_url.clone())
            .with_timeout(Duration::from_millis(settings.schema_registry_timeout_ms));
        if is_loopback(&settings.schema_registry_url) {
            registry = registry.without_proxy();
        }
        let codec = Arc::new(
            OrderEventCodec::new(&registry, settings.kafka_topic.clone())
                .context("configuring the schema registry client")?,
        );
        let dead_letters = Arc::new(DeadLetters::new(&kafka, &settings.kafka_dlq_topic)?);
        let metrics = Metrics::new()?;
        let consumer_metrics = ConsumerMetrics::register(&metrics)?;
        consumer_metrics
            .applied_total
            .set(store.counter(store::APPLIED_TOTAL)?);
        let waiters = Waiters::new();
        let state = Arc::new(ConsumerState::default());

        let probe = Arc::new(
            kafka
                .client(&[("group.id", "order-service-probe")])
                .create()
                .context("creating the readiness probe client")?,
        );
        let mut http = reqwest::Client::builder();
        if is_loopback(&settings.schema_registry_url) {
            http = http.no_proxy();
        }
        let app_state = Data::new(AppState {
            store: Arc::clone(&store),
            waiters: Arc::clone(&waiters),
            consumer: Arc::clone(&state),
            kafka: kafka.clone(),
            topic: settings.kafka_topic.clone(),
            fetch_wait_max_ms: settings.kafka_fetch_wait_max_ms,
            topic_scan_timeout: settings.topic_scan_timeout(),
            probe,
            registry_url: settings.schema_registry_url.clone(),
            http: http.build().context("creating the HTTP client")?,
        });

        let listener = service_kit::bind(&settings.api_host, settings.api_port)?;
        let server = serve(listener, app_state, metrics)?;
        let port = server.0;

        let (stop, stop_rx) = watch::channel(false);
        let pipeline = Pipeline {
            kafka,
            topic: settings.kafka_topic.clone(),
            topic_partitions: settings.kafka_topic_partitions,
            fetch_wait_max_ms: settings.kafka_fetch_wait_max_ms,
            batch_size: settings.apply_batch_size,
            backoff_max: settings.retry_backoff_max(),
            codec,
            dead_letters: Arc::clone(&dead_letters),
            store: Arc::clone(&store),
            waiters,
            metrics: consumer_metrics,
            state,
        };
        let consumer = tokio::spawn(pipeline.run(stop_rx));
        Ok(Application {
            port,
            server: server.1,
            consumer,
            stop,
            dead_letters,
            store,
        })
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The view (for tests and tools).
    pub fn store(&self) -> Arc<Store> {
        Arc::clone(&self.store)
    }

    /// Serves until SIGINT/SIGTERM; then stops fetching, lets the batch in progress commit,
    /// flushes the dead-letter producer and returns.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let served = self.server.await;
        tracing::info!("HTTP server stopped; stopping the consumer");
        let _ = self.stop.send(true);
        if let Err(e) = self.consumer.await {
            tracing::error!(error = %e, "the consumer task failed");
        }
        let dead_letters = self.dead_letters;
        tokio::task::spawn_blocking(move || dead_letters.flush(Duration::from_secs(10)))
            .await
            .context("the flush task failed")??;
        tracing::info!("order-service stopped");
        served.context("the HTTP server failed")
    }
}

fn serve(
    listener: TcpListener,
    state: Data<AppState>,
    metrics: Metrics,
) -> anyhow::Result<(u16, Server)> {
    let port = listener
        .local_addr()
        .context("reading the bound port")?
        .port();
    let metrics = Data::new(metrics);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(metrics.clone())
            .app_data(service_kit::http_error::query_config())
            .wrap(from_fn(record_http))
            .wrap(actix_web::middleware::Logger::new("%r %s %Dms").log_target("http"))
            .configure(routes::configure)
            .service(openapi::swagger_ui())
            .route(
                "/docs",
                web::get().to(|| async {
                    actix_web::HttpResponse::PermanentRedirect()
                        .insert_header(("Location", "/docs/"))
                        .finish()
                }),
            )
            .default_service(web::to(service_kit::http_error::not_found))
    })
    .listen(listener)
    .context("starting the HTTP server")?
    .shutdown_timeout(10)
    .run();
    Ok((port, server))
}

/// Whether a URL points at this machine (then proxies from the environment are ignored).
fn is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let host = rest.split(['/', ':']).next().unwrap_or_default();
    matches!(host, "localhost" | "127.0.0.1") || rest.starts_with("[::1]")
}

/// A service running on tasks of this process (for tests); stops when dropped.
pub struct Running {
    server: service_kit::Spawned<anyhow::Result<()>>,
    store: Arc<Store>,
}

impl Running {
    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        self.server.url()
    }

    /// The view.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }
}

/// Builds the service and serves it on a tokio task of the current runtime.
pub async fn spawn(settings: Settings) -> anyhow::Result<Running> {
    let app = Application::build(settings).await?;
    let store = app.store();
    let consumer = app.consumer.abort_handle();
    let server = service_kit::Spawned::new(app.port(), async move {
        // Aborting this task drops the server; the consumer is aborted with it.
        let _guard = AbortOnDrop(consumer);
        app.run_until_stopped().await
    });
    Ok(Running { server, store })
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls_are_recognized() {
        assert!(is_loopback("http://127.0.0.1:8081"));
        assert!(is_loopback("http://localhost/x"));
        assert!(is_loopback("http://[::1]:8081"));
        assert!(!is_loopback("https://registry.example.com"));
    }
}
