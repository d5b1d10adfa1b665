//! Confluent's own Python client (confluent-kafka) against this registry and a real broker.
//!
//! The README's test command prepares `.tools/venv` with the client; `STACK_PYTHON` names
//! another interpreter. Without one the test fails with instructions, it never skips.

use crate::common::TestRegistry;

#[tokio::test]
async fn confluents_python_client_cannot_tell_the_difference() -> anyhow::Result<()> {
    let python = testkit::test_python()?;
    let r = TestRegistry::start().await?;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/confluent/client_check.py"
    );
    let bootstrap = r.broker.bootstrap_servers();
    let url = r.url.clone();
    let output = tokio::process::Command::new(&python)
        .args([script, &url, &bootstrap])
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    anyhow::ensure!(
        output.status.success() && stdout.contains("confluent client checks passed"),
        "the Confluent client failed:\n{stdout}\n{stderr}"
    );
    Ok(())
}
