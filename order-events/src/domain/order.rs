//! [`OrderItem`] and [`Order`]: the order as a whole, with its cross-field rules.
//!
//! Why a module: single values are checked by their own types; what is left are the rules
//! that tie fields together — an order has items, a positive total, and that total is *exactly*
//! the sum of price x quantity. [`Order::new`] checks all of them and reports every failing
//! field at once.

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{Currency, CustomerId, ItemId, Money, OrderId, OrderStatus, Quantity};
use crate::error::{DomainError, FieldError, Violation};

/// One line of an order: an item, how many, and the unit price (greater than zero).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "OrderItemJson", into = "OrderItemJson")]
pub struct OrderItem {
    item_id: ItemId,
    quantity: Quantity,
    price: Money,
}

impl OrderItem {
    /// A line; the price must be greater than zero and `price x quantity` must not exceed
    /// [`Money::MAX`].
    pub fn new(item_id: ItemId, quantity: Quantity, price: Money) -> Result<Self, DomainError> {
        if !price.is_positive() {
            return Err(DomainError::new("price", Violation::NotPositive));
        }
        if price.checked_mul_quantity(quantity).is_none() {
            return Err(DomainError::new("price", Violation::Overflow));
        }
        Ok(OrderItem {
            item_id,
            quantity,
            price,
        })
    }

    /// The item.
    pub fn item_id(&self) -> &ItemId {
        &self.item_id
    }

    /// How many units.
    pub fn quantity(&self) -> Quantity {
        self.quantity
    }

    /// The unit price.
    pub fn price(&self) -> Money {
        self.price
    }

    /// `price x quantity`; cannot overflow, [`OrderItem::new`] checked it.
    pub fn line_total(&self) -> Money {
        self.price
            .checked_mul_quantity(self.quantity)
            .unwrap_or(Money::MAX)
    }
}

/// The JSON shape of an [`OrderItem`].
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OrderItemJson {
    item_id: ItemId,
    quantity: Quantity,
    price: Money,
}

impl TryFrom<OrderItemJson> for OrderItem {
    type Error = DomainError;
    fn try_from(j: OrderItemJson) -> Result<Self, DomainError> {
        OrderItem::new(j.item_id, j.quantity, j.price)
    }
}

impl From<OrderItem> for OrderItemJson {
    fn from(i: OrderItem) -> Self {
        OrderItemJson {
            item_id: i.item_id,
            quantity: i.quantity,
            price: i.price,
        }
    }
}

/// A whole order, as carried by every [`OrderEvent`](crate::OrderEvent).
///
/// Invariants (checked by [`Order::new`], the only constructor):
/// * at least one item;
/// * `total_amount > 0` and `total_amount == Σ price x quantity`, exactly;
/// * `order_date` has millisecond precision (finer precision is truncated, as the Avro field
///   is `timestamp-millis`).
///
/// JSON uses the contract's camelCase names: `orderId`, `customerId`, `orderDate` (RFC 3339),
/// `items`, `totalAmount`, `currency`, `status`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "OrderJson", into = "OrderJson")]
pub struct Order {
    order_id: OrderId,
    customer_id: CustomerId,
    order_date: DateTime<Utc>,
    items: Vec<OrderItem>,
    total_amount: Money,
    currency: Currency,
    status: OrderStatus,
}

impl Order {
    /// Builds an order, checking every cross-field rule and reporting all failures together
    /// (`items` empty, `totalAmount` not positive, `totalAmount` not the sum of the lines).
    pub fn new(
        order_id: OrderId,
        customer_id: CustomerId,
        order_date: DateTime<Utc>,
        items: Vec<OrderItem>,
        total_amount: Money,
        currency: Currency,
        status: OrderStatus,
    ) -> Result<Self, DomainError> {
        let mut errors = Vec::new();
        if items.is_empty() {
            errors.push(FieldError {
                field: "items".into(),
                violation: Violation::NoItems,
            });
        }
        if !total_amount.is_positive() {
            errors.push(FieldError {
                field: "totalAmount".into(),
                violation: Violation::NotPositive,
            });
        }
        match Money::checked_sum(items.iter().map(OrderItem::line_total)) {
            None => errors.push(FieldError {
                field: "items".into(),
                violation: Violation::Overflow,
            }),
            Some(sum) if !items.is_empty() && sum != total_amount => errors.push(FieldError {
                field: "totalAmount".into(),
                violation: Violation::TotalMismatch {
                    expected: sum.to_string(),
                    actual: total_amount.to_string(),
                },
            }),
            Some(_) => {}
        }
        if let Some(err) = DomainError::from_errors(errors) {
            return Err(err);
        }
        Ok(Order {
            order_id,
            customer_id,
            order_date: order_date.trunc_subsecs(3),
            items,
            total_amount,
            currency,
            status,
        })
    }

