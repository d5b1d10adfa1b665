//! One way for every binary to talk to Kafka: settings, client configuration, topic creation,
//! reading a topic to its end, and telling a misconfigured cluster from an unreachable one.
//!
//! Why a module: the three binaries each built their librdkafka configuration, created topics
//! and read topics to their end in their own way, and had drifted (who wins between the
//! operator's `KAFKA_PROPERTY_*` and built-in tuning; blocking metadata calls inside async code).
//! Here there is one rule, and it is documented where operators look (`--help`, README):
//!
//! 1. **built-in tuning** (`linger.ms`, `fetch.wait.max.ms`, …) is the default;
//! 2. **the operator's properties** (`KAFKA_PROPERTY_<NAME>`, then `--kafka-property`, then the
//!    secret files such as `KAFKA_SASL_PASSWORD_FILE`) override it;
//! 3. **settings a guarantee depends on** (`acks=all` and idempotence for "an acknowledged order
//!    is durable", `bootstrap.servers` from its own setting) cannot be overridden: an operator
//!    property that contradicts one is a start-up error naming both.
//!
//! Secrets (`sasl.password`, `ssl.key.password`, …) are kept in a [`Secret`] that never prints,
//! and every client gets a [`KafkaContext`] that remembers the last TLS or authentication
//! failure librdkafka reported, so "cannot reach Kafka" can say *why* (a certificate the broker
//! sent that we do not trust, a wrong password) and the service can stop with that message
//! instead of retrying a misconfiguration forever ([`Misconfigured`]).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{Client, ClientContext};
use rdkafka::config::{FromClientConfigAndContext, RDKafkaLogLevel};
use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::ClientConfig;

/// librdkafka properties whose values are secrets: never logged, never in error messages.
const SECRET_PROPERTIES: &[&str] = &[
    "sasl.password",
    "ssl.key.password",
    "ssl.keystore.password",
    "ssl.key.pem",
    "sasl.oauthbearer.client.secret",
    "sasl.oauthbearer.config",
];

/// Where the operator's Kafka settings come from: the same flags and variables in every binary.
#[derive(Clone, clap::Args)]
pub struct KafkaArgs {
    /// Kafka brokers (`host:port,...`).
    #[arg(
        long = "kafka-bootstrap-servers",
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:9092"
    )]
    pub bootstrap_servers: String,
    /// Extra librdkafka properties, `key=value`, repeatable (also `KAFKA_PROPERTY_<NAME>`, e.g.
    /// `KAFKA_PROPERTY_SECURITY_PROTOCOL=SASL_SSL`). They override built-in tuning, not the
    /// settings durability depends on (acks, idempotence).
    #[arg(long = "kafka-property", value_name = "KEY=VALUE")]
    pub properties: Vec<String>,
    /// File holding the SASL password (`sasl.password`), so it need not sit in the environment.
    #[arg(long, env = "KAFKA_SASL_PASSWORD_FILE", value_name = "PATH")]
    pub kafka_sasl_password_file: Option<PathBuf>,
    /// File holding the password of the TLS client key (`ssl.key.password`).
    #[arg(long, env = "KAFKA_SSL_KEY_PASSWORD_FILE", value_name = "PATH")]
    pub kafka_ssl_key_password_file: Option<PathBuf>,
    /// File holding the OAUTHBEARER/OIDC client secret (`sasl.oauthbearer.client.secret`).
    #[arg(
        long,
        env = "KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET_FILE",
        value_name = "PATH"
    )]
    pub kafka_sasl_oauthbearer_client_secret_file: Option<PathBuf>,
}

impl fmt::Debug for KafkaArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let properties: Vec<String> = self
            .properties
            .iter()
            .map(|p| match p.split_once('=') {
                Some((k, _)) if is_secret(k.trim()) => format!("{k}=<redacted>"),
                _ => p.clone(),
            })
            .collect();
        f.debug_struct("KafkaArgs")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("properties", &properties)
            .field("kafka_sasl_password_file", &self.kafka_sasl_password_file)
            .field(
                "kafka_ssl_key_password_file",
                &self.kafka_ssl_key_password_file,
            )
            .field(
                "kafka_sasl_oauthbearer_client_secret_file",
                &self.kafka_sasl_oauthbearer_client_secret_file,
            )
            .finish()
    }
}

