//! Start-up: the stack's four processes, one after the other, each timed from spawn to ready;
//! then 5 s idle, to see what each costs doing nothing.

use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use testkit::process::Process;

use super::{sampled, Bench, Stack};
use crate::report::Results;
use crate::say;
use crate::settings::{READY_LIMIT, READY_POLL};

/// Starts the broker, the registry, CartService and OrderService on free ports, timing each
/// from spawn to ready (the broker: listening) into `r.startup`.
pub(super) async fn start_stack(b: &Bench<'_>, r: &mut Results) -> anyhow::Result<Stack> {
    let broker_port = testkit::free_port()?;
    let registry_port = testkit::free_port()?;
    let cart_port = testkit::free_port()?;
    let order_port = testkit::free_port()?;
    let bootstrap = format!("127.0.0.1:{broker_port}");
    let registry_url = format!("http://127.0.0.1:{registry_port}");

    say(format!("starting {} (SQLite storage)", r.run.broker));
    let distribution = b.distribution;
    let broker_dir = b.work.join("broker");
    let broker_cmd = distribution.command(&b.broker_bin, broker_port, &broker_dir);
    let mut broker = b.spawn("broker", broker_cmd)?;
    let t = tokio::task::block_in_place(|| {
        broker.wait_listening(broker_port, READY_LIMIT, READY_POLL)
    })?;
    r.startup
        .push((format!("{} broker (listening)", distribution.name), t));
    if !b.settings.stock_tansu {
        tokio::task::spawn_blocking(move || {
            distribution.prepare(&broker_dir, Duration::from_secs(30))
        })
        .await
        .context("the broker preparation task failed")??;
    }

    let mut registry_cmd = Command::new(b.bin("schema-registry"));
    registry_cmd
        .env("KAFKA_BOOTSTRAP_SERVERS", &bootstrap)
        .env("API_PORT", registry_port.to_string());
    let mut registry = b.spawn("schema-registry", registry_cmd)?;
    let t = wait_ready(&mut registry, registry_port)?;
    r.startup
        .push(("schema-registry (empty `_schemas`)".into(), t));

    let addrs = (bootstrap.as_str(), registry_url.as_str());
    let cart_data = b.work.join("cart-main");
    let cart_cmd = b.cart_command(addrs, cart_port, "order-events", &cart_data);
    let mut cart = b.spawn("cart-service", cart_cmd)?;
    let t = wait_ready(&mut cart, cart_port)?;
    r.startup.push(("cart-service (empty topic)".into(), t));

    let order_cmd = b.order_command(
        addrs,
        order_port,
        "order-events",
        &b.work.join("order-main"),
    );
    let mut order = b.spawn("order-service", order_cmd)?;
    let t = wait_ready(&mut order, order_port)?;
    r.startup.push(("order-service (empty view)".into(), t));

    Ok(Stack {
        broker,
        registry,
        cart,
        order,
        bootstrap,
        registry_url,
        cart_port,
        order_port,
    })
}

/// Spawn → `/ready` 200 of `process` (a blocking wait, off the runtime's workers).
pub(super) fn wait_ready(process: &mut Process, port: u16) -> anyhow::Result<Duration> {
    tokio::task::block_in_place(|| process.wait_ready(port, READY_LIMIT, READY_POLL))
}

/// 5 s with nothing to do, every process sampled.
pub(super) async fn idle(stack: &Stack, r: &mut Results) -> anyhow::Result<()> {
    say("idle for 5 s");
    sampled("idle (5 s)", &stack.services(), r, async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok(())
    })
    .await
}

impl Stack {
    /// The four processes by name, for sampling.
    pub(super) fn services(&self) -> [(&'static str, u32); 4] {
        [
            ("broker", self.broker.pid()),
            ("schema-registry", self.registry.pid()),
            ("cart-service", self.cart.pid()),
            ("order-service", self.order.pid()),
        ]
    }
}
