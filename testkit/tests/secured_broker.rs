//! The secured embedded broker, with plain rdkafka clients: a record goes through over TLS,
//! SASL_SSL with each SCRAM mechanism Nisshi has, and SASL_PLAINTEXT; and the failures a user
//! meets (a CA that did not sign the broker's certificate, an expired broker certificate, a wrong
//! password) surface as errors within a bounded time, not as a hang. The librdkafka error text
//! of each failure is printed (`--nocapture`), since the services' start-up messages build on it.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::net::TcpStream;

use openssl::ssl::{HandshakeError, SslConnector, SslMethod};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use testkit::tls::{TestPki, Validity};
use testkit::{Broker, ScramMechanism};

const T: Duration = Duration::from_secs(10);

fn config(broker: &Broker, properties: &[(String, String)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", broker.bootstrap_servers());
    for (name, value) in properties {
        config.set(name, value);
    }
    config
}

/// Produces one record with `properties` and reads it back with a second client.
async fn round_trip(broker: &Broker, properties: Vec<(String, String)>, topic: &str) {
    let producer: FutureProducer = config(broker, &properties)
        .set("message.timeout.ms", "10000")
        .create()
        .unwrap();
    let value = format!("hello over {topic}");
    let rdkafka::producer::future_producer::Delivery {
        partition, offset, ..
    } = producer
        .send(FutureRecord::to(topic).key("k").payload(&value), T)
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    let consumer: BaseConsumer = config(broker, &properties)
        .set("group.id", "secured-broker-test")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, partition, Offset::Offset(offset))
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let deadline = Instant::now() + T;
    let read = tokio::task::spawn_blocking(move || loop {
        assert!(
            Instant::now() < deadline,
            "no record read back within {T:?}"
        );
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.unwrap();
            return message
                .payload()
                .map(|p| String::from_utf8_lossy(p).into_owned());
        }
    })
    .await
    .unwrap();
    assert_eq!(read.as_deref(), Some(value.as_str()));
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_carries_a_record_and_survives_a_restart() {
    let pki = TestPki::new().unwrap();
    let mut broker = Broker::builder()
        .tls(&pki, Validity::Current)
        .start()
        .unwrap();
    let properties = broker.client_properties();
    assert!(properties.contains(&("security.protocol".into(), "SSL".into())));
    broker.create_topic("over-tls", 1).await.unwrap();
    round_trip(&broker, properties.clone(), "over-tls").await;

    // The pki may go: the broker keeps its own copies. A restart is TLS again, and a plaintext
    // client is not served.
    drop(pki);
    broker.restart().unwrap();
    round_trip(&broker, broker.client_properties(), "over-tls").await;
    let plain = metadata_error(&broker, &[]);
    assert!(
        plain.is_some(),
        "a plaintext client was served by a TLS listener"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sasl_ssl_with_scram_sha_256_and_scram_sha_512() {
    let pki = TestPki::new().unwrap();
    let broker = Broker::builder()
        .tls(&pki, Validity::Current)
        .sasl_user("alice", "alice-secret", ScramMechanism::Sha256)
        .sasl_user("bob", "bob-secret", ScramMechanism::Sha512)
        .start()
        .unwrap();
    broker.create_topic("over-sasl-ssl", 1).await.unwrap();
    let alice = broker.client_properties_as("alice").unwrap();
    assert!(alice.contains(&("security.protocol".into(), "SASL_SSL".into())));
    assert!(alice.contains(&("sasl.mechanism".into(), "SCRAM-SHA-256".into())));
    round_trip(&broker, alice, "over-sasl-ssl").await;
    let bob = broker.client_properties_as("bob").unwrap();
    assert!(bob.contains(&("sasl.mechanism".into(), "SCRAM-SHA-512".into())));
    round_trip(&broker, bob.clone(), "over-sasl-ssl").await;
    // testkit's topic reader reaches a secured broker too.
    let bootstrap = broker.bootstrap_servers();
    let records = tokio::task::spawn_blocking(move || {
        testkit::topic::read_to_end_with(&bootstrap, &bob, "over-sasl-ssl", T)
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(records.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn sasl_plaintext_authenticates_and_survives_a_restart() {
    let mut broker = Broker::builder()
        .sasl_user("carol", "carol-secret", ScramMechanism::Sha512)
        .start()
        .unwrap();
    let properties = broker.client_properties();
    assert!(properties.contains(&("security.protocol".into(), "SASL_PLAINTEXT".into())));
    broker.create_topic("over-sasl", 1).await.unwrap();
    round_trip(&broker, properties, "over-sasl").await;
    broker.restart().unwrap();
    round_trip(&broker, broker.client_properties(), "over-sasl").await;
    // Without credentials the broker refuses to serve.
    let anonymous = metadata_error(&broker, &[]);
    assert!(anonymous.is_some(), "an unauthenticated client was served");
}

/// What a client context heard from librdkafka: error callbacks and log lines, each distinct
/// text once (librdkafka repeats itself on every reconnect).
#[derive(Clone, Default)]
struct Heard(Arc<Mutex<Vec<String>>>);

impl Heard {
    fn hear(&self, line: String) {
        // "(after 2ms in state ...)" differs between repeats.
        let line = match line.find(" (after ") {
            Some(at) => line[..at].to_string(),
            None => line,
        };
        let mut heard = self.0.lock().unwrap();
        if !heard.contains(&line) {
            heard.push(line);
        }
    }
}

impl ClientContext for Heard {
    fn log(&self, _level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.hear(format!("log {fac}: {message}"));
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.hear(format!("error callback {error}: {reason}"));
    }
}

impl ConsumerContext for Heard {}

/// Asks for metadata with a 10 s timeout; returns `None` if it was answered, else the metadata
/// error and what librdkafka reported, after checking that it failed within the bound.
fn metadata_error(broker: &Broker, properties: &[(String, String)]) -> Option<String> {
    let heard = Heard::default();
    let consumer: BaseConsumer<Heard> = config(broker, properties)
        .create_with_context(heard.clone())
        .unwrap();
    let started = Instant::now();
    let result = consumer.fetch_metadata(None, T);
    let elapsed = started.elapsed();
    assert!(
        elapsed < T + Duration::from_secs(5),
        "metadata took {elapsed:?}"
    );
    match result {
        Ok(_) => None,
        Err(error) => {
            eprintln!("metadata failed after {elapsed:?}");
            // Errors and logs reach the context when the client's queue is served.
            for _ in 0..5 {
                let _ = consumer.poll(Duration::from_millis(100));
            }
            let heard = heard.0.lock().unwrap().join("\n");
            Some(format!("{error}\n{heard}"))
        }
    }
}

fn with(mut properties: Vec<(String, String)>, name: &str, value: &str) -> Vec<(String, String)> {
    properties.retain(|(n, _)| n != name);
    properties.push((name.to_string(), value.to_string()));
    properties
}

#[test]
fn a_wrong_ca_is_a_certificate_verify_error() {
    let pki = TestPki::new().unwrap();
    let wrong = TestPki::new().unwrap();
    let broker = Broker::builder()
        .tls(&pki, Validity::Current)
        .start()
        .unwrap();
    assert_eq!(metadata_error(&broker, &broker.client_properties()), None);
    let properties = with(
        broker.client_properties(),
        "ssl.ca.location",
        &wrong.ca_file().display().to_string(),
    );
    let error = metadata_error(&broker, &properties).expect("a wrong CA was accepted");
    eprintln!("WRONG CA:\n{error}");
    assert!(error.contains("certificate verify failed"), "{error}");
}

#[test]
fn an_expired_broker_certificate_is_reported_as_expired() {
    let pki = TestPki::new().unwrap();
    let broker = Broker::builder()
        .tls(&pki, Validity::Expired)
        .start()
        .unwrap();
    let error = metadata_error(&broker, &broker.client_properties())
        .expect("an expired certificate was accepted");
    eprintln!("EXPIRED:\n{error}");
    // librdkafka does not say why verification failed: the same text as a wrong CA.
    assert!(error.contains("certificate verify failed"), "{error}");
    // OpenSSL's own handshake with the right CA names the cause, which a start-up check
    // can report.
    let connector = {
        let mut builder = SslConnector::builder(SslMethod::tls_client()).unwrap();
        builder.set_ca_file(pki.ca_file()).unwrap();
        builder.build()
    };
    let stream = TcpStream::connect(broker.bootstrap_servers()).unwrap();
    stream.set_read_timeout(Some(T)).unwrap();
    match connector.connect("localhost", stream) {
        Ok(_) => panic!("the expired certificate passed OpenSSL's verification"),
        Err(HandshakeError::Failure(mid)) => {
            assert_eq!(
                mid.ssl().verify_result().error_string(),
                "certificate has expired"
            )
        }
        Err(other) => panic!("handshake: {other}"),
    }
}

#[test]
fn a_wrong_password_is_an_authentication_error() {
    let pki = TestPki::new().unwrap();
    let broker = Broker::builder()
        .tls(&pki, Validity::Current)
        .sasl_user("dave", "right", ScramMechanism::Sha256)
        .start()
        .unwrap();
    assert_eq!(metadata_error(&broker, &broker.client_properties()), None);
    let properties = with(broker.client_properties(), "sasl.password", "wrong");
    let error = metadata_error(&broker, &properties).expect("a wrong password was accepted");
    eprintln!("WRONG PASSWORD:\n{error}");
    assert!(error.contains("SASL authentication error"), "{error}");
}

/// Nisshi enables SCRAM-SHA-256 and SCRAM-SHA-512 only (nisshi-auth's `MECHANISMS`): PLAIN and
/// OAUTHBEARER configurations are accepted by librdkafka and refused by the broker, which names
/// the mechanisms it has.
#[test]
fn plain_and_oauthbearer_are_refused_naming_the_broker_mechanisms() {
    let pki = TestPki::new().unwrap();
    let broker = Broker::builder()
        .tls(&pki, Validity::Current)
        .sasl_user("erin", "erin-secret", ScramMechanism::Sha512)
        .start()
        .unwrap();
    let plain = with(broker.client_properties(), "sasl.mechanism", "PLAIN");
    let error = metadata_error(&broker, &plain).expect("PLAIN was accepted");
    eprintln!("PLAIN:\n{error}");
    assert!(
        error.contains("Unsupported SASL mechanism: broker's supported mechanisms: SCRAM-SHA-512"),
        "{error}"
    );

    let mut oauth: Vec<(String, String)> = broker
        .client_properties()
        .into_iter()
        .filter(|(name, _)| !name.starts_with("sasl."))
        .collect();
    oauth.extend(
        [
            ("sasl.mechanism", "OAUTHBEARER"),
            ("enable.sasl.oauthbearer.unsecure.jwt", "true"),
            ("sasl.oauthbearer.config", "principal=erin"),
        ]
        .map(|(n, v)| (n.to_string(), v.to_string())),
    );
    let error = metadata_error(&broker, &oauth).expect("OAUTHBEARER was accepted");
    eprintln!("OAUTHBEARER:\n{error}");
    assert!(
        error.contains("Unsupported SASL mechanism: broker's supported mechanisms: SCRAM-SHA-512"),
        "{error}"
    );
}
