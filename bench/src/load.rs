//! The load generator's core: N keep-alive connections driving `POST /api/create-order`,
//! closed-loop or open-loop, optionally following each created order to OrderService.
//!
//! Why it is built this way:
//!
//! * **No dispatcher task.** Request `i` belongs to whichever worker takes index `i` next from
//!   a shared counter. In open loop its *intended* send time is `start + i / rate`; the worker
//!   sleeps until then (or sends at once if it is already late). When every worker is busy, the
//!   next index simply waits for a free one: that is the queueing a real client population
//!   would see, and it is counted.
//! * **No coordinated omission.** In open loop every latency is measured from the intended
//!   send time, not from the moment a worker got round to it, so a stall of the server shows
//!   up in the percentiles of every request scheduled during the stall. (Tokio's timer has a
//!   1 ms granularity, so a request may leave up to ~1 ms after its intended time; that is
//!   included too, never hidden.) In closed loop latency is from the actual send.
//! * **End to end.** With `follow`, each worker also keeps a connection to OrderService and,
//!   right after the 201, asks `order-details?minVersion=1&waitMs=…`, which answers the moment
//!   the order is in the view. End-to-end latency = intended create time → that 200.
//! * Histograms are per worker (no lock on the hot path) and merged at the end.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use tokio::time::Instant;

use crate::http::Connection;

/// How requests are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Every connection sends its next request as soon as the previous one is answered.
    Closed,
    /// Requests are scheduled at a fixed rate (per second), independent of the answers.
    Open { rate: f64 },
}

/// Which order IDs a run may send (e.g. only those of some partitions): counters whose ID it
/// rejects are skipped, so the IDs stay `{id_prefix}{n}`, unique, with gaps.
#[derive(Clone)]
pub struct IdFilter(Arc<dyn Fn(&str) -> bool + Send + Sync>);

impl IdFilter {
    pub fn new(accepts: impl Fn(&str) -> bool + Send + Sync + 'static) -> IdFilter {
        IdFilter(Arc::new(accepts))
    }

    pub fn accepts(&self, id: &str) -> bool {
        (self.0)(id)
    }
}

impl std::fmt::Debug for IdFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdFilter(..)")
    }
}

/// How many consecutive IDs a filter may reject before the worker gives up (a filter that
/// accepts nothing would otherwise spin forever).
const MAX_REJECTED_IDS: u32 = 100_000;

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// CartService, `host:port`.
    pub cart_addr: String,
    pub connections: usize,
    pub mode: Mode,
    /// Stop scheduling after this long (open loop: `rate × duration` requests).
    pub duration: Duration,
    /// Stop after this many requests, if fewer than the duration allows.
    pub max_requests: Option<u64>,
    /// `numItems` of each order.
    pub num_items: u32,
    /// Order IDs are `{id_prefix}{index}`.
    pub id_prefix: String,
    /// Only IDs this accepts are sent (then `index` counts candidate IDs, not requests).
    pub id_filter: Option<IdFilter>,
    /// OrderService, `host:port`: follow each created order until OrderService serves it.
    pub follow: Option<String>,
    /// `waitMs` of the follow-up request.
    pub wait_ms: u64,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl LoadConfig {
    /// Defaults for a quick run against `cart_addr`.
    pub fn new(cart_addr: impl Into<String>) -> LoadConfig {
        LoadConfig {
            cart_addr: cart_addr.into(),
            connections: 16,
            mode: Mode::Closed,
            duration: Duration::from_secs(10),
            max_requests: None,
            num_items: 3,
            id_prefix: "LOAD-".into(),
            id_filter: None,
            follow: None,
            wait_ms: 5_000,
            timeout: Duration::from_secs(30),
        }
    }
}

/// The header CartService sets on an answer relayed from the instance that owns the order's
/// partition.
pub const FORWARDED_HEADER: &str = "x-cart-forwarded";

