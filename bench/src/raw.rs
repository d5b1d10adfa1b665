//! The broker's ceilings, measured with raw rdkafka clients, and the records they move.
//!
//! Why: "CartService does X orders/s" means little without what the broker itself allows on
//! the same machine in the same run. The raw producer is configured as CartService's producer
//! is (acks=all, idempotence, max.in.flight 5, the same `linger.ms`), sends records of the same
//! key pattern, value size and headers (real Avro order events, encoded with our codec, so the
//! same records then feed OrderService's catch-up), and keeps many records in flight, which is
//! what makes it a ceiling. The raw consumer assigns every partition from the beginning with
//! the `fetch.wait.max.ms` OrderService uses and only counts records, nothing else.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::stream::{FuturesUnordered, StreamExt};
use hdrhistogram::Histogram;
use order_events::{
    Currency, CustomerId, ItemId, Money, Order, OrderEvent, OrderId, OrderItem, OrderStatus,
    Quantity,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::load::new_histogram;

/// One record ready to send: key, Confluent-framed Avro value, the event id for its header.
pub struct Record {
    pub key: String,
    pub value: Vec<u8>,
    pub event_id: String,
}

/// A small deterministic generator (SplitMix64), so the records need no `rand` dependency and
/// every run sends the same orders.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn range(&mut self, low: u64, high_inclusive: u64) -> u64 {
        low + self.next() % (high_inclusive - low + 1)
    }
}

/// An `ORDER_CREATED` event shaped as CartService generates one for `{"orderId", "numItems"}`:
/// `CUST-` and 5 digits, `ITEM-` and 4 digits, quantity 1-5, price 1.00-500.00, USD/EUR/GBP.
pub fn order_event(order_id: &str, num_items: u32, seed: u64) -> anyhow::Result<OrderEvent> {
    let mut rng = SplitMix(seed);
    let items = (0..num_items)
        .map(|_| {
            let id = ItemId::parse(format!("ITEM-{:04}", rng.range(0, 9_999)))?;
            let quantity = Quantity::new(rng.range(1, 5) as i64)?;
            let price = Money::from_cents(rng.range(100, 50_000) as i64)?;
            OrderItem::new(id, quantity, price)
        })
        .collect::<Result<Vec<_>, _>>()
        .context("generating items")?;
    let total = Money::checked_sum(items.iter().map(OrderItem::line_total))
        .context("the total overflows")?;
    let currency = Currency::parse(["USD", "EUR", "GBP"][(rng.next() % 3) as usize])
        .context("parsing a currency")?;
    let now = chrono::Utc::now();
    let order = Order::new(
        OrderId::parse(order_id).context("parsing an order id")?,
        CustomerId::parse(format!("CUST-{}", rng.range(10_000, 99_999)))
            .context("generating a customer")?,
        now,
        items,
        total,
        currency,
        OrderStatus::Pending,
    )
    .context("building an order")?;
    OrderEvent::created(uuid::Uuid::new_v4(), now, order).context("building an event")
}

/// Encodes `count` order events `{prefix}{i}` with `schema_id` (Confluent framing), as
/// CartService's codec does.
pub fn records(
    prefix: &str,
    count: u64,
    num_items: u32,
    schema_id: u32,
) -> anyhow::Result<Vec<Record>> {
    let mut out = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    for i in 0..count {
        let key = format!("{prefix}{i}");
        let event = order_event(&key, num_items, i)?;
        let datum = event.to_avro_datum().context("encoding Avro")?;
        out.push(Record {
            value: order_events::frame(schema_id, &datum),
            event_id: event.event_id().to_string(),
            key,
        });
    }
    Ok(out)
}

/// Creates `topic` with `partitions` as the services create theirs (`service_kit::kafka`).
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let spec = service_kit::kafka::TopicSpec {
        name: topic,
        partitions,
        config: &[],
        exact_partitions: false,
    };
    let settings = service_kit::kafka::KafkaSettings::plain(bootstrap);
    service_kit::kafka::ensure_topic(&settings, &spec, Duration::from_secs(30)).await?;
    Ok(())
}

/// What a produce run measured.
#[derive(Debug, Clone)]
pub struct ProduceResult {
    pub records: u64,
    pub elapsed: Duration,
    /// Send → acknowledgement, µs.
    pub ack: Histogram<u64>,
    pub window: usize,
}

