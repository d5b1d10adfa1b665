//! Confluent Schema Registry's REST API, for AVRO schemas.
//!
//! Handlers read the [`Model`] for queries. Changes go through [`write`]: take this instance's
//! write lock, catch up with the log, decide against the current state, append, and answer only
//! once the broker acknowledged the records and the reader applied them.
//!
//! Hostile input is bounded before it costs anything: a schema larger than
//! [`Limits::max_schema_bytes`] or nested deeper than [`MAX_NESTING_DEPTH`] is refused with 422
//! (error code 42201) before or right after parsing, and parsing and compatibility checks run
//! on data cloned out of the model, never while holding the lock the log reader needs.

use actix_web::http::header;
use actix_web::web::{self, Bytes, Data, Path, Query};
use actix_web::{HttpRequest, HttpResponse};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

use apache_avro::Schema;

use crate::compat::{self, CompatibilityLevel};
use crate::error::{ApiError, CONTENT_TYPE_V1};
use crate::model::{
    nesting_depth, parse_schema, Mode, Model, ParsedSchema, VersionEntry, VersionSpec, MAX_ID,
};
use crate::records::{
    ConfigValue, DeleteSubjectValue, ModeValue, RecordKey, SchemaReference, SchemaValue,
};
use crate::store::Store;

type Reply = Result<HttpResponse, ApiError>;

/// The deepest nesting of records, arrays, maps and unions a schema may have.
pub const MAX_NESTING_DEPTH: usize = 64;

/// Bounds on what one request may ask of the registry.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest schema text accepted, in bytes. Well below the broker's default 1 MB
    /// message limit, so a schema accepted here is never refused by the broker.
    pub max_schema_bytes: usize,
}

/// Registers every route of the API on `config`. A known path asked with another method
/// answers 405 in Confluent's shape.
pub fn routes(config: &mut web::ServiceConfig) {
    config.service(
        web::resource("/")
            .route(web::get().to(root))
            .default_service(web::to(method_not_allowed)),
    );
    config.service(
        web::resource("/schemas/types")
            .route(web::get().to(schema_types))
            .default_service(web::to(method_not_allowed)),
    );
    config.service(
        web::resource("/schemas/ids/{id}")
            .route(web::get().to(schema_by_id))
            .default_service(web::to(method_not_allowed)),
    );
    config.service(
        web::resource("/schemas/ids/{id}/schema")
            .route(web::get().to(raw_schema_by_id))
            .default_service(web::to(method_not_allowed)),
    );
    config.service(
        web::resource("/schemas/ids/{id}/subjects")
            .route(web::get().to(subjects_by_id))
            .default_service(web::to(method_not_allowed)),
    );
    config.service(
        web::resource("/schemas/ids/{id}/versions")
            .route(web::get().to(versions_by_id))
            .default_service(web::to(method_not_allowed)),
    );
    config.service(
        web::resource("/subjects")
            .route(web::get().to(list_subjects))
            .default_service(web::to(method_not_allowed)),
    );
    config.service(
        web::resource("/subjects/{subject}")
            .route(web::post().to(lookup))
            .route(web::delete().to(delete_subject))
            .default_service(web::to(method_not_allowed)),
    );
    config.service(
        web::resource("/subjects/{subject}/versions")
            .route(web::get().to(list_versions))
            .route(web::post().to(register))
            .default_service(web::to(method_not_allowed)),
    );
    config.service(
        web::resource("/subjects/{subject}/versions/{version}")
            .route(web::get().to(get_version))
            .route(web::delete().to(delete_version))
            .default_service(web::to(method_not_allowed)),
    );
    config.service(
        web::resource("/subjects/{subject}/versions/{version}/schema")
            .route(web::get().to(get_raw_version))
            .default_service(web::to(method_not_allowed)),
    );
    config.service(
        web::resource("/subjects/{subject}/versions/{version}/referencedby")
            .route(web::get().to(referenced_by))
            .default_service(web::to(method_not_allowed)),
    );
    config.service(
        web::resource("/compatibility/subjects/{subject}/versions/{version}")
            .route(web::post().to(compatibility_with_version))
            .default_service(web::to(method_not_allowed)),
    );
    config.service(
        web::resource("/compatibility/subjects/{subject}/versions")
            .route(web::post().to(compatibility_with_all))
            .default_service(web::to(method_not_allowed)),
    );
    config.service(
        web::resource("/config")
            .route(web::get().to(get_global_config))
            .route(web::put().to(put_global_config))
            .route(web::delete().to(delete_global_config))
            .default_service(web::to(method_not_allowed)),
    );
    config.service(
        web::resource("/config/{subject}")
            .route(web::get().to(get_subject_config))
            .route(web::put().to(put_subject_config))
            .route(web::delete().to(delete_subject_config))
            .default_service(web::to(method_not_allowed)),
    );
    config.service(
        web::resource("/mode")
            .route(web::get().to(get_global_mode))
            .route(web::put().to(put_global_mode))
            .default_service(web::to(method_not_allowed)),
    );
    config.service(
        web::resource("/mode/{subject}")
            .route(web::get().to(get_subject_mode))
            .route(web::put().to(put_subject_mode))
            .route(web::delete().to(delete_subject_mode))
            .default_service(web::to(method_not_allowed)),
    );
}

