//! What the project relies on from the embedded broker (Nisshi 0.8.1), checked against the real
//! one: consumer groups that share out partitions, idempotent producing and acknowledged data
//! that survive kill -9 — and what it must not rely on: Kafka transactions, which Nisshi 0.8
//! refuses by design. A design that needs fenced writers (CartService scaled out) has to fence
//! without broker transactions on the embedded default, or run on a broker that has them.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use testkit::Broker;

const T: Duration = Duration::from_secs(30);

fn send(producer: &BaseProducer, topic: &str, partition: i32, value: &str) {
    producer
        .send(
            BaseRecord::to(topic)
                .partition(partition)
                .key(value)
                .payload(value),
        )
        .map_err(|(e, _)| e)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn transactional_producers_are_refused_with_a_clear_error_and_idempotent_ones_work() {
    let broker = Broker::start().unwrap();
    broker.create_topic("tx", 1).await.unwrap();
    tokio::task::spawn_blocking(move || {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", broker.bootstrap_servers())
            .set("transactional.id", "would-be-fenced-writer")
            .create()
            .unwrap();
        let refused = producer.init_transactions(T);
        match &refused {
            Err(KafkaError::Transaction(e)) => {
                assert_eq!(
                    e.code(),
                    rdkafka::types::RDKafkaErrorCode::TransactionalIdAuthorizationFailed,
                    "{e}"
                );
                assert!(e.is_fatal(), "the refusal must be final, not retried: {e}");
            }
            other => panic!(
                "transactions are supported after all ({other:?}): revisit the \
                             fencing design and this test"
            ),
        }

        let idempotent: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", broker.bootstrap_servers())
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .create()
            .unwrap();
        send(&idempotent, "tx", 0, "idempotent-1");
        idempotent.flush(T).unwrap();
        let records = testkit::topic::read_to_end(&broker.bootstrap_servers(), "tx", T).unwrap();
        assert_eq!(records.len(), 1);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn consumers_of_one_group_share_the_partitions() {
    let broker = Broker::start().unwrap();
    broker.create_topic("grouped", 3).await.unwrap();
    tokio::task::spawn_blocking(move || {
        let member = || -> BaseConsumer {
            let c: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", broker.bootstrap_servers())
                .set("group.id", "sharing")
                .set("partition.assignment.strategy", "cooperative-sticky")
                .set("session.timeout.ms", "10000")
                .create()
                .unwrap();
            c.subscribe(&["grouped"]).unwrap();
            c
        };
        let (a, b) = (member(), member());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let _ = a.poll(Duration::from_millis(100));
            let _ = b.poll(Duration::from_millis(100));
            let (na, nb) = (
                a.assignment().unwrap().count(),
                b.assignment().unwrap().count(),
            );
            if na + nb == 3 && na >= 1 && nb >= 1 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the group did not share 3 partitions between 2 members: {na} + {nb}"
            );
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_records_survive_kill_9_and_idempotent_producing_resumes() {
    let mut broker = Broker::start().unwrap();
    broker.create_topic("durable", 1).await.unwrap();
    let bootstrap = broker.bootstrap_servers();
    let producer: rdkafka::producer::FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "5000")
        .create()
        .unwrap();
    let send = |i: usize| {
        let value = format!("r-{i}");
        let producer = producer.clone();
        async move {
            producer
                .send(
                    rdkafka::producer::FutureRecord::to("durable")
                        .key(&value)
                        .payload(&value),
                    Duration::from_secs(5),
                )
                .await
                .is_ok()
        }
    };
    for i in 0..100 {
        assert!(send(i).await);
    }
    broker.kill();
    // Publishes during the outage time out (the case that wedged Tansu 0.6 afterwards).
    let during = send(1000).await;
    assert!(!during, "a publish succeeded with the broker dead");
    broker.restart().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut i = 100;
    let mut after = 0;
    while after < 50 {
        assert!(
            Instant::now() < deadline,
            "producing did not resume after the restart"
        );
        if send(i).await {
            after += 1;
        }
        i += 1;
    }
    let records = testkit::topic::read_to_end(&bootstrap, "durable", T).unwrap();
    let values: Vec<String> = records
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap()).into_owned())
        .collect();
    let unique: BTreeSet<&String> = values.iter().collect();
    assert_eq!(unique.len(), values.len(), "a record is on the topic twice");
    for i in 0..100 {
        assert!(values.contains(&format!("r-{i}")), "r-{i} was lost");
    }
}
