//! Latency: the whole pipeline (CartService → broker → OrderService) at fixed rates, open loop,
//! after a short warm-up; then one of CartService's records read back, to size the raw ones.

use std::time::Duration;

use anyhow::{bail, Context};

use super::{sampled, Bench, Stack};
use crate::load::{self, LoadConfig, Mode};
use crate::raw;
use crate::report::Results;
use crate::say;
use crate::settings::FETCH_WAIT_MAX_MS;

/// 2 s at 200 orders/s end to end: connections, the registry cache, SQLite pages. Not
/// reported; a failure here stops the run.
pub(super) async fn warm_up(b: &Bench<'_>, stack: &Stack) -> anyhow::Result<()> {
    say("warm-up: 2 s at 200 orders/s end to end");
    let mut warm = LoadConfig::new(format!("127.0.0.1:{}", stack.cart_port));
    warm.connections = 16;
    warm.mode = Mode::Open { rate: 200.0 };
    warm.duration = Duration::from_secs(2);
    warm.id_prefix = "WARM-".into();
    warm.num_items = b.settings.num_items;
    warm.follow = Some(format!("127.0.0.1:{}", stack.order_port));
    let report = load::run(warm).await?;
    if report.error_count() > 0 {
        bail!("the warm-up failed: {}", report.summary());
    }
    Ok(())
}

/// Open loop at each of the settings' rates, every create followed to OrderService.
pub(super) async fn end_to_end_at_fixed_rates(
    b: &Bench<'_>,
    stack: &Stack,
    r: &mut Results,
) -> anyhow::Result<()> {
    let rate_seconds = b.settings.rate_duration();
    for &rate in b.settings.rates.iter().filter(|r| **r > 0.0) {
        // Enough workers that 100 ms of latency causes no queueing in the generator itself.
        let connections = ((rate * 0.1).ceil() as usize).clamp(16, 512);
        say(format!(
            "end to end: {rate:.0} orders/s for {rate_seconds} s ({connections} connections)"
        ));
        let mut config = LoadConfig::new(format!("127.0.0.1:{}", stack.cart_port));
        config.connections = connections;
        config.mode = Mode::Open { rate };
        config.duration = Duration::from_secs_f64(rate_seconds);
        config.id_prefix = format!("E2E{rate:.0}-");
        config.num_items = b.settings.num_items;
        config.follow = Some(format!("127.0.0.1:{}", stack.order_port));
        let phase = format!("end to end at {rate:.0}/s");
        let report = sampled(&phase, &stack.services(), r, load::run(config)).await?;
        say(report.summary());
        r.fixed_rates.push(report);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(())
}

/// The size of a record CartService wrote (value and headers), to compare the raw producer's
/// with. A record that cannot be read is not fatal: the report then leaves the comparison out.
pub(super) async fn read_a_cart_record(stack: &Stack, r: &mut Results) -> anyhow::Result<()> {
    let bootstrap = stack.bootstrap.clone();
    let read = tokio::task::spawn_blocking(move || {
        raw::consume(
            &bootstrap,
            "order-events",
            1,
            FETCH_WAIT_MAX_MS,
            Duration::from_secs(30),
        )
    })
    .await
    .context("the probe task failed")?;
    match read {
        Ok(record) => r.cart_record = Some(record),
        Err(e) => say(format!("could not read a CartService record: {e:#}")),
    }
    Ok(())
}
