//! The error types of the contract.
//!
//! Why a module of its own: three different audiences need three different errors, and keeping
//! them side by side makes the split obvious.
//!
//! * [`DomainError`] says which *fields* of an order or event break which domain rule. An HTTP
//!   edge turns it into a 400 listing every field; a consumer turns it into a poison record.
//! * [`DecodeError`] says why a Kafka payload could not become an [`OrderEvent`], classified so
//!   a consumer can decide between "retry later" ([`DecodeError::is_poison`] is `false`) and
//!   "send to the dead-letter topic" (`true`).
//! * [`ContractError`] covers the producer side and start-up: registering the schema and
//!   encoding events.
//!
//! [`OrderEvent`]: crate::OrderEvent

use std::fmt;

use schema_registry_converter::error::SRCError;

/// What exactly is wrong with one value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Violation {
    /// An identifier or code was empty.
    #[error("must not be empty")]
    Empty,
    /// An identifier was longer than allowed.
    #[error("must be at most {max} characters long, got {actual}")]
    TooLong {
        /// The maximum number of characters.
        max: usize,
        /// The number of characters received.
        actual: usize,
    },
    /// An identifier contained a character outside its alphabet.
    #[error("contains {0:?}; only ASCII letters, digits, '.', '_', ':' and '-' are allowed")]
    ForbiddenCharacter(char),
    /// A money amount was not written as a plain decimal number.
    #[error("{0:?} is not a plain decimal number such as 19.99")]
    NotADecimal(String),
    /// A money amount had a non-zero digit after the second decimal place.
    #[error(
        "{0:?} has more than two decimal places; amounts are whole cents and are never rounded"
    )]
    TooManyDecimalPlaces(String),
    /// A value that must not be negative was negative.
    #[error("must not be negative")]
    Negative,
    /// A value that must be greater than zero was zero (or less).
    #[error("must be greater than zero")]
    NotPositive,
    /// A value was larger than the contract allows.
    #[error("must be at most {max}, got {actual}")]
    TooLarge {
        /// The largest allowed value, as text.
        max: String,
        /// The value received, as text.
        actual: String,
    },
    /// An integer was outside its allowed range.
    #[error("must be between {min} and {max}, got {actual}")]
    OutOfRange {
        /// Smallest allowed value.
        min: i64,
        /// Largest allowed value.
        max: i64,
        /// The value received.
        actual: i64,
    },
    /// A currency code that is not an active ISO 4217 code.
    #[error("{0:?} is not an active ISO 4217 currency code")]
    UnknownCurrency(String),
    /// A symbol that is not one of an enumeration's symbols.
    #[error("{actual:?} is not one of {expected}")]
    UnknownSymbol {
        /// The allowed symbols, comma separated.
        expected: &'static str,
        /// The symbol received.
        actual: String,
    },
    /// An order without items.
    #[error("must contain at least one item")]
    NoItems,
    /// An order whose total is not the sum of its lines.
    #[error("is {actual} but the items add up to {expected}")]
    TotalMismatch {
        /// The exact sum of price x quantity over the items.
        expected: String,
        /// The total that was given.
        actual: String,
    },
    /// Adding up or multiplying amounts left the allowed range.
    #[error("overflows the largest allowed amount")]
    Overflow,
    /// The event type and the version contradict each other.
    #[error("{0}")]
    Inconsistent(String),
    /// A timestamp outside the range chrono can represent.
    #[error("{0} milliseconds since the epoch is not a representable timestamp")]
    TimestampOutOfRange(i64),
    /// A nil UUID where a real identifier is required.
    #[error("must not be the nil UUID")]
    NilUuid,
    /// A text that is not a UUID.
    #[error("{0:?} is not a UUID")]
    NotAUuid(String),
    /// An Avro value of the wrong shape (only possible when the value did not come from our
    /// reader schema).
    #[error("{0}")]
    Malformed(String),
}

/// One field that breaks one rule, e.g. `items[2].quantity: must be between 1 and 10000, got 0`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {violation}")]
pub struct FieldError {
    /// Path of the field in the contract's (camelCase) naming, e.g. `items[0].price`.
    pub field: String,
    /// What is wrong with it.
    pub violation: Violation,
}

/// Every field of a value that breaks a domain rule; never empty.
///
/// Parsing a single value (an [`OrderId`](crate::OrderId), a [`Money`](crate::Money)…) yields one
/// [`FieldError`]; building an [`Order`](crate::Order) or reading an Avro record collects all of
/// them, so a client sees every problem at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainError {
    errors: Vec<FieldError>,
}

impl DomainError {
    /// A single failing field.
    pub fn new(field: impl Into<String>, violation: Violation) -> Self {
        DomainError {
            errors: vec![FieldError {
                field: field.into(),
                violation,
            }],
        }
    }

