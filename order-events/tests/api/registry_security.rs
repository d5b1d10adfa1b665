//! `OrderEventCodec` against our real registry secured: HTTPS with a certificate of a test CA
//! and HTTP Basic authentication with a read-write and a read-only user, on a real broker.
//!
//! What it pins: the settings of `RegistryArgs` (CA file, user info from the environment, a
//! file or the URL) really reach the registry; refused credentials and TLS failures are fatal
//! errors that name the registry (without credentials) and the problem instead of an endless
//! "unreachable" retry; a consumer keeps treating them as "registry unavailable", never as
//! poison; and no password appears in any error.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::sample_event;
use order_events::{
    ContractError, DecodeError, OrderEventCodec, RegistryArgs, RegistryFailure, ORDER_EVENTS_TOPIC,
};
use schema_registry::password::{Params, PasswordHash};
use schema_registry::{Running, Settings};
use testkit::tls::{Issued, TestPki, Validity};
use testkit::Broker;

/// Distinctive, and full of characters that need percent-encoding in a URL.
const ALICE_PASSWORD: &str = "alice:Pw/7f@3c#9e%1d";
const BOB_PASSWORD: &str = "bob-Pw-52ab90c4";
const WRONG_PASSWORD: &str = "wrong-Pw-0d1e2f3a";
const SECRETS: [&str; 3] = [ALICE_PASSWORD, BOB_PASSWORD, WRONG_PASSWORD];

/// Cheap Argon2id parameters: the tests are about the client, not the hash's cost.
const CHEAP: Params = Params {
    memory_kib: 64,
    iterations: 1,
    lanes: 1,
};

/// Our registry on `broker` serving HTTPS with `cert`, and a users file with alice
/// (read-write) and bob (read-only).
struct SecureRegistry {
    running: Running,
    _users: tempfile::TempDir,
}

impl SecureRegistry {
    async fn start(broker: &Broker, cert: &Issued) -> SecureRegistry {
        let users = tempfile::tempdir().unwrap();
        let users_file = users.path().join("users");
        let line = |name: &str, password: &str, role: &str| {
            let hash = PasswordHash::create(password.as_bytes(), CHEAP).unwrap();
            format!("{name}:{}:{role}\n", hash.to_phc())
        };
        let text =
            line("alice", ALICE_PASSWORD, "read-write") + &line("bob", BOB_PASSWORD, "read-only");
        std::fs::write(&users_file, text).unwrap();
        let mut settings = Settings::for_tests(&broker.bootstrap_servers());
        settings.api_tls_cert_file = Some(cert.cert.clone());
        settings.api_tls_key_file = Some(cert.key.clone());
        settings.schema_registry_auth_file = Some(users_file);
        let running = schema_registry::spawn(settings).await.unwrap();
        SecureRegistry {
            running,
            _users: users,
        }
    }

    fn port(&self) -> u16 {
        port_of(self.running.url())
    }

    /// `https://localhost:PORT`.
    fn url(&self) -> String {
        format!("https://localhost:{}", self.port())
    }
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

/// Settings as a service gets them from its environment.
fn args(url: &str, ca: Option<&Path>, user_info: Option<String>) -> RegistryArgs {
    let mut args = RegistryArgs::new(url);
    args.ca_file = ca.map(Path::to_path_buf);
    args.basic_auth_user_info = user_info;
    args
}

fn codec(args: &RegistryArgs, topic: &str) -> OrderEventCodec {
    let config = args
        .resolve()
        .unwrap()
        .with_timeout(Duration::from_secs(10));
    OrderEventCodec::new(&config, topic).unwrap()
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The error in every form a service may print it, checked for passwords.
fn assert_no_secret(shown: &[String]) {
    for text in shown {
        for secret in SECRETS {
            assert!(!text.contains(secret), "a password leaked: {text}");
        }
        assert!(!text.contains("alice:"), "user info leaked: {text}");
    }
}

/// `{}`, `{:?}` and the whole chain of `source()`s, as `anyhow`'s `{:#}` would show it.
fn every_form(error: &ContractError) -> Vec<String> {
    let mut shown = vec![error.to_string(), format!("{error:?}")];
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        shown.push(e.to_string());
        shown.push(format!("{e:?}"));
        source = e.source();
    }
    shown
}

/// A fatal registry error of the expected kind, naming the registry; returns its message.
fn assert_fatal(
    error: &ContractError,
    registry: &str,
    expected: fn(&RegistryFailure) -> bool,
) -> String {
    let message = error.to_string();
    assert!(error.is_fatal() && !error.is_retriable(), "{message}");
    let failure = error.registry_failure().unwrap();
    assert!(expected(failure), "{failure:?}: {message}");
    assert!(message.contains(registry), "{message}");
    assert_no_secret(&every_form(error));
    message
}

#[tokio::test]
async fn over_https_a_read_write_user_registers_encodes_and_decodes() {
    let broker = Broker::start().unwrap();
    let pki = TestPki::new().unwrap();
    let cert = pki
        .issue("registry", &["localhost", "127.0.0.1"], Validity::Current)
        .unwrap();
    let registry = SecureRegistry::start(&broker, &cert).await;
    let alice = args(
        &registry.url(),
        Some(pki.ca_file()),
        Some(format!("alice:{ALICE_PASSWORD}")),
    );
    let codec = codec(&alice, ORDER_EVENTS_TOPIC);
    codec.check_access().await.unwrap();
    let id = codec.register().await.unwrap();
    let event = sample_event();
    let bytes = codec.encode(&event).await.unwrap();
    assert_eq!(&bytes[1..5], &id.to_be_bytes());
    assert_eq!(codec.decode(Some(&bytes)).await.unwrap(), event);

    // A service's own probe of the registry reaches it the same way.
    codec
        .readiness(std::time::Duration::from_secs(5))
        .await
        .unwrap();
    let config = alice.resolve().unwrap();
    let client = config.http_client_builder().unwrap().build().unwrap();
    let subjects = format!("{}/subjects", config.url);
    let probe = config
        .authorize(client.get(&subjects))
        .send()
        .await
        .unwrap();
    assert_eq!(probe.status().as_u16(), 200);
    let anonymous = client.get(&subjects).send().await.unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);

