//! Benchmarks of the order pipeline: a load generator and the pieces of the one-command
//! benchmark (`cargo run --release -p bench --bin bench`).
//!
//! Why a crate of its own: the benchmark runs the services' release binaries as separate
//! processes against a fresh broker, so it depends on no service crate; it shares only the
//! contract (`order-events`) to encode the same records CartService writes.
//!
//! The one-command benchmark is [`settings`] (what to run), [`phases`] (one function per
//! measurement, filling [`report::Results`]) and [`report`] (`results.json`, the plot and
//! `BENCHMARKS.md`).

pub mod compare;
pub mod http;
pub mod load;
pub mod phases;
pub mod plot;
pub mod procstat;
pub mod raw;
pub mod report;
pub mod settings;

/// A progress line on stderr, with the time.
pub fn say(message: impl AsRef<str>) {
    eprintln!(
        "[{}] bench: {}",
        chrono::Local::now().format("%H:%M:%S"),
        message.as_ref()
    );
}
