//! Catch-up as a shared, bounded resource, for every adapter.
//!
//! A client whose position the route's ring no longer covers reads the source first.
//! Such reads are *shared*: an adapter opens a raw read of its backend (a
//! [`CatchupStream`]) and hands it to the route's [`CatchupPool`], which runs it as one
//! reader feeding a bounded ring of its own. Every client whose position that ring still
//! serves joins it, as clients at the head share the live ring: a reconnect storm of a
//! thousand clients behind the buffer costs one backend read, not a thousand.
//!
//! Readers are bounded: at most `server.catchup.max_readers` in the process and
//! `max_readers_per_route` per route run at once, each buffering at most
//! `buffer_events` / `buffer_bytes`. A client that finds no reader to join and no free
//! one waits up to `server.catchup.wait`, then is refused (503 `catchup_busy` with
//! `Retry-After`). A reader goes at the pace of its slowest client that still reads; a
//! client that reads nothing for `server.catchup.stall` stops holding it back and, if
//! the ring drops what it needs, re-plans from its own position (its stream continues
//! where it was). A client that joins behind the clients the reader paces itself by
//! holds it back only once it has caught up with where they were, so joiners that never
//! read cannot keep a reader waiting one after another. A reader no client reads any
//! more stops at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use parking_lot::{Mutex, RwLock};
use serde::Deserialize;
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{CatchupStream, SourceError};
use crate::bus::budget::{Budget, Reservation};
use crate::bus::{Event, Read, Ring};
use crate::event_id;
use crate::metrics::RouteMetrics;
use crate::position::Position;

/// Events a client takes from its reader's ring at once.
const TAKE: usize = 64;
/// How often a reader held back by a slow client looks again.
const RECHECK: Duration = Duration::from_millis(100);
/// A reader whose read is complete stays joinable this long (its buffer holds the whole
/// range): clients arriving just after it finished share it instead of reading again.
const LINGER: Duration = Duration::from_secs(2);

/// The least a reader's backend client prefetches, whatever `buffer_bytes`: one fetch
/// response (librdkafka's `fetch.max.bytes` may not go below its 1,000,000-byte
/// `message.max.bytes`, and a smaller fetch stalls on larger record batches).
pub const MIN_PREFETCH: usize = 1_000_000;

/// `[server.catchup]`: bounds of shared catch-up reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatchupConfig {
    /// Most catch-up readers running at once in the process.
    pub max_readers: usize,
    /// Most catch-up readers running at once for one route.
    pub max_readers_per_route: usize,
    /// Most events a reader buffers for its clients.
    pub buffer_events: usize,
    /// Most bytes a reader buffers for its clients (the backend client's own prefetch
    /// is bounded to the same amount).
    pub buffer_bytes: usize,
    /// How long a client waits for a free reader before a 503 `catchup_busy`.
    #[serde(with = "humantime_serde")]
    pub wait: Duration,
    /// A client that reads nothing for this long no longer holds its reader back.
    #[serde(with = "humantime_serde")]
    pub stall: Duration,
}

impl Default for CatchupConfig {
    fn default() -> Self {
        CatchupConfig {
            max_readers: 16,
            max_readers_per_route: 4,
            buffer_events: 100_000,
            buffer_bytes: 8 * 1024 * 1024,
            wait: Duration::from_secs(5),
            stall: Duration::from_secs(5),
        }
    }
}

impl CatchupConfig {
    /// Most memory catch-up may hold in the process: every reader's buffer and its
    /// backend client's prefetch.
    pub fn budget_bytes(&self) -> usize {
        self.reader_bytes().saturating_mul(self.max_readers)
    }

    /// What one reader may hold: its buffer and its backend client's prefetch (as much
    /// again, but at least [`MIN_PREFETCH`]: one fetch response).
    pub fn reader_bytes(&self) -> usize {
        self.buffer_bytes
            .saturating_add(self.buffer_bytes.max(MIN_PREFETCH))
    }
}

