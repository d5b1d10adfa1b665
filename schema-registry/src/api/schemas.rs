//! `/schemas/...`: schemas by their global ID, and the schema types supported.

use actix_web::web::{self, Data, Path, Query};
use actix_web::HttpResponse;
use serde_json::{json, Value};

use super::{add_schema, ok, parse_id, resource, stored, DeletedQuery, Reply};
use crate::error::{ApiError, CONTENT_TYPE_V1};
use crate::store::Store;

pub(super) fn routes(config: &mut web::ServiceConfig) {
    config.service(resource("/schemas/types").route(web::get().to(schema_types)));
    config.service(resource("/schemas/ids/{id}").route(web::get().to(schema_by_id)));
    config.service(resource("/schemas/ids/{id}/schema").route(web::get().to(raw_schema_by_id)));
    config.service(resource("/schemas/ids/{id}/subjects").route(web::get().to(subjects_by_id)));
    config.service(resource("/schemas/ids/{id}/versions").route(web::get().to(versions_by_id)));
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