    /// The order's identifier (also the Kafka key).
    pub fn order_id(&self) -> &OrderId {
        &self.order_id
    }

    /// The customer.
    pub fn customer_id(&self) -> &CustomerId {
        &self.customer_id
    }

    /// When the order was placed (millisecond precision).
    pub fn order_date(&self) -> DateTime<Utc> {
        self.order_date
    }

    /// The lines; never empty.
    pub fn items(&self) -> &[OrderItem] {
        &self.items
    }

    /// The total; the exact sum of the lines.
    pub fn total_amount(&self) -> Money {
        self.total_amount
    }

    /// The currency of every amount.
    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// The current status.
    pub fn status(&self) -> OrderStatus {
        self.status
    }

    /// The same order with another status. The lifecycle is *not* checked here (use
    /// [`OrderStatus::can_transition_to`] or
    /// [`OrderEvent::status_updated`](crate::OrderEvent::status_updated)); no invariant of
    /// `Order` depends on the status.
    #[must_use]
    pub fn with_status(mut self, status: OrderStatus) -> Order {
        self.status = status;
        self
    }
}

/// The JSON shape of an [`Order`].
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OrderJson {
    order_id: OrderId,
    customer_id: CustomerId,
    order_date: DateTime<Utc>,
    items: Vec<OrderItem>,
    total_amount: Money,
    currency: Currency,
    status: OrderStatus,
}

impl TryFrom<OrderJson> for Order {
    type Error = DomainError;
    fn try_from(j: OrderJson) -> Result<Self, DomainError> {
        Order::new(
            j.order_id,
            j.customer_id,
            j.order_date,
            j.items,
            j.total_amount,
            j.currency,
            j.status,
        )
    }
}

