//! Reading a datum written with *any* compatible writer schema as our [`OrderEvent`].
//!
//! Why a module, separate from the registry client: this is the part of decoding that is pure
//! (writer schema + bytes in, event or classified error out), so schema evolution can be
//! tested without a network, and the classification stays in one place:
//!
//! 1. Is the writer schema resolvable to our reader schema at all? Checked with Avro's schema
//!    compatibility rules once per schema id and cached (both verdicts), so a stream of records
//!    from an incompatible producer costs one check, not one per record. No →
//!    [`DecodeError::UnresolvableSchema`].
//! 2. Do the bytes decode with the writer schema, with nothing left over? No →
//!    [`DecodeError::CorruptAvro`].
//! 3. Does the decoded value resolve to our schema (extra writer fields dropped, defaults for
//!    missing ones filled in, enum symbols mapped)? No → [`DecodeError::UnresolvableSchema`]
//!    (possible per datum even for a compatible schema, e.g. an enum symbol we do not know).
//! 4. Does the resolved record satisfy the domain rules? No → [`DecodeError::Domain`].
//!
//! When the writer schema is exactly ours (the usual case: CartService writes with it), step 3
//! is skipped: resolving a value against the schema it was decoded with changes nothing, and
//! it was an eighth of OrderService's CPU time while catching up (BENCHMARKS.md).
//!
//! # Allocation limit
//! `apache-avro` sizes a collection from the count its header *claims* before reading any
//! element, bounded only by a process-wide allocation limit (512 MiB by default): a 16-byte
//! payload could make a consumer reserve half a gigabyte, per record. Every [`EventReader`]
//! lowers that limit once, before its first decode, to [`MAX_AVRO_ALLOCATION_BYTES`]
//! ([`limit_avro_allocations`]); a claim beyond it is a [`DecodeError::CorruptAvro`] (poison).
//!
//! Step 1 uses `apache-avro`'s `SchemaCompatibility`, which compares a named type by
//! reference only with another reference: a writer that *first defines* a type we define
//! elsewhere (e.g. a new field of type `OrderStatus` placed before `status`) is reported as
//! incompatible. Keep new fields after the existing ones, as is customary anyway.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::{Once, PoisonError, RwLock};

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::Schema;

use crate::avro::widen_decimals;
use crate::domain::OrderEvent;
use crate::error::DecodeError;
use crate::schema::order_event_schema;

/// The most `apache-avro` may allocate at once while decoding (one string, bytes value or
/// collection), set process-wide by [`limit_avro_allocations`]: 16 MiB.
///
/// Why 16 MiB: a datum is at most one Kafka record, 1 MiB with the broker's default
/// `message.max.bytes`. Its largest string or bytes value is therefore under 1 MiB, and its
/// largest collection, `items`, holds fewer than 1 MiB / 5 bytes (the smallest valid item:
/// a one-character id, a one-byte quantity, a one-byte decimal, each with its length) ≈ 210,000
/// values of 56 bytes (`size_of::<Value>()`), about 11 MiB. So a record up to the broker's
/// default limit always fits, with room to spare (CartService's largest, 100 items, needs
/// under 5 KiB), while a forged count costs at most 16 MiB instead of 512 MiB.
pub const MAX_AVRO_ALLOCATION_BYTES: usize = 16 * 1024 * 1024;

static AVRO_ALLOCATION_LIMIT: Once = Once::new();

/// Sets `apache-avro`'s process-wide allocation limit to [`MAX_AVRO_ALLOCATION_BYTES`] (the
/// first call does; later calls only read it) and returns the limit in force.
///
/// The library keeps the first value it is given, and takes its default on its first decode,
/// so this must run before any decode in the process: [`EventReader::new`] (and so
/// [`OrderEventCodec::new`](crate::OrderEventCodec::new)) and [`EventReader::read`] call it.
/// The result differs from [`MAX_AVRO_ALLOCATION_BYTES`] only if something else in the
/// process decoded Avro (or set the limit) first.
pub fn limit_avro_allocations() -> usize {
    AVRO_ALLOCATION_LIMIT.call_once(|| {
        apache_avro::util::max_allocation_bytes(MAX_AVRO_ALLOCATION_BYTES);
    });
    apache_avro::util::max_allocation_bytes(MAX_AVRO_ALLOCATION_BYTES)
}

