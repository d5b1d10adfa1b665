//! `cart-service` (skeleton): answers /health and /ready until its issue lands.

use actix_web::{web, App, HttpResponse, HttpServer};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_kit::telemetry::init("info");
    let host = std::env::var("API_HOST").unwrap_or_else(|_| "127.0.0.1".to_string());
    let port = std::env::var("API_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8000);
    let listener = service_kit::bind(&host, port)?;
    tracing::info!(port, "cart-service (skeleton) listening");
    HttpServer::new(|| {
        App::new()
            .route(
                "/health",
                web::get()
                    .to(|| async { HttpResponse::Ok().json(service_kit::status_body("alive")) }),
            )
            .route(
                "/ready",
                web::get()
                    .to(|| async { HttpResponse::Ok().json(service_kit::status_body("ready")) }),
            )
    })
    .listen(listener)?
    .run()
    .await?;
    Ok(())
}