impl KafkaArgs {
    /// Settings for a broker at `bootstrap_servers` and nothing else (tests, tools).
    pub fn new(bootstrap_servers: impl Into<String>) -> KafkaArgs {
        KafkaArgs {
            bootstrap_servers: bootstrap_servers.into(),
            properties: Vec::new(),
            kafka_sasl_password_file: None,
            kafka_ssl_key_password_file: None,
            kafka_sasl_oauthbearer_client_secret_file: None,
        }
    }

    /// Adds a property as `--kafka-property key=value` would.
    #[must_use]
    pub fn with_property(mut self, key: &str, value: &str) -> KafkaArgs {
        self.properties.push(format!("{key}={value}"));
        self
    }

    /// Reads the environment's `KAFKA_PROPERTY_*`, the flags and the secret files.
    pub fn resolve(&self) -> anyhow::Result<KafkaSettings> {
        let from_env = std::env::vars()
            .filter_map(|(name, value)| {
                name.strip_prefix(PROPERTY_PREFIX)
                    .map(|rest| (name.clone(), property_name(rest), value))
            })
            .collect();
        self.resolve_with(from_env)
    }

    fn resolve_with(
        &self,
        mut from_env: Vec<(String, String, String)>,
    ) -> anyhow::Result<KafkaSettings> {
        from_env.sort();
        let mut properties: Vec<Property> = from_env
            .into_iter()
            .map(|(source, key, value)| Property::new(key, value, source))
            .collect();
        for flag in &self.properties {
            let (key, value) = flag.split_once('=').with_context(|| {
                let shown = flag.split('=').next().unwrap_or_default();
                format!("--kafka-property {shown:?} is not key=value")
            })?;
            let key = key.trim().to_string();
            properties.push(Property::new(
                key.clone(),
                value.to_string(),
                format!("--kafka-property {key}"),
            ));
        }
        let files = [
            (
                &self.kafka_sasl_password_file,
                "sasl.password",
                "KAFKA_SASL_PASSWORD_FILE",
            ),
            (
                &self.kafka_ssl_key_password_file,
                "ssl.key.password",
                "KAFKA_SSL_KEY_PASSWORD_FILE",
            ),
            (
                &self.kafka_sasl_oauthbearer_client_secret_file,
                "sasl.oauthbearer.client.secret",
                "KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET_FILE",
            ),
        ];
        for (path, key, variable) in files {
            if let Some(path) = path {
                let value = read_secret_file(path)
                    .with_context(|| format!("{variable} ({})", path.display()))?;
                properties.push(Property::new(key.to_string(), value, variable.to_string()));
            }
        }
        if let Some(p) = properties.iter().find(|p| p.key == "bootstrap.servers") {
            anyhow::bail!(
                "{} sets bootstrap.servers; use KAFKA_BOOTSTRAP_SERVERS (--kafka-bootstrap-servers) instead",
                p.source
            );
        }
        Ok(KafkaSettings {
            bootstrap_servers: self.bootstrap_servers.clone(),
            properties,
        })
    }
}

const PROPERTY_PREFIX: &str = "KAFKA_PROPERTY_";

/// `SASL_MECHANISM` → `sasl.mechanism`.
fn property_name(variable_suffix: &str) -> String {
    variable_suffix.to_ascii_lowercase().replace('_', ".")
}

fn is_secret(key: &str) -> bool {
    SECRET_PROPERTIES.contains(&key)
}

/// A secret file's content without its trailing newline; an empty file is an error.
fn read_secret_file(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).context("cannot read the file")?;
    let value = text.trim_end_matches(['\r', '\n']).to_string();
    anyhow::ensure!(!value.is_empty(), "the file is empty");
    Ok(value)
}

/// A value that must never be printed.
#[derive(Clone, PartialEq, Eq)]
struct Secret(String);

