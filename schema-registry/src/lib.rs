//! A Confluent-compatible Schema Registry for Avro that keeps its state in a Kafka topic.
//!
//! Clients cannot tell it from Confluent's for AVRO schemas: same REST paths, bodies, error
//! codes and content types, same compatibility rules, same `_schemas` record layout. It exists so
//! the embedded stack runs without a JVM; in production, Confluent's registry takes its place.
//!
//! Map: [`api`] (HTTP, one file per resource), `model` (state and the rules that make replay
//! deterministic), `store` (the Kafka topic), `records` (its record layout, decoded once into
//! typed records), [`compat`] (Avro schema resolution rules), `error` (Confluent's error
//! answers), [`auth`] and [`password`] (optional HTTP Basic authentication with roles), `tls`
//! (the optional HTTPS listener).
//!
//! Around the API it has the operations surface of the other services (`service_kit::surface`):
//! `/health`, `/ready` with the checks `kafka` and `schemas_reader`, `/metrics`, request IDs and
//! one access-log line per request (401s included), the shared shutdown grace. `/docs` sends to
//! `/ui`: the API is Confluent's, so there is no OpenAPI document of our own.
//!
//! Every answer, including actix's own (413 for a body over the limit, 405, 404), is
//! Confluent's JSON error body. If the `_schemas` reader stops, `/ready` answers 503 and
//! [`Application::run_until_stopped`] returns an error, so the process exits non-zero and a
//! supervisor restarts it instead of serving a state that no longer follows the log.
//!
//! Public: [`Settings`], [`Application`], [`spawn`]/[`Running`] (other crates' tests embed the
//! registry), what the binary needs (`auth::{Role, UserName}`, [`password`]) and what the fuzz
//! target calls (`model::parse_schema`, `compat::check`, `api::MAX_NESTING_DEPTH`); the rest
//! is crate-private.

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use actix_web::dev::{Server, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};
use actix_web::web::{self, Data};
use actix_web::{App, HttpResponse, HttpServer, ResponseError};
use anyhow::Context;
use openssl::ssl::SslAcceptorBuilder;
use service_kit::metrics::Metrics;
use service_kit::surface::Check;

pub mod api;
pub mod auth;
pub mod compat;
pub(crate) mod error;
pub mod model;
pub mod password;
pub(crate) mod records;
pub(crate) mod store;
pub(crate) mod tls;

use api::Limits;
use auth::{Authenticator, Users};
use error::ApiError;
use store::{Store, StoreSettings};
use tls::TlsFiles;

/// The registry's settings, from flags or the environment.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "schema-registry", version, about)]
pub struct Settings {
    /// How to reach the Kafka cluster holding the `_schemas` topic (servers, pass-through
    /// properties, secret files).
    #[command(flatten)]
    pub kafka: service_kit::kafka::KafkaArgs,
    /// Address to listen on.
    #[arg(long, env = "API_HOST", default_value = "127.0.0.1")]
    pub api_host: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "API_PORT", default_value_t = 8081)]
    pub api_port: u16,
    /// The topic storing every schema, config and mode change.
    #[arg(long, env = "SCHEMA_REGISTRY_TOPIC", default_value = "_schemas")]
    pub schema_registry_topic: String,
    /// How long a write waits for the broker before answering 500 (error code 50002).
    #[arg(long, env = "SCHEMA_REGISTRY_TIMEOUT_MS", default_value_t = 10_000)]
    pub schema_registry_timeout_ms: u64,
    /// `fetch.wait.max.ms` of the topic reader (small for Tansu, which waits out the full time).
    #[arg(long, env = "KAFKA_FETCH_WAIT_MAX_MS", default_value_t = 10)]
    pub kafka_fetch_wait_max_ms: u32,
    /// The largest schema accepted, in bytes; larger ones are refused with 422 (42201). Keep it
    /// under half the broker's `message.max.bytes` (1 MB by default): the record escapes the
    /// schema text, which can double it.
    #[arg(long, env = "SCHEMA_REGISTRY_MAX_SCHEMA_BYTES", default_value_t = 256 * 1024)]
    pub max_schema_bytes: usize,
    /// The largest request body accepted, in bytes; larger ones are refused with 413.
    #[arg(long, env = "SCHEMA_REGISTRY_MAX_REQUEST_BYTES", default_value_t = 2 * 1024 * 1024)]
    pub max_request_bytes: usize,
    /// PEM certificate chain for HTTPS (with `API_TLS_KEY_FILE`; neither: plain HTTP).
    #[arg(long, env = "API_TLS_CERT_FILE", value_name = "PATH")]
    pub api_tls_cert_file: Option<PathBuf>,
    /// PEM private key of `API_TLS_CERT_FILE`, unencrypted.
    #[arg(long, env = "API_TLS_KEY_FILE", value_name = "PATH")]
    pub api_tls_key_file: Option<PathBuf>,
    /// Users file turning on HTTP Basic authentication: `name:argon2id-hash:role` per line,
    /// role `read-only` or `read-write` (`schema-registry hash-password` makes the hash).
    #[arg(long, env = "SCHEMA_REGISTRY_AUTH_FILE", value_name = "PATH")]
    pub schema_registry_auth_file: Option<PathBuf>,
}

