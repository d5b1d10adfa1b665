//! `bench`: the whole benchmark in one command, against a fresh embedded stack.
//!
//! ```text
//! cargo run --release -p bench --bin bench                   # full run (1,000,000 orders)
//! cargo run --release -p bench --bin bench -- --orders 20000 --quick   # a development run
//! ```
//!
//! It builds the three service binaries in release mode, starts the embedded broker (Nisshi by
//! default, `--broker tansu` for the former one; SQLite storage) in a
//! temporary directory and the real binaries as processes on free ports, then runs the phases
//! (start-up, idle, end-to-end at fixed rates, CartService closed loop, the broker's raw
//! produce and consume ceilings, OrderService catch-up on N orders, the topic ID scan,
//! CartService start-up on N orders) while sampling each process's CPU and RSS from `/proc`.
//! It writes `bench/results/results.json`, `bench/results/latency.png` and `BENCHMARKS.md`.
//! Why each phase is run the way it is, is written next to it and in the generated method.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bench::http::Connection;
use bench::load::{self, LoadConfig, LoadReport, Mode};
use bench::plot::{self, Series};
use bench::procs::{self, Proc};
use bench::procstat::{self, Sampler, Usage};
use bench::raw::{self, ConsumeResult, ProduceResult};
use clap::Parser;

#[derive(Parser, Clone)]
#[command(name = "bench", about = "Benchmark the order pipeline end to end")]
struct Args {
    /// Orders in the topic for the ceilings, the catch-up, the scan and CartService's start-up.
    #[arg(long, default_value_t = 1_000_000)]
    orders: u64,
    /// Keep-alive connections of the closed-loop CartService run.
    #[arg(long, default_value_t = 256)]
    connections: usize,
    /// Seconds of the closed-loop CartService run.
    #[arg(long, default_value_t = 20.0)]
    closed_seconds: f64,
    /// Open-loop rates (orders/s) of the end-to-end runs.
    #[arg(long, value_delimiter = ',', default_value = "100,1000,5000")]
    rates: Vec<f64>,
    /// Seconds of each end-to-end run.
    #[arg(long, default_value_t = 15.0)]
    rate_seconds: f64,
    /// `numItems` of every order (and of the raw records).
    #[arg(long, default_value_t = 3)]
    num_items: u32,
    /// Unacknowledged records the raw producer keeps in flight for its ceiling.
    #[arg(long, default_value_t = 10_000)]
    raw_window: usize,
    /// CartService's and the raw producer's `linger.ms` (CartService's default is 1).
    #[arg(long, default_value_t = 1)]
    linger_ms: u32,
    /// OrderService's `APPLY_BATCH_SIZE` for the catch-up (its default is 500).
    #[arg(long)]
    apply_batch_size: Option<usize>,
    /// Shorter runs for development: 3 s closed loop, 4 s per rate.
    #[arg(long)]
    quick: bool,
    /// Record a `perf` profile of CartService (closed loop) and OrderService (catch-up).
    #[arg(long)]
    profile: bool,
    /// The broker to run: `nisshi` (the embedded default) or `tansu` (the former default, for a
    /// side-by-side comparison).
    #[arg(long, default_value = "nisshi")]
    broker: String,
    /// Add a "brokers side by side" section comparing this run with another run's
    /// `results.json` (e.g. the same benchmark with `--broker tansu`).
    #[arg(long)]
    compare_with: Option<PathBuf>,
    /// With `--broker tansu`: run Tansu exactly as shipped. By default the benchmark adds one
    /// index to Tansu's SQLite schema (`header (topition, offset_id)`): without it every fetched
    /// record costs a full scan of all headers ever written, which makes consuming N records
    /// O(N²) (see NOTES.md).
    #[arg(long)]
    stock_tansu: bool,
    /// Do not run `cargo build --release` first.
    #[arg(long)]
    skip_build: bool,
    /// Where the service binaries are.
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Where results.json, latency.png and the logs go.
    #[arg(long)]
    results_dir: Option<PathBuf>,
    /// The Markdown report to write.
    #[arg(long)]
    report: Option<PathBuf>,
}

const SERVICES: [&str; 3] = ["schema-registry", "cart-service", "order-service"];
const CATCHUP_TOPIC: &str = "bench-catchup";
const WINDOW_TOPIC: &str = "bench-window";
const READY_LIMIT: Duration = Duration::from_secs(900);
/// OrderService's and the raw consumer's `fetch.wait.max.ms` (OrderService's default).
const FETCH_WAIT_MAX_MS: u32 = 10;

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bench: error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn say(message: impl AsRef<str>) {
    eprintln!(
        "[{}] bench: {}",
        chrono::Local::now().format("%H:%M:%S"),
        message.as_ref()
    );
}

/// Usage of each sampled process during one phase.
#[derive(Default)]
struct PhaseUsage {
    phase: String,
    by_process: Vec<(String, Usage)>,
}

/// Samples `procs` while `f` runs.
async fn sampled<T, F>(
    phase: &str,
    procs: &[(&str, u32)],
    usages: &mut Vec<PhaseUsage>,
    f: F,
) -> anyhow::Result<T>
where
    F: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut pids: Vec<u32> = procs.iter().map(|(_, pid)| *pid).collect();
    pids.push(std::process::id());
    let sampler = Sampler::start(&pids);
    let result = f.await;
    let readings = sampler.finish();
    let mut names: Vec<String> = procs.iter().map(|(n, _)| n.to_string()).collect();
    names.push("bench (load generator / raw clients)".into());
    usages.push(PhaseUsage {
        phase: phase.to_string(),
        by_process: names
            .into_iter()
            .zip(readings)
            .filter_map(|(name, usage)| usage.map(|u| (name, u)))
            .collect(),
    });
    result
}

