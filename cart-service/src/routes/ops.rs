//! Operations endpoints: liveness, readiness, metrics, in the shape every service shares
//! (`service_kit::surface`).

use std::time::Duration;

use actix_web::web::Data;
use actix_web::HttpResponse;
use service_kit::surface::{self, Check};

use super::AppState;

/// Alive: the process answers.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "The process is alive", example = json!({"status": "alive"}))))]
pub(crate) async fn health() -> HttpResponse {
    surface::health().await
}

/// Ready: state loaded (`state_loaded`), the order index following the topic (`order_index`),
/// broker (`kafka`) and registry (`schema_registry`) reachable.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses(
        (status = 200, description = "Ready to take orders", example = json!({"status": "ready", "checks": [
            {"name": "state_loaded", "state": "ok"}, {"name": "order_index", "state": "ok"}, {"name": "kafka", "state": "ok"}, {"name": "schema_registry", "state": "ok"}]})),
        (status = 503, description = "Not ready: every check, and why the failing ones fail", example = json!({"status": "unavailable", "checks": [
            {"name": "state_loaded", "state": "failing", "detail": "reading the topic into the order index (1200 records after the checkpoint)"},
            {"name": "order_index", "state": "ok"},
            {"name": "kafka", "state": "failing", "detail": "Kafka broker unreachable: no metadata within 1 s"},
            {"name": "schema_registry", "state": "ok"}]}))))]
pub(crate) async fn ready(state: Data<AppState>) -> HttpResponse {
    let loaded = Check::from_result("state_loaded", state.not_ready().map_or(Ok(()), Err));
    let index = Check::from_result("order_index", state.progress.problem().map_or(Ok(()), Err));
    let pinger = state.clone();
    let broker_ok = tokio::task::spawn_blocking(move || {
        crate::kafka::ping(&pinger.pinger, Duration::from_secs(1))
    })
    .await
    .unwrap_or(false);
    let kafka = if broker_ok {
        Check::ok("kafka")
    } else {
        Check::failing("kafka", "Kafka broker unreachable: no metadata within 1 s")
    };
    let registry = state.codec.readiness(Duration::from_secs(2)).await;
    surface::readiness(vec![
        loaded,
        index,
        kafka,
        Check::from_result("schema_registry", registry),
    ])
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub(crate) async fn metrics(state: Data<AppState>) -> HttpResponse {
    state
        .in_memory
        .set(i64::try_from(state.orders.len()).unwrap_or(i64::MAX));
    state.ownership.observe(state.partitions());
    state.metrics.response()
}