impl Settings {
    /// Defaults for a broker at `bootstrap` on a free port (for tests).
    pub fn for_tests(bootstrap: &str) -> Settings {
        Settings {
            kafka: service_kit::kafka::KafkaArgs::new(bootstrap),
            api_host: "127.0.0.1".to_string(),
            api_port: 0,
            schema_registry_topic: "_schemas".to_string(),
            schema_registry_timeout_ms: 10_000,
            kafka_fetch_wait_max_ms: 10,
            max_schema_bytes: 256 * 1024,
            max_request_bytes: 2 * 1024 * 1024,
            api_tls_cert_file: None,
            api_tls_key_file: None,
            schema_registry_auth_file: None,
        }
    }
}

/// The security settings read and checked before anything else starts, so that a mistake in
/// them stops the process at once with a message naming the file.
struct Security {
    tls: Option<SslAcceptorBuilder>,
    authenticator: Option<Authenticator>,
}

impl Security {
    fn load(settings: &Settings) -> anyhow::Result<Security> {
        let tls = TlsFiles::from_settings(
            settings.api_tls_cert_file.as_deref(),
            settings.api_tls_key_file.as_deref(),
        )?
        .map(|files| files.acceptor())
        .transpose()?;
        let authenticator = match settings
            .schema_registry_auth_file
            .as_deref()
            .filter(|path| !path.as_os_str().is_empty())
        {
            None => None,
            Some(path) => {
                let users = Users::load(path)?;
                tracing::info!(
                    users = users.len(),
                    file = %path.display(),
                    "HTTP Basic authentication is on"
                );
                Some(Authenticator::new(
                    users,
                    Authenticator::default_concurrency(),
                )?)
            }
        };
        Ok(Security { tls, authenticator })
    }
}

/// The built registry: a bound listener, a loaded store and a server ready to run.
pub struct Application {
    port: u16,
    scheme: &'static str,
    server: Server,
    store: Data<Store>,
}

impl Application {
    /// Replays the topic, binds the listener and builds the server.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let security = Security::load(&settings)?;
        let store = Store::open(StoreSettings {
            kafka: settings.kafka.resolve()?,
            topic: settings.schema_registry_topic.clone(),
            fetch_wait_max_ms: settings.kafka_fetch_wait_max_ms,
            timeout: Duration::from_millis(settings.schema_registry_timeout_ms),
        })
        .await
        .context("opening the schema store")?;
        let listener = service_kit::bind(&settings.api_host, settings.api_port)?;
        Self::serve(listener, store, security, &settings)
    }

    fn serve(
        listener: TcpListener,
        store: Store,
        security: Security,
        settings: &Settings,
    ) -> anyhow::Result<Application> {
        let port = listener
            .local_addr()
            .context("reading the bound port")?
            .port();
        let store = Data::new(store);
        let limits = Data::new(Limits {
            max_schema_bytes: settings.max_schema_bytes,
        });
        let max_request_bytes = settings.max_request_bytes;
        let app_store = store.clone();
        let auth_on = security.authenticator.is_some();
        let authenticator = security.authenticator.map(Data::new);
        let ready_detail = Data::new(ReadyDetail(!auth_on));
        let metrics = Data::new(Metrics::new().context("creating the metrics registry")?);
        let server = HttpServer::new(move || {
            let mut app = App::new();
            if let Some(authenticator) = &authenticator {
                app = app.app_data(authenticator.clone());
            }
            app.app_data(app_store.clone())
                .app_data(ready_detail.clone())
                .app_data(metrics.clone())
                .app_data(limits.clone())
                .app_data(web::PayloadConfig::new(max_request_bytes))
                .app_data(web::QueryConfig::default().error_handler(api::query_error))
                .wrap(actix_web::middleware::from_fn(auth::middleware))
                .wrap(ErrorHandlers::new().default_handler(move |response| {
                    confluent_error_body(response, max_request_bytes)
                }))
                .wrap(actix_web::middleware::from_fn(
                    service_kit::surface::observe,
                ))
                .route("/ui", web::get().to(ui))
                .route("/ui/", web::get().to(ui))
                .route("/docs", web::get().to(docs))
                .route("/health", web::get().to(service_kit::surface::health))
                .route("/ready", web::get().to(ready))
                .route("/metrics", web::get().to(serve_metrics))
                .configure(api::routes)
                .default_service(web::to(api::not_found))
        });
        let (server, scheme) = match security.tls {
            Some(acceptor) => (
                server
                    .listen_openssl(listener, acceptor)
                    .context("starting the HTTPS server")?,
                "https",
            ),
            None => (
                server
                    .listen(listener)
                    .context("starting the HTTP server")?,
                "http",
            ),
        };
        let server = server
            .shutdown_timeout(service_kit::surface::SHUTDOWN_GRACE_SECS)
            .run();
        Ok(Application {
            port,
            scheme,
            server,
            store,
        })
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `https` when the TLS listener is on, else `http`.
    pub fn scheme(&self) -> &'static str {
        self.scheme
    }

    /// Serves until SIGINT/SIGTERM (in-flight requests finish first). Returns an error if the
    /// `_schemas` reader stops (a panic, or its stream ended): the registry cannot follow the
    /// log any more, so the process should exit and be restarted.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let store = self.store;
        tokio::select! {
            served = self.server => served.context("serving HTTP"),
            reason = store.reader_stopped() => {
                tracing::error!(%reason, "the _schemas reader stopped; stopping the registry");
                handle.stop(true).await;
                Err(anyhow::anyhow!("the registry cannot follow _schemas: {reason}"))
            }
        }
    }
}

