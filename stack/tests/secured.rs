//! The three binaries against a secured cluster, started as an operator starts them: the
//! embedded broker (Nisshi) with a TLS listener and SCRAM users, our registry over HTTPS with
//! basic auth, and CartService/OrderService configured only through the documented variables
//! (`KAFKA_PROPERTY_*`, `KAFKA_SASL_PASSWORD_FILE`, `SCHEMA_REGISTRY_CA_FILE`,
//! `SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO[_FILE]`). Certificates are made by the test.
//!
//! Proves: an order goes end to end over SASL_SSL and HTTPS; passwords never appear in any log
//! line, `/metrics`, `/ready` or error body; and a wrong CA, an expired broker certificate, a
//! wrong Kafka password and a wrong registry password each stop a service with a message naming
//! the problem, within a bounded time, instead of retrying forever.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{bin_dir, curl, run_bounded, Reply};
use testkit::process::{Output, Process};
use testkit::tls::{TestPki, Validity};
use testkit::Broker;
use testkit::ScramMechanism;

#[allow(clippy::unwrap_used)]
fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

const REGISTRY_KAFKA_PASSWORD: &str = "reg-Kafka-pw-4711";
const CART_KAFKA_PASSWORD: &str = "cart-Kafka-pw-0815";
const ORDER_KAFKA_PASSWORD: &str = "order-Kafka-pw-1234";
const CART_REGISTRY_PASSWORD: &str = "cart-Registry-pw-9876";
const ORDER_REGISTRY_PASSWORD: &str = "order-Registry-pw-5555";

fn secrets() -> [&'static str; 5] {
    [
        REGISTRY_KAFKA_PASSWORD,
        CART_KAFKA_PASSWORD,
        ORDER_KAFKA_PASSWORD,
        CART_REGISTRY_PASSWORD,
        ORDER_REGISTRY_PASSWORD,
    ]
}

/// The `env` blocks of the README's "Connecting to a secured cluster" section, in order, as
/// `(NAME, value)` pairs.
#[allow(clippy::unwrap_used)]
fn readme_blocks() -> Vec<Vec<(String, String)>> {
    let readme = std::fs::read_to_string(testkit::workspace_root().join("README.md")).unwrap();
    let section = readme
        .split("\n## Connecting to a secured cluster\n")
        .nth(1)
        .expect("the README has the section")
        .split("\n## ")
        .next()
        .unwrap();
    let mut blocks = Vec::new();
    let mut open: Option<Vec<(String, String)>> = None;
    for line in section.lines() {
        match (&mut open, line.trim()) {
            (None, "```env") => open = Some(Vec::new()),
            (Some(_), "```") => blocks.push(open.take().unwrap()),
            (Some(block), line) => {
                let (name, value) = line.split_once('=').expect("NAME=value");
                block.push((name.to_string(), value.to_string()));
            }
            _ => {}
        }
    }
    assert_eq!(
        blocks.len(),
        2,
        "the section has the Cloud-style and the mTLS block"
    );
    blocks
}

/// The block with every `<placeholder>` value replaced by the test's value for that variable;
/// a placeholder the test has no value for fails the test (the README and the test move
/// together).
fn fill(block: &[(String, String)], values: &[(&str, String)]) -> Vec<(String, String)> {
    block
        .iter()
        .map(|(name, value)| {
            let value = if value.contains('<') {
                values
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_else(|| panic!("no test value for the README's {name}={value}"))
            } else {
                value.clone()
            };
            (name.clone(), value)
        })
        .collect()
}

/// A service binary running with its output captured, killed on drop.
struct Service {
    name: &'static str,
    process: Process,
    /// Its `DATA_DIR` unless the test gave one: two services never share the default.
    _data: tempfile::TempDir,
}

impl Service {
    fn start(name: &'static str, args: &[&str], env: &[(&str, String)]) -> Service {
        let mut command = Command::new(bin_dir().join(name));
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info");
        let data = tempfile::tempdir().expect("a data directory");
        command.env("DATA_DIR", data.path());
        for (key, value) in env {
            command.env(key, value);
        }
        let process = Process::spawn(name, command, Output::Captured { echo: false })
            .unwrap_or_else(|e| panic!("{e:#}"));
        Service {
            name,
            process,
            _data: data,
        }
    }

