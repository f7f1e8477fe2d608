//! One client's SSE stream: preamble (`retry:`, `event: reset`), catch-up from the
//! source, then the route's ring; heartbeats while idle; ends on shutdown, on falling too
//! far behind, or when the client goes away (dropping the stream frees everything).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{FutureExt, Stream, StreamExt};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use super::limits::Held;
use super::RouteEntry;
use crate::bus::budget::HeldBuf;
use crate::bus::{ClientFilter, ClientGuard, Cursor, Event, Hub, Read, Verdict};
use crate::metrics::{DisconnectReason, RouteMetrics};
use crate::source::{CatchupStream, Plan, Source, SourceError};
use crate::sse;

/// Most ring events written in one chunk.
const BATCH: usize = 256;
/// Bytes after which a chunk is written (ring batches and catch-up events alike).
const CHUNK: usize = 64 * 1024;
/// A client that falls out of the ring this many times before it ever caught up is
/// disconnected (it resumes from its id on reconnect).
const MAX_RESYNCS: u32 = 3;

/// Why a stream has an end time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndKind {
    /// The client's token expires: `event: expired`, then the end.
    TokenExpiry,
    /// `server.max_connection_age`: a heartbeat with the position, then the end.
    MaxAge,
    /// The instance is draining: a heartbeat with the position, then the end.
    Drain,
}

/// What a stream carries besides its plan: who it is for.
#[derive(Debug, Default)]
pub struct StreamExtras {
    /// The client's filter (claims and narrowing parameters).
    pub filter: Option<ClientFilter>,
    /// When the stream ends, and why.
    pub ends: Option<(Instant, EndKind)>,
    /// Connection limits held while the stream lives.
    pub held: Held,
    /// Fires when the instance starts draining, and the window its streams close in.
    pub draining: Option<(CancellationToken, Duration)>,
}

/// Settings of a stream that come from the server and route config.
#[derive(Debug, Clone, Copy)]
pub struct StreamSettings {
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// `retry:` hint.
    pub retry: Duration,
    /// Events behind the head after which a caught-up client is disconnected.
    pub max_lag: usize,
}

/// State of one client stream.
pub struct ClientStream {
    source: Arc<dyn Source>,
    hub: Arc<Hub>,
    cursor: Cursor,
    next_seq: u64,
    catchup: Option<CatchupStream>,
    /// What the catch-up stream said after the events of the last chunk (its end or a
    /// failure), handled before reading it again.
    stashed: Option<Option<Result<Arc<Event>, SourceError>>>,
    preamble: Vec<Bytes>,
    rx: watch::Receiver<u64>,
    heartbeat: Pin<Box<Sleep>>,
    heartbeat_every: Duration,
    last_write: Instant,
    cancel: CancellationToken,
    caught_up: bool,
    resyncs: u32,
    max_lag: u64,
    buf: Vec<Arc<Event>>,
    metrics: RouteMetrics,
    reason: Option<DisconnectReason>,
    guard: ClientGuard,
    filter: Option<ClientFilter>,
    ends: Option<(Instant, EndKind)>,
    /// Fires at the end time (one timer per stream, only when it has an end).
    end_timer: Option<Pin<Box<Sleep>>>,
    draining: Option<(CancellationToken, Duration)>,
    /// Raised by the writer of a multiplexed connection when its socket passed the write
    /// deadline (this stream only learns it is dropped).
    write_timeout: Option<Arc<std::sync::atomic::AtomicBool>>,
    _held: Held,
}

