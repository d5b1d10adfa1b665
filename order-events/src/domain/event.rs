//! [`OrderEvent`]: one order state change, the unit that travels on the topic.
//!
//! Why a module: the event adds metadata with rules of its own on top of the order — a
//! non-nil `eventId` for de-duplication, a `version` that starts at 1 and grows by one per
//! change, and an `eventType` consistent with that version — plus the constructors that make
//! producing a correct next event the easy path.

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{
    Currency, CustomerId, EventType, Money, Order, OrderId, OrderItem, OrderStatus, Transition,
};
use crate::error::{DomainError, FieldError, Violation};

/// One order state change, carrying the whole order as it is after the change.
///
/// Invariants (checked by [`OrderEvent::new`], the only general constructor):
/// * `event_id` is not the nil UUID;
/// * `version >= 1`; `ORDER_CREATED` events have version 1, `ORDER_STATUS_UPDATED` events
///   version 2 or more ("1 at creation, +1 per change");
/// * `occurred_at` has millisecond precision (finer precision is truncated).
///
/// JSON is flat and camelCase: `eventId`, `eventType`, `version`, `occurredAt`, then the
/// order's fields (`orderId`, …, `status`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "OrderEventJson", into = "OrderEventJson")]
pub struct OrderEvent {
    event_id: Uuid,
    event_type: EventType,
    version: i64,
    occurred_at: DateTime<Utc>,
    order: Order,
}

/// The metadata rules of an event, independent of its order.
fn metadata_violations(event_id: Uuid, event_type: EventType, version: i64) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if event_id.is_nil() {
        errors.push(FieldError {
            field: "eventId".into(),
            violation: Violation::NilUuid,
        });
    }
    let inconsistency = match event_type {
        _ if version < 1 => Some(Violation::NotPositive),
        EventType::OrderCreated if version != 1 => Some(Violation::Inconsistent(format!(
            "an ORDER_CREATED event has version 1, got {version}"
        ))),
        EventType::OrderStatusUpdated if version == 1 => Some(Violation::Inconsistent(
            "an ORDER_STATUS_UPDATED event has version 2 or more, got 1".into(),
        )),
        _ => None,
    };
    if let Some(violation) = inconsistency {
        errors.push(FieldError {
            field: "version".into(),
            violation,
        });
    }
    errors
}

impl OrderEvent {
    /// Builds an event, checking the metadata rules (all failures reported together).
    pub fn new(
        event_id: Uuid,
        event_type: EventType,
        version: i64,
        occurred_at: DateTime<Utc>,
        order: Order,
    ) -> Result<Self, DomainError> {
        OrderEvent::assemble(event_id, event_type, version, occurred_at, Ok(order))
    }

    /// Like [`OrderEvent::new`], for an order that may itself have failed to build: the
    /// order's errors and the metadata errors are reported together.
    pub(crate) fn assemble(
        event_id: Uuid,
        event_type: EventType,
        version: i64,
        occurred_at: DateTime<Utc>,
        order: Result<Order, DomainError>,
    ) -> Result<Self, DomainError> {
        let mut errors = match &order {
            Ok(_) => Vec::new(),
            Err(e) => e.errors().to_vec(),
        };
        errors.extend(metadata_violations(event_id, event_type, version));
        if let Some(err) = DomainError::from_errors(errors) {
            return Err(err);
        }
        let order = order?;
        Ok(OrderEvent {
            event_id,
            event_type,
            version,
            occurred_at: occurred_at.trunc_subsecs(3),
            order,
        })
    }

    /// The `ORDER_CREATED` event (version 1) of a new order.
    pub fn created(
        event_id: Uuid,
        occurred_at: DateTime<Utc>,
        order: Order,
    ) -> Result<Self, DomainError> {
        OrderEvent::new(event_id, EventType::OrderCreated, 1, occurred_at, order)
    }

