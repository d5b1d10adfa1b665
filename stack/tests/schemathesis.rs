//! Property-based testing of both services' HTTP surface with schemathesis, against a stack
//! launched with `stack up`: every operation of CartService's and OrderService's OpenAPI
//! documents (`/api-docs/openapi.json`) gets generated valid and invalid requests (examples,
//! coverage of each parameter's edge cases, random fuzzing, and for OrderService stateful
//! sequences), and every answer must pass two checks (`tests/schemathesis/checks.py`):
//! no 5xx except a 503 that the operation documents, and every 4xx/5xx in the services' JSON
//! error shape. CartService runs first, so OrderService's view has orders to find.
//!
//! Bounded: [`MAX_EXAMPLES`] per operation and phase, each request at most 10 s (OrderService's
//! long poll `waitMs` is capped at 2 s by the checks' hook), each run killed after
//! [`RUN_DEADLINE`]. The seed is random; a failure prints it with a curl command that
//! reproduces each failing request.
//!
//! The README's test command installs schemathesis (pinned in `stack/src/main.rs`) into
//! `.tools/venv`; `STACK_PYTHON` names another interpreter. Without it the test fails with
//! instructions, it never skips.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::Launched;

/// Generated test cases per operation and phase.
const MAX_EXAMPLES: u32 = 25;

/// One schemathesis run takes about 30 s on two shared cores; a hung run fails instead.
const RUN_DEADLINE: Duration = Duration::from_secs(150);

const CHECKS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schemathesis/checks.py");

#[test]
fn no_generated_request_gets_an_undocumented_5xx_or_a_non_json_error() {
    let python = testkit::test_python().unwrap();
    let probe = Command::new(&python)
        .args(["-c", "import schemathesis"])
        .status()
        .unwrap();
    assert!(
        probe.success(),
        "{} has no schemathesis: run the README's test command (`cargo run -p stack -- test`), \
         which installs it, or set STACK_PYTHON",
        python.display()
    );

    let data = tempfile::tempdir().unwrap();
    let stack = Launched::up(data.path());
    let ports = stack.ports;
    // schemathesis keeps a cache in its working directory.
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();

    let mut failures = Vec::new();
    for (service, url) in [
        ("CartService", ports.cart_url()),
        ("OrderService", ports.order_url()),
    ] {
        let started = Instant::now();
        let mut command = Command::new(&python);
        command
            .args(["-m", "schemathesis.cli", "run"])
            .arg(format!("{url}/api-docs/openapi.json"))
            .args([
                "--checks",
                "no_undocumented_server_error,error_bodies_are_json",
            ])
            .args(["--max-examples", &MAX_EXAMPLES.to_string()])
            .args(["--request-timeout", "10", "--wait-for-schema", "30"])
            .args(["--no-color", "--workers", "1"])
            .env("SCHEMATHESIS_HOOKS", CHECKS)
            .current_dir(work.path());
        let finished = common::run_bounded(&mut command, RUN_DEADLINE);
        let status = finished.status;
        let (stdout, stderr) = (&finished.stdout, &finished.stderr);
        println!("===== schemathesis against {service} =====\n{stdout}");
        eprintln!("{stderr}");
        println!(
            "{service}: schemathesis took {:.1} s",
            started.elapsed().as_secs_f64()
        );
        match status {
            None => failures.push(format!(
                "{service}: schemathesis did not finish within {RUN_DEADLINE:?}"
            )),
            Some(status) if !status.success() => failures.push(format!(
                "{service}: schemathesis failed ({status}); its report is above"
            )),
            Some(_) => {
                // Proof that requests were made and checked, not an empty run.
                let generated = stdout.lines().find_map(|line| {
                    let (generated, passed) = line.trim().split_once(" generated, ")?;
                    let passed = passed.strip_suffix(" passed")?;
                    Some((generated.parse::<u32>().ok()?, passed.parse::<u32>().ok()?))
                });
                match generated {
                    Some((generated, passed)) if generated > 0 && generated == passed => {}
                    other => failures.push(format!(
                        "{service}: no 'N generated, N passed' summary in schemathesis' \
                         output (found {other:?})"
                    )),
                }
            }
        }
    }
    drop(stack);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
