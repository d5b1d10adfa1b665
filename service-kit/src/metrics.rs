//! Prometheus metrics: the HTTP ones every service has, and a registry services add their own to.
//!
//! `Metrics::new` creates a registry with `http_requests_total{method,route,status}` and
//! `http_request_duration_seconds{method,route}`; [`record_http`] is the middleware that fills
//! them, keyed by the route *pattern* (`/api/order-details`), never the raw path, so a client
//! cannot blow up the label set. `GET /metrics` answers [`Metrics::render`].

use std::sync::Arc;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web::Data;
use actix_web::HttpResponse;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

/// Latency buckets from 0.5 ms to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A service's metric registry with the HTTP metrics already in it.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    requests: IntCounterVec,
    latency: HistogramVec,
}

impl Metrics {
    pub fn new() -> anyhow::Result<Metrics> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by route and status"),
            &["method", "route", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency")
                .buckets(LATENCY_BUCKETS.to_vec()),
            &["method", "route"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        Ok(Metrics {
            registry: Arc::new(registry),
            requests,
            latency,
        })
    }

    /// The registry, for the service's own metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Prometheus text exposition of everything registered.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut buffer) {
            return format!("# error encoding metrics: {e}\n");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }

    /// A `GET /metrics` answer.
    pub fn response(&self) -> HttpResponse {
        HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4")
            .body(self.render())
    }
}

/// Middleware (`.wrap(from_fn(record_http))`) counting requests and timing them by route.
/// Needs `Data<Metrics>` in the app.
pub async fn record_http(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let metrics = request.app_data::<Data<Metrics>>().cloned();
    let method = request.method().to_string();
    let route = request
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_string());
    let response = next.call(request).await?;
    if let Some(metrics) = metrics {
        let status = response.status().as_u16().to_string();
        metrics
            .requests
            .with_label_values(&[&method, &route, &status])
            .inc();
        metrics
            .latency
            .with_label_values(&[&method, &route])
            .observe(started.elapsed().as_secs_f64());
    }
    Ok(response)
}
