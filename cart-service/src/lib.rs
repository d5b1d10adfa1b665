//! CartService: validated orders, published as Avro records keyed by `orderId`.
//!
//! A create or update is answered only after the broker acknowledged the record (acks=all,
//! idempotent producer) and the log showed that it counts, so a client that hears "created" can
//! trust the order is in Kafka exactly as answered. Kafka is the system of record: the order
//! index on disk (`store`, under `DATA_DIR`) is a projection of the topic, kept by `follow` with
//! its offsets, and the service answers ready only once the index has read the topic up to its
//! end as of start-up, so 409/404 and updates are right after any restart; a restart reads only
//! what was written after the index's checkpoint.
//!
//! Several instances share the topic: each partition has one writer at a time (`own`: a
//! consumer group assigns partitions, a claim in the log makes an instance their owner,
//! `order_events::fencing` makes a former owner's late writes count for nobody), and a request
//! for an order owned elsewhere is forwarded there (`routes::forward`). One instance alone owns
//! every partition.
//!
//! The crate exposes [`Settings`], [`Application`] (what `main` runs) and [`spawn`]/[`Running`]
//! (tests and embedding); everything else is private to it.
//!
//! Map: `settings`, `request` (bodies → commands: shape, `validator` rules, domain newtypes),
//! `generate` (what the client left out), `orders` (per-order locks and what the index does
//! not hold yet), `store` (the order index), `follow` (the topic into the index, claims, verdicts),
//! `own` (partition ownership and the owner map), `kafka`
//! (publishing), `routes` (HTTP: the shared `AppState`, handlers, `dto` for
//! the bodies read and answered), `openapi` (the documented API). The operations surface
//! (`/health`, `/ready`, `/metrics`, `/docs`, request IDs, access log, HTTP metrics, shutdown
//! grace) is `service_kit::surface`, shared with the other services.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::web::{self, Data};
use actix_web::{App, HttpServer};
use anyhow::Context;
use order_events::{Currency, OrderEventCodec};
use rdkafka::consumer::BaseConsumer;
use service_kit::kafka::{KafkaContext, KafkaSettings};
use service_kit::metrics::Metrics;
use service_kit::surface;
use tokio::sync::watch;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

mod follow;
mod generate;
mod kafka;
mod openapi;
mod orders;
mod own;
mod request;
mod routes;
mod settings;
mod store;

pub use settings::Settings;

use routes::AppState;

/// The built service: a bound listener and a server ready to run.
pub struct Application {
    port: u16,
    server: Server,
    state: Data<AppState>,
    /// Set when start-up met a problem retrying cannot fix (a certificate or credentials the
    /// cluster or registry refused); the service then stops with it.
    fatal: watch::Receiver<Option<String>>,
    /// Dropped when the service ends: the order index follower stops with it.
    _alive: watch::Sender<()>,
}

impl Application {
    /// Binds the listener and starts loading state in the background (`/ready` tells when done).
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let currencies = settings
            .order_currencies
            .iter()
            .map(|code| Currency::parse(code.trim()))
            .collect::<Result<Vec<_>, _>>()
            .context("ORDER_CURRENCIES must be ISO 4217 codes")?;
        anyhow::ensure!(!currencies.is_empty(), "ORDER_CURRENCIES is empty");
        let kafka = settings.kafka.resolve()?;
        let listener = service_kit::bind(&settings.api_host, settings.api_port)?;
        let port = listener
            .local_addr()
            .context("reading the bound port")?
            .port();
        let advertised = settings.cart_advertised_url.clone().unwrap_or_else(|| {
            let host = match settings.api_host.as_str() {
                "0.0.0.0" | "::" | "[::]" => "127.0.0.1",
                host => host,
            };
            format!("http://{host}:{port}")
        });
        let metrics = Metrics::new()?;
        let publish_metrics = kafka::PublishMetrics::register(metrics.registry())?;
        let timeout = settings.publish_timeout();
        let publisher = Arc::new(kafka::Publisher::new(
            &kafka,
            &settings.kafka_topic,
            timeout,
            settings.kafka_linger_ms,
            publish_metrics,
        )?);
        let registry = settings
            .registry
            .resolve()
            .context("Schema Registry settings")?
            .with_timeout(timeout);
        let codec = Arc::new(OrderEventCodec::new(
            &registry,
            settings.kafka_topic.clone(),
        )?);
        let store = Arc::new(store::Store::open(&settings.data_dir)?);
        let progress = Arc::new(follow::Progress::default());
        let follow_metrics = follow::FollowMetrics::register(metrics.registry())?;
        let ownership = Arc::new(own::Ownership::new(
            advertised.trim_end_matches('/').to_string(),
            own::OwnMetrics::register(metrics.registry())?,
        ));
        let in_memory = prometheus::IntGauge::new(
            "cart_orders_in_memory",
            "Orders held in memory: being changed, or written and not yet in the order index",
        )?;
        metrics.registry().register(Box::new(in_memory.clone()))?;
        let (written, written_rx) = tokio::sync::mpsc::unbounded_channel();
        let (commands, commands_rx) = tokio::sync::mpsc::unbounded_channel();
        let inbox = Arc::new(tokio::sync::Mutex::new(follow::Inbox {
            written: written_rx,
            commands: commands_rx,
        }));
        let pinger: BaseConsumer<KafkaContext> =
            kafka.client("the broker health client").create()?;
        // A forwarded request waits for the owner's publish, bounded by the same timeout.
        let forwarder = reqwest::Client::builder()
            .timeout(timeout + Duration::from_secs(2))
            .connect_timeout(Duration::from_secs(2))
            // Idle connections to other instances are dropped before the owner's keep-alive
            // (actix-web's 5 s) can close them under a request being sent: such a request
            // fails, and a create cannot be retried blindly.
            .pool_idle_timeout(Duration::from_secs(2))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("building the forwarding client")?;
        let state = Data::new(AppState {
            orders: Arc::new(orders::Orders::new(Arc::clone(&progress))),
            store,
            progress,
            partitions: 0.into(),
            written,
            publisher,
            codec,
            currencies,
            pinger,
            metrics,
            in_memory,
            ownership,
            forwarder,
            loading: Mutex::new(Some("starting".to_string())),
        });
        let (fatal_tx, fatal) = watch::channel(None);
        let (alive, alive_rx) = watch::channel(());
        let wiring = Wiring {
            metrics: follow_metrics,
            inbox,
            commands,
        };
        tokio::spawn(start_up(
            state.clone(),
            kafka,
            settings.clone(),
            wiring,
            alive_rx,
            fatal_tx,
        ));

