//! `GET /api/order-details`: one order of the view, optionally waiting for it.
//!
//! Why the wait: a client that just placed or changed an order through CartService wants to
//! read *its* write, which reaches this view a few milliseconds later. With `waitMs` (and
//! `minVersion`) the request waits for that version to be committed, woken by the apply loop
//! through [`Waiters`](crate::waiters::Waiters) — no polling, no thread held.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::web::{Data, Query};
use actix_web::{get, HttpResponse};
use order_events::OrderId;
use serde::Deserialize;
use service_kit::http_error::HttpError;
use tracing::Instrument;
use utoipa::IntoParams;

use crate::routes::dto::{OrderDetailsResponse, OrderDto};
use crate::routes::{blocking, invalid_query, problem, AppState};
use crate::store::OrderView;
use service_kit::http_error::ErrorBody;

/// The longest `waitMs`.
pub const MAX_WAIT_MS: u64 = 30_000;

/// Query parameters, taken as text so every problem is reported with its field.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct DetailsQuery {
    /// The order id: 1 to 64 characters of `A-Z a-z 0-9 . _ : -`.
    #[param(required = true, value_type = String, example = "ORDER-001")]
    order_id: Option<String>,
    /// Wait up to this many milliseconds (0 to 30000) for the order to be in the view.
    #[param(value_type = Option<u32>, minimum = 0, maximum = 30000, example = 2000)]
    wait_ms: Option<String>,
    /// With `waitMs`: wait until at least this version is in the view (default: any).
    // No example: Swagger UI pre-fills examples, and "Try it out" on a new order (version 1)
    // would then wait for a version 2 and answer 404.
    #[param(value_type = Option<i64>, minimum = 1)]
    min_version: Option<String>,
}

struct Valid {
    order_id: OrderId,
    wait: Duration,
    min_version: i64,
}

fn validate(query: DetailsQuery) -> Result<Valid, HttpError> {
    let mut problems = Vec::new();
    let order_id = match query.order_id.as_deref() {
        None | Some("") => {
            problems.push(problem("orderId", "is required"));
            None
        }
        Some(raw) => match OrderId::parse(raw) {
            Ok(id) => Some(id),
            Err(e) => {
                for field_error in e.errors() {
                    problems.push(problem("orderId", field_error.violation.to_string()));
                }
                None
            }
        },
    };
    let wait_ms = match query.wait_ms.as_deref() {
        None => 0,
        Some(raw) => match raw.parse::<u64>() {
            Ok(ms) if ms <= MAX_WAIT_MS => ms,
            _ => {
                problems.push(problem(
                    "waitMs",
                    format!("must be a whole number from 0 to {MAX_WAIT_MS}, got {raw:?}"),
                ));
                0
            }
        },
    };
    let min_version = match query.min_version.as_deref() {
        None => 1,
        Some(raw) => match raw.parse::<i64>() {
            Ok(v) if v >= 1 => v,
            _ => {
                problems.push(problem(
                    "minVersion",
                    format!("must be a whole number of at least 1, got {raw:?}"),
                ));
                1
            }
        },
    };
    match order_id {
        Some(order_id) if problems.is_empty() => Ok(Valid {
            order_id,
            wait: Duration::from_millis(wait_ms),
            min_version,
        }),
        _ => Err(invalid_query(problems)),
    }
}

/// The latest version of an order, with its shipping cost.
#[utoipa::path(
    tag = "orders",
    params(DetailsQuery),
    responses(
        (status = 200, description = "The order", body = OrderDetailsResponse,
         example = json!({"success": true, "message": "Order 'ORDER-001' retrieved successfully",
            "data": {"orderId": "ORDER-001", "customerId": "CUST-42",
                     "orderDate": "2024-05-01T10:00:00Z",
                     "items": [{"itemId": "SKU-1", "quantity": 2, "price": 999.99}],
                     "totalAmount": 1999.98, "currency": "EUR", "status": "pending",
                     "shippingCost": 40.0, "version": 1, "eventType": "ORDER_CREATED",
                     "updatedAt": "2024-05-01T10:00:00.123Z"}})),
        (status = 400, description = "Missing or malformed orderId, waitMs or minVersion",
         body = ErrorBody,
         example = json!({"success": false, "message": "Invalid query parameter 'orderId': is required",
                          "errors": [{"field": "orderId", "message": "is required"}]})),
        (status = 404, description = "Not in the view (at the deadline, when waiting)",
         body = ErrorBody,
         example = json!({"success": false, "message": "Order 'ORDER-404' not found", "errors": []})),
    )
)]
#[get("/api/order-details")]
pub async fn order_details(
    state: Data<AppState>,
    query: Query<DetailsQuery>,
) -> Result<HttpResponse, HttpError> {
    let valid = validate(query.into_inner())?;
    let span = tracing::info_span!(
        "order_details",
        order_id = %valid.order_id,
        wait_ms = u64::try_from(valid.wait.as_millis()).unwrap_or(u64::MAX),
        min_version = valid.min_version,
    );
    lookup(state, valid).instrument(span).await
}

/// Reads the order, waiting for the wanted version until the deadline.
async fn lookup(state: Data<AppState>, valid: Valid) -> Result<HttpResponse, HttpError> {
    let id = valid.order_id.as_str().to_owned();
    let deadline = tokio::time::Instant::now() + valid.wait;
    loop {
        // Register before looking, so a commit in between still wakes us.
        let registration =
            (!valid.wait.is_zero()).then(|| state.waiters.register(&id, valid.min_version));
        let store = state.store.clone();
        let key = id.clone();
        let view: Option<OrderView> = blocking(move || store.get(&key)).await?;
        match view {
            Some(view) if view.version >= valid.min_version => {
                return Ok(HttpResponse::Ok().json(OrderDetailsResponse {
                    success: true,
                    message: format!("Order '{id}' retrieved successfully"),
                    data: OrderDto::from(&view),
                }));
            }
            found => {
                let Some(mut registration) = registration else {
                    return Err(not_found(&id, found.as_ref(), valid.min_version));
                };
                if tokio::time::timeout_at(deadline, registration.notified())
                    .await
                    .is_err()
                {
                    return Err(not_found(&id, found.as_ref(), valid.min_version));
                }
            }
        }
    }
}

fn not_found(id: &str, found: Option<&OrderView>, min_version: i64) -> HttpError {
    let message = match found {
        Some(view) => format!(
            "Order '{id}' version {min_version} not found (the view has version {})",
            view.version
        ),
        None => format!("Order '{id}' not found"),
    };
    HttpError::new(StatusCode::NOT_FOUND, message)
}