/// Latencies in microseconds, 1 µs to 10 minutes, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    // Constant bounds that hdrhistogram accepts (low ≥ 1, high ≥ 2 × low, 3 digits ≤ 5).
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("constant histogram bounds are valid")
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct LoadReport {
    pub mode: Mode,
    pub connections: usize,
    /// Requests sent (scheduled and attempted).
    pub sent: u64,
    /// Creates answered 201.
    pub created: u64,
    /// Of those, answers relayed by another CartService instance (`x-cart-forwarded`).
    pub forwarded: u64,
    /// Orders OrderService served (with `follow`).
    pub followed: u64,
    /// From the first send to the last answer.
    pub elapsed: Duration,
    /// Create latency (µs): intended send → 201 (open loop) or send → 201 (closed loop).
    pub create: Histogram<u64>,
    /// End-to-end latency (µs): intended create send → OrderService's 200.
    pub e2e: Histogram<u64>,
    /// The largest delay between a request's intended and actual send (open loop): how far the
    /// generator itself fell behind.
    pub max_send_lag: Duration,
    /// Failures by kind, e.g. `create 409`, `create io`, `details 404`.
    pub errors: BTreeMap<String, u64>,
}

impl LoadReport {
    /// Runs made at the same time (e.g. one per instance) as one: counts and histograms
    /// summed, connections too, elapsed the longest of them (throughput is then the total
    /// over the common wall time). `None` for no reports or runs of different modes.
    pub fn concurrent(reports: &[LoadReport]) -> anyhow::Result<Option<LoadReport>> {
        let Some(first) = reports.first() else {
            return Ok(None);
        };
        if reports.iter().any(|x| x.mode != first.mode) {
            return Ok(None);
        }
        let mut all = first.clone();
        for x in &reports[1..] {
            all.connections += x.connections;
            all.sent += x.sent;
            all.created += x.created;
            all.forwarded += x.forwarded;
            all.followed += x.followed;
            all.elapsed = all.elapsed.max(x.elapsed);
            all.create.add(&x.create).context("merging histograms")?;
            all.e2e.add(&x.e2e).context("merging histograms")?;
            all.max_send_lag = all.max_send_lag.max(x.max_send_lag);
            for (kind, n) in &x.errors {
                *all.errors.entry(kind.clone()).or_default() += n;
            }
        }
        Ok(Some(all))
    }

