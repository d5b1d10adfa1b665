//! `loadgen`: drives CartService's `POST /api/create-order` over N HTTP/1.1 keep-alive
//! connections, closed loop (as fast as it goes) or open loop at a fixed rate (latency from
//! the intended send time, so coordinated omission cannot hide a stall), and prints
//! throughput, latency percentiles and errors by status.
//!
//! ```text
//! cargo run --release -p bench --bin loadgen -- --url http://127.0.0.1:8000 --connections 32 --duration 10
//! cargo run --release -p bench --bin loadgen -- --rate 1000 --follow http://127.0.0.1:8001
//! ```

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use bench::load::{self, LoadConfig, Mode};
use clap::Parser;

#[derive(Parser)]
#[command(name = "loadgen", about = "HTTP load generator for CartService")]
struct Args {
    /// CartService base URL.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    url: String,
    /// Keep-alive connections (one request in flight on each).
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Open loop at this many requests per second; without it, closed loop.
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds to run.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Stop after this many requests.
    #[arg(long)]
    requests: Option<u64>,
    /// `numItems` of every order.
    #[arg(long, default_value_t = 3)]
    num_items: u32,
    /// Order IDs are this prefix and a counter (default: `LG-` and the current time, so
    /// repeated runs do not collide with 409s).
    #[arg(long)]
    id_prefix: Option<String>,
    /// OrderService base URL: after each 201, wait (waitMs) until OrderService serves the
    /// order and report end-to-end latency too.
    #[arg(long)]
    follow: Option<String>,
    /// `waitMs` of the follow-up request.
    #[arg(long, default_value_t = 5_000)]
    wait_ms: u64,
    /// Per-request timeout, seconds.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    /// Print the report as JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// `http://host:port[/…]` → `host:port`.
fn host_port(url: &str) -> anyhow::Result<String> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url}: only http:// URLs are supported"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    if authority.contains(':') {
        Ok(authority.to_string())
    } else {
        Ok(format!("{authority}:80"))
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut config = LoadConfig::new(host_port(&args.url)?);
    config.connections = args.connections;
    config.mode = match args.rate {
        Some(rate) if rate > 0.0 => Mode::Open { rate },
        Some(rate) => anyhow::bail!("--rate must be positive, got {rate}"),
        None => Mode::Closed,
    };
    config.duration = Duration::from_secs_f64(args.duration.max(0.0));
    config.max_requests = args.requests;
    config.num_items = args.num_items;
    config.id_prefix = args
        .id_prefix
        .unwrap_or_else(|| format!("LG-{}-", chrono::Utc::now().format("%Y%m%d%H%M%S")));
    config.follow = args.follow.as_deref().map(host_port).transpose()?;
    config.wait_ms = args.wait_ms;
    config.timeout = Duration::from_secs_f64(args.timeout.max(0.001));
    let report = load::run(config).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
    } else {
        print!("{}", report.summary());
    }
    Ok(())
}