    fn start_owned(name: &'static str, env: &[(String, String)]) -> Service {
        let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        Service::start(name, &[], &env)
    }

    fn output(&self) -> String {
        self.process.output().join("\n")
    }

    /// Waits for the process to exit; its exit code, or `None` if it still runs at `deadline`.
    fn exit_within(&mut self, deadline: Duration) -> Option<i32> {
        let status = self.process.exit_within(deadline)?;
        // Let the reader threads drain the pipes.
        std::thread::sleep(Duration::from_millis(300));
        Some(status.code().unwrap_or(-1))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.process.kill();
    }
}

/// Kafka settings for a service authenticating as `user` with its password in a file.
fn kafka_env(
    broker: &Broker,
    ca: &Path,
    user: &str,
    password_file: &Path,
) -> Vec<(&'static str, String)> {
    vec![
        ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap_servers()),
        ("KAFKA_PROPERTY_SECURITY_PROTOCOL", "SASL_SSL".into()),
        ("KAFKA_PROPERTY_SSL_CA_LOCATION", ca.display().to_string()),
        ("KAFKA_PROPERTY_SASL_MECHANISM", "SCRAM-SHA-512".into()),
        ("KAFKA_PROPERTY_SASL_USERNAME", user.into()),
        (
            "KAFKA_SASL_PASSWORD_FILE",
            password_file.display().to_string(),
        ),
    ]
}

/// `user:hash:role` from `schema-registry hash-password`, the password given on stdin.
#[allow(clippy::unwrap_used)]
fn users_line(user: &str, password: &str, role: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(bin_dir().join("schema-registry"))
        .args(["hash-password", "--user", user, "--role", role])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "hash-password failed");
    let line = String::from_utf8(output.stdout).unwrap().trim().to_string();
    assert!(!line.contains(password));
    line
}

/// Polls `url` with curl until it answers 200; panics with the service's output otherwise.
fn wait_ready(service: &mut Service, url: &str, extra: &[&str], deadline: Duration) {
    let answers_200 = || {
        let mut args = extra.to_vec();
        args.push(url);
        let output = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "5",
            ])
            .args(&args)
            .output()
            .expect("running curl");
        String::from_utf8_lossy(&output.stdout).trim() == "200"
    };
    let what = format!("200 at {url}");
    if let Err(e) =
        service
            .process
            .wait_until(&what, deadline, testkit::wait::POLL_INTERVAL, answers_200)
    {
        panic!("{e:#}; its output:\n{}", service.output());
    }
}

/// `POST /api/create-order` through CartService at `cart_url`.
fn create_order(cart_url: &str, order_id: &str, items: u32) -> Reply {
    curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        &format!(r#"{{"orderId": "{order_id}", "numItems": {items}}}"#),
        &format!("{cart_url}/api/create-order"),
    ])
}

fn free_port() -> u16 {
    testkit::free_port().expect("a free port")
}

struct Secured {
    _pki: TestPki,
    dir: tempfile::TempDir,
    broker: Broker,
    ca: PathBuf,
}

#[allow(clippy::unwrap_used)]
fn secured_broker(validity: Validity) -> Secured {
    let pki = TestPki::new().unwrap();
    let broker = Broker::builder()
        .tls(&pki, validity)
        .sasl_user("registry", REGISTRY_KAFKA_PASSWORD, ScramMechanism::Sha512)
        .sasl_user("cart", CART_KAFKA_PASSWORD, ScramMechanism::Sha512)
        .sasl_user("orders", ORDER_KAFKA_PASSWORD, ScramMechanism::Sha512)
        .start()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::copy(pki.ca_file(), &ca).unwrap();
    Secured {
        _pki: pki,
        dir,
        broker,
        ca,
    }
}

