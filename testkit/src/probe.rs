//! Is the broker answering? A Kafka `Metadata` request over a plain TCP socket.
//!
//! A process that exists, or a port that accepts connections, is not a working broker: a broker
//! stuck in its storage layer still accepts TCP. The launcher's supervisor and the tests ask the
//! broker for its cluster metadata, which goes through its request handling and storage, and
//! count it alive only when a well-formed answer with at least one broker comes back in time.
//! It needs no Kafka client library, so the launcher stays free of librdkafka.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, ensure, Context};

const METADATA: i16 = 3;
const VERSION: i16 = 1;
const CORRELATION_ID: i32 = 0x5eed;
const CLIENT_ID: &[u8] = b"stack-probe";
/// Larger answers are not what a probe expects; refuse them rather than allocate.
const MAX_RESPONSE: usize = 1 << 20;

/// Sends a Metadata v1 request (no topics) to `addr` and checks the answer names at least one
/// broker. Every socket operation is bounded by `timeout`.
pub fn metadata(addr: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .context("read timeout")?;
    stream
        .set_write_timeout(Some(timeout))
        .context("write timeout")?;
    stream
        .write_all(&request())
        .with_context(|| format!("sending a metadata request to {addr}"))?;
    let mut size = [0_u8; 4];
    stream
        .read_exact(&mut size)
        .with_context(|| format!("waiting for {addr}'s metadata answer"))?;
    let size = usize::try_from(i32::from_be_bytes(size)).context("negative answer size")?;
    ensure!(
        (8..=MAX_RESPONSE).contains(&size),
        "metadata answer of {size} bytes"
    );
    let mut body = vec![0_u8; size];
    stream
        .read_exact(&mut body)
        .with_context(|| format!("reading {addr}'s metadata answer"))?;
    let correlation = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    ensure!(
        correlation == CORRELATION_ID,
        "the answer is for another request ({correlation})"
    );
    let brokers = i32::from_be_bytes([body[4], body[5], body[6], body[7]]);
    if brokers < 1 {
        bail!("the metadata answer lists no broker");
    }
    Ok(())
}

/// Metadata v1: header (api key, version, correlation id, client id), then an empty topic array
/// (v1: no topics, just brokers and controller).
fn request() -> Vec<u8> {
    let mut body = Vec::with_capacity(32);
    body.extend_from_slice(&METADATA.to_be_bytes());
    body.extend_from_slice(&VERSION.to_be_bytes());
    body.extend_from_slice(&CORRELATION_ID.to_be_bytes());
    let client_len = i16::try_from(CLIENT_ID.len()).unwrap_or(i16::MAX);
    body.extend_from_slice(&client_len.to_be_bytes());
    body.extend_from_slice(CLIENT_ID);
    body.extend_from_slice(&0_i32.to_be_bytes());
    let len = i32::try_from(body.len()).unwrap_or(i32::MAX);
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend(body);
    framed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn request_is_a_framed_metadata_v1_with_no_topics() {
        let bytes = request();
        let len = i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        assert_eq!(len as usize, bytes.len() - 4);
        assert_eq!(&bytes[4..6], &3_i16.to_be_bytes());
        assert_eq!(&bytes[6..8], &1_i16.to_be_bytes());
        assert_eq!(&bytes[bytes.len() - 4..], &0_i32.to_be_bytes());
    }

    #[test]
    fn a_port_that_accepts_but_never_answers_is_not_a_broker() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let started = std::time::Instant::now();
        let result = metadata(addr, Duration::from_millis(300));
        assert!(result.is_err());
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(listener);
    }
}
