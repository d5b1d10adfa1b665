//! OrderService: consumes `order-events` into a durable, queryable view.
//!
//! Every replica reads every partition of the topic (no consumer group), decodes the
//! Confluent-framed Avro records through the Schema Registry, and applies them to a SQLite
//! view in batches, storing the consumed offsets in the same transaction, so a crash never
//! applies a record twice or skips one. Records that can never be applied go to the
//! dead-letter topic; records of a CartService instance that lost its partition (fenced,
//! `order_events::fencing`) are skipped. The HTTP API reads the view (with read-your-writes waiting) and can scan
//! the topic itself.
//!
//! Map: [`settings`] (configuration), [`domain`] (shipping cost), [`store`] (SQLite),
//! [`connection`] (noticing clients that went away),
//! [`consumer`] (the apply loop), [`fence`] (which of CartService's records count),
//! [`dlq`] (dead letters), [`waiters`] (read-your-writes),
//! [`topic_scan`] (reading a topic's keys), Kafka clients from `service_kit::kafka`, [`metrics`],
//! [`routes`] (HTTP), [`openapi`] (the API document and Swagger UI).
//!
//! The consumer runs on its own task, watched by [`Application::run_until_stopped`]: if it
//! ends while the service runs, `/ready` answers 503 with the reason and `consumer_up` is 0;
//! if it panicked, the binary exits non-zero (a supervisor restarts it) instead of serving a
//! view that no longer moves. [`spawn`] (tests, embedding) keeps serving instead, so the
//! state can be observed.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::web::{self, Data};
use actix_web::{App, HttpServer};
use anyhow::Context;
use order_events::OrderEventCodec;
use service_kit::metrics::Metrics;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub(crate) mod connection;
pub(crate) mod consumer;
pub(crate) mod dlq;
pub(crate) mod domain;
pub(crate) mod fence;
pub(crate) mod metrics;
pub(crate) mod openapi;
pub(crate) mod routes;
pub(crate) mod settings;
pub mod store;
pub(crate) mod topic_scan;
pub(crate) mod waiters;

pub use settings::Settings;

use consumer::{ConsumerEnd, ConsumerState, Pipeline};
use dlq::DeadLetters;
use metrics::{ConsumerMetrics, TopicScanMetrics};
use routes::AppState;
use store::Store;
use topic_scan::{ScanLimits, Scanner};
use waiters::Waiters;

/// The built service: the view opened, the listener bound, the consumer started.
pub struct Application {
    port: u16,
    server: Server,
    consumer: JoinHandle<ConsumerEnd>,
    consumer_state: Arc<ConsumerState>,
    stop: watch::Sender<bool>,
    dead_letters: Arc<DeadLetters>,
    store: Arc<Store>,
}

/// What the service does when its consumer task panics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnConsumerPanic {
    /// Stop serving and return an error (the binary then exits non-zero).
    Exit,
    /// Keep serving, not ready (tests observe `/ready` and the state).
    KeepServing,
}

impl Application {
    /// Opens the view, starts the consumer (which connects in the background and makes `/ready`
    /// answer 200 once every partition is assigned), binds the listener and builds the server.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let allowed = settings
            .topic_scan_allowed()
            .context("invalid TOPIC_SCAN_ALLOWED")?;
        let store = Arc::new(Store::open(&settings.data_dir)?);
        let kafka = settings.kafka.resolve()?;
        let registry = settings
            .registry
            .resolve()
            .context("Schema Registry settings")?
            .with_timeout(Duration::from_millis(settings.schema_registry_timeout_ms));
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
        let scan_metrics = TopicScanMetrics::register(&metrics)?;
        let waiters = Waiters::new();
        let state = Arc::new(ConsumerState::new(
            settings.consumer_stall_timeout(),
            consumer_metrics.consumer_up.clone(),
        ));
        let scanner = Scanner::new(
            kafka.clone(),
            allowed,
            ScanLimits {
                fetch_wait_max_ms: settings.kafka_fetch_wait_max_ms,
                timeout: settings.topic_scan_timeout(),
                max_keys: usize::try_from(settings.topic_scan_max_keys).unwrap_or(usize::MAX),
            },
            usize::try_from(settings.topic_scan_max_concurrent).unwrap_or(1),
            scan_metrics,
        );