#[test]
#[allow(clippy::unwrap_used)]
fn an_order_goes_end_to_end_over_sasl_ssl_and_an_https_registry_with_basic_auth_and_no_secret_leaks(
) {
    let s = secured_broker(Validity::Current);
    let dir = s.dir.path();
    let pki = &s._pki;
    let registry_cert = pki
        .issue("registry", &["127.0.0.1", "localhost"], Validity::Current)
        .unwrap();
    let users = format!(
        "# test users\n{}\n{}\n",
        users_line("cart", CART_REGISTRY_PASSWORD, "read-write"),
        users_line("orders", ORDER_REGISTRY_PASSWORD, "read-only"),
    );
    let users_file = write(dir, "users", &users);
    let registry_pw = write(
        dir,
        "registry-kafka-pw",
        &format!("{REGISTRY_KAFKA_PASSWORD}\n"),
    );
    let cart_pw = write(dir, "cart-kafka-pw", CART_KAFKA_PASSWORD);
    let order_pw = write(dir, "order-kafka-pw", ORDER_KAFKA_PASSWORD);
    let cart_user_info = write(
        dir,
        "cart-registry",
        &format!("cart:{CART_REGISTRY_PASSWORD}\n"),
    );

    let registry_port = free_port();
    let mut env = kafka_env(&s.broker, &s.ca, "registry", &registry_pw);
    env.extend([
        ("API_PORT", registry_port.to_string()),
        (
            "API_TLS_CERT_FILE",
            registry_cert.cert.display().to_string(),
        ),
        ("API_TLS_KEY_FILE", registry_cert.key.display().to_string()),
        (
            "SCHEMA_REGISTRY_AUTH_FILE",
            users_file.display().to_string(),
        ),
    ]);
    let mut registry = Service::start("schema-registry", &[], &env);
    let registry_url = format!("https://127.0.0.1:{registry_port}");
    let ca = s.ca.display().to_string();
    wait_ready(
        &mut registry,
        &format!("{registry_url}/subjects"),
        &[
            "--cacert",
            &ca,
            "-u",
            &format!("cart:{CART_REGISTRY_PASSWORD}"),
        ],
        Duration::from_secs(60),
    );

    // CartService and OrderService get exactly the README's Confluent Cloud-style block, its
    // placeholders filled in (PLAIN → SCRAM-SHA-512: the embedded broker has no PLAIN) plus
    // the README's two lines for a private CA; CartService authenticates to the registry with
    // the file, OrderService with the variable.
    let cloud = &readme_blocks()[0];
    let order_user_info = write(
        dir,
        "order-registry",
        &format!("orders:{ORDER_REGISTRY_PASSWORD}\n"),
    );
    let service_env = |user: &str, kafka_pw: &Path, user_info: &Path| {
        let mut env = fill(
            cloud,
            &[
                ("KAFKA_BOOTSTRAP_SERVERS", s.broker.bootstrap_servers()),
                ("KAFKA_PROPERTY_SASL_USERNAME", user.to_string()),
                ("KAFKA_SASL_PASSWORD_FILE", kafka_pw.display().to_string()),
                ("SCHEMA_REGISTRY_URL", registry_url.clone()),
                (
                    "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO_FILE",
                    user_info.display().to_string(),
                ),
            ],
        );
        for (name, value) in env.iter_mut() {
            if name == "KAFKA_PROPERTY_SASL_MECHANISM" {
                assert_eq!(value, "PLAIN", "the README's example changed");
                *value = "SCRAM-SHA-512".to_string();
            }
        }
        env.push(("KAFKA_PROPERTY_SSL_CA_LOCATION".into(), ca.clone()));
        env.push(("SCHEMA_REGISTRY_CA_FILE".into(), ca.clone()));
        env
    };
    let cart_port = free_port();
    let mut env = service_env("cart", &cart_pw, &cart_user_info);
    env.push(("API_PORT".into(), cart_port.to_string()));
    let mut cart = Service::start_owned("cart-service", &env);
    let order_port = free_port();
    let mut env = service_env("orders", &order_pw, &order_user_info);
    env.push(("API_PORT".into(), order_port.to_string()));
    env.push((
        "DATA_DIR".into(),
        dir.join("order-data").display().to_string(),
    ));
    let mut orders = Service::start_owned("order-service", &env);
    let cart_url = format!("http://127.0.0.1:{cart_port}");
    let order_url = format!("http://127.0.0.1:{order_port}");
    wait_ready(
        &mut cart,
        &format!("{cart_url}/ready"),
        &[],
        Duration::from_secs(90),
    );
    wait_ready(
        &mut orders,
        &format!("{order_url}/ready"),
        &[],
        Duration::from_secs(90),
    );

    let created = create_order(&cart_url, "TLS-1", 2);
    assert_eq!(created.status, 201, "{}", created.body);
    let read = curl(&[&format!(
        "{order_url}/api/order-details?orderId=TLS-1&minVersion=1&waitMs=15000"
    )]);
    assert_eq!(read.status, 200, "{}\n{}", read.body, orders.output());
    assert_eq!(read.json()["data"]["orderId"], "TLS-1");

    // The read-only user cannot register; anonymous callers are refused.
    let refused = curl(&[
        "--cacert",
        &ca,
        "-u",
        &format!("orders:{ORDER_REGISTRY_PASSWORD}"),
        "-X",
        "POST",
        "-H",
        "Content-Type: application/vnd.schemaregistry.v1+json",
        "-d",
        r#"{"schema": "\"string\""}"#,
        &format!("{registry_url}/subjects/x-value/versions"),
    ]);
    assert_eq!(refused.status, 403, "{}", refused.body);
    let anonymous = curl(&["--cacert", &ca, &format!("{registry_url}/subjects")]);
    assert_eq!(anonymous.status, 401, "{}", anonymous.body);

    // Nothing secret in what the services show: metrics, readiness, error bodies, logs.
    let mut shown: Vec<Reply> = vec![created, read, refused, anonymous];
    for url in [&cart_url, &order_url] {
        for path in ["/metrics", "/ready", "/api/nothing-here"] {
            shown.push(curl(&[&format!("{url}{path}")]));
        }
    }
    shown.push(curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        "{not json",
        &format!("{cart_url}/api/create-order"),
    ]));
    let wrong = curl(&[
        "--cacert",
        &ca,
        "-u",
        &format!("cart:{CART_REGISTRY_PASSWORD}x"),
        &format!("{registry_url}/subjects"),
    ]);
    assert_eq!(wrong.status, 401);
    shown.push(wrong);
    for reply in &shown {
        for secret in secrets() {
            assert!(
                !reply.body.contains(secret),
                "{secret} in a body: {}",
                reply.body
            );
        }
    }
    // `--help` with the secrets in the environment shows none of them.
    for (name, service) in [("cart-service", &cart), ("order-service", &orders)] {
        let help = run_bounded(
            Command::new(bin_dir().join(name))
                .arg("--help")
                .env(
                    "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO",
                    format!("x:{ORDER_REGISTRY_PASSWORD}"),
                )
                .env("KAFKA_PROPERTY_SASL_PASSWORD", CART_KAFKA_PASSWORD),
            Duration::from_secs(30),
        );
        for secret in secrets() {
            assert!(!help.stdout.contains(secret), "{secret} in {name} --help");
        }
        assert!(!service.output().is_empty());
    }
    let logs = [registry.output(), cart.output(), orders.output()].join("\n");
    for secret in secrets() {
        assert!(!logs.contains(secret), "{secret} in the logs:\n{logs}");
    }
}