/// The process-wide bound on catch-up readers.
#[derive(Debug)]
pub struct CatchupLimits {
    cfg: CatchupConfig,
    readers: Arc<Semaphore>,
    memory: Arc<Budget>,
}

impl CatchupLimits {
    /// Limits as configured, under the process-wide memory budget `memory`.
    pub fn new(cfg: CatchupConfig, memory: Arc<Budget>) -> Arc<CatchupLimits> {
        Arc::new(CatchupLimits {
            readers: Arc::new(Semaphore::new(cfg.max_readers.max(1))),
            cfg,
            memory,
        })
    }

    /// The process-wide memory budget (every route's budget is under it).
    pub fn memory(&self) -> &Arc<Budget> {
        &self.memory
    }
}

/// What an adapter hands the pool to start a reader.
pub struct CatchupRead {
    /// The position the read starts from.
    pub base: Box<dyn Position>,
    /// Where the read ends, when known: a client at or after it gains nothing from the
    /// reader (a read that ends on its own, MongoDB's, says `None`).
    pub end: Option<Box<dyn Position>>,
    /// The backend read.
    pub raw: CatchupStream,
}

/// The right to run one catch-up reader (a route's and the process's share, and its
/// memory held against the budgets).
pub struct Permit {
    _route: OwnedSemaphorePermit,
    _process: OwnedSemaphorePermit,
    _memory: Reservation,
}

/// The catch-up readers of one route.
#[derive(Clone)]
pub struct CatchupPool(Arc<Pool>);

/// Source queries planning clients run at once, per route.
const QUERIES_AT_ONCE: usize = 4;

struct Pool {
    limits: Arc<CatchupLimits>,
    route: Arc<Semaphore>,
    /// Source queries (bounds, time lookups) that planning clients run at once.
    queries: Arc<Semaphore>,
    budget: Arc<Budget>,
    readers: Mutex<Vec<Arc<Shared>>>,
    metrics: RouteMetrics,
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl CatchupPool {
    /// The pool of a route whose memory budget is `budget`; its readers run on
    /// `tracker` until `cancel` fires.
    pub fn new(
        limits: Arc<CatchupLimits>,
        budget: Arc<Budget>,
        metrics: RouteMetrics,
        tracker: TaskTracker,
        cancel: CancellationToken,
    ) -> CatchupPool {
        CatchupPool(Arc::new(Pool {
            route: Arc::new(Semaphore::new(limits.cfg.max_readers_per_route.max(1))),
            queries: Arc::new(Semaphore::new(QUERIES_AT_ONCE)),
            limits,
            budget,
            readers: Mutex::new(Vec::new()),
            metrics,
            tracker,
            cancel,
        }))
    }

    /// The bounds readers run under.
    pub fn config(&self) -> &CatchupConfig {
        &self.0.limits.cfg
    }

    /// A turn to query the source for a client's plan (bounds, a time lookup): a crowd
    /// of clients waits here, as long as for a catch-up reader, then is refused like a
    /// busy catch-up. The source runs its query while it holds the permit.
    pub async fn query_turn(&self) -> Result<OwnedSemaphorePermit, SourceError> {
        match tokio::time::timeout(self.config().wait, self.0.queries.clone().acquire_owned()).await
        {
            Ok(Ok(p)) => Ok(p),
            _ => Err(self.refuse()),
        }
    }

    /// Join a running reader whose buffer still serves `position`.
    pub fn existing(&self, position: &dyn Position) -> Option<CatchupStream> {
        if !position.is_known() {
            return None;
        }
        let id = event_id::encode(position);
        let readers = self.0.readers.lock().clone();
        readers.iter().find_map(|r| {
            if r.state
                .lock()
                .end_at
                .as_ref()
                .is_some_and(|e| position.at_or_after(&**e))
            {
                return None;
            }
            let seq = {
                let ring = r.ring.read();
                ring.find_id(id.as_bytes())
                    .or_else(|| position.at_or_after(ring.base()).then(|| ring.first_seq()))
            }?;
            r.subscribe(seq, &self.0.metrics)
        })
    }

    /// Wait (up to `server.catchup.wait`) for the right to start a reader: a free slot
    /// and room in the memory budgets for its buffer and its backend's prefetch.
    pub async fn permit(&self) -> Result<Permit, SourceError> {
        let pool = &self.0;
        let got = tokio::time::timeout(pool.limits.cfg.wait, async {
            let route = pool.route.clone().acquire_owned().await.ok()?;
            let process = pool.limits.readers.clone().acquire_owned().await.ok()?;
            let need = pool.limits.cfg.reader_bytes();
            let memory = loop {
                // Budgets free as clients write their buffers or readers end.
                match pool.budget.try_reserve(need) {
                    Some(r) => break r,
                    None => tokio::time::sleep(RECHECK).await,
                }
            };
            Some(Permit {
                _route: route,
                _process: process,
                _memory: memory,
            })
        })
        .await;
        match got {
            Ok(Some(p)) => Ok(p),
            _ => Err(self.refuse()),
        }
    }

    /// Count a client refused for want of a reader (or of anything else catch-up bounds
    /// make it wait for), and the answer it gets.
    pub fn refuse(&self) -> SourceError {
        self.0.metrics.catchup_refused.inc();
        let wait = self.0.limits.cfg.wait.as_secs().max(1);
        SourceError::Busy {
            // Spread the retries of a refused crowd over twice the wait.
            retry_after_s: wait + fastrand::u64(0..=wait),
        }
    }

    /// Start a reader on `read` and join it.
    pub fn start(&self, permit: Permit, read: CatchupRead) -> CatchupStream {
        let cfg = &self.0.limits.cfg;
        let CatchupRead { base, end, raw } = read;
        let (head, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            ring: RwLock::new(Ring::new(base, cfg.buffer_events, cfg.buffer_bytes)),
            head,
            state: Mutex::new(State {
                end_at: end,
                ..State::default()
            }),
            progressed: Notify::new(),
            gone: Notify::new(),
            stall: cfg.stall,
        });
        let first = shared
            .subscribe(0, &self.0.metrics)
            .expect("a new reader takes clients");
        self.0.readers.lock().push(shared.clone());
        self.0.metrics.catchup_readers.inc();
        self.0.metrics.catchup_started.inc();
        let pool = self.0.clone();
        self.0
            .tracker
            .spawn(run(shared, raw, pool, self.0.cancel.clone(), permit));
        first
    }

