//! The domain model of the contract: values that can only exist when valid.
//!
//! Why this module exists: both services exchange, store and act on orders; if validation were
//! a function each of them had to remember to call, one of them eventually would not. Instead
//! every type here *parses*: its only constructor checks the rules and there is no way to
//! build an invalid value past the edge (fields are private; serde goes through the same
//! constructors via `try_from`). Code that holds an [`Order`] never re-checks it.
//!
//! * [`ids`] — [`OrderId`], [`CustomerId`], [`ItemId`]
//! * [`money`] — [`Money`]
//! * [`quantity`] — [`Quantity`]
//! * [`currency`] — [`Currency`]
//! * [`status`] — [`OrderStatus`] with its lifecycle ([`Transition`]), and [`EventType`]
//! * [`order`] — [`OrderItem`], [`Order`]
//! * [`event`] — [`OrderEvent`]

pub mod currency;
pub mod event;
pub mod ids;
pub mod money;
pub mod order;
pub mod quantity;
pub mod status;

pub use currency::Currency;
pub use event::OrderEvent;
pub use ids::{CustomerId, ItemId, OrderId, MAX_ID_LEN};
pub use money::Money;
pub use order::{Order, OrderItem};
pub use quantity::Quantity;
pub use status::{EventType, OrderStatus, Transition};
