//! Shared test support: proptest strategies for arbitrary *valid* orders and events, and
//! helpers to write Avro datums with any writer schema.
#![allow(dead_code, clippy::unwrap_used)]

use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use chrono::{DateTime, Utc};
use order_events::{
    Currency, CustomerId, EventType, ItemId, Money, Order, OrderEvent, OrderId, OrderItem,
    OrderStatus, Quantity,
};
use proptest::prelude::*;
use uuid::Uuid;

/// The largest amount in cents.
pub const MAX_CENTS: i64 = 999_999_999_999_999;

/// Years 0001 to 9999, in milliseconds since the epoch.
pub fn millis() -> impl Strategy<Value = DateTime<Utc>> {
    (-62_135_596_800_000i64..=253_402_300_799_999)
        .prop_map(|ms| DateTime::from_timestamp_millis(ms).unwrap())
}

pub fn id_text() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._:-]{1,64}"
}

/// One item; `lines` is the number of lines of the order, so the total stays in range.
/// Prices are small (cents to hundreds), large, or the largest the line allows.
pub fn item(lines: i64) -> impl Strategy<Value = OrderItem> {
    (id_text(), 1i64..=10_000).prop_flat_map(move |(id, qty)| {
        let max_price = MAX_CENTS / (qty * lines);
        let price = prop_oneof![
            3 => 1i64..=100_000,
            2 => 1i64..=max_price,
            1 => Just(max_price),
        ];
        price.prop_map(move |cents| {
            OrderItem::new(
                ItemId::parse(id.clone()).unwrap(),
                Quantity::new(qty).unwrap(),
                Money::from_cents(cents).unwrap(),
            )
            .unwrap()
        })
    })
}

pub fn order() -> impl Strategy<Value = Order> {
    (1i64..=6).prop_flat_map(|lines| {
        (
            id_text(),
            id_text(),
            millis(),
            proptest::collection::vec(item(lines), lines as usize),
            proptest::sample::select(Currency::all().collect::<Vec<_>>()),
            proptest::sample::select(OrderStatus::ALL.to_vec()),
        )
            .prop_map(|(order_id, customer_id, date, items, currency, status)| {
                let total = Money::checked_sum(items.iter().map(OrderItem::line_total)).unwrap();
                Order::new(
                    OrderId::parse(order_id).unwrap(),
                    CustomerId::parse(customer_id).unwrap(),
                    date,
                    items,
                    total,
                    currency,
                    status,
                )
                .unwrap()
            })
    })
}

pub fn event() -> impl Strategy<Value = OrderEvent> {
    (
        1u128..=u128::MAX,
        prop_oneof![Just(1i64), 2i64..=1_000, 2i64..=i64::MAX],
        millis(),
        order(),
    )
        .prop_map(|(id, version, at, order)| {
            let event_type = if version == 1 {
                EventType::OrderCreated
            } else {
                EventType::OrderStatusUpdated
            };
            OrderEvent::new(Uuid::from_u128(id), event_type, version, at, order).unwrap()
        })
}

/// A small valid event.
pub fn sample_event() -> OrderEvent {
    let order = Order::new(
        OrderId::parse("o-1").unwrap(),
        CustomerId::parse("c-1").unwrap(),
        DateTime::from_timestamp_millis(1_714_557_600_000).unwrap(),
        vec![
            OrderItem::new(
                ItemId::parse("sku-1").unwrap(),
                Quantity::new(2).unwrap(),
                Money::parse("19.99").unwrap(),
            )
            .unwrap(),
            OrderItem::new(
                ItemId::parse("sku-2").unwrap(),
                Quantity::new(1).unwrap(),
                Money::parse("0.05").unwrap(),
            )
            .unwrap(),
        ],
        Money::parse("40.03").unwrap(),
        Currency::parse("EUR").unwrap(),
        OrderStatus::Shipped,
    )
    .unwrap();
    OrderEvent::new(
        Uuid::from_u128(0x1234),
        EventType::OrderStatusUpdated,
        3,
        DateTime::from_timestamp_millis(1_714_557_601_234).unwrap(),
        order,
    )
    .unwrap()
}

pub fn our_schema() -> &'static Schema {
    order_events::order_event_schema().unwrap()
}

pub fn fixture(name: &str) -> Schema {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    Schema::parse_str(&text).unwrap()
}

/// Writes `value` as an Avro datum of `schema` (validating it against the schema).
pub fn write(schema: &Schema, value: Value) -> Vec<u8> {
    GenericDatumWriter::builder(schema)
        .build()
        .unwrap()
        .write_value_to_vec(value)
        .unwrap()
}

/// The fields of a record value.
pub fn fields(value: Value) -> Vec<(String, Value)> {
    match value {
        Value::Record(fields) => fields,
        other => panic!("not a record: {other:?}"),
    }
}

/// Replaces (or appends) the field `name` of a record value.
pub fn set(value: Value, name: &str, new: Value) -> Value {
    let mut fields = fields(value);
    match fields.iter_mut().find(|(n, _)| n == name) {
        Some((_, v)) => *v = new,
        None => fields.push((name.to_owned(), new)),
    }
    Value::Record(fields)
}

/// Applies `f` to every item record of an event value.
pub fn map_items(value: Value, f: impl Fn(usize, Value) -> Value) -> Value {
    let fields = fields(value)
        .into_iter()
        .map(|(n, v)| {
            if n == "items" {
                match v {
                    Value::Array(items) => (
                        n,
                        Value::Array(
                            items
                                .into_iter()
                                .enumerate()
                                .map(|(i, it)| f(i, it))
                                .collect(),
                        ),
                    ),
                    other => panic!("items is not an array: {other:?}"),
                }
            } else {
                (n, v)
            }
        })
        .collect();
    Value::Record(fields)
}