/// Rewrites an error answer that is not already JSON (actix's own 413, 405, ...) into
/// Confluent's `{"error_code", "message"}` body.
fn confluent_error_body<B>(
    response: ServiceResponse<B>,
    max_request_bytes: usize,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_json = response
        .response()
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.contains("json"));
    if is_json {
        return Ok(ErrorHandlerResponse::Response(
            response.map_into_left_body(),
        ));
    }
    let status = response.status();
    let detail = if status == actix_web::http::StatusCode::PAYLOAD_TOO_LARGE {
        Some(format!(
            "the request body is larger than the limit of {max_request_bytes} bytes (SCHEMA_REGISTRY_MAX_REQUEST_BYTES)"
        ))
    } else {
        response.response().error().map(|e| e.to_string())
    };
    let (request, _) = response.into_parts();
    let body = ApiError::http(status, detail.as_deref()).error_response();
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(request, body).map_into_right_body(),
    ))
}

async fn ui() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(include_str!("ui/index.html"))
}

/// `/docs`: the registry has no OpenAPI document (its API is Confluent's, documented by
/// Confluent); its browsable documentation is the UI, so `/docs` sends there, permanently.
async fn docs() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/ui"))
        .finish()
}

/// `/metrics`: the HTTP metrics in Prometheus' text format.
async fn serve_metrics(metrics: Data<Metrics>) -> HttpResponse {
    metrics.response()
}

/// Whether `/ready` explains a failure in its body. With authentication on, `/ready` still
/// answers without credentials (probes rarely carry them) but keeps Kafka's error text, which
/// names brokers and topics, for the log.
struct ReadyDetail(bool);

/// How long `/ready` waits for the broker's answer and then for the reader to catch up.
const READY_WAIT: Duration = Duration::from_secs(2);

/// `/ready`: `kafka` (the broker answers with the end of `_schemas`) and `schemas_reader` (the
/// reader runs and has applied the log up to that end within [`READY_WAIT`]).
async fn ready(store: Data<Store>, detail: Data<ReadyDetail>) -> HttpResponse {
    let explain = |check: &'static str, why: String| {
        if detail.0 {
            why
        } else {
            tracing::warn!(check, reason = %why, "not ready");
            "failing; the reason is in the registry's log".to_string()
        }
    };
    let reader = match store.reader_failure() {
        Some(reason) => Err(format!("the registry stopped following _schemas: {reason}")),
        None => Ok(()),
    };
    let (kafka, reader) = match store.end_of_log(READY_WAIT).await {
        Ok(end) => {
            let caught_up = match reader {
                Ok(()) => store
                    .wait_applied(end, READY_WAIT)
                    .await
                    .map_err(|e| e.to_string()),
                failed => failed,
            };
            (Ok(()), caught_up)
        }
        Err(e) => (
            Err(format!("Kafka is unreachable: {e}")),
            reader.and(Err("unknown while Kafka is unreachable".to_string())),
        ),
    };
    service_kit::surface::readiness(vec![
        Check::from_result("kafka", kafka.map_err(|why| explain("kafka", why))),
        Check::from_result(
            "schemas_reader",
            reader.map_err(|why| explain("schemas_reader", why)),
        ),
    ])
}

/// A registry serving from a task of this process (for embedding it, and for tests); it stops
/// when dropped.
pub type Running = service_kit::Spawned<anyhow::Result<()>>;

/// Builds the registry and serves it on a tokio task of the current runtime.
pub async fn spawn(settings: Settings) -> anyhow::Result<Running> {
    let app = Application::build(settings).await?;
    Ok(Running::new(app.port(), app.run_until_stopped()))
}
