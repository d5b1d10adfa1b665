//! [`Money`]: a non-negative amount with exactly two decimal places.
//!
//! Why a type: amounts must never pass through binary floating point, must never be rounded
//! silently, and must add up exactly (an order's total is checked to the cent). `Money` keeps
//! the amount as a whole number of cents and exposes it as a [`rust_decimal::Decimal`] with
//! scale 2.
//!
//! # Range
//! `0.00` to [`Money::MAX`] = `9 999 999 999 999.99` (15 significant digits). The Avro field
//! is `decimal(18, 2)`, which has room for more; the tighter domain bound is what makes the JSON
//! representation below exact, and leaves the schema room to grow without a breaking change
//! (changing a decimal's precision is not a compatible Avro schema change).
//!
//! # Text
//! [`Money::parse`] accepts plain decimal numbers: digits, optionally a `.` and more digits
//! (`19.99`, `19.9`, `19`, `0.50`). No sign, exponent, separators or whitespace. Digits beyond
//! the second decimal place must be zeros (`1.50` and `1.500` are the same whole number of
//! cents); `1.005` is rejected, never rounded. [`Display`](std::fmt::Display) always writes
//! two places: `19.90`.
//!
//! # JSON
//! Serialized as a JSON **number** (`19.99`), deserialized from a JSON number *or* a string
//! (`"19.99"`).
//!
//! The workspace's `serde_json` is built without `arbitrary_precision` (turning it on changes
//! how every crate in the workspace sees numbers: `flatten`/`untagged` break, `Value` equality
//! changes), so serde hands us numbers as `f64`. That is still exact here, and this is why:
//! every amount in range has at most 15 significant digits, every decimal with at most 15
//! significant digits survives the trip to the nearest `f64` and back through the shortest
//! round-trip representation unchanged (IEEE 754 double guarantees 15), so
//! * writing: `cents as f64 / 100.0` is the double nearest the amount and `serde_json` prints it
//!   with the shortest representation, i.e. the decimal digits of the amount;
//! * reading: the shortest representation of the received `f64` is the decimal the client
//!   wrote, which is then parsed by the same exact rules as text (so `1.005` is rejected).
//!
//! Numbers of 10 000 000 000 000 or more are rejected before that step. The one thing an `f64`
//! cannot tell us is digits the client wrote *beyond* 17 significant digits
//! (`19.990000000000000001` arrives as `19.99`); send a string if that distinction matters.

use std::fmt;

use rust_decimal::Decimal;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::domain::Quantity;
use crate::error::{DomainError, Violation};

/// A non-negative amount of money with exactly two decimal places; see the [module
/// documentation](self) for the rules.
///
/// The currency is not part of the value: an [`Order`](crate::Order) carries one currency for
/// all of its amounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Money {
    /// Invariant: `0 <= cents <= MAX_CENTS`.
    cents: i64,
}

/// The largest amount, in cents: 9 999 999 999 999.99.
const MAX_CENTS: i64 = 999_999_999_999_999;

impl Money {
    /// The default name of a money field in error messages; callers rename it to the real
    /// field (`price`, `totalAmount`).
    pub const FIELD: &'static str = "amount";
    /// The number of decimal places of every amount.
    pub const SCALE: u32 = 2;
    /// Zero.
    pub const ZERO: Money = Money { cents: 0 };
    /// The largest amount: 9 999 999 999 999.99.
    pub const MAX: Money = Money { cents: MAX_CENTS };

    /// An amount from a whole number of cents; rejects negative amounts and amounts above
    /// [`Money::MAX`].
    pub fn from_cents(cents: i64) -> Result<Self, DomainError> {
        if cents < 0 {
            Err(DomainError::new(Self::FIELD, Violation::Negative))
        } else if cents > MAX_CENTS {
            Err(too_large(&format_cents(i128::from(cents))))
        } else {
            Ok(Money { cents })
        }
    }