/// Everything measured, for the report.
#[derive(Default)]
struct Results {
    machine: serde_json::Value,
    broker: String,
    busy_before: f64,
    busy_after: f64,
    load_before: String,
    load_after: String,
    startup: Vec<(String, Duration)>,
    e2e: Vec<LoadReport>,
    closed: Option<LoadReport>,
    cart_record: Option<ConsumeResult>,
    raw_value_len: usize,
    produce: Option<ProduceResult>,
    produce_window: Option<ProduceResult>,
    consume: Option<ConsumeResult>,
    catchup_total: Duration,
    catchup_ingest: Duration,
    catchup_applied: u64,
    scan: Option<(Duration, u64)>,
    cart_startup_loaded: Option<Duration>,
    cart_loaded_rss: u64,
    usages: Vec<PhaseUsage>,
    profiles: Vec<(String, String)>,
    orders: u64,
    encode_time: Duration,
    total: Duration,
    args_line: String,
}

async fn run(args: Args) -> anyhow::Result<()> {
    let root = testkit::workspace_root();
    let begun = Instant::now();
    if !args.skip_build {
        say("building the services (cargo build --release)");
        procs::build_release(&SERVICES)?;
    }
    let bin_dir = args
        .bin_dir
        .clone()
        .unwrap_or_else(|| root.join("target").join("release"));
    for name in SERVICES {
        if !bin_dir.join(name).is_file() {
            bail!(
                "{} is missing; build it first",
                bin_dir.join(name).display()
            );
        }
    }
    let distribution = testkit::embedded::Distribution::named(&args.broker)?;
    let broker_bin = distribution.ensure_installed()?;
    let results_dir = args
        .results_dir
        .clone()
        .unwrap_or_else(|| root.join("bench").join("results"));
    std::fs::create_dir_all(&results_dir)
        .with_context(|| format!("creating {}", results_dir.display()))?;
    let work = std::env::temp_dir().join(format!("bench-{}", uuid::Uuid::new_v4()));
    let logs = results_dir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    for dir in ["broker", "order-main", "order-catchup"] {
        std::fs::create_dir_all(work.join(dir))
            .with_context(|| format!("creating {}", work.join(dir).display()))?;
    }
    say(format!("working directory {}", work.display()));

    let mut r = Results {
        machine: procstat::machine(),
        broker: format!("{} {}", distribution.name, distribution.version),
        orders: args.orders,
        ..Results::default()
    };
    r.args_line = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
    r.load_before = procstat::load_average();
    r.busy_before = procstat::machine_busy(Duration::from_secs(2));
    say(format!(
        "machine busy {:.0} % before the run (load average {})",
        r.busy_before * 100.0,
        r.load_before
    ));

    let broker = (distribution, broker_bin.as_path());
    let outcome = phases(&args, &bin_dir, broker, &work, &logs, &mut r).await;
    r.busy_after = procstat::machine_busy(Duration::from_secs(1));
    r.load_after = procstat::load_average();
    r.total = begun.elapsed();
    if let Err(e) = &outcome {
        say(format!("a phase failed: {e:#}; writing what was measured"));
    }
    let report_path = args
        .report
        .clone()
        .unwrap_or_else(|| root.join("BENCHMARKS.md"));
    write_outputs(
        &args,
        &r,
        &results_dir,
        &report_path,
        outcome.as_ref().err(),
    )?;
    let _ = std::fs::remove_dir_all(&work);
    say(format!(
        "done in {:.0} s; wrote {} and {}",
        r.total.as_secs_f64(),
        report_path.display(),
        results_dir.display()
    ));
    outcome
}