    /// Join a reader serving `position`, or start one with `open` once a permit is free.
    pub async fn join(
        &self,
        position: &dyn Position,
        open: impl FnOnce() -> CatchupRead,
    ) -> Result<CatchupStream, SourceError> {
        if let Some(s) = self.existing(position) {
            return Ok(s);
        }
        let permit = self.permit().await?;
        // Another client may have started one meanwhile.
        if let Some(s) = self.existing(position) {
            return Ok(s);
        }
        Ok(self.start(permit, open()))
    }

    /// [`CatchupPool::join`] on first use, for plans made where nothing can wait (a
    /// client re-planned mid-stream); refused, the stream ends with the error.
    pub fn lazy(
        &self,
        position: Box<dyn Position>,
        open: impl FnOnce() -> CatchupRead + Send + 'static,
    ) -> CatchupStream {
        let pool = self.clone();
        Box::pin(
            futures::stream::once(async move { pool.join(&*position, open).await }).flat_map(
                |joined| match joined {
                    Ok(s) => s,
                    Err(e) => Box::pin(futures::stream::iter([Err(e)])) as CatchupStream,
                },
            ),
        )
    }
}

/// One running reader.
struct Shared {
    ring: RwLock<Ring>,
    /// The ring's head sequence; also changes when the reader ends.
    head: watch::Sender<u64>,
    state: Mutex<State>,
    /// A client took events (the reader may be waiting for room).
    progressed: Notify,
    /// The last client left.
    gone: Notify,
    /// `server.catchup.stall`.
    stall: Duration,
}

