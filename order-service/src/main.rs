//! `order-service`: see the library for what it is.

use clap::Parser;
use order_service::{Application, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_kit::telemetry::init("info,librdkafka=warn,rdkafka=warn");
    let settings = Settings::parse();
    let app = Application::build(settings).await?;
    tracing::info!(port = app.port(), "order-service listening");
    app.run_until_stopped().await?;
    Ok(())
}
