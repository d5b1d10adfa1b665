//! `POST /api/create-order` and `PUT /api/update-order`.
//!
//! Both answer only after the broker acknowledged the record. Errors: 400 (bad fields listed,
//! the first 20 and the total), 404 (unknown order), 409 (existing ID, forbidden status move),
//! 413/415 (body), 503 (broker or registry down, within the publish timeout).
//!
//! Each request locks its order's slot ([`crate::orders`]), loaded from the order index the
//! first time, and produces to the order's partition ([`order_events::partition_for`]).
//!
//! A 503 after the record was sent without an answer leaves it in doubt ([`crate::orders`]):
//! the next create or update of that order first sends the same record again, and a retried
//! create of an ID whose creation was in doubt answers 201 with that order.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::web::{Data, Json};
use actix_web::{HttpMessage, HttpRequest, HttpResponse};
use chrono::Utc;
use order_events::{Order, OrderEvent, OrderId, OrderStatus};
use serde_json::{Map, Value};
use service_kit::http_error::HttpError;
use service_kit::surface::RequestId;
use tracing::Instrument;
use uuid::Uuid;

use super::dto::OrderResponse;
use super::{forward, AppState};
use crate::follow::Written;
use crate::generate;
use crate::kafka::PublishError;
use crate::orders::{InDoubt, Slot};
use crate::own::Route;
use crate::request::{self, CreateOrder};
use crate::store::Row;

/// The request's ID, given by `service_kit::surface::observe` (which also echoes it in the
/// answer's `X-Request-Id`).
fn request_id(request: &HttpRequest) -> String {
    request
        .extensions()
        .get::<RequestId>()
        .map_or_else(|| Uuid::new_v4().to_string(), |id| id.0.clone())
}

fn unavailable(message: impl Into<String>) -> HttpError {
    HttpError::new(StatusCode::SERVICE_UNAVAILABLE, message)
}

/// Writes are taken once start-up finished and while the order index keeps up: a write is
/// acknowledged only after the follower applied it in log order, so while the follower is
/// stuck (a failing disk, the registry away while it reads a record) new writes are refused at
/// once instead of each waiting for the publish timeout and holding memory meanwhile.
fn ensure_ready(state: &AppState) -> Result<(), HttpError> {
    if let Some(reason) = state.not_ready() {
        return Err(unavailable(format!(
            "CartService is not ready yet: {reason}"
        )));
    }
    match state.progress.problem() {
        None => Ok(()),
        Some(problem) => Err(unavailable(format!(
            "CartService's order index is not keeping up ({problem}); retry shortly"
        ))),
    }
}

/// A failed publish: the answer, and whether the record may still land.
struct Failed {
    error: HttpError,
    in_doubt: bool,
}

impl From<Failed> for HttpError {
    fn from(failed: Failed) -> HttpError {
        failed.error
    }
}

/// Fills a slot from the order index the first time it is locked.
async fn load(state: &AppState, id: &OrderId, slot: &mut Slot) -> Result<(), HttpError> {
    if slot.loaded {
        return Ok(());
    }
    let store = Arc::clone(&state.store);
    let key = id.as_str().to_owned();
    let found = tokio::task::spawn_blocking(move || store.get(&key))
        .await
        .map_err(|e| anyhow::anyhow!("the index task failed: {e}"))
        .and_then(|found| found)
        .map_err(|e| {
            tracing::error!(error = format!("{e:#}"), "reading the order index");
            HttpError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "CartService could not read its order index",
            )
        })?;
    if let Some((_, record)) = found {
        let event = state.codec.decode(Some(&record)).await.map_err(|e| {
            if !e.is_poison() {
                unavailable(format!("Schema Registry unreachable: {e}"))
            } else {
                tracing::error!(error = %e, "an indexed record does not decode");
                HttpError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("order '{id}' could not be read back from the order index"),
                )
            }
        })?;
        slot.acknowledged = Some(event);
    }
    slot.loaded = true;
    Ok(())
}

