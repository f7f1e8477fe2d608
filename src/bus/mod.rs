//! The internal bus of one route: a bounded ring of encoded events that is both the live
//! fan-out (clients hold a sequence cursor into it and are woken when it grows) and the
//! replay buffer (a reconnecting client whose position the ring still covers resumes from
//! memory). Each event's frame is encoded once and shared by every client. The bus knows
//! no source: positions are [`Position`] values it moves by each event's [`Step`].

pub mod budget;
mod clients;
pub mod filter;
mod ring;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::RwLock;
use tokio::sync::watch;

use crate::event_id;
use crate::metrics::RouteMetrics;
use crate::position::{Accept, Position, Step};
use crate::sse::{self, Frame};
pub use budget::Budget;
pub use clients::{ClientGuard, Clients};
pub use filter::{Attrs, ClientFilter, Selector};
pub use ring::{Read, Ring};

/// One encoded event.
#[derive(Debug)]
pub struct Event {
    /// The frame, with the route position after this event as its id.
    pub frame: Frame,
    /// How the event moved its route's position.
    pub step: Step,
    /// Source timestamp (ms since the epoch), for the delivery latency histogram.
    pub timestamp_ms: Option<i64>,
    /// What the route's filters compare (only on routes that filter).
    pub attrs: Option<Box<filter::Attrs>>,
}

impl Event {
    /// The wire id carried by the frame.
    pub fn id(&self) -> Bytes {
        self.frame
            .bytes
            .slice(4..self.frame.body_start.saturating_sub(1).max(4))
    }
}

/// A client's own position, and whether it has joined the route's (from then on the
/// route's shared frames, whose ids are the route's position, fit it).
#[derive(Debug, Clone)]
pub struct Cursor {
    /// Where the client is.
    pub position: Box<dyn Position>,
    /// At the route's position.
    pub joined: bool,
}

/// What a client does with an event.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Already delivered (position past it).
    Skip,
    /// Send the shared frame as-is.
    Shared,
    /// Send this `id:` line, then the frame's body.
    Custom(Bytes),
}

impl Cursor {
    /// A cursor at `position`.
    pub fn new(position: Box<dyn Position>, joined: bool) -> Cursor {
        Cursor { position, joined }
    }

    /// Decide about `ev` and move past it.
    pub fn accept(&mut self, ev: &Event) -> Verdict {
        match self.position.accept(&ev.step, self.joined) {
            Accept::Skip => Verdict::Skip,
            Accept::Join => {
                self.joined = true;
                Verdict::Skip
            }
            Accept::TakeAndJoin => {
                self.joined = true;
                Verdict::Shared
            }
            Accept::Take if self.joined => Verdict::Shared,
            Accept::Take => Verdict::Custom(sse::id_line(&self.encode())),
        }
    }

    /// True once the client's position equals the route's.
    pub fn synced(&self) -> bool {
        self.joined
    }

    /// Mark joined when `head` equals the client's position; returns the new state.
    pub fn try_sync(&mut self, head: &dyn Position) -> bool {
        if !self.joined && self.position.is_known() && self.position.same(head) {
            self.joined = true;
        }
        self.joined
    }

    /// Forget synchrony (after a resync).
    pub fn unsync(&mut self) {
        self.joined = false;
    }

    /// The client's position as a wire id.
    pub fn encode(&self) -> String {
        event_id::encode(&*self.position)
    }
}

/// Source state as seen by `/readyz` and waiting clients.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceState {
    /// Connected to the backend, every partition assigned.
    pub connected: bool,
    /// Caught up with the backend's history at start-up (the ring is warm).
    pub live: bool,
    /// Last error seen, if the source is not connected.
    pub last_error: Option<String>,
}

impl SourceState {
    /// Ready to serve.
    pub fn ready(&self) -> bool {
        self.connected && self.live
    }
}

/// The bus of one route.
pub struct Hub {
    ring: RwLock<Ring>,
    seq_tx: watch::Sender<u64>,
    state_tx: watch::Sender<SourceState>,
    metrics: RouteMetrics,
    clients: Arc<Clients>,
    budget: Arc<Budget>,
}

