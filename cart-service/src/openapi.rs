//! The OpenAPI document served at `/api-docs/openapi.json` (Swagger UI at `/docs`).
//!
//! Only the list of paths and schemas: the schemas are the types the handlers read and answer
//! (`routes::dto`) and the services' one error body (`service_kit::http_error::ErrorBody`).

use service_kit::http_error::{ErrorBody, FieldProblem};
use utoipa::OpenApi;

use crate::routes::dto::{
    CreateOrderRequest, OrderEventDto, OrderItemDto, OrderItemRequest, OrderResponse,
    UpdateOrderRequest,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "CartService", description = "Creates and updates orders; every state is published to Kafka as Avro, keyed by orderId."),
    paths(
        crate::routes::orders::create_order,
        crate::routes::orders::update_order,
        crate::routes::ops::health,
        crate::routes::ops::ready,
        crate::routes::ops::metrics,
    ),
    components(schemas(CreateOrderRequest, OrderItemRequest, UpdateOrderRequest, OrderResponse, OrderEventDto, OrderItemDto, ErrorBody, FieldProblem)),
    tags((name = "orders", description = "Order commands"), (name = "operations", description = "Health, readiness and metrics"))
)]
pub(crate) struct ApiDoc;