/// Where one client of a reader is.
#[derive(Clone, Copy)]
struct Reading {
    /// The next sequence it reads.
    next_seq: u64,
    /// When it last took events.
    took: Instant,
    /// Waiting for the reader (it has taken everything there is).
    waiting: bool,
    /// A client that joined behind the clients the reader paces itself by holds it
    /// back only once it has reached where they were (so a stream of joiners that
    /// never read cannot keep a reader waiting, each for `stall`).
    catch_to: Option<u64>,
}

#[derive(Default)]
struct State {
    /// Client → where it reads (see [`Reading`]).
    clients: HashMap<u64, Reading>,
    next_client: u64,
    /// Set when the reader ends: `Ok` at the end of its read, `Err` on a failure.
    end: Option<Result<(), String>>,
    /// New clients may join (while it reads, and for [`LINGER`] after a complete read).
    closed: bool,
    /// Where the read ends (known from the start, or once it has ended).
    end_at: Option<Box<dyn Position>>,
}

impl Shared {
    fn subscribe(self: &Arc<Self>, seq: u64, metrics: &RouteMetrics) -> Option<CatchupStream> {
        let id = {
            let mut st = self.state.lock();
            if st.closed || st.end.as_ref().is_some_and(Result::is_err) {
                return None;
            }
            let floor = Self::pace_floor(&st, self.stall);
            let id = st.next_client;
            st.next_client += 1;
            st.clients.insert(
                id,
                Reading {
                    next_seq: seq,
                    took: Instant::now(),
                    waiting: false,
                    catch_to: floor.filter(|f| *f > seq),
                },
            );
            id
        };
        metrics.catchup_clients.inc();
        let sub = Subscription {
            shared: self.clone(),
            id,
            next_seq: seq,
            taken: std::collections::VecDeque::new(),
            rx: self.head.subscribe(),
            metrics: metrics.clone(),
        };
        Some(Box::pin(futures::stream::unfold(
            sub,
            |mut sub| async move {
                let item = sub.next().await?;
                Some((item, sub))
            },
        )))
    }

    /// The oldest sequence a client that still reads needs, if any: one waiting for
    /// the reader, or one that took events within `stall` (and has caught up with where
    /// the others were when it joined).
    fn slowest(&self) -> Option<u64> {
        Self::pace_floor(&self.state.lock(), self.stall)
    }

    fn pace_floor(st: &State, stall: Duration) -> Option<u64> {
        let now = Instant::now();
        st.clients
            .values()
            .filter(|r| r.waiting || now.duration_since(r.took) < stall)
            .filter(|r| r.catch_to.is_none_or(|c| r.next_seq >= c))
            .map(|r| r.next_seq)
            .min()
    }

    /// Record where client `id` is.
    fn reading(&self, id: u64, next_seq: u64, waiting: bool) {
        if let Some(r) = self.state.lock().clients.get_mut(&id) {
            *r = Reading {
                next_seq,
                took: if waiting { r.took } else { Instant::now() },
                waiting,
                catch_to: r.catch_to.filter(|c| next_seq < *c),
            };
        }
    }

    fn end(&self) -> Option<Result<(), String>> {
        self.state.lock().end.clone()
    }
}

/// One client's read of a reader's ring.
struct Subscription {
    shared: Arc<Shared>,
    id: u64,
    next_seq: u64,
    taken: std::collections::VecDeque<Arc<Event>>,
    rx: watch::Receiver<u64>,
    metrics: RouteMetrics,
}

