//! The Confluent wire format: `[0x00][schema id: u32 big-endian][Avro binary datum]`.
//!
//! Why a module of pure functions: the framing decides the first classification of a bad
//! record (no value, wrong magic byte, truncated header) before any network call, so it must be
//! testable on its own and must never panic on arbitrary bytes. `schema_registry_converter`
//! does the same parsing internally but reports failures as strings; here they are
//! [`DecodeError`] variants.

use crate::error::DecodeError;

/// The first byte of every Confluent-framed payload.
pub const MAGIC_BYTE: u8 = 0;

/// Length of the header: the magic byte and the 4-byte schema id.
pub const HEADER_LEN: usize = 5;

/// A payload split into its header's schema id and the Avro datum that follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The registry's global id of the writer schema.
    pub schema_id: u32,
    /// The Avro binary datum (may be empty; whether it is valid is for the Avro decoder).
    pub datum: &'a [u8],
}

/// Splits a Kafka record value into schema id and datum.
///
/// * `None` or an empty payload → [`DecodeError::MissingValue`];
/// * a first byte other than 0 → [`DecodeError::BadMagicByte`] (checked before the length, as
///   it is the more telling diagnosis: a JSON or plain-Avro payload);
/// * fewer than [`HEADER_LEN`] bytes → [`DecodeError::TooShort`].
pub fn parse_frame(payload: Option<&[u8]>) -> Result<Frame<'_>, DecodeError> {
    let bytes = match payload {
        None | Some([]) => return Err(DecodeError::MissingValue),
        Some(bytes) => bytes,
    };
    match bytes {
        [MAGIC_BYTE, a, b, c, d, datum @ ..] => Ok(Frame {
            schema_id: u32::from_be_bytes([*a, *b, *c, *d]),
            datum,
        }),
        [MAGIC_BYTE, ..] => Err(DecodeError::TooShort),
        [other, ..] => Err(DecodeError::BadMagicByte(*other)),
        [] => Err(DecodeError::MissingValue),
    }
}

/// Frames an Avro datum: magic byte, big-endian schema id, datum.
pub fn frame(schema_id: u32, datum: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + datum.len());
    out.push(MAGIC_BYTE);
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(datum);
    out
}
