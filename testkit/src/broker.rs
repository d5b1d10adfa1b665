//! A broker process for one test: the embedded default on a free port in a temporary directory.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;

use crate::embedded::{Distribution, DEFAULT};
use crate::free_port;

/// A running broker with its own port and SQLite file; killed on drop.
pub struct Broker {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    binary: PathBuf,
    distribution: Distribution,
}

impl Broker {
    /// Starts a broker on a free port in a fresh temporary directory and waits until it accepts
    /// connections.
    pub fn start() -> anyhow::Result<Broker> {
        let distribution = DEFAULT;
        let binary = distribution.binary()?;
        let dir = tempfile::Builder::new()
            .prefix("broker-test-")
            .tempdir()
            .context("creating the broker's temporary directory")?;
        let port = free_port()?;
        let mut broker = Broker {
            child: None,
            port,
            dir,
            binary,
            distribution,
        };
        broker.spawn()?;
        Ok(broker)
    }

    /// `127.0.0.1:PORT`, for `bootstrap.servers`.
    pub fn bootstrap_servers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The directory holding the broker's data and log.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The broker's process ID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the broker (SIGKILL, like a crash). Its data stays for [`Broker::restart`].
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the broker (SIGSTOP): connections stay open and nothing answers, like a hung or
    /// partitioned broker. [`Broker::resume`] thaws it.
    pub fn pause(&self) -> anyhow::Result<()> {
        self.signal("-STOP")
    }

    /// Thaws a paused broker (SIGCONT).
    pub fn resume(&self) -> anyhow::Result<()> {
        self.signal("-CONT")
    }

    fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let child = self.child.as_ref().context("the broker is not running")?;
        let status = Command::new("kill")
            .arg(signal)
            .arg(child.id().to_string())
            .status()
            .context("running kill")?;
        anyhow::ensure!(status.success(), "kill {signal} failed");
        Ok(())
    }

    /// Starts the broker again on the same port with the same data.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn()
    }

    /// Creates a topic with `partitions` partitions.
    pub async fn create_topic(&self, name: &str, partitions: i32) -> anyhow::Result<()> {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap_servers())
            .create()
            .context("creating an admin client")?;
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        let results = admin
            .create_topics([&topic], &AdminOptions::new())
            .await
            .with_context(|| format!("creating topic {name}"))?;
        for result in results {
            if let Err((topic, code)) = result {
                bail!("creating topic {topic}: {code}");
            }
        }
        Ok(())
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log_path = self.dir.path().join("broker.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .context("opening the broker log")?;
        let log_err = log
            .try_clone()
            .context("duplicating the broker log handle")?;
        let child = self
            .distribution
            .command(&self.binary, self.port, self.dir.path())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
            if crate::probe::metadata(addr, Duration::from_secs(1)).is_ok() {
                // As the launcher does: tests run on the broker users get.
                return self
                    .distribution
                    .prepare(self.dir.path(), Duration::from_secs(20));
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    bail!(
                        "{} exited ({status}) before listening on {}: {}",
                        self.distribution.name,
                        self.port,
                        read_tail(&log_path)
                    );
                }
            }
            if Instant::now() > deadline {
                self.kill();
                bail!(
                    "{} did not answer a metadata request on {} within 20 s: {}",
                    self.distribution.name,
                    self.port,
                    read_tail(&log_path)
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.resume();
        self.kill();
    }
}

fn read_tail(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut file) = std::fs::File::open(path) {
        let _ = file.read_to_string(&mut text);
    }
    let start = text.len().saturating_sub(2000);
    text.get(start..).unwrap_or_default().to_string()
}
