//! Benchmarks of the order pipeline: a load generator and the pieces of the one-command
//! benchmark (`cargo run --release -p bench --bin bench`).
//!
//! Why a crate of its own: the benchmark runs the services' release binaries as separate
//! processes against a fresh broker, so it depends on no service crate; it shares only the
//! contract (`order-events`) to encode the same records CartService writes.

pub mod compare;
pub mod http;
pub mod load;
pub mod plot;
pub mod procs;
pub mod procstat;
pub mod raw;