impl Secret {
    /// Wraps a secret.
    fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that needs it.
    fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// One operator property and where it came from (for error messages).
#[derive(Clone, Debug)]
struct Property {
    key: String,
    value: PropertyValue,
    source: String,
}

#[derive(Clone, Debug)]
enum PropertyValue {
    Plain(String),
    Secret(Secret),
}

impl PropertyValue {
    fn raw(&self) -> &str {
        match self {
            PropertyValue::Plain(v) => v,
            PropertyValue::Secret(s) => s.expose(),
        }
    }
}

impl Property {
    fn new(key: String, value: String, source: String) -> Property {
        let value = if is_secret(&key) {
            PropertyValue::Secret(Secret::new(value))
        } else {
            PropertyValue::Plain(value)
        };
        Property { key, value, source }
    }
}

/// The operator's Kafka settings, resolved: servers and properties (secrets redacted in `Debug`).
#[derive(Clone, Debug)]
pub struct KafkaSettings {
    bootstrap_servers: String,
    properties: Vec<Property>,
}

impl KafkaSettings {
    /// Settings for a broker with no extra properties (tests and tools).
    pub fn plain(bootstrap_servers: impl Into<String>) -> KafkaSettings {
        KafkaSettings {
            bootstrap_servers: bootstrap_servers.into(),
            properties: Vec::new(),
        }
    }

    /// The operator's value of a non-secret property.
    fn plain_property(&self, key: &str) -> Option<String> {
        self.properties
            .iter()
            .rev()
            .find(|p| p.key == key)
            .and_then(|p| match &p.value {
                PropertyValue::Plain(v) => Some(v.clone()),
                PropertyValue::Secret(_) => None,
            })
    }

    /// `bootstrap.servers`.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap_servers
    }

    /// Starts a client configuration for `purpose` (named in errors, e.g. "the order-events
    /// producer").
    pub fn client(&self, purpose: &str) -> ClientBuilder<'_> {
        ClientBuilder {
            settings: self,
            purpose: purpose.to_string(),
            tuning: Vec::new(),
            required: Vec::new(),
        }
    }
}

/// Builds one librdkafka client with the precedence rule of this module.
pub struct ClientBuilder<'a> {
    settings: &'a KafkaSettings,
    purpose: String,
    tuning: Vec<(String, String)>,
    required: Vec<(String, String, String)>,
}

impl ClientBuilder<'_> {
    /// A built-in default the operator may override.
    #[must_use]
    pub fn tuning(mut self, key: &str, value: impl ToString) -> Self {
        self.tuning.push((key.to_string(), value.to_string()));
        self
    }

    /// A setting a guarantee depends on (`why` says which): the operator may repeat it but not
    /// contradict it.
    #[must_use]
    pub fn require(mut self, key: &str, value: impl ToString, why: &str) -> Self {
        self.required
            .push((key.to_string(), value.to_string(), why.to_string()));
        self
    }

    /// The producer settings every acknowledged write depends on: `acks=all` and idempotence
    /// (no duplicates or reordering on retries), bounded by `timeout` per record.
    #[must_use]
    pub fn durable_producer(self, timeout: Duration) -> Self {
        let ms = timeout.as_millis();
        self.require(
            "acks",
            "all",
            "a write is acknowledged only once every in-sync replica has it",
        )
        .require(
            "enable.idempotence",
            "true",
            "retries must neither duplicate nor reorder records",
        )
        .tuning("max.in.flight.requests.per.connection", 5)
        .tuning("message.timeout.ms", ms)
        .tuning("request.timeout.ms", ms.min(30_000))
    }

    /// The configuration: checked for contradictions, secrets included (never print it).
    pub fn config(&self) -> anyhow::Result<ClientConfig> {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.settings.bootstrap_servers);
        // librdkafka's own log lines go through the context (see `KafkaContext::log`).
        config.set_log_level(RDKafkaLogLevel::Warning);
        for (key, value) in &self.tuning {
            config.set(key, value);
        }
        for property in &self.settings.properties {
            if let Some((_, wanted, why)) =
                self.required.iter().find(|(k, _, _)| *k == property.key)
            {
                if !same_value(&property.key, property.value.raw(), wanted) {
                    let shown = match &property.value {
                        PropertyValue::Plain(v) => v.as_str(),
                        PropertyValue::Secret(_) => "<redacted>",
                    };
                    anyhow::bail!(
                        "{} sets {}={shown}, but {} needs {}={wanted}: {why}. Remove the setting",
                        property.source,
                        property.key,
                        self.purpose,
                        property.key,
                    );
                }
            }
            config.set(&property.key, property.value.raw());
        }
        for (key, value, _) in &self.required {
            config.set(key, value);
        }
        Ok(config)
    }

    /// Creates the client with a fresh [`KafkaContext`].
    pub fn create<T>(&self) -> anyhow::Result<T>
    where
        T: FromClientConfigAndContext<KafkaContext>,
    {
        self.create_with_context(KafkaContext::default())
    }

    /// Creates the client with `context` (to share its diagnostics).
    pub fn create_with_context<T>(&self, context: KafkaContext) -> anyhow::Result<T>
    where
        T: FromClientConfigAndContext<KafkaContext>,
    {
        let config = self.config()?;
        config.create_with_context(context).map_err(|e| {
            // librdkafka's message names the property and the problem (a missing CA file, an
            // unknown mechanism); rdkafka appends the value, which is left out for secrets.
            let problem = match e {
                KafkaError::ClientConfig(_, description, key, value) => {
                    let value = if is_secret(&key) {
                        "<redacted>".to_string()
                    } else {
                        value
                    };
                    format!("{description} ({key}={value})")
                }
                other => other.to_string(),
            };
            anyhow::Error::new(Misconfigured(format!(
                "cannot create {}: {problem}",
                self.purpose
            )))
        })
    }
}

