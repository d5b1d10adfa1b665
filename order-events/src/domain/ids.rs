//! Identifiers: [`OrderId`], [`CustomerId`], [`ItemId`].
//!
//! Why this module exists: identifiers cross every boundary of the system — they are the Kafka
//! record key, URL path segments, log fields and database keys — so they get one strict,
//! shared alphabet instead of "any string".
//!
//! The rule, identical for all three: **1 to 64 characters, each one of `A-Z a-z 0-9 . _ : -`**.
//! That alphabet
//! * holds UUIDs (`0b6f…-…`), ULIDs, and namespaced ids such as `cart:42`, `sku.1234-XL` or `ORDER_001`;
//! * needs no escaping in a URL path, a Kafka key, a log line, JSON or a shell;
//! * keeps out whitespace, control characters, `/` and Unicode look-alikes, which are the
//!   usual sources of "same id, different bytes" bugs.
//!
//! The limit of 64 bounds key sizes and is ample for any of the formats above.
//! Each type's only constructor is `parse`; serde goes through it too.

use std::fmt;
use std::str::FromStr;

use crate::error::{DomainError, Violation};

/// The maximum length of an identifier, in characters (all of them are ASCII, so also bytes).
pub const MAX_ID_LEN: usize = 64;

/// Checks the shared identifier rule; `field` names the value in the error.
fn check_id(field: &str, raw: &str) -> Result<(), DomainError> {
    if raw.is_empty() {
        return Err(DomainError::new(field, Violation::Empty));
    }
    if let Some(c) = raw
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
    {
        return Err(DomainError::new(field, Violation::ForbiddenCharacter(c)));
    }
    if raw.len() > MAX_ID_LEN {
        return Err(DomainError::new(
            field,
            Violation::TooLong {
                max: MAX_ID_LEN,
                actual: raw.len(),
            },
        ));
    }
    Ok(())
}

macro_rules! identifier {
    ($(#[$meta:meta])* $name:ident, $field:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The contract's name of this field, used in error messages.
            pub const FIELD: &'static str = $field;

            /// Parses an identifier: 1 to 64 characters from `A-Z a-z 0-9 . : -`.
            pub fn parse(raw: impl Into<String>) -> Result<Self, DomainError> {
                let raw = raw.into();
                check_id(Self::FIELD, &raw)?;
                Ok($name(raw))
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Consumes the identifier, returning its text.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = DomainError;
            fn try_from(raw: String) -> Result<Self, DomainError> {
                $name::parse(raw)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = DomainError;
            fn try_from(raw: &str) -> Result<Self, DomainError> {
                $name::parse(raw)
            }
        }

        impl FromStr for $name {
            type Err = DomainError;
            fn from_str(raw: &str) -> Result<Self, DomainError> {
                $name::parse(raw)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

identifier!(
    /// Identifies an order; also the Kafka record key (as plain UTF-8, see
    /// [`OrderEvent::key`](crate::OrderEvent::key)).
    OrderId,
    "orderId"
);
identifier!(
    /// Identifies the customer who placed an order.
    CustomerId,
    "customerId"
);
identifier!(
    /// Identifies an item (product) on an order line.
    ItemId,
    "itemId"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uuid_a_ulid_and_a_namespaced_id_are_accepted() {
        for raw in [
            "0b6f1c1e-5a7e-4c0a-9d0e-2f1e3c4b5a69",
            "01ARZ3NDEKTSV4RRFFQ69G5FAV",
            "cart:42",
            "sku.1234-XL",
            "A",
        ] {
            assert_eq!(OrderId::parse(raw).unwrap().as_str(), raw);
        }
    }

    #[test]
    fn an_empty_id_is_rejected() {
        let err = OrderId::parse("").unwrap_err();
        assert_eq!(err.errors()[0].field, "orderId");
        assert_eq!(err.errors()[0].violation, Violation::Empty);
    }

    #[test]
    fn an_id_of_exactly_64_characters_is_accepted_and_65_is_rejected() {
        assert!(CustomerId::parse("a".repeat(64)).is_ok());
        let err = CustomerId::parse("a".repeat(65)).unwrap_err();
        assert_eq!(
            err.errors()[0].violation,
            Violation::TooLong {
                max: 64,
                actual: 65
            }
        );
    }

    #[test]
    fn whitespace_slashes_and_unicode_are_rejected() {
        for (raw, bad) in [
            ("order 1", ' '),
            ("a/b", '/'),
            ("a+b", '+'),
            ("ordér", 'é'),
            ("x\n", '\n'),
        ] {
            let err = ItemId::parse(raw).unwrap_err();
            assert_eq!(
                err.errors()[0].violation,
                Violation::ForbiddenCharacter(bad),
                "{raw:?}"
            );
            assert_eq!(err.errors()[0].field, "itemId");
        }
    }

    #[test]
    fn a_long_non_ascii_id_reports_the_forbidden_character_first() {
        let err = ItemId::parse("é".repeat(40)).unwrap_err();
        assert_eq!(
            err.errors()[0].violation,
            Violation::ForbiddenCharacter('é')
        );
    }

    #[test]
    fn json_input_goes_through_the_same_parse() {
        let id: OrderId = serde_json::from_str("\"o-1\"").unwrap();
        assert_eq!(id.as_str(), "o-1");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"o-1\"");
        let err = serde_json::from_str::<OrderId>("\"\"").unwrap_err();
        assert!(
            err.to_string().contains("orderId: must not be empty"),
            "{err}"
        );
        assert!(serde_json::from_str::<OrderId>("42").is_err());
    }

    #[test]
    fn display_and_from_str_round_trip() {
        let id: CustomerId = "c-7".parse().unwrap();
        assert_eq!(id.to_string().parse::<CustomerId>().unwrap(), id);
    }
}
