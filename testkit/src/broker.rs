//! A broker process for one test: the embedded default on a free port in a temporary directory,
//! plaintext by default, or secured (TLS, SASL SCRAM users, or both) through [`Broker::builder`]
//! so the services' TLS and SASL support is tested against a real secured listener.
//!
//! How Nisshi 0.8.1 is secured, found by trying it: `--cert`/`--key` make the one listener
//! TLS-only and `--authentication` makes it require SASL (SCRAM-SHA-256/512 only). Users are
//! rows in the broker's storage, created with `nisshi user create`, which talks plaintext Kafka
//! without authenticating, so it cannot reach a secured listener ("This command connects in
//! plaintext and does not authenticate"). The builder therefore first starts the broker
//! unsecured on the same port and database, creates the users, stops it, and starts it secured.
//! Users live in the database, so [`Broker::restart`] only has to repeat the secured flags.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;

use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::embedded::{Distribution, DEFAULT, NISSHI};
use crate::free_port;
use crate::tls::{TestPki, Validity};

/// A SASL SCRAM mechanism the embedded broker supports (it has no PLAIN and no OAUTHBEARER).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScramMechanism {
    /// SCRAM-SHA-256.
    Sha256,
    /// SCRAM-SHA-512.
    Sha512,
}

impl ScramMechanism {
    /// The name librdkafka's `sasl.mechanism` takes.
    pub fn librdkafka_name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    fn nisshi_name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "scram256",
            ScramMechanism::Sha512 => "scram512",
        }
    }
}

#[derive(Debug, Clone)]
struct SaslUser {
    name: String,
    password: String,
    mechanism: ScramMechanism,
}

/// How a broker is secured: TLS files copied into its own directory (so they outlive the
/// [`TestPki`]) and its SASL users.
#[derive(Debug, Clone, Default)]
struct Security {
    tls: Option<TlsFiles>,
    users: Vec<SaslUser>,
}

#[derive(Debug, Clone)]
struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
}

impl Security {
    fn is_secured(&self) -> bool {
        self.tls.is_some() || !self.users.is_empty()
    }
}

/// Starts a secured [`Broker`]: `Broker::builder().tls(&pki, Validity::Current)
/// .sasl_user("alice", "secret", ScramMechanism::Sha512).start()`.
#[derive(Default)]
pub struct BrokerBuilder<'a> {
    tls: Option<(&'a TestPki, Validity)>,
    users: Vec<SaslUser>,
}

impl<'a> BrokerBuilder<'a> {
    /// A TLS-only listener with a certificate from `pki` for `127.0.0.1` and `localhost` (what
    /// clients dial and what the broker advertises). [`Validity::Expired`] gives a broker whose
    /// certificate has expired.
    pub fn tls(mut self, pki: &'a TestPki, validity: Validity) -> Self {
        self.tls = Some((pki, validity));
        self
    }

    /// Requires SASL authentication and adds a SCRAM user (call again for more users).
    pub fn sasl_user(mut self, name: &str, password: &str, mechanism: ScramMechanism) -> Self {
        self.users.push(SaslUser {
            name: name.to_string(),
            password: password.to_string(),
            mechanism,
        });
        self
    }

    /// Starts the broker and waits until it answers a metadata request over its secured
    /// listener (authenticated as the first user; the broker's certificate is not verified
    /// by this readiness check, so a broker with an expired certificate starts too).
    pub fn start(self) -> anyhow::Result<Broker> {
        let mut broker = Broker::create()?;
        if let Some((pki, validity)) = self.tls {
            let dir = broker.dir.path().join("tls");
            std::fs::create_dir_all(&dir).context("creating the broker's TLS directory")?;
            let issued = pki.issue("broker", &["127.0.0.1", "localhost"], validity)?;
            let files = TlsFiles {
                cert: dir.join("broker.pem"),
                key: dir.join("broker.key"),
                ca: dir.join("ca.pem"),
            };
            for (from, to) in [
                (&issued.cert, &files.cert),
                (&issued.key, &files.key),
                (&pki.ca_file().to_path_buf(), &files.ca),
            ] {
                std::fs::copy(from, to)
                    .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
            }
            broker.security.tls = Some(files);
        }
        broker.security.users = self.users;
        if broker.security.is_secured() && broker.distribution != NISSHI {
            bail!(
                "a secured broker needs {} ({} has no TLS listener or SCRAM users)",
                NISSHI.name,
                broker.distribution.name
            );
        }
        if !broker.security.users.is_empty() {
            broker.create_users()?;
        }
        broker.spawn()?;
        Ok(broker)
    }
}

/// A running broker with its own port and SQLite file; killed on drop.
pub struct Broker {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    binary: PathBuf,
    distribution: Distribution,
    security: Security,
}

impl Broker {
    /// Starts a broker on a free port in a fresh temporary directory and waits until it accepts
    /// connections.
    pub fn start() -> anyhow::Result<Broker> {
        let mut broker = Broker::create()?;
        broker.spawn()?;
        Ok(broker)
    }

    /// A builder for a broker with TLS and/or SASL users; see [`BrokerBuilder`].
    pub fn builder<'a>() -> BrokerBuilder<'a> {
        BrokerBuilder::default()
    }

