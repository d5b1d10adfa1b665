//! The benchmark's phases, one function each, run in order by [`run`] against one fresh stack.
//!
//! Why one module per kind of measurement: each phase sets up its own load and its own
//! processes for a reason written beside it (what it must share the two cores with, what it
//! starts from), and fills its own part of [`Results`]. A phase that fails stops the run, but
//! what the earlier ones measured is already in `Results` for the report.
//!
//! The processes are started with `testkit::process` rather than by the launcher (`stack up`):
//! the benchmark needs a pid per service (to read its CPU and RSS from `/proc`), a fresh broker
//! in a temporary directory, free ports, exact start-up times (spawn → `/ready` 200), and each
//! process's log in a file of the run, never a pipe that could fill.

mod ceilings;
mod closed_loop;
mod latency;
mod perf;
mod restarts;
mod scale_out;
mod startup;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;

use testkit::embedded::Distribution;
use testkit::process::{Output, Process};

use crate::procstat::Sampler;
use crate::report::{PhaseUsage, Results};
use crate::settings::{Settings, FETCH_WAIT_MAX_MS};

/// The topic of the raw ceilings, the catch-up, the scan and CartService's loaded start-up.
const CATCHUP_TOPIC: &str = "bench-catchup";
/// The topic of the raw produce at the closed loop's concurrency.
const WINDOW_TOPIC: &str = "bench-window";

/// What every phase needs: the settings and where the binaries, the work and the logs are.
pub struct Bench<'a> {
    pub settings: &'a Settings,
    pub bin_dir: PathBuf,
    /// A temporary directory: the broker's and OrderService's data, perf's files.
    pub work: PathBuf,
    pub logs: PathBuf,
    pub distribution: Distribution,
    pub broker_bin: PathBuf,
}

/// The stack's processes and where they listen.
struct Stack {
    broker: Process,
    registry: Process,
    cart: Process,
    order: Process,
    bootstrap: String,
    registry_url: String,
    cart_port: u16,
    order_port: u16,
}

impl Stack {
    /// Stops the services, then the registry, then the broker.
    fn stop(&mut self) {
        for process in [
            &mut self.cart,
            &mut self.order,
            &mut self.registry,
            &mut self.broker,
        ] {
            process.stop();
        }
    }
}

/// Runs every phase in order, filling `r`.
pub async fn run(bench: &Bench<'_>, r: &mut Results) -> anyhow::Result<()> {
    let mut stack = startup::start_stack(bench, r).await?;
    startup::idle(&stack, r).await?;
    latency::warm_up(bench, &stack).await?;
    latency::end_to_end_at_fixed_rates(bench, &stack, r).await?;
    latency::read_a_cart_record(&stack, r).await?;
    closed_loop::cart_service_closed_loop(bench, &mut stack, r).await?;
    scale_out::three_instances(bench, &stack, r).await?;
    ceilings::raw_produce_and_consume(bench, &stack, r).await?;
    let mut catchup = restarts::order_service_catchup(bench, &stack, r).await?;
    restarts::topic_id_scan(&stack, &catchup, r).await?;
    catchup.stop();
    restarts::cart_service_startup_loaded(bench, &stack, r).await?;
    stack.stop();
    Ok(())
}

/// Samples the CPU and RSS of `procs` (and of this process) while `f` runs.
async fn sampled<T, F>(
    phase: &str,
    procs: &[(&str, u32)],
    r: &mut Results,
    f: F,
) -> anyhow::Result<T>
where
    F: Future<Output = anyhow::Result<T>>,
{
    let mut pids: Vec<u32> = procs.iter().map(|(_, pid)| *pid).collect();
    pids.push(std::process::id());
    let sampler = Sampler::start(&pids);
    let result = f.await;
    let readings = sampler.finish();
    let mut names: Vec<String> = procs.iter().map(|(n, _)| n.to_string()).collect();
    names.push("bench (load generator / raw clients)".into());
    r.usages.push(PhaseUsage {
        phase: phase.to_string(),
        by_process: names
            .into_iter()
            .zip(readings)
            .filter_map(|(name, usage)| usage.map(|u| (name, u)))
            .collect(),
    });
    result
}

impl Bench<'_> {
    fn bin(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// Starts `command` as `name`, its output in the run's log directory.
    fn spawn(&self, name: &str, command: Command) -> anyhow::Result<Process> {
        Process::spawn(name, command, Output::LogFile(self.logs.clone()))
    }

    /// CartService on `port`, writing `topic`, its order index in `data`.
    fn cart_command(&self, stack: (&str, &str), port: u16, topic: &str, data: &Path) -> Command {
        let (bootstrap, registry_url) = stack;
        let mut c = Command::new(self.bin("cart-service"));
        c.env("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
            .env("SCHEMA_REGISTRY_URL", registry_url)
            .env("API_PORT", port.to_string())
            .env("KAFKA_TOPIC", topic)
            .env("DATA_DIR", data)
            .env("KAFKA_LINGER_MS", self.settings.linger_ms.to_string());
        c
    }

    /// OrderService on `port`, reading `topic` into a view in `data`.
    fn order_command(&self, stack: (&str, &str), port: u16, topic: &str, data: &Path) -> Command {
        let (bootstrap, registry_url) = stack;
        let mut c = Command::new(self.bin("order-service"));
        c.env("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
            .env("SCHEMA_REGISTRY_URL", registry_url)
            .env("API_PORT", port.to_string())
            .env("KAFKA_TOPIC", topic)
            .env("DATA_DIR", data)
            .env("KAFKA_FETCH_WAIT_MAX_MS", FETCH_WAIT_MAX_MS.to_string())
            // The scan of N records must not hit the default 60 s bound.
            .env("TOPIC_SCAN_TIMEOUT_MS", "1800000");
        if let Some(batch) = self.settings.apply_batch_size {
            c.env("APPLY_BATCH_SIZE", batch.to_string());
        }
        c
    }
}

impl Stack {
    /// The broker's bootstrap address and the registry's URL, as the services are given them.
    fn addrs(&self) -> (&str, &str) {
        (&self.bootstrap, &self.registry_url)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop();
    }
}
