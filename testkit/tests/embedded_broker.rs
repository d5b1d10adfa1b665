//! What the project relies on from the embedded broker, checked against the real one: Kafka
//! transactions (commit, abort, fencing of a second producer with the same `transactional.id`,
//! `read_committed` consumers that never see aborted records), consumer groups that share out
//! partitions, and data that survives kill -9. The CartService scale-out design (one fenced
//! transactional writer per partition) stands on these.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use testkit::Broker;

const T: Duration = Duration::from_secs(30);

fn transactional(broker: &Broker, id: &str) -> BaseProducer {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap_servers())
        .set("transactional.id", id)
        .set("transaction.timeout.ms", "30000")
        .create()
        .unwrap();
    producer.init_transactions(T).unwrap();
    producer
}

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

/// The values a consumer with `isolation` reads from `topic` (all partitions) until `expected`
/// arrived and then nothing more for a second.
fn read_values(broker: &Broker, topic: &str, partitions: i32, isolation: &str) -> Vec<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap_servers())
        .set("group.id", format!("reader-{isolation}"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .set("fetch.wait.max.ms", "50")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut values = Vec::new();
    let mut quiet_since = Instant::now();
    let deadline = Instant::now() + T;
    while quiet_since.elapsed() < Duration::from_secs(2) && Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.unwrap();
            values.push(String::from_utf8_lossy(message.payload().unwrap()).into_owned());
            quiet_since = Instant::now();
        }
    }
    values
}

#[tokio::test(flavor = "multi_thread")]
async fn committed_records_are_read_and_aborted_ones_are_not_by_read_committed_consumers() {
    let broker = Broker::start().unwrap();
    broker.create_topic("tx", 2).await.unwrap();
    tokio::task::spawn_blocking(move || {
        let producer = transactional(&broker, "tx-writer");
        producer.begin_transaction().unwrap();
        send(&producer, "tx", 0, "committed-1");
        send(&producer, "tx", 1, "committed-2");
        producer.commit_transaction(T).unwrap();

        producer.begin_transaction().unwrap();
        send(&producer, "tx", 0, "aborted-1");
        send(&producer, "tx", 1, "aborted-2");
        producer.flush(T).unwrap();
        producer.abort_transaction(T).unwrap();

        producer.begin_transaction().unwrap();
        send(&producer, "tx", 0, "committed-3");
        producer.commit_transaction(T).unwrap();

        let committed: BTreeSet<String> = read_values(&broker, "tx", 2, "read_committed")
            .into_iter()
            .collect();
        let expected: BTreeSet<String> = ["committed-1", "committed-2", "committed-3"]
            .map(String::from)
            .into();
        assert_eq!(
            committed, expected,
            "read_committed saw aborted or lost records"
        );
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_producer_with_the_same_transactional_id_fences_the_first() {
    let broker = Broker::start().unwrap();
    broker.create_topic("fence", 1).await.unwrap();
    tokio::task::spawn_blocking(move || {
        let old = transactional(&broker, "owner-of-p0");
        old.begin_transaction().unwrap();
        send(&old, "fence", 0, "zombie-pending");
        old.flush(T).unwrap();

        // The new owner initialises with the same transactional.id: the old epoch is fenced and
        // its open transaction aborted.
        let new = transactional(&broker, "owner-of-p0");
        new.begin_transaction().unwrap();
        send(&new, "fence", 0, "owner-1");
        new.commit_transaction(T).unwrap();

        // The zombie can no longer commit, nor write in a new transaction.
        let commit = old.commit_transaction(T);
        assert!(commit.is_err(), "a fenced producer committed: {commit:?}");
        let fenced = match commit {
            Err(KafkaError::Transaction(e)) => e.is_fatal() || e.txn_requires_abort(),
            other => panic!("expected a transaction error, got {other:?}"),
        };
        assert!(
            fenced,
            "the zombie's error must be fatal or require an abort"
        );

        let seen = read_values(&broker, "fence", 1, "read_committed");
        assert_eq!(
            seen,
            vec!["owner-1".to_string()],
            "the zombie's record is visible"
        );
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