    fn create() -> anyhow::Result<Broker> {
        let distribution = DEFAULT;
        let binary = distribution.binary()?;
        let dir = tempfile::Builder::new()
            .prefix("broker-test-")
            .tempdir()
            .context("creating the broker's temporary directory")?;
        let port = free_port()?;
        Ok(Broker {
            child: None,
            port,
            dir,
            binary,
            distribution,
            security: Security::default(),
        })
    }

    /// `127.0.0.1:PORT`, for `bootstrap.servers`.
    pub fn bootstrap_servers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The librdkafka properties a client needs besides `bootstrap.servers`, authenticating as
    /// the first SASL user: `security.protocol` (`PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or
    /// `SASL_SSL`), with TLS `ssl.ca.location` (the CA that issued the broker's certificate),
    /// with SASL `sasl.mechanism`, `sasl.username` and `sasl.password`.
    pub fn client_properties(&self) -> Vec<(String, String)> {
        self.properties(self.security.users.first())
    }

    /// As [`Broker::client_properties`], authenticating as the SASL user `name`.
    pub fn client_properties_as(&self, name: &str) -> anyhow::Result<Vec<(String, String)>> {
        let user = self
            .security
            .users
            .iter()
            .find(|user| user.name == name)
            .with_context(|| format!("the broker has no SASL user {name:?}"))?;
        Ok(self.properties(Some(user)))
    }

    /// A client configuration for this broker: `bootstrap.servers` and
    /// [`Broker::client_properties`].
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", self.bootstrap_servers());
        for (name, value) in self.client_properties() {
            config.set(name, value);
        }
        config
    }

    fn properties(&self, user: Option<&SaslUser>) -> Vec<(String, String)> {
        let tls = self.security.tls.as_ref();
        let protocol = match (tls.is_some(), user.is_some()) {
            (false, false) => "PLAINTEXT",
            (true, false) => "SSL",
            (false, true) => "SASL_PLAINTEXT",
            (true, true) => "SASL_SSL",
        };
        let mut properties = vec![("security.protocol".to_string(), protocol.to_string())];
        if let Some(tls) = tls {
            properties.push(("ssl.ca.location".to_string(), tls.ca.display().to_string()));
        }
        if let Some(user) = user {
            properties.extend([
                (
                    "sasl.mechanism".to_string(),
                    user.mechanism.librdkafka_name().to_string(),
                ),
                ("sasl.username".to_string(), user.name.clone()),
                ("sasl.password".to_string(), user.password.clone()),
            ]);
        }
        properties
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

    /// Starts the broker again on the same port with the same data (and the same TLS
    /// certificate and users).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn()
    }

    /// Creates a topic with `partitions` partitions.
    pub async fn create_topic(&self, name: &str, partitions: i32) -> anyhow::Result<()> {
        let admin: AdminClient<DefaultClientContext> = self
            .client_config()
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

    /// Creates the SASL users: the broker started without security on the same port and
    /// database, `nisshi user create` per user, then stopped.
    fn create_users(&mut self) -> anyhow::Result<()> {
        let security = std::mem::take(&mut self.security);
        let created = self.spawn().and_then(|()| {
            for user in &security.users {
                let output = Command::new(&self.binary)
                    .arg("user")
                    .arg("create")
                    .args(["--broker", &format!("tcp://127.0.0.1:{}", self.port)])
                    .args(["--mechanism", user.mechanism.nisshi_name()])
                    .arg(&user.name)
                    .arg(&user.password)
                    .stdin(Stdio::null())
                    .output()
                    .context("running nisshi user create")?;
                if !output.status.success() {
                    bail!(
                        "nisshi user create {} ({}) failed: {}",
                        user.name,
                        user.mechanism.librdkafka_name(),
                        String::from_utf8_lossy(&output.stderr)
                    );
                }
            }
            Ok(())
        });
        self.kill();
        self.security = security;
        created
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
        let mut command = self
            .distribution
            .command(&self.binary, self.port, self.dir.path());
        if let Some(tls) = &self.security.tls {
            command.arg("--cert").arg(&tls.cert);
            command.arg("--key").arg(&tls.key);
        }
        if !self.security.users.is_empty() {
            command.arg("--authentication");
        }
        let readiness = if self.security.is_secured() {
            Some(self.readiness_client()?)
        } else {
            None
        };
        let child = command
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
            let answered = match &readiness {
                // The plain probe speaks neither TLS nor SASL.
                Some(client) => client.fetch_metadata(None, Duration::from_secs(1)).is_ok(),
                None => crate::probe::metadata(addr, Duration::from_secs(1)).is_ok(),
            };
            if answered {
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

impl Broker {
    /// A client for the readiness check of a secured broker: the first user's credentials, the
    /// certificate not verified (a test may start a broker with an expired one on purpose).
    fn readiness_client(&self) -> anyhow::Result<BaseConsumer> {
        let mut config = self.client_config();
        if self.security.tls.is_some() {
            config
                .set("enable.ssl.certificate.verification", "false")
                .set("ssl.endpoint.identification.algorithm", "none");
        }
        config
            .set("log_level", "0")
            .set("reconnect.backoff.ms", "25")
            .set("reconnect.backoff.max.ms", "250")
            .create()
            .context("creating the broker's readiness client")
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