impl Subscription {
    async fn next(&mut self) -> Option<Result<Arc<Event>, SourceError>> {
        loop {
            if let Some(ev) = self.taken.pop_front() {
                return Some(Ok(ev));
            }
            self.rx.borrow_and_update();
            let mut out = Vec::new();
            let read = self.shared.ring.read().read(self.next_seq, TAKE, &mut out);
            match read {
                Read::Events { next, .. } => {
                    self.next_seq = next;
                    self.taken.extend(out);
                    self.shared.reading(self.id, next, false);
                    self.shared.progressed.notify_one();
                }
                // Fell out of the buffer: the client re-plans from its own position.
                Read::Lagged { .. } => return None,
                Read::Empty { .. } => match self.shared.end() {
                    Some(Ok(())) => return None,
                    Some(Err(e)) => return Some(Err(SourceError::Unavailable(e))),
                    None => {
                        self.shared.reading(self.id, self.next_seq, true);
                        if self.rx.changed().await.is_err() {
                            return None;
                        }
                    }
                },
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.metrics.catchup_clients.dec();
        let empty = {
            let mut st = self.shared.state.lock();
            st.clients.remove(&self.id);
            st.clients.is_empty()
        };
        if empty {
            self.shared.gone.notify_one();
        }
        self.shared.progressed.notify_one();
    }
}

/// Run one reader until its read ends, fails, its route stops, or no client is left.
async fn run(
    shared: Arc<Shared>,
    mut raw: CatchupStream,
    pool: Arc<Pool>,
    cancel: CancellationToken,
    permit: Permit,
) {
    let mut counted = 0i64;
    let end = 'read: loop {
        {
            let mut st = shared.state.lock();
            if st.clients.is_empty() {
                // Nobody to read for: new clients start a reader of their own.
                st.end = Some(Ok(()));
                st.closed = true;
                break Ok(());
            }
        }
        let item = tokio::select! {
            _ = cancel.cancelled() => break Err("route stopped".to_owned()),
            _ = shared.gone.notified() => continue,
            item = raw.next() => item,
        };
        let ev = match item {
            Some(Ok(ev)) => ev,
            Some(Err(e)) => break Err(e.to_string()),
            None => break Ok(()),
        };
        // Room for this event, unless a client that still reads needs what it drops.
        loop {
            let (first, dropped) = {
                let r = shared.ring.read();
                (r.first_seq(), r.evicts(ev.frame.bytes.len()) as u64)
            };
            if dropped == 0 || shared.slowest().is_none_or(|s| s >= first + dropped) {
                break;
            }
            if shared.state.lock().clients.is_empty() {
                break;
            }
            tokio::select! {
                _ = cancel.cancelled() => break 'read Err("route stopped".to_owned()),
                _ = shared.gone.notified() => {}
                _ = shared.progressed.notified() => {}
                _ = tokio::time::sleep(RECHECK) => {}
            }
        }
        let (head, bytes) = {
            let mut r = shared.ring.write();
            r.push(ev);
            (r.head_seq(), r.bytes() as i64)
        };
        pool.metrics.catchup_read.inc();
        pool.metrics.catchup_bytes.add(bytes - counted);
        counted = bytes;
        shared.head.send_replace(head);
    };
    if let Err(e) = &end {
        tracing::warn!(route = %pool.metrics.route(), error = %e, "catch-up read ended");
        shared.state.lock().closed = true;
    }
    let complete = {
        let mut st = shared.state.lock();
        let complete = end.is_ok() && !st.closed;
        if complete && st.end_at.is_none() {
            st.end_at = Some(shared.ring.read().head().clone_box());
        }
        st.end.get_or_insert(end);
        st.closed |= !complete;
        complete
    };
    shared.head.send_modify(|_| {});
    drop(raw);
    if complete {
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = tokio::time::sleep(LINGER) => {}
        }
        shared.state.lock().closed = true;
    }
    pool.readers.lock().retain(|r| !Arc::ptr_eq(r, &shared));
    pool.metrics.catchup_readers.dec();
    pool.metrics.catchup_bytes.sub(counted);
    drop(permit);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::position::{downcast, Accept, Lane, Step};
    use futures::StreamExt;
    use tokio::sync::mpsc;

    /// The test's own position: the next offset of one lane.
    #[derive(Debug, Clone, PartialEq)]
    struct At(i64);