/// Encodes and publishes an event to its order's partition, waiting for the broker's
/// acknowledgement. Returns where it landed.
async fn publish(
    state: &AppState,
    event: &OrderEvent,
    request_id: &str,
    claim: i64,
) -> Result<(i32, i64), Failed> {
    let definite = |error| Failed {
        error,
        in_doubt: false,
    };
    let payload = state.codec.encode(event).await.map_err(|e| {
        definite(if e.is_retriable() {
            unavailable(format!("Schema Registry unreachable: {e}"))
        } else {
            HttpError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the order could not be encoded: {e}"),
            )
        })
    })?;
    let event_id = event.event_id().to_string();
    let under = claim.to_string();
    let headers = [
        ("request-id", request_id),
        ("event-id", event_id.as_str()),
        ("event-type", event.event_type().as_str()),
        (order_events::fencing::WRITTEN_UNDER_HEADER, under.as_str()),
    ];
    let partition = order_events::partition_for(event.key(), state.partitions());
    match state
        .publisher
        .publish(event.key(), partition, &payload, &headers)
        .await
    {
        Ok((partition, offset)) => {
            let row = Row {
                order_id: event.key().to_owned(),
                version: event.version(),
                partition,
                record: payload,
            };
            // Acknowledged by the broker; it counts once the follower saw no newer claim of the
            // partition before it (`order_events::fencing`).
            let (verdict, counts) = tokio::sync::oneshot::channel();
            let written = Written {
                offset,
                row,
                under: claim,
                verdict,
            };
            // The follower ends only with the service; the verdict is then missing (in doubt).
            let _ = state.written.send(written);
            match tokio::time::timeout(state.publisher.timeout(), counts).await {
                Ok(Ok(true)) => {
                    tracing::info!(partition, offset, version = event.version(), "published");
                    Ok((partition, offset))
                }
                Ok(Ok(false)) => {
                    tracing::warn!(
                        partition,
                        offset,
                        version = event.version(),
                        "fenced: the partition was claimed by another instance first"
                    );
                    Err(definite(unavailable(format!(
                        "Order '{}' was not written: its partition ({partition}) moved to another \
                         CartService instance meanwhile; retry",
                        event.key()
                    ))))
                }
                Ok(Err(_)) | Err(_) => {
                    tracing::warn!(
                        partition,
                        offset,
                        version = event.version(),
                        "written, but not known to count in time"
                    );
                    Err(Failed {
                        error: unavailable(format!(
                            "Order '{}' was written but CartService could not confirm in time \
                             that it counts. CartService keeps it and sends it again before any \
                             other change to the order; retry to get the outcome",
                            event.key()
                        )),
                        in_doubt: true,
                    })
                }
            }
        }
        Err(e @ (PublishError::Unavailable(_) | PublishError::Refused(_))) => {
            Err(definite(unavailable(e.to_string())))
        }
        Err(e @ PublishError::InDoubt(_)) => {
            tracing::warn!(version = event.version(), error = %e, "publish in doubt");
            Err(Failed {
                error: unavailable(format!(
                    "{e}. The record may still be written: CartService keeps it and sends it \
                     again before any other change to order '{}'; retry to get the outcome",
                    event.key()
                )),
                in_doubt: true,
            })
        }
    }
}

/// Publishes `event` as the next state of `slot`: acknowledged → the slot holds it; in doubt →
/// the slot keeps it as such; a definite failure leaves the slot as it was.
async fn publish_next(
    state: &AppState,
    slot: &mut Slot,
    event: OrderEvent,
    request_id: &str,
    claim: i64,
) -> Result<(), HttpError> {
    match publish(state, &event, request_id, claim).await {
        Ok(written) => {
            slot.acknowledged = Some(event);
            slot.written = Some(written);
            Ok(())
        }
        Err(failed) => {
            if failed.in_doubt {
                slot.in_doubt = Some(InDoubt {
                    event,
                    request_id: request_id.to_string(),
                });
            }
            Err(failed.into())
        }
    }
}

/// Sends an order's event in doubt again, the same record, until the broker acknowledges it;
/// only then may anything else of that order happen. Returns the event if it was in doubt.
async fn complete_in_doubt(
    state: &AppState,
    slot: &mut Slot,
    claim: i64,
) -> Result<Option<OrderEvent>, HttpError> {
    let Some(doubt) = slot.in_doubt.clone() else {
        return Ok(None);
    };
    tracing::info!(
        version = doubt.event.version(),
        "sending again an event in doubt"
    );
    let written = publish(state, &doubt.event, &doubt.request_id, claim).await?;
    slot.in_doubt = None;
    slot.acknowledged = Some(doubt.event.clone());
    slot.written = Some(written);
    Ok(Some(doubt.event))
}

/// Where a request for order `id` is served: `Ok(claim)` here, under that claim of its
/// partition; `Err(answer)` elsewhere (forwarded to the owner) or not now (503).
async fn route(
    state: &AppState,
    request: &HttpRequest,
    id: &OrderId,
    body: &Map<String, Value>,
) -> Result<i64, HttpResponse> {
    let partition = order_events::partition_for(id.as_str(), state.partitions());
    match state.ownership.route(partition) {
        Route::Local { claim } => Ok(claim),
        Route::Owner(owner) if !forward::was_forwarded(request) => {
            Err(forward::forward(state, request, partition, &owner, body).await)
        }
        Route::Owner(_) => Err(forward::moving(
            state,
            partition,
            "forwarded here, but not owned here",
        )),
        Route::Moving => Err(forward::moving(state, partition, "no owner yet")),
    }
}