    /// The event that moves this event's order to `next`, with the version incremented:
    /// `Ok(Some(event))` if the lifecycle allows it, `Ok(None)` if the order already has that
    /// status (idempotent no-op), and an error on `status` if the lifecycle forbids it.
    pub fn status_updated(
        &self,
        next: OrderStatus,
        event_id: Uuid,
        occurred_at: DateTime<Utc>,
    ) -> Result<Option<OrderEvent>, DomainError> {
        let current = self.order.status();
        match current.can_transition_to(next) {
            Transition::NoOp => Ok(None),
            Transition::NotAllowed => Err(DomainError::new(
                OrderStatus::FIELD,
                Violation::Inconsistent(format!("an order cannot move from {current} to {next}")),
            )),
            Transition::Allowed => {
                let version = self
                    .version
                    .checked_add(1)
                    .ok_or_else(|| DomainError::new("version", Violation::Overflow))?;
                OrderEvent::new(
                    event_id,
                    EventType::OrderStatusUpdated,
                    version,
                    occurred_at,
                    self.order.clone().with_status(next),
                )
                .map(Some)
            }
        }
    }

    /// Unique identifier of this event.
    pub fn event_id(&self) -> Uuid {
        self.event_id
    }

    /// What kind of change this is.
    pub fn event_type(&self) -> EventType {
        self.event_type
    }

    /// The order's version after this change (1 at creation).
    pub fn version(&self) -> i64 {
        self.version
    }

    /// When the change happened (millisecond precision).
    pub fn occurred_at(&self) -> DateTime<Utc> {
        self.occurred_at
    }

    /// The order after the change.
    pub fn order(&self) -> &Order {
        &self.order
    }

    /// Consumes the event, returning the order.
    pub fn into_order(self) -> Order {
        self.order
    }

    /// The Kafka record key: the order id as plain UTF-8 (not Avro), so all events of an order
    /// land on one partition, in order.
    pub fn key(&self) -> &str {
        self.order.order_id().as_str()
    }
}

/// The flat JSON shape of an [`OrderEvent`]. Spelled out instead of `#[serde(flatten)]`,
/// which buffers input and is known to mis-handle numbers.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OrderEventJson {
    event_id: Uuid,
    event_type: EventType,
    version: i64,
    occurred_at: DateTime<Utc>,
    order_id: OrderId,
    customer_id: CustomerId,
    order_date: DateTime<Utc>,
    items: Vec<OrderItem>,
    total_amount: Money,
    currency: Currency,
    status: OrderStatus,
}

impl TryFrom<OrderEventJson> for OrderEvent {
    type Error = DomainError;
    fn try_from(j: OrderEventJson) -> Result<Self, DomainError> {
        let order = Order::new(
            j.order_id,
            j.customer_id,
            j.order_date,
            j.items,
            j.total_amount,
            j.currency,
            j.status,
        );
        OrderEvent::assemble(j.event_id, j.event_type, j.version, j.occurred_at, order)
    }
}