impl From<Order> for OrderJson {
    fn from(o: Order) -> Self {
        OrderJson {
            order_id: o.order_id,
            customer_id: o.customer_id,
            order_date: o.order_date,
            items: o.items,
            total_amount: o.total_amount,
            currency: o.currency,
            status: o.status,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn item(id: &str, qty: i64, price: &str) -> OrderItem {
        OrderItem::new(
            ItemId::parse(id).unwrap(),
            Quantity::new(qty).unwrap(),
            Money::parse(price).unwrap(),
        )
        .unwrap()
    }

    fn order(items: Vec<OrderItem>, total: &str) -> Result<Order, DomainError> {
        Order::new(
            OrderId::parse("o-1").unwrap(),
            CustomerId::parse("c-1").unwrap(),
            Utc.with_ymd_and_hms(2024, 5, 1, 10, 0, 0).unwrap(),
            items,
            Money::parse(total).unwrap(),
            Currency::parse("EUR").unwrap(),
            OrderStatus::Pending,
        )
    }

    fn fields(err: &DomainError) -> Vec<(&str, &Violation)> {
        err.errors()
            .iter()
            .map(|e| (e.field.as_str(), &e.violation))
            .collect()
    }

    #[test]
    fn an_order_whose_total_is_the_exact_sum_of_its_lines_is_valid() {
        let o = order(vec![item("a", 2, "19.99"), item("b", 1, "0.02")], "40.00").unwrap();
        assert_eq!(o.total_amount(), Money::parse("40.00").unwrap());
        assert_eq!(o.items().len(), 2);
    }

    #[test]
    fn a_total_off_by_one_cent_is_rejected_with_both_amounts() {
        let err = order(vec![item("a", 3, "0.10")], "0.31").unwrap_err();
        assert_eq!(
            fields(&err),
            vec![(
                "totalAmount",
                &Violation::TotalMismatch {
                    expected: "0.30".into(),
                    actual: "0.31".into()
                }
            )]
        );
    }

    #[test]
    fn an_empty_order_with_a_zero_total_lists_both_fields() {
        let err = order(vec![], "0").unwrap_err();
        assert_eq!(
            fields(&err),
            vec![
                ("items", &Violation::NoItems),
                ("totalAmount", &Violation::NotPositive)
            ]
        );
    }

    #[test]
    fn an_empty_order_with_a_positive_total_reports_only_the_missing_items() {
        let err = order(vec![], "5.00").unwrap_err();
        assert_eq!(fields(&err), vec![("items", &Violation::NoItems)]);
    }

    #[test]
    fn lines_that_add_up_beyond_the_maximum_are_an_overflow() {
        let big = item("a", 1, "9999999999999.99");
        let err = order(vec![big.clone(), big], "9999999999999.99").unwrap_err();
        assert_eq!(fields(&err), vec![("items", &Violation::Overflow)]);
    }

    #[test]
    fn a_free_item_is_rejected() {
        let err = OrderItem::new(
            ItemId::parse("a").unwrap(),
            Quantity::new(1).unwrap(),
            Money::ZERO,
        )
        .unwrap_err();
        assert_eq!(fields(&err), vec![("price", &Violation::NotPositive)]);
    }

    #[test]
    fn a_line_total_beyond_the_maximum_is_rejected() {
        let err = OrderItem::new(
            ItemId::parse("a").unwrap(),
            Quantity::new(10_000).unwrap(),
            Money::parse("1000000000000.00").unwrap(),
        )
        .unwrap_err();
        assert_eq!(fields(&err), vec![("price", &Violation::Overflow)]);
    }

    #[test]
    fn the_order_date_is_truncated_to_milliseconds() {
        let precise = Utc.timestamp_opt(1_700_000_000, 123_456_789).unwrap();
        let o = Order::new(
            OrderId::parse("o").unwrap(),
            CustomerId::parse("c").unwrap(),
            precise,
            vec![item("a", 1, "1")],
            Money::parse("1").unwrap(),
            Currency::parse("EUR").unwrap(),
            OrderStatus::Pending,
        )
        .unwrap();
        assert_eq!(o.order_date().timestamp_subsec_nanos(), 123_000_000);
    }

    #[test]
    fn json_uses_camel_case_and_round_trips() {
        let o = order(vec![item("sku-1", 2, "19.99")], "39.98").unwrap();
        let json = serde_json::to_value(&o).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "orderId": "o-1",
                "customerId": "c-1",
                "orderDate": "2024-05-01T10:00:00Z",
                "items": [{"itemId": "sku-1", "quantity": 2, "price": 19.99}],
                "totalAmount": 39.98,
                "currency": "EUR",
                "status": "pending"
            })
        );
        let back: Order = serde_json::from_value(json).unwrap();
        assert_eq!(back, o);
    }

    #[test]
    fn json_orders_go_through_the_same_checks() {
        let bad = r#"{"orderId":"o-1","customerId":"c-1","orderDate":"2024-05-01T10:00:00Z",
            "items":[{"itemId":"a","quantity":3,"price":0.10}],"totalAmount":0.31,
            "currency":"EUR","status":"pending"}"#;
        let err = serde_json::from_str::<Order>(bad).unwrap_err();
        assert!(
            err.to_string()
                .contains("totalAmount: is 0.31 but the items add up to 0.30"),
            "{err}"
        );
        let bad_item = r#"{"orderId":"o-1","customerId":"c-1","orderDate":"2024-05-01T10:00:00Z",
            "items":[{"itemId":"a","quantity":0,"price":0.10}],"totalAmount":0.31,
            "currency":"EUR","status":"pending"}"#;
        assert!(serde_json::from_str::<Order>(bad_item).is_err());
    }

    #[test]
    fn with_status_changes_only_the_status() {
        let o = order(vec![item("a", 1, "1.00")], "1.00").unwrap();
        let shipped = o.clone().with_status(OrderStatus::Shipped);
        assert_eq!(shipped.status(), OrderStatus::Shipped);
        assert_eq!(shipped.with_status(OrderStatus::Pending), o);
    }
}
