//! What a route's position is to the rest of the crate. Each source adapter defines its
//! own position type (Kafka: the next offset of every partition; MongoDB: a resume token)
//! and implements [`Position`] for it; the bus advances, compares and encodes positions
//! only through this trait, so it never knows which source a route reads.
//!
//! Every event carries a [`Step`]: how it moved its route, in terms any source maps to —
//! a record at an offset of an ordered lane (a Kafka partition, a NATS stream, a
//! PostgreSQL slot), a lane that restarts (an `event: reset`), or an opaque token that is
//! itself the position after the event (MongoDB).

use std::any::Any;
use std::fmt;

use bytes::Bytes;

/// One ordered lane of a source: stream `stream` (e.g. the index of a topic in the
/// route's list), partition `partition`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Lane {
    /// Index of the stream (topic) in the route's list.
    pub stream: u16,
    /// Partition of that stream.
    pub partition: i32,
}

/// How one event moved its route's position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The record at `offset` of an ordered lane; the lane continues at `offset + 1`.
    Record {
        /// The lane.
        lane: Lane,
        /// Offset of the record.
        offset: i64,
    },
    /// An ordered lane restarts at `next` (its log was recreated or truncated): the event
    /// is an `event: reset`.
    Restart {
        /// The lane.
        lane: Lane,
        /// Offset the lane continues from.
        next: i64,
    },
    /// An event whose opaque token (its binary position) is the position after it.
    Token(Bytes),
    /// The opaque position restarted from the present at this token: the event is an
    /// `event: reset`.
    TokenRestart(Bytes),
}

impl Step {
    /// True for a reset: events before it belong to a log that is gone, and every client
    /// must learn of it whatever its filter.
    pub fn is_reset(&self) -> bool {
        matches!(self, Step::Restart { .. } | Step::TokenRestart(_))
    }
}

/// What a client at some position does with an event (see [`Position::accept`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    /// The client has it already.
    Skip,
    /// New to the client, whose position moved past it.
    Take,
    /// Not for the client, which from here on is at the route's position (it found the
    /// event it stopped after).
    Join,
    /// New to the client, which from here on is at the route's position.
    TakeAndJoin,
}

/// What every position type gets for free: a boxed copy and access to its own type.
pub trait Boxed: Any {
    /// A boxed copy.
    fn clone_box(&self) -> Box<dyn Position>;
    /// For an adapter to recover its own type.
    fn as_any(&self) -> &dyn Any;
    /// For an adapter to change its own type in place.
    fn as_any_mut(&mut self) -> &mut dyn Any;
    /// For an adapter to take its own type out of the box, without a copy.
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
}

impl<T: Position + Clone> Boxed for T {
    fn clone_box(&self) -> Box<dyn Position> {
        Box::new(self.clone())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// A route's (or a client's) position in its source.
pub trait Position: Boxed + fmt::Debug + Send + Sync {
    /// The kind byte of this position's event ids (unique per adapter).
    fn kind(&self) -> u8;

    /// False while no position is known yet (an id of it would be empty).
    fn is_known(&self) -> bool {
        true
    }

    /// Append the binary form: the payload of an event id (see `crate::event_id`).
    fn write_binary(&self, out: &mut Vec<u8>);

    /// Move past an event that moved the route by `step`.
    fn advance(&mut self, step: &Step);

    /// For a client at this position, decide about an event at `step`, moving past it
    /// when it is new. `joined`: the client is already at the route's position, so
    /// every later event is new to it.
    fn accept(&mut self, step: &Step, joined: bool) -> Accept;

    /// True when this position equals `other` (a client at the route's head).
    fn same(&self, other: &dyn Position) -> bool;

    /// True when a reader that has moved past everything before `base`, and nothing
    /// after it, can still give this position every event it lacks: on every lane this
    /// position is at or after `base` (a shared catch-up reader serves it from there).
    /// Opaque positions can only tell equality, the default.
    fn at_or_after(&self, base: &dyn Position) -> bool {
        self.same(base)
    }

    /// Lanes `head` knows and this position lacks start here where they are in `head`
    /// (a ring's oldest position, after new partitions appeared at the head).
    fn adopt_new_lanes(&mut self, head: &dyn Position) {
        let _ = head;
    }
}

impl Clone for Box<dyn Position> {
    fn clone(&self) -> Self {
        self.clone_box()
    }
}

impl PartialEq for dyn Position {
    fn eq(&self, other: &dyn Position) -> bool {
        self.same(other)
    }
}

/// A position type that can be read back from an event id's payload.
pub trait Decode: Position + Sized {
    /// The kind byte of its ids.
    const KIND: u8;

    /// Parse the binary form written by [`Position::write_binary`]; never panics.
    fn read_binary(buf: &[u8]) -> Result<Self, &'static str>;
}

/// The concrete position behind `p`, when it is a `P`.
pub fn downcast<P: Position>(p: &dyn Position) -> Option<&P> {
    p.as_any().downcast_ref::<P>()
}

/// The concrete position behind `p`, when it is a `P`, to change in place.
pub fn downcast_mut<P: Position>(p: &mut dyn Position) -> Option<&mut P> {
    p.as_any_mut().downcast_mut::<P>()
}
