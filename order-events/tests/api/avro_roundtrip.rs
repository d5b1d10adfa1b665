//! Events survive the trip through Avro exactly (to the cent, to the millisecond), and Avro
//! records that break a domain rule come back as typed errors, never panics.

use crate::common::*;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::Decimal;
use order_events::{DecodeError, EventReader, Money, OrderEvent, Violation};
use proptest::prelude::*;

/// Decodes with `schema` as writer and reader, the way a consumer with the same schema would.
fn read_back(datum: &[u8]) -> Value {
    let schema = our_schema();
    GenericDatumReader::builder(schema)
        .reader_schema(schema)
        .build()
        .unwrap()
        .read_value(&mut &datum[..])
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_valid_event_round_trips_through_an_avro_datum(event in event()) {
        let datum = event.to_avro_datum().unwrap();
        let back = OrderEvent::from_avro(read_back(&datum)).unwrap();
        prop_assert_eq!(back, event);
    }

    #[test]
    fn any_valid_event_round_trips_through_the_event_reader(event in event()) {
        let datum = write(our_schema(), event.to_avro());
        let back = EventReader::new().read(1, our_schema(), &datum).unwrap();
        prop_assert_eq!(back, event);
    }

    #[test]
    fn the_value_tree_is_valid_for_the_schema(event in event()) {
        prop_assert!(event.to_avro().validate(our_schema()));
    }

    #[test]
    fn money_in_a_minimal_length_decimal_is_read_exactly(cents in 1i64..=MAX_CENTS) {
        // Java and most other writers use the shortest two's complement encoding.
        let minimal = minimal_be(cents);
        let event = sample_event();
        let value = map_items(event.to_avro(), |_, item| set(item, "price", Value::Decimal(Decimal::from(minimal.clone()))));
        let qty_total = |e: &OrderEvent| e.order().items().iter().map(|i| i64::from(i.quantity().get())).sum::<i64>();
        let total = cents.checked_mul(qty_total(&event));
        prop_assume!(total.is_some_and(|t| t <= MAX_CENTS));
        let total = total.unwrap();
        let value = set(value, "totalAmount", Value::Decimal(Decimal::from(minimal_be(total))));
        let datum = write(our_schema(), value);
        let back = EventReader::new().read(1, our_schema(), &datum).unwrap();
        prop_assert!(back.order().items().iter().all(|i| i.price().cents() == cents));
        prop_assert_eq!(back.order().total_amount().cents(), total);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_reader(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let reader = EventReader::new();
        match reader.read(1, our_schema(), &bytes) {
            Ok(_) | Err(DecodeError::CorruptAvro { .. } | DecodeError::Domain(_) | DecodeError::UnresolvableSchema { .. }) => {}
            Err(other) => prop_assert!(false, "unexpected {other}"),
        }
    }
}

fn minimal_be(n: i64) -> Vec<u8> {
    let bytes = n.to_be_bytes();
    let mut start = 0;
    while start < 7 && bytes[start] == 0 && bytes[start + 1] & 0x80 == 0 {
        start += 1;
    }
    bytes[start..].to_vec()
}

#[test]
fn amounts_are_written_as_eight_byte_decimals() {
    let value = sample_event().to_avro();
    let total = fields(value)
        .into_iter()
        .find(|(n, _)| n == "totalAmount")
        .unwrap()
        .1;
    let expected: Vec<u8> = 4003i64.to_be_bytes().to_vec();
    assert_eq!(total, Value::Decimal(Decimal::from(expected.clone())));
    match total {
        Value::Decimal(d) => assert_eq!(<Vec<u8>>::try_from(&d).unwrap(), expected),
        _ => unreachable!(),
    }
}

#[test]
fn the_value_tree_uses_logical_types_in_schema_order() {
    let event = sample_event();
    let names: Vec<String> = fields(event.to_avro())
        .into_iter()
        .map(|(n, _)| n)
        .collect();
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
    let f = fields(event.to_avro());
    assert_eq!(f[2].1, Value::TimestampMillis(1_714_557_600_000));
    assert_eq!(f[6].1, Value::Enum(2, "shipped".into()));
    assert_eq!(f[7].1, Value::Uuid(uuid::Uuid::from_u128(0x1234)));
    assert_eq!(f[8].1, Value::Enum(1, "ORDER_STATUS_UPDATED".into()));
    assert_eq!(f[9].1, Value::Long(3));
    assert_eq!(f[10].1, Value::TimestampMillis(1_714_557_601_234));
}

/// Writes a tampered copy of the sample event with our schema and reads it back.
fn read_tampered(tamper: impl FnOnce(Value) -> Value) -> Result<OrderEvent, DecodeError> {
    let datum = write(our_schema(), tamper(sample_event().to_avro()));
    EventReader::new().read(1, our_schema(), &datum)
}

fn domain_fields(result: Result<OrderEvent, DecodeError>) -> Vec<(String, Violation)> {
    match result {
        Err(DecodeError::Domain(e)) => e
            .into_errors()
            .into_iter()
            .map(|f| (f.field, f.violation))
            .collect(),
        other => panic!("expected a domain error, got {other:?}"),
    }
}

fn money_value(cents: i64) -> Value {
    Value::Decimal(Decimal::from(cents.to_be_bytes()))
}

#[test]
fn a_record_whose_total_does_not_add_up_is_a_domain_error() {
    let errors = domain_fields(read_tampered(|v| set(v, "totalAmount", money_value(4004))));
    assert_eq!(
        errors,
        vec![(
            "totalAmount".to_owned(),
            Violation::TotalMismatch {
                expected: "40.03".into(),
                actual: "40.04".into()
            }
        )]
    );
}

#[test]
fn every_broken_field_of_a_record_is_reported_with_its_path() {
    let errors = domain_fields(read_tampered(|v| {
        let v = set(v, "currency", Value::String("eur".into()));
        let v = set(v, "orderId", Value::String("".into()));
        let v = set(v, "version", Value::Long(0));
        let v = set(v, "eventId", Value::Uuid(uuid::Uuid::nil()));
        map_items(v, |i, item| match i {
            0 => set(item, "quantity", Value::Int(0)),
            _ => set(
                set(item, "price", money_value(-5)),
                "itemId",
                Value::String("a b".into()),
            ),
        })
    }));
    let paths: Vec<&str> = errors.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        paths,
        [
            "orderId",
            "items[0].quantity",
            "items[1].itemId",
            "items[1].price",
            "currency",
            "eventId",
            "version"
        ]
    );
    assert_eq!(errors[3].1, Violation::Negative);
}

