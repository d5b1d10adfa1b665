//! Arbitrary bytes after a valid Confluent header, through the contract's decode path:
//! `parse_frame`, then `EventReader::read` (writer-schema check, Avro decode under the
//! allocation limit, resolution to our schema, domain rules), as OrderService runs it for every
//! record once the registry has answered with the writer schema.
//!
//! The first input byte picks the writer schema (ours, the older and newer fixtures, the
//! QUICK_START evolution), each under its own schema id; the rest is the datum. Properties:
//! no panic; every failure is poison (bytes alone never make a record worth retrying); an
//! accepted event encodes and decodes back to itself with our schema.

#![no_main]

use std::sync::LazyLock;

use apache_avro::Schema;
use libfuzzer_sys::fuzz_target;
use order_events::{frame, order_event_schema, parse_frame, EventReader, ORDER_EVENT_SCHEMA};

/// Registry ids as a fresh registry hands them out, the contract schema first.
static WRITERS: LazyLock<Vec<(u32, Schema)>> = LazyLock::new(|| {
    [
        ORDER_EVENT_SCHEMA,
        include_str!("../../order-events/tests/fixtures/order-event-v0-older.avsc"),
        include_str!("../../order-events/tests/fixtures/order-event-v2-newer.avsc"),
        include_str!("../../docs/quick-start/order-event-gift-note.avsc"),
    ]
    .into_iter()
    .zip(1..)
    .map(|(text, id)| {
        (
            id,
            Schema::parse_str(text).expect("a bundled schema parses"),
        )
    })
    .collect()
});

static READER: LazyLock<EventReader> = LazyLock::new(EventReader::new);

fuzz_target!(|data: &[u8]| {
    let Some((&pick, datum)) = data.split_first() else {
        return;
    };
    let (schema_id, writer) = &WRITERS[usize::from(pick) % WRITERS.len()];
    let payload = frame(*schema_id, datum);
    let frame = parse_frame(Some(&payload)).expect("a valid header parses");
    assert_eq!((frame.schema_id, frame.datum), (*schema_id, datum));

    match READER.read(frame.schema_id, writer, frame.datum) {
        Ok(event) => {
            let ours = order_event_schema().expect("the contract schema parses");
            let bytes = event.to_avro_datum().expect("a decoded event encodes");
            let again = READER
                .read(1, ours, &bytes)
                .expect("an encoded event decodes");
            assert_eq!(again, event);
        }
        Err(e) => assert!(e.is_poison(), "bytes alone made a transient error: {e:?}"),
    }
});
