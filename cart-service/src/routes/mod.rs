//! HTTP routes: one file per family, the state they share, and the documented bodies.
//!
//! [`AppState`] lives here (not in `lib.rs`) so that handlers never import upward: `lib.rs`
//! builds the state and the server, the routes only use them.

pub(crate) mod dto;
pub(crate) mod forward;
pub(crate) mod ops;
pub(crate) mod orders;

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::web;
use order_events::{Currency, OrderEventCodec};
use rdkafka::consumer::BaseConsumer;
use service_kit::kafka::KafkaContext;
use service_kit::metrics::Metrics;

use crate::follow::Progress;
use crate::kafka::Publisher;
use crate::orders::Orders;
use crate::store::Store;

/// Everything the handlers share.
pub(crate) struct AppState {
    pub(crate) orders: Arc<Orders>,
    pub(crate) store: Arc<Store>,
    pub(crate) progress: Arc<Progress>,
    /// The topic's partition count, known once start-up created or found the topic.
    pub(crate) partitions: AtomicI32,
    /// Acknowledged records, for the order index (indexed without reading them back).
    pub(crate) written: tokio::sync::mpsc::UnboundedSender<crate::follow::Written>,
    pub(crate) publisher: Arc<Publisher>,
    pub(crate) codec: Arc<OrderEventCodec>,
    pub(crate) currencies: Vec<Currency>,
    pub(crate) pinger: BaseConsumer<KafkaContext>,
    pub(crate) metrics: Metrics,
    /// `cart_orders_in_memory`, set when scraped.
    pub(crate) in_memory: prometheus::IntGauge,
    /// Which partitions this instance owns, and who owns the others.
    pub(crate) ownership: Arc<crate::own::Ownership>,
    /// Forwards requests for partitions owned elsewhere.
    pub(crate) forwarder: reqwest::Client,
    /// `None` once loaded; otherwise what start-up is doing or why it is stuck.
    pub(crate) loading: Mutex<Option<String>>,
}

impl AppState {
    /// `Some(reason)` while the service cannot take writes yet.
    pub(crate) fn not_ready(&self) -> Option<String> {
        self.loading
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The topic's partition count (1 until start-up found it; requests wait for readiness).
    pub(crate) fn partitions(&self) -> i32 {
        self.partitions.load(Ordering::Acquire).max(1)
    }

    /// What start-up is doing (`Some`) or that it is done (`None`).
    pub(crate) fn set_loading(&self, status: Option<String>) {
        *self.loading.lock().unwrap_or_else(|e| e.into_inner()) = status;
    }
}

pub(crate) fn configure(config: &mut web::ServiceConfig) {
    config
        .route("/api/create-order", web::post().to(orders::create_order))
        .route("/api/update-order", web::put().to(orders::update_order))
        .route("/health", web::get().to(ops::health))
        .route("/ready", web::get().to(ops::ready))
        .route("/metrics", web::get().to(ops::metrics))
        .route("/docs", web::get().to(service_kit::surface::docs_redirect));
}
