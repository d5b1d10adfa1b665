//! Confluent Schema Registry's REST API, for AVRO schemas, one file per resource (as the
//! services' `routes/`): `schemas` (`/schemas/...`), `subjects` (`/subjects/...`:
//! registration, look-up, versions, deletes), `compatibility` (`/compatibility/...`),
//! `config` (`/config[/{subject}]`) and `mode` (`/mode[/{subject}]`). This module holds
//! what they share: request parsing, Confluent's answers and `write`.
//!
//! Handlers read the `Model` for queries. Changes go through `write`: take this instance's
//! write lock, catch up with the log, decide against the current state, append, and answer only
//! once the broker acknowledged the records and the reader applied them.
//!
//! Hostile input is bounded before it costs anything: a schema larger than
//! `Limits::max_schema_bytes` or nested deeper than [`MAX_NESTING_DEPTH`] is refused with 422
//! (error code 42201) before or right after parsing, and parsing and compatibility checks run
//! on data cloned out of the model, never while holding the lock the log reader needs.

use actix_web::http::header;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{ApiError, CONTENT_TYPE_V1};
use crate::model::{nesting_depth, parse_schema, Model, ParsedSchema, VersionEntry, VersionSpec};
use crate::records::{Record, SchemaReference};
use crate::store::Store;

mod compatibility;
mod config;
mod mode;
mod schemas;
mod subjects;

type Reply = Result<HttpResponse, ApiError>;

/// The deepest nesting of records, arrays, maps and unions a schema may have.
pub const MAX_NESTING_DEPTH: usize = 64;

/// Bounds on what one request may ask of the registry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// The largest schema text accepted, in bytes. Well below the broker's default 1 MB
    /// message limit, so a schema accepted here is never refused by the broker.
    pub(crate) max_schema_bytes: usize,
}

/// Registers every route of the API on `config`. A known path asked with another method
/// answers 405 in Confluent's shape.
pub(crate) fn routes(config: &mut web::ServiceConfig) {
    config.service(resource("/").route(web::get().to(root)));
    schemas::routes(config);
    subjects::routes(config);
    compatibility::routes(config);
    self::config::routes(config);
    mode::routes(config);
}

/// A resource at `path` that answers 405 in Confluent's shape to a method it does not have.
fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

fn ok(body: Value) -> Reply {
    Ok(HttpResponse::Ok().content_type(CONTENT_TYPE_V1).json(body))
}

/// Media types a request body may have (Confluent's list). None of them is one a web page may
/// send cross-site without a CORS preflight.
const ACCEPTED_BODY_TYPES: [&str; 4] = [
    "application/vnd.schemaregistry.v1+json",
    "application/vnd.schemaregistry+json",
    "application/json",
    "application/octet-stream",
];

/// Parses a JSON request body, answering like Confluent when it is not acceptable.
///
/// A body without a `Content-Type` is refused (415) rather than read as JSON: a web page can
/// send such a body to a registry on localhost without a CORS preflight.
fn body<T: DeserializeOwned>(request: &HttpRequest, bytes: &Bytes) -> Result<T, ApiError> {
    let Some(content_type) = request.headers().get(header::CONTENT_TYPE) else {
        return Err(ApiError::unsupported_media_type("no Content-Type"));
    };
    let content_type = content_type.to_str().unwrap_or_default();
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if !ACCEPTED_BODY_TYPES.contains(&essence.as_str()) {
        return Err(ApiError::unsupported_media_type(content_type));
    }
    if bytes.is_empty() {
        return Err(ApiError::malformed_json("the request body is empty"));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(ApiError::malformed_json)?;
    serde_json::from_value(value).map_err(ApiError::unprocessable)
}

fn check_subject(subject: &str) -> Result<(), ApiError> {
    if subject.is_empty() || subject.len() > 1024 || subject.chars().any(char::is_control) {
        return Err(ApiError::invalid_subject(subject));
    }
    Ok(())
}

fn parse_version(text: &str) -> Result<VersionSpec, ApiError> {
    if text.eq_ignore_ascii_case("latest") || text == "-1" {
        return Ok(VersionSpec::Latest);
    }
    match text.parse::<u32>() {
        Ok(n) if (1..=i32::MAX as u32).contains(&n) => Ok(VersionSpec::Number(n)),
        _ => Err(ApiError::invalid_version(text)),
    }
}

fn parse_id(text: &str) -> Result<u32, ApiError> {
    text.parse::<u32>()
        .map_err(|_| ApiError::schema_not_found(None))
}

/// `{"subject", "version", "id", "schema"}` as Confluent shows one version.
fn version_body(subject: &str, version: u32, id: u32, schema: &ParsedSchema) -> Value {
    let mut body = json!({ "subject": subject, "version": version, "id": id });
    add_schema(&mut body, schema);
    body
}

fn add_schema(body: &mut Value, schema: &ParsedSchema) {
    if let Value::Object(map) = body {
        if !schema.references.is_empty() {
            map.insert("references".into(), json!(schema.references));
        }
        map.insert("schema".into(), Value::String(schema.text.clone()));
    }
}

/// The schema of a subject version, or the right 404.
fn resolve_version(
    model: &Model,
    subject: &str,
    spec: VersionSpec,
    include_deleted: bool,
    version_text: &str,
) -> Result<(u32, VersionEntry), ApiError> {
    if model.versions(subject, include_deleted).is_none() {
        return Err(ApiError::subject_not_found(subject));
    }
    model
        .version(subject, spec, include_deleted)
        .ok_or_else(|| ApiError::version_not_found(version_text))
}

fn stored(model: &Model, id: u32) -> Result<&ParsedSchema, ApiError> {
    model.schema(id).ok_or(ApiError::schema_not_found(Some(id)))
}

/// Tells, once the records are applied, whether ours won.
type Verdict = Box<dyn Fn(&Model) -> bool + Send>;

/// What a change wants written and how to answer.
struct Change {
    records: Vec<Record>,
    answer: Value,
    /// After the records are applied: did ours win? (`None`: nothing can conflict.)
    won: Option<Verdict>,
}

/// Runs a change: decide on the current state, append, wait, answer; retried when another
/// writer's record won a race.
async fn write(
    store: &Store,
    decide: impl Fn(&Model) -> Result<Change, ApiError>,
) -> Result<Value, ApiError> {
    write_with(store, |store| decide(&store.model())).await
}

/// [`write`] for a decision that takes the model's read lock itself, in short turns, so that
/// its slow parts (parsing, compatibility) run without holding it.
async fn write_with(
    store: &Store,
    decide: impl Fn(&Store) -> Result<Change, ApiError>,
) -> Result<Value, ApiError> {
    const ATTEMPTS: usize = 5;
    let _guard = store.write_lock().await;
    for _ in 0..ATTEMPTS {
        store.sync().await?;
        let change = decide(store)?;
        if change.records.is_empty() {
            return Ok(change.answer);
        }
        store.append(change.records).await?;
        match &change.won {
            Some(won) if !won(&store.model()) => continue,
            _ => return Ok(change.answer),
        }
    }
    Err(ApiError::conflicting_writers())
}

/// A boolean query flag as clients send it: `true`, `True`, `TRUE`, `1` (and the negatives).
/// Confluent's Python client sends Python's `True`/`False` spelling.
fn flag<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    let text = String::deserialize(deserializer)?;
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" | "" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(serde::de::Error::custom(format!(
            "'{text}' is not a boolean (true or false)"
        ))),
    }
}