impl ProduceResult {
    pub fn rate(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The producer configuration CartService uses (see `cart-service/src/kafka.rs`).
pub fn producer_config(bootstrap: &str, linger_ms: u32) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("max.in.flight.requests.per.connection", "5")
        .set("linger.ms", linger_ms.to_string())
        .set("message.timeout.ms", "30000");
    config
}

/// Produces every record to `topic`, keeping at most `window` unacknowledged, and waits for
/// the last acknowledgement. Fails on the first failed delivery.
pub async fn produce(
    bootstrap: &str,
    topic: &str,
    linger_ms: u32,
    records: &[Record],
    window: usize,
) -> anyhow::Result<ProduceResult> {
    let producer: FutureProducer = producer_config(bootstrap, linger_ms)
        .create()
        .context("creating the raw producer")?;
    // Connect and fetch metadata before the clock starts, as CartService has at start-up.
    producer
        .client()
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .context("fetching metadata")?;
    let mut in_flight = FuturesUnordered::new();
    let mut ack = new_histogram();
    let started = Instant::now();
    for record in records {
        while in_flight.len() >= window.max(1) {
            if let Some(done) = in_flight.next().await {
                record_ack(done, &mut ack)?;
            }
        }
        let request_id = uuid::Uuid::new_v4().to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "request-id",
                value: Some(request_id.as_str()),
            })
            .insert(Header {
                key: "event-id",
                value: Some(record.event_id.as_str()),
            })
            .insert(Header {
                key: "event-type",
                value: Some("ORDER_CREATED"),
            });
        let sent_at = Instant::now();
        let future = producer.send(
            FutureRecord::to(topic)
                .key(record.key.as_str())
                .payload(record.value.as_slice())
                .headers(headers),
            Duration::from_secs(30),
        );
        in_flight.push(async move { (future.await, sent_at) });
    }
    while let Some(done) = in_flight.next().await {
        record_ack(done, &mut ack)?;
    }
    Ok(ProduceResult {
        records: records.len() as u64,
        elapsed: started.elapsed(),
        ack,
        window,
    })
}

type Delivery = (
    Result<
        rdkafka::producer::future_producer::Delivery,
        (rdkafka::error::KafkaError, rdkafka::message::OwnedMessage),
    >,
    Instant,
);

fn record_ack(done: Delivery, ack: &mut Histogram<u64>) -> anyhow::Result<()> {
    let (result, sent_at) = done;
    if let Err((e, _)) = result {
        bail!("a raw produce failed: {e}");
    }
    ack.saturating_record(u64::try_from(sent_at.elapsed().as_micros()).unwrap_or(u64::MAX));
    Ok(())
}

/// What a consume run measured.
#[derive(Debug, Clone)]
pub struct ConsumeResult {
    pub records: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    /// Size of the first record's value, bytes.
    pub first_value_len: usize,
    /// Size of the first record's headers (names + values), bytes.
    pub first_headers_len: usize,
}

impl ConsumeResult {
    pub fn rate(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Assigns every partition of `topic` from the beginning and reads until `count` records were
/// seen (blocking; run it off the async runtime). `fetch_wait_max_ms` as OrderService's.
pub fn consume(
    bootstrap: &str,
    topic: &str,
    count: u64,
    fetch_wait_max_ms: u32,
    limit: Duration,
) -> anyhow::Result<ConsumeResult> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("bench-raw-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", fetch_wait_max_ms.to_string())
        .create()
        .context("creating the raw consumer")?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .context("fetching metadata")?;
    let partitions = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().len())
        .context("the topic is not in the metadata")?;
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment
            .add_partition_offset(topic, i32::try_from(p).unwrap_or(0), Offset::Beginning)
            .context("building the assignment")?;
    }
    let started = Instant::now();
    consumer.assign(&assignment).context("assigning")?;
    let mut records = 0_u64;
    let mut bytes = 0_u64;
    let mut first_value_len = 0;
    let mut first_headers_len = 0;
    while records < count {
        if started.elapsed() > limit {
            bail!("read only {records} of {count} records from {topic} within {limit:?}");
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                if records == 0 {
                    first_value_len = message.payload_len();
                    first_headers_len = headers_len(&message);
                }
                records += 1;
                bytes += (message.payload_len() + message.key().map_or(0, <[u8]>::len)) as u64;
            }
            Some(Err(e)) => bail!("consuming {topic}: {e}"),
            None => {}
        }
    }
    Ok(ConsumeResult {
        records,
        bytes,
        elapsed: started.elapsed(),
        first_value_len,
        first_headers_len,
    })
}

fn headers_len(message: &rdkafka::message::BorrowedMessage<'_>) -> usize {
    use rdkafka::message::Headers;
    message.headers().map_or(0, |headers| {
        headers
            .iter()
            .map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len))
            .sum()
    })
}