impl Hub {
    /// A hub whose ring holds at most `max_events` events and `max_bytes` bytes; its
    /// clients' write buffers are charged to `budget`.
    pub fn new(
        initial: Box<dyn Position>,
        max_events: usize,
        max_bytes: usize,
        metrics: RouteMetrics,
        budget: Arc<Budget>,
    ) -> Hub {
        Hub {
            ring: RwLock::new(Ring::new(initial, max_events, max_bytes)),
            seq_tx: watch::Sender::new(0),
            state_tx: watch::Sender::new(SourceState::default()),
            metrics,
            clients: Arc::new(Clients::default()),
            budget,
        }
    }

    /// The route's memory budget (catch-up readers and client write buffers).
    pub fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }

    /// Append events (already encoded with their ids) and wake clients.
    pub fn publish(&self, events: impl IntoIterator<Item = Event>) {
        let (head, len, bytes) = {
            let mut r = self.ring.write();
            for ev in events {
                r.push(Arc::new(ev));
            }
            (r.head_seq(), r.len(), r.bytes())
        };
        self.metrics.replay_events.set(len as i64);
        self.metrics.replay_bytes.set(bytes as i64);
        self.seq_tx.send_replace(head);
    }

    /// Change the head position without an event (start-up, new partitions).
    pub fn set_head(&self, f: impl FnOnce(&mut Box<dyn Position>)) {
        self.ring.write().set_head(f);
    }

    /// Read events from `from` into `out` (up to `max`).
    pub fn read(&self, from: u64, max: usize, out: &mut Vec<Arc<Event>>) -> Read {
        self.ring.read().read(from, max, out)
    }

    /// The ring's window: `(first_seq, base position, head_seq, head position)`.
    pub fn window(&self) -> (u64, Box<dyn Position>, u64, Box<dyn Position>) {
        let r = self.ring.read();
        (
            r.first_seq(),
            r.base().clone_box(),
            r.head_seq(),
            r.head().clone_box(),
        )
    }

    /// The sequence of the ring event whose id is `id`, if the ring holds it; the
    /// ring's base position counts as the sequence before its oldest event.
    pub fn find_id(&self, id: &[u8]) -> Option<u64> {
        self.ring.read().find_id(id)
    }

    /// Look at the ring as it is now (for a source planning a client from memory).
    pub fn inspect<T>(&self, f: impl FnOnce(&Ring) -> T) -> T {
        f(&self.ring.read())
    }

    /// Current head sequence and position.
    pub fn head(&self) -> (u64, Box<dyn Position>) {
        let r = self.ring.read();
        (r.head_seq(), r.head().clone_box())
    }

    /// Sync `cursor` with the head if their positions are equal.
    pub fn try_sync(&self, cursor: &mut Cursor) -> bool {
        if cursor.synced() {
            return true;
        }
        cursor.try_sync(self.ring.read().head())
    }

    /// Wakes when the head sequence changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.seq_tx.subscribe()
    }

    /// Update the source state.
    pub fn set_state(&self, f: impl FnOnce(&mut SourceState)) {
        self.state_tx.send_if_modified(|s| {
            let before = s.clone();
            f(s);
            *s != before
        });
        self.metrics
            .source_up
            .set(i64::from(self.state_tx.borrow().ready()));
    }

    /// The source state now.
    pub fn state(&self) -> SourceState {
        self.state_tx.borrow().clone()
    }

    /// Wait up to `timeout` for the source to be ready; returns whether it is.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let mut rx = self.state_tx.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|s| s.ready()))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Register a client for slow-client supervision.
    pub fn register(
        &self,
        next_seq: u64,
        max_lag: u64,
        kill: tokio_util::sync::CancellationToken,
    ) -> ClientGuard {
        self.clients.register(next_seq, max_lag, kill)
    }

    /// Cut off clients too far behind, every `every`, until `cancel` fires.
    pub async fn run_reaper(
        self: Arc<Self>,
        every: Duration,
        cancel: tokio_util::sync::CancellationToken,
    ) {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {
                    let head = self.ring.read().head_seq();
                    let n = self.clients.reap(head);
                    if n > 0 {
                        tracing::info!(route = %self.metrics.route(), clients = n, "slow clients disconnected");
                    }
                }
            }
        }
    }

    /// Route metrics.
    pub fn metrics(&self) -> &RouteMetrics {
        &self.metrics
    }
}