impl ClientStream {
    /// A stream for `plan` on `route`; counts itself in the connection metrics.
    pub fn new(
        route: &RouteEntry,
        plan: Plan,
        settings: StreamSettings,
        kill: CancellationToken,
        extras: StreamExtras,
    ) -> ClientStream {
        let (source, hub, cancel) = (
            route.source.clone(),
            route.hub.clone(),
            route.streams.clone(),
        );
        let guard = hub.register(plan.next_seq, settings.max_lag as u64, kill);
        let metrics = hub.metrics().clone();
        metrics.connections_active.inc();
        metrics.connections_opened.inc();
        if let Some(o) = plan.outcome {
            metrics.resumed(o);
        }
        let mut preamble = vec![sse::retry(settings.retry.as_millis())];
        preamble.extend(plan.preamble);
        ClientStream {
            rx: hub.subscribe(),
            hub,
            source,
            caught_up: plan.catchup.is_none() && plan.cursor.synced(),
            cursor: plan.cursor,
            next_seq: plan.next_seq,
            catchup: plan.catchup,
            stashed: None,
            preamble,
            heartbeat: Box::pin(tokio::time::sleep(settings.heartbeat)),
            heartbeat_every: settings.heartbeat,
            last_write: Instant::now(),
            cancel,
            resyncs: 0,
            max_lag: settings.max_lag as u64,
            buf: Vec::new(),
            metrics,
            reason: None,
            guard,
            filter: extras.filter.filter(|f| !f.is_empty()),
            ends: extras.ends,
            end_timer: extras
                .ends
                .map(|(at, _)| Box::pin(tokio::time::sleep_until(at))),
            draining: extras.draining,
            write_timeout: None,
            _held: extras.held,
        }
    }

