//! The clients of a hub, as the slow-client reaper sees them: each client publishes how
//! far it has read; a client whose socket is blocked is never polled, so the reaper, not
//! the client, notices it falling behind and closes its connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

/// What the reaper knows of one client.
#[derive(Debug)]
struct Slot {
    next_seq: AtomicU64,
    caught_up: AtomicBool,
    cut_off: AtomicBool,
    max_lag: u64,
    kill: CancellationToken,
}

/// The registry of a hub's clients.
#[derive(Debug, Default)]
pub struct Clients {
    slots: Mutex<HashMap<u64, Arc<Slot>>>,
    next_id: AtomicU64,
}

/// A client's registration; dropping it unregisters the client.
pub struct ClientGuard {
    id: u64,
    slot: Arc<Slot>,
    clients: Arc<Clients>,
}

impl Clients {
    /// Register a client reading from `next_seq`.
    pub fn register(
        self: &Arc<Self>,
        next_seq: u64,
        max_lag: u64,
        kill: CancellationToken,
    ) -> ClientGuard {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            next_seq: AtomicU64::new(next_seq),
            caught_up: AtomicBool::new(false),
            cut_off: AtomicBool::new(false),
            max_lag,
            kill,
        });
        self.slots.lock().insert(id, slot.clone());
        ClientGuard {
            id,
            slot,
            clients: self.clone(),
        }
    }

    /// Close the connections of caught-up clients more than their lag limit behind
    /// `head`; returns how many were cut off.
    pub fn reap(&self, head: u64) -> usize {
        let slots = self.slots.lock();
        let mut n = 0;
        for s in slots.values() {
            if s.caught_up.load(Ordering::Relaxed)
                && !s.cut_off.load(Ordering::Relaxed)
                && head.saturating_sub(s.next_seq.load(Ordering::Relaxed)) > s.max_lag
            {
                s.cut_off.store(true, Ordering::Relaxed);
                s.kill.cancel();
                n += 1;
            }
        }
        n
    }

    /// Number of registered clients.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.slots.lock().len()
    }
}

impl ClientGuard {
    /// Record how far the client has read.
    pub fn progress(&self, next_seq: u64, caught_up: bool) {
        self.slot.next_seq.store(next_seq, Ordering::Relaxed);
        self.slot.caught_up.store(caught_up, Ordering::Relaxed);
    }

    /// True when the reaper cut this client off.
    pub fn cut_off(&self) -> bool {
        self.slot.cut_off.load(Ordering::Relaxed)
    }
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.clients.slots.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reaps_only_caught_up_clients_past_their_lag() {
        let c = Arc::new(Clients::default());
        let (k1, k2, k3) = (
            CancellationToken::new(),
            CancellationToken::new(),
            CancellationToken::new(),
        );
        let a = c.register(0, 10, k1.clone());
        let b = c.register(0, 10, k2.clone());
        let d = c.register(0, 10, k3.clone());
        a.progress(5, true);
        b.progress(95, true);
        d.progress(5, false); // still resuming: never reaped
        assert_eq!(c.reap(100), 1);
        assert!(k1.is_cancelled() && a.cut_off());
        assert!(!k2.is_cancelled() && !k3.is_cancelled());
        assert_eq!(c.reap(100), 0, "once");
        drop(b);
        assert_eq!(c.len(), 2);
    }
}
