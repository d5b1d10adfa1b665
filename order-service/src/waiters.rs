//! Read-your-writes without polling: requests waiting for an order version to reach the view.
//!
//! Why a registry of waiters: `GET /api/order-details?waitMs=…` must answer as soon as the
//! version it waits for is committed, without a thread or a polling loop per request. A request
//! registers `(orderId, minVersion) → oneshot sender` here *before* it looks at the database
//! (so a commit between the look and the registration cannot be missed), then awaits the
//! receiver with its deadline. The apply loop calls [`Waiters::notify`] after each committed
//! transaction with the `(orderId, version)` pairs it changed. A registration removes itself
//! when dropped, so timed-out requests leave nothing behind.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

#[derive(Debug)]
struct Waiter {
    id: u64,
    min_version: i64,
    tx: oneshot::Sender<()>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    by_order: HashMap<String, Vec<Waiter>>,
}

/// The waiters, shared by the HTTP handlers and the apply loop.
#[derive(Debug, Default)]
pub struct Waiters {
    inner: Mutex<Inner>,
}

/// One registered wait; unregisters itself on drop.
#[derive(Debug)]
pub struct Registration {
    waiters: Arc<Waiters>,
    order_id: String,
    id: u64,
    rx: Option<oneshot::Receiver<()>>,
}

impl Registration {
    /// Resolves when a version `>= min_version` of the order was committed (or the apply
    /// loop went away; the caller re-checks the database either way).
    pub async fn notified(&mut self) {
        if let Some(rx) = self.rx.take() {
            let _ = rx.await;
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.waiters.remove(&self.order_id, self.id);
    }
}

impl Waiters {
    pub fn new() -> Arc<Waiters> {
        Arc::new(Waiters::default())
    }

    /// Registers interest in `order_id` reaching `min_version`.
    pub fn register(self: &Arc<Self>, order_id: &str, min_version: i64) -> Registration {
        let (tx, rx) = oneshot::channel();
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.next_id += 1;
        let id = inner.next_id;
        inner
            .by_order
            .entry(order_id.to_owned())
            .or_default()
            .push(Waiter {
                id,
                min_version,
                tx,
            });
        Registration {
            waiters: Arc::clone(self),
            order_id: order_id.to_owned(),
            id,
            rx: Some(rx),
        }
    }

    /// Wakes every waiter whose order reached its version in a committed transaction.
    pub fn notify(&self, changed: &[(String, i64)]) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if inner.by_order.is_empty() {
            return;
        }
        for (order_id, version) in changed {
            let Some(list) = inner.by_order.get_mut(order_id) else {
                continue;
            };
            let (ready, waiting): (Vec<Waiter>, Vec<Waiter>) = std::mem::take(list)
                .into_iter()
                .partition(|w| w.min_version <= *version);
            *list = waiting;
            if list.is_empty() {
                inner.by_order.remove(order_id);
            }
            for waiter in ready {
                let _ = waiter.tx.send(());
            }
        }
    }

    /// The number of requests waiting.
    #[cfg(test)]
    fn len(&self) -> usize {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.by_order.values().map(Vec::len).sum()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn remove(&self, order_id: &str, id: u64) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(list) = inner.by_order.get_mut(order_id) {
            list.retain(|w| w.id != id);
            if list.is_empty() {
                inner.by_order.remove(order_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn wakes_only_waiters_whose_version_was_reached_and_cleans_up() {
        let waiters = Waiters::new();
        let mut v2 = waiters.register("o-1", 2);
        let mut v3 = waiters.register("o-1", 3);
        let other = waiters.register("o-2", 1);
        assert_eq!(waiters.len(), 3);

        waiters.notify(&[("o-1".into(), 2)]);
        tokio::time::timeout(Duration::from_secs(1), v2.notified())
            .await
            .unwrap_or_else(|_| panic!("v2 was not woken"));
        assert!(
            tokio::time::timeout(Duration::from_millis(20), v3.notified())
                .await
                .is_err(),
            "v3 must keep waiting"
        );
        assert_eq!(waiters.len(), 2);
        drop(other);
        drop(v3);
        drop(v2);
        assert!(waiters.is_empty());
    }
}