#[test]
fn an_empty_item_list_is_a_domain_error() {
    let errors = domain_fields(read_tampered(|v| {
        let v = set(v, "items", Value::Array(vec![]));
        set(v, "totalAmount", money_value(0))
    }));
    let paths: Vec<&str> = errors.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(paths, ["items", "totalAmount"]);
}

#[test]
fn a_zero_price_is_a_domain_error_on_that_item() {
    let errors = domain_fields(read_tampered(|v| {
        map_items(v, |i, item| {
            if i == 1 {
                set(item, "price", money_value(0))
            } else {
                item
            }
        })
    }));
    assert_eq!(
        errors,
        vec![("items[1].price".to_owned(), Violation::NotPositive)]
    );
}

#[test]
fn an_amount_with_more_digits_than_money_allows_is_a_domain_error() {
    // decimal(18,2) can carry 10^16 - 0.01; the domain stops at 10^13 - 0.01.
    let errors = domain_fields(read_tampered(|v| {
        set(v, "totalAmount", money_value(999_999_999_999_999_999))
    }));
    assert!(
        matches!(errors[0].1, Violation::TooLarge { .. }),
        "{errors:?}"
    );
}

#[test]
fn an_unknown_timestamp_range_is_a_domain_error() {
    let errors = domain_fields(read_tampered(|v| {
        set(v, "occurredAt", Value::TimestampMillis(i64::MAX))
    }));
    assert_eq!(
        errors,
        vec![(
            "occurredAt".to_owned(),
            Violation::TimestampOutOfRange(i64::MAX)
        )]
    );
}

#[test]
fn a_value_of_the_wrong_shape_is_a_domain_error_not_a_panic() {
    let err = OrderEvent::from_avro(Value::Long(1)).unwrap_err();
    assert!(matches!(err.errors()[0].violation, Violation::Malformed(_)));
    let err = OrderEvent::from_avro(Value::Record(vec![])).unwrap_err();
    assert_eq!(err.errors().len(), 11, "{err}");
    let err =
        OrderEvent::from_avro(set(sample_event().to_avro(), "items", Value::Long(3))).unwrap_err();
    assert_eq!(err.errors()[0].field, "items");
}

#[test]
fn a_truncated_datum_is_corrupt_avro() {
    let datum = sample_event().to_avro_datum().unwrap();
    let err = EventReader::new()
        .read(9, our_schema(), &datum[..datum.len() - 3])
        .unwrap_err();
    assert!(
        matches!(err, DecodeError::CorruptAvro { schema_id: 9, .. }),
        "{err}"
    );
    assert!(err.is_poison());
}

#[test]
fn trailing_bytes_after_the_datum_are_corrupt_avro() {
    let mut datum = sample_event().to_avro_datum().unwrap();
    datum.extend_from_slice(&[1, 2, 3]);
    let err = EventReader::new()
        .read(9, our_schema(), &datum)
        .unwrap_err();
    match err {
        DecodeError::CorruptAvro { reason, .. } => {
            assert!(reason.contains("3 byte(s) left over"), "{reason}")
        }
        other => panic!("expected corrupt avro, got {other}"),
    }
}

#[test]
fn the_extremes_of_money_round_trip() {
    for cents in [1, 99, 100, MAX_CENTS] {
        let m = Money::from_cents(cents).unwrap();
        let event = sample_event();
        let value = map_items(event.to_avro(), |_, it| it);
        let value = set(
            set(
                value,
                "items",
                Value::Array(vec![Value::Record(vec![
                    ("itemId".into(), Value::String("x".into())),
                    ("quantity".into(), Value::Int(1)),
                    ("price".into(), money_value(cents)),
                ])]),
            ),
            "totalAmount",
            money_value(cents),
        );
        let back = EventReader::new()
            .read(1, our_schema(), &write(our_schema(), value))
            .unwrap();
        assert_eq!(back.order().total_amount(), m);
    }
}
