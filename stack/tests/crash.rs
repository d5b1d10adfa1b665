//! Crashes under load, as a user's stack meets them: `stack up` running, clients creating orders,
//! and then kill -9 of the broker, the registry, CartService and OrderService in turn, and a
//! broker that hangs (SIGSTOP). The launcher's supervisor restarts each; nobody restarts anything
//! by hand. Afterwards every order that was answered 201 is on `order-events` exactly once and in
//! OrderService's view, no order is on the topic twice, failures during an outage were answered
//! in bounded time, and creates succeeded again within a bounded time after each crash.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{curl, Launched, Ports};

/// How long after a crash creates must succeed again (restart back-off, broker start-up,
/// producer reconnection and the service's own start-up all fit in it).
const RECOVERY_LIMIT: Duration = Duration::from_secs(60);
/// Any single answer, success or failure, comes within this (publish timeout 5 s + slack).
const ANSWER_LIMIT: Duration = Duration::from_secs(15);
const CLIENTS: usize = 3;

/// One create as a client saw it.
#[derive(Debug, Clone)]
struct Attempt {
    id: String,
    /// `None`: no HTTP answer (connection refused or reset: CartService itself was down).
    status: Option<u16>,
    took: Duration,
    at: Instant,
}

/// A create by curl that tolerates a dead server (curl exits non-zero, no status).
fn try_create(ports: Ports, id: &str) -> Attempt {
    let at = Instant::now();
    let output = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "30",
        ])
        .args(["-X", "POST", "-H", "Content-Type: application/json"])
        .args(["-d", &format!(r#"{{"orderId": "{id}", "numItems": 1}}"#)])
        .arg(format!("{}/api/create-order", ports.cart_url()))
        .output()
        .expect("running curl");
    let status = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse::<u16>()
        .ok()
        .filter(|s| *s != 0);
    Attempt {
        id: id.to_string(),
        status,
        took: at.elapsed(),
        at,
    }
}

/// Clients creating orders with fresh IDs until told to stop.
struct Load {
    stop: Arc<AtomicBool>,
    attempts: Arc<Mutex<Vec<Attempt>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(ports: Ports) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let counter = Arc::new(AtomicU64::new(0));
        let threads = (0..CLIENTS)
            .map(|_| {
                let (stop, attempts, counter) = (
                    Arc::clone(&stop),
                    Arc::clone(&attempts),
                    Arc::clone(&counter),
                );
                std::thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        let n = counter.fetch_add(1, Ordering::SeqCst);
                        let attempt = try_create(ports, &format!("CRASH-{n:06}"));
                        if attempt.status.is_none() {
                            // CartService is down: do not spin.
                            std::thread::sleep(Duration::from_millis(100));
                        }
                        attempts.lock().unwrap().push(attempt);
                    }
                })
            })
            .collect();
        Load {
            stop,
            attempts,
            threads,
        }
    }

    fn successes_since(&self, since: Instant) -> usize {
        self.attempts
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a.at >= since && a.status == Some(201))
            .count()
    }

    /// Waits until `n` creates started after `since` succeeded; returns how long that took.
    fn wait_for_successes(&self, since: Instant, n: usize, what: &str) -> Duration {
        let deadline = Instant::now().max(since) + RECOVERY_LIMIT;
        loop {
            if self.successes_since(since) >= n {
                return since.elapsed();
            }
            assert!(
                Instant::now() < deadline,
                "creates did not succeed again within {RECOVERY_LIMIT:?} after {what}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn finish(self) -> Vec<Attempt> {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads {
            thread.join().unwrap();
        }
        Arc::try_unwrap(self.attempts)
            .unwrap()
            .into_inner()
            .unwrap()
    }
}

fn signal(pid: u32, signal: &str) {
    testkit::process::send_signal(pid, signal).unwrap();
}

