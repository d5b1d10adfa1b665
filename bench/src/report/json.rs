//! `results.json`: the raw data of a run, as typed records.
//!
//! Why its own types: `compare` and later runs read these files back by key (older files too,
//! e.g. `bench/results/tansu/results.json`), so the keys and their nesting are a format to keep.
//! The top level stays flat, as it always was; the fields of one phase are grouped in one
//! struct and flattened into it.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{
    CartLoaded, Catchup, PhaseUsage, Results, ScaleOut, ScaleOutRatios, ScaleOutRun, Scan,
};
use crate::load::{self, LoadReport};
use crate::procstat::Usage;
use crate::raw::{ConsumeResult, ProduceResult};

const MIB: f64 = 1024.0 * 1024.0;

/// The whole file.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResultsFile<'a> {
    generated: String,
    #[serde(flatten)]
    run: RunJson<'a>,
    startup_seconds: BTreeMap<&'a str, f64>,
    end_to_end: Vec<serde_json::Value>,
    closed_loop: Option<serde_json::Value>,
    #[serde(flatten)]
    ceilings: CeilingsJson,
    catchup: CatchupJson,
    scan: Option<ScanJson>,
    cart_startup_loaded_seconds: Option<f64>,
    cart_index: Option<CartIndexJson>,
    usage: Vec<UsageJson<'a>>,
    scale_out: Option<ScaleOutJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure: Option<String>,
}

impl<'a> ResultsFile<'a> {
    pub fn new(r: &'a Results, generated: String, failure: Option<&anyhow::Error>) -> Self {
        ResultsFile {
            generated,
            run: RunJson {
                broker: &r.run.broker,
                machine: &r.run.machine,
                orders: r.run.orders,
                machine_busy_before: r.run.busy_before,
                machine_busy_after: r.run.busy_after,
                load_average_before: &r.run.load_before,
                load_average_after: &r.run.load_after,
                total_seconds: r.run.total.as_secs_f64(),
            },
            startup_seconds: r
                .startup
                .iter()
                .map(|(name, d)| (name.as_str(), d.as_secs_f64()))
                .collect(),
            end_to_end: r.fixed_rates.iter().map(LoadReport::to_json).collect(),
            closed_loop: r.closed_loop.as_ref().map(LoadReport::to_json),
            ceilings: CeilingsJson {
                raw_produce: r.ceilings.produce.as_ref().map(ProduceJson::from),
                raw_produce_at_loadgen_concurrency: r
                    .ceilings
                    .produce_window
                    .as_ref()
                    .map(ProduceWindowJson::from),
                raw_consume: r.ceilings.consume.as_ref().map(ConsumeJson::from),
            },
            catchup: CatchupJson::from(&r.catchup),
            scan: r.scan.map(ScanJson::from),
            cart_startup_loaded_seconds: r.cart_loaded.map(|l| l.ready.as_secs_f64()),
            cart_index: r.cart_loaded.map(CartIndexJson::from),
            usage: r.usages.iter().map(UsageJson::from).collect(),
            scale_out: r
                .scale_out
                .as_ref()
                .map(|s| ScaleOutJson::new(s, r.closed_loop.as_ref())),
            failure: failure.map(|e| format!("{e:#}")),
        }
    }
}

/// Three CartService instances: who owns what, the four closed loops, and the ratios the
/// issue asks for (within this run).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ScaleOutJson<'a> {
    instances: usize,
    partitions: i32,
    settle_seconds: f64,
    /// The owning instance of each partition (index: partition).
    owners: &'a [usize],
    to_owner: Option<ScaleOutRunJson<'a>>,
    forwarded: Option<ScaleOutRunJson<'a>>,
    three_instances_by_owner: Option<ScaleOutRunJson<'a>>,
    three_instances_any_order: Option<ScaleOutRunJson<'a>>,
    ratios: ScaleOutRatiosJson,
}

