//! CartService scaled out: three instances (real processes) in one group on a real broker, with
//! the real registry and OrderService, as the issue that introduced partition ownership asks.
//!
//! * concurrent creates of one ID through different instances: one 201, the others 409;
//!   concurrent updates of one order through different instances: versions without a gap or a
//!   repeat, in the topic and in OrderService;
//! * `kill -9` of an instance under load: its partitions move within a bounded time, and every
//!   acknowledged order is in the topic and in OrderService exactly once;
//! * a zombie (`SIGSTOP` past the session timeout, another instance takes over and writes,
//!   `SIGCONT`): nothing the zombie writes is acknowledged or counts.
//!
//! "Counts" is `order_events::fencing`'s rule, applied to the topic here as every reader does.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::process::{Output, Process};

/// The group's session timeout in these tests: how long a silent instance keeps its partitions.
const SESSION_TIMEOUT: Duration = Duration::from_secs(6);
const PARTITIONS: i32 = 3;

/// The cart-service binary next to this test's target directory, built if needed.
fn cart_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let status = testkit::process::cargo()
                .args(["build", "-p", "cart-service", "--bin", "cart-service"])
                .status()
                .unwrap();
            assert!(status.success(), "building cart-service failed");
            // target/<profile>/deps/scale_out-… → target/<profile>/cart-service
            let exe = std::env::current_exe().unwrap();
            exe.parent()
                .and_then(|deps| deps.parent())
                .unwrap()
                .join("cart-service")
        })
        .clone()
}

struct Instance {
    url: String,
    process: Process,
}