    /// Turns a list of field errors into an error, or `None` when the list is empty.
    pub fn from_errors(errors: Vec<FieldError>) -> Option<Self> {
        if errors.is_empty() {
            None
        } else {
            Some(DomainError { errors })
        }
    }

    /// The failing fields, in the order they were found.
    pub fn errors(&self) -> &[FieldError] {
        &self.errors
    }

    /// Consumes the error, returning the failing fields.
    pub fn into_errors(self) -> Vec<FieldError> {
        self.errors
    }

    /// Re-roots every field path under `prefix`: `price` under `items[2]` becomes
    /// `items[2].price`. A path naming the value itself (as the default paths of single-value
    /// parsers do) is replaced by `prefix`.
    #[must_use]
    pub fn under(self, prefix: &str, own_name: &str) -> Self {
        let errors = self
            .errors
            .into_iter()
            .map(|e| {
                let field = if e.field == own_name {
                    prefix.to_owned()
                } else {
                    format!("{prefix}.{}", e.field)
                };
                FieldError {
                    field,
                    violation: e.violation,
                }
            })
            .collect();
        DomainError { errors }
    }

    /// Renames the field of every error whose path is exactly `from` to `to`, so a generic
    /// parser's default name (`amount`) becomes the contract field (`totalAmount`).
    #[must_use]
    pub fn renamed(self, from: &str, to: &str) -> Self {
        let errors = self
            .errors
            .into_iter()
            .map(|mut e| {
                if e.field == from {
                    e.field = to.to_owned();
                }
                e
            })
            .collect();
        DomainError { errors }
    }
}

impl fmt::Display for DomainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for DomainError {}

impl From<FieldError> for DomainError {
    fn from(e: FieldError) -> Self {
        DomainError { errors: vec![e] }
    }
}

/// Why a Kafka payload could not be turned into an [`OrderEvent`](crate::OrderEvent).
///
/// Every variant but [`DecodeError::RegistryUnavailable`] is a property of the record itself:
/// retrying will fail the same way, so the record is *poison* and belongs on the dead-letter
/// topic. `RegistryUnavailable` is a property of the environment and a consumer must retry it
/// (without committing the offset) rather than dead-letter a good record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The record had no value, or an empty one (a tombstone).
    #[error("the record has no value (null or empty payload)")]
    MissingValue,
    /// The first byte was not the Confluent magic byte 0.
    #[error("magic byte is {0:#04x}, expected 0x00: not in the Confluent wire format")]
    BadMagicByte(u8),
    /// Fewer than the five bytes of the Confluent header (magic byte and schema id).
    #[error("payload is shorter than the 5-byte Confluent header")]
    TooShort,
    /// The registry answered that it has no schema with this id (HTTP 404, error code 40403).
    #[error("the schema registry has no schema with id {0}")]
    UnknownSchemaId(u32),
    /// The bytes after the header are not a datum of the writer schema.
    #[error("payload is not valid Avro for writer schema {schema_id}: {reason}")]
    CorruptAvro {
        /// The schema id from the header.
        schema_id: u32,
        /// What the Avro decoder reported.
        reason: String,
    },
    /// The writer schema cannot be resolved to our reader schema (or this datum cannot).
    #[error("writer schema {schema_id} cannot be read as an OrderEvent: {reason}")]
    UnresolvableSchema {
        /// The schema id from the header.
        schema_id: u32,
        /// Why resolution failed.
        reason: String,
    },
    /// The record decoded fine but breaks a domain rule.
    #[error("the event breaks domain rules: {0}")]
    Domain(#[from] DomainError),
    /// The writer schema could not be fetched for a reason that is not the record's fault:
    /// connection refused, timeout, a 5xx, authentication, or a response that is not from a
    /// schema registry. Transient: retry.
    #[error("the schema registry is unavailable: {0}")]
    RegistryUnavailable(String),
}

impl DecodeError {
    /// `true` when retrying cannot help and the record should go to the dead-letter topic;
    /// `false` for [`DecodeError::RegistryUnavailable`], which a consumer must retry.
    pub fn is_poison(&self) -> bool {
        !matches!(self, DecodeError::RegistryUnavailable(_))
    }
}

/// Errors on the producing side: building the registry client, registering the schema,
/// encoding an event.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContractError {
    /// The bundled `.avsc` does not parse; a build defect caught by the crate's tests.
    #[error("the bundled order-event schema is invalid: {0}")]
    InvalidSchema(String),
    /// A registry setting is unusable: the URL, the CA file, the credentials or their
    /// sources. The message names the setting (and file), never a password.
    #[error("{0}")]
    RegistrySettings(String),
    /// The schema registry client could not be configured (bad URL, TLS, headers).
    #[error("cannot configure the schema registry client for {url}: {source}")]
    Config {
        /// The registry URL, without user info.
        url: String,
        /// The underlying error.
        #[source]
        source: SRCError,
    },
    /// The registry refused or failed a request, e.g. registering an incompatible schema (409),
    /// refusing our credentials (401/403), failing the TLS handshake, or being unreachable.
    #[error(transparent)]
    Registry(Box<RegistryError>),
    /// An event could not be written as Avro; it would mean the mapping and the schema disagree.
    #[error("cannot encode the event as Avro: {0}")]
    Encode(String),
}

