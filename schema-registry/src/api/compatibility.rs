//! `/compatibility/...`: whether a schema could be registered under a subject, without
//! registering it; the check itself is shared with registration.

use std::sync::Arc;

use actix_web::web::{self, Bytes, Data, Path, Query};
use actix_web::HttpRequest;
use apache_avro::Schema;
use serde::Deserialize;
use serde_json::json;

use super::{body, flag, ok, parse_version, resource, stored, Limits, Reply, SchemaRequest};
use crate::compat::{self, CompatibilityLevel};
use crate::error::ApiError;
use crate::model::{Model, VersionSpec};
use crate::store::Store;

pub(super) fn routes(config: &mut web::ServiceConfig) {
    config.service(
        resource("/compatibility/subjects/{subject}/versions/{version}")
            .route(web::post().to(compatibility_with_version)),
    );
    config.service(
        resource("/compatibility/subjects/{subject}/versions")
            .route(web::post().to(compatibility_with_all)),
    );
}

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
        (model.levels().effective(&subject), existing)
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
            model.levels().effective(&subject),
            existing_schemas(&model, &subject)?,
        )
    };
    let messages = check_against(level, &schema.parsed, &existing);
    compatibility_answer(messages, query.verbose)
}

/// The existing, visible versions of `subject` as (version, schema), oldest first; shared
/// handles, so that the check can run after the model's lock is released.
pub(super) fn existing_schemas(
    model: &Model,
    subject: &str,
) -> Result<Vec<(u32, Arc<Schema>)>, ApiError> {
    model
        .versions(subject, false)
        .unwrap_or_default()
        .into_iter()
        .map(|(version, entry)| Ok((version, stored(model, entry.id)?.parsed.clone())))
        .collect()
}

/// Checks `candidate` against `existing` at `level` (no lock held).
pub(super) fn check_against(
    level: CompatibilityLevel,
    candidate: &Schema,
    existing: &[(u32, Arc<Schema>)],
) -> Vec<String> {
    let existing: Vec<(u32, &Schema)> = existing.iter().map(|(v, s)| (*v, s.as_ref())).collect();
    compat::check(level, candidate, &existing)
}