    /// Parses an amount written as a plain decimal number such as `19.99`; see the [module
    /// documentation](self).
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let (int_part, frac_part) = match raw.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (raw, None),
        };
        if let Some(rest) = int_part.strip_prefix('-') {
            let looks_numeric = !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit());
            if looks_numeric {
                return Err(DomainError::new(Self::FIELD, Violation::Negative));
            }
        }
        let digits_ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits_ok(int_part) || frac_part.is_some_and(|f| !digits_ok(f)) {
            return Err(DomainError::new(
                Self::FIELD,
                Violation::NotADecimal(raw.to_owned()),
            ));
        }
        let frac = frac_part.unwrap_or("");
        let (cents_digits, beyond) = frac.split_at(frac.len().min(2));
        if beyond.bytes().any(|b| b != b'0') {
            return Err(DomainError::new(
                Self::FIELD,
                Violation::TooManyDecimalPlaces(raw.to_owned()),
            ));
        }
        let significant = int_part.trim_start_matches('0');
        // 13 integer digits is the most MAX allows; more cannot be in range (and could
        // overflow the arithmetic below).
        if significant.len() > 13 {
            return Err(too_large(raw));
        }
        let mut cents: i64 = 0;
        for b in significant.bytes() {
            cents = cents * 10 + i64::from(b - b'0');
        }
        let mut frac_cents: i64 = 0;
        for (i, b) in cents_digits.bytes().enumerate() {
            frac_cents += i64::from(b - b'0') * if i == 0 { 10 } else { 1 };
        }
        Money::from_cents(cents * 100 + frac_cents).map_err(|_| too_large(raw))
    }

    /// Like [`Money::parse`], and additionally requires the amount to be greater than zero (a
    /// price).
    pub fn parse_positive(raw: &str) -> Result<Self, DomainError> {
        Money::parse(raw)?.ensure_positive()
    }

    /// An amount from a decimal; rejects negative values, values above [`Money::MAX`] and
    /// values that are not a whole number of cents.
    pub fn from_decimal(value: Decimal) -> Result<Self, DomainError> {
        if value.is_sign_negative() && !value.is_zero() {
            return Err(DomainError::new(Self::FIELD, Violation::Negative));
        }
        let scaled = value.normalize();
        if scaled.scale() > Self::SCALE {
            return Err(DomainError::new(
                Self::FIELD,
                Violation::TooManyDecimalPlaces(value.to_string()),
            ));
        }
        let factor = 10i128.pow(Self::SCALE - scaled.scale());
        let cents = scaled
            .mantissa()
            .checked_mul(factor)
            .and_then(|c| i64::try_from(c).ok());
        match cents {
            Some(c) => Money::from_cents(c),
            None => Err(too_large(&value.to_string())),
        }
    }

    /// The amount in cents.
    pub fn cents(self) -> i64 {
        self.cents
    }

    /// The amount as a decimal with scale 2 (`19.90`, never `19.9`).
    pub fn to_decimal(self) -> Decimal {
        Decimal::new(self.cents, Self::SCALE)
    }

    /// Whether the amount is zero.
    pub fn is_zero(self) -> bool {
        self.cents == 0
    }

    /// Whether the amount is greater than zero (as a price or an order total must be).
    pub fn is_positive(self) -> bool {
        self.cents > 0
    }

    /// Returns the amount if it is greater than zero, else a [`Violation::NotPositive`] error.
    pub fn ensure_positive(self) -> Result<Self, DomainError> {
        if self.is_positive() {
            Ok(self)
        } else {
            Err(DomainError::new(Self::FIELD, Violation::NotPositive))
        }
    }

    /// The sum, or `None` if it would exceed [`Money::MAX`].
    #[must_use]
    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.cents
            .checked_add(other.cents)
            .filter(|c| *c <= MAX_CENTS)
            .map(|cents| Money { cents })
    }

    /// The amount times a quantity (a line total), or `None` if it would exceed [`Money::MAX`].
    #[must_use]
    pub fn checked_mul_quantity(self, quantity: Quantity) -> Option<Money> {
        self.cents
            .checked_mul(i64::from(quantity.get()))
            .filter(|c| *c <= MAX_CENTS)
            .map(|cents| Money { cents })
    }

    /// The exact sum of `amounts`, or `None` if it would exceed [`Money::MAX`].
    pub fn checked_sum(amounts: impl IntoIterator<Item = Money>) -> Option<Money> {
        amounts
            .into_iter()
            .try_fold(Money::ZERO, |acc, m| acc.checked_add(m))
    }
}

fn format_cents(cents: i128) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

fn too_large(actual: &str) -> DomainError {
    DomainError::new(
        Money::FIELD,
        Violation::TooLarge {
            max: Money::MAX.to_string(),
            actual: actual.to_owned(),
        },
    )
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_cents(i128::from(self.cents)))
    }
}

impl std::str::FromStr for Money {
    type Err = DomainError;
    fn from_str(raw: &str) -> Result<Self, DomainError> {
        Money::parse(raw)
    }
}

impl TryFrom<Decimal> for Money {
    type Error = DomainError;
    fn try_from(value: Decimal) -> Result<Self, DomainError> {
        Money::from_decimal(value)
    }
}

impl From<Money> for Decimal {
    fn from(m: Money) -> Decimal {
        m.to_decimal()
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            // Exact: cents < 2^53 converts exactly and the division is correctly rounded, so
            // this is the double nearest the amount; see the module documentation.
            let number = self.cents as f64 / 100.0;
            serializer.serialize_f64(number)
        } else {
            serializer.serialize_str(&self.to_string())
        }
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(MoneyVisitor)
    }
}

