//! The shared change stream of a route: opens after the route's last token (or from now),
//! publishes every change to the hub, advances the hub's position on idle batches (the
//! post-batch resume token, so heartbeats carry a recent point), reopens after
//! `invalidate`, and reconnects with backoff; a token the server can no longer resume
//! becomes an explicit `event: reset` and the stream restarts from the present.

use std::sync::Arc;
use std::time::Duration;

use mongodb::bson::{Bson, Document};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{head_token, redact_uri, unresumable, MongoSource, MongoToken, Start};
use crate::bus::Event;
use crate::event_id;
use crate::position::{Position, Step};
use crate::sse;

const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A warm start reads the changes of this much recent time into the ring.
pub(super) const WARM_WINDOW: Duration = Duration::from_secs(300);

/// The hub event of change `doc` (`None` if it has no resume token).
pub(super) fn event_of(src: &MongoSource, doc: &Document) -> Option<Event> {
    let token = MongoToken::from_document(doc.get_document("_id").ok()?)?;
    let id = event_id::encode(&token);
    let ts = match doc.get("wallTime") {
        Some(Bson::DateTime(d)) => Some(d.timestamp_millis()),
        _ => doc
            .get_timestamp("clusterTime")
            .ok()
            .map(|t| i64::from(t.time) * 1000),
    };
    let frame = src.encoder.encode(doc, &id);
    Some(Event {
        attrs: src.encoder.attrs(doc, &frame),
        frame,
        step: token.step(),
        timestamp_ms: ts,
    })
}

fn token_of(t: &mongodb::change_stream::event::ResumeToken) -> Option<MongoToken> {
    MongoToken::from_resume_token(t)
}

pub(super) async fn run(src: Arc<MongoSource>, cancel: CancellationToken) {
    let mut backoff = Duration::from_millis(250);
    let mut start_after_invalidate = false;
    // The token of the last change published: after a failure the stream reopens from
    // here rather than from the (later) idle position. Only no-ops lie between the two,
    // so nothing repeats; and if the server lost writes in a crash, resuming from a real
    // change fails loudly (a reset) instead of silently skipping what it writes next.
    let mut last_change: Option<MongoToken> = None;
    // Until the first open succeeds from nothing known: fill the ring with the last
    // WARM_WINDOW of changes, so clients reconnecting after a restart resume from memory.
    let mut warming = src.warm;
    loop {
        let from = last_change.clone().unwrap_or_else(|| head_token(&src.hub));
        let token = from.is_known().then(|| from.to_resume_token()).flatten();
        warming &= token.is_none();
        let start = match token {
            Some(t) if start_after_invalidate => Start::AfterEvenInvalidate(t),
            Some(t) => Start::After(t),
            None if warming => Start::At(warm_from()),
            None => Start::Now,
        };
        tracing::debug!(route = %src.route, start = ?start, "opening change stream");
        let opened = tokio::select! {
            _ = cancel.cancelled() => return,
            r = src.open(start) => r,
        };
        let mut stream = match opened {
            Ok(s) => s.with_type::<Document>(),
            // History that short is not kept (or the server cannot start there): start
            // from the present, with nothing to tell clients.
            Err(e) if warming => {
                info!(route = %src.route, error = %redact_uri(&e.to_string()), "warm start not possible; starting from now");
                warming = false;
                continue;
            }
            Err(e) if unresumable(&e).is_some() => {
                let reason = unresumable(&e).unwrap_or("history_lost");
                warn!(route = %src.route, reason, error = %redact_uri(&e.to_string()), "cannot resume the change stream; restarting from now");
                match src.open(Start::Now).await {
                    Ok(s) => {
                        let s = s.with_type::<Document>();
                        let token = s
                            .resume_token()
                            .as_ref()
                            .and_then(token_of)
                            .unwrap_or_default();
                        let data =
                            json!({ "reason": reason, "route": src.route, "resumed_from": "now" });
                        src.hub.publish([Event {
                            frame: sse::frame(
                                &event_id::encode(&token),
                                Some("reset"),
                                Some(&data.to_string()),
                            ),
                            step: Step::TokenRestart(token.0.clone()),
                            timestamp_ms: None,
                            attrs: None,
                        }]);
                        s
                    }
                    Err(e) => {
                        fail(&src, &e.to_string(), &cancel, &mut backoff).await;
                        continue;
                    }
                }
            }
            Err(e) => {
                fail(&src, &e.to_string(), &cancel, &mut backoff).await;
                continue;
            }
        };
        start_after_invalidate = false;
        backoff = Duration::from_millis(250);
        info!(route = %src.route, "mongodb change stream open");
        // Warming, the route is live once the stream has caught up with the present.
        src.hub.set_state(|s| {
            s.connected = true;
            s.live |= !warming;
            s.last_error = None;
        });
        if let Some(token) = stream.resume_token().as_ref().and_then(token_of) {
            src.hub.set_head(|h| {
                if !h.is_known() {
                    *h = Box::new(token);
                }
            });
        }
        loop {
            let r = tokio::select! {
                _ = cancel.cancelled() => return,
                r = stream.next_if_any() => r,
            };
            match r {
                Ok(Some(doc)) => {
                    tracing::debug!(route = %src.route, op = ?doc.get_str("operationType"), "change");
                    src.metrics.source_records.inc();
                    let invalidate = doc.get_str("operationType") == Ok("invalidate");
                    if let Some(ev) = event_of(&src, &doc) {
                        if let Step::Token(t) = &ev.step {
                            last_change = Some(MongoToken(t.clone()));
                        }
                        src.hub.publish([ev]);
                    }
                    if invalidate {
                        info!(route = %src.route, "change stream invalidated; reopening after it");
                        start_after_invalidate = true;
                        break;
                    }
                }
                Ok(None) => {
                    if warming {
                        warming = false;
                        info!(route = %src.route, "mongodb source live (ring warm)");
                        src.hub.set_state(|s| s.live = true);
                    }
                    if !stream.is_alive() {
                        // The server closed the cursor (seen after a server restart):
                        // reopen from the last position.
                        tracing::debug!(route = %src.route, "change stream cursor closed; reopening");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        break;
                    }
                    if let Some(token) = stream.resume_token().as_ref().and_then(token_of) {
                        if head_token(&src.hub) != token {
                            tracing::trace!(route = %src.route, "idle position");
                            src.hub.set_head(|p| *p = Box::new(token));
                        }
                    }
                }
                Err(e) => {
                    fail(&src, &e.to_string(), &cancel, &mut backoff).await;
                    break;
                }
            }
        }
    }
}

/// The operation time a warm start reads from.
fn warm_from() -> mongodb::bson::Timestamp {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    mongodb::bson::Timestamp {
        time: u32::try_from(now.saturating_sub(WARM_WINDOW).as_secs()).unwrap_or(u32::MAX),
        increment: 0,
    }
}

async fn fail(src: &MongoSource, err: &str, cancel: &CancellationToken, backoff: &mut Duration) {
    let err = redact_uri(err);
    src.reset_client();
    src.metrics.source_errors.inc();
    warn!(route = %src.route, error = %err, retry_in = ?backoff, "mongodb change stream failed");
    src.hub.set_state(|s| {
        s.connected = false;
        s.last_error = Some(err.clone());
    });
    tokio::select! {
        _ = cancel.cancelled() => {}
        _ = tokio::time::sleep(*backoff) => {}
    }
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
}
