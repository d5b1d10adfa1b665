//! What CartService knows about every order: its latest event, one lock per order.
//!
//! The index answers 409 (exists), 404 (unknown) and gives updates the current order. Each order
//! has its own async lock held across "decide, publish, wait for the ack", so updates to one
//! order are serialized (versions never skip or repeat) while different orders go in parallel.
//! A create claims its ID under the index lock, so of concurrent creates exactly one wins.
//!
//! A publish that failed without a definite answer (a timeout: the record may be on the broker's
//! socket and land later) leaves its event *in doubt* in the slot ([`Slot::in_doubt`]). It is
//! never forgotten: the next create or update of that order first sends that exact event again
//! (same content, same event id, same version) until the broker acknowledges it, and only then
//! goes on. Whether the first send landed or not, the topic then holds that one version with that
//! one content (perhaps twice, which readers apply once), so CartService and every reader of the
//! topic agree. Reading the topic cannot settle the doubt instead: a request buffered in a
//! paused broker's socket can land after any read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use order_events::{OrderEvent, OrderId};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

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
    /// The latest event the broker acknowledged (`None` while the creation is not).
    pub(crate) acknowledged: Option<OrderEvent>,
    /// The next event (version `acknowledged + 1`, or 1), sent without a definite outcome. While
    /// it is here no other event of this order is published.
    pub(crate) in_doubt: Option<InDoubt>,
}

impl Slot {
    /// A slot holding nothing: a claimed ID whose creation has not been published.
    pub(crate) fn is_empty(&self) -> bool {
        self.acknowledged.is_none() && self.in_doubt.is_none()
    }
}

/// Every known order by ID.
#[derive(Default)]
pub(crate) struct Orders {
    slots: Mutex<HashMap<OrderId, Arc<AsyncMutex<Slot>>>>,
}

impl Orders {
    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<OrderId, Arc<AsyncMutex<Slot>>>> {
        // Nothing panics while holding this lock; a poisoned map is still consistent.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Claims a new ID: the returned guard holds the empty slot until the creation is published
    /// ([`Orders::abandon`] on a definite failure). `None` when the ID exists, is being created,
    /// or has a creation in doubt.
    pub(crate) fn claim(&self, id: &OrderId) -> Option<OwnedMutexGuard<Slot>> {
        let mut slots = self.slots();
        if slots.contains_key(id) {
            return None;
        }
        let slot = Arc::new(AsyncMutex::new(Slot::default()));
        let guard = slot.clone().try_lock_owned().ok()?;
        slots.insert(id.clone(), slot);
        Some(guard)
    }

    /// Forgets a claimed ID whose creation definitely failed (nothing acknowledged, nothing in
    /// doubt). A slot holding anything is kept.
    pub(crate) fn abandon(&self, id: &OrderId, guard: OwnedMutexGuard<Slot>) {
        if guard.is_empty() {
            self.slots().remove(id);
        }
    }

    /// The slot of an order, to lock for an update.
    pub(crate) fn get(&self, id: &OrderId) -> Option<Arc<AsyncMutex<Slot>>> {
        self.slots().get(id).cloned()
    }

    /// Loads an event read back from the topic, keeping the highest version per order.
    pub(crate) fn load(&self, event: OrderEvent) {
        let mut slots = self.slots();
        let id = event.order().order_id().clone();
        match slots.get(&id) {
            Some(slot) => {
                if let Ok(mut current) = slot.try_lock() {
                    if current
                        .acknowledged
                        .as_ref()
                        .is_none_or(|c| c.version() < event.version())
                    {
                        current.acknowledged = Some(event);
                    }
                }
            }
            None => {
                let slot = Slot {
                    acknowledged: Some(event),
                    in_doubt: None,
                };
                slots.insert(id, Arc::new(AsyncMutex::new(slot)));
            }
        }
    }

    /// How many orders are known (in doubt included).
    pub(crate) fn len(&self) -> usize {
        self.slots().len()
    }
}
