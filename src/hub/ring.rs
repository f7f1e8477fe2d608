//! The bounded event ring behind a [`super::Hub`].

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use super::{Event, Position};

/// Result of reading the ring from a sequence number.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// Events were appended to the output; read on from `next`; the ring ends at `head`.
    Events {
        /// Sequence to read on from.
        next: u64,
        /// Sequence after the newest event.
        head: u64,
    },
    /// Nothing new; `head_id` is the id of the head position (for a heartbeat).
    Empty {
        /// Wire id of the head position.
        head_id: Bytes,
    },
    /// The sequence asked for has left the ring; the oldest kept is `first`.
    Lagged {
        /// Oldest sequence kept.
        first: u64,
    },
}

pub(super) struct Ring {
    events: VecDeque<Arc<Event>>,
    first_seq: u64,
    bytes: usize,
    base: Position,
    head: Position,
    head_id: Bytes,
    max_events: usize,
    max_bytes: usize,
}

impl Ring {
    pub(super) fn new(initial: Position, max_events: usize, max_bytes: usize) -> Ring {
        let head_id = Bytes::from(initial.encode());
        Ring {
            events: VecDeque::new(),
            first_seq: 0,
            bytes: 0,
            base: initial.clone(),
            head: initial,
            head_id,
            max_events: max_events.max(1),
            max_bytes,
        }
    }

    pub(super) fn push(&mut self, ev: Arc<Event>) {
        if matches!(
            ev.origin,
            super::Origin::KafkaReset { .. } | super::Origin::MongoReset
        ) {
            // Events before a reset belong to a log that is gone: drop them, so nobody
            // resumes into them; clients still reading them fall out and resume by id.
            self.first_seq += self.events.len() as u64;
            self.events.clear();
            self.bytes = 0;
            self.base = self.head.clone();
            self.base.advance(&ev);
        }
        self.head.advance(&ev);
        self.head_id = ev.id();
        self.bytes += ev.frame.bytes.len();
        self.events.push_back(ev);
        while self.events.len() > self.max_events
            || (self.bytes > self.max_bytes && self.events.len() > 1)
        {
            let Some(old) = self.events.pop_front() else {
                break;
            };
            self.bytes -= old.frame.bytes.len();
            self.base.advance(&old);
            self.first_seq += 1;
        }
    }

    pub(super) fn set_head(&mut self, f: impl FnOnce(&mut Position)) {
        f(&mut self.head);
        if self.events.is_empty() {
            self.base = self.head.clone();
        } else {
            // Partitions new to the head start in the base at the same offset, so the
            // ring covers them from there.
            self.base = merge_base(self.base.clone(), &self.head);
        }
        self.head_id = Bytes::from(self.head.encode());
    }

    pub(super) fn read(&self, from: u64, max: usize, out: &mut Vec<Arc<Event>>) -> Read {
        let head = self.head_seq();
        if from < self.first_seq {
            return Read::Lagged {
                first: self.first_seq,
            };
        }
        if from >= head {
            return Read::Empty {
                head_id: self.head_id.clone(),
            };
        }
        let start = (from - self.first_seq) as usize;
        let end = (start + max).min(self.events.len());
        out.extend(self.events.range(start..end).cloned());
        Read::Events {
            next: self.first_seq + end as u64,
            head,
        }
    }

    /// Sequence *after* the event whose id is `id` (where a client that has it reads on).
    pub(super) fn find_id(&self, id: &[u8]) -> Option<u64> {
        if !id.is_empty() && self.base.encode().as_bytes() == id {
            return Some(self.first_seq);
        }
        self.events
            .iter()
            .rposition(|e| e.id() == id)
            .map(|i| self.first_seq + i as u64 + 1)
    }

    pub(super) fn head_seq(&self) -> u64 {
        self.first_seq + self.events.len() as u64
    }
    pub(super) fn first_seq(&self) -> u64 {
        self.first_seq
    }
    pub(super) fn base(&self) -> &Position {
        &self.base
    }
    pub(super) fn head(&self) -> &Position {
        &self.head
    }
    pub(super) fn len(&self) -> usize {
        self.events.len()
    }
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }
}

/// The old base, with partitions it did not know taken from `head`.
fn merge_base(old: Position, head: &Position) -> Position {
    match (old, head) {
        (Position::Mongo(b), _) => Position::Mongo(b),
        (Position::Kafka(mut b), Position::Kafka(h)) => {
            for (ti, (_, offsets)) in h.topics().iter().enumerate() {
                for (p, &o) in offsets.iter().enumerate() {
                    let p = p as i32;
                    if b.get(ti, p) == crate::source::kafka::UNKNOWN {
                        b.set(ti, p, o);
                    }
                }
            }
            Position::Kafka(b)
        }
        (b @ Position::Kafka(_), Position::Mongo(_)) => b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::Origin;
    use crate::source::kafka::KafkaPosition;

    fn ev(partition: i32, offset: i64, size: usize) -> Arc<Event> {
        let mut head = KafkaPosition::for_topics(&["t".into()]);
        head.set(0, partition, offset + 1);
        let id = Position::Kafka(head).encode();
        Arc::new(Event {
            frame: crate::sse::frame(&id, None, Some(&"x".repeat(size))),
            origin: Origin::Kafka {
                topic: 0,
                partition,
                offset,
            },
            timestamp_ms: None,
            attrs: None,
        })
    }

    fn start() -> Position {
        Position::Kafka(KafkaPosition::from_topics(vec![("t".into(), vec![0, 0])]))
    }

    #[test]
    fn evicts_by_count_and_moves_base() {
        let mut r = Ring::new(start(), 2, 1 << 20);
        r.push(ev(0, 0, 1));
        r.push(ev(1, 0, 1));
        r.push(ev(0, 1, 1));
        assert_eq!(r.first_seq(), 1);
        assert_eq!(r.head_seq(), 3);
        assert_eq!(
            r.base(),
            &Position::Kafka(KafkaPosition::from_topics(vec![("t".into(), vec![1, 0])]))
        );
        assert_eq!(
            r.head(),
            &Position::Kafka(KafkaPosition::from_topics(vec![("t".into(), vec![2, 1])]))
        );
        let mut out = Vec::new();
        assert_eq!(r.read(0, 10, &mut out), Read::Lagged { first: 1 });
        assert_eq!(r.read(1, 10, &mut out), Read::Events { next: 3, head: 3 });
        assert_eq!(out.len(), 2);
        assert!(matches!(r.read(3, 10, &mut out), Read::Empty { .. }));
    }

    #[test]
    fn evicts_by_bytes_but_keeps_one() {
        let mut r = Ring::new(start(), 100, 50);
        r.push(ev(0, 0, 100));
        assert_eq!(r.len(), 1);
        r.push(ev(0, 1, 100));
        assert_eq!(r.len(), 1);
        assert_eq!(r.first_seq(), 1);
    }

    #[test]
    fn head_id_follows_last_event() {
        let mut r = Ring::new(start(), 10, 1 << 20);
        let e = ev(1, 4, 1);
        r.push(e.clone());
        match r.read(1, 1, &mut Vec::new()) {
            Read::Empty { head_id } => assert_eq!(head_id, e.id()),
            other => panic!("{other:?}"),
        }
    }
}