    impl Position for At {
        fn kind(&self) -> u8 {
            b't'
        }
        fn write_binary(&self, out: &mut Vec<u8>) {
            out.extend_from_slice(&self.0.to_be_bytes());
        }
        fn advance(&mut self, step: &Step) {
            if let Step::Record { offset, .. } = step {
                self.0 = offset + 1;
            }
        }
        fn accept(&mut self, _: &Step, _: bool) -> Accept {
            Accept::Take
        }
        fn same(&self, other: &dyn Position) -> bool {
            downcast::<At>(other) == Some(self)
        }
        fn at_or_after(&self, base: &dyn Position) -> bool {
            downcast::<At>(base).is_some_and(|b| self.0 >= b.0)
        }
    }

    fn ev(offset: i64) -> Arc<Event> {
        Arc::new(Event {
            frame: crate::sse::frame("", None, Some(&format!("{offset}"))),
            step: Step::Record {
                lane: Lane {
                    stream: 0,
                    partition: 0,
                },
                offset,
            },
            timestamp_ms: None,
            attrs: None,
        })
    }

    fn offset(e: &Arc<Event>) -> i64 {
        match e.step {
            Step::Record { offset, .. } => offset,
            _ => -1,
        }
    }

    struct Fixture {
        pool: CatchupPool,
        metrics: RouteMetrics,
        tracker: TaskTracker,
    }

    fn fixture(cfg: CatchupConfig) -> Fixture {
        fixture_with(cfg, Budget::unlimited())
    }

    fn fixture_with(cfg: CatchupConfig, budget: Arc<Budget>) -> Fixture {
        let metrics = crate::metrics::Metrics::new(prometheus::Registry::new())
            .unwrap()
            .route("t");
        let tracker = TaskTracker::new();
        let pool = CatchupPool::new(
            CatchupLimits::new(cfg, Budget::unlimited()),
            budget,
            metrics.clone(),
            tracker.clone(),
            CancellationToken::new(),
        );
        Fixture {
            pool,
            metrics,
            tracker,
        }
    }

    /// A raw read fed by the test; it ends when the sender is dropped.
    fn raw() -> (mpsc::UnboundedSender<i64>, CatchupStream) {
        let (tx, rx) = mpsc::unbounded_channel::<i64>();
        let s = tokio_stream_of(rx).map(|o| Ok(ev(o)));
        (tx, Box::pin(s))
    }

    fn tokio_stream_of(
        mut rx: mpsc::UnboundedReceiver<i64>,
    ) -> impl futures::Stream<Item = i64> + Send {
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }

    async fn take(s: &mut CatchupStream, n: usize) -> Vec<i64> {
        let mut out = Vec::new();
        for _ in 0..n {
            let e = tokio::time::timeout(Duration::from_secs(5), s.next())
                .await
                .expect("an event in time")
                .expect("not ended")
                .expect("no error");
            out.push(offset(&e));
        }
        out
    }

    /// The first client of the pool, starting a reader at `base` fed by the test.
    async fn first_client(f: &Fixture, base: i64) -> (mpsc::UnboundedSender<i64>, CatchupStream) {
        let (tx, r) = raw();
        let s = f.pool.join(&At(base), move || read(base, r)).await.unwrap();
        (tx, s)
    }

    fn read(base: i64, raw: CatchupStream) -> CatchupRead {
        CatchupRead {
            base: Box::new(At(base)),
            end: None,
            raw,
        }
    }

    fn cfg() -> CatchupConfig {
        CatchupConfig {
            max_readers: 1,
            max_readers_per_route: 1,
            buffer_events: 4,
            buffer_bytes: 1 << 20,
            wait: Duration::from_millis(300),
            stall: Duration::from_secs(30),
        }
    }