fn answer(status: StatusCode, message: String, event: &OrderEvent) -> HttpResponse {
    HttpResponse::build(status).json(OrderResponse::new(message, event))
}

/// Builds the order from the request, generating what is absent.
fn build_order(state: &AppState, input: CreateOrder) -> Result<OrderEvent, HttpError> {
    let invalid = |problems| request::invalid("The order is invalid", problems);
    let internal = |e: order_events::DomainError| {
        HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("generating the order: {e}"),
        )
    };
    let items = match input.items {
        Some(items) => items,
        None => generate::items(input.num_items.unwrap_or(1)).map_err(internal)?,
    };
    let customer_id = match input.customer_id {
        Some(c) => c,
        None => generate::customer_id().map_err(internal)?,
    };
    let currency = match input.currency {
        Some(c) => c,
        None => generate::currency(&state.currencies).ok_or_else(|| {
            HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "no currency configured")
        })?,
    };
    let total = match input.total_amount {
        Some(total) => total,
        None => order_events::Money::checked_sum(items.iter().map(|i| i.line_total())).ok_or_else(
            || {
                invalid(vec![service_kit::http_error::FieldProblem {
                    field: "items".into(),
                    message: "the total is larger than the contract allows".into(),
                }])
            },
        )?,
    };
    let now = Utc::now();
    let order = Order::new(
        input.order_id,
        customer_id,
        input.order_date.unwrap_or(now),
        items,
        total,
        currency,
        OrderStatus::Pending,
    )
    .map_err(|e| invalid(request::problems(e)))?;
    OrderEvent::created(Uuid::new_v4(), now, order).map_err(|e| invalid(request::problems(e)))
}

/// Create an order.
///
/// Any CartService instance takes it: one that does not own the order's partition forwards it
/// to the owner (the answer then carries `X-Cart-Forwarded: 1`). Generates `customerId`, `items`, `currency` and `orderDate` unless given, publishes the order
/// as an `ORDER_CREATED` record (version 1) keyed by `orderId`, and answers once the broker
/// acknowledged it.
#[utoipa::path(post, path = "/api/create-order", tag = "orders",
    request_body(content = super::dto::CreateOrderRequest, examples(
        ("generated" = (summary = "Generate the rest", value = json!({"orderId": "ORDER-001", "numItems": 3}))),
        ("explicit" = (summary = "Client's own items", value = json!({"orderId": "ORDER-002", "customerId": "CUST-1234", "currency": "EUR",
            "items": [{"itemId": "ITEM-1", "quantity": 2, "price": 19.99}, {"itemId": "ITEM-2", "quantity": 1, "price": "5.00"}]}))))),
    params(("X-Request-Id" = Option<String>, Header, description = "Correlates logs and the Kafka record; generated if absent")),
    responses(
        (status = 201, description = "Created and acknowledged by Kafka", body = super::dto::OrderResponse),
        (status = 400, description = "Invalid input; the failing fields listed (the first 20, and how many in all)", body = service_kit::http_error::ErrorBody,
            example = json!({"success": false, "message": "The order is invalid", "errors": [{"field": "numItems", "message": "must be between 1 and 100, got 0"}]})),
        (status = 409, description = "The order ID exists", body = service_kit::http_error::ErrorBody,
            example = json!({"success": false, "message": "Order 'ORDER-001' already exists", "errors": []})),
        (status = 413, description = "Body too large", body = service_kit::http_error::ErrorBody),
        (status = 415, description = "Not application/json", body = service_kit::http_error::ErrorBody),
        (status = 503, description = "Broker or registry unreachable (within the publish timeout). If the record may still land, CartService keeps it and a retried create of the ID answers 201 with that order. Also, with `Retry-After`, while the order's partition moves between CartService instances, and when the partition moved while the record was written (it then counts for nobody)", body = service_kit::http_error::ErrorBody,
            example = json!({"success": false, "message": "Kafka broker unreachable or not acknowledging: Message production error: MessageTimedOut", "errors": []})),
    ))]