/// Turns an unreadable query string into a Confluent error body instead of plain text.
pub(crate) fn query_error(
    error: actix_web::error::QueryPayloadError,
    _: &HttpRequest,
) -> actix_web::Error {
    ApiError::new(
        actix_web::http::StatusCode::BAD_REQUEST,
        400,
        format!("Invalid query parameter: {error}"),
    )
    .into()
}

#[derive(Deserialize)]
struct DeletedQuery {
    #[serde(default, deserialize_with = "flag")]
    deleted: bool,
}

#[derive(Deserialize)]
struct DefaultToGlobal {
    #[serde(default, rename = "defaultToGlobal", deserialize_with = "flag")]
    default_to_global: bool,
}

async fn root() -> Reply {
    ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaRequest {
    schema: String,
    #[serde(default)]
    schema_type: Option<String>,
    #[serde(default)]
    references: Option<Vec<SchemaReference>>,
    #[serde(default)]
    version: Option<i64>,
    #[serde(default)]
    id: Option<i64>,
}

impl SchemaRequest {
    fn references(&self) -> &[SchemaReference] {
        self.references.as_deref().unwrap_or(&[])
    }

    /// Parses the schema: the texts of its references are cloned under the model's lock, the
    /// parse itself runs without it. Too large or too deep a schema is refused (42201).
    fn parse(&self, store: &Store, limits: &Limits) -> Result<ParsedSchema, ApiError> {
        if let Some(kind) = self.schema_type.as_deref() {
            if !kind.eq_ignore_ascii_case("AVRO") {
                return Err(ApiError::invalid_schema(format!(
                    "Invalid schema type {kind}: this registry supports AVRO only"
                )));
            }
        }
        if self.schema.len() > limits.max_schema_bytes {
            return Err(ApiError::schema_too_large(
                self.schema.len(),
                limits.max_schema_bytes,
            ));
        }
        let dependencies = store
            .model()
            .reference_texts(self.references())
            .map_err(ApiError::invalid_schema)?;
        let schema = parse_schema(&self.schema, self.references(), &dependencies)
            .map_err(ApiError::invalid_schema)?;
        let depth = nesting_depth(&schema.parsed);
        if depth > MAX_NESTING_DEPTH {
            return Err(ApiError::invalid_schema(format!(
                "Invalid schema: types nested {depth} levels deep; the limit is {MAX_NESTING_DEPTH}"
            )));
        }
        Ok(schema)
    }
}

/// A known path asked with a method it does not have, in Confluent's shape.
async fn method_not_allowed() -> Reply {
    Err(ApiError::http(
        actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
        None,
    ))
}

/// Fallback for unknown paths, in Confluent's shape.
pub(crate) async fn not_found() -> Reply {
    Err(ApiError::not_found_route())
}
