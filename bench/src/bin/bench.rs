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
//! (`bench::phases`: start-up, idle, end-to-end at fixed rates, CartService closed loop, three
//! CartService instances in one group (forwarding's cost, their aggregate), the broker's raw
//! produce and consume ceilings, OrderService catch-up on N orders, the topic ID
//! scan, CartService start-up on N orders) while sampling each process's CPU and RSS from
//! `/proc`. It writes `bench/results/results.json`, `bench/results/latency.png` and
//! `BENCHMARKS.md` (`bench::report`). Why each phase is run the way it is, is written next to
//! it and in the generated method.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use bench::phases::{self, Bench};
use bench::report::{self, Results, RunInfo};
use bench::settings::Settings;
use bench::{procstat, say};
use clap::Parser;
use testkit::process::{self, SERVICES};

fn main() -> ExitCode {
    let settings = Settings::parse();
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
    match runtime.block_on(run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Builds, prepares the directories, runs the phases, writes what was measured (also when a
/// phase failed).
async fn run(settings: Settings) -> anyhow::Result<()> {
    let root = testkit::workspace_root();
    let begun = Instant::now();
    if !settings.skip_build {
        say("building the services (cargo build --release)");
        process::build_release(&SERVICES)?;
    }
    let bin_dir = settings
        .bin_dir
        .clone()
        .unwrap_or_else(|| root.join("target").join("release"));
    process::require_binaries(&bin_dir, &SERVICES)?;
    let distribution = testkit::embedded::Distribution::named(&settings.broker)?;
    let broker_bin = distribution.ensure_installed()?;
    let results_dir = settings
        .results_dir
        .clone()
        .unwrap_or_else(|| root.join("bench").join("results"));
    std::fs::create_dir_all(&results_dir)
        .with_context(|| format!("creating {}", results_dir.display()))?;
    let work = std::env::temp_dir().join(format!("bench-{}", uuid::Uuid::new_v4()));
    let logs = results_dir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    for dir in [
        "broker",
        "cart-main",
        "cart-loaded",
        "order-main",
        "order-catchup",
    ] {
        std::fs::create_dir_all(work.join(dir))
            .with_context(|| format!("creating {}", work.join(dir).display()))?;
    }
    say(format!("working directory {}", work.display()));

    let mut r = Results {
        run: RunInfo {
            machine: procstat::machine(),
            broker: format!("{} {}", distribution.name, distribution.version),
            orders: settings.orders,
            args_line: std::env::args().skip(1).collect::<Vec<_>>().join(" "),
            load_before: procstat::load_average(),
            busy_before: procstat::machine_busy(Duration::from_secs(2)),
            ..RunInfo::default()
        },
        ..Results::default()
    };
    say(format!(
        "machine busy {:.0} % before the run (load average {})",
        r.run.busy_before * 100.0,
        r.run.load_before
    ));

    let bench = Bench {
        settings: &settings,
        bin_dir,
        work,
        logs,
        distribution,
        broker_bin,
    };
    let outcome = phases::run(&bench, &mut r).await;
    r.run.busy_after = procstat::machine_busy(Duration::from_secs(1));
    r.run.load_after = procstat::load_average();
    r.run.total = begun.elapsed();
    if let Err(e) = &outcome {
        say(format!("a phase failed: {e:#}; writing what was measured"));
    }
    let report_path = settings
        .report
        .clone()
        .unwrap_or_else(|| root.join("BENCHMARKS.md"));
    report::write_outputs(
        &settings,
        &r,
        &results_dir,
        &report_path,
        outcome.as_ref().err(),
    )?;
    let _ = std::fs::remove_dir_all(&bench.work);
    say(format!(
        "done in {:.0} s; wrote {} and {}",
        r.run.total.as_secs_f64(),
        report_path.display(),
        results_dir.display()
    ));
    outcome
}
