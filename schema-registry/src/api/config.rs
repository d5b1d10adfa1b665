//! `/config[/{subject}]`: the compatibility level, global or per subject.

use actix_web::web::{self, Bytes, Data, Path, Query};
use actix_web::HttpRequest;
use serde::Deserialize;
use serde_json::json;

use super::{body, check_subject, ok, resource, write, Change, DefaultToGlobal, Reply};
use crate::compat::CompatibilityLevel;
use crate::error::ApiError;
use crate::records::{Record, Setting};
use crate::store::Store;

pub(super) fn routes(config: &mut web::ServiceConfig) {
    config.service(
        resource("/config")
            .route(web::get().to(get_global_config))
            .route(web::put().to(put_global_config))
            .route(web::delete().to(delete_global_config)),
    );
    config.service(
        resource("/config/{subject}")
            .route(web::get().to(get_subject_config))
            .route(web::put().to(put_subject_config))
            .route(web::delete().to(delete_subject_config)),
    );
}

fn parse_level(text: &str) -> Result<CompatibilityLevel, ApiError> {
    text.parse()
        .map_err(|_| ApiError::invalid_compatibility_level(text))
}

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

async fn get_global_config(store: Data<Store>) -> Reply {
    ok(json!({ "compatibilityLevel": store.model().levels().global() }))
}

async fn put_global_config(store: Data<Store>, request: HttpRequest, bytes: Bytes) -> Reply {
    put_level(&store, None, &request, &bytes).await
}

async fn delete_global_config(store: Data<Store>) -> Reply {
    let answer = write(&store, |model| {
        Ok(Change {
            records: vec![Record::Config(Setting::new(None, None))],
            answer: json!({ "compatibilityLevel": model.levels().global() }),
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
    match model.levels().shown(&subject, query.default_to_global) {
        Some(level) => ok(json!({ "compatibilityLevel": level })),
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
    put_level(&store, Some(&subject), &request, &bytes).await
}

/// Sets the global level (`subject` `None`) or a subject's.
async fn put_level(
    store: &Store,
    subject: Option<&str>,
    request: &HttpRequest,
    bytes: &Bytes,
) -> Reply {
    let level = body::<ConfigRequest>(request, bytes)?.level()?;
    let answer = write(store, |_| {
        Ok(Change {
            records: vec![Record::Config(Setting::new(subject, Some(level)))],
            answer: json!({ "compatibility": level }),
            won: None,
        })
    })
    .await?;
    ok(answer)
}

async fn delete_subject_config(store: Data<Store>, subject: Path<String>) -> Reply {
    let answer = write(&store, |model| {
        let Some(level) = model.levels().subject(&subject) else {
            if !model.has_subject(&subject) {
                return Err(ApiError::subject_not_found(&subject));
            }
            return Err(ApiError::subject_compatibility_not_configured(&subject));
        };
        Ok(Change {
            records: vec![Record::Config(Setting::new(Some(&subject), None))],
            answer: json!({ "compatibilityLevel": level }),
            won: None,
        })
    })
    .await?;
    ok(answer)
}
