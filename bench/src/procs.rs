//! Starting and stopping the stack's real processes for the benchmark.
//!
//! Why not the launcher (`stack up`) or the in-process library entry points: the benchmark
//! needs a pid per service (to read its CPU and RSS from `/proc`), a fresh broker in a
//! temporary directory, free ports, and exact start-up times (spawn → `/ready` 200). Each
//! process writes its log to a file in the run's directory, never to a pipe that could fill.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::http::Connection;

/// A running process of the stack.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub started: Instant,
    pub log: PathBuf,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts `command` with its output in `{log_dir}/{name}.log`.
    pub fn spawn(name: &str, mut command: Command, log_dir: &Path) -> anyhow::Result<Proc> {
        let log = log_dir.join(format!("{name}.log"));
        let file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = file.try_clone().context("cloning a log file handle")?;
        let started = Instant::now();
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(err))
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Proc {
            name: name.to_string(),
            child,
            started,
            log,
        })
    }

    /// Waits until `GET /ready` on `port` answers 200; returns the time since spawn.
    pub async fn wait_ready(&mut self, port: u16, limit: Duration) -> anyhow::Result<Duration> {
        let deadline = Instant::now() + limit;
        let addr = format!("127.0.0.1:{port}");
        let mut conn = Connection::new(addr, Duration::from_secs(5));
        loop {
            if let Ok(response) = conn.get("/ready").await {
                if response.status == 200 {
                    return Ok(self.started.elapsed());
                }
            }
            self.check_alive()?;
            if Instant::now() > deadline {
                bail!(
                    "{} was not ready within {limit:?}; see {}",
                    self.name,
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until the port accepts TCP connections (the broker has no `/ready`).
    pub async fn wait_listening(&mut self, port: u16, limit: Duration) -> anyhow::Result<Duration> {
        let deadline = Instant::now() + limit;
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(self.started.elapsed());
            }
            self.check_alive()?;
            if Instant::now() > deadline {
                bail!("{} did not listen within {limit:?}", self.name);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Ok(Some(status)) = self.child.try_wait() {
            bail!(
                "{} exited ({status}); see {}",
                self.name,
                self.log.display()
            );
        }
        Ok(())
    }

    /// SIGTERM, up to 15 s for a graceful exit, then SIGKILL.
    pub fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Reads a counter or gauge from a Prometheus text exposition (sum over its label sets).
pub fn prometheus_value(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        if let Some(value) = rest
            .rsplit(' ')
            .next()
            .and_then(|v| v.trim().parse::<f64>().ok())
        {
            *found.get_or_insert(0.0) += value;
        }
    }
    found
}

/// `cargo build --release -p …` of the given packages, from the workspace root.
pub fn build_release(packages: &[&str]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .current_dir(testkit::workspace_root())
        .args(["build", "--release"]);
    for p in packages {
        build.args(["-p", p]);
    }
    let status = build.status().context("running cargo build")?;
    if !status.success() {
        bail!("cargo build --release failed ({status})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::prometheus_value;

    #[test]
    fn reads_counters_with_and_without_labels() {
        let text = "# HELP x\norder_events_applied_total 42\nlag{partition=\"0\"} 3\nlag{partition=\"1\"} 4\nlagx 9\n";
        assert_eq!(
            prometheus_value(text, "order_events_applied_total"),
            Some(42.0)
        );
        assert_eq!(prometheus_value(text, "lag"), Some(7.0));
        assert_eq!(prometheus_value(text, "missing"), None);
    }
}
