//! Response bodies, with their OpenAPI schemas.
//!
//! Why DTOs instead of serializing the contract types directly: `utoipa` cannot derive schemas
//! for types of another crate (`order_events::Order`), and the view adds fields of its own.
//! [`OrderDto`] serializes to exactly what `order_events::Order` serializes to (camelCase,
//! amounts as JSON numbers, RFC 3339 dates) plus `shippingCost`, `version`, `eventType` and
//! `updatedAt`; a test checks that equivalence.

use chrono::{DateTime, Utc};
use order_events::Money;
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::OrderView;

/// One line of an order.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderItemDto {
    #[schema(example = "SKU-1")]
    pub item_id: String,
    #[schema(example = 2, minimum = 1, maximum = 10000)]
    pub quantity: u32,
    /// Unit price, exactly two decimal places.
    #[schema(value_type = f64, example = 999.99)]
    pub price: Money,
}

/// An order as the view holds it: its latest version, with the shipping cost.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderDto {
    #[schema(example = "ORDER-001")]
    pub order_id: String,
    #[schema(example = "CUST-42")]
    pub customer_id: String,
    pub order_date: DateTime<Utc>,
    pub items: Vec<OrderItemDto>,
    /// The sum of price x quantity, exactly two decimal places.
    #[schema(value_type = f64, example = 1999.98)]
    pub total_amount: Money,
    /// ISO 4217 code.
    #[schema(example = "EUR")]
    pub currency: String,
    /// pending, confirmed, shipped, delivered or cancelled.
    #[schema(example = "pending")]
    pub status: String,
    /// 2 % of totalAmount, rounded half-up to cents.
    #[schema(value_type = f64, example = 40.0)]
    pub shipping_cost: Money,
    /// The order's version: 1 at creation, +1 per change.
    #[schema(example = 1)]
    pub version: i64,
    /// ORDER_CREATED or ORDER_STATUS_UPDATED.
    #[schema(example = "ORDER_CREATED")]
    pub event_type: String,
    /// When this version happened (the event's occurredAt).
    pub updated_at: DateTime<Utc>,
}

impl From<&OrderView> for OrderDto {
    fn from(view: &OrderView) -> Self {
        let order = &view.order;
        OrderDto {
            order_id: order.order_id().as_str().to_owned(),
            customer_id: order.customer_id().as_str().to_owned(),
            order_date: order.order_date(),
            items: order
                .items()
                .iter()
                .map(|item| OrderItemDto {
                    item_id: item.item_id().as_str().to_owned(),
                    quantity: item.quantity().get(),
                    price: item.price(),
                })
                .collect(),
            total_amount: order.total_amount(),
            currency: order.currency().code().to_owned(),
            status: order.status().as_str().to_owned(),
            shipping_cost: view.shipping_cost,
            version: view.version,
            event_type: view.event_type.as_str().to_owned(),
            updated_at: view.updated_at,
        }
    }
}

/// `GET /api/order-details`: the order.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderDetailsResponse {
    #[schema(example = true)]
    pub success: bool,
    #[schema(example = "Order 'ORDER-001' retrieved successfully")]
    pub message: String,
    pub data: OrderDto,
}

/// `GET /api/orders`: one page of orders.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderListResponse {
    #[schema(example = true)]
    pub success: bool,
    #[schema(example = "2 order(s)")]
    pub message: String,
    pub data: Vec<OrderDto>,
    #[schema(example = 2)]
    pub count: usize,
    /// Pass as `cursor` for the next page; null on the last page.
    #[schema(example = "ORDER-002")]
    pub next_cursor: Option<String>,
}

/// `GET /api/getAllOrderIdsFromTopic`: the distinct keys of a topic.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicOrderIdsResponse {
    #[schema(example = true)]
    pub success: bool,
    #[schema(example = "order-events")]
    pub topic_name: String,
    /// Distinct record keys, in the order they were first seen.
    #[schema(example = json!(["ORDER-001", "ORDER-002"]))]
    pub order_ids: Vec<String>,
    #[schema(example = 2)]
    pub count: usize,
}

/// `/health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusResponse {
    #[schema(example = "alive")]
    pub status: String,
}