    /// Successful creates per second.
    pub fn throughput(&self) -> f64 {
        self.created as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Failures of every kind.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// A human summary, several lines.
    pub fn summary(&self) -> String {
        let mode = match self.mode {
            Mode::Closed => "closed loop".to_string(),
            Mode::Open { rate } => format!("open loop at {rate:.0}/s"),
        };
        let mut out = format!(
            "{mode}, {} connections: {} sent, {} created in {:.2} s = {:.0} orders/s\n",
            self.connections,
            self.sent,
            self.created,
            self.elapsed.as_secs_f64(),
            self.throughput()
        );
        out.push_str(&format!("  create   {}\n", percentiles_line(&self.create)));
        if !self.e2e.is_empty() {
            out.push_str(&format!("  e2e      {}\n", percentiles_line(&self.e2e)));
        }
        if matches!(self.mode, Mode::Open { .. }) {
            out.push_str(&format!(
                "  generator fell behind by at most {:.1} ms\n",
                self.max_send_lag.as_secs_f64() * 1e3
            ));
        }
        if self.errors.is_empty() {
            out.push_str("  errors   none\n");
        } else {
            let list: Vec<String> = self
                .errors
                .iter()
                .map(|(kind, n)| format!("{kind}: {n}"))
                .collect();
            out.push_str(&format!("  errors   {}\n", list.join(", ")));
        }
        out
    }

    /// The report as JSON (latencies in milliseconds).
    pub fn to_json(&self) -> serde_json::Value {
        let rate = match self.mode {
            Mode::Closed => serde_json::Value::Null,
            Mode::Open { rate } => serde_json::json!(rate),
        };
        serde_json::json!({
            "mode": if rate.is_null() { "closed" } else { "open" },
            "rate": rate,
            "connections": self.connections,
            "sent": self.sent,
            "created": self.created,
            "followed": self.followed,
            "elapsedSeconds": self.elapsed.as_secs_f64(),
            "throughput": self.throughput(),
            "createMs": percentiles_json(&self.create),
            "e2eMs": percentiles_json(&self.e2e),
            "maxSendLagMs": self.max_send_lag.as_secs_f64() * 1e3,
            "errors": self.errors,
        })
    }
}

/// The percentiles every report shows.
pub const PERCENTILES: [(&str, f64); 4] =
    [("p50", 50.0), ("p95", 95.0), ("p99", 99.0), ("p99.9", 99.9)];

/// A latency in milliseconds at a percentile of a µs histogram.
pub fn ms_at(h: &Histogram<u64>, percentile: f64) -> f64 {
    h.value_at_percentile(percentile) as f64 / 1e3
}

/// `p50 1.23 ms, p95 …, max …`.
pub fn percentiles_line(h: &Histogram<u64>) -> String {
    let mut parts: Vec<String> = PERCENTILES
        .iter()
        .map(|(name, p)| format!("{name} {:.2}", ms_at(h, *p)))
        .collect();
    parts.push(format!("max {:.2} ms", h.max() as f64 / 1e3));
    parts.join(", ")
}

fn percentiles_json(h: &Histogram<u64>) -> serde_json::Value {
    if h.is_empty() {
        return serde_json::Value::Null;
    }
    let mut map = serde_json::Map::new();
    for (name, p) in PERCENTILES {
        map.insert(name.to_string(), serde_json::json!(ms_at(h, p)));
    }
    map.insert("max".into(), serde_json::json!(h.max() as f64 / 1e3));
    map.insert("count".into(), serde_json::json!(h.len()));
    serde_json::Value::Object(map)
}

/// One worker's results.
struct WorkerResult {
    sent: u64,
    created: u64,
    forwarded: u64,
    followed: u64,
    create: Histogram<u64>,
    e2e: Histogram<u64>,
    max_send_lag: Duration,
    errors: BTreeMap<String, u64>,
    last_answer: Option<Instant>,
}

/// Runs the load and returns what it measured. Fails only if no connection can be opened.
pub async fn run(config: LoadConfig) -> anyhow::Result<LoadReport> {
    let connections = config.connections.max(1);
    let limit = match (config.mode, config.max_requests) {
        (Mode::Open { rate }, max) => {
            let by_time = (rate * config.duration.as_secs_f64()).ceil() as u64;
            max.map_or(by_time, |m| m.min(by_time))
        }
        (Mode::Closed, max) => max.unwrap_or(u64::MAX),
    };
    // Open every connection before the clock starts.
    let mut pairs = Vec::with_capacity(connections);
    for _ in 0..connections {
        let mut cart = Connection::new(config.cart_addr.clone(), config.timeout);
        cart.connect()
            .await
            .context("opening a CartService connection")?;
        let order = match &config.follow {
            Some(addr) => {
                let mut order = Connection::new(addr.clone(), config.timeout);
                order
                    .connect()
                    .await
                    .context("opening an OrderService connection")?;
                Some(order)
            }
            None => None,
        };
        pairs.push((cart, order));
    }
    let config = Arc::new(config);
    let next = Arc::new(AtomicU64::new(0));
    let ids = Arc::new(AtomicU64::new(0));
    let start = Instant::now() + Duration::from_millis(5);
    let deadline = start + config.duration;
    let mut tasks = Vec::with_capacity(connections);
    for (cart, order) in pairs {
        let config = Arc::clone(&config);
        let counters = Counters {
            next: Arc::clone(&next),
            ids: Arc::clone(&ids),
        };
        tasks.push(tokio::spawn(worker(
            config, counters, start, deadline, limit, cart, order,
        )));
    }
    let mut report = LoadReport {
        mode: config.mode,
        connections,
        sent: 0,
        created: 0,
        forwarded: 0,
        followed: 0,
        elapsed: Duration::ZERO,
        create: new_histogram(),
        e2e: new_histogram(),
        max_send_lag: Duration::ZERO,
        errors: BTreeMap::new(),
    };
    let mut last = start;
    for task in tasks {
        let r = task.await.context("a load worker panicked")?;
        report.sent += r.sent;
        report.created += r.created;
        report.forwarded += r.forwarded;
        report.followed += r.followed;
        report.create.add(&r.create).context("merging histograms")?;
        report.e2e.add(&r.e2e).context("merging histograms")?;
        report.max_send_lag = report.max_send_lag.max(r.max_send_lag);
        for (kind, n) in r.errors {
            *report.errors.entry(kind).or_default() += n;
        }
        if let Some(t) = r.last_answer {
            last = last.max(t);
        }
    }
    report.elapsed = last.saturating_duration_since(start);
    Ok(report)
}

/// The counters the workers share: requests, and candidate IDs (with an [`IdFilter`]).
struct Counters {
    next: Arc<AtomicU64>,
    ids: Arc<AtomicU64>,
}

/// The next ID `filter` accepts, or `None` after [`MAX_REJECTED_IDS`] rejections in a row.
fn next_accepted_id(ids: &AtomicU64, prefix: &str, filter: &IdFilter) -> Option<String> {
    for _ in 0..MAX_REJECTED_IDS {
        let n = ids.fetch_add(1, Ordering::Relaxed);
        let id = format!("{prefix}{n}");
        if filter.accepts(&id) {
            return Some(id);
        }
    }
    None
}

async fn worker(
    config: Arc<LoadConfig>,
    counters: Counters,
    start: Instant,
    deadline: Instant,
    limit: u64,
    mut cart: Connection,
    mut order: Option<Connection>,
) -> WorkerResult {
    let mut r = WorkerResult {
        sent: 0,
        created: 0,
        forwarded: 0,
        followed: 0,
        create: new_histogram(),
        e2e: new_histogram(),
        max_send_lag: Duration::ZERO,
        errors: BTreeMap::new(),
        last_answer: None,
    };
    let mut body = Vec::with_capacity(128);
    loop {
        let i = counters.next.fetch_add(1, Ordering::Relaxed);
        if i >= limit {
            break;
        }
        let id = match &config.id_filter {
            None => format!("{}{i}", config.id_prefix),
            Some(filter) => match next_accepted_id(&counters.ids, &config.id_prefix, filter) {
                Some(id) => id,
                None => {
                    *r.errors
                        .entry("no ID accepted by the filter".into())
                        .or_default() += 1;
                    break;
                }
            },
        };
        let intended = match config.mode {
            Mode::Open { rate } => {
                let at = start + Duration::from_secs_f64(i as f64 / rate);
                let now = Instant::now();
                if at > now {
                    tokio::time::sleep_until(at).await;
                }
                at
            }
            Mode::Closed => {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                if now < start {
                    tokio::time::sleep_until(start).await;
                    start
                } else {
                    now
                }
            }
        };
        let sent_at = Instant::now();
        r.max_send_lag = r
            .max_send_lag
            .max(sent_at.saturating_duration_since(intended));
        r.sent += 1;
        body.clear();
        body.extend_from_slice(
            format!(r#"{{"orderId":"{id}","numItems":{}}}"#, config.num_items).as_bytes(),
        );
        let created = match cart.post_json("/api/create-order", &body).await {
            Ok(response) if response.status == 201 => {
                if response.header(FORWARDED_HEADER).is_some() {
                    r.forwarded += 1;
                }
                true
            }
            Ok(response) => {
                *r.errors
                    .entry(format!("create {}", response.status))
                    .or_default() += 1;
                false
            }
            Err(_) => {
                *r.errors.entry("create io/timeout".into()).or_default() += 1;
                false
            }
        };
        let answered = Instant::now();
        r.last_answer = Some(answered);
        if !created {
            continue;
        }
        r.created += 1;
        r.create
            .saturating_record(micros(answered.saturating_duration_since(intended)));
        if let Some(order) = order.as_mut() {
            let path = format!(
                "/api/order-details?orderId={id}&minVersion=1&waitMs={}",
                config.wait_ms
            );
            match order.get(&path).await {
                Ok(response) if response.status == 200 => {
                    let done = Instant::now();
                    r.last_answer = Some(done);
                    r.followed += 1;
                    r.e2e
                        .saturating_record(micros(done.saturating_duration_since(intended)));
                }
                Ok(response) => {
                    *r.errors
                        .entry(format!("details {}", response.status))
                        .or_default() += 1;
                }
                Err(_) => {
                    *r.errors.entry("details io/timeout".into()).or_default() += 1;
                }
            }
        }
    }
    r
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}
