//! The OpenAPI document (served at `/api-docs/openapi.json`) and the Swagger UI at `/docs`.
//!
//! Why generated: the document is derived from the handlers' `#[utoipa::path]` annotations and
//! the DTOs, so it cannot drift from the code; a test checks that every route is in it.

use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::routes::{dto, health, order_details, orders, topic};

/// Where the document is served.
pub const OPENAPI_PATH: &str = "/api-docs/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "OrderService",
        description = "The durable view of the order-events topic: every order's latest \
                       version with its shipping cost (2 % of the total, rounded half-up).",
    ),
    paths(
        order_details::order_details,
        orders::list_orders,
        topic::order_ids_from_topic,
        health::health,
        health::ready,
        health::metrics,
    ),
    components(schemas(
        dto::OrderDto,
        dto::OrderItemDto,
        dto::OrderDetailsResponse,
        dto::OrderListResponse,
        dto::TopicOrderIdsResponse,
        dto::StatusResponse,
        service_kit::http_error::ErrorBody,
        service_kit::http_error::FieldProblem,
        service_kit::surface::Readiness,
        service_kit::surface::Check,
    )),
    tags(
        (name = "orders", description = "The order view"),
        (name = "topics", description = "Reading topics directly"),
        (name = "health", description = "Liveness, readiness, metrics"),
    )
)]
pub struct ApiDoc;

/// The Swagger UI at `/docs/`, serving the document at [`OPENAPI_PATH`].
pub fn swagger_ui() -> SwaggerUi {
    SwaggerUi::new("/docs/{_:.*}").url(OPENAPI_PATH, ApiDoc::openapi())
}