/// Compares an operator value with a required one the way librdkafka reads them.
fn same_value(key: &str, given: &str, wanted: &str) -> bool {
    let norm = |v: &str| {
        let v = v.trim().to_ascii_lowercase();
        match (key, v.as_str()) {
            ("acks", "-1") => "all".to_string(),
            (_, "1" | "yes" | "on") if wanted == "true" => "true".to_string(),
            _ => v,
        }
    };
    norm(given) == norm(wanted)
}

/// A problem that retrying cannot fix: the cluster rejected our certificate check or our
/// credentials, or the configuration itself is invalid. Services stop with this message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Misconfigured(pub String);

/// Is `error` (anywhere in its chain) a [`Misconfigured`]?
pub fn is_misconfigured(error: &anyhow::Error) -> bool {
    error.chain().any(|e| e.is::<Misconfigured>())
}

/// The client context of every client: remembers the last connection failure librdkafka
/// reported, so errors can say why a broker is unreachable.
///
/// The record is shared by every client of the process: librdkafka delivers errors only to a
/// client whose main queue is served, and a service's producer serves its queue on a thread of
/// its own, so whichever client sees the TLS or SASL failure first explains it for all.
#[derive(Clone)]
pub struct KafkaContext {
    last: Arc<Mutex<Option<Failure>>>,
}

impl Default for KafkaContext {
    fn default() -> Self {
        static SHARED: std::sync::OnceLock<Arc<Mutex<Option<Failure>>>> =
            std::sync::OnceLock::new();
        KafkaContext {
            last: Arc::clone(SHARED.get_or_init(Arc::default)),
        }
    }
}

#[derive(Clone, Debug)]
struct Failure {
    fatal: bool,
    reason: String,
}

impl KafkaContext {
    fn record(&self, fatal: bool, reason: String) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        // A TLS or authentication failure explains more than the "all brokers down" after it.
        if fatal || !last.as_ref().is_some_and(|f| f.fatal) {
            *last = Some(Failure { fatal, reason });
        }
    }

    /// Forgets earlier failures (before a fresh attempt to connect).
    fn reset(&self) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn last(&self) -> Option<Failure> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Turns a failed request into an error that says why: [`Misconfigured`] when librdkafka
    /// reported a TLS or authentication failure, otherwise "unreachable" with the last reason.
    pub fn explain(&self, servers: &str, error: KafkaError) -> anyhow::Error {
        match self.last() {
            Some(Failure {
                fatal: true,
                reason,
            }) => anyhow::Error::new(Misconfigured(format!(
                "Kafka at {servers} rejected the connection: {reason}"
            ))),
            Some(Failure { reason, .. }) => {
                anyhow::anyhow!("cannot reach Kafka at {servers}: {error} (last error: {reason})")
            }
            None => anyhow::anyhow!("cannot reach Kafka at {servers}: {error}"),
        }
    }
}

