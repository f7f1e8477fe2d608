//! Where a NATS client starts: from the ring when it holds the sequence asked for,
//! through a shared catch-up reader of the stream when the stream still holds it, and
//! with an explicit `event: reset` naming the available range when it holds it no longer
//! (purged by limits, age or an operator; or a new stream of the same name).

use std::sync::Arc;

use async_nats::jetstream::consumer::DeliverPolicy;
use bytes::Bytes;
use futures::StreamExt;

use super::{catchup, msg_of, seq_of, unavailable, NatsSeq, NatsSource, TIMEOUT};
use crate::bus::Cursor;
use crate::metrics::ResumeOutcome;
use crate::position::Position;
use crate::source::{ClientStart, Plan, SourceError, StartPosition};

/// The ring as a NATS route sees it.
struct Window {
    first_seq: u64,
    base: NatsSeq,
    head_seq: u64,
    head: NatsSeq,
}

impl NatsSource {
    fn window(&self) -> Window {
        let (first_seq, base, head_seq, head) = self.hub.window();
        Window {
            first_seq,
            base: seq_of(&*base),
            head_seq,
            head: seq_of(&*head),
        }
    }

    /// The stream's first and last sequences now (`first` is at least 1; an empty
    /// stream has `first == last + 1`).
    async fn bounds(&self) -> Result<(u64, u64), SourceError> {
        let _turn = self.catchup.query_turn().await?;
        let s = self.stream().await?;
        let st = &s.cached_info().state;
        Ok((st.first_sequence.max(1), st.last_sequence))
    }

    /// Plan the start of a new client.
    pub(super) async fn plan_client(
        self: &Arc<Self>,
        start: ClientStart,
    ) -> Result<Plan, SourceError> {
        match start {
            ClientStart::Default => match self.start {
                StartPosition::Latest => Ok(self.head_plan(Vec::new(), None)),
                StartPosition::Earliest => {
                    let (first, _) = self.bounds().await?;
                    self.from_seq(NatsSeq(first), Vec::new(), None).await
                }
                StartPosition::Last(n) => {
                    let (first, last) = self.bounds().await?;
                    let from = (last + 1).saturating_sub(n).max(first);
                    self.from_seq(NatsSeq(from), Vec::new(), None).await
                }
            },
            ClientStart::Id(p) => {
                let asked = NatsSeq::of(&*p).ok_or(SourceError::WrongKind)?;
                self.resume(asked).await
            }
            ClientStart::Since(ms) if ms > chrono::Utc::now().timestamp_millis() => {
                Ok(self.head_plan(Vec::new(), None))
            }
            ClientStart::Since(ms) => {
                let seq = self.seq_at(ms).await?;
                self.from_seq(seq, Vec::new(), None).await
            }
        }
    }

    /// A client at the ring's head.
    fn head_plan(&self, preamble: Vec<Bytes>, outcome: Option<ResumeOutcome>) -> Plan {
        let w = self.window();
        Plan {
            cursor: Cursor::new(Box::new(w.head), true),
            next_seq: w.head_seq,
            catchup: None,
            preamble,
            outcome,
        }
    }

    /// Resume after the message before `asked`.
    async fn resume(self: &Arc<Self>, asked: NatsSeq) -> Result<Plan, SourceError> {
        let w = self.window();
        if w.head.is_known() && asked.is_known() && asked.0 >= w.base.0 && asked.0 <= w.head.0 {
            return Ok(self.ring_plan(asked, &w, Vec::new(), Some(ResumeOutcome::Buffer)));
        }
        let (first, last) = self.bounds().await?;
        if asked.is_known() && asked.0 >= first && asked.0 <= last + 1 {
            return self
                .from_seq(asked, Vec::new(), Some(ResumeOutcome::Source))
                .await;
        }
        // Gone: purged (below the stream's first) or from a stream since deleted and
        // created again (beyond its end).
        let cause = if asked.0 < first {
            "sequence_below_stream_first"
        } else {
            "sequence_beyond_stream_end"
        };
        let reset = self.reset_frame(cause, asked.0, first, last, first).bytes;
        self.from_seq(NatsSeq(first), vec![reset], Some(ResumeOutcome::Reset))
            .await
    }

