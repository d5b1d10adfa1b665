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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// The limits the validator enforces (see `routes::dto`) are the limits the document shows.
    #[test]
    fn the_document_shows_the_request_limits() -> anyhow::Result<()> {
        let doc = serde_json::to_value(ApiDoc::openapi())?;
        let schemas = &doc["components"]["schemas"];
        let create = &schemas["CreateOrderRequest"]["properties"];
        let id = json!({"minLength": 1, "maxLength": 64, "pattern": "^[A-Za-z0-9._:-]{1,64}$"});
        let has = |schema: &Value, expected: &Value| {
            expected.as_object().into_iter().flatten().all(|(k, v)| {
                let got = &schema[k];
                got == v || got.as_f64().is_some_and(|g| Some(g) == v.as_f64())
            })
        };
        for (schema, expected) in [
            (&create["orderId"], &id),
            (&create["customerId"], &id),
            (&create["numItems"], &json!({"minimum": 1, "maximum": 100})),
            (&create["items"], &json!({"minItems": 1, "maxItems": 100})),
            (&create["currency"], &json!({"pattern": "^[A-Z]{3}$"})),
            (&schemas["OrderItemRequest"]["properties"]["itemId"], &id),
            (
                &schemas["OrderItemRequest"]["properties"]["quantity"],
                &json!({"minimum": 1, "maximum": 10000}),
            ),
            (&schemas["UpdateOrderRequest"]["properties"]["orderId"], &id),
        ] {
            assert!(has(schema, expected), "{schema} lacks {expected}");
        }
        assert_eq!(
            schemas["CreateOrderRequest"]["required"],
            json!(["orderId"])
        );
        assert_eq!(
            schemas["OrderItemRequest"]["required"],
            json!(["itemId", "quantity", "price"])
        );
        Ok(())
    }
}
