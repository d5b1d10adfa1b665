//! Generates what a create request leaves out: customer, items, prices, currency.
//!
//! Generated values go through the same parsing constructors as client input, so a generated
//! order obeys every rule a client's does.

use order_events::{Currency, CustomerId, DomainError, ItemId, Money, OrderItem, Quantity};
use rand::Rng;

/// `CUST-` and five digits.
pub(crate) fn customer_id() -> Result<CustomerId, DomainError> {
    let n: u32 = rand::rng().random_range(10_000..100_000);
    CustomerId::parse(format!("CUST-{n}"))
}

/// `count` items: `ITEM-` and four digits, quantity 1 to 5, price 1.00 to 500.00.
pub(crate) fn items(count: usize) -> Result<Vec<OrderItem>, DomainError> {
    let mut rng = rand::rng();
    (0..count)
        .map(|_| {
            let id = ItemId::parse(format!("ITEM-{:04}", rng.random_range(0..10_000)))?;
            let quantity = Quantity::new(rng.random_range(1..=5))?;
            let price = Money::from_cents(rng.random_range(100..=50_000))?;
            OrderItem::new(id, quantity, price)
        })
        .collect()
}

/// One of the configured currencies.
pub(crate) fn currency(choices: &[Currency]) -> Option<Currency> {
    if choices.is_empty() {
        return None;
    }
    Some(choices[rand::rng().random_range(0..choices.len())])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_items_have_quantities_one_to_five_and_prices_with_two_decimals() {
        let items = items(100).unwrap_or_default();
        assert_eq!(items.len(), 100);
        for item in items {
            assert!((1..=5).contains(&item.quantity().get()));
            let cents = item.price().cents();
            assert!((100..=50_000).contains(&cents), "{cents}");
        }
    }

    #[test]
    fn generated_customer_ids_start_with_cust() {
        let id = customer_id()
            .map(|c| c.as_str().to_string())
            .unwrap_or_default();
        assert!(id.starts_with("CUST-") && id.len() == 10, "{id}");
    }
}
