//! Scale-out: three CartService instances in one consumer group on the topic, on the same two
//! cores as everything else. Each owns some partitions; a create for an order of a partition
//! owned elsewhere is forwarded once, over HTTP, to the owner.
//!
//! What it measures, all closed loops of the closed-loop phase's connections and duration:
//!
//! * **to the owner**: instance 0, only orders of the partitions it owns;
//! * **forwarded**: instance 0, only orders of the partitions the others own (every create is
//!   relayed, and the answer must say so: `x-cart-forwarded`);
//! * **three instances, by owner**: the connections split evenly over the three, each sent only
//!   orders of its own partitions (a partition-aware client: no forwarding), for the aggregate
//!   throughput set against the single instance of the closed-loop phase;
//! * **three instances, any order**: the same split, but any order to any instance (a plain
//!   load balancer: about two thirds forwarded).
//!
//! Why after the closed loop: OrderService and the single CartService are stopped there, so
//! the three instances share the cores with the broker, the registry and the generator only,
//! as the single instance did. Ownership is read from the answers themselves (a probe create
//! per partition and instance), not from logs, and cross-checked with each instance's
//! `cart_partitions_owned`.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use order_events::partition_for;
use testkit::process::Process;

use super::startup::wait_ready;
use super::{sampled, Bench, Stack};
use crate::http::Connection;
use crate::load::{self, IdFilter, LoadConfig, LoadReport, Mode, FORWARDED_HEADER};
use crate::report::{Results, ScaleOut, ScaleOutRun};
use crate::say;

/// The topic the stack's CartService writes (its default).
const TOPIC: &str = order_events::ORDER_EVENTS_TOPIC;
/// How many instances.
const INSTANCES: usize = 3;
/// Their group: not the single instance's default, so nothing of its membership is reused.
const GROUP: &str = "bench-scale-out";
/// How long the instances may take, once ready, to own every partition between them.
const SETTLE_LIMIT: Duration = Duration::from_secs(120);
/// How long the probes may take to find every partition's owner (503s are retried).
const PROBE_LIMIT: Duration = Duration::from_secs(60);
/// The outcomes of `cart_forwarded_requests_total`.
const FORWARD_OUTCOMES: [&str; 3] = ["forwarded", "unreachable", "moving"];

/// One CartService instance of the phase.
struct Instance {
    process: Process,
    port: u16,
}

