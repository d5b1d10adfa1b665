//! Fresh processes on N records: OrderService catching up from an empty view (then the topic
//! ID scan on it), and CartService building its order index from the whole topic before it is
//! ready, then restarted on that index (it reads only what came after its checkpoint). These
//! are the costs of a new instance, which grow with the topic, and of a restart, which should
//! not.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use testkit::process::Process;

use super::startup::wait_ready;
use super::{perf, sampled, Bench, Stack, CATCHUP_TOPIC};
use crate::http::Connection;
use crate::procstat;
use crate::report::{CartLoaded, Catchup, Results, Scan};
use crate::say;

/// The OrderService that caught up, kept running for the scan.
pub(super) struct CatchupService {
    process: Process,
    port: u16,
}

impl CatchupService {
    pub(super) fn stop(&mut self) {
        self.process.stop();
    }
}

/// A fresh OrderService (new `DATA_DIR`) on the catch-up topic: timed from spawn until its
/// `order_events_applied_total` reaches N, and from ready (partitions assigned) to then.
pub(super) async fn order_service_catchup(
    b: &Bench<'_>,
    stack: &Stack,
    r: &mut Results,
) -> anyhow::Result<CatchupService> {
    say("OrderService catch-up: fresh process, empty view");
    let orders = b.settings.orders;
    let port = testkit::free_port()?;
    let command = b.order_command(
        stack.addrs(),
        port,
        CATCHUP_TOPIC,
        &b.work.join("order-catchup"),
    );
    let mut catchup = b.spawn("order-service-catchup", command)?;
    let pid = catchup.pid();
    let procs = [("broker", stack.broker.pid()), ("order-service", pid)];
    let (ready_at, total, applied, profile) = sampled("OrderService catch-up", &procs, r, async {
        let ready_at = wait_ready(&mut catchup, port)?;
        // perf attaches only once the process and its threads exist.
        let profile = b
            .settings
            .profile
            .then(|| perf::start("order-service", pid, 8.0, &b.work));
        let mut metrics = Connection::new(format!("127.0.0.1:{port}"), Duration::from_secs(10));
        loop {
            let applied = match metrics.get("/metrics").await {
                Ok(response) if response.status == 200 => testkit::metrics::value(
                    &String::from_utf8_lossy(&response.body),
                    "order_events_applied_total",
                )
                .unwrap_or(0.0) as u64,
                _ => 0,
            };
            if applied >= orders {
                return Ok((ready_at, catchup.started().elapsed(), applied, profile));
            }
            if catchup.started().elapsed() > Duration::from_secs(3600) {
                bail!("OrderService applied only {applied} of {orders} in an hour");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await?;
    if let Some(perf) = profile {
        r.profiles.push(perf::finish("order-service", perf));
    }
    r.catchup = Catchup {
        applied,
        total,
        ingest: total.saturating_sub(ready_at),
    };
    r.startup.push((
        format!("order-service, {orders} records waiting (ready = partitions assigned)"),
        ready_at,
    ));
    say(format!(
        "  view complete {:.1} s after start ({:.0} records/s after ready)",
        total.as_secs_f64(),
        orders as f64 / r.catchup.ingest.as_secs_f64().max(1e-9)
    ));
    Ok(CatchupService {
        process: catchup,
        port,
    })
}

/// `getAllOrderIdsFromTopic` over the same N records, one request, on the caught-up service.
pub(super) async fn topic_id_scan(
    stack: &Stack,
    catchup: &CatchupService,
    r: &mut Results,
) -> anyhow::Result<()> {
    say("getAllOrderIdsFromTopic over the catch-up topic");
    let procs = [
        ("broker", stack.broker.pid()),
        ("order-service", catchup.process.pid()),
    ];
    let port = catchup.port;
    let scan = sampled("getAllOrderIdsFromTopic", &procs, r, async {
        let mut conn = Connection::new(format!("127.0.0.1:{port}"), Duration::from_secs(1800));
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
        let ids = body
            .get("count")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        Ok(Scan { elapsed, ids })
    })
    .await?;
    say(format!(
        "  {} IDs in {:.1} s",
        scan.ids,
        scan.elapsed.as_secs_f64()
    ));
    r.scan = Some(scan);
    Ok(())
}

/// A fresh CartService on the catch-up topic, timed from spawn to ready (its order index is
/// built from every record first), its RSS right after; then the same instance stopped and
/// started again on its index, timed and measured the same way.
pub(super) async fn cart_service_startup_loaded(
    b: &Bench<'_>,
    stack: &Stack,
    r: &mut Results,
) -> anyhow::Result<()> {
    say("CartService start-up with the catch-up topic");
    let orders = b.settings.orders;
    let port = testkit::free_port()?;
    // A fresh data directory: the index is built from the whole topic, as for a new instance.
    let data = b.work.join("cart-loaded");
    let command = b.cart_command(stack.addrs(), port, CATCHUP_TOPIC, &data);
    let mut loaded = b.spawn("cart-service-loaded", command)?;
    let pid = loaded.pid();
    let procs = [("broker", stack.broker.pid()), ("cart-service", pid)];
    let ready = async { wait_ready(&mut loaded, port) };
    let t = sampled("CartService start-up (N orders)", &procs, r, ready).await?;
    let rss = procstat::read(pid).map(|x| x.rss).unwrap_or(0);
    r.startup
        .push((format!("cart-service, {orders} orders in the topic"), t));
    say(format!("  ready after {:.1} s", t.as_secs_f64()));
    loaded.stop();

    say("CartService restart on its own order index");
    let command = b.cart_command(stack.addrs(), port, CATCHUP_TOPIC, &data);
    let mut restarted = b.spawn("cart-service-restarted", command)?;
    let pid = restarted.pid();
    let procs = [("broker", stack.broker.pid()), ("cart-service", pid)];
    let ready = async { wait_ready(&mut restarted, port) };
    let again = sampled("CartService restart (N orders indexed)", &procs, r, ready).await?;
    let restart_rss = procstat::read(pid).map(|x| x.rss).unwrap_or(0);
    let mut metrics = Connection::new(format!("127.0.0.1:{port}"), Duration::from_secs(10));
    let response = metrics.get("/metrics").await?;
    let reread = testkit::metrics::value(
        &String::from_utf8_lossy(&response.body),
        "cart_index_records_read_total",
    )
    .unwrap_or(f64::NAN);
    r.startup.push((
        format!("cart-service restarted, {orders} orders in its index"),
        again,
    ));
    say(format!(
        "  ready after {:.2} s, {reread} records read again",
        again.as_secs_f64()
    ));
    restarted.stop();
    r.cart_loaded = Some(CartLoaded {
        ready: t,
        rss,
        restart: again,
        restart_rss,
        reread,
    });
    Ok(())
}
