//! The one business rule OrderService adds to the contract: the shipping cost.
//!
//! Why a module of its own: money rules must be exact and are easy to get subtly wrong (a float,
//! a banker's rounding, a truncation), so the rule lives in one pure function with its unit and
//! property tests beside it.
//!
//! Shipping costs 2 % of the order's total, computed exactly as a decimal and rounded half-up
//! (midpoint away from zero) to whole cents: `1999.98` → `39.9996` → `40.00`, `0.25` →
//! `0.005` → `0.01`, `0.24` → `0.0048` → `0.00`.

use order_events::Money;
use rust_decimal::{Decimal, RoundingStrategy};

/// The shipping rate: 2 %, exactly.
pub const SHIPPING_RATE: Decimal = Decimal::from_parts(2, 0, 0, false, 2);

/// The shipping cost of an order with this total: 2 % of it, rounded half-up to cents.
///
/// Cannot fail: 2 % of any valid amount is a smaller valid amount, and the product of a
/// 15-digit amount and 0.02 fits a `Decimal` (28 digits) exactly.
pub fn shipping_cost(total: Money) -> Money {
    let exact = total.to_decimal() * SHIPPING_RATE;
    let rounded =
        exact.round_dp_with_strategy(Money::SCALE, RoundingStrategy::MidpointAwayFromZero);
    // In range by construction (0 <= rounded <= total); the fallback is unreachable.
    Money::from_decimal(rounded).unwrap_or(total)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    fn money(text: &str) -> Money {
        Money::parse(text).unwrap()
    }

    #[test]
    fn examples_round_half_up_to_cents() {
        for (total, expected) in [
            ("1999.98", "40.00"), // 39.9996
            ("0.25", "0.01"),     // 0.005: the midpoint goes up
            ("0.24", "0.00"),     // 0.0048
            ("0.75", "0.02"),     // 0.015: up, not to even
            ("0.74", "0.01"),     // 0.0148
            ("100.00", "2.00"),
            ("19.99", "0.40"), // 0.3998
            ("0.00", "0.00"),
            ("0.01", "0.00"),
            ("9999999999999.99", "200000000000.00"), // 199999999999.9998
        ] {
            assert_eq!(
                shipping_cost(money(total)),
                money(expected),
                "shipping of {total}"
            );
        }
    }

    proptest! {
        /// In whole cents: shipping = round_half_up(cents * 2 / 100) cents, i.e.
        /// (2 * cents + 50) div 100, computed with integers only.
        #[test]
        fn is_exactly_two_percent_rounded_half_up(cents in 0i64..=999_999_999_999_999) {
            let expected = (2 * i128::from(cents) + 50) / 100;
            let actual = shipping_cost(Money::from_cents(cents).unwrap()).cents();
            prop_assert_eq!(i128::from(actual), expected);
        }

        /// Never more than half a cent away from the exact 2 %.
        #[test]
        fn is_within_half_a_cent(cents in 0i64..=999_999_999_999_999) {
            let total = Money::from_cents(cents).unwrap();
            let exact = total.to_decimal() * Decimal::new(2, 2);
            let diff = (shipping_cost(total).to_decimal() - exact).abs();
            prop_assert!(diff <= Decimal::new(5, 3));
        }
    }
}