/// Amounts of 10^13 or more cannot be in range and are where `f64` starts to lose cents.
const F64_LIMIT: f64 = 10_000_000_000_000.0;

struct MoneyVisitor;

impl Visitor<'_> for MoneyVisitor {
    type Value = Money;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an amount with at most two decimal places, as a number or a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Money, E> {
        Money::parse(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Money, E> {
        i64::try_from(v)
            .ok()
            .and_then(|units| units.checked_mul(100))
            .ok_or_else(|| too_large(&v.to_string()))
            .and_then(Money::from_cents)
            .map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Money, E> {
        if v < 0 {
            return Err(E::custom(DomainError::new(
                Money::FIELD,
                Violation::Negative,
            )));
        }
        v.checked_mul(100)
            .ok_or_else(|| too_large(&v.to_string()))
            .and_then(Money::from_cents)
            .map_err(E::custom)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Money, E> {
        if !v.is_finite() {
            return Err(E::custom(DomainError::new(
                Money::FIELD,
                Violation::NotADecimal(v.to_string()),
            )));
        }
        if v < 0.0 {
            return Err(E::custom(DomainError::new(
                Money::FIELD,
                Violation::Negative,
            )));
        }
        if v >= F64_LIMIT {
            return Err(E::custom(too_large(&v.to_string())));
        }
        // `Display` for f64 prints the shortest digits that round-trip, never an exponent.
        Money::parse(&v.to_string()).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn money(raw: &str) -> Money {
        Money::parse(raw).unwrap()
    }

    fn violation(result: Result<Money, DomainError>) -> Violation {
        result.unwrap_err().errors()[0].violation.clone()
    }

    #[test]
    fn plain_decimals_parse_to_whole_cents() {
        assert_eq!(money("19.99").cents(), 1999);
        assert_eq!(money("19.9").cents(), 1990);
        assert_eq!(money("19").cents(), 1900);
        assert_eq!(money("0.01").cents(), 1);
        assert_eq!(money("0").cents(), 0);
        assert_eq!(money("007.50").cents(), 750);
    }

    #[test]
    fn trailing_zeros_beyond_two_places_are_the_same_amount() {
        assert_eq!(money("1.500").cents(), 150);
        assert_eq!(money("1.00000").cents(), 100);
    }

    #[test]
    fn a_third_significant_decimal_place_is_rejected_not_rounded() {
        assert_eq!(
            violation(Money::parse("1.005")),
            Violation::TooManyDecimalPlaces("1.005".into())
        );
        assert_eq!(
            violation(Money::parse("0.001")),
            Violation::TooManyDecimalPlaces("0.001".into())
        );
    }

    #[test]
    fn negative_amounts_are_rejected_as_negative() {
        assert_eq!(violation(Money::parse("-1.00")), Violation::Negative);
        assert_eq!(violation(Money::from_cents(-1)), Violation::Negative);
    }

    #[test]
    fn anything_but_a_plain_decimal_is_rejected() {
        for raw in [
            "", ".", "1.", ".5", "+1", "1e3", "1,00", "1_000", " 1", "1 ", "abc", "0x10", "1.2.3",
            "--1", "-", "NaN", "١",
        ] {
            assert_eq!(
                violation(Money::parse(raw)),
                Violation::NotADecimal(raw.into()),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn the_maximum_parses_and_one_cent_more_is_too_large() {
        assert_eq!(money("9999999999999.99"), Money::MAX);
        assert!(matches!(
            violation(Money::parse("10000000000000.00")),
            Violation::TooLarge { .. }
        ));
        assert!(matches!(
            violation(Money::parse(&"9".repeat(400))),
            Violation::TooLarge { .. }
        ));
        assert!(matches!(
            violation(Money::from_cents(i64::MAX)),
            Violation::TooLarge { .. }
        ));
    }

    #[test]
    fn leading_zeros_do_not_count_towards_the_size_limit() {
        assert_eq!(money("0000000000000000000001.25").cents(), 125);
    }

    #[test]
    fn display_always_writes_two_decimal_places() {
        assert_eq!(Money::from_cents(1990).unwrap().to_string(), "19.90");
        assert_eq!(Money::ZERO.to_string(), "0.00");
        assert_eq!(Money::from_cents(5).unwrap().to_string(), "0.05");
        assert_eq!(Money::MAX.to_string(), "9999999999999.99");
    }

    #[test]
    fn the_decimal_view_has_scale_two() {
        let d = Money::from_cents(1990).unwrap().to_decimal();
        assert_eq!(d.scale(), 2);
        assert_eq!(d.to_string(), "19.90");
    }

    #[test]
    fn decimals_convert_exactly_or_not_at_all() {
        assert_eq!(
            Money::from_decimal(Decimal::new(1999, 2)).unwrap().cents(),
            1999
        );
        assert_eq!(
            Money::from_decimal(Decimal::new(19_990, 3))
                .unwrap()
                .cents(),
            1999
        );
        assert_eq!(
            Money::from_decimal(Decimal::new(5, 0)).unwrap().cents(),
            500
        );
        assert!(matches!(
            violation(Money::from_decimal(Decimal::new(1005, 3))),
            Violation::TooManyDecimalPlaces(_)
        ));
        assert_eq!(
            violation(Money::from_decimal(Decimal::new(-1, 2))),
            Violation::Negative
        );
        assert!(matches!(
            violation(Money::from_decimal(Decimal::MAX)),
            Violation::TooLarge { .. }
        ));
        assert_eq!(
            Money::from_decimal(Decimal::new(0, 5)).unwrap(),
            Money::ZERO
        );
    }

    #[test]
    fn adding_and_multiplying_are_exact_and_checked() {
        let price = money("0.10");
        let three = Quantity::new(3).unwrap();
        assert_eq!(price.checked_mul_quantity(three), Some(money("0.30")));
        assert_eq!(
            money("0.10").checked_add(money("0.20")),
            Some(money("0.30"))
        );
        assert_eq!(Money::MAX.checked_add(money("0.01")), None);
        assert_eq!(
            Money::MAX.checked_mul_quantity(Quantity::new(2).unwrap()),
            None
        );
        assert_eq!(
            Money::checked_sum([money("1.10"), money("2.20"), money("3.30")]),
            Some(money("6.60"))
        );
        assert_eq!(Money::checked_sum([Money::MAX, Money::MAX]), None);
    }

    #[test]
    fn positivity_helpers_reject_zero() {
        assert!(money("0.01").is_positive());
        assert!(!Money::ZERO.is_positive());
        assert_eq!(
            violation(Money::parse_positive("0.00")),
            Violation::NotPositive
        );
        assert_eq!(Money::parse_positive("2.50").unwrap().cents(), 250);
    }

    #[test]
    fn json_numbers_are_read_exactly() {
        let m: Money = serde_json::from_str("19.99").unwrap();
        assert_eq!(m.cents(), 1999);
        let m: Money = serde_json::from_str("0.1").unwrap();
        assert_eq!(m.cents(), 10);
        let m: Money = serde_json::from_str("20").unwrap();
        assert_eq!(m.cents(), 2000);
        let m: Money = serde_json::from_str("9999999999999.99").unwrap();
        assert_eq!(m, Money::MAX);
        let m: Money = serde_json::from_str("1.10").unwrap();
        assert_eq!(m.cents(), 110);
    }

    #[test]
    fn json_strings_are_read_with_the_same_rules() {
        let m: Money = serde_json::from_str("\"19.99\"").unwrap();
        assert_eq!(m.cents(), 1999);
        assert!(serde_json::from_str::<Money>("\"1.005\"").is_err());
    }

    #[test]
    fn json_numbers_with_a_third_decimal_negative_or_too_large_are_rejected() {
        let err = serde_json::from_str::<Money>("1.005").unwrap_err();
        assert!(
            err.to_string().contains("more than two decimal places"),
            "{err}"
        );
        let err = serde_json::from_str::<Money>("-0.01").unwrap_err();
        assert!(err.to_string().contains("must not be negative"), "{err}");
        let err = serde_json::from_str::<Money>("-3").unwrap_err();
        assert!(err.to_string().contains("must not be negative"), "{err}");
        assert!(serde_json::from_str::<Money>("10000000000000").is_err());
        assert!(serde_json::from_str::<Money>("10000000000000.5").is_err());
        assert!(serde_json::from_str::<Money>("1e300").is_err());
        assert!(serde_json::from_str::<Money>("18446744073709551615").is_err());
        assert!(serde_json::from_str::<Money>("null").is_err());
        assert!(serde_json::from_str::<Money>("true").is_err());
    }

    #[test]
    fn json_output_is_a_number_with_the_exact_digits() {
        assert_eq!(serde_json::to_string(&money("19.99")).unwrap(), "19.99");
        assert_eq!(serde_json::to_string(&money("0.10")).unwrap(), "0.1");
        assert_eq!(serde_json::to_string(&money("20")).unwrap(), "20.0");
        assert_eq!(
            serde_json::to_string(&Money::MAX).unwrap(),
            "9999999999999.99"
        );
    }
}
