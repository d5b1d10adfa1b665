//! `/subjects/...`: listing subjects and versions, registering and looking up schemas,
//! soft and permanent deletes.

use actix_web::web::{self, Bytes, Data, Path, Query};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::compatibility::{check_against, existing_schemas};
use super::{
    body, check_subject, flag, ok, parse_version, resolve_version, resource, stored, version_body,
    write, write_with, Change, DeletedQuery, Limits, Reply, SchemaRequest,
};
use crate::error::{ApiError, CONTENT_TYPE_V1};
use crate::model::{Mode, Model, VersionEntry, VersionSpec, MAX_ID};
use crate::records::{Record, SchemaValue, Setting};
use crate::store::Store;

pub(super) fn routes(config: &mut web::ServiceConfig) {
    config.service(resource("/subjects").route(web::get().to(list_subjects)));
    config.service(
        resource("/subjects/{subject}")
            .route(web::post().to(lookup))
            .route(web::delete().to(delete_subject)),
    );
    config.service(
        resource("/subjects/{subject}/versions")
            .route(web::get().to(list_versions))
            .route(web::post().to(register)),
    );
    config.service(
        resource("/subjects/{subject}/versions/{version}")
            .route(web::get().to(get_version))
            .route(web::delete().to(delete_version)),
    );
    config.service(
        resource("/subjects/{subject}/versions/{version}/schema")
            .route(web::get().to(get_raw_version)),
    );
    config.service(
        resource("/subjects/{subject}/versions/{version}/referencedby")
            .route(web::get().to(referenced_by)),
    );
}

#[derive(Deserialize)]
struct SubjectsQuery {
    #[serde(default, deserialize_with = "flag")]
    deleted: bool,
    #[serde(default, rename = "subjectPrefix")]
    subject_prefix: Option<String>,
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

fn refuse_if_read_only(model: &Model, subject: &str) -> Result<(), ApiError> {
    match model.modes().effective(subject) {
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
            model.modes().effective(&subject) == Mode::Import
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
                model.levels().effective(&subject),
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
            records: vec![Record::Schema {
                subject: subject.clone(),
                version,
                value: Some(value),
            }],
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
) -> Result<Record, ApiError> {
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
    Ok(Record::Schema {
        subject: subject.to_string(),
        version,
        value: Some(value),
    })
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
                records.push(Record::Schema {
                    subject: subject.clone(),
                    version: *version,
                    value: None,
                });
            }
            if model.levels().subject(&subject).is_some() {
                records.push(Record::Config(Setting::new(Some(&subject), None)));
            }
            if model.modes().subject(&subject).is_some() {
                records.push(Record::Mode(Setting::new(Some(&subject), None)));
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
            records.push(Record::DeleteSubject {
                subject: subject.clone(),
                version: Some(last),
            });
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
            Record::Schema {
                subject: subject.clone(),
                version,
                value: None,
            }
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
