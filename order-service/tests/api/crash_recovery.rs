//! Exactly once across a crash: the order-service *process* is killed with SIGKILL in the
//! middle of a backlog, restarted, and the view ends equal to the topic's latest versions with
//! `applied_total` equal to the number of records (each applied exactly once).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;
use futures::future::join_all;
use order_events::{OrderStatus, ORDER_EVENTS_TOPIC};
use order_service::store::{Store, APPLIED_TOTAL};
use rdkafka::producer::FutureRecord;
use testkit::process::{Output, Process, Stopped};

const ORDERS: usize = 1_000;
const STATUSES: [OrderStatus; 4] = [
    OrderStatus::Pending,
    OrderStatus::Confirmed,
    OrderStatus::Shipped,
    OrderStatus::Delivered,
];

/// Starts the binary as `name`, logging to `data_dir/{name}.log`.
fn start(env: &Env, data_dir: &Path, port: u16, name: &str) -> Process {
    let mut command = Command::new(env!("CARGO_BIN_EXE_order-service"));
    command
        .env("KAFKA_BOOTSTRAP_SERVERS", env.broker.bootstrap_servers())
        .env("SCHEMA_REGISTRY_URL", env.registry.url())
        .env("API_HOST", "127.0.0.1")
        .env("API_PORT", port.to_string())
        .env("DATA_DIR", data_dir.join("view"))
        // Small batches, so the kill lands between many commits.
        .env("APPLY_BATCH_SIZE", "50")
        .env("RUST_LOG", "warn");
    Process::spawn(name, command, Output::LogFile(data_dir.to_path_buf())).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kill_9_in_the_middle_of_a_backlog_applies_every_record_exactly_once() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();

    // The backlog: every order through four versions, 4000 records.
    let mut records = Vec::new();
    for i in 0..ORDERS {
        let id = format!("ORDER-{i:05}");
        let base = simple_order(&id, &format!("C-{}", i % 10), OrderStatus::Pending);
        for (v, status) in STATUSES.iter().enumerate() {
            let e = event(base.clone().with_status(*status), v as i64 + 1);
            records.push((id.clone(), env.codec.encode(&e).await.unwrap()));
        }
    }
    let total = records.len() as f64;
    // Sends are enqueued in order, so each key's versions stay in order in its partition.
    let sends = records.iter().map(|(key, value)| {
        env.producer.send(
            FutureRecord::to(ORDER_EVENTS_TOPIC)
                .key(key.as_str())
                .payload(value.as_slice()),
            Duration::from_secs(30),
        )
    });
    for result in join_all(sends).await {
        result.map_err(|(e, _)| e).unwrap();
    }

    let port = testkit::free_port().unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let mut child = start(&env, dir.path(), port, "first");
    // Kill as soon as the first batches are committed.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = 0.0;
    while seen == 0.0 {
        assert!(Instant::now() < deadline, "nothing was applied");
        if env.http.get(format!("{url}/health")).send().await.is_ok() {
            seen = metric(&env.http, &url, "order_view_applied_records").await;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    child.kill(); // SIGKILL

    let committed = {
        let store = Store::open(&dir.path().join("view")).unwrap();
        store.counter(APPLIED_TOTAL).unwrap()
    };
    println!("killed with {committed} of {total} records committed");
    assert!(committed > 0);
    assert!(
        (committed as f64) < total,
        "the kill came after the whole backlog ({committed}); the test proves nothing"
    );

    // Restart: it resumes from the stored offsets and finishes the backlog.
    let mut child = start(&env, dir.path(), port, "restarted");
    eventually("the whole backlog to be applied", || async {
        env.http.get(format!("{url}/health")).send().await.is_ok()
            && metric(&env.http, &url, "order_view_applied_records").await >= total
    })
    .await;
    wait_ready(&env.http, &url).await;
    assert_eq!(
        metric(&env.http, &url, "order_view_applied_records").await,
        total,
        "each record applied exactly once"
    );

    // Graceful stop (SIGTERM): exits cleanly.
    let exit = tokio::task::spawn_blocking(move || child.stop())
        .await
        .unwrap();
    assert!(
        matches!(exit, Stopped::Exited(status) if status.success()),
        "{exit:?}"
    );

    let store = Store::open(&dir.path().join("view")).unwrap();
    assert_eq!(store.counter(APPLIED_TOTAL).unwrap() as f64, total);
    let view = store.all().unwrap();
    assert_eq!(view.len(), ORDERS);
    for order in &view {
        assert_eq!(order.version, 4, "{}", order.order.order_id());
        assert_eq!(order.order.status(), OrderStatus::Delivered);
        assert_eq!(order.shipping_cost.to_string(), "40.00");
    }
    let offsets: i64 = store
        .offsets(ORDER_EVENTS_TOPIC)
        .unwrap()
        .iter()
        .map(|(_, next)| next)
        .sum();
    assert_eq!(offsets as f64, total, "stored offsets cover every record");
}