fn is_fatal_code(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::SSL
            | RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::UnsupportedSASLMechanism
            | RDKafkaErrorCode::IllegalSASLState
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::GroupAuthorizationFailed
    )
}

impl ClientContext for KafkaContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error => {
                tracing::error!(target: "librdkafka", facility = fac, "{log_message}");
            }
            L::Warning => tracing::warn!(target: "librdkafka", facility = fac, "{log_message}"),
            _ => tracing::debug!(target: "librdkafka", facility = fac, "{log_message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let fatal = error.rdkafka_error_code().is_some_and(is_fatal_code);
        // Nisshi and some proxies close the connection on a bad SASL password without an
        // answer; librdkafka then reports a transport failure during authentication.
        let fatal = fatal
            || reason.contains("SASL authentication")
            || reason.contains("SSL handshake failed");
        if fatal {
            tracing::error!(target: "librdkafka", error = %error, "{reason}");
        } else {
            tracing::warn!(target: "librdkafka", error = %error, "{reason}");
        }
        self.record(fatal, reason.to_string());
    }
}

impl ConsumerContext for KafkaContext {}

impl rdkafka::producer::ProducerContext for KafkaContext {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

/// How a topic is created when it does not exist.
#[derive(Debug, Clone)]
pub struct TopicSpec<'a> {
    /// Its name.
    pub name: &'a str,
    /// Partitions to create it with.
    pub partitions: i32,
    /// Topic configuration, e.g. `cleanup.policy=compact`.
    pub config: &'a [(&'a str, &'a str)],
    /// Refuse to start when the existing topic has another partition count (the registry's
    /// single-partition log).
    pub exact_partitions: bool,
}

/// Creates the topic unless it exists; returns its partition count. Replication is as many
/// replicas as the cluster has brokers, up to 3, so acks=all means what it says on a real
/// cluster. Metadata calls run on a blocking thread. A TLS or authentication failure is a
/// [`Misconfigured`] error.
pub async fn ensure_topic(
    settings: &KafkaSettings,
    spec: &TopicSpec<'_>,
    timeout: Duration,
) -> anyhow::Result<i32> {
    let context = KafkaContext::default();
    context.reset();
    // The metadata lookup must not make a broker that auto-creates topics create this one
    // with its own default partition count (librdkafka allows that for non-consumers).
    fn no_auto_create(builder: ClientBuilder<'_>) -> ClientBuilder<'_> {
        builder.require(
            "allow.auto.create.topics",
            "false",
            "topics are created with the partitions the services expect",
        )
    }
    let admin: AdminClient<KafkaContext> =
        no_auto_create(settings.client("the admin client")).create_with_context(context.clone())?;
    // Metadata through a producer: unlike the admin client's, its main queue can be served
    // (`poll`), which is where librdkafka delivers the TLS and SASL errors `explain` needs.
    let probe: Arc<BaseProducer<KafkaContext>> = Arc::new(
        no_auto_create(settings.client("the metadata client"))
            .create_with_context(context.clone())?,
    );
    let servers = settings.bootstrap_servers().to_string();
    let name = spec.name.to_string();
    let explain = context.clone();
    let metadata_probe = Arc::clone(&probe);
    let tls_check = TlsCheck::from(settings);
    let (state, brokers) = tokio::task::spawn_blocking(move || {
        let probe = metadata_probe;
        let found = probe.client().fetch_metadata(None, timeout).and_then(|m| {
            let brokers = m.brokers().len();
            topic_partitions(probe.client(), &name, timeout).map(|state| (state, brokers))
        });
        found.map_err(|e| {
            for _ in 0..100 {
                probe.poll(Duration::ZERO);
            }
            with_certificate_diagnosis(explain.explain(&servers, e), &tls_check, timeout)
        })
    })
    .await
    .context("the metadata task failed")??;
    if let Some(n) = state {
        if spec.exact_partitions && n != spec.partitions {
            anyhow::bail!(Misconfigured(format!(
                "topic {} has {n} partitions; {} needed",
                spec.name, spec.partitions
            )));
        }
        return Ok(n);
    }
    let replication = i32::try_from(brokers.clamp(1, 3)).unwrap_or(1);
    let mut new_topic = NewTopic::new(
        spec.name,
        spec.partitions,
        TopicReplication::Fixed(replication),
    );
    for (key, value) in spec.config {
        new_topic = new_topic.set(key, value);
    }
    let options = AdminOptions::new().operation_timeout(Some(timeout));
    let results = admin
        .create_topics([&new_topic], &options)
        .await
        .map_err(|e| context.explain(settings.bootstrap_servers(), e))
        .with_context(|| format!("creating topic {}", spec.name))?;
    for result in results {
        match result {
            Ok(_) => tracing::info!(
                topic = spec.name,
                partitions = spec.partitions,
                "created topic"
            ),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) if is_fatal_code(code) => {
                anyhow::bail!(Misconfigured(format!("creating topic {name}: {code}")))
            }
            Err((name, code)) => anyhow::bail!("creating topic {name}: {code}"),
        }
    }
    // Another service may have created it first, with another partition count.
    let name = spec.name.to_string();
    let servers = settings.bootstrap_servers().to_string();
    let state = tokio::task::spawn_blocking(move || {
        topic_partitions(probe.client(), &name, timeout).map_err(|e| {
            probe.poll(Duration::ZERO);
            context.explain(&servers, e)
        })
    })
    .await
    .context("the metadata task failed")??;
    Ok(state.unwrap_or(spec.partitions))
}

