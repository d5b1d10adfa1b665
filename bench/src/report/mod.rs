//! What a run measured, and the files it becomes: `results.json`, `latency.png` and the Markdown
//! report (`BENCHMARKS.md`).
//!
//! Why a module apart from the phases: the phases only measure and fill [`Results`], grouped
//! by phase; how the numbers are shown (the JSON keys that `compare` and older runs rely on,
//! the tables, the method) is decided here, in one place, and a failed phase still leaves
//! everything measured before it to be written.

mod json;
mod markdown;

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use crate::load::{LoadReport, Mode};
use crate::plot::{self, Series};
use crate::procstat::Usage;
use crate::raw::{ConsumeResult, ProduceResult};
use crate::settings::Settings;

pub use json::ResultsFile;

/// Everything measured in one run, grouped by phase.
#[derive(Default)]
pub struct Results {
    pub run: RunInfo,
    /// Spawn → ready of each process, in the order measured (the stack's start, then the
    /// restarts on N records).
    pub startup: Vec<(String, Duration)>,
    /// End to end at fixed rates (open loop).
    pub fixed_rates: Vec<LoadReport>,
    /// The first record CartService wrote, to compare its size with the raw records'.
    pub cart_record: Option<ConsumeResult>,
    /// CartService alone, closed loop.
    pub closed_loop: Option<LoadReport>,
    pub ceilings: Ceilings,
    pub catchup: Catchup,
    pub scan: Option<Scan>,
    pub cart_loaded: Option<CartLoaded>,
    /// Three CartService instances in one group (`None`: not measured).
    pub scale_out: Option<ScaleOut>,
    /// CPU and memory of each process during each sampled phase.
    pub usages: Vec<PhaseUsage>,
    /// `perf` summaries (or why there is none), by process.
    pub profiles: Vec<(String, String)>,
}

/// The run as a whole: where, on what, and how busy the machine was around it.
#[derive(Default)]
pub struct RunInfo {
    pub machine: serde_json::Value,
    pub broker: String,
    pub orders: u64,
    pub busy_before: f64,
    pub busy_after: f64,
    pub load_before: String,
    pub load_after: String,
    pub total: Duration,
    /// The command line's arguments, repeated in the report's first line.
    pub args_line: String,
}

/// The broker's raw produce and consume ceilings on N real records.
#[derive(Default)]
pub struct Ceilings {
    pub encode_time: Duration,
    pub raw_value_len: usize,
    /// At the closed loop's concurrency.
    pub produce_window: Option<ProduceResult>,
    pub produce: Option<ProduceResult>,
    pub consume: Option<ConsumeResult>,
}

/// A fresh OrderService catching up with N records.
#[derive(Default)]
pub struct Catchup {
    pub applied: u64,
    /// Spawn → the last record applied.
    pub total: Duration,
    /// Ready → the last record applied.
    pub ingest: Duration,
}

impl Catchup {
    /// Records applied per second after ready.
    pub fn rate(&self) -> f64 {
        self.applied as f64 / self.ingest.as_secs_f64().max(1e-9)
    }
}

/// One `getAllOrderIdsFromTopic` over the catch-up topic.
#[derive(Clone, Copy)]
pub struct Scan {
    pub elapsed: Duration,
    pub ids: u64,
}

/// A fresh CartService loading N orders.
#[derive(Clone, Copy)]
pub struct CartLoaded {
    /// A fresh instance (empty `DATA_DIR`): spawn to ready, its order index built.
    pub ready: Duration,
    /// Its RSS right after ready (0: unreadable).
    pub rss: u64,
    /// The same instance restarted on its index: spawn to ready.
    pub restart: Duration,
    /// Its RSS right after ready (0: unreadable).
    pub restart_rss: u64,
    /// Records the restarted instance read from the topic (`cart_index_records_read_total`).
    pub reread: f64,
}

/// Three CartService instances sharing the topic's partitions: forwarding's cost, and what
/// three instances serve together on the same cores.
#[derive(Default)]
pub struct ScaleOut {
    pub instances: usize,
    pub partitions: i32,
    /// Spawn of the instances → every partition owned and spread over them.
    pub settle: Duration,
    /// The instance owning each partition (index: partition), as the probes found it.
    pub owners: Vec<usize>,
    /// Instance 0, only orders of its own partitions.
    pub to_owner: Option<ScaleOutRun>,
    /// Instance 0, only orders of partitions the others own: each one forwarded.
    pub forwarded: Option<ScaleOutRun>,
    /// Every instance at once, each sent only orders of its own partitions.
    pub spread_by_owner: Option<ScaleOutRun>,
    /// Every instance at once, each sent any order (as behind a plain load balancer).
    pub spread_any: Option<ScaleOutRun>,
}

impl ScaleOut {
    /// Partitions owned by `instance`.
    pub fn owned_by(&self, instance: usize) -> Vec<i32> {
        (0..self.partitions)
            .zip(&self.owners)
            .filter(|(_, owner)| **owner == instance)
            .map(|(p, _)| p)
            .collect()
    }
}

