//! The HTTP API, one file per endpoint family (zero2prod style), and the state they share.
//!
//! * [`health`] — `/health`, `/ready`, `/metrics`;
//! * [`order_details`] — `GET /api/order-details` (with read-your-writes waiting);
//! * [`orders`] — `GET /api/orders` (filtered, cursor-paginated listing of the view);
//! * [`topic`] — `GET /api/getAllOrderIdsFromTopic` (reads the topic itself);
//! * [`dto`] — the response bodies, as the OpenAPI document describes them.
//!
//! Every error answer is service-kit's `{"success": false, "message", "errors"}`.

use std::sync::Arc;

use actix_web::web;
use rdkafka::consumer::BaseConsumer;
use service_kit::http_error::{FieldProblem, HttpError};
use service_kit::kafka::KafkaContext;

use crate::consumer::ConsumerState;
use crate::store::Store;
use crate::topic_scan::Scanner;
use crate::waiters::Waiters;

pub mod dto;
pub mod health;
pub mod order_details;
pub mod orders;
pub mod topic;

/// What the handlers share.
pub struct AppState {
    pub store: Arc<Store>,
    pub waiters: Arc<Waiters>,
    pub consumer: Arc<ConsumerState>,
    pub topic: String,
    /// `getAllOrderIdsFromTopic`: allowed topics, concurrency and limits.
    pub scanner: Scanner,
    /// A client for `/ready`'s broker check (no network until used).
    pub probe: Arc<BaseConsumer<KafkaContext>>,
    /// The codec, whose registry client `/ready` probes.
    pub codec: std::sync::Arc<order_events::OrderEventCodec>,
}

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(health::health)
        .service(health::ready)
        .service(health::metrics)
        .service(order_details::order_details)
        .service(orders::list_orders)
        .service(topic::order_ids_from_topic);
}

/// A 400 listing the query parameters that are wrong.
pub(crate) fn invalid_query(problems: Vec<FieldProblem>) -> HttpError {
    let message = match problems.as_slice() {
        [one] => format!("Invalid query parameter '{}': {}", one.field, one.message),
        _ => "Invalid query parameters".to_string(),
    };
    HttpError::bad_request(message).with_errors(problems)
}

pub(crate) fn problem(field: &str, message: impl Into<String>) -> FieldProblem {
    FieldProblem {
        field: field.to_string(),
        message: message.into(),
    }
}

/// A 500 for a failure of the service itself (logged with its chain; the client gets no
/// internals).
pub(crate) fn internal(error: anyhow::Error) -> HttpError {
    tracing::error!(error = format!("{error:#}"), "request failed");
    HttpError::new(
        actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
        "Internal error; see the service log",
    )
}

/// Runs a blocking store call off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> Result<T, HttpError> {
    web::block(f)
        .await
        .map_err(|e| internal(anyhow::anyhow!("blocking task failed: {e}")))?
        .map_err(internal)
}
