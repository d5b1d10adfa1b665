//! Request and response bodies: the types the handlers read and answer, with their OpenAPI
//! schemas (one type for both, so the document cannot drift from the code).
//!
//! Why DTOs instead of serializing the contract types directly: `utoipa` cannot derive schemas
//! for types of another crate (`order_events::OrderEvent`). [`OrderEventDto`] serializes to
//! exactly what `OrderEvent` serializes to; a test checks that equivalence.

use chrono::{DateTime, Utc};
use order_events::{Money, OrderEvent};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;
use validator::{Validate, ValidationError};

/// An identifier's characters: `A-Z a-z 0-9 . _ : -` (the length is a rule of its own).
fn id_alphabet(value: &str) -> Result<(), ValidationError> {
    match value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
    {
        None => Ok(()),
        Some(c) => Err(ValidationError::new("pattern")
            .with_message(format!("must contain only A-Z a-z 0-9 . _ : - (found {c:?})").into())),
    }
}

/// Three capital letters; whether ISO 4217 knows the code is the domain's check after this.
fn currency_code(value: &str) -> Result<(), ValidationError> {
    if value.len() == 3 && value.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(ValidationError::new("pattern")
            .with_message("must be three capital letters (ISO 4217), such as EUR".into()))
    }
}

/// A decimal amount as the client wrote it: a JSON number (`19.99`) or a string (`"19.99"`).
/// `Money::parse` reads it exactly after validation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Amount(pub(crate) String);

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::Number(n) => Ok(Amount(n.to_string())),
            serde_json::Value::String(s) => Ok(Amount(s)),
            _ => Err(serde::de::Error::custom(
                "must be a decimal number such as 19.99",
            )),
        }
    }
}

/// Create an order; everything but `orderId` is optional and generated when absent.
#[derive(Debug, Default, Deserialize, ToSchema, Validate)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CreateOrderRequest {
    /// 1-64 characters of `A-Z a-z 0-9 . _ : -`.
    #[validate(length(min = 1, max = 64), custom(function = "id_alphabet"))]
    #[schema(
        example = "ORDER-001",
        required = true,
        min_length = 1,
        max_length = 64,
        pattern = "^[A-Za-z0-9._:-]{1,64}$"
    )]
    #[serde(default)]
    pub(crate) order_id: String,
    /// How many items to generate; required unless `items` is given (then it must match).
    #[validate(range(min = 1, max = 100))]
    #[schema(example = 3, minimum = 1, maximum = 100)]
    pub(crate) num_items: Option<i64>,
    #[validate(length(min = 1, max = 64), custom(function = "id_alphabet"))]
    #[schema(
        example = "CUST-1234",
        min_length = 1,
        max_length = 64,
        pattern = "^[A-Za-z0-9._:-]{1,64}$"
    )]
    pub(crate) customer_id: Option<String>,
    /// The client's own items (each one validated as an [`OrderItemRequest`]).
    #[validate(length(min = 1, max = 100))]
    #[schema(min_items = 1, max_items = 100)]
    pub(crate) items: Option<Vec<OrderItemRequest>>,
    /// ISO 4217 code.
    #[validate(custom(function = "currency_code"))]
    #[schema(
        example = "USD",
        min_length = 3,
        max_length = 3,
        pattern = "^[A-Z]{3}$"
    )]
    pub(crate) currency: Option<String>,
    /// ISO 8601 date-time; now when absent.
    #[schema(example = "2026-01-13T10:30:00Z", format = DateTime)]
    pub(crate) order_date: Option<String>,
    /// Must equal the sum of price × quantity when given.
    #[schema(value_type = Option<f64>, example = 1999.98)]
    pub(crate) total_amount: Option<Amount>,
    /// Must be `pending` when given.
    #[schema(example = "pending", pattern = "^pending$")]
    pub(crate) status: Option<String>,
}

/// One line of an order. (`Serialize` because validator puts the list in a `length` error.)
#[derive(Debug, Default, Serialize, Deserialize, ToSchema, Validate)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OrderItemRequest {
    #[validate(length(min = 1, max = 64), custom(function = "id_alphabet"))]
    #[schema(
        example = "ITEM-0042",
        required = true,
        min_length = 1,
        max_length = 64,
        pattern = "^[A-Za-z0-9._:-]{1,64}$"
    )]
    #[serde(default)]
    pub(crate) item_id: String,
    #[validate(range(min = 1, max = 10000))]
    #[schema(example = 2, required = true, minimum = 1, maximum = 10000)]
    #[serde(default)]
    pub(crate) quantity: i64,
    /// Greater than zero, at most two decimals (a JSON number or a string such as "19.99").
    #[schema(value_type = f64, required = true, example = 19.99, exclusive_minimum = 0)]
    #[serde(default)]
    pub(crate) price: Amount,
}

