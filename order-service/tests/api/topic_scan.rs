//! `GET /api/getAllOrderIdsFromTopic` reads the topic itself: exactly the distinct keys
//! produced, in first-seen order, 404 for a missing topic, 400 for an illegal name, 503 when
//! Kafka is gone; only allowed topics (never internal ones), at most N scans at once (429 with
//! Retry-After beyond), and a scan whose client went away stops.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::common::*;
use futures::future::join_all;
use order_events::{OrderStatus, ORDER_EVENTS_TOPIC};
use rdkafka::producer::FutureRecord;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_scan_returns_exactly_the_distinct_keys_produced() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = env.settings(dir.path().to_path_buf());
    settings.topic_scan_timeout_ms = 5_000;
    settings.topic_scan_allowed = ["order-events", "single", "empty", "nope"]
        .map(String::from)
        .to_vec();
    let service = order_service::spawn(settings).await.unwrap();
    wait_ready(&env.http, service.url()).await;
    let url = service.url();

    // 1500 orders, each with versions 1 and 2 (3000 records) across 3 partitions.
    let orders = 1_500;
    let mut values = Vec::new();
    for i in 0..orders {
        let order = simple_order(&format!("ORDER-{i:05}"), "C", OrderStatus::Pending);
        let v1 = env.codec.encode(&event(order.clone(), 1)).await.unwrap();
        let v2 = env
            .codec
            .encode(&event(order.with_status(OrderStatus::Confirmed), 2))
            .await
            .unwrap();
        values.push((format!("ORDER-{i:05}"), v1, v2));
    }
    let sends = values.iter().flat_map(|(key, v1, v2)| {
        [v1, v2].map(|v| {
            env.producer.send(
                FutureRecord::to(ORDER_EVENTS_TOPIC)
                    .key(key.as_str())
                    .payload(v.as_slice()),
                Duration::from_secs(30),
            )
        })
    });
    for result in join_all(sends).await {
        result.map_err(|(e, _)| e).unwrap();
    }

    let started = Instant::now();
    let (status, body) = get_json(
        &env.http,
        url,
        "/api/getAllOrderIdsFromTopic?topicName=order-events",
    )
    .await;
    let elapsed = started.elapsed();
    assert_eq!(status, 200, "{body}");
    println!("scanned {} records in {elapsed:?}", orders * 2);
    assert_eq!(body["success"], true);
    assert_eq!(body["topicName"], "order-events");
    assert_eq!(body["count"], orders);
    let ids: Vec<&str> = body["orderIds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let distinct: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), ids.len(), "no duplicates");
    let expected: HashSet<String> = values.iter().map(|(k, _, _)| k.clone()).collect();
    assert_eq!(
        distinct,
        expected.iter().map(String::as_str).collect::<HashSet<_>>()
    );

    // First-seen order, on a one-partition topic; values are never decoded.
    env.broker.create_topic("single", 1).await.unwrap();
    for key in ["B", "A", "B", "C", "A"] {
        env.producer
            .send(
                FutureRecord::to("single").key(key).payload("not avro"),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
    env.producer
        .send(
            FutureRecord::<str, str>::to("single").payload("no key"),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    let (status, body) = get_json(
        &env.http,
        url,
        "/api/getAllOrderIdsFromTopic?topicName=single",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["orderIds"], serde_json::json!(["B", "A", "C"]));
    assert_eq!(body["count"], 3);

    // An empty topic answers at once.
    env.broker.create_topic("empty", 3).await.unwrap();
    let (status, body) = get_json(
        &env.http,
        url,
        "/api/getAllOrderIdsFromTopic?topicName=empty",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["orderIds"], serde_json::json!([]));
    assert_eq!(body["count"], 0);

    let (status, body) = get_json(
        &env.http,
        url,
        "/api/getAllOrderIdsFromTopic?topicName=nope",
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["message"], "Topic 'nope' does not exist");
    assert_eq!(body["success"], false);

    let (status, _) = get_json(&env.http, url, "/api/getAllOrderIdsFromTopic?topicName=..").await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_scan_answers_503_when_kafka_is_unreachable() {
    let mut env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = env.settings(dir.path().to_path_buf());
    settings.topic_scan_timeout_ms = 3_000;
    let service = order_service::spawn(settings).await.unwrap();
    wait_ready(&env.http, service.url()).await;
    env.broker.kill();
    let started = Instant::now();
    let (status, body) = get_json(
        &env.http,
        service.url(),
        "/api/getAllOrderIdsFromTopic?topicName=order-events",
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["success"], false);
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// The scan answer for `topic`: status, `Retry-After` and body.
async fn scan(
    http: &reqwest::Client,
    url: &str,
    topic: &str,
) -> (u16, Option<String>, serde_json::Value) {
    let response = http
        .get(format!(
            "{url}/api/getAllOrderIdsFromTopic?topicName={topic}"
        ))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, retry_after, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn internal_and_unlisted_topics_are_refused_and_the_default_ones_scan() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    let service = env.service(dir.path().to_path_buf()).await;
    let url = service.url();
    env.produce(&event(simple_order("S-1", "C", OrderStatus::Pending), 1))
        .await;
    env.broker.create_topic("other", 1).await.unwrap();

    // `_schemas` exists (the registry writes it) and so does `__consumer_offsets` on most
    // brokers: refused either way, before anything is read.
    for topic in ["_schemas", "__consumer_offsets", "other"] {
        let (status, _, body) = scan(&env.http, url, topic).await;
        assert_eq!(status, 403, "{topic}: {body}");
        assert_eq!(body["success"], false);
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("'{topic}' may not be scanned"))
                && message.contains("allowed topics: order-events, order-events.dlq"),
            "{message}"
        );
        assert_eq!(body["errors"][0]["field"], "topicName");
    }
    assert_eq!(
        metric(
            &env.http,
            url,
            "order_topic_scans_rejected_total{reason=\"not_allowed\"}"
        )
        .await,
        3.0
    );

    // The defaults: the consumed topic and its dead-letter topic.
    let (status, _, body) = scan(&env.http, url, ORDER_EVENTS_TOPIC).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["orderIds"], serde_json::json!(["S-1"]));
    let (status, _, body) = scan(&env.http, url, "order-events.dlq").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["count"], 0);

    // Listing an internal topic is refused at start-up, with the reason.
    for internal in ["_schemas", "__consumer_offsets"] {
        let mut settings = env.settings(dir.path().join(internal));
        settings.topic_scan_allowed = vec!["order-events".into(), internal.into()];
        let error = order_service::spawn(settings)
            .await
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(
            error.contains(&format!("internal topic '{internal}'")),
            "{internal}: {error}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_scans_run_at_most_n_at_once_and_all_finish() {
    const MAX: usize = 3;
    const CLIENTS: usize = 50;
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = env.settings(dir.path().to_path_buf());
    settings.topic_scan_max_concurrent = MAX as u32;
    let service = order_service::spawn(settings).await.unwrap();
    wait_ready(&env.http, service.url()).await;
    let url = service.url().to_owned();
    for i in 0..20 {
        let order = simple_order(&format!("C-{i:02}"), "C", OrderStatus::Pending);
        env.produce(&event(order, 1)).await;
    }

    // With the broker stopped, the first scans hold their slots (waiting for metadata), so
    // the others are refused deterministically.
    env.broker.pause().unwrap();
    let first = join_all((0..CLIENTS).map(|_| scan(&env.http, &url, ORDER_EVENTS_TOPIC)));
    let paused_checks = async {
        eventually("the first scans to take their slots", || async {
            metric(&env.http, &url, "order_topic_scans_active").await >= MAX as f64
        })
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let active = metric(&env.http, &url, "order_topic_scans_active").await;
        env.broker.resume().unwrap();
        active
    };
    let (answers, active_while_paused) = tokio::join!(first, paused_checks);
    assert_eq!(active_while_paused, MAX as f64, "scans running at once");
    let ok = answers.iter().filter(|(s, _, _)| *s == 200).count();
    let busy: Vec<_> = answers.iter().filter(|(s, _, _)| *s == 429).collect();
    // Requests that arrived after a slot freed up may have been served too.
    assert!(ok >= MAX, "{answers:?}");
    assert!(busy.len() >= CLIENTS / 2, "{} refused", busy.len());
    assert_eq!(ok + busy.len(), CLIENTS, "{answers:?}");
    for (_, retry_after, body) in &busy {
        assert_eq!(retry_after.as_deref(), Some("1"));
        assert_eq!(body["success"], false);
        assert!(
            body["message"].as_str().unwrap().contains("at most 3"),
            "{body}"
        );
    }
    for (_, _, body) in answers.iter().filter(|(s, _, _)| *s == 200) {
        assert_eq!(body["count"], 20, "{body}");
    }

    // Clients that honour Retry-After all get their answer; a sampler never sees more than
    // MAX scans at once.
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (http, url, peak, done) = (env.http.clone(), url.clone(), peak.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                let active = metric(&http, &url, "order_topic_scans_active").await as u64;
                peak.fetch_max(active, std::sync::atomic::Ordering::AcqRel);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let retried = join_all((0..CLIENTS).map(|_| async {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, retry_after, body) = scan(&env.http, &url, ORDER_EVENTS_TOPIC).await;
            match status {
                200 => return body,
                429 => {
                    let secs: u64 = retry_after.unwrap().parse().unwrap();
                    assert!(Instant::now() < deadline, "never got a slot");
                    // Retry-After, spread a little so the clients do not move in lockstep.
                    let jitter = Duration::from_millis(rand_ms());
                    tokio::time::sleep(Duration::from_secs(secs) + jitter).await;
                }
                other => panic!("{other}: {body}"),
            }
        }
    }))
    .await;
    done.store(true, std::sync::atomic::Ordering::Release);
    sampler.await.unwrap();
    assert!(retried.iter().all(|body| body["count"] == 20));
    let peak = peak.load(std::sync::atomic::Ordering::Acquire);
    assert!(peak <= MAX as u64, "peak {peak}");
    assert_eq!(
        metric(&env.http, &url, "order_topic_scans_active").await,
        0.0
    );
    let (status, body) = get_json(&env.http, &url, "/ready").await;
    assert_eq!(status, 200, "{body}");
}

/// A few pseudo-random milliseconds (no extra dependency needed for jitter).
fn rand_ms() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    u64::from(nanos % 200)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scan_whose_client_disconnects_stops() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    let service = env.service(dir.path().to_path_buf()).await;
    let url = service.url().to_owned();
    env.produce(&event(simple_order("D-1", "C", OrderStatus::Pending), 1))
        .await;

    // With the broker stopped the scan cannot finish; its client gives up after 300 ms.
    env.broker.pause().unwrap();
    let impatient = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let request = impatient
        .get(format!(
            "{url}/api/getAllOrderIdsFromTopic?topicName=order-events"
        ))
        .send()
        .await;
    assert!(
        request.is_err(),
        "the scan cannot answer while the broker is stopped"
    );
    drop(impatient);
    assert_eq!(
        metric(&env.http, &url, "order_topic_scans_active").await,
        1.0
    );
    // Give the server a moment to notice the closed connection, then let the broker answer:
    // a scan that was not cancelled would now complete normally.
    tokio::time::sleep(Duration::from_millis(500)).await;
    env.broker.resume().unwrap();
    let started = Instant::now();
    eventually("the abandoned scan to stop", || async {
        metric(&env.http, &url, "order_topic_scans_active").await == 0.0
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(
        metric(&env.http, &url, "order_topic_scans_cancelled_total").await,
        1.0,
        "the scan ended because its client left, not because it completed"
    );
    wait_ready(&env.http, &url).await;
}