pub(crate) async fn create_order(
    state: Data<AppState>,
    request: HttpRequest,
    body: Json<Map<String, Value>>,
) -> Result<HttpResponse, HttpError> {
    let request_id = request_id(&request);
    let input = request::create(&body)
        .map_err(|problems| request::invalid("The order is invalid", problems))?;
    let span = tracing::info_span!("create_order", %request_id, order_id = %input.order_id);
    async move {
        ensure_ready(&state)?;
        let event = build_order(&state, input)?;
        let id = event.order().order_id().clone();
        let created = |event: &OrderEvent, note: &str| {
            answer(
                StatusCode::CREATED,
                format!("Order '{id}' created successfully{note}"),
                event,
            )
        };
        let claim = match route(&state, &request, &id, &body).await {
            Ok(claim) => claim,
            Err(elsewhere) => return Ok(elsewhere),
        };
        let mut slot = state.orders.lock(&id).await;
        slot.hold_under(claim);
        load(&state, &id, &mut slot).await?;
        if slot.acknowledged.is_none() {
            // A creation in doubt gets settled now, and this create learns the outcome.
            if let Some(landed) = complete_in_doubt(&state, &mut slot, claim).await? {
                return Ok(created(
                    &landed,
                    " (by an earlier request that got no acknowledgement in time)",
                ));
            }
            publish_next(&state, &mut slot, event.clone(), &request_id, claim).await?;
            return Ok(created(&event, ""));
        }
        Err(HttpError::new(
            StatusCode::CONFLICT,
            format!("Order '{id}' already exists"),
        ))
    }
    .instrument(span)
    .await
}

/// Update an order's status.
///
/// Publishes the whole order with the new status and `version` + 1. The lifecycle is
/// pending → confirmed → shipped → delivered, and cancelled from pending or confirmed; the
/// current status again is a no-op answered 200; any other move is 409.
#[utoipa::path(put, path = "/api/update-order", tag = "orders",
    request_body(content = super::dto::UpdateOrderRequest,
        example = json!({"orderId": "ORDER-001", "status": "confirmed"})),
    params(("X-Request-Id" = Option<String>, Header, description = "Correlates logs and the Kafka record; generated if absent")),
    responses(
        (status = 200, description = "Updated and acknowledged by Kafka, or already in that status", body = super::dto::OrderResponse),
        (status = 400, description = "Invalid input", body = service_kit::http_error::ErrorBody),
        (status = 404, description = "Unknown order", body = service_kit::http_error::ErrorBody,
            example = json!({"success": false, "message": "Order 'ORDER-404' not found", "errors": []})),
        (status = 409, description = "The lifecycle forbids this move", body = service_kit::http_error::ErrorBody,
            example = json!({"success": false, "message": "Order 'ORDER-001' cannot move from delivered to pending", "errors": []})),
        (status = 503, description = "Broker or registry unreachable. If the record may still land, CartService keeps it and sends it again before any other change to the order. Also, with `Retry-After`, while the order's partition moves between CartService instances, and when the partition moved while the record was written (it then counts for nobody)", body = service_kit::http_error::ErrorBody),
    ))]
pub(crate) async fn update_order(
    state: Data<AppState>,
    request: HttpRequest,
    body: Json<Map<String, Value>>,
) -> Result<HttpResponse, HttpError> {
    let request_id = request_id(&request);
    let input = request::update(&body)
        .map_err(|problems| request::invalid("The update is invalid", problems))?;
    let span = tracing::info_span!("update_order", %request_id, order_id = %input.order_id);
    async move {
        ensure_ready(&state)?;
        let id = input.order_id;
        let not_found = || HttpError::new(StatusCode::NOT_FOUND, format!("Order '{id}' not found"));
        let claim = match route(&state, &request, &id, &body).await {
            Ok(claim) => claim,
            Err(elsewhere) => return Ok(elsewhere),
        };
        let mut slot = state.orders.lock(&id).await;
        slot.hold_under(claim);
        load(&state, &id, &mut slot).await?;
        // An earlier change in doubt goes first, so versions never fork.
        complete_in_doubt(&state, &mut slot, claim).await?;
        let current = slot.acknowledged.as_ref().ok_or_else(not_found)?;
        let next = current
            .status_updated(input.status, Uuid::new_v4(), Utc::now())
            .map_err(|_| {
                HttpError::new(
                    StatusCode::CONFLICT,
                    format!(
                        "Order '{id}' cannot move from {} to {}",
                        current.order().status(),
                        input.status
                    ),
                )
            })?;
        let Some(next) = next else {
            return Ok(answer(
                StatusCode::OK,
                format!("Order '{id}' already has status '{}'", input.status),
                current,
            ));
        };
        let response = answer(
            StatusCode::OK,
            format!("Order '{id}' updated successfully"),
            &next,
        );
        publish_next(&state, &mut slot, next, &request_id, claim).await?;
        Ok(response)
    }
    .instrument(span)
    .await
}
