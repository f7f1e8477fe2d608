//! Where a PostgreSQL client starts: from the ring when it holds the position asked for,
//! through a shared catch-up read of a copy of this replica's slot when the slot still
//! reaches back to it (the resume window), and with an explicit `event: reset` naming
//! the oldest resumable position when it does not (or when the id is of another
//! database, or beyond its WAL).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;

use super::decode::{Decoder, Item};
use super::{catchup, pos_of, slots, unavailable, PgPos, PgSource, TIMEOUT};
use crate::bus::Cursor;
use crate::metrics::ResumeOutcome;
use crate::position::Position;
use crate::source::{ClientStart, Plan, SourceError, StartPosition};

/// The ring as a PostgreSQL route sees it.
struct Ring {
    first_seq: u64,
    base: PgPos,
    head_seq: u64,
    head: PgPos,
}

impl PgSource {
    fn ring(&self) -> Ring {
        let (first_seq, base, head_seq, head) = self.hub.window();
        Ring {
            first_seq,
            base: pos_of(&*base),
            head_seq,
            head: pos_of(&*head),
        }
    }

    /// The oldest resumable position (this replica's slot's), once connected.
    fn earliest(&self) -> Result<PgPos, SourceError> {
        let system = self.system();
        let lsn = self.confirmed.load(Ordering::Relaxed);
        if system == 0 || lsn == 0 {
            return Err(unavailable("not connected yet"));
        }
        Ok(PgPos {
            system,
            lsn,
            next: 0,
        })
    }

    /// Plan the start of a new client.
    pub(super) async fn plan_client(
        self: &Arc<Self>,
        start: ClientStart,
    ) -> Result<Plan, SourceError> {
        match start {
            ClientStart::Default => match self.start {
                StartPosition::Earliest => {
                    let e = self.earliest()?;
                    self.from_pos(e, Vec::new(), None).await
                }
                _ => Ok(self.ring_plan(self.ring().head, Vec::new(), None)),
            },
            ClientStart::Id(p) => {
                let asked = PgPos::of(&*p).ok_or(SourceError::WrongKind)?;
                self.resume(asked).await
            }
            ClientStart::Since(ms) if ms > chrono::Utc::now().timestamp_millis() => {
                Ok(self.ring_plan(self.ring().head, Vec::new(), None))
            }
            ClientStart::Since(ms) => {
                let at = self.pos_at(ms).await?;
                self.from_pos(at, Vec::new(), None).await
            }
        }
    }

    /// Resume after the change before `asked`.
    async fn resume(self: &Arc<Self>, asked: PgPos) -> Result<Plan, SourceError> {
        let ring = self.ring();
        let earliest = self.earliest()?;
        let reset =
            |cause: &str, to: PgPos| vec![self.reset_frame(cause, asked, earliest.lsn, to).bytes];
        if asked.system != earliest.system || !asked.is_known() {
            let pre = reset("position_of_another_database", earliest);
            return self
                .from_pos(earliest, pre, Some(ResumeOutcome::Reset))
                .await;
        }
        if asked.key() >= ring.base.key() && asked.key() <= ring.head.key() {
            return Ok(self.ring_plan(asked, Vec::new(), Some(ResumeOutcome::Buffer)));
        }
        if asked.key() > ring.head.key() {
            // Another replica may be ahead of this one: beyond the WAL's end only is it
            // not a position of this database.
            if asked.lsn <= self.wal_now.load(Ordering::Relaxed)
                || asked.lsn <= self.wal_lsn().await?
            {
                return Ok(self.ring_plan(asked, Vec::new(), Some(ResumeOutcome::Buffer)));
            }
            let pre = reset("position_beyond_wal_end", ring.head);
            return Ok(self.ring_plan(ring.head, pre, Some(ResumeOutcome::Reset)));
        }
        if asked.lsn >= earliest.lsn {
            return self
                .from_pos(asked, Vec::new(), Some(ResumeOutcome::Source))
                .await;
        }
        let pre = reset("position_outside_window", earliest);
        self.from_pos(earliest, pre, Some(ResumeOutcome::Reset))
            .await
    }

    /// The server's WAL position now.
    async fn wal_lsn(&self) -> Result<u64, SourceError> {
        let _turn = self.catchup.query_turn().await?;
        let mut s = self.session(&self.slot, None).await?;
        let l = slots::lsn(
            slots::scalar(&mut s, "SELECT pg_current_wal_lsn()")
                .await?
                .as_ref(),
        )
        .unwrap_or(0);
        self.wal_now.fetch_max(l, Ordering::Relaxed);
        Ok(l)
    }

