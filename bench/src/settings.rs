//! What one benchmark run is asked to do: the command line of `bench`.
//!
//! Why a module of the library: the phases and the report's method section read the same
//! settings the binary parsed, so they live beside them rather than in the binary.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

#[derive(Parser, Clone, Debug)]
#[command(name = "bench", about = "Benchmark the order pipeline end to end")]
pub struct Settings {
    /// Orders in the topic for the ceilings, the catch-up, the scan and CartService's start-up.
    #[arg(long, default_value_t = 1_000_000)]
    pub orders: u64,
    /// Keep-alive connections of the closed-loop CartService run.
    #[arg(long, default_value_t = 256)]
    pub connections: usize,
    /// Seconds of the closed-loop CartService run.
    #[arg(long, default_value_t = 20.0)]
    pub closed_seconds: f64,
    /// Open-loop rates (orders/s) of the end-to-end runs.
    #[arg(long, value_delimiter = ',', default_value = "100,1000,5000")]
    pub rates: Vec<f64>,
    /// Seconds of each end-to-end run.
    #[arg(long, default_value_t = 15.0)]
    pub rate_seconds: f64,
    /// `numItems` of every order (and of the raw records).
    #[arg(long, default_value_t = 3)]
    pub num_items: u32,
    /// Unacknowledged records the raw producer keeps in flight for its ceiling.
    #[arg(long, default_value_t = 10_000)]
    pub raw_window: usize,
    /// CartService's and the raw producer's `linger.ms` (CartService's default is 1).
    #[arg(long, default_value_t = 1)]
    pub linger_ms: u32,
    /// OrderService's `APPLY_BATCH_SIZE` for the catch-up (its default is 500).
    #[arg(long)]
    pub apply_batch_size: Option<usize>,
    /// Shorter runs for development: 3 s closed loop, 4 s per rate.
    #[arg(long)]
    pub quick: bool,
    /// Record a `perf` profile of CartService (closed loop) and OrderService (catch-up).
    #[arg(long)]
    pub profile: bool,
    /// The broker to run: `nisshi` (the embedded default) or `tansu` (the former default, for a
    /// side-by-side comparison).
    #[arg(long, default_value = "nisshi")]
    pub broker: String,
    /// Add a "brokers side by side" section comparing this run with another run's
    /// `results.json` (e.g. the same benchmark with `--broker tansu`).
    #[arg(long)]
    pub compare_with: Option<PathBuf>,
    /// With `--broker tansu`: run Tansu exactly as shipped. By default the benchmark adds one
    /// index to Tansu's SQLite schema (`header (topition, offset_id)`): without it every fetched
    /// record costs a full scan of all headers ever written, which makes consuming N records
    /// O(N²) (see NOTES.md).
    #[arg(long)]
    pub stock_tansu: bool,
    /// Do not run `cargo build --release` first.
    #[arg(long)]
    pub skip_build: bool,
    /// Where the service binaries are.
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Where results.json, latency.png and the logs go.
    #[arg(long)]
    pub results_dir: Option<PathBuf>,
    /// The Markdown report to write.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

impl Settings {
    /// How long the closed-loop CartService run lasts (`--quick`: 3 s).
    pub fn closed_duration(&self) -> f64 {
        if self.quick {
            3.0
        } else {
            self.closed_seconds
        }
    }

    /// How long each end-to-end run at a fixed rate lasts (`--quick`: 4 s).
    pub fn rate_duration(&self) -> f64 {
        if self.quick {
            4.0
        } else {
            self.rate_seconds
        }
    }
}

/// OrderService's and the raw consumer's `fetch.wait.max.ms` (OrderService's default).
pub const FETCH_WAIT_MAX_MS: u32 = 10;

/// How long a process may take from spawn to `/ready` 200.
pub const READY_LIMIT: Duration = Duration::from_secs(900);

/// How often `/ready` is polled: start-up is measured, so finer than the tests' default.
pub const READY_POLL: Duration = Duration::from_millis(5);
