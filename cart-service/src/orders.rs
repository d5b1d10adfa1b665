//! Orders being worked on: one lock per order, and what the index does not hold yet.
//!
//! Every create or update of an order holds that order's async lock across "load, decide,
//! publish, wait for the ack", so changes to one order are serialized (versions never skip or
//! repeat; of concurrent creates of one ID exactly one wins) while different orders go in
//! parallel. A slot is loaded from the order index ([`crate::store`]) the first time it is
//! locked; afterwards it holds what this process acknowledged since.
//!
//! Memory is bounded by the work in flight, not by the orders ever created: a slot is dropped as
//! soon as nobody holds it and the index holds everything it knows, i.e. when it has nothing in
//! doubt and the follower ([`crate::follow`]) has applied its last acknowledged record. A slot
//! whose record the index has not read yet stays (an update right after a create must build on
//! the create, not on the index's older view) and goes after the follower's next batch.
//!
//! A publish that failed without a definite answer (a timeout: the record may be on the broker's
//! socket and land later) leaves its event *in doubt* in the slot ([`Slot::in_doubt`]). It is
//! never forgotten while the process runs: the next create or update of that order first sends
//! that exact event again (same content, same event id, same version) until the broker
//! acknowledges it, and only then goes on. Whether the first send landed or not, the topic then
//! holds that one version with that one content (perhaps twice, which readers apply once).
//!
//! A slot is valid under one claim of its partition ([`Slot::claim`], [`crate::own`]): when the
//! partition was lost and claimed again, what the slot remembers may have been overtaken by
//! another owner, so it is emptied and loaded again from the index, which holds everything
//! before the new claim. An event in doubt is dropped with it: if it landed before the new
//! claim it is in the index; if after, it does not count.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};

use order_events::{OrderEvent, OrderId};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use crate::follow::Progress;

/// An event whose publish timed out: it may or may not be on the topic.
#[derive(Debug, Clone)]
pub(crate) struct InDoubt {
    pub(crate) event: OrderEvent,
    /// The request that first sent it, kept for the record's `request-id` header.
    pub(crate) request_id: String,
}

/// One order's slot.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    /// The order index was consulted (`acknowledged` then starts from what it holds).
    pub(crate) loaded: bool,
    /// The latest acknowledged event (`None` while the order does not exist).
    pub(crate) acknowledged: Option<OrderEvent>,
    /// Where this process's latest acknowledged record of the order landed, until the index has
    /// applied it.
    pub(crate) written: Option<(i32, i64)>,
    /// The next event (version `acknowledged + 1`, or 1), sent without a definite outcome. While
    /// it is here no other event of this order is published.
    pub(crate) in_doubt: Option<InDoubt>,
    /// The claim of the order's partition this slot was loaded under.
    pub(crate) claim: Option<i64>,
}

impl Slot {
    /// Empties the slot unless it was loaded under `claim` (see the module docs).
    pub(crate) fn hold_under(&mut self, claim: i64) {
        if self.claim != Some(claim) {
            *self = Slot {
                claim: Some(claim),
                ..Slot::default()
            };
        }
    }

    /// Nothing here that the index does not hold.
    fn indexed(&self, progress: &Progress) -> bool {
        self.in_doubt.is_none()
            && self
                .written
                .is_none_or(|(partition, offset)| progress.holds(partition, offset))
    }
}

type Shared = Arc<AsyncMutex<Slot>>;

/// The orders being worked on, by ID.
pub(crate) struct Orders {
    slots: Mutex<HashMap<OrderId, Shared>>,
    progress: Arc<Progress>,
}

impl Orders {
    pub(crate) fn new(progress: Arc<Progress>) -> Orders {
        Orders {
            slots: Mutex::default(),
            progress,
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<OrderId, Shared>> {
        // Nothing panics while holding this lock; a poisoned map is still consistent.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Locks an order's slot (creating an empty, unloaded one if none is in memory). The slot
    /// is released, and dropped if the index holds all it knows, when the guard goes.
    pub(crate) async fn lock(&self, id: &OrderId) -> Held<'_> {
        let shared = self.slots().entry(id.clone()).or_default().clone();
        let guard = shared.lock_owned().await;
        Held {
            orders: self,
            id: id.clone(),
            guard: Some(guard),
        }
    }

    /// Drops the slot of `id` if nobody holds or waits for it and the index holds all it knows.
    fn release(&self, id: &OrderId) {
        let mut slots = self.slots();
        if let Some(shared) = slots.get(id) {
            // Handles are only cloned under the map's lock, so the count cannot grow meanwhile.
            if Arc::strong_count(shared) == 1
                && shared
                    .try_lock()
                    .is_ok_and(|slot| slot.indexed(&self.progress))
            {
                slots.remove(id);
            }
        }
    }

    /// Drops every idle slot the index now holds (after each of the follower's batches).
    pub(crate) fn evict_indexed(&self, progress: &Progress) {
        self.slots().retain(|_, shared| {
            !(Arc::strong_count(shared) == 1
                && shared.try_lock().is_ok_and(|slot| slot.indexed(progress)))
        });
    }

    /// How many orders are in memory.
    pub(crate) fn len(&self) -> usize {
        self.slots().len()
    }
}

/// A locked slot; releasing it may drop it from memory.
pub(crate) struct Held<'a> {
    orders: &'a Orders,
    id: OrderId,
    guard: Option<OwnedMutexGuard<Slot>>,
}

impl Deref for Held<'_> {
    type Target = Slot;

    fn deref(&self) -> &Slot {
        // Present until drop.
        self.guard.as_deref().unwrap_or_else(|| unreachable!())
    }
}

impl DerefMut for Held<'_> {
    fn deref_mut(&mut self) -> &mut Slot {
        self.guard.as_deref_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        self.orders.release(&self.id);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn id(s: &str) -> OrderId {
        OrderId::parse(s).unwrap()
    }

    #[tokio::test]
    async fn slots_live_while_held_or_not_yet_indexed() {
        let progress = Arc::new(Progress::default());
        let orders = Orders::new(Arc::clone(&progress));
        {
            let mut slot = orders.lock(&id("A")).await;
            slot.loaded = true;
            assert_eq!(orders.len(), 1);
        }
        // Nothing unindexed: gone at release.
        assert_eq!(orders.len(), 0);
        {
            let mut slot = orders.lock(&id("B")).await;
            slot.written = Some((0, 7));
        }
        // Its record is not in the index yet: kept (an update must see it).
        assert_eq!(orders.len(), 1);
        orders.evict_indexed(&progress);
        assert_eq!(orders.len(), 1);
        progress.advance_for_test(0, 8);
        orders.evict_indexed(&progress);
        assert_eq!(orders.len(), 0);
    }

    #[tokio::test]
    async fn a_slot_waited_for_is_not_dropped() {
        let orders = Arc::new(Orders::new(Arc::new(Progress::default())));
        let first = orders.lock(&id("A")).await;
        let waiter = {
            let orders = Arc::clone(&orders);
            tokio::spawn(async move {
                let mut slot = orders.lock(&id("A")).await;
                let seen = slot.loaded;
                slot.loaded = true;
                seen
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let mut first = first;
        first.loaded = true;
        drop(first);
        // The waiter got the same slot, with what the first holder left in it.
        assert!(waiter.await.unwrap());
    }
}