        let server_state = state.clone();
        let max_body = settings.max_body_bytes;
        let server = HttpServer::new(move || {
            App::new()
                .app_data(server_state.clone())
                .app_data(Data::new(server_state.metrics.clone()))
                .app_data(service_kit::http_error::json_config(max_body))
                .app_data(web::PayloadConfig::new(max_body))
                .app_data(service_kit::http_error::query_config())
                .wrap(from_fn(surface::observe))
                .configure(routes::configure)
                .service(
                    SwaggerUi::new("/docs/{_:.*}")
                        .url("/api-docs/openapi.json", openapi::ApiDoc::openapi()),
                )
                .default_service(web::to(service_kit::http_error::not_found))
        })
        .listen(listener)
        .context("starting the HTTP server")?
        .shutdown_timeout(surface::SHUTDOWN_GRACE_SECS)
        .run();
        Ok(Application {
            port,
            server,
            state,
            fatal,
            _alive: alive,
        })
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGINT/SIGTERM: stops accepting, finishes in-flight requests (each waits
    /// for its acknowledgement), flushes the producer, then leaves the partition group. Returns an error, after stopping
    /// the server, when start-up met a problem that retrying cannot fix.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Application {
            mut server,
            state,
            mut fatal,
            _alive,
            ..
        } = self;
        let handle = server.handle();
        let fatal_reason = async move {
            loop {
                let reason = fatal.borrow_and_update().clone();
                if let Some(reason) = reason {
                    return reason;
                }
                if fatal.changed().await.is_err() {
                    // Start-up finished without a fatal problem: nothing more will come.
                    std::future::pending::<()>().await;
                }
            }
        };
        let result = tokio::select! {
            served = &mut server => served.context("serving HTTP"),
            reason = fatal_reason => {
                let _ = tokio::join!(handle.stop(true), &mut server);
                Err(anyhow::anyhow!("cannot start: {reason}"))
            }
        };
        state.publisher.flush(Duration::from_secs(10));
        // Leave the group before the process ends (its partitions move at once), bounded: a
        // broker that is away cannot hold the shutdown.
        drop(_alive);
        if tokio::time::timeout(Duration::from_secs(5), state.ownership.left())
            .await
            .is_err()
        {
            tracing::warn!("leaving the partition-ownership group took longer than 5 s");
        }
        result
    }
}

/// CartService serving from a task of this process (for tests and embedding); it stops when
/// dropped. `/ready` says when it has loaded its state.
pub type Running = service_kit::Spawned<anyhow::Result<()>>;

/// Builds the service and serves it on a tokio task of the current runtime.
pub async fn spawn(settings: Settings) -> anyhow::Result<Running> {
    let app = Application::build(settings).await?;
    Ok(Running::new(app.port(), app.run_until_stopped()))
}

