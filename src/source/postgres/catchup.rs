//! Reading the WAL for clients behind the ring: the raw read of one shared catch-up
//! reader (see `crate::source::CatchupPool`). A session copies this replica's anchor
//! slot as a temporary slot (the database drops it when the session ends) and streams it from
//! the first position the clients lack, ending at the ring's base (whose changes the
//! ring serves). Should the slot have confirmed past that position meanwhile, the read
//! starts with an explicit reset.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use pgwire_replication::{Lsn, ReplicationClient};

use super::decode::{Decoder, Item};
use super::slots;
use super::{unavailable, PgPos, PgSource, TIMEOUT};
use crate::bus::Event;
use crate::source::{CatchupRead, SourceError};

/// The read of changes after `from` up to and including `end`.
pub(super) fn read(src: Arc<PgSource>, from: PgPos, end: PgPos) -> CatchupRead {
    CatchupRead {
        base: Box::new(from),
        end: Some(Box::new(end)),
        raw: Box::pin(events(src, from, end)),
    }
}

/// A session streaming a temporary copy of this replica's slot from `from`; the
/// position it starts at (later than `from` when the slot no longer reaches back).
pub(super) async fn open(
    src: &PgSource,
    from: PgPos,
) -> Result<(ReplicationClient, PgPos, u64), SourceError> {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let temp = slots::catchup_name(&src.slot, N.fetch_add(1, Ordering::Relaxed));
    let mut s = src.session(&temp, Some(from.lsn)).await?;
    slots::query(
        &mut s,
        &format!(
            "SELECT pg_copy_logical_replication_slot('{}', '{temp}', true)",
            src.slot
        ),
    )
    .await?;
    let confirmed = slots::lsn(
        slots::scalar(
            &mut s,
            &format!(
                "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '{temp}'"
            ),
        )
        .await?
        .as_ref(),
    )
    .ok_or_else(|| unavailable("the temporary slot has no confirmed position"))?;
    // The server starts a slot no earlier than its confirmed position.
    let start = if from.lsn >= confirmed {
        from
    } else {
        PgPos {
            lsn: confirmed,
            next: 0,
            ..from
        }
    };
    s.start().await.map_err(unavailable)?;
    tokio::time::timeout(TIMEOUT, s.wait_started())
        .await
        .map_err(|_| unavailable("START_REPLICATION timed out"))?
        .map_err(unavailable)?;
    Ok((s, start, confirmed))
}

/// An event with no change that moves its clients to `at` (an id-only frame).
fn position_event(at: PgPos) -> Event {
    let bytes = bytes::Bytes::from(format!("id: {}\n\n", crate::event_id::encode(&at)));
    Event {
        frame: crate::sse::Frame {
            body_start: bytes.len() - 1,
            bytes,
        },
        step: at.step(),
        timestamp_ms: None,
        attrs: None,
    }
}

/// The events after `from` up to `end`, as a stream.
fn events(
    src: Arc<PgSource>,
    from: PgPos,
    end: PgPos,
) -> impl futures::Stream<Item = Result<Arc<Event>, SourceError>> + Send {
    struct Reading {
        client: ReplicationClient,
        dec: Decoder,
        pending: std::collections::VecDeque<Event>,
        done: bool,
        /// The position after what was handed out.
        at: PgPos,
    }
    enum St {
        Start,
        Reading(Box<Reading>),
        Done,
    }
    futures::stream::unfold(St::Start, move |st| {
        let src = src.clone();
        async move {
            let mut r = match st {
                St::Done => return None,
                St::Reading(r) => r,
                St::Start => {
                    if from.key() >= end.key() {
                        return None;
                    }
                    tracing::debug!(route = %src.route, from = ?from.key(), end = ?end.key(), "postgres catch-up opening");
                    match open(&src, from).await {
                        Err(e) => {
                            tracing::debug!(route = %src.route, error = %e, "postgres catch-up failed to open");
                            return Some((Err(e), St::Done));
                        }
                        Ok((client, start, confirmed)) => {
                            let mut pending = std::collections::VecDeque::new();
                            if start != from {
                                pending.push_back(src.reset_event(
                                    "position_outside_window",
                                    from,
                                    confirmed,
                                    start,
                                ));
                            }
                            Box::new(Reading {
                                client,
                                dec: Decoder::new(src.system.load(Ordering::Relaxed), start),
                                pending,
                                done: false,
                                at: from,
                            })
                        }
                    }
                }
            };
            loop {
                if let Some(ev) = r.pending.pop_front() {
                    if let Some(a) = PgPos::after_step(&ev.step) {
                        r.at = a;
                    }
                    return Some((Ok(Arc::new(ev)), St::Reading(r)));
                }
                if r.done {
                    if r.at.key() < end.key() {
                        // Nothing more before `end`: the clients are there.
                        r.at = end;
                        return Some((Ok(Arc::new(position_event(end))), St::Reading(r)));
                    }
                    return None;
                }
                let ev = match tokio::time::timeout(TIMEOUT, r.client.recv()).await {
                    Err(_) => {
                        return Some((Err(unavailable("catch-up read went silent")), St::Done))
                    }
                    Ok(Ok(Some(ev))) => {
                        tracing::trace!(route = %src.route, event = ?ev, "catch-up replication event");
                        ev
                    }
                    Ok(Ok(None)) => {
                        return Some((Err(unavailable("the replication stream ended")), St::Done))
                    }
                    Ok(Err(e)) => return Some((Err(unavailable(e)), St::Done)),
                };
                let mut items = Vec::new();
                if let Err(e) = r.dec.feed(&src.encoder, ev, &mut items) {
                    return Some((Err(e), St::Done));
                }
                for item in items {
                    match item {
                        // The ring has it and everything after.
                        Item::Change(_, after) if after.key() > end.key() => r.done = true,
                        Item::Change(ev, _) if !r.done => r.pending.push_back(ev),
                        Item::Commit { lsn, end: e } => {
                            r.client.update_applied_lsn(Lsn::from_u64(e));
                            if lsn >= end.lsn {
                                r.done = true;
                            }
                        }
                        // Every commit before `w` was sent: all before `end` too.
                        Item::Sent(w) if w > end.lsn || (w == end.lsn && end.next == 0) => {
                            r.done = true
                        }
                        _ => {}
                    }
                }
            }
        }
    })
}
