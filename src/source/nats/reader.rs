//! The shared reader of a route: an ordered consumer of the stream from where the ring
//! is (or, at start, from the last `replay.max_events` sequences, to warm it), publishing
//! every message to the hub; the stream's info, read every second, gives the lag and
//! shows a stream that was purged under the reader or deleted and created again, which
//! become explicit resets. Reconnects with backoff when anything fails.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::DeliverPolicy;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{msg_of, seq_of, unavailable, NatsSeq, NatsSource};
use crate::bus::Event;
use crate::event_id;
use crate::position::Position;
use crate::source::SourceError;

/// The stream's info (lag, purges) is read this often.
const REFRESH: Duration = Duration::from_secs(1);

pub(super) async fn run(src: Arc<NatsSource>, cancel: CancellationToken) {
    crate::source::reconnecting(&src.hub, "nats", &cancel, || run_once(&src, &cancel)).await
}

/// An `event: reset` moving the route to `next`: the messages from `requested` on that
/// the route had not delivered are gone (`cause`).
fn reset_event(
    src: &NatsSource,
    cause: &str,
    requested: u64,
    first: u64,
    last: u64,
    next: u64,
) -> Event {
    Event {
        frame: src.reset_frame(cause, requested, first, last, next),
        step: NatsSeq::restart(next),
        timestamp_ms: None,
        attrs: None,
    }
}

async fn run_once(src: &Arc<NatsSource>, cancel: &CancellationToken) -> Result<(), SourceError> {
    let mut stream = src.stream().await?;
    let state = stream.cached_info().state.clone();
    let (first, last) = (state.first_sequence, state.last_sequence);
    let head = seq_of(&*src.hub.head().1);
    let from = if !head.is_known() {
        // First start: warm the ring from recent history.
        let from = (last + 1).saturating_sub(src.warm_events).max(first).max(1);
        src.hub.set_head(|h| *h = Box::new(NatsSeq(from)));
        from
    } else if head.0 < first || head.0 > last + 1 {
        // Purged past the ring's head while disconnected, or a new stream of that name.
        let cause = if head.0 < first {
            "stream_truncated"
        } else {
            "stream_recreated"
        };
        warn!(route = %src.route, head = head.0, first, last, cause, "nats stream moved under the route");
        let next = first.max(1);
        src.hub
            .publish([reset_event(src, cause, head.0, first, last, next)]);
        next
    } else {
        head.0
    };
    let (mut messages, pending) = src
        .consume(
            &stream,
            DeliverPolicy::ByStartSequence {
                start_sequence: from,
            },
        )
        .await?;
    info!(route = %src.route, stream = %src.cfg.stream, from, pending, "nats source reading");
    src.hub.set_state(|s| {
        s.connected = true;
        s.last_error = None;
        if pending == 0 {
            s.live = true;
        }
    });
    let mut live = pending == 0;
    let mut pos = seq_of(&*src.hub.head().1);
    let mut refresh = tokio::time::interval(REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = refresh.tick() => {
                let info = tokio::time::timeout(super::TIMEOUT, stream.info())
                    .await
                    .map_err(|_| unavailable("stream info timed out"))?
                    .map_err(unavailable)?;
                let (first, last) = (info.state.first_sequence, info.state.last_sequence);
                src.metrics.set_lag(&src.cfg.stream, 0, (last + 1).saturating_sub(pos.0.max(first)) as i64);
                if pos.0 > last + 1 {
                    // The stream was deleted and created again: its sequences start over.
                    let next = first.max(1);
                    warn!(route = %src.route, at = pos.0, first, last, "nats stream recreated");
                    src.hub.publish([reset_event(src, "stream_recreated", pos.0, first, last, next)]);
                    return Err(unavailable("stream recreated; reading it again"));
                }
            }
            m = messages.next() => match m {
                Some(Ok(m)) => {
                    let (msg, after) = msg_of(&m)?;
                    let mut events = Vec::with_capacity(2);
                    let known = &stream.cached_info().state;
                    if pos.is_known() && pos.0 < known.first_sequence && msg.seq >= known.first_sequence {
                        // Purged past messages the route had not read yet: say so first.
                        let first = known.first_sequence;
                        events.push(reset_event(src, "stream_truncated", pos.0, first, known.last_sequence, first));
                    }
                    pos.0 = msg.seq + 1;
                    src.metrics.source_records.inc();
                    let id = event_id::encode(&pos);
                    let frame = src.encoder.encode(&msg, &id);
                    events.push(Event {
                        attrs: src.encoder.attrs(&msg, &frame),
                        frame,
                        step: NatsSeq::record(msg.seq),
                        timestamp_ms: Some(msg.time_ms),
                    });
                    src.hub.publish(events);
                    if !live && after == 0 {
                        live = true;
                        info!(route = %src.route, "nats source live");
                        src.hub.set_state(|s| s.live = true);
                    }
                }
                Some(Err(e)) => return Err(unavailable(e)),
                None => return Err(unavailable("the consumer ended")),
            },
        }
    }
}
