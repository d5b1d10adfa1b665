//! The OpenAPI document served at `/api-docs/openapi.json` (Swagger UI at `/docs`).
//!
//! The handlers read bodies field by field (see `request`), so these types exist to document
//! the API: their shapes are what the handlers accept and answer.

#![allow(dead_code)]

use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

/// Create an order; everything but `orderId` is optional and generated when absent.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateOrderRequest {
    /// 1-64 characters of `A-Z a-z 0-9 . _ : -`.
    #[schema(example = "ORDER-001")]
    order_id: String,
    /// How many items to generate (1-100); required unless `items` is given.
    #[schema(example = 3, minimum = 1, maximum = 100)]
    num_items: Option<u32>,
    #[schema(example = "CUST-1234")]
    customer_id: Option<String>,
    items: Option<Vec<OrderItem>>,
    /// ISO 4217 code.
    #[schema(example = "USD")]
    currency: Option<String>,
    /// ISO 8601 date-time; now when absent.
    #[schema(example = "2026-01-13T10:30:00Z")]
    order_date: Option<String>,
    /// Must equal the sum of price × quantity when given.
    #[schema(value_type = Option<f64>, example = 1999.98)]
    total_amount: Option<String>,
    /// Must be `pending` when given.
    #[schema(example = "pending")]
    status: Option<String>,
}

/// One line of an order.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderItem {
    #[schema(example = "ITEM-0042")]
    item_id: String,
    #[schema(example = 2, minimum = 1)]
    quantity: u32,
    /// Greater than zero, at most two decimals (a JSON number or a string such as "19.99").
    #[schema(value_type = f64, example = 19.99)]
    price: String,
}

/// Move an order to another status.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateOrderRequest {
    #[schema(example = "ORDER-001")]
    order_id: String,
    /// pending, confirmed, shipped, delivered or cancelled.
    #[schema(example = "confirmed")]
    status: String,
}

/// An order state as published: event metadata and the whole order.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderEventBody {
    event_id: String,
    /// ORDER_CREATED or ORDER_STATUS_UPDATED.
    event_type: String,
    /// 1 at creation, +1 per change.
    version: i64,
    occurred_at: String,
    order_id: String,
    customer_id: String,
    order_date: String,
    items: Vec<OrderItem>,
    #[schema(value_type = f64, example = 1999.98)]
    total_amount: String,
    currency: String,
    status: String,
}

/// A success answer.
#[derive(Serialize, ToSchema)]
pub struct OrderResponse {
    success: bool,
    #[schema(example = "Order 'ORDER-001' created successfully")]
    message: String,
    data: OrderEventBody,
}

/// One failing field.
#[derive(Serialize, ToSchema)]
pub struct FieldProblem {
    field: String,
    message: String,
}

/// An error answer.
#[derive(Serialize, ToSchema)]
pub struct ErrorResponse {
    success: bool,
    message: String,
    errors: Vec<FieldProblem>,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "CartService", description = "Creates and updates orders; every state is published to Kafka as Avro, keyed by orderId."),
    paths(
        crate::routes::orders::create_order,
        crate::routes::orders::update_order,
        crate::routes::ops::health,
        crate::routes::ops::ready,
        crate::routes::ops::metrics,
    ),
    components(schemas(CreateOrderRequest, UpdateOrderRequest, OrderResponse, ErrorResponse, OrderEventBody, OrderItem, FieldProblem)),
    tags((name = "orders", description = "Order commands"), (name = "operations", description = "Health and metrics"))
)]
pub struct ApiDoc;
