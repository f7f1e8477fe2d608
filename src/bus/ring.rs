//! The bounded event ring behind a [`super::Hub`].

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use super::Event;
use crate::event_id;
use crate::position::Position;

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

pub struct Ring {
    events: VecDeque<Arc<Event>>,
    first_seq: u64,
    bytes: usize,
    base: Box<dyn Position>,
    head: Box<dyn Position>,
    head_id: Bytes,
    max_events: usize,
    max_bytes: usize,
}

impl Ring {
    pub fn new(initial: Box<dyn Position>, max_events: usize, max_bytes: usize) -> Ring {
        let head_id = Bytes::from(event_id::encode(&*initial));
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

    pub fn push(&mut self, ev: Arc<Event>) {
        if ev.step.is_reset() {
            // Events before a reset belong to a log that is gone: drop them, so nobody
            // resumes into them; clients still reading them fall out and resume by id.
            self.first_seq += self.events.len() as u64;
            self.events.clear();
            self.bytes = 0;
            self.base = self.head.clone();
            self.base.advance(&ev.step);
        }
        self.head.advance(&ev.step);
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
            self.base.advance(&old.step);
            self.first_seq += 1;
        }
    }

    pub fn set_head(&mut self, f: impl FnOnce(&mut Box<dyn Position>)) {
        f(&mut self.head);
        if self.events.is_empty() {
            self.base = self.head.clone();
        } else {
            // Lanes new to the head start in the base where they are at the head, so the
            // ring covers them from there.
            self.base.adopt_new_lanes(&*self.head);
        }
        self.head_id = Bytes::from(event_id::encode(&*self.head));
    }

    pub fn read(&self, from: u64, max: usize, out: &mut Vec<Arc<Event>>) -> Read {
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
    pub fn find_id(&self, id: &[u8]) -> Option<u64> {
        if !id.is_empty() && event_id::encode(&*self.base).as_bytes() == id {
            return Some(self.first_seq);
        }
        self.events
            .iter()
            .rposition(|e| e.id() == id)
            .map(|i| self.first_seq + i as u64 + 1)
    }

    pub fn head_seq(&self) -> u64 {
        self.first_seq + self.events.len() as u64
    }
    pub fn first_seq(&self) -> u64 {
        self.first_seq
    }
    pub fn base(&self) -> &dyn Position {
        &*self.base
    }
    pub fn head(&self) -> &dyn Position {
        &*self.head
    }
    pub fn len(&self) -> usize {
        self.events.len()
    }
    pub fn bytes(&self) -> usize {
        self.bytes
    }
    /// The events held, oldest first.
    pub fn events(&self) -> impl Iterator<Item = &Arc<Event>> {
        self.events.iter()
    }
    /// How many of the oldest events pushing an event of `bytes` would drop.
    pub fn evicts(&self, bytes: usize) -> usize {
        let mut events = self.events.len() + 1;
        let mut held = self.bytes + bytes;
        let mut dropped = 0;
        for old in &self.events {
            if events <= self.max_events && (held <= self.max_bytes || events == 1) {
                break;
            }
            events -= 1;
            held -= old.frame.bytes.len();
            dropped += 1;
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::position::{downcast, Accept, Lane, Step};

    #[test]
    fn evicts_counts_what_a_push_would_drop_by_count_and_by_bytes() {
        let size = ev(0, 0, 30).frame.bytes.len();
        let mut r = Ring::new(Box::new(Offsets(vec![0, 0])), 3, 100 * size);
        assert_eq!(
            r.evicts(usize::MAX / 2),
            0,
            "an empty ring keeps one event of any size"
        );
        for o in 0..3 {
            r.push(ev(0, o, 30));
        }
        assert_eq!(r.evicts(10), 1, "over the event count");
        let mut r = Ring::new(Box::new(Offsets(vec![0, 0])), 10, 3 * size);
        r.push(ev(0, 0, 30));
        r.push(ev(0, 1, 30));
        assert_eq!(r.evicts(size), 0, "fits");
        assert_eq!(r.evicts(size + 1), 1, "over the bytes by one");
        assert_eq!(r.evicts(2 * size + 1), 2, "needs both gone");
        let big = ev(0, 2, 30 + size + 1);
        assert_eq!(r.evicts(big.frame.bytes.len()), 2);
        let before = r.first_seq();
        r.push(big);
        assert_eq!(r.first_seq() - before, 2, "as pushing does");
    }

    /// The test's own position: next offset per partition of one stream.
    #[derive(Debug, Clone, PartialEq)]
    struct Offsets(Vec<i64>);

    impl Position for Offsets {
        fn kind(&self) -> u8 {
            b't'
        }
        fn write_binary(&self, out: &mut Vec<u8>) {
            for o in &self.0 {
                out.extend_from_slice(&o.to_be_bytes());
            }
        }
        fn advance(&mut self, step: &Step) {
            if let Step::Record { lane, offset } = step {
                self.0[lane.partition as usize] = offset + 1;
            }
        }
        fn accept(&mut self, _: &Step, _: bool) -> Accept {
            Accept::Skip
        }
        fn same(&self, other: &dyn Position) -> bool {
            downcast::<Offsets>(other) == Some(self)
        }
    }

    fn ev(partition: i32, offset: i64, size: usize) -> Arc<Event> {
        let mut head = Offsets(vec![0, 0]);
        head.0[partition as usize] = offset + 1;
        let id = event_id::encode(&head);
        Arc::new(Event {
            frame: crate::sse::frame(&id, None, Some(&"x".repeat(size))),
            step: Step::Record {
                lane: Lane {
                    stream: 0,
                    partition,
                },
                offset,
            },
            timestamp_ms: None,
            attrs: None,
        })
    }

    fn start() -> Box<dyn Position> {
        Box::new(Offsets(vec![0, 0]))
    }

    fn offsets(p: &dyn Position) -> Vec<i64> {
        downcast::<Offsets>(p).unwrap().0.clone()
    }

    #[test]
    fn evicts_by_count_and_moves_base() {
        let mut r = Ring::new(start(), 2, 1 << 20);
        r.push(ev(0, 0, 1));
        r.push(ev(1, 0, 1));
        r.push(ev(0, 1, 1));
        assert_eq!(r.first_seq(), 1);
        assert_eq!(r.head_seq(), 3);
        assert_eq!(offsets(r.base()), vec![1, 0]);
        assert_eq!(offsets(r.head()), vec![2, 1]);
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

    #[test]
    fn finds_events_and_the_base_by_id() {
        let mut r = Ring::new(start(), 10, 1 << 20);
        let e = ev(0, 0, 1);
        r.push(e.clone());
        assert_eq!(r.find_id(&e.id()), Some(1));
        let base_id = event_id::encode(&Offsets(vec![0, 0]));
        assert_eq!(r.find_id(base_id.as_bytes()), Some(0));
        assert_eq!(r.find_id(b"nope"), None);
    }
}
