//! Schema evolution: records written with an older or a newer *compatible* writer schema are
//! read as our events through Avro schema resolution; incompatible writer schemas, and datums
//! that cannot be resolved, are classified as `UnresolvableSchema`. No registry needed: the
//! writer schemas are fixtures.

use crate::common::*;
use apache_avro::types::Value;
use order_events::{DecodeError, EventReader, OrderEvent};
use proptest::prelude::*;

/// An event as written by the newer producer: extra fields set to non-default values.
fn as_v2(event: &OrderEvent) -> Value {
    let v = map_items(event.to_avro(), |i, item| {
        set(
            item,
            "sku",
            Value::Union(1, Box::new(Value::String(format!("SKU-{i}")))),
        )
    });
    set(v, "channel", Value::String("mobile".into()))
}

/// An event as written by the older producer: plain string and longs, version as int.
fn as_v0(event: &OrderEvent) -> Value {
    let v = event.to_avro();
    let v = set(v, "eventId", Value::String(event.event_id().to_string()));
    let v = set(
        v,
        "orderDate",
        Value::Long(event.order().order_date().timestamp_millis()),
    );
    let v = set(
        v,
        "occurredAt",
        Value::Long(event.occurred_at().timestamp_millis()),
    );
    set(
        v,
        "version",
        Value::Int(i32::try_from(event.version()).unwrap()),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn events_written_by_a_newer_compatible_schema_are_read(event in event()) {
        let writer = fixture("order-event-v2-newer.avsc");
        let datum = write(&writer, as_v2(&event));
        let back = EventReader::new().read(2, &writer, &datum).unwrap();
        prop_assert_eq!(back, event);
    }

    #[test]
    fn events_written_by_an_older_compatible_schema_are_read(event in event()) {
        prop_assume!(i32::try_from(event.version()).is_ok());
        let writer = fixture("order-event-v0-older.avsc");
        let datum = write(&writer, as_v0(&event));
        let back = EventReader::new().read(1, &writer, &datum).unwrap();
        prop_assert_eq!(back, event);
    }
}

#[test]
fn the_newer_schema_is_accepted_although_it_has_a_status_we_do_not_know() {
    let writer = fixture("order-event-v2-newer.avsc");
    let (_, identical) = EventReader::new().check_writer(2, &writer).unwrap();
    assert!(!identical, "a newer schema must go through resolution");
}

#[test]
fn a_record_with_a_status_only_the_newer_schema_knows_is_unresolvable() {
    let writer = fixture("order-event-v2-newer.avsc");
    let value = set(
        as_v2(&sample_event()),
        "status",
        Value::Enum(5, "returned".into()),
    );
    let datum = write(&writer, value);
    let err = EventReader::new().read(2, &writer, &datum).unwrap_err();
    match &err {
        DecodeError::UnresolvableSchema {
            schema_id: 2,
            reason,
        } => {
            assert!(reason.contains("returned"), "{reason}")
        }
        other => panic!("expected unresolvable, got {other}"),
    }
    assert!(err.is_poison());
}

#[test]
fn a_writer_schema_without_a_field_we_need_is_unresolvable() {
    let writer = fixture("order-event-incompatible-no-currency.avsc");
    let value = Value::Record(
        fields(sample_event().to_avro())
            .into_iter()
            .filter(|(n, _)| n != "currency")
            .collect(),
    );
    let datum = write(&writer, value);
    let err = EventReader::new().read(4, &writer, &datum).unwrap_err();
    match err {
        DecodeError::UnresolvableSchema {
            schema_id: 4,
            reason,
        } => {
            assert!(reason.contains("currency"), "{reason}")
        }
        other => panic!("expected unresolvable, got {other}"),
    }
}

#[test]
fn a_writer_schema_with_another_decimal_scale_is_unresolvable() {
    let writer = fixture("order-event-incompatible-scale.avsc");
    let err = EventReader::new().check_writer(5, &writer).unwrap_err();
    assert!(
        matches!(err, DecodeError::UnresolvableSchema { schema_id: 5, .. }),
        "{err}"
    );
}

#[test]
fn the_verdict_is_cached_per_schema_id() {
    let reader = EventReader::new();
    let incompatible = fixture("order-event-incompatible-no-currency.avsc");
    assert!(reader.check_writer(7, &incompatible).is_err());
    // Schema ids are immutable in a registry, so the first verdict for an id stands.
    assert!(reader.check_writer(7, our_schema()).is_err());
    let (_, identical) = reader.check_writer(8, our_schema()).unwrap();
    assert!(identical, "our own schema needs no resolution");
}
