//! [`OrderStatus`] with its lifecycle, and [`EventType`].
//!
//! Why a module: the lifecycle is the one rule both services must agree on — CartService must
//! not emit a transition OrderService would refuse — so it lives in the contract, as data
//! ([`OrderStatus::can_transition_to`]) rather than as scattered `if`s.
//!
//! ```text
//! pending ──▶ confirmed ──▶ shipped ──▶ delivered
//!    │            │
//!    └────────────┴──▶ cancelled
//! ```
//!
//! Moving to the status an order already has is a [`Transition::NoOp`]: redelivered or
//! repeated requests are idempotent instead of errors.

use std::fmt;
use std::str::FromStr;

use crate::error::{DomainError, Violation};

/// The status of an order. JSON and Avro use the lowercase names (`pending`, …).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    /// Placed, not yet confirmed.
    Pending,
    /// Confirmed (e.g. paid, stock reserved).
    Confirmed,
    /// Handed to the carrier.
    Shipped,
    /// Received by the customer; final.
    Delivered,
    /// Cancelled before shipping; final.
    Cancelled,
}

/// The answer of [`OrderStatus::can_transition_to`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transition {
    /// The lifecycle allows this move.
    Allowed,
    /// The order already has this status: nothing to do, and not an error.
    NoOp,
    /// The lifecycle forbids this move (e.g. `shipped -> pending`, or leaving a final status).
    NotAllowed,
}

impl OrderStatus {
    /// Every status, in lifecycle (and Avro symbol) order.
    pub const ALL: [OrderStatus; 5] = [
        OrderStatus::Pending,
        OrderStatus::Confirmed,
        OrderStatus::Shipped,
        OrderStatus::Delivered,
        OrderStatus::Cancelled,
    ];
    /// The contract's name of this field, used in error messages.
    pub const FIELD: &'static str = "status";
    const SYMBOLS: &'static str = "pending, confirmed, shipped, delivered, cancelled";

    /// The lowercase name, which is also the Avro enum symbol.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Confirmed => "confirmed",
            OrderStatus::Shipped => "shipped",
            OrderStatus::Delivered => "delivered",
            OrderStatus::Cancelled => "cancelled",
        }
    }

    /// Parses a lowercase name.
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == raw)
            .ok_or_else(|| {
                DomainError::new(
                    Self::FIELD,
                    Violation::UnknownSymbol {
                        expected: Self::SYMBOLS,
                        actual: raw.to_owned(),
                    },
                )
            })
    }

    /// The position of this status among the Avro enum's symbols.
    pub fn avro_index(self) -> u32 {
        match self {
            OrderStatus::Pending => 0,
            OrderStatus::Confirmed => 1,
            OrderStatus::Shipped => 2,
            OrderStatus::Delivered => 3,
            OrderStatus::Cancelled => 4,
        }
    }

    /// Whether no transition leads out of this status.
    pub fn is_final(self) -> bool {
        matches!(self, OrderStatus::Delivered | OrderStatus::Cancelled)
    }

    /// Whether an order in this status may move to `next`; see the [module
    /// documentation](self) for the lifecycle.
    pub fn can_transition_to(self, next: OrderStatus) -> Transition {
        use OrderStatus::*;
        if self == next {
            return Transition::NoOp;
        }
        match (self, next) {
            (Pending, Confirmed)
            | (Confirmed, Shipped)
            | (Shipped, Delivered)
            | (Pending, Cancelled)
            | (Confirmed, Cancelled) => Transition::Allowed,
            _ => Transition::NotAllowed,
        }
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OrderStatus {
    type Err = DomainError;
    fn from_str(raw: &str) -> Result<Self, DomainError> {
        OrderStatus::parse(raw)
    }
}

/// What kind of change an [`OrderEvent`](crate::OrderEvent) records. JSON and Avro use
/// `ORDER_CREATED` and `ORDER_STATUS_UPDATED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventType {
    /// The first event of an order; its version is 1.
    OrderCreated,
    /// A status change; its version is 2 or more.
    OrderStatusUpdated,
}

impl EventType {
    /// Both event types, in Avro symbol order.
    pub const ALL: [EventType; 2] = [EventType::OrderCreated, EventType::OrderStatusUpdated];
    /// The contract's name of this field, used in error messages.
    pub const FIELD: &'static str = "eventType";
    const SYMBOLS: &'static str = "ORDER_CREATED, ORDER_STATUS_UPDATED";

