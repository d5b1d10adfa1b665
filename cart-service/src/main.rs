//! `cart-service`: see the library for what it is.

use cart_service::{Application, Settings};
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_kit::telemetry::init("info,librdkafka=warn,rdkafka=warn");
    let app = Application::build(Settings::parse()).await?;
    tracing::info!(port = app.port(), "cart-service listening");
    app.run_until_stopped().await?;
    Ok(())
}