    // The same user from a file, as a service reads a mounted secret.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("user-info");
    std::fs::write(&file, format!("alice:{ALICE_PASSWORD}\n")).unwrap();
    let mut from_file = args(&registry.url(), Some(pki.ca_file()), None);
    from_file.basic_auth_user_info_file = Some(file);
    let fresh = self::codec(&from_file, ORDER_EVENTS_TOPIC);
    assert_eq!(fresh.decode(Some(&bytes)).await.unwrap(), event);
    assert_eq!(fresh.register().await.unwrap(), id);
}

#[tokio::test]
async fn user_info_in_the_url_is_used_as_basic_auth_and_never_shown() {
    let broker = Broker::start().unwrap();
    let pki = TestPki::new().unwrap();
    let cert = pki
        .issue("registry", &["localhost", "127.0.0.1"], Validity::Current)
        .unwrap();
    let registry = SecureRegistry::start(&broker, &cert).await;
    let url = format!(
        "https://alice:{}@localhost:{}/",
        percent_encode(ALICE_PASSWORD),
        registry.port()
    );
    let alice = args(&url, Some(pki.ca_file()), None);
    assert_no_secret(&[
        format!("{alice:?}"),
        format!("{:?}", alice.resolve().unwrap()),
    ]);
    let codec = codec(&alice, ORDER_EVENTS_TOPIC);
    assert_no_secret(&[format!("{codec:?}")]);
    let id = codec.register().await.unwrap();
    let bytes = codec.encode(&sample_event()).await.unwrap();
    assert_eq!(&bytes[1..5], &id.to_be_bytes());

    // The same URL with a wrong password: the error shows the URL without user info.
    let wrong = format!(
        "https://alice:{}@localhost:{}",
        percent_encode(WRONG_PASSWORD),
        registry.port()
    );
    let error = self::codec(&args(&wrong, Some(pki.ca_file()), None), "other")
        .register()
        .await
        .unwrap_err();
    assert_fatal(&error, &registry.url(), |f| {
        *f == RegistryFailure::Unauthorized
    });
}

#[tokio::test]
async fn a_wrong_password_is_a_fatal_401_naming_the_registry_not_an_endless_retry() {
    let broker = Broker::start().unwrap();
    let pki = TestPki::new().unwrap();
    let cert = pki
        .issue("registry", &["localhost", "127.0.0.1"], Validity::Current)
        .unwrap();
    let registry = SecureRegistry::start(&broker, &cert).await;
    let alice = codec(
        &args(
            &registry.url(),
            Some(pki.ca_file()),
            Some(format!("alice:{ALICE_PASSWORD}")),
        ),
        ORDER_EVENTS_TOPIC,
    );
    let bytes = alice.encode(&sample_event()).await.unwrap();

    let wrong = args(
        &registry.url(),
        Some(pki.ca_file()),
        Some(format!("alice:{WRONG_PASSWORD}")),
    );
    let codec = codec(&wrong, ORDER_EVENTS_TOPIC);
    let started = Instant::now();
    let error = codec.register().await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered at once"
    );
    let message = assert_fatal(&error, &registry.url(), |f| {
        *f == RegistryFailure::Unauthorized
    });
    assert!(message.contains("401 Unauthorized"), "{message}");
    assert!(
        message.contains("check SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO"),
        "{message}"
    );
    // A second attempt says the same (the crate caches it; nothing to retry).
    let again = codec.register().await.unwrap_err();
    assert_eq!(
        again.registry_failure(),
        Some(&RegistryFailure::Unauthorized)
    );
    // The consumer's start-up check, and anonymous access, are refused the same way.
    let error = codec.check_access().await.unwrap_err();
    assert_fatal(&error, &registry.url(), |f| {
        *f == RegistryFailure::Unauthorized
    });
    let anonymous = self::codec(&args(&registry.url(), Some(pki.ca_file()), None), "t");
    let error = anonymous.check_access().await.unwrap_err();
    assert_fatal(&error, &registry.url(), |f| {
        *f == RegistryFailure::Unauthorized
    });

    // Decoding with bad credentials is the environment's fault, not the record's: retry it.
    let decoded = codec.decode(Some(&bytes)).await.unwrap_err();
    assert!(
        matches!(decoded, DecodeError::RegistryUnavailable(_)),
        "{decoded}"
    );
    assert!(!decoded.is_poison());
    let text = decoded.to_string();
    assert!(
        text.contains("401") && text.contains(&registry.url()),
        "{text}"
    );
    assert_no_secret(&[text, format!("{decoded:?}")]);
}