/// What a second look at a rejected certificate needs: the first bootstrap server and the CA
/// file the clients use.
struct TlsCheck {
    server: Option<String>,
    ca_location: Option<String>,
}

impl From<&KafkaSettings> for TlsCheck {
    fn from(settings: &KafkaSettings) -> Self {
        TlsCheck {
            server: settings
                .bootstrap_servers
                .split(',')
                .next()
                .map(|s| s.trim().to_string()),
            ca_location: settings.plain_property("ssl.ca.location"),
        }
    }
}

/// librdkafka words every certificate rejection as "certificate verify failed"; when that is
/// the reason, one TLS handshake of our own with the same CA names the cause (expired, not yet
/// valid, unknown issuer, …).
fn with_certificate_diagnosis(
    error: anyhow::Error,
    check: &TlsCheck,
    timeout: Duration,
) -> anyhow::Error {
    if !is_misconfigured(&error) || !format!("{error}").contains("certificate verify failed") {
        return error;
    }
    match diagnose_certificate(check, timeout.min(Duration::from_secs(5))) {
        Some(cause) => anyhow::Error::new(Misconfigured(format!(
            "{error} (the broker's certificate: {cause})"
        ))),
        None => error,
    }
}

/// The OpenSSL verification result of the first bootstrap server's certificate, if it fails.
fn diagnose_certificate(check: &TlsCheck, timeout: Duration) -> Option<String> {
    use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
    use openssl::x509::X509VerifyResult;
    use std::net::ToSocketAddrs;

    let server = check.server.as_deref()?;
    let host = server.rsplit_once(':')?.0.trim_matches(['[', ']']);
    let mut builder = SslConnector::builder(SslMethod::tls_client()).ok()?;
    match &check.ca_location {
        Some(ca) => builder.set_ca_file(ca).ok()?,
        None => builder.set_default_verify_paths().ok()?,
    }
    // Finish the handshake whatever the verdict, then read the verdict.
    builder.set_verify(SslVerifyMode::NONE);
    let connector = builder.build();
    let address = server.to_socket_addrs().ok()?.next()?;
    let stream = std::net::TcpStream::connect_timeout(&address, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    let tls = connector.connect(host, stream).ok()?;
    let result = tls.ssl().verify_result();
    (result != X509VerifyResult::OK).then(|| result.error_string().to_string())
}

/// The partition count of `topic`, or `None` when it does not exist (blocking).
pub fn topic_partitions<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    timeout: Duration,
) -> Result<Option<i32>, KafkaError> {
    let metadata = client.fetch_metadata(Some(topic), timeout)?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .filter(|t| t.error().is_none() && !t.partitions().is_empty())
        .and_then(|t| i32::try_from(t.partitions().len()).ok()))
}

