//! Noticing that an HTTP client went away while its request is still being worked on.
//!
//! Why a module: actix-web keeps polling a handler after its client disconnected (it only
//! notices when it writes the answer), so dropping the handler future is not a signal a
//! long-running request can rely on. Each accepted connection therefore gets a duplicate of
//! its socket ([`on_connect`], stored in the connection's data); a long request such as a
//! topic scan peeks at it now and then: end-of-stream or a reset means the client is gone.
//! The duplicate shares the original's non-blocking mode, so a peek never blocks, and
//! `MSG_PEEK` consumes nothing actix would read. Cost: one extra file descriptor per open
//! connection. A client that half-closes its sending side while waiting for the answer looks
//! gone too; HTTP clients do not do that in practice.

use std::any::Any;
use std::io::ErrorKind;
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::sync::Arc;

use actix_web::dev::Extensions;

/// A duplicate of a connection's socket, for [`ClientSocket::is_gone`].
#[derive(Debug, Clone)]
pub struct ClientSocket(Arc<TcpStream>);

impl ClientSocket {
    /// Whether the peer closed or reset the connection (never blocks).
    pub fn is_gone(&self) -> bool {
        let mut byte = [0_u8; 1];
        match self.0.peek(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted),
        }
    }
}

/// `HttpServer::on_connect` hook: stores a [`ClientSocket`] for plain TCP connections.
pub fn on_connect(connection: &dyn Any, data: &mut Extensions) {
    let Some(stream) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() else {
        return;
    };
    match stream.as_fd().try_clone_to_owned() {
        Ok(fd) => {
            data.insert(ClientSocket(Arc::new(TcpStream::from(fd))));
        }
        Err(e) => tracing::debug!(error = %e, "cannot watch a connection for disconnects"),
    }
}
