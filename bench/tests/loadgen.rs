//! The load generator against a tiny real HTTP/1.1 server on a local socket: keep-alive,
//! `Content-Length` and chunked bodies, errors counted by status, and open-loop latency that
//! shows a server stall in every request scheduled during it (no coordinated omission).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bench::load::{self, LoadConfig, Mode};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// A server that answers `POST /api/create-order` with 201 (409 for IDs ending in 7; marked
/// `x-cart-forwarded` for IDs ending in 3; and one 300 ms stall when `stall_at` requests have been seen) and `GET /api/order-details` with a
/// chunked 200. Returns its address and the number of connections it accepted.
async fn server(stall_at: u64) -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let accepted = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::Relaxed);
            let requests = Arc::clone(&requests);
            tokio::spawn(async move {
                let mut stream = BufReader::new(socket);
                loop {
                    let mut line = String::new();
                    if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let request_line = line.clone();
                    let mut length = 0;
                    loop {
                        line.clear();
                        if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if line.trim().is_empty() {
                            break;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    if stream.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    let n = requests.fetch_add(1, Ordering::Relaxed);
                    if n == stall_at {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                    let response = if request_line.starts_with("POST") {
                        let text = String::from_utf8_lossy(&body);
                        let status = if text.contains("7\"") {
                            "409 Conflict"
                        } else {
                            "201 Created"
                        };
                        let forwarded = if text.contains("3\"") {
                            "X-Cart-Forwarded: 1\r\n"
                        } else {
                            ""
                        };
                        let payload = r#"{"success":true}"#;
                        format!(
                            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{forwarded}Content-Length: {}\r\n\r\n{payload}",
                            payload.len()
                        )
                    } else {
                        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n".to_string()
                    };
                    if stream
                        .get_mut()
                        .write_all(response.as_bytes())
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn closed_loop_counts_statuses_and_reuses_connections() {
    let (addr, accepted) = server(u64::MAX).await;
    let mut config = LoadConfig::new(addr.clone());
    config.connections = 4;
    config.mode = Mode::Closed;
    config.duration = Duration::from_secs(10);
    config.max_requests = Some(200);
    config.id_prefix = "T-".into();
    config.follow = Some(addr);
    let report = load::run(config).await.expect("run");
    assert_eq!(report.sent, 200);
    // IDs T-7, T-17, …, T-197: 20 of them end in 7.
    assert_eq!(report.errors.get("create 409"), Some(&20));
    assert_eq!(report.created, 180);
    assert_eq!(report.followed, 180, "chunked 200s are read: {report:?}");
    assert_eq!(report.create.len(), 180);
    assert_eq!(report.e2e.len(), 180);
    // 4 workers × (cart + order) connections, all kept alive.
    assert_eq!(accepted.load(Ordering::Relaxed), 8);
    assert!(report.create.value_at_quantile(0.5) <= report.create.value_at_quantile(0.99));
    assert!(report.throughput() > 0.0);
    // T-3, T-13, …, T-193 were marked as relayed by another instance.
    assert_eq!(report.forwarded, 20);
}

#[tokio::test]
async fn an_id_filter_skips_the_ids_it_rejects() {
    let (addr, _) = server(u64::MAX).await;
    let mut config = LoadConfig::new(addr);
    config.connections = 4;
    config.mode = Mode::Closed;
    config.duration = Duration::from_secs(10);
    config.max_requests = Some(200);
    config.id_prefix = "F-".into();
    // The server refuses IDs ending in 7: never send them.
    config.id_filter = Some(load::IdFilter::new(|id| !id.ends_with('7')));
    let report = load::run(config).await.expect("run");
    assert_eq!(report.sent, 200);
    assert_eq!(report.created, 200, "{}", report.summary());
    assert!(report.errors.is_empty(), "{}", report.summary());
    // The first 200 accepted counters are 0..=221 without those ending in 7.
    let expected = (0..=221_u64)
        .filter(|n| n % 10 != 7)
        .filter(|n| n % 10 == 3)
        .count() as u64;
    assert_eq!(report.forwarded, expected);
}

#[tokio::test]
async fn a_filter_that_accepts_nothing_stops_the_run_with_an_error() {
    let (addr, _) = server(u64::MAX).await;
    let mut config = LoadConfig::new(addr);
    config.connections = 2;
    config.duration = Duration::from_secs(10);
    config.id_filter = Some(load::IdFilter::new(|_| false));
    let report = load::run(config).await.expect("run");
    assert_eq!(report.sent, 0);
    assert_eq!(
        report.errors.get("no ID accepted by the filter"),
        Some(&2),
        "{}",
        report.summary()
    );
}

#[tokio::test]
async fn open_loop_measures_from_the_intended_send_time() {
    // 200/s for 1 s on 1 connection; the 20th request stalls the server for 300 ms. A
    // closed-loop measurement would record one slow request; from the intended send times
    // every request scheduled during the stall is late, so p95 must show it.
    let (addr, _) = server(20).await;
    let mut config = LoadConfig::new(addr);
    config.connections = 1;
    config.mode = Mode::Open { rate: 200.0 };
    config.duration = Duration::from_secs(1);
    config.id_prefix = "O-".into();
    let report = load::run(config).await.expect("run");
    assert_eq!(report.sent, 200);
    let slow = report
        .create
        .iter_recorded()
        .filter(|v| v.value_iterated_to() >= 50_000)
        .map(|v| v.count_at_value())
        .sum::<u64>();
    assert!(
        slow >= 20,
        "only {slow} requests saw the stall: {}",
        report.summary()
    );
    assert!(
        load::ms_at(&report.create, 95.0) >= 50.0,
        "{}",
        report.summary()
    );
    assert!(report.max_send_lag >= Duration::from_millis(100));
    assert!(
        (report.throughput() - 180.0).abs() < 60.0,
        "{}",
        report.summary()
    );
}