impl ContractError {
    /// Whether trying again later may succeed.
    pub fn is_retriable(&self) -> bool {
        matches!(self, ContractError::Registry(e) if e.retriable)
    }

    /// Whether retrying cannot help and a service should stop (at start-up: exit with this
    /// message) instead of retrying: bad settings, credentials refused (401/403), a failed TLS
    /// handshake (unknown CA, expired certificate, wrong host name), a schema the registry
    /// rejects. The opposite of [`is_retriable`](Self::is_retriable).
    pub fn is_fatal(&self) -> bool {
        !self.is_retriable()
    }

    /// The kind of registry failure, for a [`ContractError::Registry`].
    pub fn registry_failure(&self) -> Option<&RegistryFailure> {
        match self {
            ContractError::Registry(e) => Some(&e.failure),
            _ => None,
        }
    }
}

/// A failed registry request: which registry (without user info), which subject, whether
/// retrying may help, and what kind of failure it is. The message says what to check.
#[derive(Debug, thiserror::Error)]
#[error("{}", registry_message(url, subject, *retriable, failure, source))]
pub struct RegistryError {
    /// The registry URL, without user info.
    pub url: String,
    /// The subject involved, e.g. `order-events-value`.
    pub subject: String,
    /// Whether trying again may help (connection problems, timeouts, 5xx).
    pub retriable: bool,
    /// What kind of failure this is.
    pub failure: RegistryFailure,
    /// The underlying error.
    #[source]
    pub source: SRCError,
}

/// What kind of problem a failed registry request had.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistryFailure {
    /// 401: the registry wants credentials, or refused ours.
    Unauthorized,
    /// 403: our user may not do this (e.g. a read-only user registering a schema).
    Forbidden,
    /// The TLS handshake failed; what OpenSSL said about the certificate.
    Tls(String),
    /// Anything else: unreachable, timeout, 5xx, 409 incompatible, a malformed answer.
    Other,
}

fn registry_message(
    url: &str,
    subject: &str,
    retriable: bool,
    failure: &RegistryFailure,
    source: &SRCError,
) -> String {
    match failure {
        RegistryFailure::Unauthorized => format!(
            "the schema registry at {url} refused the credentials (subject {subject}): \
             401 Unauthorized: check SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO; not retrying"
        ),
        RegistryFailure::Forbidden => format!(
            "the schema registry at {url} denied the request (subject {subject}): \
             403 Forbidden: the user in SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO lacks the \
             permission (registering a schema needs a read-write user); not retrying"
        ),
        RegistryFailure::Tls(detail) => format!(
            "TLS with the schema registry at {url} failed: {detail}: check that the registry \
             serves https, its certificate (issuer, expiry, host name) and \
             SCHEMA_REGISTRY_CA_FILE; not retrying"
        ),
        RegistryFailure::Other => format!(
            "schema registry request to {url} for subject {subject} failed \
             (retriable: {retriable}): {source}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_domain_error_lists_every_field_in_its_message() {
        let err = DomainError::from_errors(vec![
            FieldError {
                field: "items".into(),
                violation: Violation::NoItems,
            },
            FieldError {
                field: "totalAmount".into(),
                violation: Violation::NotPositive,
            },
        ])
        .unwrap();
        assert_eq!(
            err.to_string(),
            "items: must contain at least one item; totalAmount: must be greater than zero"
        );
    }

    #[test]
    fn an_empty_list_of_field_errors_is_not_an_error() {
        assert!(DomainError::from_errors(Vec::new()).is_none());
    }

    #[test]
    fn re_rooting_replaces_the_own_name_and_prefixes_the_rest() {
        let err = DomainError::new("itemId", Violation::Empty).under("items[3]", "item");
        assert_eq!(err.errors()[0].field, "items[3].itemId");
        let err =
            DomainError::new("quantity", Violation::Empty).under("items[0].quantity", "quantity");
        assert_eq!(err.errors()[0].field, "items[0].quantity");
    }

    #[test]
    fn only_an_unavailable_registry_is_not_poison() {
        assert!(!DecodeError::RegistryUnavailable("timeout".into()).is_poison());
        assert!(DecodeError::MissingValue.is_poison());
        assert!(DecodeError::BadMagicByte(1).is_poison());
        assert!(DecodeError::TooShort.is_poison());
        assert!(DecodeError::UnknownSchemaId(7).is_poison());
        assert!(
            DecodeError::Domain(DomainError::new("version", Violation::NotPositive)).is_poison()
        );
    }
}
