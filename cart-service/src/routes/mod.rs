//! HTTP routes: one file per family.

pub mod ops;
pub mod orders;

use actix_web::web;

pub fn configure(config: &mut web::ServiceConfig) {
    config
        .route("/api/create-order", web::post().to(orders::create_order))
        .route("/api/update-order", web::put().to(orders::update_order))
        .route("/health", web::get().to(ops::health))
        .route("/ready", web::get().to(ops::ready))
        .route("/metrics", web::get().to(ops::metrics));
}