/// The ratios of the scale-out phase, within one run (`None`: a side was not measured).
#[derive(Debug, Clone, Copy, Default)]
pub struct ScaleOutRatios {
    /// Forwarded / to the owner: throughput, p50, p99 of create → 201.
    pub forwarded_vs_owner_throughput: Option<f64>,
    pub forwarded_vs_owner_p50: Option<f64>,
    pub forwarded_vs_owner_p99: Option<f64>,
    /// The closed-loop phase's single instance, orders/s.
    pub single_instance_throughput: Option<f64>,
    /// Three instances, each sent its own partitions' orders / the single instance.
    pub three_vs_one_throughput: Option<f64>,
    /// Three instances, any order to any instance / the single instance.
    pub three_any_order_vs_one_throughput: Option<f64>,
}

impl ScaleOut {
    /// The ratios, `single` being the closed-loop phase's single instance.
    pub fn ratios(&self, single: Option<&LoadReport>) -> ScaleOutRatios {
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        let throughput = |x: &Option<ScaleOutRun>| x.as_ref().map(|x| x.report.throughput());
        let at = |x: &Option<ScaleOutRun>, p: f64| {
            x.as_ref()
                .filter(|x| !x.report.create.is_empty())
                .map(|x| crate::load::ms_at(&x.report.create, p))
        };
        let single = single.map(LoadReport::throughput);
        ScaleOutRatios {
            forwarded_vs_owner_throughput: ratio(
                throughput(&self.forwarded),
                throughput(&self.to_owner),
            ),
            forwarded_vs_owner_p50: ratio(at(&self.forwarded, 50.0), at(&self.to_owner, 50.0)),
            forwarded_vs_owner_p99: ratio(at(&self.forwarded, 99.0), at(&self.to_owner, 99.0)),
            single_instance_throughput: single,
            three_vs_one_throughput: ratio(throughput(&self.spread_by_owner), single),
            three_any_order_vs_one_throughput: ratio(throughput(&self.spread_any), single),
        }
    }
}

/// One closed loop of the scale-out phase.
pub struct ScaleOutRun {
    pub report: LoadReport,
    /// What each sampled process used during it.
    pub usage: Vec<(String, Usage)>,
    /// Increase over the instances of `cart_forwarded_requests_total`, by outcome.
    pub forwarded_by_outcome: Vec<(String, f64)>,
    /// Increase over the instances of `cart_fenced_writes_total`.
    pub fenced: f64,
}

impl ScaleOutRun {
    /// CPU milliseconds per acknowledged (201) order of each process.
    pub fn cpu_ms_per_order(&self) -> Vec<(&str, f64)> {
        cpu_ms_per_order(&self.usage, self.report.created)
    }
}

/// CPU milliseconds per order of each process, given their usage while `orders` were created.
pub fn cpu_ms_per_order(usage: &[(String, Usage)], orders: u64) -> Vec<(&str, f64)> {
    usage
        .iter()
        .map(|(name, u)| {
            (
                name.as_str(),
                u.cpu_time.as_secs_f64() * 1e3 / (orders.max(1) as f64),
            )
        })
        .collect()
}

/// Usage of each sampled process during one phase.
#[derive(Default, Clone)]
pub struct PhaseUsage {
    pub phase: String,
    pub by_process: Vec<(String, Usage)>,
}

/// Writes `results.json` and `latency.png` into `results_dir`, and the Markdown report.
pub fn write_outputs(
    settings: &Settings,
    r: &Results,
    results_dir: &Path,
    report_path: &Path,
    failure: Option<&anyhow::Error>,
) -> anyhow::Result<()> {
    let plotted = plot_latency(r, &results_dir.join("latency.png"));
    if let Err(e) = &plotted {
        crate::say(format!("the plot failed: {e:#}"));
    }
    let generated = chrono::Local::now().format("%Y-%m-%d %H:%M").to_string();
    let file = ResultsFile::new(r, generated.clone(), failure);
    let json = serde_json::to_value(&file).context("serializing the results")?;
    let json_path = results_dir.join("results.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&json)?)
        .with_context(|| format!("writing {}", json_path.display()))?;

    let comparison = match &settings.compare_with {
        Some(path) => {
            let other: serde_json::Value = std::fs::read(path)
                .with_context(|| format!("reading {}", path.display()))
                .and_then(|bytes| {
                    serde_json::from_slice(&bytes)
                        .with_context(|| format!("parsing {}", path.display()))
                })?;
            Some(crate::compare::side_by_side(&json, &other))
        }
        None => None,
    };
    let md = markdown::report(
        settings,
        r,
        &generated,
        failure,
        comparison.as_deref(),
        plotted.is_ok(),
    );
    std::fs::write(report_path, md)
        .with_context(|| format!("writing {}", report_path.display()))?;
    Ok(())
}

/// Latency by percentile: end to end and create at each rate, then the closed loop's create.
fn plot_latency(r: &Results, png: &Path) -> anyhow::Result<()> {
    let open = |what: &str, pick: fn(&LoadReport) -> &hdrhistogram::Histogram<u64>| {
        r.fixed_rates
            .iter()
            .filter_map(|report| match report.mode {
                Mode::Open { rate } => Some(Series {
                    name: format!("{what} at {rate:.0}/s"),
                    histogram: pick(report),
                }),
                Mode::Closed => None,
            })
            .collect::<Vec<_>>()
    };
    let mut series = open("end to end", |x| &x.e2e);
    series.extend(open("create (201)", |x| &x.create));
    if let Some(closed) = &r.closed_loop {
        series.push(Series {
            name: format!("create, closed loop ({} conns)", closed.connections),
            histogram: &closed.create,
        });
    }
    plot::latency_by_percentile(
        png,
        "Order pipeline latency by percentile (open loop, from intended send time)",
        &series,
    )
}
