//! `GET /api/orders`: the view, filtered by status and customer, one page at a time.
//!
//! Why cursor pagination: the view changes while a client pages through it; an offset would
//! skip or repeat orders when rows are inserted before it, a cursor (the last order id of the
//! page, orders sorted by id) never does.

use actix_web::web::{Data, Query};
use actix_web::{get, HttpResponse};
use order_events::{CustomerId, OrderId, OrderStatus};
use serde::Deserialize;
use service_kit::http_error::HttpError;
use tracing::Instrument;
use utoipa::IntoParams;

use crate::routes::dto::{OrderDto, OrderListResponse};
use crate::routes::{blocking, invalid_query, problem, AppState};
use crate::store::ListQuery;
use service_kit::http_error::ErrorBody;

/// The default and the largest page size.
pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 500;

/// Query parameters, taken as text so every problem is reported with its field.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only orders with this status: pending, confirmed, shipped, delivered, cancelled.
    #[param(value_type = Option<String>, example = "pending")]
    status: Option<String>,
    /// Only orders of this customer. (No example: Swagger UI would pre-fill it in "Try it out"
    /// and the listing would come back empty.)
    #[param(value_type = Option<String>)]
    customer_id: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500, example = 50)]
    limit: Option<String>,
    /// The `nextCursor` of the previous page (empty for the first page).
    #[param(value_type = Option<String>)]
    cursor: Option<String>,
}

fn validate(params: ListParams) -> Result<ListQuery, HttpError> {
    let mut problems = Vec::new();
    let status = params
        .status
        .as_deref()
        .and_then(|raw| match OrderStatus::parse(raw) {
            Ok(s) => Some(s),
            Err(e) => {
                problems.extend(
                    e.errors()
                        .iter()
                        .map(|f| problem("status", f.violation.to_string())),
                );
                None
            }
        });
    let customer_id = params
        .customer_id
        .as_deref()
        .and_then(|raw| match CustomerId::parse(raw) {
            Ok(c) => Some(c.into_string()),
            Err(e) => {
                problems.extend(
                    e.errors()
                        .iter()
                        .map(|f| problem("customerId", f.violation.to_string())),
                );
                None
            }
        });
    let after = params
        .cursor
        .as_deref()
        .and_then(|raw| match OrderId::parse(raw) {
            Ok(id) => Some(id.into_string()),
            Err(_) => {
                problems.push(problem(
                    "cursor",
                    "is not a cursor returned by this endpoint",
                ));
                None
            }
        });
    let limit = match params.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(raw) => match raw.parse::<u32>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                problems.push(problem(
                    "limit",
                    format!("must be a whole number from 1 to {MAX_LIMIT}, got {raw:?}"),
                ));
                DEFAULT_LIMIT
            }
        },
    };
    if !problems.is_empty() {
        return Err(invalid_query(problems));
    }
    Ok(ListQuery {
        status,
        customer_id,
        after,
        limit,
    })
}

/// Orders of the view by ascending id, filtered, with cursor pagination.
#[utoipa::path(
    tag = "orders",
    params(ListParams),
    responses(
        (status = 200, description = "One page of orders", body = OrderListResponse,
         example = json!({"success": true, "message": "1 order(s)", "count": 1, "nextCursor": null,
            "data": [{"orderId": "ORDER-001", "customerId": "CUST-42",
                      "orderDate": "2024-05-01T10:00:00Z",
                      "items": [{"itemId": "SKU-1", "quantity": 2, "price": 999.99}],
                      "totalAmount": 1999.98, "currency": "EUR", "status": "pending",
                      "shippingCost": 40.0, "version": 1, "eventType": "ORDER_CREATED",
                      "updatedAt": "2024-05-01T10:00:00.123Z"}]})),
        (status = 400, description = "A malformed filter, limit or cursor", body = ErrorBody,
         example = json!({"success": false,
                          "message": "Invalid query parameter 'limit': must be a whole number from 1 to 500, got \"0\"",
                          "errors": [{"field": "limit", "message": "must be a whole number from 1 to 500, got \"0\""}]})),
    )
)]
#[get("/api/orders")]
pub async fn list_orders(
    state: Data<AppState>,
    params: Query<ListParams>,
) -> Result<HttpResponse, HttpError> {
    let query = validate(params.into_inner())?;
    let span = tracing::info_span!("list_orders", limit = query.limit);
    async move {
        let store = state.store.clone();
        let page = blocking(move || store.list(&query)).await?;
        let data: Vec<OrderDto> = page.orders.iter().map(OrderDto::from).collect();
        Ok(HttpResponse::Ok().json(OrderListResponse {
            success: true,
            message: format!("{} order(s)", data.len()),
            count: data.len(),
            data,
            next_cursor: page.next_cursor,
        }))
    }
    .instrument(span)
    .await
}
