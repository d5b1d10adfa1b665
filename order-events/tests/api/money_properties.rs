//! Properties of `Money`: text and JSON representations are exact for every amount, and
//! out-of-range amounts are rejected rather than altered.

use order_events::{Money, Quantity, Violation};
use proptest::prelude::*;

const MAX_CENTS: i64 = 999_999_999_999_999;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn display_then_parse_round_trips_for_any_i64_cents(cents in any::<i64>()) {
        match Money::from_cents(cents) {
            Ok(m) => {
                prop_assert!((0..=MAX_CENTS).contains(&cents));
                let text = m.to_string();
                prop_assert_eq!(Money::parse(&text).unwrap(), m);
                prop_assert_eq!(m.cents(), cents);
                // Always exactly two decimal places.
                prop_assert_eq!(text.split_once('.').map(|(_, f)| f.len()), Some(2));
            }
            Err(e) => {
                prop_assert!(!(0..=MAX_CENTS).contains(&cents));
                let expected_negative = cents < 0;
                prop_assert_eq!(matches!(e.errors()[0].violation, Violation::Negative), expected_negative);
            }
        }
    }

    #[test]
    fn the_decimal_view_round_trips(cents in 0i64..=MAX_CENTS) {
        let m = Money::from_cents(cents).unwrap();
        let d = m.to_decimal();
        prop_assert_eq!(d.scale(), 2);
        prop_assert_eq!(Money::from_decimal(d).unwrap(), m);
        prop_assert_eq!(d.to_string(), m.to_string());
    }

    #[test]
    fn json_numbers_round_trip_exactly(cents in prop_oneof![0i64..=10_000, 0i64..=MAX_CENTS]) {
        let m = Money::from_cents(cents).unwrap();
        let json = serde_json::to_string(&m).unwrap();
        // A JSON number, not a string.
        prop_assert!(json.bytes().all(|b| b.is_ascii_digit() || b == b'.'), "{}", json);
        prop_assert_eq!(serde_json::from_str::<Money>(&json).unwrap(), m);
        // The number's digits are the amount's digits.
        prop_assert_eq!(Money::parse(&json).unwrap(), m);
    }

    #[test]
    fn json_numbers_written_by_clients_with_two_places_are_read_exactly(int in 0u64..10_000_000_000_000, frac in 0u32..100) {
        let text = format!("{int}.{frac:02}");
        let m: Money = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(m.to_string(), text);
    }

    #[test]
    fn a_third_decimal_digit_is_always_rejected(int in 0u64..10_000_000_000, frac in 0u32..1000) {
        prop_assume!(frac % 10 != 0);
        let text = format!("{int}.{frac:03}");
        prop_assert!(Money::parse(&text).is_err());
        prop_assert!(serde_json::from_str::<Money>(&text).is_err());
    }

    #[test]
    fn checked_arithmetic_is_exact_or_none(a in 0i64..=MAX_CENTS, b in 0i64..=MAX_CENTS, q in 1i64..=10_000) {
        let (ma, mb) = (Money::from_cents(a).unwrap(), Money::from_cents(b).unwrap());
        match ma.checked_add(mb) {
            Some(s) => prop_assert_eq!(s.cents(), a + b),
            None => prop_assert!(a + b > MAX_CENTS),
        }
        match ma.checked_mul_quantity(Quantity::new(q).unwrap()) {
            Some(p) => prop_assert_eq!(i128::from(p.cents()), i128::from(a) * i128::from(q)),
            None => prop_assert!(i128::from(a) * i128::from(q) > i128::from(MAX_CENTS)),
        }
    }
}