    /// A client from `at` (a sequence the stream holds): from the ring when it reaches
    /// back that far, else through a shared catch-up reader up to the ring.
    async fn from_seq(
        self: &Arc<Self>,
        at: NatsSeq,
        preamble: Vec<Bytes>,
        outcome: Option<ResumeOutcome>,
    ) -> Result<Plan, SourceError> {
        let w = self.window();
        // A reset stays a reset wherever the rest is read from.
        let served =
            |from: ResumeOutcome| outcome.map(|o| if o == ResumeOutcome::Reset { o } else { from });
        if at.0 >= w.base.0 {
            return Ok(self.ring_plan(at, &w, preamble, served(ResumeOutcome::Buffer)));
        }
        let src = self.clone();
        let end = w.base.0;
        let catchup = self
            .catchup
            .join(&at, move || catchup::read(src, at.0, end))
            .await?;
        Ok(Plan {
            cursor: Cursor::new(Box::new(at), true),
            next_seq: w.first_seq,
            catchup: Some(catchup),
            preamble,
            outcome: served(ResumeOutcome::Source),
        })
    }

    /// A client at `at` within the ring (or ahead of its head, while the reader warms):
    /// it reads the ring from its oldest event, skipping what it has. One sequence is
    /// the whole position, so a frame's id (the route's position after it) is the
    /// client's too: the cursor is joined from the start, as on MongoDB routes.
    fn ring_plan(
        &self,
        at: NatsSeq,
        w: &Window,
        preamble: Vec<Bytes>,
        outcome: Option<ResumeOutcome>,
    ) -> Plan {
        let at_head = at == w.head;
        Plan {
            cursor: Cursor::new(Box::new(at), true),
            next_seq: if at_head { w.head_seq } else { w.first_seq },
            catchup: None,
            preamble,
            outcome,
        }
    }

    /// The first sequence stored at or after `ms` (the end of the stream when none).
    async fn seq_at(&self, ms: i64) -> Result<NatsSeq, SourceError> {
        let _turn = self.catchup.query_turn().await?;
        let stream = self.stream().await?;
        let last = stream.cached_info().state.last_sequence;
        let start_time =
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
                .map_err(|_| SourceError::BadId("time out of range".into()))?;
        let (mut messages, pending) = self
            .consume(&stream, DeliverPolicy::ByStartTime { start_time })
            .await?;
        if pending == 0 {
            return Ok(NatsSeq(last + 1));
        }
        match tokio::time::timeout(TIMEOUT, messages.next()).await {
            Ok(Some(Ok(m))) => Ok(NatsSeq(msg_of(&m)?.0.seq)),
            Ok(Some(Err(e))) => Err(unavailable(e)),
            Ok(None) | Err(_) => Err(unavailable("reading the stream by time timed out")),
        }
    }

    /// Re-plan a client that fell out of the ring before it caught up, or whose catch-up
    /// ended: from the ring when it holds the client's sequence, else through a shared
    /// catch-up reader joined on first read.
    pub(super) fn attach_cursor(self: &Arc<Self>, cursor: Cursor) -> Plan {
        let at = seq_of(&*cursor.position);
        let w = self.window();
        if at.0 >= w.base.0 || !at.is_known() {
            return self.ring_plan(at, &w, Vec::new(), Some(ResumeOutcome::Buffer));
        }
        let (src, end) = (self.clone(), w.base.0);
        let pending = self
            .catchup
            .lazy(Box::new(at), move || catchup::read(src, at.0, end));
        Plan {
            cursor: Cursor::new(Box::new(at), true),
            next_seq: w.first_seq,
            catchup: Some(pending),
            preamble: Vec::new(),
            outcome: Some(ResumeOutcome::Source),
        }
    }
}
