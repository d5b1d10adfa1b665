//! Topics, subjects and the Avro schema of the contract.
//!
//! Why a module: these names are the part of the contract that lives *outside* the code — in
//! Kafka, in the Schema Registry, in dashboards — so they are defined once, here, and both
//! services import them instead of spelling strings.

use std::sync::LazyLock;

use apache_avro::Schema;

use crate::error::ContractError;

/// The topic carrying [`OrderEvent`](crate::OrderEvent)s (keyed by order id).
pub const ORDER_EVENTS_TOPIC: &str = "order-events";

/// The dead-letter topic for poison records of [`ORDER_EVENTS_TOPIC`] (see
/// [`DecodeError::is_poison`](crate::DecodeError::is_poison)).
pub const ORDER_EVENTS_DLQ_TOPIC: &str = "order-events.dlq";

/// The Avro schema of an order event, as registered in the Schema Registry.
pub const ORDER_EVENT_SCHEMA: &str = include_str!("../../schemas/order-event.avsc");

/// The full name of the schema's top-level record.
pub const ORDER_EVENT_RECORD_NAME: &str = "com.example.orders.OrderEvent";

/// The Schema Registry subject of a topic's values under the TopicNameStrategy:
/// `"{topic}-value"`.
pub fn value_subject(topic: &str) -> String {
    format!("{topic}-value")
}

/// [`ORDER_EVENT_SCHEMA`], parsed once on first use.
///
/// A `Result` rather than a panic: the text is compiled in and the crate's tests parse it, so
/// an error here means a broken build, which callers report like any other start-up failure.
pub static ORDER_EVENT_AVRO_SCHEMA: LazyLock<Result<Schema, String>> =
    LazyLock::new(|| Schema::parse_str(ORDER_EVENT_SCHEMA).map_err(|e| e.to_string()));

/// The parsed contract schema (our *reader* schema when decoding).
pub fn order_event_schema() -> Result<&'static Schema, ContractError> {
    ORDER_EVENT_AVRO_SCHEMA
        .as_ref()
        .map_err(|e| ContractError::InvalidSchema(e.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::schema::{InnerDecimalSchema, RecordSchema, UuidSchema};

    fn record() -> &'static RecordSchema {
        match order_event_schema().unwrap() {
            Schema::Record(r) => r,
            other => panic!("expected a record, got {other:?}"),
        }
    }

    #[test]
    fn the_value_subject_follows_the_topic_name_strategy() {
        assert_eq!(value_subject(ORDER_EVENTS_TOPIC), "order-events-value");
        assert_eq!(value_subject("x"), "x-value");
    }

    #[test]
    fn the_bundled_schema_parses_as_the_order_event_record() {
        let r = record();
        assert_eq!(r.name.fullname(None), ORDER_EVENT_RECORD_NAME);
    }

    #[test]
    fn the_schema_has_the_contract_fields_in_order_each_with_a_doc() {
        let names: Vec<&str> = record().fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "orderId",
                "customerId",
                "orderDate",
                "items",
                "totalAmount",
                "currency",
                "status",
                "eventId",
                "eventType",
                "version",
                "occurredAt"
            ]
        );
        assert!(record().fields.iter().all(|f| f.doc.is_some()));
    }

    #[test]
    fn logical_types_are_parsed_as_logical_types() {
        let field = |n: &str| &record().fields.iter().find(|f| f.name == n).unwrap().schema;
        assert!(matches!(field("orderDate"), Schema::TimestampMillis));
        assert!(matches!(field("occurredAt"), Schema::TimestampMillis));
        assert!(matches!(field("eventId"), Schema::Uuid(UuidSchema::String)));
        match field("totalAmount") {
            Schema::Decimal(d) => {
                assert_eq!((d.precision, d.scale), (18, 2));
                assert!(matches!(d.inner, InnerDecimalSchema::Bytes));
            }
            other => panic!("expected a decimal, got {other:?}"),
        }
    }
}
