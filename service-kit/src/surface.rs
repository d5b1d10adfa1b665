//! The operations surface all three services share, so an operator learns it once: `/health`,
//! `/ready` with one JSON shape, the `/docs` redirect, one middleware for request IDs, the
//! access log and HTTP metrics, and one shutdown grace.
//!
//! Why one module: the services were built one after the other and had drifted (`/ready`
//! answered `problems` in one and `message` in the others, 302 vs 308 for `/docs`, 30 s vs 10 s
//! of grace, an access log in two of three). Each service now only says *which* checks make it
//! ready.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web::Data;
use actix_web::{HttpMessage, HttpResponse};
use serde::Serialize;

use crate::metrics::{method_label, Metrics, UNMATCHED_ROUTE};

/// How long a stopping service lets in-flight requests finish (CartService's wait for the
/// broker's acknowledgement is the longest of them).
pub const SHUTDOWN_GRACE_SECS: u64 = 30;

/// The header carrying a request's ID, taken from the client when it sends a sane one.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// One named condition of `/ready`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Check {
    /// What is checked, e.g. `kafka`, `schema_registry`, `consumer`.
    #[schema(example = "kafka")]
    pub name: &'static str,
    /// `ok` or `failing`.
    #[schema(example = "ok")]
    pub state: &'static str,
    /// Why it fails (absent when ok).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Check {
    /// A passing check.
    pub fn ok(name: &'static str) -> Check {
        Check {
            name,
            state: "ok",
            detail: None,
        }
    }

    /// A failing check and why.
    pub fn failing(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            state: "failing",
            detail: Some(detail.into()),
        }
    }

    /// `Ok(())` → ok, `Err(why)` → failing.
    pub fn from_result(name: &'static str, result: Result<(), String>) -> Check {
        match result {
            Ok(()) => Check::ok(name),
            Err(why) => Check::failing(name, why),
        }
    }

    /// Whether it passes.
    pub fn is_ok(&self) -> bool {
        self.state == "ok"
    }
}

/// The body of `/ready` in every service: `{"status": "ready"|"unavailable", "checks": [...]}`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `ready` when every check passes, else `unavailable`.
    #[schema(example = "ready")]
    pub status: &'static str,
    /// Every check, passing or not.
    pub checks: Vec<Check>,
}

/// 200 with [`Readiness`] when every check passes, else 503.
pub fn readiness(checks: Vec<Check>) -> HttpResponse {
    let ready = checks.iter().all(Check::is_ok);
    let body = Readiness {
        status: if ready { "ready" } else { "unavailable" },
        checks,
    };
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// `/health`: the process answers.
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(crate::status_body("alive"))
}

/// `/docs` → `/docs/`, permanently (308 keeps the method).
pub async fn docs_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header(("Location", "/docs/"))
        .finish()
}

/// A request's ID, in the request's extensions (see [`observe`]).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The client's ID when it is 1 to 64 characters of `[A-Za-z0-9._-]`, else a fresh UUID.
fn request_id(request: &ServiceRequest) -> String {
    request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=64).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        })
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_string)
}

/// The one middleware of every service: gives the request an ID (echoed in `X-Request-Id`),
/// counts it in the HTTP metrics (route pattern, never the raw path, as the label), and writes
/// one access-log line (method, path without the query, status, duration, ID) at target `http`.
pub async fn observe(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let id = request_id(&request);
    request.extensions_mut().insert(RequestId(id.clone()));
    let metrics = request.app_data::<Data<Metrics>>().cloned();
    let method = method_label(request.method());
    let path = request.path().chars().take(200).collect::<String>();
    let route = request
        .match_pattern()
        .unwrap_or_else(|| UNMATCHED_ROUTE.to_string());
    let mut response = next.call(request).await?;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    if let Some(metrics) = metrics {
        metrics.observe(method, &route, status, elapsed);
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID_HEADER), value);
    }
    tracing::info!(
        target: "http",
        request_id = %id,
        "{method} {path} {status} {:.3}ms",
        elapsed.as_secs_f64() * 1000.0
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::middleware::from_fn;
    use actix_web::test::{call_service, init_service, read_body_json, TestRequest};
    use actix_web::{web, App};

    #[actix_web::test]
    async fn ready_is_200_only_when_every_check_passes_and_lists_them_all() {
        let ok = readiness(vec![Check::ok("kafka"), Check::ok("schema_registry")]);
        assert_eq!(ok.status(), 200);
        let failing = readiness(vec![
            Check::ok("kafka"),
            Check::failing("schema_registry", "unreachable"),
        ]);
        assert_eq!(failing.status(), 503);
        let body = serde_json::to_value(Readiness {
            status: "unavailable",
            checks: vec![Check::ok("kafka"), Check::failing("x", "why")],
        })
        .expect("serializes");
        assert_eq!(
            body,
            serde_json::json!({"status": "unavailable", "checks": [
                {"name": "kafka", "state": "ok"},
                {"name": "x", "state": "failing", "detail": "why"}]})
        );
    }

    #[actix_web::test]
    async fn a_sane_request_id_is_echoed_and_anything_else_replaced() {
        let app = init_service(App::new().wrap(from_fn(observe)).route(
            "/x",
            web::get().to(|| async { HttpResponse::Ok().finish() }),
        ))
        .await;
        let echoed = call_service(
            &app,
            TestRequest::get()
                .uri("/x")
                .insert_header(("X-Request-Id", "abc-123"))
                .to_request(),
        )
        .await;
        assert_eq!(
            echoed.headers().get("x-request-id").map(|v| v.as_bytes()),
            Some(&b"abc-123"[..])
        );
        let long = "a".repeat(65);
        for bad in [long.as_str(), "has space", "semi;colon"] {
            let replaced = call_service(
                &app,
                TestRequest::get()
                    .uri("/x")
                    .insert_header(("X-Request-Id", bad))
                    .to_request(),
            )
            .await;
            let id = replaced
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            assert!(uuid::Uuid::parse_str(&id).is_ok(), "{bad:?} → {id:?}");
        }
    }

    #[actix_web::test]
    async fn docs_redirects_permanently_and_health_is_alive() {
        let app = init_service(
            App::new()
                .route("/docs", web::get().to(docs_redirect))
                .route("/health", web::get().to(health)),
        )
        .await;
        let docs = call_service(&app, TestRequest::get().uri("/docs").to_request()).await;
        assert_eq!(docs.status(), 308);
        assert_eq!(
            docs.headers().get("location").map(|v| v.as_bytes()),
            Some(&b"/docs/"[..])
        );
        let health = call_service(&app, TestRequest::get().uri("/health").to_request()).await;
        let body: serde_json::Value = read_body_json(health).await;
        assert_eq!(body, serde_json::json!({"status": "alive"}));
    }
}