    #[tokio::test]
    async fn clients_at_or_after_a_readers_base_share_it() {
        let f = fixture(cfg());
        let (tx, mut a) = first_client(&f, 10).await;
        // Joins the running reader: no second read is opened.
        let mut b = f
            .pool
            .join(&At(12), || panic!("a second reader was opened"))
            .await
            .unwrap();
        assert_eq!(f.metrics.catchup_readers.get(), 1);
        assert_eq!(f.metrics.catchup_clients.get(), 2);
        for o in 10..14 {
            tx.send(o).unwrap();
        }
        // Each reads the reader's whole buffer; its cursor skips what it has.
        assert_eq!(take(&mut a, 4).await, vec![10, 11, 12, 13]);
        assert_eq!(take(&mut b, 4).await, vec![10, 11, 12, 13]);
        drop(tx);
        assert!(a.next().await.is_none(), "the read ended");
        assert!(b.next().await.is_none(), "the read ended");
        drop((a, b));
        f.tracker.close();
        f.tracker.wait().await;
        assert_eq!(f.metrics.catchup_readers.get(), 0);
        assert_eq!(f.metrics.catchup_clients.get(), 0);
        assert_eq!(f.metrics.catchup_bytes.get(), 0);
    }

    #[tokio::test]
    async fn a_reader_the_memory_budget_cannot_hold_is_not_started_until_it_frees() {
        let mut c = cfg();
        c.max_readers = 4;
        c.max_readers_per_route = 4;
        // Room for one reader (2 × its buffer), held in part by a client's write buffer.
        let budget = Budget::new(c.reader_bytes(), None, None);
        let f = fixture_with(c, budget.clone());
        let held = budget.try_reserve(1).expect("fits");
        let (_tx, raw_a) = raw();
        let started = Instant::now();
        let refused = f.pool.join(&At(10), move || read(10, raw_a)).await;
        assert!(
            matches!(refused, Err(SourceError::Busy { .. })),
            "over budget: refused, not started"
        );
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "waited first"
        );
        assert_eq!(f.metrics.catchup_readers.get(), 0);
        assert_eq!(f.metrics.catchup_refused.get(), 1);
        let pool = f.pool.clone();
        let (_tx2, raw_b) = raw();
        let waiting =
            tokio::spawn(async move { pool.join(&At(20), move || read(20, raw_b)).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(held);
        let joined = waiting.await.unwrap();
        assert!(joined.is_ok(), "started once the budget had room");
        assert_eq!(budget.used(), budget.limit(), "the reader holds its share");
        drop(joined);
        f.tracker.close();
        f.tracker.wait().await;
        assert_eq!(budget.used(), 0, "given back when the reader ends");
    }

    #[tokio::test]
    async fn a_client_no_reader_serves_waits_then_is_refused() {
        let f = fixture(cfg());
        let (tx, _a) = first_client(&f, 10).await;
        let started = Instant::now();
        let refused = f
            .pool
            .join(&At(3), || panic!("over the cap"))
            .await
            .err()
            .expect("refused");
        assert!(started.elapsed() >= Duration::from_millis(300), "waited");
        match refused {
            SourceError::Busy { retry_after_s } => assert!((1..=2).contains(&retry_after_s)),
            e => panic!("{e}"),
        }
        assert_eq!(f.metrics.catchup_refused.get(), 1);
        drop(tx);
    }

    #[tokio::test]
    async fn a_waiting_client_gets_the_reader_freed_by_the_last_client_leaving() {
        let mut c = cfg();
        c.wait = Duration::from_secs(5);
        let f = fixture(c);
        let (_tx, a) = first_client(&f, 10).await;
        let pool = f.pool.clone();
        let waiting = tokio::spawn(async move {
            let (tx, r) = raw();
            let mut s = pool.join(&At(3), move || read(3, r)).await.unwrap();
            tx.send(3).unwrap();
            take(&mut s, 1).await
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiting.is_finished());
        // The only client leaves: its reader stops at once, though its read never ended.
        drop(a);
        assert_eq!(waiting.await.unwrap(), vec![3]);
    }

    #[tokio::test]
    async fn a_reader_waits_for_its_slowest_reading_client_and_not_for_a_stalled_one() {
        let mut c = cfg();
        c.stall = Duration::from_millis(400);
        let f = fixture(c);
        let (tx, mut fast) = first_client(&f, 0).await;
        let mut slow = f.pool.join(&At(0), || panic!("shared")).await.unwrap();
        for o in 0..12 {
            tx.send(o).unwrap();
        }
        // The buffer holds 4: the reader waits for `slow` (still within `stall`), so
        // `fast` gets only what the buffer holds.
        assert_eq!(take(&mut fast, 4).await, vec![0, 1, 2, 3]);
        let early = tokio::time::timeout(Duration::from_millis(200), fast.next()).await;
        assert!(early.is_err(), "the reader waited for the slow client");
        // Once `slow` has read nothing for `stall`, the reader goes on without it...
        assert_eq!(take(&mut fast, 8).await, (4..12).collect::<Vec<_>>());
        // ...and `slow`, its events gone from the buffer, ends to re-plan from its
        // own position.
        assert!(slow.next().await.is_none());
        drop(tx);
    }

    #[tokio::test]
    async fn a_joiner_behind_the_readers_clients_that_never_reads_does_not_hold_it_back() {
        // `stall` is long: were the joiner counted, the reader would wait 30 s for it.
        let f = fixture(cfg());
        let (tx, mut fast) = first_client(&f, 0).await;
        for o in 0..4 {
            tx.send(o).unwrap();
        }
        assert_eq!(take(&mut fast, 4).await, vec![0, 1, 2, 3]);
        // A client from the start joins (at the buffer's oldest event) and never reads.
        let mut idle = f.pool.join(&At(0), || panic!("shared")).await.unwrap();
        for o in 4..12 {
            tx.send(o).unwrap();
        }
        let got = tokio::time::timeout(Duration::from_secs(2), take(&mut fast, 8)).await;
        assert_eq!(
            got.expect("the reader went on at the reading client's pace"),
            (4..12).collect::<Vec<_>>()
        );
        // The joiner's events left the buffer: it ends, to re-plan from its position.
        let first = tokio::time::timeout(Duration::from_secs(2), idle.next())
            .await
            .expect("not stuck");
        assert!(first.is_none(), "fell out of the buffer");
        drop(tx);
    }

    #[tokio::test]
    async fn a_client_arriving_just_after_a_complete_read_shares_it() {
        let f = fixture(CatchupConfig {
            max_readers: 3,
            max_readers_per_route: 3,
            ..cfg()
        });
        let (tx, mut a) = first_client(&f, 0).await;
        for o in 0..3 {
            tx.send(o).unwrap();
        }
        drop(tx);
        assert_eq!(take(&mut a, 3).await, vec![0, 1, 2]);
        assert!(a.next().await.is_none(), "the read is complete");
        drop(a);
        // No client left, but the complete buffer is still there to share.
        let mut b = f.pool.join(&At(1), || panic!("read again")).await.unwrap();
        assert_eq!(take(&mut b, 3).await, vec![0, 1, 2]);
        assert!(b.next().await.is_none());
        drop(b);
        // A client already at the end gains nothing from it: a read of its own.
        let (_tx2, r2) = raw();
        let mut fresh = false;
        let _d = f
            .pool
            .join(&At(3), || {
                fresh = true;
                read(3, r2)
            })
            .await
            .unwrap();
        assert!(fresh);
        // Later, a new read.
        tokio::time::sleep(LINGER + Duration::from_millis(200)).await;
        let (_tx, r) = raw();
        let mut opened = false;
        let _c = f
            .pool
            .join(&At(1), || {
                opened = true;
                read(1, r)
            })
            .await
            .unwrap();
        assert!(opened);
    }

    #[tokio::test]
    async fn a_failed_read_reaches_every_client() {
        let f = fixture(cfg());
        let raw: CatchupStream = Box::pin(futures::stream::iter([
            Ok(ev(0)),
            Err(SourceError::Unavailable("broker gone".into())),
        ]));
        let mut a = f.pool.join(&At(0), move || read(0, raw)).await.unwrap();
        assert_eq!(take(&mut a, 1).await, vec![0]);
        match a.next().await {
            Some(Err(SourceError::Unavailable(e))) => assert!(e.contains("broker gone")),
            _ => panic!("the failure is told"),
        }
    }
}
