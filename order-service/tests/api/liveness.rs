//! Liveness that tells the truth: a consumer that ended (a panic, or a dead letter that can
//! never be published) makes `/ready` answer 503 and `consumer_up` 0, with the reason; the
//! binary exits non-zero when its consumer panics, so a supervisor restarts it.
//!
//! The panic is injected through `FAULT_PANIC_ON_KEY`, which exists only when the crate is
//! built with its `fault-injection` feature (on for this crate's tests, see Cargo.toml): no
//! real input makes the consumer panic. The unpublishable dead letter is real: a poison record
//! larger than the dead-letter producer's `message.max.bytes`.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;
use order_events::{OrderStatus, ORDER_EVENTS_DLQ_TOPIC, ORDER_EVENTS_TOPIC};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::ClientConfig;
use testkit::process::{Output, Process};

/// Produces to partition 0 (so "behind" means behind in one partition); returns the offset.
async fn produce_p0(env: &Env, key: &[u8], value: &[u8]) -> i64 {
    let record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(ORDER_EVENTS_TOPIC)
        .partition(0)
        .key(key)
        .payload(value);
    env.producer
        .send(record, Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)
        .unwrap()
        .offset
}

async fn encoded(env: &Env, id: &str) -> Vec<u8> {
    let event = event(simple_order(id, "CUST-1", OrderStatus::Pending), 1);
    env.codec.encode(&event).await.unwrap()
}

