//! [`OrderEventCodec`]: events to and from Kafka payloads, through the Schema Registry.
//!
//! Why a module: this is the only place that talks to the registry. It registers our schema at
//! start-up, frames encoded events with the returned id, and on the consuming side fetches
//! writer schemas by id (through `schema_registry_converter`'s cached [`AvroDecoder`]) and
//! hands them to the pure [`EventReader`].
//!
//! # Telling a poison record from a registry outage
//! A consumer must dead-letter a record whose schema id the registry does not know, but must
//! *retry* (not dead-letter) when the registry is down. `schema_registry_converter` reports
//! both as an [`SRCError`]; [`classify_registry_error`] tells them apart from its structured
//! parts rather than its wording:
//!
//! * any error in the chain marked `retriable` (connection refused, DNS, timeout, 502/503) →
//!   [`DecodeError::RegistryUnavailable`];
//! * an HTTP error response: the crate attaches the registry's JSON error body as a
//!   [`RawError`] source. Error code **40403** ("schema not found") →
//!   [`DecodeError::UnknownSchemaId`]. Any other status — 5xx (the crate deems 500 and 504 not
//!   retriable; we do), 401/403 (our credentials), a 404 *without* a registry error body (a
//!   wrong URL, not a missing schema) → `RegistryUnavailable`: none of them is the record's
//!   fault, and dead-lettering on them would empty a topic into the DLQ during an outage;
//! * the registry answered, but the schema cannot be used — not Avro, or not parseable →
//!   [`DecodeError::UnresolvableSchema`];
//! * anything else (a 200 whose body is not a registry response) → `RegistryUnavailable`.
//!
//! `AvroDecoder` caches non-retriable errors forever; when we classify one as transient we
//! clear its error cache so the retry really asks the registry again.
//!
//! # Configuration problems on the producing side and at start-up
//! [`register`](OrderEventCodec::register) and [`check_access`](OrderEventCodec::check_access)
//! are what a service runs at start-up, where a misconfiguration must stop it with a clear
//! message rather than an endless "unreachable" retry. A 401/403 (credentials refused) and a
//! failed TLS handshake (an OpenSSL error in the chain: unknown CA, expired certificate, wrong
//! host name, a plain-http server behind an `https://` URL) are therefore
//! [`ContractError::is_fatal`], with a [`RegistryFailure`] saying which, although the crate
//! marks a TLS failure "retriable". When *decoding*, the same problems stay
//! `RegistryUnavailable` (not the record's fault), with a message that says what to check.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{
    RawError, SchemaType, SubjectNameStrategy, SuppliedSchema,
};

use crate::domain::OrderEvent;
use crate::error::{ContractError, DecodeError, RegistryError, RegistryFailure};
use crate::reader::EventReader;
use crate::registry::RegistryConfig;
use crate::schema::{value_subject, ORDER_EVENT_RECORD_NAME, ORDER_EVENT_SCHEMA};
use crate::wire::{frame, parse_frame};

/// The registry's error code for "schema not found".
pub const SCHEMA_NOT_FOUND: u32 = 40403;

/// Encodes and decodes [`OrderEvent`]s in the Confluent wire format for one topic.
///
/// Share one instance per process (e.g. in an `Arc`): it caches the registered schema id,
/// writer schemas by id, and which of them resolve to ours.
pub struct OrderEventCodec {
    topic: String,
    subject: String,
    /// The registry URL without user info, for messages.
    registry_url: String,
    settings: SrSettings,
    encoder: AvroEncoder,
    decoder: AvroDecoder,
    reader: EventReader,
}

impl fmt::Debug for OrderEventCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrderEventCodec")
            .field("topic", &self.topic)
            .field("subject", &self.subject)
            .field("registry_url", &self.registry_url)
            .finish_non_exhaustive()
    }
}

impl OrderEventCodec {
    /// A codec for `topic` (usually [`ORDER_EVENTS_TOPIC`](crate::ORDER_EVENTS_TOPIC)). Makes
    /// no network call; call [`OrderEventCodec::register`] at start-up.
    pub fn new(config: &RegistryConfig, topic: impl Into<String>) -> Result<Self, ContractError> {
        let topic = topic.into();
        let settings = config.settings()?;
        Ok(OrderEventCodec {
            subject: value_subject(&topic),
            topic,
            registry_url: config.display_url(),
            encoder: AvroEncoder::new(settings.clone()),
            settings: settings.clone(),
            decoder: AvroDecoder::new(settings),
            reader: EventReader::new(),
        })
    }

