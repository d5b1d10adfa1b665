//! What CartService knows about every order: its latest event, one lock per order.
//!
//! The index answers 409 (exists), 404 (unknown) and gives updates the current order. Each order
//! has its own async lock held across "decide, publish, wait for the ack", so updates to one
//! order are serialized (versions never skip or repeat) while different orders go in parallel.
//! A create claims its ID under the index lock, so of concurrent creates exactly one wins.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use order_events::{OrderEvent, OrderId};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// One order's slot: `None` while its creation is being published.
pub type Slot = Option<OrderEvent>;

/// Every known order by ID.
#[derive(Default)]
pub struct Orders {
    slots: Mutex<HashMap<OrderId, Arc<AsyncMutex<Slot>>>>,
}

impl Orders {
    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<OrderId, Arc<AsyncMutex<Slot>>>> {
        // Nothing panics while holding this lock; a poisoned map is still consistent.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Claims a new ID: the returned guard holds the empty slot until the creation is published
    /// ([`Orders::abandon`] on failure). `None` when the ID exists or is being created.
    pub fn claim(&self, id: &OrderId) -> Option<OwnedMutexGuard<Slot>> {
        let mut slots = self.slots();
        if slots.contains_key(id) {
            return None;
        }
        let slot = Arc::new(AsyncMutex::new(None));
        let guard = slot.clone().try_lock_owned().ok()?;
        slots.insert(id.clone(), slot);
        Some(guard)
    }

    /// Forgets a claimed ID whose creation failed (the guard's slot is still empty).
    pub fn abandon(&self, id: &OrderId, guard: OwnedMutexGuard<Slot>) {
        if guard.is_none() {
            self.slots().remove(id);
        }
    }

    /// The slot of an order, to lock for an update.
    pub fn get(&self, id: &OrderId) -> Option<Arc<AsyncMutex<Slot>>> {
        self.slots().get(id).cloned()
    }

    /// Loads an event read back from the topic, keeping the highest version per order.
    pub fn load(&self, event: OrderEvent) {
        let mut slots = self.slots();
        let id = event.order().order_id().clone();
        match slots.get(&id) {
            Some(slot) => {
                if let Ok(mut current) = slot.try_lock() {
                    if current
                        .as_ref()
                        .is_none_or(|c| c.version() < event.version())
                    {
                        *current = Some(event);
                    }
                }
            }
            None => {
                slots.insert(id, Arc::new(AsyncMutex::new(Some(event))));
            }
        }
    }

    /// How many orders are known.
    pub fn len(&self) -> usize {
        self.slots().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