/// Starts `cart-service` with `kafka` settings and the plain registry URL it never reaches.
fn cart_with(env: Vec<(&'static str, String)>) -> Service {
    let mut env = env;
    env.push(("API_PORT", free_port().to_string()));
    env.push((
        "SCHEMA_REGISTRY_URL",
        format!("http://127.0.0.1:{}", free_port()),
    ));
    Service::start("cart-service", &[], &env)
}

/// Asserts the service exits non-zero within the bound, saying `expected` (any of them).
fn assert_stops_saying(mut service: Service, expected: &[&str], why: &str) {
    let started = Instant::now();
    let code = service.exit_within(Duration::from_secs(60));
    let output = service.output();
    assert!(
        matches!(code, Some(c) if c != 0),
        "{why}: {} did not stop within 60 s (exit {code:?}); output:\n{output}",
        service.name
    );
    let lower = output.to_lowercase();
    assert!(
        expected.iter().any(|e| lower.contains(&e.to_lowercase())),
        "{why}: {} stopped without saying any of {expected:?}:\n{output}",
        service.name
    );
    for secret in secrets() {
        assert!(
            !output.contains(secret),
            "{secret} in the output:\n{output}"
        );
    }
    eprintln!(
        "{why}: {} stopped in {:.1} s",
        service.name,
        started.elapsed().as_secs_f64()
    );
}

#[test]
#[allow(clippy::unwrap_used)]
fn a_wrong_ca_a_wrong_password_and_an_expired_certificate_stop_the_services_with_the_reason() {
    let s = secured_broker(Validity::Current);
    let dir = s.dir.path();
    let good_pw = write(dir, "cart-pw", CART_KAFKA_PASSWORD);
    let bad_pw = write(dir, "bad-pw", "not-the-password");

    let other = TestPki::new().unwrap();
    let env = kafka_env(&s.broker, other.ca_file(), "cart", &good_pw);
    assert_stops_saying(
        cart_with(env),
        &["certificate verify failed"],
        "a CA that did not sign the broker's certificate",
    );

    let env = kafka_env(&s.broker, &s.ca, "cart", &bad_pw);
    assert_stops_saying(
        cart_with(env),
        &["authentication"],
        "a wrong Kafka password (CartService)",
    );

    let mut env = kafka_env(&s.broker, &s.ca, "orders", &bad_pw);
    env.extend([
        ("API_PORT", free_port().to_string()),
        ("DATA_DIR", dir.join("orders").display().to_string()),
        (
            "SCHEMA_REGISTRY_URL",
            format!("http://127.0.0.1:{}", free_port()),
        ),
    ]);
    assert_stops_saying(
        Service::start("order-service", &[], &env),
        &["authentication"],
        "a wrong Kafka password (OrderService)",
    );

    let mut env = kafka_env(&s.broker, &s.ca, "registry", &bad_pw);
    env.push(("API_PORT", free_port().to_string()));
    assert_stops_saying(
        Service::start("schema-registry", &[], &env),
        &["authentication"],
        "a wrong Kafka password (registry)",
    );

    let expired = secured_broker(Validity::Expired);
    let pw = write(expired.dir.path(), "pw", CART_KAFKA_PASSWORD);
    let env = kafka_env(&expired.broker, &expired.ca, "cart", &pw);
    // librdkafka words it like an unknown CA; service-kit's own handshake names the cause.
    assert_stops_saying(
        cart_with(env),
        &["certificate has expired"],
        "an expired broker certificate",
    );
}

#[test]
#[allow(clippy::unwrap_used)]
fn a_registry_refusing_the_credentials_stops_cart_service_with_the_reason() {
    let s = secured_broker(Validity::Current);
    let dir = s.dir.path();
    let users_file = write(
        dir,
        "users",
        &format!(
            "{}\n",
            users_line("cart", CART_REGISTRY_PASSWORD, "read-write")
        ),
    );
    let registry_pw = write(dir, "registry-kafka-pw", REGISTRY_KAFKA_PASSWORD);
    let registry_port = free_port();
    let mut env = kafka_env(&s.broker, &s.ca, "registry", &registry_pw);
    env.extend([
        ("API_PORT", registry_port.to_string()),
        (
            "SCHEMA_REGISTRY_AUTH_FILE",
            users_file.display().to_string(),
        ),
    ]);
    let mut registry = Service::start("schema-registry", &[], &env);
    let registry_url = format!("http://127.0.0.1:{registry_port}");
    wait_ready(
        &mut registry,
        &format!("{registry_url}/subjects"),
        &["-u", &format!("cart:{CART_REGISTRY_PASSWORD}")],
        Duration::from_secs(60),
    );
    let cart_pw = write(dir, "cart-kafka-pw", CART_KAFKA_PASSWORD);
    let mut env = kafka_env(&s.broker, &s.ca, "cart", &cart_pw);
    env.extend([
        ("API_PORT", free_port().to_string()),
        ("SCHEMA_REGISTRY_URL", registry_url),
        (
            "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO",
            format!("cart:{ORDER_REGISTRY_PASSWORD}"),
        ),
    ]);
    assert_stops_saying(
        Service::start("cart-service", &[], &env),
        &["refused the credentials"],
        "a wrong registry password",
    );
}

#[test]
#[allow(clippy::unwrap_used)]
fn the_readme_mtls_example_loads_the_client_certificate_and_its_encrypted_key() {
    use openssl::pkey::PKey;
    use openssl::symm::Cipher;

    let pki = TestPki::new().unwrap();
    let broker = Broker::builder()
        .tls(&pki, Validity::Current)
        .start()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = pki
        .issue("cart-service", &["cart-service"], Validity::Current)
        .unwrap();
    let key = PKey::private_key_from_pem(&std::fs::read(&client.key).unwrap()).unwrap();
    let key_password = "client-Key-pw-2468";
    let encrypted = key
        .private_key_to_pem_pkcs8_passphrase(Cipher::aes_256_cbc(), key_password.as_bytes())
        .unwrap();
    let key_file = dir.path().join("client.key");
    std::fs::write(&key_file, encrypted).unwrap();
    let good = write(dir.path(), "key-pw", key_password);
    let bad = write(dir.path(), "bad-key-pw", "not-the-key-password");
    let mtls = &readme_blocks()[1];
    let env_with = |password_file: &Path| {
        fill(
            mtls,
            &[
                ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap_servers()),
                (
                    "KAFKA_PROPERTY_SSL_CA_LOCATION",
                    pki.ca_file().display().to_string(),
                ),
                (
                    "KAFKA_PROPERTY_SSL_CERTIFICATE_LOCATION",
                    client.cert.display().to_string(),
                ),
                (
                    "KAFKA_PROPERTY_SSL_KEY_LOCATION",
                    key_file.display().to_string(),
                ),
                (
                    "KAFKA_SSL_KEY_PASSWORD_FILE",
                    password_file.display().to_string(),
                ),
            ],
        )
    };

    // The registry reads the Kafka half of the same settings.
    let registry_port = free_port();
    let mut env = env_with(&good);
    env.push(("API_PORT".into(), registry_port.to_string()));
    let mut registry = Service::start_owned("schema-registry", &env);
    let registry_url = format!("http://127.0.0.1:{registry_port}");
    wait_ready(
        &mut registry,
        &format!("{registry_url}/subjects"),
        &[],
        Duration::from_secs(60),
    );
    let cart_port = free_port();
    let mut env = env_with(&good);
    env.extend([
        ("API_PORT".into(), cart_port.to_string()),
        ("SCHEMA_REGISTRY_URL".into(), registry_url.clone()),
    ]);
    let mut cart = Service::start_owned("cart-service", &env);
    let cart_url = format!("http://127.0.0.1:{cart_port}");
    wait_ready(
        &mut cart,
        &format!("{cart_url}/ready"),
        &[],
        Duration::from_secs(90),
    );
    let created = create_order(&cart_url, "MTLS-1", 1);
    assert_eq!(created.status, 201, "{}", created.body);
    drop(cart);

    let mut env = env_with(&bad);
    env.extend([
        ("API_PORT".into(), free_port().to_string()),
        ("SCHEMA_REGISTRY_URL".into(), registry_url),
    ]);
    let service = Service::start_owned("cart-service", &env);
    let output_has_no_key_password = |output: &str| !output.contains(key_password);
    assert_stops_saying(service, &["ssl.key.location"], "a wrong key password");
    assert!(output_has_no_key_password(&registry.output()));
}