/// `/ready` once it answers 503, with its message (30 s at most).
async fn wait_unready(env: &Env, url: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = get_json(&env.http, url, "/ready").await;
        if status == 503 {
            return unready_reason(&body);
        }
        assert!(Instant::now() < deadline, "{url} stayed ready: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Records in the dead-letter topic, over all its partitions (brokers that create topics on
/// first use may give it several).
fn dead_letters_in_topic(bootstrap: String) -> i64 {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let metadata = client
        .fetch_metadata(Some(ORDER_EVENTS_DLQ_TOPIC), Duration::from_secs(5))
        .unwrap();
    let partitions = metadata.topics()[0].partitions().len() as i32;
    (0..partitions)
        .map(|p| {
            let (low, high) = client
                .fetch_watermarks(ORDER_EVENTS_DLQ_TOPIC, p, Duration::from_secs(5))
                .unwrap();
            high - low
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_letter_that_cannot_be_published_stops_consumption_loudly() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = env.settings(dir.path().to_path_buf());
    // The smallest librdkafka allows; the poison record below is larger.
    settings.kafka.properties = vec!["message.max.bytes=1000".into()];
    settings.dlq_publish_max_attempts = 3;
    settings.retry_backoff_max_ms = 200;
    let service = order_service::spawn(settings).await.unwrap();
    wait_ready(&env.http, service.url()).await;
    let url = service.url();

    let g1 = encoded(&env, "G-1").await;
    produce_p0(&env, b"G-1", &g1).await;
    // Poison (wrong magic byte) and larger than the dead-letter producer may send.
    let mut big = vec![1_u8; 4_000];
    big[0] = 7;
    let poison_offset = produce_p0(&env, b"P-BIG", &big).await;
    let g2 = encoded(&env, "G-2").await;
    produce_p0(&env, b"G-2", &g2).await;

    let (status, body) = get_json(
        &env.http,
        url,
        "/api/order-details?orderId=G-1&waitMs=15000",
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let message = wait_unready(&env, url).await;
    assert!(
        message.contains(&format!(
            "topic order-events partition 0 offset {poison_offset} cannot be published after 3 attempts"
        )),
        "{message}"
    );
    assert!(message.contains("consumer has stopped"), "{message}");
    assert_eq!(metric(&env.http, url, "consumer_up").await, 0.0);
    assert!(service.consumer().ended().is_some());

    // Consumption stopped at the record: G-2 behind it is not applied, the stored offset of
    // partition 0 is the poison record's, and nothing reached the dead-letter topic.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let store = service.store();
    assert_eq!(store.version("G-2").unwrap(), None);
    assert_eq!(store.version("G-1").unwrap(), Some(1));
    assert!(store
        .offsets(ORDER_EVENTS_TOPIC)
        .unwrap()
        .contains(&(0, poison_offset)));
    let bootstrap = env.broker.bootstrap_servers();
    let letters = tokio::task::spawn_blocking(move || dead_letters_in_topic(bootstrap))
        .await
        .unwrap();
    assert_eq!(letters, 0);
    // It stays that way: not ready, reads still served.
    let (status, _) = get_json(&env.http, url, "/ready").await;
    assert_eq!(status, 503);
    let (status, _) = get_json(&env.http, url, "/api/order-details?orderId=G-1").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_panic_makes_the_service_unready() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = env.settings(dir.path().to_path_buf());
    settings.fault_panic_on_key = Some("BOOM".into());
    let service = order_service::spawn(settings).await.unwrap();
    wait_ready(&env.http, service.url()).await;
    let url = service.url();
    assert_eq!(metric(&env.http, url, "consumer_up").await, 1.0);

    let g1 = encoded(&env, "G-1").await;
    produce_p0(&env, b"G-1", &g1).await;
    let (status, _) = get_json(
        &env.http,
        url,
        "/api/order-details?orderId=G-1&waitMs=15000",
    )
    .await;
    assert_eq!(status, 200);
    let boom = encoded(&env, "BOOM").await;
    produce_p0(&env, b"BOOM", &boom).await;

    let message = wait_unready(&env, url).await;
    assert!(
        message.contains("the consumer task panicked") && message.contains("FAULT_PANIC_ON_KEY"),
        "{message}"
    );
    assert_eq!(metric(&env.http, url, "consumer_up").await, 0.0);
    let ended = service.consumer().ended().unwrap_or_default();
    assert!(ended.contains("panicked"), "{ended}");
}

/// Starts the binary with `extra` variables, logging to `dir/service.log` (plain text).
fn start_binary(env: &Env, dir: &std::path::Path, port: u16, extra: &[(&str, &str)]) -> Process {
    let mut command = Command::new(env!("CARGO_BIN_EXE_order-service"));
    command
        .env("KAFKA_BOOTSTRAP_SERVERS", env.broker.bootstrap_servers())
        .env("SCHEMA_REGISTRY_URL", env.registry.url())
        .env("API_HOST", "127.0.0.1")
        .env("API_PORT", port.to_string())
        .env("DATA_DIR", dir.join("view"))
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    for (key, value) in extra {
        command.env(key, value);
    }
    Process::spawn("service", command, Output::LogFile(dir.to_path_buf())).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_binary_names_an_unpublishable_dead_letter_in_its_log_and_keeps_serving_unready() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = testkit::free_port().unwrap();
    let url = format!("http://127.0.0.1:{port}");
    // Through the librdkafka pass-through, as an operator would set it.
    let mut child = start_binary(
        &env,
        dir.path(),
        port,
        &[
            ("KAFKA_PROPERTY_MESSAGE_MAX_BYTES", "1000"),
            ("DLQ_PUBLISH_MAX_ATTEMPTS", "2"),
            ("RETRY_BACKOFF_MAX_MS", "200"),
        ],
    );
    wait_ready(&env.http, &url).await;
    let mut big = vec![1_u8; 4_000];
    big[0] = 7;
    let offset = produce_p0(&env, b"P-BIG", &big).await;
    let message = wait_unready(&env, &url).await;
    let log = std::fs::read_to_string(dir.path().join("service.log")).unwrap();
    let running = child.exited().is_none();
    child.kill();
    assert!(
        message.contains("cannot be published after 2 attempts"),
        "{message}"
    );
    assert!(
        running,
        "the process keeps serving reads, not ready:\n{log}"
    );
    let line = log
        .lines()
        .find(|l| l.contains("ERROR") && l.contains("a dead letter cannot be published"))
        .unwrap_or_else(|| panic!("no error line in the log:\n{log}"));
    for field in [
        "topic=\"order-events\"".to_owned(),
        "partition=0".to_owned(),
        format!("offset={offset}"),
        "dlq_topic=\"order-events.dlq\"".to_owned(),
    ] {
        assert!(line.contains(&field), "{field} missing from: {line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_binary_exits_non_zero_when_its_consumer_panics() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = testkit::free_port().unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let log_path = dir.path().join("service.log");
    let mut child = start_binary(&env, dir.path(), port, &[("FAULT_PANIC_ON_KEY", "BOOM")]);
    wait_ready(&env.http, &url).await;

    let boom = encoded(&env, "BOOM").await;
    produce_p0(&env, b"BOOM", &boom).await;
    let Some(status) = child.exit_within(Duration::from_secs(30)) else {
        child.kill();
        panic!(
            "the process kept running after its consumer panicked:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
    };
    let output = std::fs::read_to_string(&log_path).unwrap();
    assert!(!status.success(), "exit status {status}\n{output}");
    assert!(
        output.contains("the consumer task panicked"),
        "the log says why:\n{output}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_stalled_with_records_waiting_is_not_up_until_it_moves_again() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    // The service's registry is not there yet: the record is retried, never applied.
    let port = testkit::free_port().unwrap();
    let mut settings = env.settings(dir.path().to_path_buf());
    settings.registry.url = format!("http://127.0.0.1:{port}");
    settings.consumer_stall_timeout_ms = 1_000;
    let service = order_service::spawn(settings).await.unwrap();
    let url = service.url();
    env.produce(&event(
        simple_order("S-1", "CUST-1", OrderStatus::Pending),
        1,
    ))
    .await;

    eventually("the stall to be reported", || async {
        let (status, body) = get_json(&env.http, url, "/ready").await;
        status == 503 && unready_reason(&body).contains("stalled")
    })
    .await;
    assert_eq!(metric(&env.http, url, "consumer_up").await, 0.0);
    assert!(service.consumer().ended().is_none(), "stalled, not ended");

    // The registry comes up: the record is applied and the consumer is up again.
    let mut registry = schema_registry::Settings::for_tests(&env.broker.bootstrap_servers());
    registry.api_port = port;
    let _registry = schema_registry::spawn(registry).await.unwrap();
    let (status, body) = get_json(
        &env.http,
        url,
        "/api/order-details?orderId=S-1&waitMs=20000",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    wait_ready(&env.http, url).await;
    assert_eq!(metric(&env.http, url, "consumer_up").await, 1.0);
}
