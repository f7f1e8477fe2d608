//! Memory budgets: bytes that catch-up readers and client write buffers may hold, per
//! route and for the process.
//!
//! A route's budget has the process's as its parent: a reservation holds its bytes in
//! both, and fails (changing nothing) when either would go over. Catch-up readers reserve
//! their whole buffer (and the backend's prefetch) for as long as they run, so a reader
//! the budget cannot hold is never started (the client waits, then gets 503
//! `catchup_busy`). A client reserves the bytes of a chunk it builds from many events
//! until the chunk is written; over budget it writes one event's frame at a time, which
//! the ring already holds, so client buffers never grow past the budget.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use prometheus::IntGauge;

/// One budget: a limit, what is held against it, and the budget above it.
#[derive(Debug)]
pub struct Budget {
    limit: usize,
    used: AtomicUsize,
    parent: Option<Arc<Budget>>,
    gauge: Option<IntGauge>,
}

impl Budget {
    /// A budget of `limit` bytes under `parent`, reporting what it holds on `gauge`.
    pub fn new(limit: usize, parent: Option<Arc<Budget>>, gauge: Option<IntGauge>) -> Arc<Budget> {
        Arc::new(Budget {
            limit,
            used: AtomicUsize::new(0),
            parent,
            gauge,
        })
    }

    /// A budget with no limit worth the name (tests, tools).
    pub fn unlimited() -> Arc<Budget> {
        Budget::new(usize::MAX / 2, None, None)
    }

    /// The limit in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Hold `bytes` here and in every budget above, or nothing when one would go over.
    pub fn try_reserve(self: &Arc<Self>, bytes: usize) -> Option<Reservation> {
        self.take(bytes).then(|| Reservation {
            budget: self.clone(),
            bytes,
        })
    }

    fn take(&self, bytes: usize) -> bool {
        let limit = self.limit;
        let ok = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(bytes).filter(|n| *n <= limit)
            })
            .is_ok();
        if !ok {
            return false;
        }
        if let Some(p) = &self.parent {
            if !p.take(bytes) {
                self.used.fetch_sub(bytes, Ordering::AcqRel);
                return false;
            }
        }
        self.report();
        true
    }

    fn give(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
        self.report();
        if let Some(p) = &self.parent {
            p.give(bytes);
        }
    }

    fn report(&self) {
        if let Some(g) = &self.gauge {
            g.set(self.used() as i64);
        }
    }
}

/// Bytes held against a budget until dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Reservation {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.give(self.bytes);
    }
}

impl Reservation {
    /// Hold `more` bytes as well, or nothing when a budget would go over.
    pub fn grow(&mut self, more: usize) -> bool {
        if !self.budget.take(more) {
            return false;
        }
        self.bytes += more;
        true
    }
}

/// A buffer that grows only as far as its budget allows: what it has allocated is held
/// against the budget until the bytes made of it are written and dropped.
pub struct HeldBuf {
    buf: BytesMut,
    budget: Arc<Budget>,
    reservation: Option<Reservation>,
}

impl HeldBuf {
    /// An empty buffer (allocating nothing) charged to `budget`.
    pub fn new(budget: Arc<Budget>) -> HeldBuf {
        HeldBuf {
            buf: BytesMut::new(),
            budget,
            reservation: None,
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Append every one of `parts`, or nothing (false) when the budget cannot hold the
    /// growth.
    pub fn append(&mut self, parts: &[&[u8]]) -> bool {
        let need = self.buf.len() + parts.iter().map(|p| p.len()).sum::<usize>();
        if need > self.buf.capacity() {
            let want = need.max(self.buf.capacity() * 2).max(256);
            let held = self.reservation.as_ref().map_or(0, Reservation::bytes);
            let ok = match &mut self.reservation {
                Some(r) => r.grow(want - held),
                None => {
                    self.reservation = self.budget.try_reserve(want);
                    self.reservation.is_some()
                }
            };
            if !ok {
                return false;
            }
            self.buf.reserve(want - self.buf.len());
        }
        for p in parts {
            self.buf.extend_from_slice(p);
        }
        true
    }

    /// The bytes, holding their reservation until dropped.
    pub fn freeze(self) -> Bytes {
        match self.reservation {
            Some(r) => held(self.buf, r),
            None => self.buf.freeze(),
        }
    }
}

/// A buffer whose bytes stay reserved until its last reference is dropped (written).
struct Held {
    buf: Vec<u8>,
    _reservation: Reservation,
}

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

/// `buf` as `Bytes` that keep `reservation` until they are dropped.
pub fn held(buf: BytesMut, reservation: Reservation) -> Bytes {
    Bytes::from_owner(Held {
        buf: buf.into(),
        _reservation: reservation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reservation_holds_in_its_budget_and_the_one_above_until_dropped() {
        let process = Budget::new(100, None, None);
        let route = Budget::new(60, Some(process.clone()), None);
        let a = route.try_reserve(50).expect("fits");
        assert_eq!((route.used(), process.used()), (50, 50));
        assert!(route.try_reserve(11).is_none(), "route over its limit");
        assert_eq!(
            (route.used(), process.used()),
            (50, 50),
            "a refusal holds nothing"
        );
        drop(a);
        assert_eq!((route.used(), process.used()), (0, 0));
    }

    #[test]
    fn the_process_budget_bounds_routes_together() {
        let process = Budget::new(100, None, None);
        let r1 = Budget::new(80, Some(process.clone()), None);
        let r2 = Budget::new(80, Some(process.clone()), None);
        let _a = r1.try_reserve(70).expect("fits");
        assert!(r2.try_reserve(40).is_none(), "process over its limit");
        assert_eq!(r2.used(), 0, "the route's share is given back");
        let b = r2.try_reserve(30).expect("fits exactly");
        assert_eq!(process.used(), 100);
        drop(b);
        assert_eq!(process.used(), 70);
    }

    #[test]
    fn a_held_buffer_stops_growing_at_its_budget_and_gives_it_back_once_written() {
        let budget = Budget::new(1024, None, None);
        let mut b = HeldBuf::new(budget.clone());
        assert!(b.append(&[&[1u8; 300], &[2u8; 100]]));
        assert!(budget.used() >= 400);
        assert!(!b.append(&[&[3u8; 700]]), "past the budget");
        assert_eq!(b.len(), 400, "a refused append adds nothing");
        let bytes = b.freeze();
        assert_eq!(bytes.len(), 400);
        assert!(budget.used() >= 400);
        drop(bytes);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn held_bytes_give_their_reservation_back_when_the_last_reference_goes() {
        let budget = Budget::new(1000, None, None);
        let r = budget.try_reserve(5).expect("fits");
        let b = held(BytesMut::from(&b"hello"[..]), r);
        let c = b.slice(1..3);
        drop(b);
        assert_eq!(budget.used(), 5, "a slice still holds the buffer");
        assert_eq!(&c[..], b"el");
        drop(c);
        assert_eq!(budget.used(), 0);
    }
}