#[tokio::test]
async fn a_read_only_user_decodes_but_registering_is_a_fatal_403() {
    let broker = Broker::start().unwrap();
    let pki = TestPki::new().unwrap();
    let cert = pki
        .issue("registry", &["localhost", "127.0.0.1"], Validity::Current)
        .unwrap();
    let registry = SecureRegistry::start(&broker, &cert).await;
    let alice = codec(
        &args(
            &registry.url(),
            Some(pki.ca_file()),
            Some(format!("alice:{ALICE_PASSWORD}")),
        ),
        ORDER_EVENTS_TOPIC,
    );
    let event = sample_event();
    let bytes = alice.encode(&event).await.unwrap();

    let bob = args(
        &registry.url(),
        Some(pki.ca_file()),
        Some(format!("bob:{BOB_PASSWORD}")),
    );
    let reader = codec(&bob, ORDER_EVENTS_TOPIC);
    reader.check_access().await.unwrap();
    assert_eq!(reader.decode(Some(&bytes)).await.unwrap(), event);

    let writer = codec(&bob, "a-new-topic");
    let error = writer.register().await.unwrap_err();
    let message = assert_fatal(&error, &registry.url(), |f| {
        *f == RegistryFailure::Forbidden
    });
    assert!(message.contains("403 Forbidden"), "{message}");
    assert!(message.contains("a-new-topic-value"), "{message}");
}

/// Registers through a registry whose certificate the client must refuse; returns the fatal
/// TLS error's message.
async fn refused_certificate(
    cert_hosts: &[&str],
    validity: Validity,
    trust_other_ca: bool,
) -> String {
    let broker = Broker::start().unwrap();
    let pki = TestPki::new().unwrap();
    let other = TestPki::new().unwrap();
    let cert = pki.issue("registry", cert_hosts, validity).unwrap();
    let registry = SecureRegistry::start(&broker, &cert).await;
    let ca = if trust_other_ca {
        other.ca_file()
    } else {
        pki.ca_file()
    };
    let args = args(
        &registry.url(),
        Some(ca),
        Some(format!("alice:{ALICE_PASSWORD}")),
    );
    let codec = codec(&args, ORDER_EVENTS_TOPIC);
    let started = Instant::now();
    let error = codec.register().await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered at once"
    );
    let message = assert_fatal(&error, &registry.url(), |f| {
        matches!(f, RegistryFailure::Tls(_))
    });
    assert!(message.contains("certificate"), "{message}");
    let error = codec.check_access().await.unwrap_err();
    assert_fatal(&error, &registry.url(), |f| {
        matches!(f, RegistryFailure::Tls(_))
    });
    // A consumer retries instead of dead-lettering, and says why.
    let decoded = codec.decode(Some(&[0, 0, 0, 0, 1, 2])).await.unwrap_err();
    assert!(!decoded.is_poison(), "{decoded}");
    assert!(decoded.to_string().contains("certificate"), "{decoded}");
    message
}

#[tokio::test]
async fn a_certificate_from_a_ca_we_do_not_trust_is_a_fatal_tls_error() {
    let message = refused_certificate(&["localhost"], Validity::Current, true).await;
    assert!(message.contains("certificate verify failed"), "{message}");
}

#[tokio::test]
async fn an_expired_certificate_is_a_fatal_tls_error() {
    let message = refused_certificate(&["localhost"], Validity::Expired, false).await;
    assert!(message.contains("certificate has expired"), "{message}");
}

#[tokio::test]
async fn a_certificate_for_another_host_is_a_fatal_tls_error() {
    let message = refused_certificate(&["registry.example"], Validity::Current, false).await;
    assert!(message.contains("certificate verify failed"), "{message}");
}

#[tokio::test]
async fn an_https_url_to_a_plain_http_registry_fails_instead_of_falling_back() {
    let broker = Broker::start().unwrap();
    let running = schema_registry::spawn(Settings::for_tests(&broker.bootstrap_servers()))
        .await
        .unwrap();
    let url = format!("https://localhost:{}", port_of(running.url()));
    let codec = codec(&args(&url, None, None), ORDER_EVENTS_TOPIC);
    let error = codec.register().await.unwrap_err();
    assert_fatal(&error, &url, |f| matches!(f, RegistryFailure::Tls(_)));
}
