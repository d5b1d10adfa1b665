//! Test support: a real Kafka-compatible broker (the embedded default, Nisshi) for integration
//! tests, and where the embedded broker comes from ([`embedded`]).
//!
//! Tests in this workspace talk to a real broker over TCP, never to a mock. [`Broker::start`]
//! runs the broker on a free port with SQLite storage in a temporary directory and kills it
//! when dropped. When no broker binary can be found the call fails loudly: a test that needs a
//! broker must never pass by skipping. The README's test command installs the broker first.
//! [`Broker::builder`] starts it secured (TLS listener, SASL SCRAM users) with certificates from
//! [`tls::TestPki`], a throw-away CA that also serves HTTPS and mTLS tests.
//!
//! Not only for tests: the launcher (`stack`) and the benchmark run the workspace's binaries
//! through [`process`] (build, spawn, wait until ready, stop), poll with [`wait`] and read
//! `/metrics` with [`metrics`], so there is one implementation of each; those modules,
//! [`embedded`] and [`probe`] build without the
//! `broker` feature (no librdkafka).

use std::net::TcpListener;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

pub mod embedded;
pub mod metrics;
pub mod probe;
pub mod process;
pub mod tls;
pub mod wait;

#[cfg(feature = "broker")]
mod broker;
#[cfg(feature = "broker")]
pub use broker::{Broker, BrokerBuilder, ScramMechanism};
#[cfg(feature = "broker")]
pub mod topic;
#[cfg(feature = "broker")]
pub use topic::TopicRecord;

/// Where `cargo run -p stack -- install` may put tools, relative to the workspace root.
pub const TOOLS_DIR: &str = ".tools";

/// The workspace root (this crate lives one level below it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The Python interpreter with the test tools (Confluent's client, Selenium): `$STACK_PYTHON`,
/// else the virtualenv the README's test command creates under `.tools/venv`. Fails with
/// instructions when there is none; a test that needs it never skips.
pub fn test_python() -> anyhow::Result<PathBuf> {
    let python = match std::env::var_os("STACK_PYTHON") {
        Some(path) => workspace_root().join(path),
        None => workspace_root().join(TOOLS_DIR).join("venv/bin/python"),
    };
    if !python.exists() {
        bail!(
            "no Python with the test tools at {}: run the README's test command \
             (`cargo run -p stack -- test`), which creates it, or set STACK_PYTHON",
            python.display()
        );
    }
    Ok(python)
}

/// A port that was free a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a probe socket")?;
    Ok(listener
        .local_addr()
        .context("reading the probe port")?
        .port())
}