impl<'a> ScaleOutJson<'a> {
    fn new(s: &'a ScaleOut, single: Option<&LoadReport>) -> Self {
        let run = |x: &'a Option<ScaleOutRun>| x.as_ref().map(ScaleOutRunJson::from);
        ScaleOutJson {
            instances: s.instances,
            partitions: s.partitions,
            settle_seconds: s.settle.as_secs_f64(),
            owners: &s.owners,
            to_owner: run(&s.to_owner),
            forwarded: run(&s.forwarded),
            three_instances_by_owner: run(&s.spread_by_owner),
            three_instances_any_order: run(&s.spread_any),
            ratios: s.ratios(single).into(),
        }
    }
}

/// One closed loop: the load generator's report, then what the instances counted and what
/// each process spent per acknowledged order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ScaleOutRunJson<'a> {
    #[serde(flatten)]
    load: serde_json::Value,
    /// 201s that carried `x-cart-forwarded`.
    forwarded_answers: u64,
    /// `cart_forwarded_requests_total` increase over the instances, by outcome.
    forwarded_by_outcome: BTreeMap<&'a str, f64>,
    fenced_writes: f64,
    cpu_ms_per_order: BTreeMap<&'a str, f64>,
    processes: Vec<ProcessUsageJson<'a>>,
}

impl<'a> From<&'a ScaleOutRun> for ScaleOutRunJson<'a> {
    fn from(x: &'a ScaleOutRun) -> Self {
        ScaleOutRunJson {
            load: x.report.to_json(),
            forwarded_answers: x.report.forwarded,
            forwarded_by_outcome: x
                .forwarded_by_outcome
                .iter()
                .map(|(k, v)| (k.as_str(), *v))
                .collect(),
            fenced_writes: x.fenced,
            cpu_ms_per_order: x.cpu_ms_per_order().into_iter().collect(),
            processes: x
                .usage
                .iter()
                .map(|(name, usage)| ProcessUsageJson::new(name, usage))
                .collect(),
        }
    }
}

/// The ratios, `null` when a side was not measured.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ScaleOutRatiosJson {
    /// Forwarded / to the owner.
    forwarded_vs_owner_throughput: Option<f64>,
    forwarded_vs_owner_p50: Option<f64>,
    forwarded_vs_owner_p99: Option<f64>,
    /// The closed-loop phase's single instance.
    single_instance_throughput: Option<f64>,
    /// Three instances (by owner) / the single instance.
    three_vs_one_throughput: Option<f64>,
    /// Three instances (any order) / the single instance.
    three_any_order_vs_one_throughput: Option<f64>,
}

impl From<ScaleOutRatios> for ScaleOutRatiosJson {
    fn from(x: ScaleOutRatios) -> Self {
        ScaleOutRatiosJson {
            forwarded_vs_owner_throughput: x.forwarded_vs_owner_throughput,
            forwarded_vs_owner_p50: x.forwarded_vs_owner_p50,
            forwarded_vs_owner_p99: x.forwarded_vs_owner_p99,
            single_instance_throughput: x.single_instance_throughput,
            three_vs_one_throughput: x.three_vs_one_throughput,
            three_any_order_vs_one_throughput: x.three_any_order_vs_one_throughput,
        }
    }
}

/// CartService's order index: built by a fresh instance, then restarted on.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CartIndexJson {
    cold_start_seconds: f64,
    #[serde(rename = "coldStartRssMiB")]
    cold_start_rss_mib: f64,
    restart_seconds: f64,
    #[serde(rename = "restartRssMiB")]
    restart_rss_mib: f64,
    restart_records_read: f64,
}

impl From<CartLoaded> for CartIndexJson {
    fn from(l: CartLoaded) -> Self {
        CartIndexJson {
            cold_start_seconds: l.ready.as_secs_f64(),
            cold_start_rss_mib: l.rss as f64 / MIB,
            restart_seconds: l.restart.as_secs_f64(),
            restart_rss_mib: l.restart_rss as f64 / MIB,
            restart_records_read: l.reread,
        }
    }
}