    /// The topic this codec is for.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The subject our schema is registered under: `"{topic}-value"`.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    fn strategy(&self) -> SubjectNameStrategy {
        SubjectNameStrategy::TopicNameStrategyWithSchema(
            self.topic.clone(),
            false,
            SuppliedSchema::new(
                Some(ORDER_EVENT_RECORD_NAME.to_owned()),
                SchemaType::Avro,
                ORDER_EVENT_SCHEMA.to_owned(),
            ),
        )
    }

    /// Registers our schema under [`subject`](Self::subject) (a no-op on the registry if it is
    /// already registered there) and returns its global id. The id is cached: later calls,
    /// and [`encode`](Self::encode), do not ask the registry again.
    ///
    /// Fails if the registry is unreachable (retriable) or rejects the schema, e.g. as
    /// incompatible with the subject's previous versions (HTTP 409, not retriable). Refused
    /// credentials (401/403) and TLS failures are not retriable either
    /// ([`ContractError::is_fatal`]): retrying cannot fix a configuration.
    pub async fn register(&self) -> Result<u32, ContractError> {
        match self
            .encoder
            .get_schema_and_id(&self.subject, self.strategy())
            .await
        {
            Ok(schema) => Ok(schema.id),
            Err(source) => {
                let error = self.registry_error(source);
                if error.is_retriable() {
                    // The crate caches non-retriable errors such as a 500; make the next
                    // attempt ask the registry again.
                    self.encoder.remove_errors_from_cache();
                }
                Err(error)
            }
        }
    }

    /// Checks that the registry answers a read with our settings (`GET /subjects`): the URL,
    /// TLS and the credentials. For a consumer's start-up, where [`register`](Self::register)
    /// is not called (a read-only user suffices). Errors as for `register`: retriable when
    /// the registry is unreachable, fatal for refused credentials or a failed TLS handshake.
    pub async fn check_access(&self) -> Result<(), ContractError> {
        schema_registry_converter::async_impl::schema_registry::get_all_subjects(&self.settings)
            .await
            .map(|_| ())
            .map_err(|source| self.registry_error(source))
    }

    /// For a service's `/ready`: [`check_access`](Self::check_access) bounded by `limit`, and
    /// why it fails, in words for an operator (no credentials in them).
    pub async fn readiness(&self, limit: Duration) -> Result<(), String> {
        match tokio::time::timeout(limit, self.check_access()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) if e.is_fatal() => Err(format!("Schema Registry refuses us: {e}")),
            Ok(Err(e)) => Err(format!("Schema Registry unreachable: {e}")),
            Err(_) => Err(format!(
                "Schema Registry unreachable: no answer within {} ms",
                limit.as_millis()
            )),
        }
    }

    fn registry_error(&self, source: SRCError) -> ContractError {
        let failure = registry_failure(&source);
        let retriable = failure == RegistryFailure::Other && is_transient(&source);
        ContractError::Registry(Box::new(RegistryError {
            url: self.registry_url.clone(),
            subject: self.subject.clone(),
            retriable,
            failure,
            source,
        }))
    }

    /// Encodes an event: magic byte 0, the 4-byte big-endian id of our schema, the Avro
    /// binary datum. Registers the schema first if [`register`](Self::register) has not run.
    pub async fn encode(&self, event: &OrderEvent) -> Result<Vec<u8>, ContractError> {
        let schema_id = self.register().await?;
        let datum = event.to_avro_datum()?;
        Ok(frame(schema_id, &datum))
    }

    /// Decodes a Kafka record value written with any registered schema that resolves to ours.
    /// See [`DecodeError`] for the classification and
    /// [`DecodeError::is_poison`](crate::DecodeError::is_poison) for what to do with it.
    pub async fn decode(&self, payload: Option<&[u8]>) -> Result<OrderEvent, DecodeError> {
        let frame = parse_frame(payload)?;
        let writer = match self.decoder.get_schema(frame.schema_id).await {
            Ok(schema) => schema,
            Err(e) => {
                let err = match classify_registry_error(frame.schema_id, &e) {
                    DecodeError::RegistryUnavailable(reason) => DecodeError::RegistryUnavailable(
                        format!("{} ({reason})", self.registry_url),
                    ),
                    poison => poison,
                };
                if !err.is_poison() {
                    self.decoder.remove_errors_from_cache();
                }
                return Err(err);
            }
        };
        self.reader
            .read(frame.schema_id, &writer.parsed, frame.datum)
    }
}