/// Decodes datums of registered writer schemas into [`OrderEvent`]s, caching per schema id
/// whether the writer schema resolves to ours. Cheap to share (`&self` methods, internally
/// synchronized).
#[derive(Debug)]
pub struct EventReader {
    /// Per schema id: `Ok(identical)` if it resolves to our schema (`identical`: it *is* our
    /// schema), else why not.
    verdicts: RwLock<HashMap<u32, Result<bool, String>>>,
}

impl Default for EventReader {
    fn default() -> Self {
        limit_avro_allocations();
        EventReader {
            verdicts: RwLock::default(),
        }
    }
}

impl EventReader {
    /// A reader with an empty cache; sets `apache-avro`'s allocation limit
    /// ([`limit_avro_allocations`]) if nothing has yet.
    pub fn new() -> Self {
        EventReader::default()
    }

    /// Decodes `datum` (the bytes after the Confluent header) written with `writer` (the
    /// schema registered under `schema_id`) and resolves it to our schema; see the [module
    /// documentation](self) for the steps and their errors.
    pub fn read(
        &self,
        schema_id: u32,
        writer: &Schema,
        datum: &[u8],
    ) -> Result<OrderEvent, DecodeError> {
        let (reader, identical) = self.check_writer(schema_id, writer)?;

        limit_avro_allocations();
        let mut cursor = Cursor::new(datum);
        let written = GenericDatumReader::builder(writer)
            .build()
            .and_then(|r| r.read_value(&mut cursor))
            .map_err(|e| DecodeError::CorruptAvro {
                schema_id,
                reason: e.to_string(),
            })?;
        let consumed = usize::try_from(cursor.position()).unwrap_or(usize::MAX);
        if consumed < datum.len() {
            return Err(DecodeError::CorruptAvro {
                schema_id,
                reason: format!(
                    "{} byte(s) left over after the datum: the payload was not written with this schema",
                    datum.len() - consumed
                ),
            });
        }

        let widened = widen_decimals(written);
        let resolved = if identical {
            widened
        } else {
            widened
                .resolve(reader)
                .map_err(|e| DecodeError::UnresolvableSchema {
                    schema_id,
                    reason: e.to_string(),
                })?
        };
        Ok(OrderEvent::from_avro(resolved)?)
    }

    /// Whether the writer schema of `schema_id` resolves to ours (cached); returns our schema
    /// and whether the writer schema is exactly ours.
    pub fn check_writer(
        &self,
        schema_id: u32,
        writer: &Schema,
    ) -> Result<(&'static Schema, bool), DecodeError> {
        let reader = order_event_schema().map_err(|e| DecodeError::UnresolvableSchema {
            schema_id,
            reason: e.to_string(),
        })?;
        let cached = self
            .verdicts
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&schema_id)
            .cloned();
        let verdict = match cached {
            Some(v) => v,
            None => {
                // Compared in full (logical types and all), not by canonical form, which
                // drops logical types.
                let identical =
                    serde_json::to_value(writer).ok() == serde_json::to_value(reader).ok();
                let v = SchemaCompatibility::can_read(writer, reader)
                    .map(|_| identical)
                    .map_err(|e| e.to_string());
                self.verdicts
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(schema_id, v.clone());
                v
            }
        };
        verdict
            .map(|identical| (reader, identical))
            .map_err(|reason| DecodeError::UnresolvableSchema { schema_id, reason })
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use apache_avro::types::Value;

    use super::*;
    use crate::wire::{frame, parse_frame};

