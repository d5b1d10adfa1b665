//! Operations endpoints: liveness, readiness, metrics.

use std::time::Duration;

use actix_web::web::Data;
use actix_web::HttpResponse;
use serde_json::json;

use crate::AppState;

/// Alive: the process answers.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "The process is alive", example = json!({"status": "alive"}))))]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(service_kit::status_body("alive"))
}

/// Ready: state loaded, broker and registry reachable.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses(
        (status = 200, description = "Ready to take orders", example = json!({"status": "ready", "orders": 42})),
        (status = 503, description = "Not ready, and why", example = json!({"status": "unavailable", "problems": ["Kafka broker unreachable"]}))))]
pub async fn ready(state: Data<AppState>) -> HttpResponse {
    let mut problems = vec![];
    if let Some(loading) = state.not_ready() {
        problems.push(format!("state not loaded: {loading}"));
    }
    let pinger = state.clone();
    let broker_ok = tokio::task::spawn_blocking(move || {
        crate::kafka::ping(&pinger.pinger, Duration::from_secs(1))
    })
    .await
    .unwrap_or(false);
    if !broker_ok {
        problems.push("Kafka broker unreachable".to_string());
    }
    let url = format!(
        "{}/subjects",
        state.registry.display_url().trim_end_matches('/')
    );
    let registry_ok = state
        .registry
        .authorize(state.http.get(url))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success());
    if !registry_ok {
        problems.push("Schema Registry unreachable".to_string());
    }
    if problems.is_empty() {
        HttpResponse::Ok().json(json!({ "status": "ready", "orders": state.orders.len() }))
    } else {
        HttpResponse::ServiceUnavailable()
            .json(json!({ "status": "unavailable", "problems": problems }))
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(state: Data<AppState>) -> HttpResponse {
    state.metrics.response()
}

/// `/docs` → `/docs/` (Swagger UI's own path).
pub async fn docs_redirect() -> HttpResponse {
    HttpResponse::Found()
        .insert_header(("Location", "/docs/"))
        .finish()
}