/// Classifies a failure to fetch writer schema `schema_id`; see the [module
/// documentation](self).
pub fn classify_registry_error(schema_id: u32, error: &SRCError) -> DecodeError {
    let description = describe(error);
    if is_transient(error) {
        return DecodeError::RegistryUnavailable(description);
    }
    // The fetch of the schema itself got an HTTP error response.
    if http_status(&error.error).is_some() {
        return match raw_error(error) {
            Some(raw) if raw.error_code == SCHEMA_NOT_FOUND => {
                DecodeError::UnknownSchemaId(schema_id)
            }
            _ => DecodeError::RegistryUnavailable(description),
        };
    }
    let schema_unusable = chain(error).any(|e| {
        e.is::<apache_avro::Error>()
            || e.is::<serde_json::Error>()
            // A nested registry error (e.g. fetching a referenced schema) that is a 404.
            || e.downcast_ref::<SRCError>()
                .and_then(|s| http_status(&s.error))
                .is_some_and(|status| status == 404)
    }) || is_wrong_schema_type(error);
    if schema_unusable {
        DecodeError::UnresolvableSchema {
            schema_id,
            reason: description,
        }
    } else {
        DecodeError::RegistryUnavailable(description)
    }
}

/// Whether retrying may help: the crate marked an error in the chain retriable, or the
/// registry answered with a 5xx.
fn is_transient(error: &SRCError) -> bool {
    chain(error).any(|e| {
        e.downcast_ref::<SRCError>().is_some_and(|s| {
            s.retriable || http_status(&s.error).is_some_and(|status| status >= 500)
        })
    })
}

