//! `GET /api/getAllOrderIdsFromTopic`: the distinct order ids a topic holds, read from Kafka.
//!
//! Why here and not from the view: this answers what the *log* contains (including orders the
//! view dead-lettered or has not reached yet). The scan itself is in
//! [`topic_scan`](crate::topic_scan); this handler validates the name (400), checks it is an
//! allowed topic (403, naming the allowed ones), takes a scan slot (429 with `Retry-After` when
//! all are busy), runs the scan and maps its outcome to 200, 404 or 503. If the client goes
//! away (its socket closes, see [`connection`](crate::connection)), the scan is cancelled.

use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::web::{Data, Query};
use actix_web::{get, HttpRequest, HttpResponse};
use serde::Deserialize;
use service_kit::http_error::HttpError;
use tracing::Instrument;
use utoipa::IntoParams;

use crate::connection::ClientSocket;
use crate::routes::dto::TopicOrderIdsResponse;
use crate::routes::{invalid_query, problem, AppState};
use crate::topic_scan::{check_topic_name, ScanError};
use service_kit::http_error::ErrorBody;

/// Seconds a client is asked to wait when every scan slot is busy.
pub const RETRY_AFTER_SECS: u32 = 1;

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
        (status = 400, description = "Missing or illegal topic name", body = ErrorBody,
         example = json!({"success": false,
                          "message": "Invalid query parameter 'topicName': contains '/'; only ASCII letters, digits, '.', '_' and '-' are allowed",
                          "errors": [{"field": "topicName", "message": "contains '/'; only ASCII letters, digits, '.', '_' and '-' are allowed"}]})),
        (status = 403, description = "The topic may not be scanned (not in TOPIC_SCAN_ALLOWED, or internal)", body = ErrorBody,
         example = json!({"success": false,
                          "message": "Topic '_schemas' may not be scanned; allowed topics: order-events, order-events.dlq",
                          "errors": [{"field": "topicName", "message": "allowed topics: order-events, order-events.dlq"}]})),
        (status = 404, description = "No such topic", body = ErrorBody,
         example = json!({"success": false, "message": "Topic 'nope' does not exist", "errors": []})),
        (status = 429, description = "Every scan slot is busy (TOPIC_SCAN_MAX_CONCURRENT); retry after the Retry-After header's seconds", body = ErrorBody,
         headers(("Retry-After" = u32, description = "Seconds to wait")),
         example = json!({"success": false, "message": "Too many topic scans are running (at most 4); retry in 1 s", "errors": []})),
        (status = 503, description = "Kafka unreachable, the scan took too long, or the topic has too many distinct keys", body = ErrorBody,
         example = json!({"success": false, "message": "Kafka is unreachable: ...", "errors": []})),
    )
)]
#[get("/api/getAllOrderIdsFromTopic")]
pub async fn order_ids_from_topic(
    request: HttpRequest,
    state: Data<AppState>,
    params: Query<TopicParams>,
) -> Result<HttpResponse, HttpError> {
    let topic = match params.into_inner().topic_name {
        None => return Err(invalid_query(vec![problem("topicName", "is required")])),
        Some(name) => name,
    };
    check_topic_name(&topic).map_err(|e| invalid_query(vec![problem("topicName", e)]))?;
    let scanner = &state.scanner;
    if !scanner.is_allowed(&topic) {
        scanner
            .metrics()
            .rejected
            .with_label_values(&["not_allowed"])
            .inc();
        let allowed = format!("allowed topics: {}", scanner.allowed());
        return Err(HttpError::new(
            StatusCode::FORBIDDEN,
            format!("Topic '{topic}' may not be scanned; {allowed}"),
        )
        .with_errors(vec![problem("topicName", allowed)]));
    }
    let span = tracing::info_span!("topic_scan", topic = %topic);
    async {
        let started = Instant::now();
        let client = request.conn_data::<ClientSocket>().cloned();
        let Ok(result) = scanner.scan(topic.clone(), client).await else {
            return Ok(busy(&state));
        };
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
            // Nobody reads this answer.
            Err(e @ ScanError::Cancelled) => Err(HttpError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                e.to_string(),
            )),
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

/// 429 in the services' error shape, with `Retry-After`.
fn busy(state: &AppState) -> HttpResponse {
    state
        .scanner
        .metrics()
        .rejected
        .with_label_values(&["busy"])
        .inc();
    HttpResponse::TooManyRequests()
        .insert_header(("Retry-After", RETRY_AFTER_SECS.to_string()))
        .json(serde_json::json!({
            "success": false,
            "message": format!(
                "Too many topic scans are running (at most {}); retry in {RETRY_AFTER_SECS} s",
                state.scanner.max_concurrent()
            ),
            "errors": [],
        }))
}
