//! The Confluent framing parser, without a registry: every malformed payload is classified
//! before any network call, and no input makes it panic.

use order_events::wire::{HEADER_LEN, MAGIC_BYTE};
use order_events::{frame, parse_frame, DecodeError, Frame};
use proptest::prelude::*;

#[test]
fn a_missing_value_is_reported_as_missing() {
    assert_eq!(parse_frame(None), Err(DecodeError::MissingValue));
}

#[test]
fn an_empty_payload_is_reported_as_missing() {
    assert_eq!(parse_frame(Some(&[])), Err(DecodeError::MissingValue));
}

#[test]
fn a_payload_not_starting_with_zero_has_a_bad_magic_byte() {
    assert_eq!(
        parse_frame(Some(b"{\"orderId\":\"o-1\"}")),
        Err(DecodeError::BadMagicByte(b'{'))
    );
    assert_eq!(
        parse_frame(Some(&[1, 0, 0, 0, 1, 2])),
        Err(DecodeError::BadMagicByte(1))
    );
}

#[test]
fn a_single_wrong_byte_is_a_bad_magic_byte_rather_than_too_short() {
    assert_eq!(
        parse_frame(Some(&[0x7f])),
        Err(DecodeError::BadMagicByte(0x7f))
    );
}

#[test]
fn a_header_cut_short_is_too_short() {
    for len in 1..HEADER_LEN {
        let bytes = vec![MAGIC_BYTE; len];
        assert_eq!(
            parse_frame(Some(&bytes)),
            Err(DecodeError::TooShort),
            "{len} bytes"
        );
    }
}

#[test]
fn a_bare_header_is_a_frame_with_an_empty_datum() {
    assert_eq!(
        parse_frame(Some(&[0, 0, 0, 0, 42])),
        Ok(Frame {
            schema_id: 42,
            datum: &[]
        })
    );
}

#[test]
fn the_schema_id_is_big_endian() {
    let frame = parse_frame(Some(&[0, 0x01, 0x02, 0x03, 0x04, 0xAA, 0xBB])).unwrap();
    assert_eq!(frame.schema_id, 0x0102_0304);
    assert_eq!(frame.datum, &[0xAA, 0xBB]);
    let max = parse_frame(Some(&[0, 0xFF, 0xFF, 0xFF, 0xFF])).unwrap();
    assert_eq!(max.schema_id, u32::MAX);
}

#[test]
fn framing_writes_magic_byte_id_and_datum() {
    assert_eq!(frame(258, &[9, 8]), vec![0, 0, 0, 1, 2, 9, 8]);
    assert_eq!(frame(0, &[]), vec![0, 0, 0, 0, 0]);
}

#[test]
fn framing_errors_are_poison() {
    for e in [
        DecodeError::MissingValue,
        DecodeError::BadMagicByte(1),
        DecodeError::TooShort,
    ] {
        assert!(e.is_poison(), "{e}");
    }
}

proptest! {
    #[test]
    fn framing_then_parsing_returns_the_id_and_datum(id in any::<u32>(), datum in proptest::collection::vec(any::<u8>(), 0..256)) {
        let bytes = frame(id, &datum);
        let parsed = parse_frame(Some(&bytes)).unwrap();
        prop_assert_eq!(parsed.schema_id, id);
        prop_assert_eq!(parsed.datum, &datum[..]);
    }

    #[test]
    fn any_bytes_parse_or_fail_with_a_framing_error(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
        match parse_frame(Some(&bytes)) {
            Ok(f) => {
                prop_assert!(bytes.len() >= HEADER_LEN && bytes[0] == MAGIC_BYTE);
                prop_assert_eq!(f.datum.len(), bytes.len() - HEADER_LEN);
            }
            Err(DecodeError::MissingValue) => prop_assert!(bytes.is_empty()),
            Err(DecodeError::BadMagicByte(b)) => prop_assert_eq!(b, bytes[0]),
            Err(DecodeError::TooShort) => prop_assert!(bytes.len() < HEADER_LEN && bytes[0] == MAGIC_BYTE),
            Err(other) => prop_assert!(false, "unexpected {other}"),
        }
    }
}