    /// A client from `at`: from the ring when it reaches back that far, else through a
    /// shared catch-up reader up to the ring.
    async fn from_pos(
        self: &Arc<Self>,
        at: PgPos,
        preamble: Vec<Bytes>,
        outcome: Option<ResumeOutcome>,
    ) -> Result<Plan, SourceError> {
        let ring = self.ring();
        // A reset stays a reset wherever the rest is read from.
        let served =
            |from: ResumeOutcome| outcome.map(|o| if o == ResumeOutcome::Reset { o } else { from });
        if at.key() >= ring.base.key() {
            return Ok(self.ring_plan(at, preamble, served(ResumeOutcome::Buffer)));
        }
        let src = self.clone();
        let end = ring.base;
        let catchup = self
            .catchup
            .join(&at, move || catchup::read(src, at, end))
            .await?;
        Ok(Plan {
            cursor: Cursor::new(Box::new(at), true),
            next_seq: ring.first_seq,
            catchup: Some(catchup),
            preamble,
            outcome: served(ResumeOutcome::Source),
        })
    }

    /// A client at `at` within the ring (or ahead of its head): it reads the ring from
    /// its oldest event, skipping what it has; a frame's id is the client's position
    /// too, so the cursor is joined from the start.
    fn ring_plan(&self, at: PgPos, preamble: Vec<Bytes>, outcome: Option<ResumeOutcome>) -> Plan {
        let ring = self.ring();
        let at_head = at == ring.head;
        Plan {
            cursor: Cursor::new(Box::new(at), true),
            next_seq: if at_head {
                ring.head_seq
            } else {
                ring.first_seq
            },
            catchup: None,
            preamble,
            outcome,
        }
    }

    /// The position of the first change committed at or after `ms`: from the ring when
    /// it reaches back that far, else by reading the slot's window up to it (the
    /// present when none).
    async fn pos_at(&self, ms: i64) -> Result<PgPos, SourceError> {
        let ring = self.ring();
        let (mut before, mut seq, mut buf) = (ring.base, ring.first_seq, Vec::new());
        let mut covers = None;
        'ring: loop {
            buf.clear();
            let _ = self.hub.read(seq, 256, &mut buf);
            if buf.is_empty() {
                break;
            }
            for ev in &buf {
                seq += 1;
                let t = ev.timestamp_ms.unwrap_or(i64::MIN);
                // Older changes than the ring's first may be as late as `ms`.
                if covers.is_none() {
                    covers = Some(t < ms);
                }
                if covers == Some(false) {
                    break 'ring;
                }
                if t >= ms {
                    return Ok(before);
                }
                if let Some(a) = PgPos::after_step(&ev.step) {
                    before = a;
                }
            }
        }
        if covers == Some(true) {
            return Ok(ring.head);
        }
        let earliest = self.earliest()?;
        let _turn = self.catchup.query_turn().await?;
        let (mut client, start, _) = catchup::open(self, earliest).await?;
        let mut dec = Decoder::new(earliest.system, start);
        let mut items = Vec::new();
        loop {
            let ev = tokio::time::timeout(TIMEOUT, client.recv())
                .await
                .map_err(|_| unavailable("reading by time went silent"))?
                .map_err(unavailable)?
                .ok_or_else(|| unavailable("the replication stream ended"))?;
            dec.feed(&self.encoder, ev, &mut items)?;
            for item in items.drain(..) {
                match item {
                    Item::Change(ev, after) if ev.timestamp_ms.is_some_and(|t| t >= ms) => {
                        return Ok(PgPos {
                            next: after.next - 1,
                            ..after
                        });
                    }
                    Item::Sent(w) => {
                        return Ok(PgPos {
                            system: earliest.system,
                            lsn: w,
                            next: 0,
                        });
                    }
                    _ => {}
                }
            }
        }
    }

    /// Re-plan a client that fell out of the ring before it caught up, or whose catch-up
    /// ended: from the ring when it holds the client's position, else through a shared
    /// catch-up reader joined on first read.
    pub(super) fn attach_cursor(self: &Arc<Self>, cursor: Cursor) -> Plan {
        let at = pos_of(&*cursor.position);
        let ring = self.ring();
        if at.key() >= ring.base.key() || !at.is_known() {
            return self.ring_plan(at, Vec::new(), Some(ResumeOutcome::Buffer));
        }
        let (src, end) = (self.clone(), ring.base);
        let pending = self
            .catchup
            .lazy(Box::new(at), move || catchup::read(src, at, end));
        Plan {
            cursor: Cursor::new(Box::new(at), true),
            next_seq: ring.first_seq,
            catchup: Some(pending),
            preamble: Vec::new(),
            outcome: Some(ResumeOutcome::Source),
        }
    }
}
