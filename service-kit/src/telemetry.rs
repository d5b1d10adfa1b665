//! Tracing set-up, in one place for every binary.
//!
//! `RUST_LOG` chooses what is logged (default `info`), `LOG_FORMAT=json` switches from the human
//! format to one JSON object per line for log shippers.

use tracing_subscriber::{fmt, EnvFilter};

/// Installs the global subscriber. Calling it twice (as tests do) is harmless.
pub fn init(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let json = std::env::var("LOG_FORMAT")
        .map(|v| v.eq_ignore_ascii_case("json"))
        .unwrap_or(false);
    let result = if json {
        fmt().with_env_filter(filter).json().try_init()
    } else {
        fmt().with_env_filter(filter).try_init()
    };
    // An error only means a subscriber is already installed (a second call in one process).
    drop(result);
}
