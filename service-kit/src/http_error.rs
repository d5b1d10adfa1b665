//! The services' JSON error answer, and extractor settings that use it.
//!
//! Every 4xx/5xx of CartService and OrderService is `{"success": false, "message": "...",
//! "errors": [{"field": "...", "message": "..."}]}`. [`json_config`] and [`query_config`] make
//! actix's own extractor failures (malformed JSON, wrong types, unknown fields, oversized or
//! empty bodies, wrong content type) answer in that shape with the right status, never a 500.

use actix_web::error::{JsonPayloadError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde::Serialize;

/// One problem with one field of the input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldProblem {
    #[schema(example = "orderId")]
    pub field: String,
    #[schema(example = "must not be empty")]
    pub message: String,
}

/// Every error answer of the services (4xx and 5xx): the one error body, serialized and
/// documented by the same type.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Always `false`.
    #[schema(example = false)]
    pub success: bool,
    /// What is wrong, for a person.
    #[schema(example = "Order 'ORDER-404' not found")]
    pub message: String,
    /// Each bad input field (empty when the problem is not one field's).
    pub errors: Vec<FieldProblem>,
}

/// An error answer of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    pub status: StatusCode,
    pub message: String,
    pub errors: Vec<FieldProblem>,
}

impl HttpError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        HttpError {
            status,
            message: message.into(),
            errors: vec![],
        }
    }

    pub fn with_errors(mut self, errors: Vec<FieldProblem>) -> Self {
        self.errors = errors;
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl ResponseError for HttpError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status).json(ErrorBody {
            success: false,
            message: self.message.clone(),
            errors: self.errors.clone(),
        })
    }
}

/// JSON bodies up to `limit` bytes, with errors in the services' shape.
pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(move |error, _request: &HttpRequest| json_error(error, limit).into())
}

fn json_error(error: JsonPayloadError, limit: usize) -> HttpError {
    match error {
        JsonPayloadError::OverflowKnownLength { length, limit } => HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("The request body has {length} bytes; the limit is {limit}"),
        ),
        JsonPayloadError::Overflow { .. } => HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("The request body is larger than the limit of {limit} bytes"),
        ),
        JsonPayloadError::ContentType => HttpError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        ),
        JsonPayloadError::Deserialize(e) if e.is_eof() && e.line() == 1 && e.column() == 0 => {
            HttpError::bad_request("The request body is empty; a JSON object is required")
        }
        JsonPayloadError::Deserialize(e) if e.is_syntax() || e.is_eof() => {
            HttpError::bad_request(format!("Malformed JSON: {e}"))
        }
        JsonPayloadError::Deserialize(e) => {
            HttpError::bad_request(format!("Invalid request body: {e}"))
        }
        other => HttpError::bad_request(format!("Unreadable request body: {other}")),
    }
}

/// Query strings, with errors in the services' shape.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|error: QueryPayloadError, _| {
        HttpError::bad_request(format!("Invalid query string: {error}")).into()
    })
}

/// Fallback for unknown paths.
pub async fn not_found(request: HttpRequest) -> Result<HttpResponse, HttpError> {
    Err(HttpError::new(
        StatusCode::NOT_FOUND,
        format!("No route for {} {}", request.method(), request.path()),
    ))
}
