//! A minimal HTTP/1.1 keep-alive client over one tokio `TcpStream`.
//!
//! Why hand-rolled: a load generator must add as little of its own cost and queueing as it can
//! to what it measures. One connection per worker, one request in flight on it, no pool, no
//! redirect or TLS logic: exactly the "N keep-alive connections" the benchmark describes. It
//! understands what our services send: `Content-Length` or `chunked` bodies.

use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A response: status, headers and body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One keep-alive connection to `host:port`; reconnects lazily after an error or a close.
pub struct Connection {
    addr: String,
    stream: Option<BufReader<TcpStream>>,
    timeout: Duration,
    /// Reusable request buffer.
    buf: Vec<u8>,
}

impl Connection {
    /// A connection to `addr` (`host:port`); nothing is opened until the first request.
    pub fn new(addr: impl Into<String>, timeout: Duration) -> Connection {
        Connection {
            addr: addr.into(),
            stream: None,
            timeout,
            buf: Vec::with_capacity(512),
        }
    }

    /// Opens the TCP connection now (so a benchmark does not time the handshake).
    pub async fn connect(&mut self) -> anyhow::Result<()> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(&self.addr)
                .await
                .with_context(|| format!("connecting to {}", self.addr))?;
            stream.set_nodelay(true).context("setting TCP_NODELAY")?;
            self.stream = Some(BufReader::with_capacity(16 * 1024, stream));
        }
        Ok(())
    }

    /// `GET path`.
    pub async fn get(&mut self, path: &str) -> anyhow::Result<Response> {
        self.request("GET", path, None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(&mut self, path: &str, body: &[u8]) -> anyhow::Result<Response> {
        self.request("POST", path, Some(body)).await
    }

    /// Sends one request and reads its response, within the connection's timeout. Any error
    /// drops the connection; the next request opens a new one.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> anyhow::Result<Response> {
        let result = tokio::time::timeout(self.timeout, self.exchange(method, path, body)).await;
        match result {
            Ok(Ok((response, keep_alive))) => {
                if !keep_alive {
                    self.stream = None;
                }
                Ok(response)
            }
            Ok(Err(e)) => {
                self.stream = None;
                Err(e)
            }
            Err(_) => {
                self.stream = None;
                bail!("no response within {:?}", self.timeout)
            }
        }
    }

    async fn exchange(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> anyhow::Result<(Response, bool)> {
        self.connect().await?;
        self.buf.clear();
        self.buf.extend_from_slice(method.as_bytes());
        self.buf.push(b' ');
        self.buf.extend_from_slice(path.as_bytes());
        self.buf.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        self.buf.extend_from_slice(self.addr.as_bytes());
        self.buf.extend_from_slice(b"\r\n");
        if let Some(body) = body {
            self.buf.extend_from_slice(
                format!(
                    "Content-Type: application/json\r\nContent-Length: {}\r\n",
                    body.len()
                )
                .as_bytes(),
            );
        }
        self.buf.extend_from_slice(b"\r\n");
        if let Some(body) = body {
            self.buf.extend_from_slice(body);
        }
        let stream = self.stream.as_mut().context("the connection is not open")?;
        stream
            .get_mut()
            .write_all(&self.buf)
            .await
            .context("writing the request")?;
        read_response(stream).await
    }
}

/// Reads one response; returns it and whether the connection may be reused.
async fn read_response(stream: &mut BufReader<TcpStream>) -> anyhow::Result<(Response, bool)> {
    let mut line = String::new();
    if stream
        .read_line(&mut line)
        .await
        .context("reading the status line")?
        == 0
    {
        bail!("the server closed the connection");
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("malformed status line {line:?}"))?;
    let http10 = line.starts_with("HTTP/1.0");
    let mut content_length: Option<usize> = None;
    let mut chunked = false;
    let mut close = http10;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if stream
            .read_line(&mut line)
            .await
            .context("reading a header")?
            == 0
        {
            bail!("the server closed the connection in the headers");
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            bail!("malformed header {header:?}");
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(value.parse().context("parsing Content-Length")?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            let value = value.to_ascii_lowercase();
            close = value.contains("close") || (http10 && !value.contains("keep-alive"));
        }
        headers.push((name.trim().to_ascii_lowercase(), value.to_string()));
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            stream
                .read_line(&mut line)
                .await
                .context("reading a chunk size")?;
            let size_text = line.trim().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size_text, 16)
                .with_context(|| format!("malformed chunk size {line:?}"))?;
            if size == 0 {
                // Trailers until the empty line.
                loop {
                    line.clear();
                    stream
                        .read_line(&mut line)
                        .await
                        .context("reading trailers")?;
                    if line.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            stream
                .read_exact(&mut body[start..])
                .await
                .context("reading a chunk")?;
            let mut crlf = [0_u8; 2];
            stream
                .read_exact(&mut crlf)
                .await
                .context("reading a chunk's end")?;
        }
    } else if let Some(length) = content_length {
        body.resize(length, 0);
        stream
            .read_exact(&mut body)
            .await
            .context("reading the body")?;
    } else if status >= 200 && status != 204 && status != 304 {
        // No length: the body runs to the end of the connection.
        stream
            .read_to_end(&mut body)
            .await
            .context("reading the body")?;
        close = true;
    }
    Ok((
        Response {
            status,
            headers,
            body,
        },
        !close,
    ))
}