    /// Avro's zig-zag varint encoding of a `long` (also used for lengths and block counts).
    fn long(value: i64) -> Vec<u8> {
        let mut n = ((value << 1) ^ (value >> 63)) as u64;
        let mut out = Vec::new();
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return out;
            }
            out.push(byte | 0x80);
        }
    }

    fn string(text: &str) -> Vec<u8> {
        let mut out = long(text.len() as i64);
        out.extend_from_slice(text.as_bytes());
        out
    }

    /// `orderId`, `customerId` and `orderDate` of a record of our schema, then an `items`
    /// array header claiming `count` items, and nothing more.
    fn payload_claiming_items(count: i64) -> Vec<u8> {
        let mut datum = [string("o-1"), string("c-1"), long(0), long(count)].concat();
        datum.push(0); // What a forger may add; the decoder must not get this far.
        frame(1, &datum)
    }

    /// Decodes a framed payload with our schema as the writer, as OrderService does for
    /// CartService's records; returns the error and how long it took.
    fn decode(payload: &[u8]) -> (Result<crate::OrderEvent, DecodeError>, Duration) {
        let frame = parse_frame(Some(payload)).unwrap();
        let ours = order_event_schema().unwrap();
        let started = Instant::now();
        let result = EventReader::new().read(frame.schema_id, ours, frame.datum);
        (result, started.elapsed())
    }

    #[test]
    fn the_allocation_limit_in_force_is_ours() {
        assert_eq!(limit_avro_allocations(), MAX_AVRO_ALLOCATION_BYTES);
    }

    #[test]
    fn an_array_claiming_two_to_the_31_items_is_a_poison_record_answered_at_once() {
        let (result, took) = decode(&payload_claiming_items(1 << 31));
        let err = result.unwrap_err();
        assert!(err.is_poison(), "{err:?}");
        match &err {
            DecodeError::CorruptAvro {
                schema_id: 1,
                reason,
            } => assert!(
                reason.contains(&format!("maximum allowed: {MAX_AVRO_ALLOCATION_BYTES}")),
                "{reason}"
            ),
            other => panic!("expected CorruptAvro, got {other:?}"),
        }
        assert!(took < Duration::from_secs(2), "took {took:?}");
    }

    /// 2^22 items of 56 bytes (`size_of::<Value>()`) is 224 MiB: under the library's default limit (512 MiB), which
    /// would reserve it all and only then fail on the missing first item.
    #[test]
    fn a_claim_under_the_library_default_but_over_our_limit_is_refused_before_allocating() {
        let (result, _) = decode(&payload_claiming_items(1 << 22));
        match result {
            Err(DecodeError::CorruptAvro { reason, .. }) => assert!(
                reason.contains(&format!("maximum allowed: {MAX_AVRO_ALLOCATION_BYTES}")),
                "refused for another reason than the allocation limit: {reason}"
            ),
            other => panic!("expected CorruptAvro, got {other:?}"),
        }
    }

    /// The reasoning behind [`MAX_AVRO_ALLOCATION_BYTES`]: a 1 MiB datum packed with the
    /// smallest valid items (5 bytes each) is a valid record and decodes.
    #[test]
    fn the_largest_collection_a_one_mebibyte_record_can_hold_fits_under_the_limit() {
        let count: i64 = 1024 * 1024 / 5;
        let needed = count as usize * std::mem::size_of::<Value>();
        assert!(needed < MAX_AVRO_ALLOCATION_BYTES, "{needed} bytes");
        let item = [string("a"), long(1), vec![2, 1]].concat(); // id "a", quantity 1, 0.01
        assert_eq!(item.len(), 5);
        let mut datum = [string("o-1"), string("c-1"), long(0), long(count)].concat();
        for _ in 0..count {
            datum.extend_from_slice(&item);
        }
        datum.push(0); // end of the array
                       // The total, count cents, as a minimal big-endian decimal (its top bit is clear).
        let total = count.to_be_bytes();
        let total = &total[5..];
        assert_eq!(total, [0x03, 0x33, 0x33]);
        datum.extend(long(total.len() as i64));
        datum.extend_from_slice(total);
        datum.extend(string("EUR"));
        datum.extend(long(0)); // status: pending
        datum.extend(string("8c5b8c2e-2b1a-4c5e-9f7d-0a1b2c3d4e5f"));
        datum.extend(long(0)); // eventType: ORDER_CREATED
        datum.extend(long(1)); // version 1
        datum.extend(long(0)); // occurredAt
        assert!(datum.len() <= 1024 * 1024 + 100);
        let (result, _) = decode(&frame(1, &datum));
        let event = result.unwrap();
        assert_eq!(event.order().items().len() as i64, count);
    }
}
