//! `GET /api/getAllOrderIdsFromTopic`: the distinct order ids a topic holds, read from Kafka.
//!
//! Why here and not from the view: this answers what the *log* contains (including orders the
//! view dead-lettered or has not reached yet). The scan itself is in
//! [`topic_scan`](crate::topic_scan); this handler validates, runs it on a blocking thread and
//! maps its outcome to 200, 400, 404 or 503.

use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::web::{Data, Query};
use actix_web::{get, HttpResponse};
use serde::Deserialize;
use service_kit::http_error::HttpError;
use tracing::Instrument;
use utoipa::IntoParams;

use crate::routes::dto::{ErrorResponse, TopicOrderIdsResponse};
use crate::routes::{internal, invalid_query, problem, AppState};
use crate::topic_scan::{check_topic_name, scan_keys, ScanError};

/// Query parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct TopicParams {
    /// A Kafka topic name: 1 to 249 characters of `a-z A-Z 0-9 . _ -`, not `.` or `..`.
    #[param(required = true, value_type = String, example = "order-events")]
    topic_name: Option<String>,
}

/// The distinct record keys (order ids) of a topic, from its beginning to the high watermarks
/// at the time of the request, in first-seen order. Values are not decoded.
#[utoipa::path(
    tag = "topics",
    params(TopicParams),
    responses(
        (status = 200, description = "The distinct order ids", body = TopicOrderIdsResponse,
         example = json!({"success": true, "topicName": "order-events",
                          "orderIds": ["ORDER-001", "ORDER-002"], "count": 2})),
        (status = 400, description = "Missing or illegal topic name", body = ErrorResponse,
         example = json!({"success": false,
                          "message": "Invalid query parameter 'topicName': contains '/'; only ASCII letters, digits, '.', '_' and '-' are allowed",
                          "errors": [{"field": "topicName", "message": "contains '/'; only ASCII letters, digits, '.', '_' and '-' are allowed"}]})),
        (status = 404, description = "No such topic", body = ErrorResponse,
         example = json!({"success": false, "message": "Topic 'nope' does not exist", "errors": []})),
        (status = 503, description = "Kafka unreachable, or the scan took too long", body = ErrorResponse,
         example = json!({"success": false, "message": "Kafka is unreachable: ...", "errors": []})),
    )
)]
#[get("/api/getAllOrderIdsFromTopic")]
pub async fn order_ids_from_topic(
    state: Data<AppState>,
    params: Query<TopicParams>,
) -> Result<HttpResponse, HttpError> {
    let topic = match params.into_inner().topic_name {
        None => return Err(invalid_query(vec![problem("topicName", "is required")])),
        Some(name) => name,
    };
    check_topic_name(&topic).map_err(|e| invalid_query(vec![problem("topicName", e)]))?;
    let span = tracing::info_span!("topic_scan", topic = %topic);
    async move {
        let started = Instant::now();
        let kafka = state.kafka.clone();
        let name = topic.clone();
        let wait = state.fetch_wait_max_ms;
        let timeout = state.topic_scan_timeout;
        let result = tokio::task::spawn_blocking(move || scan_keys(&kafka, &name, wait, timeout))
            .await
            .map_err(|e| internal(anyhow::anyhow!("the scan task failed: {e}")))?;
        match result {
            Ok(scan) => {
                tracing::info!(
                    records = scan.records,
                    order_ids = scan.order_ids.len(),
                    elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                    "scanned topic"
                );
                Ok(HttpResponse::Ok().json(TopicOrderIdsResponse {
                    success: true,
                    topic_name: topic,
                    count: scan.order_ids.len(),
                    order_ids: scan.order_ids,
                }))
            }
            Err(e @ ScanError::NotFound(_)) => {
                Err(HttpError::new(StatusCode::NOT_FOUND, e.to_string()))
            }
            Err(e) => {
                tracing::warn!(error = %e, "topic scan failed");
                Err(HttpError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    e.to_string(),
                ))
            }
        }
    }
    .instrument(span)
    .await
}