    /// The stream as an HTTP body stream.
    pub fn into_body(
        self,
    ) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + Sync + 'static {
        let s = futures::stream::unfold(self, |mut c| async move {
            let chunk = c.next_chunk().await?;
            c.wrote(chunk.len());
            Some((Ok(chunk), c))
        });
        sync_wrapper::SyncStream::new(Box::pin(s))
    }

    /// Account for `len` bytes handed to the socket: metrics, and the next heartbeat is a
    /// full interval away.
    pub fn wrote(&mut self, len: usize) {
        self.metrics.bytes_sent.inc_by(len as u64);
        self.last_write = Instant::now();
        self.heartbeat
            .as_mut()
            .reset(self.last_write + self.heartbeat_every);
    }

    /// When the stream is live at the route's head with shared frames, nothing queued:
    /// its sequence and position, to hand its socket to a fan-out writer. The reaper
    /// stops watching it meanwhile (a writer never lets it fall behind).
    pub fn park(&self) -> Option<(u64, Cursor, Instant)> {
        if self.reason.is_some()
            || self.filter.is_some()
            || !self.preamble.is_empty()
            || self.catchup.is_some()
            || !self.caught_up
            || !self.cursor.synced()
            || self.cancel.is_cancelled()
            || self.ends.is_some_and(|(at, _)| Instant::now() >= at)
            || self
                .draining
                .as_ref()
                .is_some_and(|(d, _)| d.is_cancelled())
        {
            return None;
        }
        self.guard.progress(self.next_seq, false);
        Some((self.next_seq, self.cursor.clone(), self.last_write))
    }

    /// Back from a fan-out writer at `seq` with `cursor`, last written at `last_write`.
    pub fn unpark(&mut self, seq: u64, cursor: Cursor, last_write: Instant) {
        self.next_seq = seq;
        self.cursor = cursor;
        self.last_write = last_write;
        self.heartbeat
            .as_mut()
            .reset(last_write + self.heartbeat_every);
        self.guard.progress(seq, self.caught_up);
    }

    /// When the stream is due to end (token expiry, maximum age, drain).
    pub fn ends_at(&self) -> Option<Instant> {
        self.ends.map(|(at, _)| at)
    }

    /// The token that fires when the instance starts draining.
    pub fn draining(&self) -> Option<CancellationToken> {
        self.draining.as_ref().map(|(d, _)| d.clone())
    }

    /// Once the instance drains, end at a random moment of the drain window (unless
    /// the stream ends sooner anyway).
    fn schedule_drain(&mut self) {
        let Some((d, window)) = &self.draining else {
            return;
        };
        if !d.is_cancelled() || self.ends.is_some_and(|(_, k)| k == EndKind::Drain) {
            return;
        }
        let at = Instant::now() + window.mul_f64(fastrand::f64());
        if self.ends.is_none_or(|(e, _)| at < e) {
            self.ends = Some((at, EndKind::Drain));
            match &mut self.end_timer {
                Some(t) => t.as_mut().reset(at),
                None => self.end_timer = Some(Box::pin(tokio::time::sleep_until(at))),
            }
        }
    }

    /// Does the client's filter let `ev` through?
    fn passes(&self, ev: &Event) -> bool {
        self.filter.as_ref().is_none_or(|f| f.matches(ev))
    }

    /// The stream's last chunk when its end time has come: `event: expired` or a final
    /// heartbeat, both carrying the client's position.
    fn end_now(&mut self, kind: EndKind) -> Option<Bytes> {
        let id = self.cursor.encode();
        let (reason, chunk) = match kind {
            EndKind::TokenExpiry => (
                DisconnectReason::TokenExpired,
                sse::frame(
                    &id,
                    Some("expired"),
                    Some(r#"{"reason":"token_expired","message":"reconnect with a fresh token"}"#),
                )
                .bytes,
            ),
            EndKind::MaxAge => (DisconnectReason::MaxAge, sse::heartbeat(&id)),
            EndKind::Drain => (DisconnectReason::Shutdown, sse::heartbeat(&id)),
        };
        self.finish(reason);
        Some(chunk)
    }

    /// The client's socket took no bytes for the write deadline: the stream ends so.
    pub fn write_timed_out(&mut self) {
        self.finish(DisconnectReason::WriteTimeout);
    }

    /// Count this stream's end as a write timeout when `flag` is raised by the time it
    /// is dropped (a multiplexed connection's writer raises it).
    pub fn share_write_timeout(&mut self, flag: Arc<std::sync::atomic::AtomicBool>) {
        self.write_timeout = Some(flag);
    }

    /// The token that ends the stream at shutdown.
    pub fn cancel_token(&self) -> &CancellationToken {
        &self.cancel
    }

    fn finish(&mut self, reason: DisconnectReason) -> Option<Bytes> {
        self.reason = Some(reason);
        self.catchup = None;
        None
    }

    fn observe(&self, ev: &Event) {
        if let Some(ts) = ev.timestamp_ms {
            let now = chrono::Utc::now().timestamp_millis();
            self.metrics
                .latency
                .observe((now - ts).max(0) as f64 / 1000.0);
        }
    }

    /// The next bytes to write, or `None` when the stream ends.
    pub async fn next_chunk(&mut self) -> Option<Bytes> {
        if self.reason.is_some() {
            return None;
        }
        if !self.preamble.is_empty() {
            let parts: Vec<Bytes> = self.preamble.drain(..).collect();
            if let [one] = &parts[..] {
                return Some(one.clone());
            }
            return Some(parts.concat().into());
        }
        let drain = self.draining();
        loop {
            self.schedule_drain();
            if let Some((at, kind)) = self.ends {
                if Instant::now() >= at {
                    return self.end_now(kind);
                }
            }
            if let Some(cu) = self.catchup.as_mut() {
                let item = if let Some(item) = self.stashed.take() {
                    item
                } else {
                    tokio::select! {
                    biased;
                    _ = self.cancel.cancelled() => return self.finish(DisconnectReason::Shutdown),
                    _ = fires(&mut self.end_timer) => continue,
                    _ = cancelled_opt(drain.as_ref()) => continue,
                    // A filtered client may read much history before anything passes:
                    // heartbeats carry its position meanwhile.
                    _ = self.heartbeat.as_mut() => {
                        return Some(sse::heartbeat(&self.cursor.encode()));
                    }
                    item = cu.next() => item,
                    }
                };
                match item {
                    None => {
                        // Caught up with the source: join the ring where this client is.
                        self.catchup = None;
                        let plan = self.source.resync(self.cursor.clone());
                        self.cursor = plan.cursor;
                        self.next_seq = plan.next_seq;
                        if plan.catchup.is_some() {
                            if self.resyncs >= MAX_RESYNCS {
                                return self.finish(DisconnectReason::SlowClient);
                            }
                            self.resyncs += 1;
                            self.catchup = plan.catchup;
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "catch-up read failed; closing stream");
                        return self.finish(DisconnectReason::SourceError);
                    }
                    Some(Ok(ev)) => {
                        if let Some(first) = self.take_caught_up(&ev) {
                            self.observe(&ev);
                            return Some(self.batch_catchup(first));
                        }
                    }
                }
                continue;
            }
            self.rx.borrow_and_update();
            self.buf.clear();
            match self.hub.read(self.next_seq, BATCH, &mut self.buf) {
                Read::Lagged { .. } => {
                    if self.caught_up || self.resyncs >= MAX_RESYNCS {
                        return self.finish(DisconnectReason::SlowClient);
                    }
                    self.resyncs += 1;
                    self.cursor.unsync();
                    let plan = self.source.resync(self.cursor.clone());
                    self.cursor = plan.cursor;
                    self.next_seq = plan.next_seq;
                    self.catchup = plan.catchup;
                }
                Read::Events { next, head } => {
                    self.next_seq = next;
                    let chunk = self.encode_batch();
                    self.guard.progress(self.next_seq, self.caught_up);
                    if let Some(chunk) = chunk {
                        if self.caught_up && head - self.next_seq > self.max_lag {
                            return self.finish(DisconnectReason::SlowClient);
                        }
                        return Some(chunk);
                    }
                }
                Read::Empty { head_id } => {
                    if self.hub.try_sync(&mut self.cursor) {
                        self.caught_up = true;
                    }
                    self.guard.progress(self.next_seq, self.caught_up);
                    tokio::select! {
                        biased;
                        _ = self.cancel.cancelled() => return self.finish(DisconnectReason::Shutdown),
                        _ = fires(&mut self.end_timer) => {}
                        _ = cancelled_opt(drain.as_ref()) => {}
                        _ = self.rx.changed() => {}
                        _ = self.heartbeat.as_mut() => {
                            let id = if self.cursor.synced() {
                                String::from_utf8_lossy(&head_id).into_owned()
                            } else {
                                self.cursor.encode()
                            };
                            if id.is_empty() {
                                // No position known yet: keep the connection warm only.
                                return Some(sse::comment("heartbeat"));
                            }
                            return Some(sse::heartbeat(&id));
                        }
                    }
                }
            }
        }
    }

    fn cursor_id_line(&self) -> Bytes {
        sse::id_line(&self.cursor.encode())
    }

    /// The id line and body of a catch-up event the client lacks (with its own id);
    /// `None` when the client skips it.
    fn take_caught_up(&mut self, ev: &Event) -> Option<[Bytes; 2]> {
        match self.cursor.accept(ev) {
            Verdict::Skip => None,
            _ if !self.passes(ev) => None,
            Verdict::Shared | Verdict::Custom(_) => {
                self.metrics.events_sent.inc();
                Some([self.cursor_id_line(), ev.frame.body()])
            }
        }
    }

    /// `first` and the catch-up events already at hand after it, in one chunk (one write
    /// for many), up to [`BATCH`] events or [`CHUNK`] bytes and as far as the route's
    /// memory budget allows; an end or a failure met on the way is kept for the next
    /// call, and so is an event the budget could not take.
    fn batch_catchup(&mut self, first: [Bytes; 2]) -> Bytes {
        let Some(mut cu) = self.catchup.take() else {
            return first.concat().into();
        };
        let mut out = HeldBuf::new(self.hub.budget().clone());
        let mut single = Some(first);
        for _ in 1..BATCH {
            if out.len() >= CHUNK {
                break;
            }
            match cu.next().now_or_never() {
                None => break,
                Some(Some(Ok(ev))) => {
                    let Some(part) = self.take_caught_up(&ev) else {
                        continue;
                    };
                    let appended = match single.take() {
                        Some(f) if !out.append(&[&f[0], &f[1]]) => {
                            single = Some(f);
                            false
                        }
                        _ => out.append(&[&part[0], &part[1]]),
                    };
                    if !appended {
                        self.metrics.budget_limited.inc();
                        self.preamble.push(part.concat().into());
                        break;
                    }
                }
                Some(other) => {
                    self.stashed = Some(other);
                    break;
                }
            }
        }
        self.catchup = Some(cu);
        match single {
            Some(f) => f.concat().into(),
            None => out.freeze(),
        }
    }

    /// Frames of the events in `buf` this client has not had, in one chunk, as far as
    /// the route's memory budget allows (one event's frame, which the ring holds, needs
    /// none).
    fn encode_batch(&mut self) -> Option<Bytes> {
        let mut single: Option<Bytes> = None;
        let mut out: Option<HeldBuf> = None;
        let mut sent = 0u64;
        let mut size = 0usize;
        let len = self.buf.len();
        for (i, ev) in self.buf.iter().enumerate() {
            if size >= CHUNK {
                // A chunk's worth: the rest is read again for the next one, so a client
                // holds at most about one chunk (or one event) however large they are.
                self.next_seq -= (len - i) as u64;
                break;
            }
            let part: Bytes = match self.cursor.accept(ev) {
                Verdict::Skip => continue,
                _ if !self.passes(ev) => continue,
                Verdict::Shared => ev.frame.bytes.clone(),
                Verdict::Custom(id) => [id, ev.frame.body()].concat().into(),
            };
            if sent == 0 {
                self.observe(ev);
            }
            sent += 1;
            size += part.len();
            let appended = match (&mut out, single.take()) {
                (Some(o), _) => o.append(&[&part]),
                (None, None) => {
                    single = Some(part.clone());
                    true
                }
                (None, Some(first)) => {
                    let mut o = HeldBuf::new(self.hub.budget().clone());
                    if o.append(&[&first, &part]) {
                        out = Some(o);
                        true
                    } else {
                        single = Some(first);
                        false
                    }
                }
            };
            if !appended {
                // Over budget: this event goes alone next, the rest is read again.
                self.metrics.budget_limited.inc();
                self.preamble.push(part);
                self.next_seq -= (len - i - 1) as u64;
                break;
            }
        }
        if !self.cursor.synced() {
            self.hub.try_sync(&mut self.cursor);
        }
        self.metrics.events_sent.inc_by(sent);
        // Idle clients hold no batch memory.
        self.buf.clear();
        if self.buf.capacity() > 16 {
            self.buf = Vec::new();
        }
        out.map(HeldBuf::freeze).or(single)
    }
}

/// Resolves when `timer` fires; never without one.
async fn fires(timer: &mut Option<Pin<Box<Sleep>>>) {
    match timer {
        Some(t) => t.as_mut().await,
        None => std::future::pending().await,
    }
}

/// Sleep until `at`, or forever.
pub async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Resolves when `token` is cancelled; never without one. A cancelled token resolves
/// only while nothing else has handled it: callers check state first.
pub async fn cancelled_opt(token: Option<&CancellationToken>) {
    match token {
        Some(t) if !t.is_cancelled() => t.cancelled().await,
        _ => std::future::pending().await,
    }
}

impl Drop for ClientStream {
    fn drop(&mut self) {
        self.metrics.connections_active.dec();
        let timed_out = self
            .write_timeout
            .as_ref()
            .is_some_and(|f| f.load(std::sync::atomic::Ordering::Relaxed));
        let reason = if self.guard.cut_off() {
            DisconnectReason::SlowClient
        } else if timed_out && self.reason.is_none() {
            DisconnectReason::WriteTimeout
        } else {
            self.reason.unwrap_or(DisconnectReason::ClientClosed)
        };
        self.metrics.disconnected(reason);
    }
}