#[allow(clippy::too_many_lines)]
async fn phases(
    args: &Args,
    bin_dir: &Path,
    (distribution, broker_bin): (testkit::embedded::Distribution, &Path),
    work: &Path,
    logs: &Path,
    r: &mut Results,
) -> anyhow::Result<()> {
    let (closed_seconds, rate_seconds) = if args.quick {
        (3.0, 4.0)
    } else {
        (args.closed_seconds, args.rate_seconds)
    };
    let bin = |name: &str| bin_dir.join(name);
    let broker_port = testkit::free_port()?;
    let registry_port = testkit::free_port()?;
    let cart_port = testkit::free_port()?;
    let order_port = testkit::free_port()?;
    let bootstrap = format!("127.0.0.1:{broker_port}");
    let registry_url = format!("http://127.0.0.1:{registry_port}");

    // ---- Start-up: each process from spawn to ready, one after the other. ----
    say(format!("starting {} (SQLite storage)", r.broker));
    let broker_cmd = distribution.command(broker_bin, broker_port, &work.join("broker"));
    let mut broker = Proc::spawn("broker", broker_cmd, logs)?;
    let t = broker.wait_listening(broker_port, READY_LIMIT).await?;
    r.startup
        .push((format!("{} broker (listening)", distribution.name), t));
    if !args.stock_tansu {
        let dir = work.join("broker");
        tokio::task::spawn_blocking(move || distribution.prepare(&dir, Duration::from_secs(30)))
            .await
            .context("the broker preparation task failed")??;
    }

    let mut registry_cmd = Command::new(bin("schema-registry"));
    registry_cmd
        .env("KAFKA_BOOTSTRAP_SERVERS", &bootstrap)
        .env("API_PORT", registry_port.to_string());
    let mut registry = Proc::spawn("schema-registry", registry_cmd, logs)?;
    let t = registry.wait_ready(registry_port, READY_LIMIT).await?;
    r.startup
        .push(("schema-registry (empty `_schemas`)".into(), t));

    let cart_cmd = |port: u16, topic: &str| {
        let mut c = Command::new(bin("cart-service"));
        c.env("KAFKA_BOOTSTRAP_SERVERS", &bootstrap)
            .env("SCHEMA_REGISTRY_URL", &registry_url)
            .env("API_PORT", port.to_string())
            .env("KAFKA_TOPIC", topic)
            .env("KAFKA_LINGER_MS", args.linger_ms.to_string());
        c
    };
    let mut cart = Proc::spawn("cart-service", cart_cmd(cart_port, "order-events"), logs)?;
    let t = cart.wait_ready(cart_port, READY_LIMIT).await?;
    r.startup.push(("cart-service (empty topic)".into(), t));

    let order_cmd = |port: u16, topic: &str, data: &Path| {
        let mut c = Command::new(bin("order-service"));
        c.env("KAFKA_BOOTSTRAP_SERVERS", &bootstrap)
            .env("SCHEMA_REGISTRY_URL", &registry_url)
            .env("API_PORT", port.to_string())
            .env("KAFKA_TOPIC", topic)
            .env("DATA_DIR", data)
            .env("KAFKA_FETCH_WAIT_MAX_MS", FETCH_WAIT_MAX_MS.to_string())
            // The scan of N records must not hit the default 60 s bound.
            .env("TOPIC_SCAN_TIMEOUT_MS", "1800000");
        if let Some(batch) = args.apply_batch_size {
            c.env("APPLY_BATCH_SIZE", batch.to_string());
        }
        c
    };
    let mut order = Proc::spawn(
        "order-service",
        order_cmd(order_port, "order-events", &work.join("order-main")),
        logs,
    )?;
    let t = order.wait_ready(order_port, READY_LIMIT).await?;
    r.startup.push(("order-service (empty view)".into(), t));

    // ---- Idle. ----
    say("idle for 5 s");
    let services = [
        ("broker", broker.pid()),
        ("schema-registry", registry.pid()),
        ("cart-service", cart.pid()),
        ("order-service", order.pid()),
    ];
    sampled("idle (5 s)", &services, &mut r.usages, async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok(())
    })
    .await?;

    // ---- Warm-up: connections, the registry cache, SQLite pages. ----
    let cart_addr = format!("127.0.0.1:{cart_port}");
    let order_addr = format!("127.0.0.1:{order_port}");
    say("warm-up: 2 s at 200 orders/s end to end");
    let mut warm = LoadConfig::new(cart_addr.clone());
    warm.connections = 16;
    warm.mode = Mode::Open { rate: 200.0 };
    warm.duration = Duration::from_secs(2);
    warm.id_prefix = "WARM-".into();
    warm.num_items = args.num_items;
    warm.follow = Some(order_addr.clone());
    let warm_report = load::run(warm).await?;
    if warm_report.error_count() > 0 {
        bail!("the warm-up failed: {}", warm_report.summary());
    }

    // ---- End to end at fixed rates (open loop). ----
    for &rate in args.rates.iter().filter(|r| **r > 0.0) {
        // Enough workers that 100 ms of latency causes no queueing in the generator itself.
        let connections = ((rate * 0.1).ceil() as usize).clamp(16, 512);
        say(format!(
            "end to end: {rate:.0} orders/s for {rate_seconds} s ({connections} connections)"
        ));
        let mut config = LoadConfig::new(cart_addr.clone());
        config.connections = connections;
        config.mode = Mode::Open { rate };
        config.duration = Duration::from_secs_f64(rate_seconds);
        config.id_prefix = format!("E2E{rate:.0}-");
        config.num_items = args.num_items;
        config.follow = Some(order_addr.clone());
        let report = sampled(
            &format!("end to end at {rate:.0}/s"),
            &services,
            &mut r.usages,
            load::run(config),
        )
        .await?;
        say(report.summary());
        r.e2e.push(report);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // The size of a record CartService wrote (value and headers), for the raw producer's.
    let probe_bootstrap = bootstrap.clone();
    match tokio::task::spawn_blocking(move || {
        raw::consume(
            &probe_bootstrap,
            "order-events",
            1,
            FETCH_WAIT_MAX_MS,
            Duration::from_secs(30),
        )
    })
    .await
    .context("the probe task failed")?
    {
        Ok(record) => r.cart_record = Some(record),
        Err(e) => say(format!("could not read a CartService record: {e:#}")),
    }

    // ---- CartService closed loop: OrderService is stopped so that, like the raw producer
    // later, CartService shares the two cores only with the broker and the generator. ----
    say("stopping the main order-service for the closed-loop run");
    order.stop();
    let cart_only = [
        ("broker", broker.pid()),
        ("schema-registry", registry.pid()),
        ("cart-service", cart.pid()),
    ];
    say(format!(
        "CartService closed loop: {} connections for {closed_seconds} s",
        args.connections
    ));
    let mut config = LoadConfig::new(cart_addr.clone());
    config.connections = args.connections;
    config.mode = Mode::Closed;
    config.duration = Duration::from_secs_f64(closed_seconds);
    config.id_prefix = "CLOSED-".into();
    config.num_items = args.num_items;
    let profile_cart = args
        .profile
        .then(|| start_perf("cart-service", cart.pid(), closed_seconds * 0.8, work));
    let closed = sampled(
        "CartService closed loop",
        &cart_only,
        &mut r.usages,
        load::run(config),
    )
    .await?;
    if let Some(perf) = profile_cart {
        r.profiles.push(profile_or_reason("cart-service", perf));
    }
    say(closed.summary());
    r.closed = Some(closed);
    cart.stop();

    // ---- The raw ceilings, on N real Avro records, which then feed the catch-up. ----
    say(format!("encoding {} order records", args.orders));
    let codec = order_events::OrderEventCodec::new(
        &order_events::RegistryConfig::new(registry_url.clone()),
        CATCHUP_TOPIC,
    )
    .context("creating the codec")?;
    let schema_id = codec.register().await.context("registering the schema")?;
    let encode_started = Instant::now();
    let orders = args.orders;
    let num_items = args.num_items;
    let records =
        tokio::task::spawn_blocking(move || raw::records("CATCHUP-", orders, num_items, schema_id))
            .await
            .context("the encoding task failed")??;
    r.encode_time = encode_started.elapsed();
    r.raw_value_len = records.first().map_or(0, |rec| rec.value.len());
    raw::create_topic(&bootstrap, CATCHUP_TOPIC, 3).await?;
    raw::create_topic(&bootstrap, WINDOW_TOPIC, 3).await?;
    let broker_only = [
        ("broker", broker.pid()),
        ("schema-registry", registry.pid()),
    ];

    let window_count = (args.orders / 10).clamp(1_000, 50_000).min(args.orders);
    let window_records = usize::try_from(window_count)
        .unwrap_or(records.len())
        .min(records.len());
    say(format!(
        "raw produce with {} in flight (CartService's closed-loop concurrency): {window_records} records",
        args.connections
    ));
    let window = raw::produce(
        &bootstrap,
        WINDOW_TOPIC,
        args.linger_ms,
        &records[..window_records],
        args.connections,
    )
    .await?;
    say(format!("  {:.0} records/s", window.rate()));
    r.produce_window = Some(window);

    say(format!(
        "raw produce ceiling: {} records, {} in flight",
        records.len(),
        args.raw_window
    ));
    let produce = sampled(
        "raw produce ceiling",
        &broker_only,
        &mut r.usages,
        raw::produce(
            &bootstrap,
            CATCHUP_TOPIC,
            args.linger_ms,
            &records,
            args.raw_window,
        ),
    )
    .await?;
    say(format!(
        "  {:.0} records/s in {:.1} s",
        produce.rate(),
        produce.elapsed.as_secs_f64()
    ));
    r.produce = Some(produce);
    drop(records);

    say("raw consume ceiling (assign, from the beginning)");
    let consume_bootstrap = bootstrap.clone();
    let consume = sampled(
        "raw consume ceiling",
        &broker_only,
        &mut r.usages,
        async move {
            tokio::task::spawn_blocking(move || {
                raw::consume(
                    &consume_bootstrap,
                    CATCHUP_TOPIC,
                    orders,
                    FETCH_WAIT_MAX_MS,
                    Duration::from_secs(1800),
                )
            })
            .await
            .context("the consume task failed")?
        },
    )
    .await?;
    say(format!(
        "  {:.0} records/s in {:.1} s",
        consume.rate(),
        consume.elapsed.as_secs_f64()
    ));
    r.consume = Some(consume);

    // ---- OrderService catch-up: a fresh process, an empty view, N records waiting. ----
    say("OrderService catch-up: fresh process, empty view");
    let catchup_port = testkit::free_port()?;
    let mut catchup = Proc::spawn(
        "order-service-catchup",
        order_cmd(catchup_port, CATCHUP_TOPIC, &work.join("order-catchup")),
        logs,
    )?;
    let catchup_pid = catchup.pid();
    let catchup_procs = [("broker", broker.pid()), ("order-service", catchup_pid)];
    let (ready_at, total, applied, profile_order) = sampled(
        "OrderService catch-up",
        &catchup_procs,
        &mut r.usages,
        async {
            let ready_at = catchup.wait_ready(catchup_port, READY_LIMIT).await?;
            // perf attaches only once the process and its threads exist.
            let perf = args
                .profile
                .then(|| start_perf("order-service", catchup_pid, 8.0, work));
            let mut metrics =
                Connection::new(format!("127.0.0.1:{catchup_port}"), Duration::from_secs(10));
            loop {
                let applied = match metrics.get("/metrics").await {
                    Ok(response) if response.status == 200 => procs::prometheus_value(
                        &String::from_utf8_lossy(&response.body),
                        "order_events_applied_total",
                    )
                    .unwrap_or(0.0)
                        as u64,
                    _ => 0,
                };
                if applied >= orders {
                    return Ok((ready_at, catchup.started.elapsed(), applied, perf));
                }
                if catchup.started.elapsed() > Duration::from_secs(3600) {
                    bail!("OrderService applied only {applied} of {orders} in an hour");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        },
    )
    .await?;
    if let Some(perf) = profile_order {
        r.profiles.push(profile_or_reason("order-service", perf));
    }
    r.catchup_total = total;
    r.catchup_ingest = total.saturating_sub(ready_at);
    r.catchup_applied = applied;
    r.startup.push((
        format!("order-service, {orders} records waiting (ready = partitions assigned)"),
        ready_at,
    ));
    say(format!(
        "  view complete {:.1} s after start ({:.0} records/s after ready)",
        total.as_secs_f64(),
        orders as f64 / r.catchup_ingest.as_secs_f64().max(1e-9)
    ));

    // ---- getAllOrderIdsFromTopic over the same N records. ----
    say("getAllOrderIdsFromTopic over the catch-up topic");
    let scan = sampled(
        "getAllOrderIdsFromTopic",
        &catchup_procs,
        &mut r.usages,
        async {
            let mut conn = Connection::new(
                format!("127.0.0.1:{catchup_port}"),
                Duration::from_secs(1800),
            );
            conn.connect().await?;
            let started = Instant::now();
            let response = conn
                .get(&format!(
                    "/api/getAllOrderIdsFromTopic?topicName={CATCHUP_TOPIC}"
                ))
                .await?;
            let elapsed = started.elapsed();
            if response.status != 200 {
                bail!(
                    "the scan answered {}: {}",
                    response.status,
                    String::from_utf8_lossy(&response.body)
                );
            }
            let body: serde_json::Value =
                serde_json::from_slice(&response.body).context("parsing the scan's answer")?;
            let count = body
                .get("count")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
            Ok((elapsed, count))
        },
    )
    .await?;
    say(format!("  {} IDs in {:.1} s", scan.1, scan.0.as_secs_f64()));
    r.scan = Some(scan);
    catchup.stop();

    // ---- CartService start-up with N orders in its topic. ----
    say("CartService start-up with the catch-up topic");
    let loaded_port = testkit::free_port()?;
    let mut loaded = Proc::spawn(
        "cart-service-loaded",
        cart_cmd(loaded_port, CATCHUP_TOPIC),
        logs,
    )?;
    let loaded_pid = loaded.pid();
    let t = sampled(
        "CartService start-up (N orders)",
        &[("broker", broker.pid()), ("cart-service", loaded_pid)],
        &mut r.usages,
        loaded.wait_ready(loaded_port, READY_LIMIT),
    )
    .await?;
    r.cart_startup_loaded = Some(t);
    r.cart_loaded_rss = procstat::read(loaded_pid).map(|x| x.rss).unwrap_or(0);
    r.startup
        .push((format!("cart-service, {orders} orders in the topic"), t));
    say(format!("  ready after {:.1} s", t.as_secs_f64()));
    loaded.stop();
    registry.stop();
    broker.stop();
    Ok(())
}

/// A `perf record` in progress.
struct Perf {
    name: String,
    child: std::process::Child,
    data: PathBuf,
}

/// Samples `pid` with perf (software cpu-clock: this VM has no hardware counters) with call
/// graphs, for `seconds`.
fn start_perf(name: &str, pid: u32, seconds: f64, work: &Path) -> anyhow::Result<Perf> {
    let data = work.join(format!("perf-{name}.data"));
    let child = Command::new("perf")
        .args(["record", "-e", "cpu-clock", "-F", "499", "-g", "-p"])
        .arg(pid.to_string())
        .arg("-o")
        .arg(&data)
        .args(["--", "sleep", &format!("{seconds:.1}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(data.with_extension("log")).context("creating perf's log")?)
        .spawn()
        .context("starting perf record")?;
    Ok(Perf {
        name: name.to_string(),
        child,
        data,
    })
}

/// The profile's summary, or why there is none (e.g. `perf` is not installed: Debian's
/// `linux-perf`); a missing profiler must not cost the rest of the run.
fn profile_or_reason(name: &str, perf: anyhow::Result<Perf>) -> (String, String) {
    finish_perf(perf).unwrap_or_else(|e| (name.to_string(), format!("(not profiled: {e:#})")))
}

/// Waits for perf and summarizes the profile: the hottest symbols by self time.
fn finish_perf(perf: anyhow::Result<Perf>) -> anyhow::Result<(String, String)> {
    let mut perf = perf?;
    let _ = perf.child.wait();
    let output = Command::new("perf")
        .args([
            "report",
            "--stdio",
            "--no-children",
            "--sort",
            "dso,symbol",
            "--percent-limit",
            "1.5",
            "-g",
            "none",
            "-i",
        ])
        .arg(&perf.data)
        .output()
        .context("running perf report")?;
    let text = String::from_utf8_lossy(&output.stdout);
    // perf pads its columns to the terminal-less maximum width: keep percent, dso, symbol.
    let lines: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let end = words.iter().position(|w| *w == "-").unwrap_or(words.len());
            words[..end].join(" ")
        })
        .take(25)
        .collect();
    if lines.is_empty() {
        let stderr = std::fs::read_to_string(perf.data.with_extension("log")).unwrap_or_default();
        return Ok((perf.name, format!("(no samples) {}", stderr.trim())));
    }
    Ok((perf.name, lines.join("\n")))
}

fn mb(bytes: u64) -> String {
    format!("{:.0}", bytes as f64 / 1024.0 / 1024.0)
}

fn pct(h: &hdrhistogram::Histogram<u64>, p: f64) -> String {
    if h.is_empty() {
        "–".into()
    } else {
        format!("{:.2}", load::ms_at(h, p))
    }
}

fn verdict(met: bool) -> &'static str {
    if met {
        "**met**"
    } else {
        "**missed**"
    }
}

#[allow(clippy::too_many_lines)]
fn write_outputs(
    args: &Args,
    r: &Results,
    results_dir: &Path,
    report_path: &Path,
    failure: Option<&anyhow::Error>,
) -> anyhow::Result<()> {
    // The plot.
    let png = results_dir.join("latency.png");
    let mut series: Vec<Series<'_>> = Vec::new();
    for report in &r.e2e {
        if let Mode::Open { rate } = report.mode {
            series.push(Series {
                name: format!("end to end at {rate:.0}/s"),
                histogram: &report.e2e,
            });
        }
    }
    for report in &r.e2e {
        if let Mode::Open { rate } = report.mode {
            series.push(Series {
                name: format!("create (201) at {rate:.0}/s"),
                histogram: &report.create,
            });
        }
    }
    if let Some(closed) = &r.closed {
        series.push(Series {
            name: format!("create, closed loop ({} conns)", closed.connections),
            histogram: &closed.create,
        });
    }
    let plotted = plot::latency_by_percentile(
        &png,
        "Order pipeline latency by percentile (open loop, from intended send time)",
        &series,
    );
    if let Err(e) = &plotted {
        say(format!("the plot failed: {e:#}"));
    }

    // The JSON.
    let mut json = serde_json::json!({
        "generated": chrono::Local::now().format("%Y-%m-%d %H:%M").to_string(),
        "broker": r.broker,
        "machine": r.machine,
        "orders": r.orders,
        "machineBusyBefore": r.busy_before,
        "machineBusyAfter": r.busy_after,
        "loadAverageBefore": r.load_before,
        "loadAverageAfter": r.load_after,
        "totalSeconds": r.total.as_secs_f64(),
        "startupSeconds": r.startup.iter().map(|(n, d)| (n.clone(), d.as_secs_f64())).collect::<BTreeMap<_, _>>(),
        "endToEnd": r.e2e.iter().map(LoadReport::to_json).collect::<Vec<_>>(),
        "closedLoop": r.closed.as_ref().map(LoadReport::to_json),
        "rawProduce": r.produce.as_ref().map(|p| serde_json::json!({"records": p.records, "seconds": p.elapsed.as_secs_f64(), "rate": p.rate(), "window": p.window, "ackP50Ms": load::ms_at(&p.ack, 50.0), "ackP99Ms": load::ms_at(&p.ack, 99.0)})),
        "rawProduceAtLoadgenConcurrency": r.produce_window.as_ref().map(|p| serde_json::json!({"records": p.records, "seconds": p.elapsed.as_secs_f64(), "rate": p.rate(), "window": p.window})),
        "rawConsume": r.consume.as_ref().map(|c| serde_json::json!({"records": c.records, "seconds": c.elapsed.as_secs_f64(), "rate": c.rate(), "bytes": c.bytes})),
        "catchup": {"applied": r.catchup_applied, "totalSeconds": r.catchup_total.as_secs_f64(), "ingestSeconds": r.catchup_ingest.as_secs_f64()},
        "scan": r.scan.map(|(d, n)| serde_json::json!({"seconds": d.as_secs_f64(), "ids": n})),
        "cartStartupLoadedSeconds": r.cart_startup_loaded.map(|d| d.as_secs_f64()),
        "usage": r.usages.iter().map(|u| serde_json::json!({"phase": u.phase, "processes": u.by_process.iter().map(|(n, x)| serde_json::json!({"name": n, "cpuCores": x.cpu_cores, "rssEndMiB": x.rss_end as f64 / 1048576.0, "rssPeakMiB": x.rss_peak as f64 / 1048576.0, "seconds": x.wall.as_secs_f64()})).collect::<Vec<_>>()})).collect::<Vec<_>>(),
    });
    if let Some(e) = failure {
        json["failure"] = serde_json::json!(format!("{e:#}"));
    }
    let json_path = results_dir.join("results.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&json)?)
        .with_context(|| format!("writing {}", json_path.display()))?;

    // The Markdown.
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Generated by `cargo run --release -p bench --bin bench{}` on {} (total {:.0} s). \
         Raw data: [`bench/results/results.json`](bench/results/results.json).\n",
        if r.args_line.is_empty() {
            String::new()
        } else {
            format!(" -- {}", r.args_line)
        },
        chrono::Local::now().format("%Y-%m-%d %H:%M"),
        r.total.as_secs_f64()
    );
    if let Some(e) = failure {
        let _ = writeln!(
            md,
            "> **The run did not finish**: {e:#}. What was measured before is below.\n"
        );
    }
    let m = &r.machine;
    let _ = writeln!(md, "## Machine\n");
    let _ = writeln!(
        md,
        "- {} logical cores ({}), {:.1} GiB memory, Linux {}.",
        m["cores"],
        m["cpu"].as_str().unwrap_or("?"),
        m["memoryGiB"].as_f64().unwrap_or(0.0),
        m["kernel"].as_str().unwrap_or("?")
    );
    let _ = writeln!(
        md,
        "- Everything on this machine: broker, registry, both services **and the load generator** \
         share the cores.\n- Noise: the machine was {:.0} % busy (all cores) in the 2 s before the run, \
         load average {} before and {} after. Other work on a shared machine makes every number \
         below a lower bound of what the code can do.\n",
        r.busy_before * 100.0,
        r.load_before,
        r.load_after
    );

    let _ = writeln!(md, "- Broker: {} (SQLite storage).\n", r.broker);

    if let Some(path) = &args.compare_with {
        let other: serde_json::Value = std::fs::read(path)
            .with_context(|| format!("reading {}", path.display()))
            .and_then(|bytes| {
                serde_json::from_slice(&bytes)
                    .with_context(|| format!("parsing {}", path.display()))
            })?;
        md.push_str(&bench::compare::side_by_side(&json, &other));
    }

    // Targets.
    let _ = writeln!(md, "## Targets (issue #6)\n");
    let _ = writeln!(
        md,
        "| target | measured | ratio | verdict |\n| --- | --- | --- | --- |"
    );
    if let (Some(closed), Some(produce)) = (&r.closed, &r.produce) {
        let ratio = closed.throughput() / produce.rate();
        let _ = writeln!(
            md,
            "| CartService ≥ 0.5 × raw produce ceiling | {:.0} orders/s ({} connections, closed loop) vs {:.0} records/s raw | {ratio:.2} | {} |",
            closed.throughput(), closed.connections, produce.rate(), verdict(ratio >= 0.5)
        );
    }
    if let Some(report) = r
        .e2e
        .iter()
        .find(|x| matches!(x.mode, Mode::Open { rate } if (rate - 1000.0).abs() < 0.5))
    {
        let p99 = load::ms_at(&report.e2e, 99.0);
        let _ = writeln!(
            md,
            "| end-to-end p99 ≤ 25 ms at 1,000 orders/s | p99 {p99:.2} ms | – | {} |",
            verdict(p99 <= 25.0 && report.error_count() == 0)
        );
    }
    if let Some(consume) = &r.consume {
        let ingest = r.catchup_applied as f64 / r.catchup_ingest.as_secs_f64().max(1e-9);
        let ratio = ingest / consume.rate();
        let _ = writeln!(
            md,
            "| OrderService ingest ≥ 0.7 × raw consume ceiling | {ingest:.0} records/s (catch-up of {}) vs {:.0} records/s raw | {ratio:.2} | {} |",
            r.catchup_applied, consume.rate(), verdict(ratio >= 0.7)
        );
        if let Some((scan, ids)) = r.scan {
            let ratio = scan.as_secs_f64() / consume.elapsed.as_secs_f64();
            let _ = writeln!(
                md,
                "| ID scan ≤ 2 × raw consume time | {:.1} s for {ids} IDs vs {:.1} s raw | {ratio:.2} | {} |",
                scan.as_secs_f64(), consume.elapsed.as_secs_f64(), verdict(ratio <= 2.0 && ids == r.orders)
            );
        }
    }
    let _ = writeln!(md);

    // Throughput.
    let _ = writeln!(md, "## Throughput\n");
    let _ = writeln!(
        md,
        "| measure | records | seconds | per second | latency |\n| --- | --- | --- | --- | --- |"
    );
    if let Some(c) = &r.closed {
        let _ = writeln!(md, "| CartService create-order, closed loop, {} keep-alive connections | {} | {:.1} | {:.0} | p50 {} ms, p99 {} ms (send → 201) |",
            c.connections, c.created, c.elapsed.as_secs_f64(), c.throughput(), pct(&c.create, 50.0), pct(&c.create, 99.0));
    }
    if let Some(p) = &r.produce_window {
        let _ = writeln!(md, "| raw produce, {} in flight (same concurrency as the closed loop) | {} | {:.1} | {:.0} | ack p50 {} ms, p99 {} ms |",
            p.window, p.records, p.elapsed.as_secs_f64(), p.rate(), pct(&p.ack, 50.0), pct(&p.ack, 99.0));
    }
    if let Some(p) = &r.produce {
        let _ = writeln!(md, "| **raw produce ceiling**, {} in flight | {} | {:.1} | {:.0} | ack p50 {} ms, p99 {} ms |",
            p.window, p.records, p.elapsed.as_secs_f64(), p.rate(), pct(&p.ack, 50.0), pct(&p.ack, 99.0));
    }
    if let Some(c) = &r.consume {
        let _ = writeln!(
            md,
            "| **raw consume ceiling** (assign, from the beginning) | {} | {:.1} | {:.0} | – |",
            c.records,
            c.elapsed.as_secs_f64(),
            c.rate()
        );
    }
    if r.catchup_applied > 0 {
        let _ = writeln!(md, "| OrderService catch-up, fresh process and view (from ready) | {} | {:.1} | {:.0} | view complete {:.1} s after process start |",
            r.catchup_applied, r.catchup_ingest.as_secs_f64(), r.catchup_applied as f64 / r.catchup_ingest.as_secs_f64().max(1e-9), r.catchup_total.as_secs_f64());
    }
    if let Some((scan, ids)) = r.scan {
        let _ = writeln!(
            md,
            "| getAllOrderIdsFromTopic (distinct IDs, one request) | {ids} | {:.1} | {:.0} | – |",
            scan.as_secs_f64(),
            ids as f64 / scan.as_secs_f64().max(1e-9)
        );
    }
    let _ = writeln!(md);
    if let Some(c) = &r.cart_record {
        let _ = writeln!(md, "Record size: CartService's first record has a {}-byte value and {} bytes of headers \
            (names + values); the raw records are encoded by the same contract crate with the same generator rules \
            (value {} bytes, same three headers, keys `CATCHUP-<n>` vs `CLOSED-<n>`). Encoding the {} raw records took {:.1} s, before the clock started.\n",
            c.first_value_len, c.first_headers_len, r.raw_value_len, r.orders, r.encode_time.as_secs_f64());
    }

    // Latency.
    let _ = writeln!(md, "## Latency\n");
    let _ = writeln!(md, "Open loop: every latency counts from the request's *intended* send time (no coordinated omission). \
        End to end = intended create time → OrderService's `order-details?minVersion=1&waitMs=5000` answers 200 with the order.\n");
    let _ = writeln!(md, "| run | achieved/s | what | p50 ms | p95 ms | p99 ms | p99.9 ms | max ms | errors |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let errors = |x: &LoadReport| {
        if x.errors.is_empty() {
            "0".to_string()
        } else {
            x.errors
                .iter()
                .map(|(k, n)| format!("{k}: {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    for x in &r.e2e {
        let rate = match x.mode {
            Mode::Open { rate } => rate,
            Mode::Closed => 0.0,
        };
        for (what, h) in [("create → 201", &x.create), ("end to end", &x.e2e)] {
            let _ = writeln!(md, "| open loop {rate:.0}/s, {} conns | {:.0} | {what} | {} | {} | {} | {} | {:.2} | {} |",
                x.connections, x.throughput(), pct(h, 50.0), pct(h, 95.0), pct(h, 99.0), pct(h, 99.9), h.max() as f64 / 1e3, errors(x));
        }
    }
    if let Some(x) = &r.closed {
        let _ = writeln!(
            md,
            "| closed loop, {} conns | {:.0} | create → 201 | {} | {} | {} | {} | {:.2} | {} |",
            x.connections,
            x.throughput(),
            pct(&x.create, 50.0),
            pct(&x.create, 95.0),
            pct(&x.create, 99.0),
            pct(&x.create, 99.9),
            x.create.max() as f64 / 1e3,
            errors(x)
        );
    }
    let _ = writeln!(md);
    if plotted.is_ok() {
        let _ = writeln!(md, "![latency by percentile](bench/results/latency.png)\n");
    }

    // Start-up.
    let _ = writeln!(md, "## Start-up (process spawn → `/ready` 200)\n");
    let _ = writeln!(md, "| process | seconds |\n| --- | --- |");
    for (name, d) in &r.startup {
        let _ = writeln!(md, "| {name} | {:.3} |", d.as_secs_f64());
    }
    if r.cart_loaded_rss > 0 {
        let _ = writeln!(md, "\nCartService holds every order's latest state: its RSS right after loading {} orders was {} MiB.", r.orders, mb(r.cart_loaded_rss));
    }
    let _ = writeln!(md);

    // Resources.
    let _ = writeln!(md, "## CPU and resident memory by phase\n");
    let _ = writeln!(md, "CPU in cores (1.0 = one core busy for the whole phase; the machine has {}), from `/proc/<pid>/stat`; RSS from `VmRSS`.\n", m["cores"]);
    let _ = writeln!(md, "| phase | process | seconds | CPU (cores) | RSS end MiB | RSS peak MiB |\n| --- | --- | --- | --- | --- | --- |");
    for u in &r.usages {
        for (name, x) in &u.by_process {
            let _ = writeln!(
                md,
                "| {} | {name} | {:.1} | {:.2} | {} | {} |",
                u.phase,
                x.wall.as_secs_f64(),
                x.cpu_cores,
                mb(x.rss_end),
                mb(x.rss_peak)
            );
        }
    }
    let _ = writeln!(md);

    // Method.
    let _ = writeln!(md, "## Method\n");
    let _ = writeln!(md, "{}", method(args));
    if !r.profiles.is_empty() {
        let _ = writeln!(md, "## Profiles (perf, cpu-clock, self time)\n");
        for (name, text) in &r.profiles {
            let _ = writeln!(md, "### {name}\n\n```text\n{text}\n```\n");
        }
    }
    let notes = testkit::workspace_root().join("bench").join("NOTES.md");
    if let Ok(text) = std::fs::read_to_string(&notes) {
        let _ = writeln!(md, "{text}");
    }
    std::fs::write(report_path, md)
        .with_context(|| format!("writing {}", report_path.display()))?;
    Ok(())
}

fn method(args: &Args) -> String {
    format!(
        "1. `cargo build --release` of schema-registry, cart-service and order-service; a fresh {broker} \
(SQLite storage) in a temporary directory; the release binaries started as processes on free ports, \
each timed from spawn to `/ready` 200. Services use their defaults (CartService `linger.ms` {linger}, \
OrderService `fetch.wait.max.ms` {fetch}{batch}), logging at `info` to a file.\n\
2. Idle: 5 s with nothing to do.\n\
3. Warm-up 2 s at 200 orders/s; then end to end, open loop, at each of {rates} orders/s: the load generator \
(`bench::load`, also the `loadgen` binary) schedules creates at the fixed rate over HTTP/1.1 keep-alive \
connections (enough that 100 ms of latency does not queue in the generator), and right after each 201 asks \
OrderService for that order with `waitMs`; latency from the intended send time.\n\
4. OrderService is stopped; CartService closed loop with {conns} connections ({num_items} items per order): \
each connection sends its next create when the previous one is answered.\n\
5. Raw ceilings, same run: {orders} order events are encoded with the contract crate (as CartService \
generates them: same key pattern, value size and headers) and produced by a raw rdkafka `FutureProducer` \
configured as CartService's (acks=all, idempotence, max.in.flight 5, linger.ms {linger}) with {window} \
records in flight, into a fresh 3-partition topic; first a smaller batch with only {conns} in flight (the \
closed loop's concurrency) to show what concurrency alone allows. A raw `BaseConsumer` then assigns all \
partitions from the beginning (`fetch.wait.max.ms` {fetch}) and counts the records.\n\
6. A fresh OrderService (new `DATA_DIR`) on that topic: timed from spawn until its \
`order_events_applied_total` reaches {orders}; the ingest rate counts from `/ready` (partitions assigned), \
like the raw consumer's from its assignment. Then `getAllOrderIdsFromTopic` on it, one request, timed.\n\
7. A fresh CartService on that topic, timed from spawn to `/ready` (it loads every order first).\n\
8. During each phase a thread samples `/proc/<pid>/stat` and `/status` of every process every 100 ms.\n\
\n\
Ratios: CartService closed-loop throughput / raw produce ceiling; OrderService ingest / raw consume ceiling; \
scan time / raw consume time.\n",
        broker = args.broker,
        linger = args.linger_ms,
        fetch = FETCH_WAIT_MAX_MS,
        batch = args
            .apply_batch_size
            .map_or(String::new(), |b| format!(", `APPLY_BATCH_SIZE` {b}")),
        rates = args
            .rates
            .iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(", "),
        conns = args.connections,
        num_items = args.num_items,
        orders = args.orders,
        window = args.raw_window,
    )
}