        let probe = Arc::new(
            kafka
                .client("the readiness probe client")
                .tuning("group.id", "order-service-probe")
                .create()?,
        );
        let app_state = Data::new(AppState {
            store: Arc::clone(&store),
            waiters: Arc::clone(&waiters),
            consumer: Arc::clone(&state),
            topic: settings.kafka_topic.clone(),
            scanner,
            probe,
            codec: Arc::clone(&codec),
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
            state: Arc::clone(&state),
            dlq_max_attempts: settings.dlq_publish_max_attempts,
            #[cfg(feature = "fault-injection")]
            fault_panic_on_key: settings.fault_panic_on_key.clone(),
        };
        let consumer = tokio::spawn(pipeline.run(stop_rx));
        Ok(Application {
            port,
            server: server.1,
            consumer,
            consumer_state: state,
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

    /// What the HTTP side sees of the consumer (assignment, offsets, health).
    pub fn consumer_state(&self) -> Arc<ConsumerState> {
        Arc::clone(&self.consumer_state)
    }

    /// Serves until SIGINT/SIGTERM; then stops fetching, lets the batch in progress commit,
    /// flushes the dead-letter producer and returns. If the consumer task panics, stops
    /// serving and returns an error (so the binary exits non-zero); if it fails otherwise,
    /// keeps serving reads, not ready.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run(OnConsumerPanic::Exit).await
    }

    /// [`run_until_stopped`](Self::run_until_stopped) with a choice of what a consumer panic
    /// does.
    pub async fn run(self, on_panic: OnConsumerPanic) -> anyhow::Result<()> {
        let Application {
            mut server,
            mut consumer,
            consumer_state,
            stop,
            dead_letters,
            ..
        } = self;
        let server_handle = server.handle();
        let served = tokio::select! {
            served = &mut server => Some(served),
            joined = &mut consumer => {
                let why = match consumer_ended(joined, &consumer_state) {
                    Some(End::Panicked(message)) if on_panic == OnConsumerPanic::Exit => {
                        Some(format!("the consumer task panicked: {message}"))
                    }
                    Some(End::Misconfigured(reason)) => Some(format!("cannot consume: {reason}")),
                    _ => None,
                };
                match why {
                    Some(why) => {
                        tracing::error!(reason = why, "stopping the service");
                        // The server future must be polled for the stop to complete.
                        let _ = tokio::join!(server_handle.stop(true), &mut server);
                        flush(dead_letters).await?;
                        anyhow::bail!(why);
                    }
                    None => None,
                }
            }
        };
        let served = match served {
            Some(served) => {
                tracing::info!("HTTP server stopped; stopping the consumer");
                let _ = stop.send(true);
                match consumer.await {
                    Ok(ConsumerEnd::Stopped) => {}
                    Ok(ConsumerEnd::Failed(reason) | ConsumerEnd::Misconfigured(reason)) => {
                        tracing::error!(%reason, "the consumer had failed");
                    }
                    Err(e) => tracing::error!(error = %e, "the consumer task failed"),
                }
                served
            }
            // The consumer ended first; serve reads (not ready) until asked to stop.
            None => server.await,
        };
        flush(dead_letters).await?;
        tracing::info!("order-service stopped");
        served.context("the HTTP server failed")
    }
}

/// How the consumer ended, when that should stop the service.
enum End {
    Panicked(String),
    Misconfigured(String),
}

/// Records in the state how the consumer task ended while the service was running; whether
/// that should stop the service.
fn consumer_ended(
    joined: Result<ConsumerEnd, tokio::task::JoinError>,
    state: &ConsumerState,
) -> Option<End> {
    match joined {
        Ok(ConsumerEnd::Failed(reason)) => {
            tracing::error!(%reason, "the consumer failed; the service is not ready");
            state.mark_ended(reason);
            None
        }
        Ok(ConsumerEnd::Stopped) => {
            state.mark_ended("the consumer stopped");
            None
        }
        Ok(ConsumerEnd::Misconfigured(reason)) => {
            state.mark_ended(reason.clone());
            Some(End::Misconfigured(reason))
        }
        Err(e) if e.is_panic() => {
            let payload = e.into_panic();
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "(no message)".to_owned());
            tracing::error!(panic = %message, "the consumer task panicked");
            state.mark_ended(format!("the consumer task panicked: {message}"));
            Some(End::Panicked(message))
        }
        Err(e) => {
            tracing::error!(error = %e, "the consumer task was cancelled");
            state.mark_ended(format!("the consumer task was cancelled: {e}"));
            None
        }
    }
}

/// Waits for outstanding dead letters (at shutdown).
async fn flush(dead_letters: Arc<DeadLetters>) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || dead_letters.flush(Duration::from_secs(10)))
        .await
        .context("the flush task failed")?
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
            .wrap(from_fn(service_kit::surface::observe))
            .configure(routes::configure)
            .service(openapi::swagger_ui())
            .route("/docs", web::get().to(service_kit::surface::docs_redirect))
            .default_service(web::to(service_kit::http_error::not_found))
    })
    .on_connect(connection::on_connect)
    .listen(listener)
    .context("starting the HTTP server")?
    .shutdown_timeout(service_kit::surface::SHUTDOWN_GRACE_SECS)
    .run();
    Ok((port, server))
}

/// A service running on tasks of this process (for tests); stops when dropped. A consumer
/// panic leaves it serving, not ready ([`OnConsumerPanic::KeepServing`]).
pub struct Running {
    server: service_kit::Spawned<anyhow::Result<()>>,
    store: Arc<Store>,
    consumer: Arc<ConsumerState>,
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

    /// The consumer's state: whether it ended (and why), its health.
    pub fn consumer(&self) -> &Arc<ConsumerState> {
        &self.consumer
    }
}

/// Builds the service and serves it on a tokio task of the current runtime.
pub async fn spawn(settings: Settings) -> anyhow::Result<Running> {
    let app = Application::build(settings).await?;
    let store = app.store();
    let state = app.consumer_state();
    let consumer = app.consumer.abort_handle();
    let server = service_kit::Spawned::new(app.port(), async move {
        // Aborting this task drops the server; the consumer is aborted with it.
        let _guard = AbortOnDrop(consumer);
        app.run(OnConsumerPanic::KeepServing).await
    });
    Ok(Running {
        server,
        store,
        consumer: state,
    })
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