impl From<OrderEvent> for OrderEventJson {
    fn from(e: OrderEvent) -> Self {
        let order = &e.order;
        OrderEventJson {
            event_id: e.event_id,
            event_type: e.event_type,
            version: e.version,
            occurred_at: e.occurred_at,
            order_id: order.order_id().clone(),
            customer_id: order.customer_id().clone(),
            order_date: order.order_date(),
            items: order.items().to_vec(),
            total_amount: order.total_amount(),
            currency: order.currency(),
            status: order.status(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ItemId, Quantity};
    use chrono::TimeZone;

    fn order() -> Order {
        Order::new(
            OrderId::parse("o-1").unwrap(),
            CustomerId::parse("c-1").unwrap(),
            Utc.with_ymd_and_hms(2024, 5, 1, 10, 0, 0).unwrap(),
            vec![OrderItem::new(
                ItemId::parse("sku-1").unwrap(),
                Quantity::new(2).unwrap(),
                Money::parse("19.99").unwrap(),
            )
            .unwrap()],
            Money::parse("39.98").unwrap(),
            Currency::parse("EUR").unwrap(),
            OrderStatus::Pending,
        )
        .unwrap()
    }

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, 10, 0, 1).unwrap()
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn fields(err: &DomainError) -> Vec<&str> {
        err.errors().iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn a_created_event_has_version_one() {
        let e = OrderEvent::created(id(1), at(), order()).unwrap();
        assert_eq!(e.version(), 1);
        assert_eq!(e.event_type(), EventType::OrderCreated);
        assert_eq!(e.key(), "o-1");
    }

    #[test]
    fn the_nil_uuid_is_not_an_event_id() {
        let err = OrderEvent::created(Uuid::nil(), at(), order()).unwrap_err();
        assert_eq!(err.errors()[0].violation, Violation::NilUuid);
    }

    #[test]
    fn a_version_below_one_is_rejected() {
        for v in [0, -1, i64::MIN] {
            let err = OrderEvent::new(id(1), EventType::OrderStatusUpdated, v, at(), order())
                .unwrap_err();
            assert_eq!(err.errors()[0].field, "version");
            assert_eq!(err.errors()[0].violation, Violation::NotPositive);
        }
    }

    #[test]
    fn the_event_type_must_agree_with_the_version() {
        let err = OrderEvent::new(id(1), EventType::OrderCreated, 2, at(), order()).unwrap_err();
        assert_eq!(fields(&err), vec!["version"]);
        let err =
            OrderEvent::new(id(1), EventType::OrderStatusUpdated, 1, at(), order()).unwrap_err();
        assert_eq!(fields(&err), vec!["version"]);
        assert!(OrderEvent::new(id(1), EventType::OrderStatusUpdated, 7, at(), order()).is_ok());
    }

    #[test]
    fn every_failing_metadata_field_is_reported() {
        let err =
            OrderEvent::new(Uuid::nil(), EventType::OrderCreated, 0, at(), order()).unwrap_err();
        assert_eq!(fields(&err), vec!["eventId", "version"]);
    }

    #[test]
    fn a_status_update_increments_the_version_and_changes_only_the_status() {
        let created = OrderEvent::created(id(1), at(), order()).unwrap();
        let confirmed = created
            .status_updated(OrderStatus::Confirmed, id(2), at())
            .unwrap()
            .unwrap();
        assert_eq!(confirmed.version(), 2);
        assert_eq!(confirmed.event_type(), EventType::OrderStatusUpdated);
        assert_eq!(confirmed.order().status(), OrderStatus::Confirmed);
        assert_eq!(
            confirmed.order().clone().with_status(OrderStatus::Pending),
            *created.order()
        );
    }

    #[test]
    fn updating_to_the_current_status_produces_no_event() {
        let created = OrderEvent::created(id(1), at(), order()).unwrap();
        assert_eq!(
            created.status_updated(OrderStatus::Pending, id(2), at()),
            Ok(None)
        );
    }

    #[test]
    fn a_forbidden_transition_is_an_error_on_status() {
        let created = OrderEvent::created(id(1), at(), order()).unwrap();
        let err = created
            .status_updated(OrderStatus::Delivered, id(2), at())
            .unwrap_err();
        assert_eq!(fields(&err), vec!["status"]);
        assert!(
            err.to_string().contains("from pending to delivered"),
            "{err}"
        );
    }

    #[test]
    fn occurred_at_is_truncated_to_milliseconds() {
        let precise = Utc.timestamp_opt(1_700_000_000, 999_999_999).unwrap();
        let e = OrderEvent::created(id(1), precise, order()).unwrap();
        assert_eq!(e.occurred_at().timestamp_millis(), 1_700_000_000_999);
        assert_eq!(e.occurred_at().timestamp_subsec_nanos(), 999_000_000);
    }

    #[test]
    fn json_is_flat_camel_case_and_round_trips() {
        let e = OrderEvent::created(id(0xabc), at(), order()).unwrap();
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "eventId": "00000000-0000-0000-0000-000000000abc",
                "eventType": "ORDER_CREATED",
                "version": 1,
                "occurredAt": "2024-05-01T10:00:01Z",
                "orderId": "o-1",
                "customerId": "c-1",
                "orderDate": "2024-05-01T10:00:00Z",
                "items": [{"itemId": "sku-1", "quantity": 2, "price": 19.99}],
                "totalAmount": 39.98,
                "currency": "EUR",
                "status": "pending"
            })
        );
        assert_eq!(serde_json::from_value::<OrderEvent>(json).unwrap(), e);
    }

    #[test]
    fn json_with_a_bad_order_and_bad_metadata_reports_both() {
        let json = r#"{"eventId":"00000000-0000-0000-0000-000000000000","eventType":"ORDER_CREATED",
            "version":1,"occurredAt":"2024-05-01T10:00:01Z","orderId":"o-1","customerId":"c-1",
            "orderDate":"2024-05-01T10:00:00Z","items":[],"totalAmount":1.00,"currency":"EUR",
            "status":"pending"}"#;
        let err = serde_json::from_str::<OrderEvent>(json).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("items: must contain at least one item"),
            "{msg}"
        );
        assert!(msg.contains("eventId: must not be the nil UUID"), "{msg}");
    }
}
