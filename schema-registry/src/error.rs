//! Confluent's error answers: an HTTP status plus `{"error_code": N, "message": "..."}`.
//!
//! Clients switch on `error_code`, so the codes and statuses follow Confluent's `Errors` class
//! exactly; the messages follow its wording where clients or people are known to read them.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::store::StoreError;

/// The media type the registry answers with by default.
pub(crate) const CONTENT_TYPE_V1: &str = "application/vnd.schemaregistry.v1+json";

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: u32,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: u32, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub(crate) fn subject_not_found(subject: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            40401,
            format!("Subject '{subject}' not found."),
        )
    }

    pub(crate) fn version_not_found(version: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            40402,
            format!("Version {version} not found."),
        )
    }

    pub(crate) fn schema_not_found(id: Option<u32>) -> Self {
        let message = match id {
            Some(id) => format!("Schema {id} not found"),
            None => "Schema not found".to_string(),
        };
        Self::new(StatusCode::NOT_FOUND, 40403, message)
    }

    pub(crate) fn subject_soft_deleted(subject: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            40404,
            format!(
                "Subject '{subject}' was soft deleted. Set permanent=true to delete permanently"
            ),
        )
    }

    pub(crate) fn subject_not_soft_deleted(subject: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            40405,
            format!("Subject '{subject}' was not deleted first before being permanently deleted"),
        )
    }

    pub(crate) fn version_soft_deleted(subject: &str, version: u32) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            40406,
            format!(
                "Subject '{subject}' Version {version} was soft deleted. Set permanent=true to delete permanently"
            ),
        )
    }

    pub(crate) fn version_not_soft_deleted(subject: &str, version: u32) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            40407,
            format!(
                "Subject '{subject}' Version {version} was not deleted first before being permanently deleted"
            ),
        )
    }

    pub(crate) fn subject_compatibility_not_configured(subject: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            40408,
            format!("Subject '{subject}' does not have subject-level compatibility configured"),
        )
    }

    pub(crate) fn subject_mode_not_configured(subject: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            40409,
            format!("Subject '{subject}' does not have subject-level mode configured"),
        )
    }

    pub(crate) fn incompatible(subject: &str, messages: &[String]) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            409,
            format!(
                "Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: [{}]",
                messages.join(", ")
            ),
        )
    }

    pub(crate) fn invalid_schema(reason: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, 42201, reason.to_string())
    }

    pub(crate) fn invalid_version(text: &str) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            42202,
            format!(
                "The specified version '{text}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\""
            ),
        )
    }

    pub(crate) fn invalid_compatibility_level(text: &str) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            42203,
            format!(
                "Invalid compatibility level '{text}'. Valid values are none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive"
            ),
        )
    }

    pub(crate) fn invalid_mode(text: &str) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            42204,
            format!("Invalid mode '{text}'. Valid values are READWRITE, READONLY, READONLY_OVERRIDE, IMPORT"),
        )
    }

    /// A schema larger than the registry accepts (42201, Confluent's "Invalid schema").
    pub(crate) fn schema_too_large(size: usize, limit: usize) -> Self {
        Self::invalid_schema(format!(
            "Invalid schema: the schema is {size} bytes, larger than the limit of {limit} bytes (SCHEMA_REGISTRY_MAX_SCHEMA_BYTES)"
        ))
    }

    /// An imported schema ID outside Confluent's range (a signed 32-bit int, from 1).
    pub(crate) fn id_out_of_range(id: i64) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            422,
            format!("Schema id {id} is out of range: ids are between 1 and 2147483647 (2^31-1)"),
        )
    }

    /// Every schema ID is used: the next one would not fit Confluent's signed 32-bit IDs.
    pub(crate) fn ids_exhausted() -> Self {
        Self::not_permitted(
            "No schema id is left: id 2147483647 (2^31-1), the largest Confluent allows, is in use",
        )
    }

    /// Every version of a subject is used.
    pub(crate) fn versions_exhausted(subject: &str) -> Self {
        Self::not_permitted(format!(
            "No version is left under subject {subject}: version 2147483647 (2^31-1) is in use"
        ))
    }

    pub(crate) fn not_permitted(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, 42205, message)
    }

    pub(crate) fn reference_exists(subject: &str, version: u32) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            42206,
            format!("One or more references exist to the schema {{subject={subject},version={version}}}"),
        )
    }

    pub(crate) fn id_does_not_match(id: u32) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            42207,
            format!("Schema id {id} is already used by a different schema"),
        )
    }

    pub(crate) fn invalid_subject(subject: &str) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            42208,
            format!("The specified subject '{subject}' is not valid"),
        )
    }

    /// A request body that is not JSON (Confluent answers these 400 with code 400).
    pub(crate) fn malformed_json(reason: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            400,
            format!("Malformed JSON: {reason}"),
        )
    }

    /// JSON of the wrong shape (Confluent answers these 422 with code 422).
    pub(crate) fn unprocessable(reason: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, 422, reason.to_string())
    }

    pub(crate) fn not_found_route() -> Self {
        Self::new(StatusCode::NOT_FOUND, 404, "HTTP 404 Not Found")
    }

    /// Any other HTTP-level error (405, 413, ...) in Confluent's shape: the status as the code.
    pub(crate) fn http(status: StatusCode, detail: Option<&str>) -> Self {
        let reason = status.canonical_reason().unwrap_or("Error");
        let message = match detail {
            Some(detail) => format!("HTTP {} {reason}: {detail}", status.as_u16()),
            None => format!("HTTP {} {reason}", status.as_u16()),
        };
        Self::new(status, u32::from(status.as_u16()), message)
    }

    pub(crate) fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            415,
            format!("HTTP 415 Unsupported Media Type: {content_type}"),
        )
    }

    pub(crate) fn conflicting_writers() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            50001,
            "Error in the backend data store: other writers kept winning; retry the request",
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Kafka(_) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, 50001, error.to_string())
            }
            StoreError::Timeout(_) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, 50002, error.to_string())
            }
            StoreError::TooLarge(_) => Self::invalid_schema(error.to_string()),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status)
            .content_type(CONTENT_TYPE_V1)
            .json(serde_json::json!({ "error_code": self.code, "message": self.message }))
    }
}
