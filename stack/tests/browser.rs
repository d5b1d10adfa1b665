//! The stack's web UIs in a real browser: headless Chromium, driven by Python Selenium
//! (`tests/browser/check_uis.py`), against a stack launched with `stack up`. Both Swagger UIs
//! (`/docs`) must list their operations and "Try it out" must work — create-order answers 201,
//! order-details 200 — and the registry's `/ui` must show the subject, its versions and their
//! schemas. On failure the script saves a screenshot and the page source under
//! `CARGO_TARGET_TMPDIR/browser-screenshots/` and the test prints their paths.
//!
//! The README's test command prepares `.tools/venv` with Selenium and installs Chromium and
//! ChromeDriver; `STACK_PYTHON` names another interpreter. Without them the test fails with
//! instructions, it never skips.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::Launched;

/// Longer than the script's own waits add up to; a hung browser fails the test instead of
/// hanging it.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(300);

#[test]
fn docs_try_it_out_and_registry_ui_work_in_chromium() {
    let python = testkit::test_python().unwrap();
    for (var, default) in [
        ("CHROMIUM", "/usr/bin/chromium"),
        ("CHROMEDRIVER", "/usr/bin/chromedriver"),
    ] {
        let path = std::env::var(var).unwrap_or_else(|_| default.to_string());
        assert!(
            Path::new(&path).exists(),
            "{path} is missing: install Debian's chromium and chromium-driver (the README's test \
             command does) or set {var}"
        );
    }
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-screenshots");
    let _ = std::fs::remove_dir_all(&shots);

    let data = tempfile::tempdir().unwrap();
    let stack = Launched::up(data.path());
    let ports = stack.ports;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/check_uis.py");

    let started = Instant::now();
    let finished = common::run_bounded(
        Command::new(&python)
            .arg("-u")
            .arg(script)
            .args([ports.cart_url(), ports.order_url(), ports.registry_url()])
            .arg(&shots),
        SCRIPT_DEADLINE,
    );
    let status = finished.status;
    let (stdout, stderr) = (&finished.stdout, &finished.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    drop(stack);

    let status = status.unwrap_or_else(|| {
        panic!(
            "the browser check did not finish within {SCRIPT_DEADLINE:?}; its output is above; \
             screenshots (if any) in {}",
            shots.display()
        )
    });
    assert!(
        status.success() && stdout.contains("browser checks passed"),
        "the browser check failed ({status}): {}\nscreenshots and page sources: {}\n\
         (full output above)",
        stdout
            .lines()
            .filter(|l| l.starts_with("FAIL")
                || l.starts_with("screenshot")
                || l.starts_with("page "))
            .collect::<Vec<_>>()
            .join("\n"),
        shots.display()
    );
    println!(
        "browser checks took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