// ---- helpers ----

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

fn parse_level(text: &str) -> Result<CompatibilityLevel, ApiError> {
    text.parse()
        .map_err(|_| ApiError::invalid_compatibility_level(text))
}

fn parse_mode(text: &str) -> Result<Mode, ApiError> {
    text.parse().map_err(|_| ApiError::invalid_mode(text))
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
    records: Vec<(RecordKey, Option<Value>)>,
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

fn to_json<T: serde::Serialize>(value: &T) -> Result<Value, ApiError> {
    serde_json::to_value(value).map_err(|e| ApiError::unprocessable(e.to_string()))
}

// ---- queries ----

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
pub fn query_error(
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
struct SubjectsQuery {
    #[serde(default, deserialize_with = "flag")]
    deleted: bool,
    #[serde(default, rename = "subjectPrefix")]
    subject_prefix: Option<String>,
}

async fn root() -> Reply {
    ok(json!({}))
}

async fn schema_types() -> Reply {
    ok(json!(["AVRO"]))
}

async fn schema_by_id(store: Data<Store>, id: Path<String>) -> Reply {
    let id = parse_id(&id)?;
    let model = store.model();
    if model.usages(id, true).is_empty() {
        return Err(ApiError::schema_not_found(Some(id)));
    }
    let mut body = json!({});
    add_schema(&mut body, stored(&model, id)?);
    ok(body)
}

async fn raw_schema_by_id(store: Data<Store>, id: Path<String>) -> Reply {
    let id = parse_id(&id)?;
    let model = store.model();
    if model.usages(id, true).is_empty() {
        return Err(ApiError::schema_not_found(Some(id)));
    }
    let text = &stored(&model, id)?.text;
    Ok(HttpResponse::Ok()
        .content_type(CONTENT_TYPE_V1)
        .body(text.clone()))
}

async fn subjects_by_id(store: Data<Store>, id: Path<String>, query: Query<DeletedQuery>) -> Reply {
    let id = parse_id(&id)?;
    let model = store.model();
    let usages = model.usages(id, query.deleted);
    if model.usages(id, true).is_empty() {
        return Err(ApiError::schema_not_found(Some(id)));
    }
    let mut subjects: Vec<String> = usages.into_iter().map(|(s, _)| s).collect();
    subjects.dedup();
    ok(json!(subjects))
}

async fn versions_by_id(store: Data<Store>, id: Path<String>, query: Query<DeletedQuery>) -> Reply {
    let id = parse_id(&id)?;
    let model = store.model();
    if model.usages(id, true).is_empty() {
        return Err(ApiError::schema_not_found(Some(id)));
    }
    let usages: Vec<Value> = model
        .usages(id, query.deleted)
        .into_iter()
        .map(|(subject, version)| json!({ "subject": subject, "version": version }))
        .collect();
    ok(json!(usages))
}

async fn list_subjects(store: Data<Store>, query: Query<SubjectsQuery>) -> Reply {
    let prefix = query.subject_prefix.as_deref().unwrap_or("");
    let subjects: Vec<String> = store
        .model()
        .subjects(query.deleted)
        .into_iter()
        .filter(|s| s.starts_with(prefix))
        .collect();
    ok(json!(subjects))
}

async fn list_versions(
    store: Data<Store>,
    subject: Path<String>,
    query: Query<DeletedQuery>,
) -> Reply {
    let versions = store
        .model()
        .versions(&subject, query.deleted)
        .ok_or_else(|| ApiError::subject_not_found(&subject))?;
    ok(json!(versions.iter().map(|(v, _)| *v).collect::<Vec<_>>()))
}

async fn get_version(
    store: Data<Store>,
    path: Path<(String, String)>,
    query: Query<DeletedQuery>,
) -> Reply {
    let (subject, version_text) = path.into_inner();
    let spec = parse_version(&version_text)?;
    let model = store.model();
    let (version, entry) = resolve_version(&model, &subject, spec, query.deleted, &version_text)?;
    ok(version_body(
        &subject,
        version,
        entry.id,
        stored(&model, entry.id)?,
    ))
}

async fn get_raw_version(
    store: Data<Store>,
    path: Path<(String, String)>,
    query: Query<DeletedQuery>,
) -> Reply {
    let (subject, version_text) = path.into_inner();
    let spec = parse_version(&version_text)?;
    let model = store.model();
    let (_, entry) = resolve_version(&model, &subject, spec, query.deleted, &version_text)?;
    Ok(HttpResponse::Ok()
        .content_type(CONTENT_TYPE_V1)
        .body(stored(&model, entry.id)?.text.clone()))
}

async fn referenced_by(store: Data<Store>, path: Path<(String, String)>) -> Reply {
    let (subject, version_text) = path.into_inner();
    let spec = parse_version(&version_text)?;
    let model = store.model();
    let (version, _) = resolve_version(&model, &subject, spec, false, &version_text)?;
    ok(json!(model.referenced_by(&subject, version)))
}

// ---- registration and look-up ----

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

/// The existing, visible versions of `subject` as (version, schema), oldest first; shared
/// handles, so that the check can run after the model's lock is released.
fn existing_schemas(model: &Model, subject: &str) -> Result<Vec<(u32, Arc<Schema>)>, ApiError> {
    model
        .versions(subject, false)
        .unwrap_or_default()
        .into_iter()
        .map(|(version, entry)| Ok((version, stored(model, entry.id)?.parsed.clone())))
        .collect()
}

/// Checks `candidate` against `existing` at `level` (no lock held).
fn check_against(
    level: CompatibilityLevel,
    candidate: &Schema,
    existing: &[(u32, Arc<Schema>)],
) -> Vec<String> {
    let existing: Vec<(u32, &Schema)> = existing.iter().map(|(v, s)| (*v, s.as_ref())).collect();
    compat::check(level, candidate, &existing)
}

fn refuse_if_read_only(model: &Model, subject: &str) -> Result<(), ApiError> {
    match model.mode_for(subject) {
        Mode::ReadOnly | Mode::ReadOnlyOverride => Err(ApiError::not_permitted(format!(
            "Subject {subject} is in read-only mode"
        ))),
        Mode::ReadWrite | Mode::Import => Ok(()),
    }
}

async fn register(
    store: Data<Store>,
    limits: Data<Limits>,
    subject: Path<String>,
    request: HttpRequest,
    bytes: Bytes,
) -> Reply {
    let subject = subject.into_inner();
    check_subject(&subject)?;
    let input: SchemaRequest = body(&request, &bytes)?;
    let answer = write_with(&store, |store| {
        let import = {
            let model = store.model();
            refuse_if_read_only(&model, &subject)?;
            model.mode_for(&subject) == Mode::Import
        };
        let schema = input.parse(store, &limits)?;
        let (level, existing) = {
            let model = store.model();
            if let Some((_, entry)) = model.find_in_subject(&subject, &schema, false) {
                if let Some(id) = input.id.filter(|id| *id > 0) {
                    if id != i64::from(entry.id) {
                        return Err(ApiError::id_does_not_match(entry.id));
                    }
                }
                return Ok(Change {
                    records: vec![],
                    answer: json!({ "id": entry.id }),
                    won: None,
                });
            }
            (
                model.level_for(&subject),
                existing_schemas(&model, &subject)?,
            )
        };
        if !import {
            let messages = check_against(level, &schema.parsed, &existing);
            if !messages.is_empty() {
                return Err(ApiError::incompatible(&subject, &messages));
            }
        }
        let model = store.model();
        let id = match (import, input.id.filter(|id| *id > 0)) {
            (true, Some(id)) => {
                let id = u32::try_from(id)
                    .ok()
                    .filter(|id| *id <= MAX_ID)
                    .ok_or_else(|| ApiError::id_out_of_range(id))?;
                if model
                    .schema(id)
                    .is_some_and(|s| s.canonical != schema.canonical)
                {
                    return Err(ApiError::id_does_not_match(id));
                }
                id
            }
            _ => match model.id_of(&schema) {
                Some(id) => id,
                None => model.next_id().ok_or_else(ApiError::ids_exhausted)?,
            },
        };
        let version = match (import, input.version.filter(|v| *v > 0)) {
            (true, Some(v)) => u32::try_from(v)
                .ok()
                .filter(|v| *v <= MAX_ID)
                .ok_or_else(|| ApiError::invalid_version(&v.to_string()))?,
            _ => model
                .next_version(&subject)
                .ok_or_else(|| ApiError::versions_exhausted(&subject))?,
        };
        let value = SchemaValue {
            subject: subject.clone(),
            version,
            id,
            schema_type: None,
            references: schema.references.clone(),
            schema: schema.text.clone(),
            deleted: false,
        };
        let owned_subject = subject.clone();
        Ok(Change {
            records: vec![(RecordKey::schema(&subject, version), Some(to_json(&value)?))],
            answer: json!({ "id": id }),
            won: Some(Box::new(move |model: &Model| {
                model
                    .version(&owned_subject, VersionSpec::Number(version), true)
                    .is_some_and(|(_, entry)| entry.id == id)
            })),
        })
    })
    .await?;
    ok(answer)
}

async fn lookup(
    store: Data<Store>,
    limits: Data<Limits>,
    subject: Path<String>,
    query: Query<DeletedQuery>,
    request: HttpRequest,
    bytes: Bytes,
) -> Reply {
    let input: SchemaRequest = body(&request, &bytes)?;
    if store.model().versions(&subject, query.deleted).is_none() {
        return Err(ApiError::subject_not_found(&subject));
    }
    let schema = input.parse(&store, &limits)?;
    let model = store.model();
    let (version, entry) = model
        .find_in_subject(&subject, &schema, query.deleted)
        .ok_or(ApiError::schema_not_found(None))?;
    ok(version_body(
        &subject,
        version,
        entry.id,
        stored(&model, entry.id)?,
    ))
}

// ---- deletes ----

#[derive(Deserialize)]
struct PermanentQuery {
    #[serde(default, deserialize_with = "flag")]
    permanent: bool,
}

fn soft_delete_record(
    model: &Model,
    subject: &str,
    version: u32,
    id: u32,
) -> Result<(RecordKey, Option<Value>), ApiError> {
    let schema = stored(model, id)?;
    let value = SchemaValue {
        subject: subject.to_string(),
        version,
        id,
        schema_type: None,
        references: schema.references.clone(),
        schema: schema.text.clone(),
        deleted: true,
    };
    Ok((RecordKey::schema(subject, version), Some(to_json(&value)?)))
}

fn refuse_if_referenced(model: &Model, subject: &str, version: u32) -> Result<(), ApiError> {
    if model.referenced_by(subject, version).is_empty() {
        Ok(())
    } else {
        Err(ApiError::reference_exists(subject, version))
    }
}

async fn delete_subject(
    store: Data<Store>,
    subject: Path<String>,
    query: Query<PermanentQuery>,
) -> Reply {
    let subject = subject.into_inner();
    let permanent = query.permanent;
    let answer = write(&store, |model| {
        refuse_if_read_only(model, &subject)?;
        let all = model
            .versions(&subject, true)
            .ok_or_else(|| ApiError::subject_not_found(&subject))?;
        let live: Vec<(u32, VersionEntry)> =
            all.iter().filter(|(_, e)| !e.deleted).copied().collect();
        let mut records = Vec::new();
        let deleted: Vec<u32> = if permanent {
            if !live.is_empty() {
                return Err(ApiError::subject_not_soft_deleted(&subject));
            }
            for (version, _) in &all {
                refuse_if_referenced(model, &subject, *version)?;
                records.push((RecordKey::schema(&subject, *version), None));
            }
            if model.subject_level(&subject).is_some() {
                records.push((RecordKey::config(Some(&subject)), None));
            }
            if model.subject_mode(&subject).is_some() {
                records.push((RecordKey::mode(Some(&subject)), None));
            }
            all.iter().map(|(v, _)| *v).collect()
        } else {
            if live.is_empty() {
                return Err(ApiError::subject_soft_deleted(&subject));
            }
            for (version, entry) in &live {
                refuse_if_referenced(model, &subject, *version)?;
                records.push(soft_delete_record(model, &subject, *version, entry.id)?);
            }
            let last = live.last().map_or(0, |(v, _)| *v);
            records.push((
                RecordKey::delete_subject(&subject),
                Some(to_json(&DeleteSubjectValue {
                    subject: subject.clone(),
                    version: last,
                })?),
            ));
            live.iter().map(|(v, _)| *v).collect()
        };
        Ok(Change {
            records,
            answer: json!(deleted),
            won: None,
        })
    })
    .await?;
    ok(answer)
}

async fn delete_version(
    store: Data<Store>,
    path: Path<(String, String)>,
    query: Query<PermanentQuery>,
) -> Reply {
    let (subject, version_text) = path.into_inner();
    let spec = parse_version(&version_text)?;
    let permanent = query.permanent;
    let answer = write(&store, |model| {
        refuse_if_read_only(model, &subject)?;
        if model.versions(&subject, true).is_none() {
            return Err(ApiError::subject_not_found(&subject));
        }
        // A numbered version is found even when soft-deleted, so a second soft delete says
        // 40406; `latest` means the newest live one unless deleting permanently.
        let include_deleted = permanent || matches!(spec, VersionSpec::Number(_));
        let (version, entry) = model
            .version(&subject, spec, include_deleted)
            .ok_or_else(|| ApiError::version_not_found(&version_text))?;
        refuse_if_referenced(model, &subject, version)?;
        let record = if permanent {
            if !entry.deleted {
                return Err(ApiError::version_not_soft_deleted(&subject, version));
            }
            (RecordKey::schema(&subject, version), None)
        } else {
            if entry.deleted {
                return Err(ApiError::version_soft_deleted(&subject, version));
            }
            soft_delete_record(model, &subject, version, entry.id)?
        };
        Ok(Change {
            records: vec![record],
            answer: json!(version),
            won: None,
        })
    })
    .await?;
    ok(answer)
}

// ---- compatibility ----

#[derive(Deserialize)]
struct VerboseQuery {
    #[serde(default, deserialize_with = "flag")]
    verbose: bool,
}

fn compatibility_answer(messages: Vec<String>, verbose: bool) -> Reply {
    let mut body = json!({ "is_compatible": messages.is_empty() });
    if verbose {
        body["messages"] = json!(messages);
    }
    ok(body)
}

async fn compatibility_with_version(
    store: Data<Store>,
    limits: Data<Limits>,
    path: Path<(String, String)>,
    query: Query<VerboseQuery>,
    request: HttpRequest,
    bytes: Bytes,
) -> Reply {
    let (subject, version_text) = path.into_inner();
    let spec = parse_version(&version_text)?;
    let input: SchemaRequest = body(&request, &bytes)?;
    let schema = input.parse(&store, &limits)?;
    let (level, existing) = {
        let model = store.model();
        let existing = match (spec, model.versions(&subject, false)) {
            (VersionSpec::Latest, None) => vec![],
            (VersionSpec::Number(_), None) => return Err(ApiError::subject_not_found(&subject)),
            (spec, Some(_)) => {
                let (version, entry) = model
                    .version(&subject, spec, false)
                    .ok_or_else(|| ApiError::version_not_found(&version_text))?;
                vec![(version, stored(&model, entry.id)?.parsed.clone())]
            }
        };
        (model.level_for(&subject), existing)
    };
    let messages = check_against(level, &schema.parsed, &existing);
    compatibility_answer(messages, query.verbose)
}

async fn compatibility_with_all(
    store: Data<Store>,
    limits: Data<Limits>,
    subject: Path<String>,
    query: Query<VerboseQuery>,
    request: HttpRequest,
    bytes: Bytes,
) -> Reply {
    let input: SchemaRequest = body(&request, &bytes)?;
    let schema = input.parse(&store, &limits)?;
    let (level, existing) = {
        let model = store.model();
        (
            model.level_for(&subject),
            existing_schemas(&model, &subject)?,
        )
    };
    let messages = check_against(level, &schema.parsed, &existing);
    compatibility_answer(messages, query.verbose)
}

// ---- config ----

#[derive(Deserialize)]
struct ConfigRequest {
    compatibility: Option<String>,
    #[serde(rename = "compatibilityLevel")]
    compatibility_level: Option<String>,
}

impl ConfigRequest {
    fn level(&self) -> Result<CompatibilityLevel, ApiError> {
        let text = self
            .compatibility
            .as_deref()
            .or(self.compatibility_level.as_deref())
            .ok_or_else(|| ApiError::invalid_compatibility_level(""))?;
        parse_level(text)
    }
}

#[derive(Deserialize)]
struct DefaultToGlobal {
    #[serde(default, rename = "defaultToGlobal", deserialize_with = "flag")]
    default_to_global: bool,
}

fn config_change(
    subject: Option<&str>,
    level: Option<CompatibilityLevel>,
) -> Result<Vec<(RecordKey, Option<Value>)>, ApiError> {
    let value = match level {
        Some(level) => Some(to_json(&ConfigValue {
            compatibility_level: Some(level),
        })?),
        None => None,
    };
    Ok(vec![(RecordKey::config(subject), value)])
}

async fn get_global_config(store: Data<Store>) -> Reply {
    ok(json!({ "compatibilityLevel": store.model().global_level() }))
}

async fn put_global_config(store: Data<Store>, request: HttpRequest, bytes: Bytes) -> Reply {
    let level = body::<ConfigRequest>(&request, &bytes)?.level()?;
    let answer = write(&store, |_| {
        Ok(Change {
            records: config_change(None, Some(level))?,
            answer: json!({ "compatibility": level }),
            won: None,
        })
    })
    .await?;
    ok(answer)
}

async fn delete_global_config(store: Data<Store>) -> Reply {
    let answer = write(&store, |model| {
        Ok(Change {
            records: config_change(None, None)?,
            answer: json!({ "compatibilityLevel": model.global_level() }),
            won: None,
        })
    })
    .await?;
    ok(answer)
}

async fn get_subject_config(
    store: Data<Store>,
    subject: Path<String>,
    query: Query<DefaultToGlobal>,
) -> Reply {
    let model = store.model();
    match model.subject_level(&subject) {
        Some(level) => ok(json!({ "compatibilityLevel": level })),
        None if query.default_to_global => {
            ok(json!({ "compatibilityLevel": model.global_level() }))
        }
        None => Err(ApiError::subject_compatibility_not_configured(&subject)),
    }
}

async fn put_subject_config(
    store: Data<Store>,
    subject: Path<String>,
    request: HttpRequest,
    bytes: Bytes,
) -> Reply {
    check_subject(&subject)?;
    let level = body::<ConfigRequest>(&request, &bytes)?.level()?;
    let answer = write(&store, |_| {
        Ok(Change {
            records: config_change(Some(&subject), Some(level))?,
            answer: json!({ "compatibility": level }),
            won: None,
        })
    })
    .await?;
    ok(answer)
}

async fn delete_subject_config(store: Data<Store>, subject: Path<String>) -> Reply {
    let answer = write(&store, |model| {
        let Some(level) = model.subject_level(&subject) else {
            if !model.has_subject(&subject) {
                return Err(ApiError::subject_not_found(&subject));
            }
            return Err(ApiError::subject_compatibility_not_configured(&subject));
        };
        Ok(Change {
            records: config_change(Some(&subject), None)?,
            answer: json!({ "compatibilityLevel": level }),
            won: None,
        })
    })
    .await?;
    ok(answer)
}

// ---- mode ----

#[derive(Deserialize)]
struct ModeRequest {
    mode: String,
}

#[derive(Deserialize)]
struct ForceQuery {
    #[serde(default, deserialize_with = "flag")]
    force: bool,
}

fn mode_change(
    subject: Option<&str>,
    mode: Option<Mode>,
) -> Result<Vec<(RecordKey, Option<Value>)>, ApiError> {
    let value = match mode {
        Some(mode) => Some(to_json(&ModeValue { mode })?),
        None => None,
    };
    Ok(vec![(RecordKey::mode(subject), value)])
}

async fn get_global_mode(store: Data<Store>) -> Reply {
    ok(json!({ "mode": store.model().global_mode() }))
}

async fn put_global_mode(
    store: Data<Store>,
    query: Query<ForceQuery>,
    request: HttpRequest,
    bytes: Bytes,
) -> Reply {
    let mode = parse_mode(&body::<ModeRequest>(&request, &bytes)?.mode)?;
    let force = query.force;
    let answer = write(&store, |model| {
        if mode == Mode::Import && !force && !model.is_empty() {
            return Err(ApiError::not_permitted(
                "Cannot import since found existing subjects",
            ));
        }
        Ok(Change {
            records: mode_change(None, Some(mode))?,
            answer: json!({ "mode": mode }),
            won: None,
        })
    })
    .await?;
    ok(answer)
}

async fn get_subject_mode(
    store: Data<Store>,
    subject: Path<String>,
    query: Query<DefaultToGlobal>,
) -> Reply {
    let model = store.model();
    match model.subject_mode(&subject) {
        Some(mode) => ok(json!({ "mode": mode })),
        None if query.default_to_global => ok(json!({ "mode": model.global_mode() })),
        None => Err(ApiError::subject_mode_not_configured(&subject)),
    }
}

async fn put_subject_mode(
    store: Data<Store>,
    subject: Path<String>,
    query: Query<ForceQuery>,
    request: HttpRequest,
    bytes: Bytes,
) -> Reply {
    check_subject(&subject)?;
    let mode = parse_mode(&body::<ModeRequest>(&request, &bytes)?.mode)?;
    let force = query.force;
    let answer = write(&store, |model| {
        if mode == Mode::Import && !force && model.has_subject(&subject) {
            return Err(ApiError::not_permitted(
                "Cannot import since found existing subjects",
            ));
        }
        Ok(Change {
            records: mode_change(Some(&subject), Some(mode))?,
            answer: json!({ "mode": mode }),
            won: None,
        })
    })
    .await?;
    ok(answer)
}

async fn delete_subject_mode(store: Data<Store>, subject: Path<String>) -> Reply {
    let answer = write(&store, |model| {
        let Some(mode) = model.subject_mode(&subject) else {
            return Err(ApiError::subject_mode_not_configured(&subject));
        };
        Ok(Change {
            records: mode_change(Some(&subject), None)?,
            answer: json!({ "mode": mode }),
            won: None,
        })
    })
    .await?;
    ok(answer)
}

/// A known path asked with a method it does not have, in Confluent's shape.
pub async fn method_not_allowed() -> Reply {
    Err(ApiError::http(
        actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
        None,
    ))
}

/// Fallback for unknown paths, in Confluent's shape.
pub async fn not_found() -> Reply {
    Err(ApiError::not_found_route())
}
