//! Requests for orders whose partition this instance does not own: forwarded once, or 503.
//!
//! Why: any instance answers any request ([`crate::own`]), and only the owner of an order's
//! partition may write it. The request goes to the owner named by the owner map, with
//! [`FORWARDED_BY`] set; an instance never forwards a request that carries it, so a map that is
//! stale on two instances costs a 503, never a loop. While a partition has no known owner (being
//! claimed, or its owner crashed and the group has not moved it yet) the answer is 503 with
//! `Retry-After`, at once: nothing waits.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use serde_json::{Map, Value};
use service_kit::http_error::ErrorBody;

use super::AppState;

/// Set on a forwarded request (to the forwarding instance's URL): never forwarded again.
pub(crate) const FORWARDED_BY: &str = "x-cart-forwarded-by";

/// Set on an answer relayed from the owner (so clients and benchmarks can tell).
pub(crate) const FORWARDED: &str = "x-cart-forwarded";

/// The most a forwarded answer may hold (CartService's own answers are a few KiB).
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// Seconds a client should wait before retrying a request for a partition that is moving.
const RETRY_AFTER_SECS: &str = "1";

/// Whether `request` was forwarded by another instance.
pub(crate) fn was_forwarded(request: &HttpRequest) -> bool {
    request.headers().contains_key(FORWARDED_BY)
}

/// 503 with `Retry-After`: the partition is between owners.
pub(crate) fn moving(state: &AppState, partition: i32, why: &str) -> HttpResponse {
    state
        .ownership
        .metrics()
        .forwarded
        .with_label_values(&["moving"])
        .inc();
    unavailable(format!(
        "This order's partition ({partition}) is moving between CartService instances ({why}); retry shortly"
    ))
}

fn unavailable(message: String) -> HttpResponse {
    HttpResponse::ServiceUnavailable()
        .insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS))
        .json(ErrorBody {
            success: false,
            message,
            errors: vec![],
        })
}

/// Sends `request` (with its parsed `body`) to the owner at `owner` and relays its answer.
pub(crate) async fn forward(
    state: &AppState,
    request: &HttpRequest,
    partition: i32,
    owner: &str,
    body: &Map<String, Value>,
) -> HttpResponse {
    let metrics = &state.ownership.metrics().forwarded;
    let url = format!("{owner}{}", request.path());
    // actix-web and reqwest use different `http` versions: the method goes by name.
    let method = reqwest::Method::from_bytes(request.method().as_str().as_bytes())
        .unwrap_or(reqwest::Method::POST);
    let mut outgoing = state
        .forwarder
        .request(method, &url)
        .header(FORWARDED_BY, state.ownership.me())
        .json(body);
    if let Some(id) = request.headers().get("x-request-id") {
        outgoing = outgoing.header("x-request-id", id.as_bytes());
    }
    let answer = match outgoing.send().await {
        Ok(answer) => answer,
        Err(e) => {
            metrics.with_label_values(&["unreachable"]).inc();
            let cause = std::iter::successors(std::error::Error::source(&e), |e| e.source())
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(": ");
            tracing::warn!(partition, owner, error = %e, cause, "the owner of a partition did not answer");
            return unavailable(format!(
                "The CartService instance that owns this order's partition ({partition}) did not \
                 answer; retry shortly"
            ));
        }
    };
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let retry_after = answer.headers().get(header::RETRY_AFTER.as_str()).cloned();
    let mut answer = answer;
    let mut bytes = Vec::new();
    loop {
        match answer.chunk().await {
            Ok(Some(chunk)) if bytes.len() + chunk.len() <= MAX_ANSWER_BYTES => {
                bytes.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Ok(Some(_)) | Err(_) => {
                metrics.with_label_values(&["unreachable"]).inc();
                tracing::warn!(
                    partition,
                    owner,
                    "the owner's answer was cut off or too large"
                );
                return unavailable(format!(
                    "The CartService instance that owns this order's partition ({partition}) \
                     gave no complete answer; retry shortly"
                ));
            }
        }
    }
    metrics.with_label_values(&["forwarded"]).inc();
    let mut relayed = HttpResponse::build(status);
    relayed.insert_header((
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    ));
    relayed.insert_header((FORWARDED, HeaderValue::from_static("1")));
    if let Some(value) = retry_after.and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok()) {
        relayed.insert_header((header::RETRY_AFTER, value));
    }
    relayed.body(bytes)
}
