//! `/mode[/{subject}]`: the registry's mode (READWRITE, READONLY, ...), global or per subject.

use actix_web::web::{self, Bytes, Data, Path, Query};
use actix_web::HttpRequest;
use serde::Deserialize;
use serde_json::json;

use super::{body, check_subject, flag, ok, resource, write, Change, DefaultToGlobal, Reply};
use crate::error::ApiError;
use crate::model::Mode;
use crate::records::{Record, Setting};
use crate::store::Store;

pub(super) fn routes(config: &mut web::ServiceConfig) {
    config.service(
        resource("/mode")
            .route(web::get().to(get_global_mode))
            .route(web::put().to(put_global_mode)),
    );
    config.service(
        resource("/mode/{subject}")
            .route(web::get().to(get_subject_mode))
            .route(web::put().to(put_subject_mode))
            .route(web::delete().to(delete_subject_mode)),
    );
}

fn parse_mode(text: &str) -> Result<Mode, ApiError> {
    text.parse().map_err(|_| ApiError::invalid_mode(text))
}

#[derive(Deserialize)]
struct ModeRequest {
    mode: String,
}

#[derive(Deserialize)]
struct ForceQuery {
    #[serde(default, deserialize_with = "flag")]
    force: bool,
}

async fn get_global_mode(store: Data<Store>) -> Reply {
    ok(json!({ "mode": store.model().modes().global() }))
}

async fn put_global_mode(
    store: Data<Store>,
    query: Query<ForceQuery>,
    request: HttpRequest,
    bytes: Bytes,
) -> Reply {
    put_mode(&store, None, query.force, &request, &bytes).await
}

async fn get_subject_mode(
    store: Data<Store>,
    subject: Path<String>,
    query: Query<DefaultToGlobal>,
) -> Reply {
    let model = store.model();
    match model.modes().shown(&subject, query.default_to_global) {
        Some(mode) => ok(json!({ "mode": mode })),
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
    put_mode(&store, Some(&subject), query.force, &request, &bytes).await
}

/// Sets the global mode (`subject` `None`) or a subject's. IMPORT is refused where schemas
/// already exist (anywhere, or under the subject) unless forced, as Confluent does.
async fn put_mode(
    store: &Store,
    subject: Option<&str>,
    force: bool,
    request: &HttpRequest,
    bytes: &Bytes,
) -> Reply {
    let mode = parse_mode(&body::<ModeRequest>(request, bytes)?.mode)?;
    let answer = write(store, |model| {
        let in_use = match subject {
            None => !model.is_empty(),
            Some(subject) => model.has_subject(subject),
        };
        if mode == Mode::Import && !force && in_use {
            return Err(ApiError::not_permitted(
                "Cannot import since found existing subjects",
            ));
        }
        Ok(Change {
            records: vec![Record::Mode(Setting::new(subject, Some(mode)))],
            answer: json!({ "mode": mode }),
            won: None,
        })
    })
    .await?;
    ok(answer)
}

async fn delete_subject_mode(store: Data<Store>, subject: Path<String>) -> Reply {
    let answer = write(&store, |model| {
        let Some(mode) = model.modes().subject(&subject) else {
            return Err(ApiError::subject_mode_not_configured(&subject));
        };
        Ok(Change {
            records: vec![Record::Mode(Setting::new(Some(&subject), None))],
            answer: json!({ "mode": mode }),
            won: None,
        })
    })
    .await?;
    ok(answer)
}