/// Joins the partition-ownership group and starts reading the owner map, retrying until both
/// started (creating the clients can only fail on settings librdkafka rejects).
async fn join_group(
    state: &AppState,
    kafka: &KafkaSettings,
    settings: &Settings,
    commands: &tokio::sync::mpsc::UnboundedSender<own::Command>,
    alive: &watch::Receiver<()>,
) {
    let membership = own::Membership {
        group_id: settings.cart_group_id.clone(),
        instance_id: settings.cart_instance_id.clone(),
        session_timeout_ms: settings.cart_session_timeout_ms,
    };
    let mut backoff = Duration::from_millis(200);
    state.set_loading(Some("joining the partition-ownership group".into()));
    let mut map_followed = false;
    loop {
        let started = if map_followed {
            Ok(())
        } else {
            own::follow_owner_map(
                kafka,
                &settings.kafka_topic,
                Arc::clone(&state.ownership),
                alive.clone(),
            )
        }
        .and_then(|()| {
            map_followed = true;
            own::join(
                kafka,
                &settings.kafka_topic,
                &membership,
                Arc::clone(&state.ownership),
                commands.clone(),
                alive.clone(),
            )
        });
        match started {
            Ok(()) => return,
            Err(e) => {
                let problem = format!("joining the partition-ownership group: {e:#}");
                tracing::error!(error = problem, "retrying");
                state.set_loading(Some(problem));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// The registry refused our credentials or certificate check, or the schema itself.
fn is_fatal_registry_error(error: &anyhow::Error) -> bool {
    error.chain().any(|e| {
        e.downcast_ref::<order_events::ContractError>()
            .is_some_and(order_events::ContractError::is_fatal)
    })
}

/// What start-up hands the follower and the group member: the follower's metrics, its inbox,
/// and the sender of the group's commands.
struct Wiring {
    metrics: follow::FollowMetrics,
    inbox: Arc<tokio::sync::Mutex<follow::Inbox>>,
    commands: tokio::sync::mpsc::UnboundedSender<own::Command>,
}

/// Creates the topic, registers the schema and brings the order index up to the topic's end,
/// retrying until it works or meets a problem that retrying cannot fix (then `fatal` says
/// which).
async fn start_up(
    state: Data<AppState>,
    kafka: KafkaSettings,
    settings: Settings,
    wiring: Wiring,
    alive: watch::Receiver<()>,
    fatal: watch::Sender<Option<String>>,
) {
    let Wiring {
        metrics,
        inbox,
        commands,
    } = wiring;
    let mut backoff = Duration::from_millis(200);
    let timeout = settings.publish_timeout();
    loop {
        let attempt = async {
            state.set_loading(Some("creating the topic".into()));
            let topic = service_kit::kafka::TopicSpec {
                name: &settings.kafka_topic,
                partitions: settings.kafka_topic_partitions,
                config: &[],
                exact_partitions: false,
            };
            let partitions = service_kit::kafka::ensure_topic(&kafka, &topic, timeout)
                .await
                .context("Kafka broker unreachable")?;
            state.partitions.store(partitions, Ordering::Release);
            // Its own context names the topic (a cluster may refuse to create it).
            own::ensure_owners_topic(&kafka, &settings.kafka_topic, timeout).await?;
            state.set_loading(Some("registering the schema".into()));
            let id = state
                .codec
                .register()
                .await
                .context("Schema Registry unreachable or refused the schema")?;
            let started = std::time::Instant::now();
            let follower = follow::Follower {
                kafka: kafka.clone(),
                topic: settings.kafka_topic.clone(),
                partitions,
                fetch_wait_max_ms: settings.kafka_fetch_wait_max_ms,
                store: Arc::clone(&state.store),
                codec: Arc::clone(&state.codec),
                progress: Arc::clone(&state.progress),
                orders: Arc::clone(&state.orders),
                ownership: Arc::clone(&state.ownership),
                publisher: Arc::clone(&state.publisher),
                metrics: metrics.clone(),
                inbox: Arc::clone(&inbox),
                alive: alive.clone(),
            };
            let (targets, behind) = follower
                .start(timeout)
                .await
                .context("starting to read the topic into the order index")?;
            state.set_loading(Some(format!(
                "reading the topic into the order index ({behind} records after the checkpoint)"
            )));
            state.progress.wait_for(&targets).await;
            // The follower runs from here on: nothing below may fail the attempt (a retry would
            // start a second follower), so what cannot start is retried here, and a count that
            // cannot be read is only logged.
            join_group(&state, &kafka, &settings, &commands, &alive).await;
            state.set_loading(Some(
                "claiming the partitions the group assigned to this instance".into(),
            ));
            state.ownership.wait_settled().await;
            let store = Arc::clone(&state.store);
            let indexed = match tokio::task::spawn_blocking(move || store.len()).await {
                Ok(Ok(indexed)) => indexed,
                Ok(Err(e)) => {
                    tracing::warn!(error = format!("{e:#}"), "counting the order index");
                    0
                }
                Err(e) => {
                    tracing::warn!(error = %e, "counting the order index");
                    0
                }
            };
            metrics.set_indexed(indexed);
            let (owned, _) = state.ownership.partitions();
            tracing::info!(
                schema_id = id,
                partitions,
                owned = ?owned,
                records_after_checkpoint = behind,
                orders = indexed,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "order index caught up; ready"
            );
            anyhow::Ok(())
        };
        match attempt.await {
            Ok(()) => {
                state.set_loading(None);
                return;
            }
            Err(e) if service_kit::kafka::is_misconfigured(&e) || is_fatal_registry_error(&e) => {
                let reason = format!("{e:#}");
                tracing::error!(error = reason, "start-up failed; retrying cannot fix this");
                state.set_loading(Some(reason.clone()));
                fatal.send_replace(Some(reason));
                return;
            }
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "start-up step failed; retrying");
                state.set_loading(Some(format!("{e:#}")));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}