/// The run as a whole.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RunJson<'a> {
    broker: &'a str,
    machine: &'a serde_json::Value,
    orders: u64,
    machine_busy_before: f64,
    machine_busy_after: f64,
    load_average_before: &'a str,
    load_average_after: &'a str,
    total_seconds: f64,
}

/// The raw ceilings phase.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CeilingsJson {
    raw_produce: Option<ProduceJson>,
    raw_produce_at_loadgen_concurrency: Option<ProduceWindowJson>,
    raw_consume: Option<ConsumeJson>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProduceJson {
    records: u64,
    seconds: f64,
    rate: f64,
    window: usize,
    ack_p50_ms: f64,
    ack_p99_ms: f64,
}

impl From<&ProduceResult> for ProduceJson {
    fn from(p: &ProduceResult) -> Self {
        ProduceJson {
            records: p.records,
            seconds: p.elapsed.as_secs_f64(),
            rate: p.rate(),
            window: p.window,
            ack_p50_ms: load::ms_at(&p.ack, 50.0),
            ack_p99_ms: load::ms_at(&p.ack, 99.0),
        }
    }
}

/// The smaller produce at the closed loop's concurrency (no latency kept).
#[derive(Serialize)]
struct ProduceWindowJson {
    records: u64,
    seconds: f64,
    rate: f64,
    window: usize,
}

impl From<&ProduceResult> for ProduceWindowJson {
    fn from(p: &ProduceResult) -> Self {
        ProduceWindowJson {
            records: p.records,
            seconds: p.elapsed.as_secs_f64(),
            rate: p.rate(),
            window: p.window,
        }
    }
}

#[derive(Serialize)]
struct ConsumeJson {
    records: u64,
    seconds: f64,
    rate: f64,
    bytes: u64,
}