/// kill -9 of `name` while the load runs; waits until the launcher restarted it and creates
/// succeed again.
fn crash(stack: &Launched, load: &Load, name: &str) {
    let starts = stack.starts_of(name);
    let pid = stack.pid_of(name).unwrap();
    let killed = Instant::now();
    eprintln!("crash test: kill -9 {name} (pid {pid})");
    signal(pid, "KILL");
    let deadline = killed + RECOVERY_LIMIT;
    while stack.starts_of(name) == starts {
        assert!(
            Instant::now() < deadline,
            "the launcher did not restart {name} within {RECOVERY_LIMIT:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = load.wait_for_successes(killed, 20, &format!("kill -9 of {name}"));
    eprintln!("crash test: creates succeed again {took:?} after kill -9 of {name}");
}

/// Every order in OrderService's view, by paging through `/api/orders`.
fn view_ids(ports: Ports) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let after = cursor
            .as_ref()
            .map_or(String::new(), |c| format!("&cursor={c}"));
        let page = curl(&[&format!(
            "{}/api/orders?limit=500{after}",
            ports.order_url()
        )]);
        assert_eq!(page.status, 200, "{}", page.body);
        let page = page.json();
        for order in page["data"].as_array().unwrap() {
            ids.insert(order["orderId"].as_str().unwrap().to_string());
        }
        match page["nextCursor"].as_str() {
            Some(next) if !next.is_empty() => cursor = Some(next.to_string()),
            _ => return ids,
        }
    }
}

#[test]
fn every_acknowledged_order_survives_kill_9_of_each_process_and_a_hung_broker() {
    let data = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let stack = Launched::up_with(
        ports,
        data.path(),
        &[("STACK_BROKER_UNRESPONSIVE_SECS", "5")],
    );
    let load = Load::start(ports);
    load.wait_for_successes(Instant::now(), 50, "the start");

    for name in ["broker", "schema-registry", "cart-service", "order-service"] {
        crash(&stack, &load, name);
        // Some load between crashes, so each one happens to a working stack.
        load.wait_for_successes(Instant::now(), 30, &format!("recovering from {name}"));
    }

    // A hung broker: it keeps its port open and answers nothing. The supervisor must notice
    // (metadata probe) and replace it.
    let starts = stack.starts_of("broker");
    let pid = stack.pid_of("broker").unwrap();
    let frozen = Instant::now();
    eprintln!("crash test: SIGSTOP broker (pid {pid})");
    signal(pid, "STOP");
    while stack.starts_of("broker") == starts {
        assert!(
            frozen.elapsed() < RECOVERY_LIMIT,
            "the launcher did not replace the hung broker within {RECOVERY_LIMIT:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(stack.output_contains("has not answered a Kafka metadata request"));
    load.wait_for_successes(frozen, 20, "the hung broker");

    let attempts = load.finish();

    // Every answer came in bounded time, even during outages.
    let slowest = attempts.iter().map(|a| a.took).max().unwrap();
    assert!(
        slowest < ANSWER_LIMIT,
        "an answer took {slowest:?} (limit {ANSWER_LIMIT:?})"
    );
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    for attempt in &attempts {
        let key = attempt
            .status
            .map_or_else(|| "no answer".to_string(), |s| s.to_string());
        *by_status.entry(key).or_default() += 1;
    }
    eprintln!("crash test: answers by status {by_status:?}");
    for status in by_status.keys() {
        assert!(
            ["201", "503", "no answer"].contains(&status.as_str()),
            "unexpected answers: {by_status:?}"
        );
    }
    let acked: BTreeSet<String> = attempts
        .iter()
        .filter(|a| a.status == Some(201))
        .map(|a| a.id.clone())
        .collect();

    // On the topic: every acknowledged order, and no order twice.
    let bootstrap = format!("127.0.0.1:{}", ports.broker);
    let records =
        testkit::topic::read_to_end(&bootstrap, "order-events", Duration::from_secs(60)).unwrap();
    let mut on_topic: BTreeMap<String, usize> = BTreeMap::new();
    // The order records that count: CartService's claims and fenced records left out.
    let mut fences = order_events::Fences::default();
    let counted = records
        .iter()
        .filter(|r| fences.counts(r.partition, r.offset, r.header_pairs()));
    for record in counted {
        *on_topic.entry(record.key_text()).or_default() += 1;
    }
    let twice: Vec<_> = on_topic.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "orders on the topic more than once: {twice:?}"
    );
    let missing: Vec<_> = acked
        .iter()
        .filter(|id| !on_topic.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged orders are not on the topic: {:?}",
        missing.len(),
        acked.len(),
        missing.iter().take(10).collect::<Vec<_>>()
    );

    // In OrderService's view: every acknowledged order (it catches up after its own crash).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let view = view_ids(ports);
        let missing: Vec<_> = acked.iter().filter(|id| !view.contains(*id)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} acknowledged orders are not in OrderService's view: {:?}",
            missing.len(),
            missing.iter().take(10).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!(
        "crash test: {} acknowledged, {} on the topic, all in the view",
        acked.len(),
        records.len()
    );
    assert!(stack.stop().success());
}
