//! The one "wait until" of the workspace: poll a condition until it holds or a limit passes.
//!
//! Why a module: the launcher, the benchmark and half a dozen test helpers each had their own
//! poll loop with its own interval and its own message. One loop, one message shape ("X within
//! 30s"), sync for the launcher and async (tokio) for tests.

use std::time::{Duration, Instant};

/// How often a condition is polled.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Polls `condition` until it is true; an error naming `what` after `limit`.
pub fn until(what: &str, limit: Duration, condition: impl FnMut() -> bool) -> anyhow::Result<()> {
    until_every(what, limit, POLL_INTERVAL, condition)
}

/// [`until`], polling every `every` (e.g. finer, where the wait itself is being measured).
pub fn until_every(
    what: &str,
    limit: Duration,
    every: Duration,
    mut condition: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if condition() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!("{what}: not within {limit:?}");
        }
        std::thread::sleep(every);
    }
}

/// [`until`] for an async condition (tests on tokio).
#[cfg(feature = "broker")]
pub async fn until_async<F, Fut>(
    what: &str,
    limit: Duration,
    mut condition: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if condition().await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!("{what}: not within {limit:?}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_once_the_condition_holds_and_names_what_timed_out() {
        let mut calls = 0;
        until("three calls", Duration::from_secs(5), || {
            calls += 1;
            calls == 3
        })
        .expect("holds on the third call");
        assert_eq!(calls, 3);
        let error =
            until("the impossible", Duration::from_millis(50), || false).expect_err("never holds");
        assert!(error.to_string().contains("the impossible"), "{error}");
    }
}
