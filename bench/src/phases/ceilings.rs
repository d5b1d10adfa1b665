//! The broker's raw ceilings, on N real Avro records (which then feed the catch-up): what a
//! bare rdkafka producer and consumer configured like the services reach, in the same run, so
//! the services' numbers can be read as ratios of them.

use std::time::{Duration, Instant};

use anyhow::Context;

use super::{sampled, Bench, Stack, CATCHUP_TOPIC, WINDOW_TOPIC};
use crate::raw;
use crate::report::Results;
use crate::say;
use crate::settings::FETCH_WAIT_MAX_MS;

/// Encodes N records, produces a slice at the closed loop's concurrency, then all N with the
/// raw window (the produce ceiling), then consumes them from the beginning (the consume ceiling).
pub(super) async fn raw_produce_and_consume(
    b: &Bench<'_>,
    stack: &Stack,
    r: &mut Results,
) -> anyhow::Result<()> {
    let s = b.settings;
    say(format!("encoding {} order records", s.orders));
    let codec = order_events::OrderEventCodec::new(
        &order_events::RegistryConfig::new(stack.registry_url.clone()),
        CATCHUP_TOPIC,
    )
    .context("creating the codec")?;
    let schema_id = codec.register().await.context("registering the schema")?;
    let encode_started = Instant::now();
    let (orders, num_items) = (s.orders, s.num_items);
    let records =
        tokio::task::spawn_blocking(move || raw::records("CATCHUP-", orders, num_items, schema_id))
            .await
            .context("the encoding task failed")??;
    r.ceilings.encode_time = encode_started.elapsed();
    r.ceilings.raw_value_len = records.first().map_or(0, |rec| rec.value.len());
    let bootstrap = stack.bootstrap.as_str();
    raw::create_topic(bootstrap, CATCHUP_TOPIC, 3).await?;
    raw::create_topic(bootstrap, WINDOW_TOPIC, 3).await?;
    let broker_only = [
        ("broker", stack.broker.pid()),
        ("schema-registry", stack.registry.pid()),
    ];

    let window_count = (s.orders / 10).clamp(1_000, 50_000).min(s.orders);
    let window_records = usize::try_from(window_count)
        .unwrap_or(records.len())
        .min(records.len());
    say(format!(
        "raw produce with {} in flight (CartService's closed-loop concurrency): {window_records} records",
        s.connections
    ));
    let window = raw::produce(
        bootstrap,
        WINDOW_TOPIC,
        s.linger_ms,
        &records[..window_records],
        s.connections,
    )
    .await?;
    say(format!("  {:.0} records/s", window.rate()));
    r.ceilings.produce_window = Some(window);

    say(format!(
        "raw produce ceiling: {} records, {} in flight",
        records.len(),
        s.raw_window
    ));
    let produce = raw::produce(
        bootstrap,
        CATCHUP_TOPIC,
        s.linger_ms,
        &records,
        s.raw_window,
    );
    let produce = sampled("raw produce ceiling", &broker_only, r, produce).await?;
    say(format!(
        "  {:.0} records/s in {:.1} s",
        produce.rate(),
        produce.elapsed.as_secs_f64()
    ));
    r.ceilings.produce = Some(produce);
    drop(records);

    say("raw consume ceiling (assign, from the beginning)");
    let consume_bootstrap = stack.bootstrap.clone();
    let consume = async move {
        tokio::task::spawn_blocking(move || {
            raw::consume(
                &consume_bootstrap,
                CATCHUP_TOPIC,
                orders,
                FETCH_WAIT_MAX_MS,
                Duration::from_secs(1800),
            )
        })
        .await
        .context("the consume task failed")?
    };
    let consume = sampled("raw consume ceiling", &broker_only, r, consume).await?;
    say(format!(
        "  {:.0} records/s in {:.1} s",
        consume.rate(),
        consume.elapsed.as_secs_f64()
    ));
    r.ceilings.consume = Some(consume);
    Ok(())
}
