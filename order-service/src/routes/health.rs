//! Liveness, readiness and metrics.
//!
//! Why readiness checks three things: the service is only useful when it can see the topic
//! (broker reachable), holds every partition (assigned) and can decode what it reads (registry
//! reachable). Each check is live, with a short timeout, so `/ready` reflects an outage. Before
//! those, the consumer itself must be alive and moving: not ended (panic, unpublishable dead
//! letter, stream end) and not stalled (records waiting, nothing committed for longer than
//! `CONSUMER_STALL_TIMEOUT_MS`); `consumer_up` in `/metrics` says the same.

use std::time::Duration;

use actix_web::web::Data;
use actix_web::{get, HttpResponse};
use rdkafka::consumer::Consumer;
use service_kit::metrics::Metrics;

use service_kit::kafka::topic_partitions;
use service_kit::surface::{Check, Readiness};

use crate::routes::dto::StatusResponse;
use crate::routes::AppState;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The process is alive.
#[utoipa::path(
    tag = "health",
    responses((status = 200, description = "Alive", body = StatusResponse,
               example = json!({"status": "alive"})))
)]
#[get("/health")]
pub async fn health() -> HttpResponse {
    service_kit::surface::health().await
}

/// Ready when the consumer runs and makes progress (`consumer`), Kafka is reachable and has
/// the topic (`kafka`) and the registry answers (`schema_registry`); every check is listed.
#[utoipa::path(
    tag = "health",
    responses(
        (status = 200, description = "Ready", body = Readiness,
         example = json!({"status": "ready", "checks": [
             {"name": "consumer", "state": "ok"}, {"name": "kafka", "state": "ok"},
             {"name": "schema_registry", "state": "ok"}]})),
        (status = 503, description = "Not ready; the failing checks say why", body = Readiness,
         example = json!({"status": "unavailable", "checks": [
             {"name": "consumer", "state": "failing", "detail": "partitions are not assigned yet"},
             {"name": "kafka", "state": "ok"}, {"name": "schema_registry", "state": "ok"}]})),
    )
)]
#[get("/ready")]
pub async fn ready(state: Data<AppState>) -> HttpResponse {
    let (kafka, registry) = tokio::join!(kafka_check(&state), registry_check(&state));
    service_kit::surface::readiness(vec![
        Check::from_result("consumer", state.consumer.health()),
        Check::from_result("kafka", kafka),
        Check::from_result("schema_registry", registry),
    ])
}

async fn kafka_check(state: &AppState) -> Result<(), String> {
    let probe = state.probe.clone();
    let topic = state.topic.clone();
    let broker = tokio::task::spawn_blocking(move || {
        topic_partitions(probe.client(), &topic, CHECK_TIMEOUT)
    })
    .await
    .map_err(|e| format!("broker check failed: {e}"))?;
    match broker {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(format!("topic {} does not exist", state.topic)),
        Err(e) => Err(format!("Kafka is unreachable: {e}")),
    }
}

async fn registry_check(state: &AppState) -> Result<(), String> {
    state.codec.readiness(CHECK_TIMEOUT).await
}

/// Prometheus metrics: records applied, dead-lettered by kind, lag per partition, batch
/// latency, HTTP requests.
#[utoipa::path(
    tag = "health",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain"))
)]
#[get("/metrics")]
pub async fn metrics(metrics: Data<Metrics>, state: Data<AppState>) -> HttpResponse {
    // `consumer_up` as of now (a stall is a matter of time passing).
    let _ = state.consumer.health();
    metrics.response()
}
