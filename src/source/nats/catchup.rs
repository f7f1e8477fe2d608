//! Reading the stream for clients behind the ring: the raw read of one shared catch-up
//! reader (see `crate::source::CatchupPool`). An ordered consumer from the first
//! sequence the clients lack, ending before the ring's base (whose messages the ring
//! serves) or at the end of the stream.

use std::sync::Arc;

use async_nats::jetstream::consumer::DeliverPolicy;
use futures::StreamExt;

use super::{msg_of, NatsSeq, NatsSource};
use crate::bus::Event;
use crate::event_id;
use crate::source::{CatchupRead, SourceError};

/// The read of sequences `from` up to (not including) `end`.
pub(super) fn read(src: Arc<NatsSource>, from: u64, end: u64) -> CatchupRead {
    CatchupRead {
        base: Box::new(NatsSeq(from)),
        end: Some(Box::new(NatsSeq(end))),
        raw: Box::pin(events(src, from, end)),
    }
}

/// The events of `from..end`, as a stream.
fn events(
    src: Arc<NatsSource>,
    from: u64,
    end: u64,
) -> impl futures::Stream<Item = Result<Arc<Event>, SourceError>> + Send {
    enum St {
        Start,
        Reading(Box<async_nats::jetstream::consumer::pull::Ordered>),
        Done,
    }
    futures::stream::unfold(St::Start, move |st| {
        let src = src.clone();
        async move {
            let mut messages = match st {
                St::Done => return None,
                St::Reading(m) => m,
                St::Start => {
                    if from >= end {
                        return None;
                    }
                    let opened = async {
                        let stream = src.stream().await?;
                        src.consume(
                            &stream,
                            DeliverPolicy::ByStartSequence {
                                start_sequence: from,
                            },
                        )
                        .await
                    }
                    .await;
                    match opened {
                        Err(e) => return Some((Err(e), St::Done)),
                        Ok((_, 0)) => return None,
                        Ok((m, _)) => Box::new(m),
                    }
                }
            };
            match messages.next().await {
                None => Some((Err(super::unavailable("the consumer ended")), St::Done)),
                Some(Err(e)) => Some((Err(super::unavailable(e)), St::Done)),
                Some(Ok(m)) => match msg_of(&m) {
                    Err(e) => Some((Err(e), St::Done)),
                    // The ring has it and everything after.
                    Ok((msg, _)) if msg.seq >= end => None,
                    Ok((msg, after)) => {
                        let id = event_id::encode(&NatsSeq(msg.seq + 1));
                        let frame = src.encoder.encode(&msg, &id);
                        let ev = Event {
                            attrs: src.encoder.attrs(&msg, &frame),
                            frame,
                            step: NatsSeq::record(msg.seq),
                            timestamp_ms: Some(msg.time_ms),
                        };
                        let next = if after == 0 || msg.seq + 1 >= end {
                            St::Done
                        } else {
                            St::Reading(messages)
                        };
                        Some((Ok(Arc::new(ev)), next))
                    }
                },
            }
        }
    })
}