impl Instance {
    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// Starts the instances, waits until the partitions are spread, finds who owns what, runs the
/// four closed loops, stops the instances.
pub(super) async fn three_instances(
    b: &Bench<'_>,
    stack: &Stack,
    r: &mut Results,
) -> anyhow::Result<()> {
    let partitions = topic_partitions(&stack.bootstrap, TOPIC).await?;
    say(format!(
        "scale-out: {INSTANCES} CartService instances in group {GROUP} on {TOPIC} ({partitions} partitions)"
    ));
    let started = Instant::now();
    let mut instances = Vec::with_capacity(INSTANCES);
    for i in 0..INSTANCES {
        let port = testkit::free_port()?;
        let data = b.work.join(format!("cart-scale-{i}"));
        std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
        let mut command = b.cart_command(stack.addrs(), port, TOPIC, &data);
        command.env("CART_GROUP_ID", GROUP);
        let process = b.spawn(&format!("cart-service-{i}"), command)?;
        instances.push(Instance { process, port });
    }
    for (i, instance) in instances.iter_mut().enumerate() {
        let t = wait_ready(&mut instance.process, instance.port)
            .with_context(|| format!("waiting for scale-out instance {i} to be ready"))?;
        say(format!(
            "  instance {i} ready after {:.1} s",
            t.as_secs_f64()
        ));
    }
    let owned = wait_spread(&instances, partitions).await?;
    let settle = started.elapsed();
    say(format!(
        "  partitions spread after {:.1} s: owned {owned:?}",
        settle.as_secs_f64()
    ));
    let owners = probe_owners(&instances, partitions).await?;
    for (i, n) in owned.iter().enumerate() {
        let probed = owners.iter().filter(|o| **o == i).count();
        if probed != *n {
            bail!(
                "instance {i} reports {n} partitions owned (cart_partitions_owned) but answered \
                 unforwarded for {probed} (owners by partition: {owners:?})"
            );
        }
    }
    say(format!("  owner of each partition: {owners:?}"));
    let mut out = ScaleOut {
        instances: INSTANCES,
        partitions,
        settle,
        owners,
        ..ScaleOut::default()
    };

    let seconds = b.settings.closed_duration();
    let connections = b.settings.connections;
    let mine = out.owned_by(0);
    let theirs: Vec<i32> = (0..partitions).filter(|p| !mine.contains(p)).collect();
    if mine.is_empty() || theirs.is_empty() {
        bail!("instance 0 owns {mine:?} of {partitions} partitions: nothing to compare");
    }
    let procs = sampled_processes(stack, &instances);

    say(format!(
        "  to the owner: instance 0, partitions {mine:?}, {connections} connections for {seconds} s"
    ));
    let config = closed_loop(b, &instances[0], "SCALE-OWN-", Some(&mine), partitions);
    out.to_owner = Some(
        measured(
            "scale-out: to the owner (instance 0)",
            &procs,
            &instances,
            r,
            async { load::run(config).await },
        )
        .await?,
    );
    pause().await;

    say(format!(
        "  forwarded: instance 0, partitions {theirs:?}, {connections} connections for {seconds} s"
    ));
    let config = closed_loop(b, &instances[0], "SCALE-FWD-", Some(&theirs), partitions);
    out.forwarded = Some(
        measured(
            "scale-out: forwarded (instance 0)",
            &procs,
            &instances,
            r,
            async { load::run(config).await },
        )
        .await?,
    );
    pause().await;

    say(format!(
        "  three instances, each its own partitions: {connections} connections in all for {seconds} s"
    ));
    let configs = split(
        b,
        &instances,
        "SCALE-ALL",
        |i| Some(out.owned_by(i)),
        partitions,
    );
    out.spread_by_owner = Some(
        measured(
            "scale-out: three instances, by owner",
            &procs,
            &instances,
            r,
            concurrently(configs),
        )
        .await?,
    );
    pause().await;

    say(format!(
        "  three instances, any order: {connections} connections in all for {seconds} s"
    ));
    let configs = split(b, &instances, "SCALE-ANY", |_| None, partitions);
    out.spread_any = Some(
        measured(
            "scale-out: three instances, any order",
            &procs,
            &instances,
            r,
            concurrently(configs),
        )
        .await?,
    );

    for run in [
        &out.to_owner,
        &out.forwarded,
        &out.spread_by_owner,
        &out.spread_any,
    ]
    .into_iter()
    .flatten()
    {
        say(run.report.summary());
    }
    r.scale_out = Some(out);
    for instance in &mut instances {
        instance.process.stop();
    }
    Ok(())
}

/// A second between runs, so that one's tail does not overlap the next one's start.
async fn pause() {
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// The partition count of `topic`, from the broker's metadata.
async fn topic_partitions(bootstrap: &str, topic: &str) -> anyhow::Result<i32> {
    let settings = service_kit::kafka::KafkaSettings::plain(bootstrap);
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        use rdkafka::consumer::Consumer as _;
        let consumer: rdkafka::consumer::BaseConsumer<service_kit::kafka::KafkaContext> = settings
            .client("the benchmark's metadata reader")
            .create()
            .context("creating a metadata client")?;
        service_kit::kafka::topic_partitions(consumer.client(), &topic, Duration::from_secs(10))
            .with_context(|| format!("reading the metadata of {topic}"))?
            .with_context(|| format!("the topic {topic} does not exist"))
    })
    .await
    .context("the metadata task failed")?
}

/// An instance's `/metrics` text.
async fn metrics_text(instance: &Instance) -> anyhow::Result<String> {
    let mut conn = Connection::new(instance.addr(), Duration::from_secs(10));
    let response = conn
        .get("/metrics")
        .await
        .with_context(|| format!("reading the metrics of {}", instance.process.name()))?;
    if response.status != 200 {
        bail!(
            "{} answered {} to /metrics",
            instance.process.name(),
            response.status
        );
    }
    Ok(String::from_utf8_lossy(&response.body).into_owned())
}