/// Each partition's `(low, high)` watermarks of `topic` as of now, asked by `consumer` on a
/// blocking thread (librdkafka's call blocks).
pub async fn watermarks<K>(
    consumer: std::sync::Arc<K>,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> anyhow::Result<HashMap<i32, (i64, i64)>>
where
    K: Consumer<KafkaContext> + Send + Sync + 'static,
{
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        (0..partitions)
            .map(|partition| {
                consumer
                    .fetch_watermarks(&topic, partition, timeout)
                    .map(|ends| (partition, ends))
                    .with_context(|| format!("reading the watermarks of {topic}/{partition}"))
            })
            .collect()
    })
    .await
    .context("the watermarks task failed")?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> KafkaArgs {
        KafkaArgs::new("127.0.0.1:9092")
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String, String)> {
        pairs
            .iter()
            .map(|(name, value)| {
                let suffix = name.strip_prefix(PROPERTY_PREFIX).unwrap_or(name);
                (name.to_string(), property_name(suffix), value.to_string())
            })
            .collect()
    }

    fn value(config: &ClientConfig, key: &str) -> Option<String> {
        config.get(key).map(str::to_string)
    }

    #[test]
    fn operator_properties_override_tuning() {
        let settings = args()
            .resolve_with(env(&[("KAFKA_PROPERTY_LINGER_MS", "20")]))
            .expect("resolves");
        let config = settings
            .client("the test producer")
            .tuning("linger.ms", 1)
            .config()
            .expect("no conflict");
        assert_eq!(value(&config, "linger.ms").as_deref(), Some("20"));
    }

    #[test]
    fn flags_come_after_the_environment() {
        let settings = args()
            .with_property("linger.ms", "7")
            .resolve_with(env(&[("KAFKA_PROPERTY_LINGER_MS", "20")]))
            .expect("resolves");
        let config = settings.client("x").config().expect("no conflict");
        assert_eq!(value(&config, "linger.ms").as_deref(), Some("7"));
    }

    #[test]
    fn a_property_contradicting_a_guarantee_is_refused_naming_both() {
        let settings = args()
            .resolve_with(env(&[("KAFKA_PROPERTY_ACKS", "1")]))
            .expect("resolves");
        let error = settings
            .client("the order-events producer")
            .durable_producer(Duration::from_secs(5))
            .config()
            .expect_err("acks=1 must be refused");
        let text = format!("{error:#}");
        assert!(text.contains("KAFKA_PROPERTY_ACKS"), "{text}");
        assert!(text.contains("acks=all"), "{text}");
        assert!(text.contains("the order-events producer"), "{text}");
    }

    #[test]
    fn repeating_a_guarantee_in_another_spelling_is_fine() {
        let settings = args()
            .resolve_with(env(&[
                ("KAFKA_PROPERTY_ACKS", "-1"),
                ("KAFKA_PROPERTY_ENABLE_IDEMPOTENCE", "TRUE"),
            ]))
            .expect("resolves");
        let config = settings
            .client("p")
            .durable_producer(Duration::from_secs(5))
            .config()
            .expect("same values");
        assert_eq!(value(&config, "acks").as_deref(), Some("all"));
    }

    #[test]
    fn bootstrap_servers_only_come_from_their_own_setting() {
        let error = args()
            .resolve_with(env(&[("KAFKA_PROPERTY_BOOTSTRAP_SERVERS", "x:1")]))
            .expect_err("refused");
        assert!(format!("{error:#}").contains("KAFKA_BOOTSTRAP_SERVERS"));
    }

    #[test]
    fn secret_files_are_read_without_the_newline_and_never_printed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("password");
        std::fs::write(&path, "s3cr3t-Pa55\n").expect("write");
        let mut kafka = args().with_property("sasl.username", "alice");
        kafka.kafka_sasl_password_file = Some(path);
        let settings = kafka.resolve_with(Vec::new()).expect("resolves");
        let config = settings.client("c").config().expect("config");
        assert_eq!(
            value(&config, "sasl.password").as_deref(),
            Some("s3cr3t-Pa55")
        );
        let shown = format!("{settings:?} {kafka:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        let flag = args().with_property("sasl.password", "s3cr3t-Pa55");
        assert!(!format!("{flag:?}").contains("s3cr3t"));
        let conflict = args()
            .with_property("sasl.password", "s3cr3t-Pa55")
            .resolve_with(Vec::new())
            .expect("resolves")
            .client("c")
            .require("sasl.password", "other", "test")
            .config()
            .expect_err("conflict");
        assert!(!format!("{conflict:#}").contains("s3cr3t"));
    }

    #[test]
    fn an_empty_or_missing_secret_file_is_an_error_naming_the_variable() {
        let mut kafka = args();
        kafka.kafka_sasl_password_file = Some(PathBuf::from("/nonexistent/password"));
        let error = kafka.resolve_with(Vec::new()).expect_err("missing file");
        assert!(format!("{error:#}").contains("KAFKA_SASL_PASSWORD_FILE"));
    }

    fn create_with(pairs: &[(&str, &str)]) -> anyhow::Result<()> {
        let mut kafka = args();
        for (key, value) in pairs {
            kafka = kafka.with_property(key, value);
        }
        kafka
            .resolve_with(Vec::new())?
            .client("the test client")
            .create::<rdkafka::consumer::BaseConsumer<KafkaContext>>()
            .map(drop)
    }

    /// Nisshi has no PLAIN or OAUTHBEARER, so the tests against the broker cover SCRAM; these
    /// prove librdkafka was built with what managed clusters need and rejects incomplete or
    /// unsupported configurations with a message naming the property.
    #[test]
    fn sasl_plain_and_oauthbearer_oidc_are_built_in_and_incomplete_settings_are_named() {
        let plain = [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "PLAIN"),
            ("sasl.username", "api-key"),
            ("sasl.password", "api-secret"),
        ];
        create_with(&plain).expect("complete SASL_SSL + PLAIN is accepted");
        let error = create_with(&plain[..3]).expect_err("PLAIN without a password");
        let text = format!("{error:#}");
        assert!(is_misconfigured(&error), "{text}");
        assert!(text.contains("sasl.password"), "{text}");

        let scram = [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-256"),
            ("sasl.username", "u"),
            ("sasl.password", "p"),
        ];
        create_with(&scram).expect("SCRAM is accepted");

        let oidc = [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "OAUTHBEARER"),
            ("sasl.oauthbearer.method", "oidc"),
            ("sasl.oauthbearer.client.id", "client"),
            ("sasl.oauthbearer.client.secret", "secret"),
            (
                "sasl.oauthbearer.token.endpoint.url",
                "https://login.example.com/oauth2/token",
            ),
        ];
        // OIDC token fetching needs libcurl, which this build does not link (see the README):
        // the configuration is refused at start-up with librdkafka's reason.
        let error = create_with(&oidc).expect_err("OIDC needs libcurl");
        let text = format!("{error:#}");
        assert!(is_misconfigured(&error), "{text}");
        assert!(text.contains("libcurl"), "{text}");
        let unsecured = [
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "OAUTHBEARER"),
            ("enable.sasl.oauthbearer.unsecure.jwt", "true"),
        ];
        create_with(&unsecured).expect("OAUTHBEARER (unsecured JWT, development) is accepted");
        // A secret that librdkafka refuses is named, its value is not.
        let error = create_with(&[
            ("security.protocol", "SASL_SSL"),
            ("sasl.password", "s3cr3t"),
            ("sasl.mechanism", "NOPE"),
        ])
        .expect_err("unknown mechanism");
        assert!(!format!("{error:#}").contains("s3cr3t"));
    }

    #[test]
    fn an_invalid_property_is_a_misconfiguration_naming_the_client() {
        let settings = args()
            .resolve_with(env(&[(
                "KAFKA_PROPERTY_SECURITY_PROTOCOL",
                "carrier-pigeon",
            )]))
            .expect("resolves");
        let error = settings
            .client("the health client")
            .create::<rdkafka::consumer::BaseConsumer<KafkaContext>>()
            .err()
            .expect("librdkafka refuses the value");
        assert!(is_misconfigured(&error));
        let text = format!("{error:#}");
        assert!(
            text.contains("the health client") && text.contains("security.protocol"),
            "{text}"
        );
    }
}