/// One cluster at a time: three instances, a broker, a registry and OrderService each are
/// what two shared cores can run without the test measuring the machine instead.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Cluster {
    _turn: tokio::sync::MutexGuard<'static, ()>,
    broker: testkit::Broker,
    registry: schema_registry::Running,
    order: order_service::Running,
    carts: Vec<Instance>,
    /// Data directories and logs (kept on failure: the path is printed).
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Cluster {
    async fn start(instances: usize) -> Cluster {
        let turn = ONE_AT_A_TIME.lock().await;
        let binary = tokio::task::spawn_blocking(cart_binary).await.unwrap();
        let broker = testkit::Broker::start().unwrap();
        let registry = schema_registry::spawn(schema_registry::Settings::for_tests(
            &broker.bootstrap_servers(),
        ))
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let order = order_service::spawn(order_service::Settings::for_tests(
            &broker.bootstrap_servers(),
            registry.url(),
            dir.path().join("order-service"),
        ))
        .await
        .unwrap();
        let mut carts = Vec::new();
        for n in 0..instances {
            let port = testkit::free_port().unwrap();
            let mut command = std::process::Command::new(&binary);
            command
                .env("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap_servers())
                .env("SCHEMA_REGISTRY_URL", registry.url())
                .env("API_HOST", "127.0.0.1")
                .env("API_PORT", port.to_string())
                .env("DATA_DIR", dir.path().join(format!("cart-{n}")))
                .env(
                    "CART_SESSION_TIMEOUT_MS",
                    SESSION_TIMEOUT.as_millis().to_string(),
                )
                .env("RUST_LOG", "info,librdkafka=warn")
                .env("NO_COLOR", "1");
            let name = format!("cart-{n}");
            let process =
                Process::spawn(&name, command, Output::LogFile(dir.path().to_path_buf())).unwrap();
            carts.push(Instance {
                url: format!("http://127.0.0.1:{port}"),
                process,
            });
        }
        let cluster = Cluster {
            _turn: turn,
            broker,
            registry,
            order,
            carts,
            dir,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        };
        let urls: Vec<String> = cluster.carts.iter().map(|c| c.url.clone()).collect();
        for url in urls.iter().map(String::as_str).chain([cluster.order.url()]) {
            cluster
                .wait(&format!("{url} ready"), Duration::from_secs(60), || async {
                    cluster
                        .status(cluster.http.get(format!("{url}/ready")))
                        .await
                        == Some(200)
                })
                .await;
        }
        cluster
    }

    /// Waits for `condition`, failing with the logs' location.
    async fn wait<F, Fut>(&self, what: &str, limit: Duration, condition: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        if let Err(e) = testkit::wait::until_async(what, limit, condition).await {
            panic!("{e:#}\n{}", self.log_tails());
        }
    }

    /// The last lines of every instance's log (for a failure's message).
    fn log_tails(&self) -> String {
        let mut tails = String::new();
        for n in 0..self.carts.len() {
            let path = self.dir.path().join(format!("cart-{n}.log"));
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            tails.push_str(&format!("--- cart-{n}.log (last 40 lines)\n"));
            for line in &lines[lines.len().saturating_sub(40)..] {
                tails.push_str(line);
                tails.push('\n');
            }
        }
        tails
    }

    async fn status(&self, request: reqwest::RequestBuilder) -> Option<u16> {
        request.send().await.ok().map(|r| r.status().as_u16())
    }

    /// `cart_partitions_owned` and `cart_partition_owners_known` of instance `n` (None if it
    /// does not answer).
    async fn owned(&self, n: usize) -> Option<(f64, f64)> {
        let text = self
            .http
            .get(format!("{}/metrics", self.carts[n].url))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        Some((
            testkit::metrics::value(&text, "cart_partitions_owned")?,
            testkit::metrics::value(&text, "cart_partition_owners_known")?,
        ))
    }

    /// Waits until the instances in `live` own every partition between them, each at least one,
    /// and each knows every partition's owner.
    async fn wait_spread(&self, live: &[usize]) {
        self.wait(
            &format!("instances {live:?} to own every partition"),
            Duration::from_secs(60),
            || async {
                let mut total = 0.0;
                for n in live {
                    match self.owned(*n).await {
                        Some((owned, known)) if owned >= 1.0 && known == f64::from(PARTITIONS) => {
                            total += owned;
                        }
                        _ => return false,
                    }
                }
                total == f64::from(PARTITIONS)
            },
        )
        .await;
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        match request.send().await {
            Ok(response) => {
                let forwarded = response.headers().contains_key("x-cart-forwarded");
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                Answer {
                    status: Some(status),
                    forwarded,
                    body,
                }
            }
            Err(_) => Answer {
                status: None,
                forwarded: false,
                body: Value::Null,
            },
        }
    }

    async fn create(&self, n: usize, id: &str) -> Answer {
        self.send(
            self.http
                .post(format!("{}/api/create-order", self.carts[n].url))
                .json(&json!({"orderId": id, "numItems": 1})),
        )
        .await
    }

    async fn update(&self, n: usize, id: &str, status: &str) -> Answer {
        self.send(
            self.http
                .put(format!("{}/api/update-order", self.carts[n].url))
                .json(&json!({"orderId": id, "status": status})),
        )
        .await
    }

    /// The order records of the topic that count, as (order ID, version, status), in log order
    /// per partition.
    async fn counted(&self) -> Vec<(String, i64, String)> {
        let bootstrap = self.broker.bootstrap_servers();
        let records = tokio::task::spawn_blocking(move || {
            testkit::topic::read_to_end(
                &bootstrap,
                order_events::ORDER_EVENTS_TOPIC,
                Duration::from_secs(60),
            )
        })
        .await
        .unwrap()
        .unwrap();
        let codec = order_events::OrderEventCodec::new(
            &order_events::RegistryConfig::new(self.registry.url()),
            order_events::ORDER_EVENTS_TOPIC,
        )
        .unwrap();
        let mut fences = order_events::Fences::default();
        let mut counted = Vec::new();
        for record in records {
            if !fences.counts(record.partition, record.offset, record.header_pairs()) {
                continue;
            }
            let event = codec.decode(record.value.as_deref()).await.unwrap();
            counted.push((
                event.key().to_string(),
                event.version(),
                event.order().status().to_string(),
            ));
        }
        counted
    }

    /// OrderService's view of `id` once it has at least `version`: (version, status).
    async fn in_order_service(&self, id: &str, version: i64) -> (i64, String) {
        let body: Value = self
            .http
            .get(format!(
                "{}/api/order-details?orderId={id}&minVersion={version}&waitMs=10000",
                self.order.url()
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (
            body["data"]["version"].as_i64().unwrap_or(-1),
            body["data"]["status"].as_str().unwrap_or("").to_string(),
        )
    }

    /// Which instance owns each partition, learned by creating a probe order of that partition
    /// through instance `via` (an answer not forwarded comes from the owner).
    async fn owner_of(&self, partition: i32, live: &[usize]) -> usize {
        for n in live {
            let probe = id_in(&format!("PROBE-{n}"), partition);
            let answer = self.create(*n, &probe).await;
            if answer.status == Some(201) && !answer.forwarded {
                return *n;
            }
        }
        panic!("no instance of {live:?} owns partition {partition}");
    }
}

struct Answer {
    status: Option<u16>,
    forwarded: bool,
    body: Value,
}

/// An ID starting with `prefix` whose partition is `partition`.
fn id_in(prefix: &str, partition: i32) -> String {
    (0..)
        .map(|n| format!("{prefix}-{n}"))
        .find(|id| order_events::partition_for(id, PARTITIONS) == partition)
        .unwrap()
}

/// Versions per order, checked to be 1..=n with no gap and no repeat; returns the highest.
fn versions_without_gaps(counted: &[(String, i64, String)]) -> BTreeMap<String, i64> {
    let mut by_order: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (id, version, _) in counted {
        by_order.entry(id.clone()).or_default().push(*version);
    }
    by_order
        .into_iter()
        .map(|(id, mut versions)| {
            versions.sort_unstable();
            let expected: Vec<i64> = (1..=versions.len() as i64).collect();
            assert_eq!(versions, expected, "versions of {id}");
            (id, *versions.last().unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_agree_on_every_order_whichever_gets_the_request() {
    let c = Cluster::start(3).await;
    c.wait_spread(&[0, 1, 2]).await;

    // The same new ID through all three at once: exactly one creates it.
    for i in 0..30 {
        let id = format!("SAME-{i}");
        let answers = futures::future::join_all((0..3).map(|n| c.create(n, &id))).await;
        let mut statuses: Vec<Option<u16>> = answers.iter().map(|a| a.status).collect();
        statuses.sort();
        assert_eq!(
            statuses,
            vec![Some(201), Some(409), Some(409)],
            "{id}: {:?}",
            answers.iter().map(|a| &a.body).collect::<Vec<_>>()
        );
    }

    // Updates of one order through different instances at once: each change is one version.
    let mut updated = BTreeMap::new();
    for i in 0..10 {
        let id = format!("UPD-{i}");
        assert_eq!(c.create(i % 3, &id).await.status, Some(201));
        let moves = [
            "confirmed",
            "shipped",
            "delivered",
            "confirmed",
            "shipped",
            "cancelled",
        ];
        let answers = futures::future::join_all(
            moves
                .iter()
                .enumerate()
                .map(|(k, status)| c.update(k % 3, &id, status)),
        )
        .await;
        let changed = answers
            .iter()
            .filter(|a| {
                a.status == Some(200)
                    && a.body["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("updated successfully"))
            })
            .count();
        for answer in &answers {
            assert!(
                matches!(answer.status, Some(200 | 409)),
                "{id}: {} {}",
                answer.status.unwrap_or(0),
                answer.body
            );
        }
        updated.insert(id, 1 + changed as i64);
    }

    let counted = c.counted().await;
    let highest = versions_without_gaps(&counted);
    for (id, versions) in &updated {
        assert_eq!(
            highest.get(id),
            Some(versions),
            "{id}: one version per change answered"
        );
        let last_status = counted
            .iter()
            .rev()
            .find(|(order, _, _)| order == id)
            .map(|(_, _, status)| status.clone())
            .unwrap();
        assert_eq!(
            c.in_order_service(id, *versions).await,
            (*versions, last_status),
            "{id} in OrderService"
        );
    }
    for i in 0..30 {
        assert_eq!(highest.get(&format!("SAME-{i}")), Some(&1));
    }
    // Requests really crossed instances.
    let mut forwarded = 0.0;
    for cart in &c.carts {
        let text = c
            .http
            .get(format!("{}/metrics", cart.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        forwarded += testkit::metrics::value(
            &text,
            "cart_forwarded_requests_total{outcome=\"forwarded\"}",
        )
        .unwrap_or(0.0);
    }
    assert!(forwarded >= 60.0, "forwarded {forwarded}");
}

/// What the load generator heard: per order ID, the answer (None: no answer) and when it was
/// sent.
type Heard = Arc<Mutex<Vec<(String, Option<u16>, Instant)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_an_instance_under_load_moves_its_partitions_and_loses_nothing() {
    let c = Arc::new(Cluster::start(3).await);
    c.wait_spread(&[0, 1, 2]).await;
    let heard: Heard = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for worker in 0..6 {
        let (c, heard, stop) = (Arc::clone(&c), Arc::clone(&heard), Arc::clone(&stop));
        workers.push(tokio::spawn(async move {
            let mut n = 0_usize;
            while !stop.load(Ordering::Relaxed) {
                let id = format!("LOAD-{worker}-{n}");
                let sent = Instant::now();
                // Only the survivors: requests to the killed instance have nobody to answer.
                let answer = c.create(1 + (n + worker) % 2, &id).await;
                heard.lock().unwrap().push((id, answer.status, sent));
                n += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let killed_at = Instant::now();
    testkit::process::send_signal(c.carts[0].process.pid(), "KILL").unwrap();
    // The partitions of the killed instance answer 503 until the group moves them (after the
    // session timeout) and their new owner's claim took effect.
    c.wait_spread(&[1, 2]).await;
    let moved_after = killed_at.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    assert!(
        moved_after < SESSION_TIMEOUT + Duration::from_secs(15),
        "the partitions moved after {moved_after:?}"
    );
    let heard = heard.lock().unwrap().clone();
    let acked: BTreeSet<String> = heard
        .iter()
        .filter(|(_, status, _)| *status == Some(201))
        .map(|(id, _, _)| id.clone())
        .collect();
    // Every request sent after the partitions moved was served.
    let settled = killed_at + moved_after + Duration::from_millis(500);
    let late_failures: Vec<_> = heard
        .iter()
        .filter(|(_, status, sent)| *sent > settled && *status != Some(201))
        .collect();
    assert!(
        late_failures.is_empty(),
        "failures after the move: {late_failures:?}"
    );
    let before_kill = heard
        .iter()
        .filter(|(_, _, sent)| *sent < killed_at)
        .count();
    assert!(before_kill > 50, "load before the kill: {before_kill}");

    // The topic: every acknowledged order, each exactly once (no version twice).
    let counted = c.counted().await;
    let mut on_topic: BTreeMap<String, usize> = BTreeMap::new();
    for (id, _, _) in counted.iter().filter(|(id, _, _)| id.starts_with("LOAD-")) {
        *on_topic.entry(id.clone()).or_default() += 1;
    }
    let twice: Vec<_> = on_topic.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "orders counted twice: {twice:?}");
    let missing: Vec<_> = acked
        .iter()
        .filter(|id| !on_topic.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not on the topic: {missing:?}"
    );

    // OrderService holds every acknowledged order.
    for chunk in acked.iter().collect::<Vec<_>>().chunks(50) {
        let views =
            futures::future::join_all(chunk.iter().map(|id| c.in_order_service(id, 1))).await;
        for (id, (version, _)) in chunk.iter().zip(views) {
            assert_eq!(version, 1, "{id} in OrderService");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_instance_that_lost_its_partition_writes_nothing_that_counts() {
    let c = Cluster::start(3).await;
    c.wait_spread(&[0, 1, 2]).await;
    // An order in a partition instance 0 owns.
    let partition = {
        let mut found = None;
        for p in 0..PARTITIONS {
            if c.owner_of(p, &[0, 1, 2]).await == 0 {
                found = Some(p);
                break;
            }
        }
        found.expect("instance 0 owns a partition")
    };
    let id = id_in("ZOMBIE", partition);
    let created = c.create(0, &id).await;
    assert_eq!((created.status, created.forwarded), (Some(201), false));

    // Paused longer than the session timeout: the others take its partition.
    testkit::process::send_signal(c.carts[0].process.pid(), "STOP").unwrap();
    c.wait_spread(&[1, 2]).await;
    // The zombie gets a request while it sleeps (the kernel queues it), and the new owner
    // changes the order meanwhile.
    let zombie_answer = {
        // A new connection: a pooled one may have timed out on the server's side meanwhile.
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let url = c.carts[0].url.clone();
        let id = id.clone();
        tokio::spawn(async move {
            let response = http
                .put(format!("{url}/api/update-order"))
                .json(&json!({"orderId": id, "status": "confirmed"}))
                .send()
                .await
                .unwrap();
            let forwarded = response.headers().contains_key("x-cart-forwarded");
            (
                response.status().as_u16(),
                forwarded,
                response.text().await.unwrap(),
            )
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let owner_update = c.update(1, &id, "cancelled").await;
    assert_eq!(owner_update.status, Some(200), "{}", owner_update.body);
    testkit::process::send_signal(c.carts[0].process.pid(), "CONT").unwrap();
    let (status, forwarded, body) = zombie_answer.await.unwrap();
    // Either the zombie learned it lost the partition (503, or the new owner's answer: cancelled
    // cannot become confirmed, 409), or it wrote and was fenced (503). Never its own success.
    assert!(
        status == 503 || (forwarded && status == 409),
        "the zombie answered {status} (forwarded: {forwarded}): {body}"
    );

    // The order is exactly what was acknowledged: created, then cancelled by the new owner.
    let counted: Vec<(i64, String)> = c
        .counted()
        .await
        .into_iter()
        .filter(|(order, _, _)| *order == id)
        .map(|(_, version, status)| (version, status))
        .collect();
    assert_eq!(
        counted,
        vec![(1, "pending".to_string()), (2, "cancelled".to_string())]
    );
    assert_eq!(
        c.in_order_service(&id, 2).await,
        (2, "cancelled".to_string())
    );
    // The zombie comes back as a member and the group spreads the partitions again.
    c.wait_spread(&[0, 1, 2]).await;
}
