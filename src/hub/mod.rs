//! The internal bus of one route: a bounded ring of encoded events that is both the live
//! fan-out (clients hold a sequence cursor into it and are woken when it grows) and the
//! replay buffer (a reconnecting client whose position the ring still covers resumes from
//! memory). Each event's frame is encoded once and shared by every client.

mod clients;
pub mod filter;
mod ring;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::RwLock;
use tokio::sync::watch;

use crate::metrics::RouteMetrics;
use crate::source::kafka::{KafkaCursor, KafkaPosition};
use crate::source::mongo::MongoCursor;
use crate::sse::Frame;
pub use clients::{ClientGuard, Clients};
pub use filter::{Attrs, ClientFilter};
pub use ring::Read;
use ring::Ring;

/// Where an event came from, in the terms of its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A Kafka record (`topic` is the index of the topic in the route's list).
    Kafka {
        /// Index of the topic in the route's topic list.
        topic: u16,
        /// Partition.
        partition: i32,
        /// Offset of the record.
        offset: i64,
    },
    /// A Kafka partition whose log went backwards (topic recreated): positions of
    /// `partition` restart at `next`.
    KafkaReset {
        /// Index of the topic in the route's topic list.
        topic: u16,
        /// Partition.
        partition: i32,
        /// Offset the partition continues from.
        next: i64,
    },
    /// A MongoDB change; its id (the frame's) is its resume token.
    Mongo,
    /// The MongoDB stream could not resume and restarted from the present; the frame is
    /// the `event: reset` clients get.
    MongoReset,
}

/// One encoded event.
#[derive(Debug)]
pub struct Event {
    /// The frame, with the route position after this event as its id.
    pub frame: Frame,
    /// Where it came from.
    pub origin: Origin,
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

/// A route's position, by source kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    /// Kafka offsets.
    Kafka(KafkaPosition),
    /// A MongoDB resume token, as its wire id (empty before the first one is known).
    Mongo(Bytes),
}

impl Position {
    /// Move past `ev`.
    pub fn advance(&mut self, ev: &Event) {
        if let Position::Mongo(t) = self {
            *t = ev.id();
            return;
        }
        self.advance_origin(&ev.origin);
    }

    fn advance_origin(&mut self, origin: &Origin) {
        match (self, origin) {
            (
                Position::Kafka(p),
                Origin::Kafka {
                    topic,
                    partition,
                    offset,
                },
            ) => p.set(usize::from(*topic), *partition, offset + 1),
            (
                Position::Kafka(p),
                Origin::KafkaReset {
                    topic,
                    partition,
                    next,
                },
            ) => p.set(usize::from(*topic), *partition, *next),
            _ => {}
        }
    }

    /// The Kafka offsets of a Kafka route's position (empty for any other kind, which a
    /// Kafka route never holds).
    pub fn into_kafka(self) -> KafkaPosition {
        match self {
            Position::Kafka(p) => p,
            Position::Mongo(_) => KafkaPosition::default(),
        }
    }

    /// The wire id of this position.
    pub fn encode(&self) -> String {
        match self {
            Position::Kafka(p) => crate::event_id::encode_kafka(p),
            Position::Mongo(t) => String::from_utf8_lossy(t).into_owned(),
        }
    }
}

/// A client's own position and whether it equals the route's (so shared frames fit).
#[derive(Debug, Clone)]
pub enum Cursor {
    /// Kafka offsets.
    Kafka(KafkaCursor),
    /// A MongoDB resume token.
    Mongo(MongoCursor),
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
    /// Decide about `ev` and move past it.
    pub fn accept(&mut self, ev: &Event) -> Verdict {
        match self {
            Cursor::Kafka(c) => c.accept(&ev.origin),
            Cursor::Mongo(c) => c.accept(ev),
        }
    }

    /// True once the client's position equals the route's.
    pub fn synced(&self) -> bool {
        match self {
            Cursor::Kafka(c) => c.synced,
            Cursor::Mongo(c) => c.joined,
        }
    }

    /// Mark synced when `head` equals the client's position; returns the new state.
    pub fn try_sync(&mut self, head: &Position) -> bool {
        match (self, head) {
            (Cursor::Kafka(c), Position::Kafka(h)) => {
                if !c.synced && c.position == *h {
                    c.synced = true;
                }
                c.synced
            }
            (Cursor::Mongo(c), Position::Mongo(h)) => {
                if !c.joined && !h.is_empty() && c.last == *h {
                    c.joined = true;
                }
                c.joined
            }
            _ => false,
        }
    }

    /// Forget synchrony (after a resync).
    pub fn unsync(&mut self) {
        match self {
            Cursor::Kafka(c) => c.synced = false,
            Cursor::Mongo(c) => c.joined = false,
        }
    }

    /// The client's position as a wire id.
    pub fn encode(&self) -> String {
        match self {
            Cursor::Kafka(c) => crate::event_id::encode_kafka(&c.position),
            Cursor::Mongo(c) => String::from_utf8_lossy(&c.last).into_owned(),
        }
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
}

impl Hub {
    /// A hub whose ring holds at most `max_events` events and `max_bytes` bytes.
    pub fn new(
        initial: Position,
        max_events: usize,
        max_bytes: usize,
        metrics: RouteMetrics,
    ) -> Hub {
        Hub {
            ring: RwLock::new(Ring::new(initial, max_events, max_bytes)),
            seq_tx: watch::Sender::new(0),
            state_tx: watch::Sender::new(SourceState::default()),
            metrics,
            clients: Arc::new(Clients::default()),
        }
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
    pub fn set_head(&self, f: impl FnOnce(&mut Position)) {
        self.ring.write().set_head(f);
    }

    /// Read events from `from` into `out` (up to `max`).
    pub fn read(&self, from: u64, max: usize, out: &mut Vec<Arc<Event>>) -> Read {
        self.ring.read().read(from, max, out)
    }

    /// The ring's window: `(first_seq, base position, head_seq, head position)`.
    pub fn window(&self) -> (u64, Position, u64, Position) {
        let r = self.ring.read();
        (
            r.first_seq(),
            r.base().clone(),
            r.head_seq(),
            r.head().clone(),
        )
    }

    /// The sequence of the ring event whose id is `id`, if the ring holds it; the
    /// ring's base position counts as the sequence before its oldest event.
    pub fn find_id(&self, id: &[u8]) -> Option<u64> {
        self.ring.read().find_id(id)
    }

    /// Current head sequence and position.
    pub fn head(&self) -> (u64, Position) {
        let r = self.ring.read();
        (r.head_seq(), r.head().clone())
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