impl From<&ConsumeResult> for ConsumeJson {
    fn from(c: &ConsumeResult) -> Self {
        ConsumeJson {
            records: c.records,
            seconds: c.elapsed.as_secs_f64(),
            rate: c.rate(),
            bytes: c.bytes,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CatchupJson {
    applied: u64,
    total_seconds: f64,
    ingest_seconds: f64,
}

impl From<&Catchup> for CatchupJson {
    fn from(c: &Catchup) -> Self {
        CatchupJson {
            applied: c.applied,
            total_seconds: c.total.as_secs_f64(),
            ingest_seconds: c.ingest.as_secs_f64(),
        }
    }
}

#[derive(Serialize)]
struct ScanJson {
    seconds: f64,
    ids: u64,
}

impl From<Scan> for ScanJson {
    fn from(s: Scan) -> Self {
        ScanJson {
            seconds: s.elapsed.as_secs_f64(),
            ids: s.ids,
        }
    }
}

#[derive(Serialize)]
struct UsageJson<'a> {
    phase: &'a str,
    processes: Vec<ProcessUsageJson<'a>>,
}

impl<'a> From<&'a PhaseUsage> for UsageJson<'a> {
    fn from(u: &'a PhaseUsage) -> Self {
        UsageJson {
            phase: &u.phase,
            processes: u
                .by_process
                .iter()
                .map(|(name, usage)| ProcessUsageJson::new(name, usage))
                .collect(),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProcessUsageJson<'a> {
    name: &'a str,
    cpu_cores: f64,
    #[serde(rename = "rssEndMiB")]
    rss_end_mib: f64,
    #[serde(rename = "rssPeakMiB")]
    rss_peak_mib: f64,
    seconds: f64,
}

impl<'a> ProcessUsageJson<'a> {
    fn new(name: &'a str, x: &Usage) -> Self {
        ProcessUsageJson {
            name,
            cpu_cores: x.cpu_cores,
            rss_end_mib: x.rss_end as f64 / MIB,
            rss_peak_mib: x.rss_peak as f64 / MIB,
            seconds: x.wall.as_secs_f64(),
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::time::Duration;

    use super::*;
    use crate::load::{new_histogram, Mode};
    use crate::report::{CartLoaded, Ceilings, ScaleOut, ScaleOutRun};

    fn histogram() -> hdrhistogram::Histogram<u64> {
        let mut h = new_histogram();
        for us in [800, 1_200, 5_000] {
            h.record(us).expect("in range");
        }
        h
    }

    fn load_report(mode: Mode) -> LoadReport {
        LoadReport {
            mode,
            connections: 16,
            sent: 3,
            created: 3,
            forwarded: 0,
            followed: 3,
            elapsed: Duration::from_secs(1),
            create: histogram(),
            e2e: histogram(),
            max_send_lag: Duration::from_millis(1),
            errors: Default::default(),
        }
    }

    /// Every phase measured, as after a whole run.
    pub(in crate::report) fn full_results() -> Results {
        let produce = ProduceResult {
            records: 1_000,
            elapsed: Duration::from_secs(1),
            ack: histogram(),
            window: 256,
        };
        let consume = ConsumeResult {
            records: 1_000,
            bytes: 100_000,
            elapsed: Duration::from_millis(500),
            first_value_len: 90,
            first_headers_len: 60,
        };
        Results {
            run: super::super::RunInfo {
                machine: serde_json::json!({"cores": 2}),
                broker: "Nisshi 0.8.1".into(),
                orders: 1_000,
                ..Default::default()
            },
            startup: vec![(
                "nisshi broker (listening)".into(),
                Duration::from_millis(80),
            )],
            fixed_rates: vec![
                load_report(Mode::Open { rate: 100.0 }),
                load_report(Mode::Open { rate: 1000.0 }),
            ],
            cart_record: Some(consume.clone()),
            closed_loop: Some(load_report(Mode::Closed)),
            ceilings: Ceilings {
                encode_time: Duration::from_millis(10),
                raw_value_len: 90,
                produce_window: Some(produce.clone()),
                produce: Some(produce),
                consume: Some(consume),
            },
            catchup: Catchup {
                applied: 1_000,
                total: Duration::from_secs(2),
                ingest: Duration::from_secs(1),
            },
            scan: Some(Scan {
                elapsed: Duration::from_millis(300),
                ids: 1_000,
            }),
            cart_loaded: Some(CartLoaded {
                ready: Duration::from_millis(700),
                rss: 1 << 20,
                restart: Duration::from_millis(300),
                restart_rss: 1 << 20,
                reread: 0.0,
            }),
            usages: vec![PhaseUsage {
                phase: "idle (5 s)".into(),
                by_process: vec![("broker".into(), Usage::default())],
            }],
            scale_out: Some(scale_out()),
            profiles: Vec::new(),
        }
    }

    fn scale_out_run(forwarded: u64) -> ScaleOutRun {
        let mut report = load_report(Mode::Closed);
        report.forwarded = forwarded;
        ScaleOutRun {
            report,
            usage: vec![(
                "cart-service-0".into(),
                Usage {
                    cpu_time: Duration::from_millis(6),
                    ..Usage::default()
                },
            )],
            forwarded_by_outcome: vec![("forwarded".into(), forwarded as f64)],
            fenced: 0.0,
        }
    }

    fn scale_out() -> ScaleOut {
        ScaleOut {
            instances: 3,
            partitions: 3,
            settle: Duration::from_secs(4),
            owners: vec![2, 0, 1],
            to_owner: Some(scale_out_run(0)),
            forwarded: Some(scale_out_run(3)),
            spread_by_owner: Some(scale_out_run(0)),
            spread_any: None,
        }
    }

    fn keys(v: &serde_json::Value) -> Vec<&str> {
        v.as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect()
    }

    #[test]
    fn the_file_keeps_its_flat_keys_in_their_order() {
        let r = full_results();
        let v = serde_json::to_value(ResultsFile::new(&r, "now".into(), None)).expect("serializes");
        assert_eq!(
            keys(&v),
            [
                "generated",
                "broker",
                "machine",
                "orders",
                "machineBusyBefore",
                "machineBusyAfter",
                "loadAverageBefore",
                "loadAverageAfter",
                "totalSeconds",
                "startupSeconds",
                "endToEnd",
                "closedLoop",
                "rawProduce",
                "rawProduceAtLoadgenConcurrency",
                "rawConsume",
                "catchup",
                "scan",
                "cartStartupLoadedSeconds",
                "cartIndex",
                "usage",
                "scaleOut",
            ]
        );
        assert_eq!(
            keys(&v["scaleOut"]),
            [
                "instances",
                "partitions",
                "settleSeconds",
                "owners",
                "toOwner",
                "forwarded",
                "threeInstancesByOwner",
                "threeInstancesAnyOrder",
                "ratios",
            ]
        );
        assert_eq!(v["scaleOut"]["owners"], serde_json::json!([2, 0, 1]));
        assert!(v["scaleOut"]["threeInstancesAnyOrder"].is_null(), "{v}");
        let run = &v["scaleOut"]["forwarded"];
        assert_eq!(run["throughput"], 3.0, "the load report's keys: {run}");
        assert_eq!(run["forwardedAnswers"], 3);
        assert_eq!(run["cpuMsPerOrder"]["cart-service-0"], 2.0);
        let ratios = &v["scaleOut"]["ratios"];
        assert_eq!(ratios["forwardedVsOwnerThroughput"], 1.0);
        assert_eq!(ratios["threeVsOneThroughput"], 1.0);
        assert!(ratios["threeAnyOrderVsOneThroughput"].is_null(), "{ratios}");
        assert_eq!(
            keys(&v["rawProduce"]),
            ["records", "seconds", "rate", "window", "ackP50Ms", "ackP99Ms"]
        );
        assert_eq!(
            keys(&v["rawProduceAtLoadgenConcurrency"]),
            ["records", "seconds", "rate", "window"]
        );
        assert_eq!(
            keys(&v["rawConsume"]),
            ["records", "seconds", "rate", "bytes"]
        );
        assert_eq!(
            keys(&v["catchup"]),
            ["applied", "totalSeconds", "ingestSeconds"]
        );
        assert_eq!(keys(&v["scan"]), ["seconds", "ids"]);
        assert_eq!(keys(&v["usage"][0]), ["phase", "processes"]);
        assert_eq!(
            keys(&v["usage"][0]["processes"][0]),
            ["name", "cpuCores", "rssEndMiB", "rssPeakMiB", "seconds"]
        );
    }

    #[test]
    fn a_failure_is_named_and_unmeasured_phases_are_null() {
        let mut r = full_results();
        r.scan = None;
        r.ceilings.produce = None;
        let error = anyhow::anyhow!("the scan answered 500");
        let v = serde_json::to_value(ResultsFile::new(&r, "now".into(), Some(&error)))
            .expect("serializes");
        assert_eq!(v["failure"], "the scan answered 500");
        assert!(v.get("scan").is_some_and(serde_json::Value::is_null), "{v}");
        assert!(v["rawProduce"].is_null(), "{v}");
    }

    /// `--compare-with` reads an earlier run's file with the same code as this run's: every
    /// figure must be found in both (the stored Tansu run predates these types).
    #[test]
    fn compare_finds_every_figure_in_this_file_and_in_a_stored_run() {
        let r = full_results();
        let this =
            serde_json::to_value(ResultsFile::new(&r, "now".into(), None)).expect("serializes");
        let stored = testkit::workspace_root().join("bench/results/tansu/results.json");
        let other: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&stored).expect("the stored Tansu run"))
                .expect("JSON");
        let md = crate::compare::side_by_side(&this, &other);
        let rows: Vec<&str> = md.lines().filter(|l| l.starts_with("| ")).skip(2).collect();
        assert!(rows.len() >= 10, "{md}");
        for row in rows {
            assert!(!row.contains(" – "), "a figure is missing: {row}\n{md}");
        }
    }
}
