//! [`NatsSeq`]: the stream sequence after the last message delivered, the position of a
//! NATS route. Its binary form (one varint) is the payload of a NATS event id; its
//! [`Position`] implementation is the one place the advance rule lives.

use crate::event_id::varint;
use crate::position::{Accept, Decode, Lane, Position, Step};

/// Kind byte of NATS event ids.
pub const KIND: u8 = b'n';

/// The one lane of a NATS route (a stream has one sequence).
pub const LANE: Lane = Lane {
    stream: 0,
    partition: 0,
};

/// The next stream sequence to deliver; 0 while unknown (JetStream sequences start at 1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NatsSeq(pub u64);

impl NatsSeq {
    /// The NatsSeq behind `p`, if it is one (a route's hub and cursors only hold this
    /// adapter's positions).
    pub fn of(p: &dyn Position) -> Option<NatsSeq> {
        p.as_any().downcast_ref::<NatsSeq>().copied()
    }

    /// The step of the message at stream sequence `seq`.
    pub fn record(seq: u64) -> Step {
        Step::Record {
            lane: LANE,
            offset: i64::try_from(seq).unwrap_or(i64::MAX),
        }
    }

    /// The step of a reset: the route continues at `next`.
    pub fn restart(next: u64) -> Step {
        Step::Restart {
            lane: LANE,
            next: i64::try_from(next).unwrap_or(i64::MAX),
        }
    }
}

impl Position for NatsSeq {
    fn kind(&self) -> u8 {
        KIND
    }

    fn is_known(&self) -> bool {
        self.0 > 0
    }

    fn write_binary(&self, out: &mut Vec<u8>) {
        varint::put(out, self.0);
    }

    fn advance(&mut self, step: &Step) {
        match *step {
            Step::Record { offset, .. } => self.0 = offset as u64 + 1,
            Step::Restart { next, .. } => self.0 = next as u64,
            Step::Token(_) | Step::TokenRestart(_) => {}
        }
    }

    fn accept(&mut self, step: &Step, _joined: bool) -> Accept {
        match *step {
            Step::Record { offset, .. } if (offset as u64) < self.0 => return Accept::Skip,
            // Already restarted there (told at connect time): nothing new to say.
            Step::Restart { next, .. } if next as u64 == self.0 => return Accept::Skip,
            Step::Token(_) | Step::TokenRestart(_) => return Accept::Skip,
            _ => {}
        }
        self.advance(step);
        Accept::Take
    }

    fn same(&self, other: &dyn Position) -> bool {
        NatsSeq::of(other) == Some(*self)
    }

    fn at_or_after(&self, base: &dyn Position) -> bool {
        NatsSeq::of(base).is_some_and(|b| self.0 >= b.0)
    }
}

impl Decode for NatsSeq {
    const KIND: u8 = KIND;

    fn read_binary(mut buf: &[u8]) -> Result<NatsSeq, &'static str> {
        let n = varint::get(&mut buf)?;
        if !buf.is_empty() {
            return Err("trailing bytes");
        }
        if n > i64::MAX as u64 {
            return Err("sequence out of range");
        }
        Ok(NatsSeq(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_id::{decode_as, encode};
    use proptest::prelude::*;

    /// The wire form, pinned: kind `n`, version 1, varint 300 = `ac 02`.
    #[test]
    fn golden_id() {
        let id = encode(&NatsSeq(300));
        assert_eq!(decode_as::<NatsSeq>(&id).unwrap(), NatsSeq(300));
        let raw =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &id).unwrap();
        assert_eq!(raw, [0x01, b'n', 0xac, 0x02]);
    }

    #[test]
    fn advance_and_accept() {
        let mut p = NatsSeq(5);
        assert_eq!(p.accept(&NatsSeq::record(4), true), Accept::Skip);
        assert_eq!(p.accept(&NatsSeq::record(7), true), Accept::Take);
        assert_eq!(p, NatsSeq(8));
        assert_eq!(p.accept(&NatsSeq::restart(8), true), Accept::Skip);
        assert_eq!(p.accept(&NatsSeq::restart(20), true), Accept::Take);
        assert_eq!(p, NatsSeq(20));
        assert!(p.at_or_after(&NatsSeq(20)) && !p.at_or_after(&NatsSeq(21)));
    }

    proptest! {
        #[test]
        fn round_trip(n in 0u64..i64::MAX as u64) {
            prop_assert_eq!(decode_as::<NatsSeq>(&encode(&NatsSeq(n))).unwrap(), NatsSeq(n));
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..20)) {
            let _ = NatsSeq::read_binary(&bytes);
        }
    }
}
