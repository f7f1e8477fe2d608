//! [`PgPos`]: where a PostgreSQL route is — the commit LSN of a transaction and how many
//! of its changes were delivered, in the database cluster named by its system
//! identifier. Its binary form is the payload of a PostgreSQL event id; its
//! [`Position`] implementation is the one place the advance rule lives.
//!
//! Transactions arrive in commit order, so positions are totally ordered by
//! `(lsn, next)`; an event's step is the position after it ([`Step::Token`]), which this
//! type reads back to compare.

use bytes::Bytes;

use crate::event_id::varint;
use crate::position::{Accept, Decode, Position, Step};

/// Kind byte of PostgreSQL event ids.
pub const KIND: u8 = b'p';

/// Changes of transactions committed at `lsn` or later, from change `next` of the one
/// committed at `lsn`, are still to deliver. `lsn == 0`: unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PgPos {
    /// The database cluster's system identifier (`IDENTIFY_SYSTEM`); 0 while unknown.
    pub system: u64,
    /// Commit LSN (the commit record's start) of the transaction, or a WAL position
    /// before which every commit was delivered.
    pub lsn: u64,
    /// Index of the next change to deliver of the transaction committed at `lsn`.
    pub next: u32,
}

impl PgPos {
    /// The PgPos behind `p`, if it is one.
    pub fn of(p: &dyn Position) -> Option<PgPos> {
        p.as_any().downcast_ref::<PgPos>().copied()
    }

    /// The order of positions (the system identifier is checked where ids are read).
    pub fn key(&self) -> (u64, u32) {
        (self.lsn, self.next)
    }

    fn bytes(&self) -> Bytes {
        let mut out = Vec::with_capacity(20);
        self.write_binary(&mut out);
        out.into()
    }

    /// The step of the change delivered to reach this position.
    pub fn step(&self) -> Step {
        Step::Token(self.bytes())
    }

    /// The step of a reset to this position.
    pub fn restart(&self) -> Step {
        Step::TokenRestart(self.bytes())
    }

    /// The LSN in PostgreSQL's text form (`16/B374D848`).
    pub fn lsn_text(lsn: u64) -> String {
        format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
    }
}

fn after(step: &Step) -> Option<PgPos> {
    match step {
        Step::Token(b) | Step::TokenRestart(b) => PgPos::read_binary(b).ok(),
        _ => None,
    }
}

impl PgPos {
    /// The position after an event of a PostgreSQL route.
    pub fn after_step(step: &Step) -> Option<PgPos> {
        after(step)
    }
}

impl Position for PgPos {
    fn kind(&self) -> u8 {
        KIND
    }

    fn is_known(&self) -> bool {
        self.lsn > 0
    }

    fn write_binary(&self, out: &mut Vec<u8>) {
        varint::put(out, self.system);
        varint::put(out, self.lsn);
        varint::put(out, u64::from(self.next));
    }

    fn advance(&mut self, step: &Step) {
        if let Some(p) = after(step) {
            *self = p;
        }
    }

    fn accept(&mut self, step: &Step, _joined: bool) -> Accept {
        let Some(p) = after(step) else {
            return Accept::Skip;
        };
        match step {
            // Already there (told at connect time): nothing new to say.
            Step::TokenRestart(_) if p == *self => Accept::Skip,
            Step::TokenRestart(_) => {
                *self = p;
                Accept::Take
            }
            // A position with no change at it (the end of a catch-up read): taken
            // (its frame has only the id) when it is ahead.
            _ if p.next == 0 && p.key() <= self.key() => Accept::Skip,
            // The change at (p.lsn, p.next - 1) is new when it is at or after this
            // position.
            _ if p.next > 0 && (p.lsn, p.next - 1) < self.key() => Accept::Skip,
            _ => {
                self.system = p.system;
                self.lsn = p.lsn;
                self.next = p.next;
                Accept::Take
            }
        }
    }

    fn same(&self, other: &dyn Position) -> bool {
        PgPos::of(other).is_some_and(|o| o.key() == self.key())
    }

    fn at_or_after(&self, base: &dyn Position) -> bool {
        PgPos::of(base).is_some_and(|b| self.key() >= b.key())
    }
}

impl Decode for PgPos {
    const KIND: u8 = KIND;

    fn read_binary(mut buf: &[u8]) -> Result<PgPos, &'static str> {
        let system = varint::get(&mut buf)?;
        let lsn = varint::get(&mut buf)?;
        let next = varint::get(&mut buf)?;
        if !buf.is_empty() {
            return Err("trailing bytes");
        }
        let next = u32::try_from(next).map_err(|_| "change index out of range")?;
        Ok(PgPos { system, lsn, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_id::{decode_as, encode};
    use proptest::prelude::*;

    /// The wire form, pinned: kind `p`, version 1, varints 7, 0x1_0000_0000 and 2.
    #[test]
    fn golden_id() {
        let p = PgPos {
            system: 7,
            lsn: 1 << 32,
            next: 2,
        };
        let id = encode(&p);
        assert_eq!(decode_as::<PgPos>(&id).unwrap(), p);
        let raw =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &id).unwrap();
        assert_eq!(raw, [0x01, b'p', 7, 0x80, 0x80, 0x80, 0x80, 0x10, 2]);
        assert_eq!(PgPos::lsn_text(0x16_B374_D848), "16/B374D848");
    }

    fn at(lsn: u64, next: u32) -> PgPos {
        PgPos {
            system: 1,
            lsn,
            next,
        }
    }

    #[test]
    fn advance_and_accept() {
        // Delivered change 0 of the transaction committed at 100.
        let mut c = at(100, 1);
        assert_eq!(c.accept(&at(100, 1).step(), true), Accept::Skip);
        assert_eq!(c.accept(&at(90, 3).step(), true), Accept::Skip);
        assert_eq!(c.accept(&at(100, 2).step(), true), Accept::Take);
        assert_eq!(c, at(100, 2));
        // The end of a catch-up read: an id-only frame moving the client.
        assert_eq!(c.accept(&at(150, 0).step(), true), Accept::Take);
        assert_eq!(c, at(150, 0));
        assert_eq!(c.accept(&at(150, 0).step(), true), Accept::Skip);
        assert_eq!(c.accept(&at(200, 1).step(), true), Accept::Take);
        assert_eq!(c.accept(&at(150, 0).step(), true), Accept::Skip);
        // An idle position: every commit at or after 300 is new.
        let mut idle = at(300, 0);
        assert_eq!(idle.accept(&at(200, 5).step(), true), Accept::Skip);
        assert_eq!(idle.accept(&at(300, 1).step(), true), Accept::Take);
        assert_eq!(idle.accept(&at(300, 1).restart(), true), Accept::Skip);
        assert_eq!(idle.accept(&at(900, 0).restart(), true), Accept::Take);
        assert_eq!(idle, at(900, 0));
        assert!(at(900, 1).at_or_after(&at(900, 0)) && !at(899, 9).at_or_after(&at(900, 0)));
    }

    proptest! {
        #[test]
        fn round_trip(system: u64, lsn: u64, next: u32) {
            let p = PgPos { system, lsn, next };
            prop_assert_eq!(decode_as::<PgPos>(&encode(&p)).unwrap(), p);
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..30)) {
            let _ = PgPos::read_binary(&bytes);
        }
    }
}
