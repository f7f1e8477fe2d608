//! One replication session's stream as the route sees it: transactions' changes become
//! events whose ids are the position after them (commit LSN, index of the change in
//! its transaction + 1); keepalives tell how far the server has sent everything.
//! Changes are counted whether the route serves their table or not, so every replica
//! and every catch-up numbers a transaction's changes alike.

use pgwire_replication::ReplicationEvent;

use super::encode::{Change, Encoder, Txn};
use super::pgoutput::{self, Catalog, Message, OldKind};
use super::{unavailable, PgPos};
use crate::bus::Event;
use crate::event_id;
use crate::source::SourceError;

/// What the stream said.
pub enum Item {
    /// A change the route serves, and the position after it.
    Change(Event, PgPos),
    /// A transaction committed at `lsn` begins.
    Begin(u64),
    /// The transaction committed at `lsn` ended (its commit record ends at `end`).
    Commit { lsn: u64, end: u64 },
    /// Every commit before this WAL position was sent.
    Sent(u64),
}

/// Decodes one session.
pub struct Decoder {
    system: u64,
    catalog: Catalog,
    txn: Option<Txn>,
    index: u32,
    /// Changes before this position are skipped (a session starts at a commit LSN and
    /// resends that transaction whole).
    from: PgPos,
}

impl Decoder {
    pub fn new(system: u64, from: PgPos) -> Decoder {
        Decoder {
            system,
            catalog: Catalog::default(),
            txn: None,
            index: 0,
            from,
        }
    }

    /// Read one replication event into `out`.
    pub fn feed(
        &mut self,
        enc: &Encoder,
        ev: ReplicationEvent,
        out: &mut Vec<Item>,
    ) -> Result<(), SourceError> {
        match ev {
            ReplicationEvent::Begin {
                final_lsn,
                commit_time_micros,
                ..
            } => {
                self.txn = Some(Txn {
                    commit_lsn: final_lsn.as_u64(),
                    commit_time_us: commit_time_micros,
                });
                self.index = 0;
                out.push(Item::Begin(final_lsn.as_u64()));
            }
            ReplicationEvent::Commit { lsn, end_lsn, .. } => {
                self.txn = None;
                out.push(Item::Commit {
                    lsn: lsn.as_u64(),
                    end: end_lsn.as_u64(),
                });
            }
            ReplicationEvent::KeepAlive { wal_end, .. } if self.txn.is_none() => {
                out.push(Item::Sent(wal_end.as_u64()));
            }
            ReplicationEvent::XLogData { data, .. } => {
                let m = pgoutput::parse(&data).map_err(unavailable)?;
                if !self.catalog.learn(&m) {
                    self.changes(enc, &m, out)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn changes(
        &mut self,
        enc: &Encoder,
        m: &Message,
        out: &mut Vec<Item>,
    ) -> Result<(), SourceError> {
        let rels: Vec<u32> = match m {
            Message::Insert { rel, .. }
            | Message::Update { rel, .. }
            | Message::Delete { rel, .. } => {
                vec![*rel]
            }
            Message::Truncate(rels) => rels.clone(),
            _ => return Ok(()),
        };
        let txn = self
            .txn
            .ok_or_else(|| unavailable("pgoutput: a change outside a transaction"))?;
        for oid in rels {
            let at = self.index;
            self.index += 1;
            let after = PgPos {
                system: self.system,
                lsn: txn.commit_lsn,
                next: self.index,
            };
            if (txn.commit_lsn, at) < self.from.key() {
                continue;
            }
            let rel = self.catalog.relations.get(&oid).ok_or_else(|| {
                unavailable(format!("pgoutput: a change of unknown relation {oid}"))
            })?;
            if !enc.wants(rel) {
                continue;
            }
            let change = match m {
                Message::Insert { new, .. } => Change {
                    op: "insert",
                    rel,
                    new: Some(new),
                    old: None,
                },
                Message::Update { old, new, .. } => Change {
                    op: "update",
                    rel,
                    new: Some(new),
                    old: old.as_ref().map(|(k, d)| (*k, &d[..])),
                },
                Message::Delete { old, .. } => Change {
                    op: "delete",
                    rel,
                    new: None,
                    old: Some((old.0, &old.1[..])),
                },
                _ => Change {
                    op: "truncate",
                    rel,
                    new: None,
                    old: None::<(OldKind, &[_])>,
                },
            };
            let id = event_id::encode(&after);
            let (frame, json) = enc.encode(&change, &txn, &self.catalog, &id);
            let ev = Event {
                attrs: enc.attrs(&change, &json, &frame),
                frame,
                step: after.step(),
                timestamp_ms: Some(txn.time_ms()),
            };
            out.push(Item::Change(ev, after));
        }
        Ok(())
    }
}