/// The error and its sources, outermost first.
fn chain(error: &SRCError) -> impl Iterator<Item = &(dyn StdError + 'static)> {
    let first: &(dyn StdError + 'static) = error;
    std::iter::successors(Some(first), |e: &&(dyn StdError + 'static)| (*e).source())
}

/// The registry's JSON error body attached directly to this error, if any.
fn raw_error(error: &SRCError) -> Option<&RawError> {
    error.source().and_then(|s| s.downcast_ref::<RawError>())
}

/// The HTTP status in the crate's message "HTTP request to schema registry failed with status
/// 404 Not Found", the only place it is kept.
fn http_status(message: &str) -> Option<u16> {
    let (_, rest) = message.split_once("failed with status ")?;
    rest.get(..3)?.parse().ok()
}

/// The registry has the id, but for a Protobuf or JSON schema.
fn is_wrong_schema_type(error: &SRCError) -> bool {
    error.error.starts_with("type ")
        && (error.error.ends_with("is not correct") || error.error.ends_with("is not supported"))
}

/// What kind of failure a registry error is: a failed TLS handshake (an OpenSSL error in the
/// chain), refused credentials (a 401 or 403 anywhere in the chain), or anything else.
fn registry_failure(error: &SRCError) -> RegistryFailure {
    if let Some(detail) = tls_problem(error) {
        return RegistryFailure::Tls(detail);
    }
    let statuses = chain(error).filter_map(|e| {
        e.downcast_ref::<SRCError>()
            .and_then(|s| http_status(&s.error))
    });
    for status in statuses {
        match status {
            401 => return RegistryFailure::Unauthorized,
            403 => return RegistryFailure::Forbidden,
            _ => {}
        }
    }
    RegistryFailure::Other
}

/// What OpenSSL said, when the chain holds a TLS failure: reqwest → hyper-util → native-tls →
/// OpenSSL's error stack. native-tls's error (just before the stack) adds the certificate
/// verification result, e.g. "… certificate verify failed … (certificate has expired)", so
/// its message is the one returned. An unexpected EOF during the handshake is a dropped
/// connection, not a certificate problem, and stays a transient failure.
fn tls_problem(error: &SRCError) -> Option<String> {
    let links: Vec<&(dyn StdError + 'static)> = chain(error).collect();
    let at = links
        .iter()
        .position(|e| e.is::<openssl::error::ErrorStack>() || e.is::<openssl::ssl::Error>())?;
    let detail = match at.checked_sub(1).map(|before| links[before].to_string()) {
        Some(before) if before.contains(&links[at].to_string()) => before,
        _ => links[at].to_string(),
    };
    if detail.to_ascii_lowercase().contains("unexpected eof") {
        return None;
    }
    Some(detail)
}

/// The error's message with its causes, for logs; refused credentials and TLS failures say
/// what to check.
fn describe(error: &SRCError) -> String {
    match registry_failure(error) {
        RegistryFailure::Unauthorized => {
            "401 Unauthorized: check SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO".to_owned()
        }
        RegistryFailure::Forbidden => {
            "403 Forbidden: the user in SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO may not read schemas"
                .to_owned()
        }
        RegistryFailure::Tls(detail) => format!(
            "TLS handshake failed: {detail}: check the registry's certificate and \
             SCHEMA_REGISTRY_CA_FILE"
        ),
        RegistryFailure::Other => match &error.cause {
            Some(cause) => format!("{}: {cause}", error.error),
            None => error.error.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(code: u32) -> RawError {
        serde_json::from_str(&format!(
            r#"{{"error_code":{code},"message":"Schema {code}"}}"#
        ))
        .unwrap()
    }

    fn http(status: &str, code: u32, retriable: bool) -> SRCError {
        let msg = format!("HTTP request to schema registry failed with status {status}");
        if retriable {
            SRCError::retryable_with_cause(raw(code), &msg)
        } else {
            SRCError::non_retryable_with_cause(raw(code), &msg)
        }
    }

    #[test]
    fn a_404_with_code_40403_is_an_unknown_schema_id() {
        let e = http("404 Not Found", 40403, false).into_cache();
        assert_eq!(
            classify_registry_error(7, &e),
            DecodeError::UnknownSchemaId(7)
        );
    }

    #[test]
    fn a_404_without_a_registry_error_body_is_not_blamed_on_the_record() {
        let e = http("404 Not Found", 0, false);
        assert!(matches!(
            classify_registry_error(7, &e),
            DecodeError::RegistryUnavailable(_)
        ));
    }

    #[test]
    fn server_errors_are_transient_even_when_the_crate_says_otherwise() {
        for status in [
            "500 Internal Server Error",
            "504 Gateway Timeout",
            "503 Service Unavailable",
        ] {
            let e = http(status, 50001, status.starts_with("503"));
            assert!(
                matches!(
                    classify_registry_error(1, &e),
                    DecodeError::RegistryUnavailable(_)
                ),
                "{status}"
            );
        }
    }

    #[test]
    fn a_connection_failure_is_transient() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = SRCError::retryable_with_cause(io, "http call to schema registry failed");
        let classified = classify_registry_error(1, &e);
        assert!(matches!(classified, DecodeError::RegistryUnavailable(_)));
        assert!(!classified.is_poison());
    }

    #[test]
    fn unauthorized_is_a_configuration_problem_not_a_poison_record() {
        let e = http("401 Unauthorized", 40101, false);
        assert!(matches!(
            classify_registry_error(1, &e),
            DecodeError::RegistryUnavailable(_)
        ));
    }

    #[test]
    fn a_schema_of_another_type_is_unresolvable() {
        let e = SRCError::non_retryable_without_cause("type Protobuf, is not correct");
        assert!(matches!(
            classify_registry_error(3, &e),
            DecodeError::UnresolvableSchema { schema_id: 3, .. }
        ));
    }

    #[test]
    fn an_unparseable_schema_is_unresolvable() {
        let json_err = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        let e = SRCError::non_retryable_with_cause(json_err, "failed to parse Avro schema");
        assert!(matches!(
            classify_registry_error(3, &e),
            DecodeError::UnresolvableSchema { .. }
        ));
    }

    #[test]
    fn a_retriable_failure_fetching_a_reference_is_transient() {
        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out");
        let inner = SRCError::retryable_with_cause(io, "http call to schema registry failed");
        let e = SRCError::non_retryable_with_cause(inner, "problem with reference x");
        assert!(matches!(
            classify_registry_error(3, &e),
            DecodeError::RegistryUnavailable(_)
        ));
    }

    #[test]
    fn a_missing_reference_makes_the_schema_unresolvable() {
        let inner = http("404 Not Found", 40402, false);
        let e = SRCError::non_retryable_with_cause(inner, "problem with reference x");
        assert!(matches!(
            classify_registry_error(3, &e),
            DecodeError::UnresolvableSchema { .. }
        ));
    }

    #[test]
    fn a_response_that_is_not_from_a_registry_is_not_blamed_on_the_record() {
        let e = SRCError::non_retryable_without_cause("Could not get raw schema from response");
        assert!(matches!(
            classify_registry_error(3, &e),
            DecodeError::RegistryUnavailable(_)
        ));
    }

    #[test]
    fn the_status_is_read_from_the_crate_message() {
        assert_eq!(
            http_status("HTTP request to schema registry failed with status 404 Not Found"),
            Some(404)
        );
        assert_eq!(http_status("something else"), None);
        assert_eq!(http_status("failed with status 4"), None);
    }

    #[test]
    fn a_codec_knows_its_subject_and_the_decode_future_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let codec = OrderEventCodec::new(&RegistryConfig::new("http://127.0.0.1:9"), "t").unwrap();
        assert_eq!(codec.subject(), "t-value");
        assert_eq!(codec.topic(), "t");
        let fut = codec.decode(None);
        assert_send(&fut);
        let reg = codec.register();
        assert_send(&reg);
    }
}
