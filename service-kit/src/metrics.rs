//! Prometheus metrics: the HTTP ones every service has, and a registry services add their own to.
//!
//! `Metrics::new` creates a registry with `http_requests_total{method,route,status}` and
//! `http_request_duration_seconds{method,route}`; [`crate::surface::observe`] is the middleware that fills
//! them. Every label comes from a fixed, small set, so no client can create new series: the
//! route is the matched *pattern* (`/api/order-details`), never the raw path, and
//! [`UNMATCHED_ROUTE`] for any path no route matches; the method is one of [`KNOWN_METHODS`] or
//! [`OTHER_METHOD`] (HTTP lets a client send any token as a method, `FOO123` included).
//! `GET /metrics` answers [`Metrics::render`].

use std::sync::Arc;

use actix_web::HttpResponse;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

/// Latency buckets from 0.5 ms to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The methods that get their own label value; any other method is counted as [`OTHER_METHOD`].
pub const KNOWN_METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];

/// The method label of every method not in [`KNOWN_METHODS`].
pub const OTHER_METHOD: &str = "other";

/// The route label of every request whose path no route matches.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// The method label for `method`: itself if it is one of [`KNOWN_METHODS`], else
/// [`OTHER_METHOD`]. Methods are case-sensitive tokens, so `get` is not `GET`.
pub fn method_label(method: &actix_web::http::Method) -> &'static str {
    KNOWN_METHODS
        .iter()
        .find(|known| **known == method.as_str())
        .copied()
        .unwrap_or(OTHER_METHOD)
}

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

    /// Counts one answered request: `method` from [`method_label`], `route` the matched
    /// pattern (or [`UNMATCHED_ROUTE`]), never a raw path, so the label sets stay fixed.
    pub fn observe(&self, method: &str, route: &str, status: u16, elapsed: std::time::Duration) {
        let status = status.to_string();
        self.requests
            .with_label_values(&[method, route, status.as_str()])
            .inc();
        self.latency
            .with_label_values(&[method, route])
            .observe(elapsed.as_secs_f64());
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

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::Method;
    use actix_web::middleware::from_fn;
    use actix_web::test::{call_service, init_service, TestRequest};
    use actix_web::{web, App};

    /// The `http_requests_total` series in a scrape, one line each.
    fn request_series(metrics: &Metrics) -> Vec<String> {
        metrics
            .render()
            .lines()
            .filter(|line| line.starts_with("http_requests_total{"))
            .map(|line| {
                line.rsplit_once(' ')
                    .map_or(line, |(series, _)| series)
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn known_methods_keep_their_name_and_others_are_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::OPTIONS), "OPTIONS");
        for made_up in ["FOO123", "get", "TRACE", "CONNECT", "PROPFIND"] {
            let method = Method::from_bytes(made_up.as_bytes()).expect("a valid token");
            assert_eq!(method_label(&method), OTHER_METHOD, "{made_up}");
        }
    }

    #[actix_web::test]
    async fn made_up_methods_and_random_paths_add_no_series() {
        let metrics = Metrics::new().expect("metrics");
        let app = init_service(
            App::new()
                .app_data(actix_web::web::Data::new(metrics.clone()))
                .wrap(from_fn(crate::surface::observe))
                .route("/api/things/{id}", web::get().to(HttpResponse::Ok))
                .default_service(web::to(HttpResponse::NotFound)),
        )
        .await;
        let send_junk = |round: usize| {
            let app = &app;
            async move {
                for i in 0..100 {
                    let method = Method::from_bytes(format!("FOO{round}X{i}").as_bytes())
                        .expect("a valid token");
                    for (method, path) in [
                        (method.clone(), format!("/random/{round}/{i}")),
                        (method, format!("/api/things/{i}")),
                        (Method::GET, format!("/api/things/{round}-{i}")),
                        (Method::GET, format!("/nowhere-{round}-{i}?q={i}")),
                    ] {
                        let request = TestRequest::default()
                            .method(method)
                            .uri(&path)
                            .to_request();
                        call_service(app, request).await;
                    }
                }
            }
        };
        send_junk(0).await;
        let after_first = request_series(&metrics);
        send_junk(1).await;
        let after_second = request_series(&metrics);

        assert_eq!(after_first, after_second, "new series appeared");
        // other /random, other /api/things, GET /api/things, GET unmatched (404s and 405s).
        assert!(after_first.len() <= 4, "{after_first:#?}");
        let scrape = metrics.render();
        assert!(!scrape.contains("FOO"), "a raw method leaked into a label");
        assert!(
            !scrape.contains("/random"),
            "a raw path leaked into a label"
        );
        assert!(
            scrape.contains(r#"method="other",route="unmatched""#),
            "{scrape}"
        );
        assert!(
            scrape.contains(r#"method="GET",route="/api/things/{id}""#),
            "{scrape}"
        );
    }
}