/// A number of a `/metrics` text (summed over label sets); 0 when absent.
fn metric(text: &str, series: &str) -> f64 {
    testkit::metrics::value(text, series).unwrap_or(0.0)
}

/// Waits until the instances own every partition between them, each at least one if there
/// are as many partitions as instances; returns how many each owns.
async fn wait_spread(instances: &[Instance], partitions: i32) -> anyhow::Result<Vec<usize>> {
    let deadline = Instant::now() + SETTLE_LIMIT;
    let total = usize::try_from(partitions).context("a negative partition count")?;
    loop {
        let mut owned = Vec::with_capacity(instances.len());
        for instance in instances {
            let text = metrics_text(instance).await?;
            owned.push(metric(&text, "cart_partitions_owned") as usize);
        }
        let spread = total < instances.len() || owned.iter().all(|n| *n >= 1);
        if owned.iter().sum::<usize>() == total && spread {
            return Ok(owned);
        }
        if Instant::now() >= deadline {
            bail!(
                "the {} CartService instances did not spread the {total} partitions within {} s: \
                 cart_partitions_owned {owned:?} (the sum must be {total}, each at least 1); see \
                 the cart-service-<n> logs",
                instances.len(),
                SETTLE_LIMIT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The next ID `{prefix}{n}` (from `*counter` on) of `partition`.
fn id_in_partition(prefix: &str, counter: &mut u64, partition: i32, partitions: i32) -> String {
    loop {
        let id = format!("{prefix}{counter}");
        *counter += 1;
        if partition_for(&id, partitions) == partition {
            return id;
        }
    }
}

/// For each partition, the instance that owns it: a create of an order of that partition is
/// sent to every instance; the owner answers 201 itself, the others relay the owner's answer
/// with `x-cart-forwarded`. A 503 (partition moving) is retried with a new order; exactly one
/// instance must answer unforwarded.
async fn probe_owners(instances: &[Instance], partitions: i32) -> anyhow::Result<Vec<usize>> {
    let deadline = Instant::now() + PROBE_LIMIT;
    let mut counter = 0_u64;
    let mut owners = Vec::new();
    for partition in 0..partitions {
        let mut unforwarded = Vec::new();
        for (i, instance) in instances.iter().enumerate() {
            let mut conn = Connection::new(instance.addr(), Duration::from_secs(10));
            loop {
                let id = id_in_partition("SCALE-PROBE-", &mut counter, partition, partitions);
                let body = format!(r#"{{"orderId":"{id}","numItems":1}}"#);
                let response = conn
                    .post_json("/api/create-order", body.as_bytes())
                    .await
                    .with_context(|| format!("probing instance {i} with {id}"))?;
                match response.status {
                    201 => {
                        if response.header(FORWARDED_HEADER).is_none() {
                            unforwarded.push(i);
                        }
                        break;
                    }
                    503 if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    status => bail!(
                        "probing partition {partition} on instance {i}: {id} answered {status}: {}",
                        String::from_utf8_lossy(&response.body)
                    ),
                }
            }
        }
        match unforwarded.as_slice() {
            [owner] => owners.push(*owner),
            _ => bail!(
                "partition {partition}: instances {unforwarded:?} answered without \
                 {FORWARDED_HEADER} (exactly one owner expected)"
            ),
        }
    }
    Ok(owners)
}

/// What is sampled: the broker, the registry, the three instances (and the generator).
fn sampled_processes(stack: &Stack, instances: &[Instance]) -> Vec<(String, u32)> {
    let mut procs = vec![
        ("broker".to_string(), stack.broker.pid()),
        ("schema-registry".to_string(), stack.registry.pid()),
    ];
    for (i, instance) in instances.iter().enumerate() {
        procs.push((format!("cart-service-{i}"), instance.process.pid()));
    }
    procs
}

/// A closed loop against `instance` of the phase's duration; with `partitions`, only orders
/// of those.
fn closed_loop(
    b: &Bench<'_>,
    instance: &Instance,
    prefix: &str,
    only: Option<&[i32]>,
    partitions: i32,
) -> LoadConfig {
    let mut config = LoadConfig::new(instance.addr());
    config.connections = b.settings.connections;
    config.mode = Mode::Closed;
    config.duration = Duration::from_secs_f64(b.settings.closed_duration());
    config.id_prefix = prefix.into();
    config.num_items = b.settings.num_items;
    config.id_filter = only.map(|only| {
        let only = only.to_vec();
        IdFilter::new(move |id| only.contains(&partition_for(id, partitions)))
    });
    config
}

/// The phase's connections split evenly over the instances (the first ones take the
/// remainder), instance `i` sent orders of `only(i)` (any order when `None`), IDs
/// `{prefix}-{i}-{n}`.
fn split(
    b: &Bench<'_>,
    instances: &[Instance],
    prefix: &str,
    only: impl Fn(usize) -> Option<Vec<i32>>,
    partitions: i32,
) -> Vec<LoadConfig> {
    let n = instances.len().max(1);
    let total = b.settings.connections.max(n);
    instances
        .iter()
        .enumerate()
        .map(|(i, instance)| {
            let owned = only(i);
            let mut config = closed_loop(
                b,
                instance,
                &format!("{prefix}-{i}-"),
                owned.as_deref(),
                partitions,
            );
            config.connections = total / n + usize::from(i < total % n);
            config
        })
        .collect()
}

/// Runs `configs` at the same time and reports them as one run.
async fn concurrently(configs: Vec<LoadConfig>) -> anyhow::Result<LoadReport> {
    let reports = futures::future::try_join_all(configs.into_iter().map(load::run)).await?;
    LoadReport::concurrent(&reports)?.context("no load to combine")
}

/// Runs `load` sampled as `phase`, with the instances' forwarding and fencing counters read
/// before and after.
async fn measured<F>(
    phase: &str,
    procs: &[(String, u32)],
    instances: &[Instance],
    r: &mut Results,
    load: F,
) -> anyhow::Result<ScaleOutRun>
where
    F: std::future::Future<Output = anyhow::Result<LoadReport>>,
{
    let before = counters(instances).await?;
    let named: Vec<(&str, u32)> = procs.iter().map(|(n, p)| (n.as_str(), *p)).collect();
    let report = sampled(phase, &named, r, load).await?;
    let usage = r
        .usages
        .last()
        .map(|u| u.by_process.clone())
        .unwrap_or_default();
    let after = counters(instances).await?;
    let delta: Vec<f64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    let forwarded_by_outcome = FORWARD_OUTCOMES
        .iter()
        .zip(&delta)
        .map(|(outcome, n)| (outcome.to_string(), *n))
        .collect();
    Ok(ScaleOutRun {
        report,
        usage,
        forwarded_by_outcome,
        fenced: delta.last().copied().unwrap_or(0.0),
    })
}

/// `cart_forwarded_requests_total` by outcome ([`FORWARD_OUTCOMES`]), then
/// `cart_fenced_writes_total`, each summed over the instances.
async fn counters(instances: &[Instance]) -> anyhow::Result<Vec<f64>> {
    let mut series: Vec<String> = FORWARD_OUTCOMES
        .iter()
        .map(|o| format!("cart_forwarded_requests_total{{outcome=\"{o}\"}}"))
        .collect();
    series.push("cart_fenced_writes_total".into());
    let mut sums = vec![0.0; series.len()];
    for instance in instances {
        let text = metrics_text(instance).await?;
        for (sum, name) in sums.iter_mut().zip(&series) {
            *sum += metric(&text, name);
        }
    }
    Ok(sums)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_ids_land_in_the_partition_asked_for() {
        let mut counter = 0;
        for partition in [2, 0, 1, 1] {
            let id = id_in_partition("SCALE-PROBE-", &mut counter, partition, 3);
            assert_eq!(partition_for(&id, 3), partition, "{id}");
        }
        assert!(counter >= 4);
    }
}