/// Move an order to another status.
#[derive(Debug, Default, Deserialize, ToSchema, Validate)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UpdateOrderRequest {
    #[validate(length(min = 1, max = 64), custom(function = "id_alphabet"))]
    #[schema(
        example = "ORDER-001",
        required = true,
        min_length = 1,
        max_length = 64,
        pattern = "^[A-Za-z0-9._:-]{1,64}$"
    )]
    #[serde(default)]
    pub(crate) order_id: String,
    /// pending, confirmed, shipped, delivered or cancelled.
    #[schema(
        example = "confirmed",
        required = true,
        pattern = "^(pending|confirmed|shipped|delivered|cancelled)$"
    )]
    #[serde(default)]
    pub(crate) status: String,
}

/// One line of an order.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OrderItemDto {
    #[schema(example = "ITEM-0042")]
    item_id: String,
    #[schema(example = 2, minimum = 1, maximum = 10000)]
    quantity: u32,
    /// Greater than zero, exactly two decimal places.
    #[schema(value_type = f64, example = 19.99)]
    price: Money,
}

/// An order state as published: event metadata and the whole order.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OrderEventDto {
    event_id: Uuid,
    /// ORDER_CREATED or ORDER_STATUS_UPDATED.
    #[schema(example = "ORDER_CREATED")]
    event_type: &'static str,
    /// 1 at creation, +1 per change.
    #[schema(example = 1)]
    version: i64,
    occurred_at: DateTime<Utc>,
    #[schema(example = "ORDER-001")]
    order_id: String,
    #[schema(example = "CUST-1234")]
    customer_id: String,
    order_date: DateTime<Utc>,
    items: Vec<OrderItemDto>,
    /// The sum of price × quantity, exactly two decimal places.
    #[schema(value_type = f64, example = 1999.98)]
    total_amount: Money,
    /// ISO 4217 code.
    #[schema(example = "EUR")]
    currency: String,
    /// pending, confirmed, shipped, delivered or cancelled.
    #[schema(example = "pending")]
    status: &'static str,
}

impl From<&OrderEvent> for OrderEventDto {
    fn from(event: &OrderEvent) -> Self {
        let order = event.order();
        OrderEventDto {
            event_id: event.event_id(),
            event_type: event.event_type().as_str(),
            version: event.version(),
            occurred_at: event.occurred_at(),
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
            status: order.status().as_str(),
        }
    }
}

/// A success answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct OrderResponse {
    /// Always `true`.
    #[schema(example = true)]
    success: bool,
    #[schema(example = "Order 'ORDER-001' created successfully")]
    message: String,
    data: OrderEventDto,
}

impl OrderResponse {
    /// A success answer carrying `event`.
    pub(crate) fn new(message: String, event: &OrderEvent) -> Self {
        OrderResponse {
            success: true,
            message,
            data: OrderEventDto::from(event),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use order_events::{
        Currency, CustomerId, ItemId, Order, OrderId, OrderItem, OrderStatus, Quantity,
    };

    #[test]
    fn the_event_dto_serializes_exactly_as_the_contract_event() -> anyhow::Result<()> {
        let item = |id: &str, quantity, cents| -> anyhow::Result<OrderItem> {
            Ok(OrderItem::new(
                ItemId::parse(id)?,
                Quantity::new(quantity)?,
                Money::from_cents(cents)?,
            )?)
        };
        let items = vec![item("A", 3, 10)?, item("B", 1, 199_999)?];
        let order = Order::new(
            OrderId::parse("ORDER-1")?,
            CustomerId::parse("CUST-1")?,
            "2026-01-13T10:30:00Z".parse()?,
            items,
            Money::from_cents(200_029)?,
            Currency::parse("EUR")?,
            OrderStatus::Pending,
        )?;
        let created = OrderEvent::created(Uuid::new_v4(), Utc::now(), order)?;
        let updated = created
            .status_updated(OrderStatus::Confirmed, Uuid::new_v4(), Utc::now())
            .map_err(|_| anyhow::anyhow!("pending → confirmed is allowed"))?
            .ok_or_else(|| anyhow::anyhow!("a change"))?;
        for event in [&created, &updated] {
            assert_eq!(
                serde_json::to_value(OrderEventDto::from(event))?,
                serde_json::to_value(event)?
            );
        }
        Ok(())
    }
}
