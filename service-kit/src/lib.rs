//! Plumbing shared by the three HTTP binaries (schema-registry, cart-service, order-service).
//!
//! Each binary needs the same few things around its own routes: tracing set up from the
//! environment, a listener bound before the server starts (so tests can ask for port 0 and read
//! back the real port), and a clear message when the port is taken. Writing them once here keeps
//! the services about their domain.

use std::net::TcpListener;

use anyhow::Context;

pub mod http_error;
pub mod kafka;
pub mod metrics;
pub mod sqlite;
pub mod surface;
pub mod telemetry;

/// Binds `host:port` (port 0 picks a free one) and explains the usual failure.
pub fn bind(host: &str, port: u16) -> anyhow::Result<TcpListener> {
    let address = format!("{host}:{port}");
    TcpListener::bind(&address).with_context(|| {
        format!(
            "cannot listen on {address}: is another process using the port? \
             Set API_PORT (or --api-port) to use another one"
        )
    })
}

/// A JSON body `{"status": "..."}` for `/health`-style answers.
pub fn status_body(status: &str) -> serde_json::Value {
    serde_json::json!({ "status": status })
}

/// A service serving from a task of this process (for embedding it, and for tests): its URL,
/// and the task, which is aborted when this is dropped.
pub struct Spawned<R> {
    url: String,
    task: tokio::task::JoinHandle<R>,
}

impl<R: Send + 'static> Spawned<R> {
    /// Runs `server` on a task of the current runtime; `port` is where it listens.
    pub fn new(port: u16, server: impl std::future::Future<Output = R> + Send + 'static) -> Self {
        Spawned {
            url: format!("http://127.0.0.1:{port}"),
            task: tokio::spawn(server),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl<R> Drop for Spawned<R> {
    fn drop(&mut self) {
        self.task.abort();
    }
}
