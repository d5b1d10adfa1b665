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
//! Step 1 uses `apache-avro`'s `SchemaCompatibility`, which compares a named type by
//! reference only with another reference: a writer that *first defines* a type we define
//! elsewhere (e.g. a new field of type `OrderStatus` placed before `status`) is reported as
//! incompatible. Keep new fields after the existing ones, as is customary anyway.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::{PoisonError, RwLock};

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::Schema;

use crate::avro::widen_decimals;
use crate::domain::OrderEvent;
use crate::error::DecodeError;
use crate::schema::order_event_schema;

/// Decodes datums of registered writer schemas into [`OrderEvent`]s, caching per schema id
/// whether the writer schema resolves to ours. Cheap to share (`&self` methods, internally
/// synchronized).
#[derive(Debug, Default)]
pub struct EventReader {
    /// Per schema id: `Ok(identical)` if it resolves to our schema (`identical`: it *is* our
    /// schema), else why not.
    verdicts: RwLock<HashMap<u32, Result<bool, String>>>,
}

impl EventReader {
    /// A reader with an empty cache.
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
