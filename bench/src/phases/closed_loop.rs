//! CartService's own throughput: closed loop, as many creates as its connections can get
//! answered. OrderService is stopped first so that, like the raw producer later, CartService
//! shares the two cores only with the broker and the generator.

use std::time::Duration;

use super::{perf, sampled, Bench, Stack};
use crate::load::{self, LoadConfig, Mode};
use crate::report::Results;
use crate::say;

/// Stops OrderService, runs the closed loop (profiled with `--profile`), then stops CartService.
pub(super) async fn cart_service_closed_loop(
    b: &Bench<'_>,
    stack: &mut Stack,
    r: &mut Results,
) -> anyhow::Result<()> {
    let closed_seconds = b.settings.closed_duration();
    say("stopping the main order-service for the closed-loop run");
    stack.order.stop();
    let cart_only = [
        ("broker", stack.broker.pid()),
        ("schema-registry", stack.registry.pid()),
        ("cart-service", stack.cart.pid()),
    ];
    say(format!(
        "CartService closed loop: {} connections for {closed_seconds} s",
        b.settings.connections
    ));
    let mut config = LoadConfig::new(format!("127.0.0.1:{}", stack.cart_port));
    config.connections = b.settings.connections;
    config.mode = Mode::Closed;
    config.duration = Duration::from_secs_f64(closed_seconds);
    config.id_prefix = "CLOSED-".into();
    config.num_items = b.settings.num_items;
    let profile = b.settings.profile.then(|| {
        perf::start(
            "cart-service",
            stack.cart.pid(),
            closed_seconds * 0.8,
            &b.work,
        )
    });
    let closed = sampled("CartService closed loop", &cart_only, r, load::run(config)).await?;
    if let Some(perf) = profile {
        r.profiles.push(perf::finish("cart-service", perf));
    }
    say(closed.summary());
    r.closed_loop = Some(closed);
    stack.cart.stop();
    Ok(())
}