    /// The name, which is also the Avro enum symbol.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::OrderCreated => "ORDER_CREATED",
            EventType::OrderStatusUpdated => "ORDER_STATUS_UPDATED",
        }
    }

    /// Parses a name such as `ORDER_CREATED`.
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == raw)
            .ok_or_else(|| {
                DomainError::new(
                    Self::FIELD,
                    Violation::UnknownSymbol {
                        expected: Self::SYMBOLS,
                        actual: raw.to_owned(),
                    },
                )
            })
    }

    /// The position of this type among the Avro enum's symbols.
    pub fn avro_index(self) -> u32 {
        match self {
            EventType::OrderCreated => 0,
            EventType::OrderStatusUpdated => 1,
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = DomainError;
    fn from_str(raw: &str) -> Result<Self, DomainError> {
        EventType::parse(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::OrderStatus::*;
    use super::*;

    #[test]
    fn the_happy_path_moves_forward_one_step_at_a_time() {
        assert_eq!(Pending.can_transition_to(Confirmed), Transition::Allowed);
        assert_eq!(Confirmed.can_transition_to(Shipped), Transition::Allowed);
        assert_eq!(Shipped.can_transition_to(Delivered), Transition::Allowed);
    }

    #[test]
    fn cancelling_is_allowed_only_before_shipping() {
        assert_eq!(Pending.can_transition_to(Cancelled), Transition::Allowed);
        assert_eq!(Confirmed.can_transition_to(Cancelled), Transition::Allowed);
        assert_eq!(Shipped.can_transition_to(Cancelled), Transition::NotAllowed);
        assert_eq!(
            Delivered.can_transition_to(Cancelled),
            Transition::NotAllowed
        );
    }

    #[test]
    fn the_same_status_again_is_a_no_op() {
        for s in OrderStatus::ALL {
            assert_eq!(s.can_transition_to(s), Transition::NoOp);
        }
    }

    #[test]
    fn skipping_going_back_and_leaving_a_final_status_are_not_allowed() {
        assert_eq!(Pending.can_transition_to(Shipped), Transition::NotAllowed);
        assert_eq!(Pending.can_transition_to(Delivered), Transition::NotAllowed);
        assert_eq!(Shipped.can_transition_to(Pending), Transition::NotAllowed);
        assert_eq!(Confirmed.can_transition_to(Pending), Transition::NotAllowed);
        assert_eq!(Cancelled.can_transition_to(Pending), Transition::NotAllowed);
        assert_eq!(Delivered.can_transition_to(Shipped), Transition::NotAllowed);
    }

    #[test]
    fn exactly_five_transitions_are_allowed() {
        let allowed = OrderStatus::ALL
            .iter()
            .flat_map(|a| OrderStatus::ALL.iter().map(move |b| (*a, *b)))
            .filter(|(a, b)| a.can_transition_to(*b) == Transition::Allowed)
            .count();
        assert_eq!(allowed, 5);
    }

    #[test]
    fn final_statuses_allow_no_transition() {
        for s in OrderStatus::ALL.into_iter().filter(|s| s.is_final()) {
            assert!(OrderStatus::ALL
                .iter()
                .all(|n| s.can_transition_to(*n) != Transition::Allowed));
        }
    }

    #[test]
    fn statuses_are_lowercase_in_json_and_text() {
        assert_eq!(serde_json::to_string(&Cancelled).unwrap(), "\"cancelled\"");
        assert_eq!(
            serde_json::from_str::<OrderStatus>("\"shipped\"").unwrap(),
            Shipped
        );
        assert!(serde_json::from_str::<OrderStatus>("\"SHIPPED\"").is_err());
        for s in OrderStatus::ALL {
            assert_eq!(s.as_str().parse::<OrderStatus>().unwrap(), s);
        }
        assert!(OrderStatus::parse("returned").is_err());
    }

    #[test]
    fn avro_indexes_follow_the_symbol_order() {
        for (i, s) in OrderStatus::ALL.into_iter().enumerate() {
            assert_eq!(s.avro_index() as usize, i);
        }
        for (i, t) in EventType::ALL.into_iter().enumerate() {
            assert_eq!(t.avro_index() as usize, i);
        }
    }

    #[test]
    fn event_types_are_screaming_snake_case() {
        assert_eq!(
            serde_json::to_string(&EventType::OrderStatusUpdated).unwrap(),
            "\"ORDER_STATUS_UPDATED\""
        );
        assert_eq!(
            serde_json::from_str::<EventType>("\"ORDER_CREATED\"").unwrap(),
            EventType::OrderCreated
        );
        assert_eq!(
            "ORDER_CREATED".parse::<EventType>().unwrap(),
            EventType::OrderCreated
        );
        assert!(EventType::parse("order_created").is_err());
    }
}
