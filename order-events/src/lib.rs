//! The contract between CartService (producer) and OrderService (consumer).
//!
//! Both services exchange [`OrderEvent`]s — one per order state change, each carrying the
//! whole order — as Avro records on the [`ORDER_EVENTS_TOPIC`] topic, in the Confluent wire
//! format, with the schema ([`ORDER_EVENT_SCHEMA`], `schemas/order-event.avsc`) registered in a
//! Confluent-compatible Schema Registry under `order-events-value` (TopicNameStrategy). The
//! record key is the order id as plain UTF-8 ([`OrderEvent::key`]).
//!
//! This crate exists so that everything both sides must agree on is written down once, in
//! code:
//!
//! * [`schema`] — topic and subject names and the schema itself;
//! * [`domain`] — the types, which only exist when valid ("parse, don't validate"): ids,
//!   [`Money`], [`Quantity`], [`Currency`], [`OrderStatus`] and its lifecycle, [`Order`],
//!   [`OrderEvent`];
//! * [`avro`] — the explicit mapping between those types and Avro values;
//! * [`wire`] — the Confluent framing, as pure functions;
//! * [`fencing`] — which records count when CartService's ownership of a partition moves
//!   ([`Fence`]: claims in the log, one reader rule for every reader);
//! * [`partition`] — the partition of an order ID ([`partition_for`], the Java client's
//!   murmur2 partitioner), which CartService routes and produces by;
//! * [`reader`] — reading data written with any compatible (older or newer) writer schema;
//! * [`registry`] — [`RegistryConfig`] and [`RegistryArgs`]: the registry's URL, trusted CA
//!   and credentials, as Confluent names them;
//! * [`codec`] — [`OrderEventCodec`], which ties the above to the Schema Registry;
//! * [`error`] — [`DomainError`], [`DecodeError`] (with [`DecodeError::is_poison`] to tell
//!   dead-letter from retry) and [`ContractError`].
//!
//! # Producing
//! ```no_run
//! # async fn produce(order: order_events::Order) -> Result<(), Box<dyn std::error::Error>> {
//! use order_events::{OrderEvent, OrderEventCodec, RegistryConfig, ORDER_EVENTS_TOPIC};
//!
//! let codec = OrderEventCodec::new(&RegistryConfig::new("http://localhost:8081"), ORDER_EVENTS_TOPIC)?;
//! codec.register().await?; // at start-up: fail fast if the registry rejects the schema
//! let event = OrderEvent::created(uuid::Uuid::new_v4(), chrono::Utc::now(), order)?;
//! let (key, value) = (event.key().as_bytes(), codec.encode(&event).await?);
//! # let _ = (key, value);
//! # Ok(()) }
//! ```
//!
//! # Consuming
//! ```no_run
//! # async fn consume(codec: &order_events::OrderEventCodec, payload: Option<&[u8]>) {
//! match codec.decode(payload).await {
//!     Ok(event) => { /* apply it */ }
//!     Err(e) if e.is_poison() => { /* publish to ORDER_EVENTS_DLQ_TOPIC, commit */ }
//!     Err(e) => { /* registry unavailable: back off and retry, do not commit */ }
//! }
//! # }
//! ```

pub mod avro;
pub mod codec;
pub mod domain;
pub mod error;
pub mod fencing;
pub mod partition;
pub mod reader;
pub mod registry;
pub mod schema;
pub mod wire;

pub use codec::OrderEventCodec;
pub use domain::{
    Currency, CustomerId, EventType, ItemId, Money, Order, OrderEvent, OrderId, OrderItem,
    OrderStatus, Quantity, Transition, MAX_ID_LEN,
};
pub use error::{ContractError, DecodeError, DomainError, FieldError, RegistryFailure, Violation};
pub use fencing::{Fence, Fences};
pub use partition::partition_for;
pub use reader::EventReader;
pub use registry::{BasicAuth, CaCertificates, RegistryArgs, RegistryConfig};
pub use schema::{
    order_event_schema, value_subject, ORDER_EVENTS_DLQ_TOPIC, ORDER_EVENTS_TOPIC,
    ORDER_EVENT_AVRO_SCHEMA, ORDER_EVENT_RECORD_NAME, ORDER_EVENT_SCHEMA,
};
pub use wire::{frame, parse_frame, Frame};
