//! [`Quantity`]: how many units of an item are ordered.
//!
//! Why a type: a quantity of zero, a negative one, or one in the millions is always a bug or an
//! attack, and the Avro field is an `int`; one type with one constructor settles both.

use std::fmt;

use crate::error::{DomainError, Violation};

/// A number of units on an order line, from [`Quantity::MIN`] (1) to [`Quantity::MAX`] (10 000).
///
/// The upper bound is a sanity limit: far above any real basket, far below anything that could
/// overflow `price x quantity` for sane prices or the Avro `int`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "i64", into = "u32")]
pub struct Quantity(u32);

impl Quantity {
    /// The contract's name of this field, used in error messages.
    pub const FIELD: &'static str = "quantity";
    /// The smallest quantity: one unit.
    pub const MIN: u32 = 1;
    /// The largest quantity accepted on one order line.
    pub const MAX: u32 = 10_000;

    /// Parses a quantity; anything outside `1..=10_000` is rejected.
    pub fn new(value: i64) -> Result<Self, DomainError> {
        match u32::try_from(value) {
            Ok(v) if (Self::MIN..=Self::MAX).contains(&v) => Ok(Quantity(v)),
            _ => Err(DomainError::new(
                Self::FIELD,
                Violation::OutOfRange {
                    min: i64::from(Self::MIN),
                    max: i64::from(Self::MAX),
                    actual: value,
                },
            )),
        }
    }

    /// The number of units.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<i64> for Quantity {
    type Error = DomainError;
    fn try_from(value: i64) -> Result<Self, DomainError> {
        Quantity::new(value)
    }
}

impl From<Quantity> for u32 {
    fn from(q: Quantity) -> u32 {
        q.0
    }
}

impl From<Quantity> for i32 {
    fn from(q: Quantity) -> i32 {
        // MAX is 10 000, so this never saturates.
        i32::try_from(q.0).unwrap_or(i32::MAX)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_and_ten_thousand_are_the_bounds() {
        assert_eq!(Quantity::new(1).unwrap().get(), 1);
        assert_eq!(Quantity::new(10_000).unwrap().get(), 10_000);
    }

    #[test]
    fn zero_negative_and_too_large_quantities_are_rejected() {
        for bad in [0, -1, 10_001, i64::MAX, i64::MIN] {
            let err = Quantity::new(bad).unwrap_err();
            assert_eq!(err.errors()[0].field, "quantity");
            assert_eq!(
                err.errors()[0].violation,
                Violation::OutOfRange {
                    min: 1,
                    max: 10_000,
                    actual: bad
                }
            );
        }
    }

    #[test]
    fn json_quantities_are_parsed_the_same_way() {
        assert_eq!(serde_json::from_str::<Quantity>("3").unwrap().get(), 3);
        assert_eq!(
            serde_json::to_string(&Quantity::new(3).unwrap()).unwrap(),
            "3"
        );
        assert!(serde_json::from_str::<Quantity>("0").is_err());
        assert!(serde_json::from_str::<Quantity>("2.5").is_err());
        assert!(serde_json::from_str::<Quantity>("\"2\"").is_err());
    }
}
