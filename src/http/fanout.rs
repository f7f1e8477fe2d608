//! The fan-out writers of a route: caught-up clients park their socket with one of a few
//! writer tasks (one per core), and each writer, when the ring grows, frames the new
//! events once and writes that one buffer to every socket it holds with a non-blocking
//! `write` — no task wake-up, poll or allocation per client, and the writers run on
//! every core at once. A client whose socket cannot take the whole buffer is handed back
//! to its own task with the unwritten rest (and writes on from there at its own pace);
//! the writer also sends parked clients their heartbeats.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bus::{Cursor, Event, Hub, Read, Verdict};
use crate::sse;

/// Most ring events framed into one chunk.
const BATCH: usize = 1024;

/// The writers of one route.
pub struct FanOut {
    shards: Vec<mpsc::UnboundedSender<Msg>>,
    next: AtomicUsize,
    ids: AtomicU64,
}

/// A client's place with one writer.
pub struct Parking {
    id: u64,
    tx: mpsc::UnboundedSender<Msg>,
}

/// A client handed back to its own task: where it is, and bytes it must write first.
pub struct Handback {
    /// Next ring sequence to read.
    pub seq: u64,
    /// The client's position at `seq`.
    pub cursor: Cursor,
    /// Framed bytes (already counted in the metrics) still to write, if any.
    pub pending: Option<Bytes>,
    /// When the writer last wrote to the client.
    pub last_write: Instant,
}

enum Msg {
    Park(Entry),
    Leave(u64),
}

struct Entry {
    id: u64,
    tcp: Arc<TcpStream>,
    seq: u64,
    cursor: Cursor,
    reply: oneshot::Sender<Handback>,
    last_write: Instant,
}

struct Parked {
    tcp: Arc<TcpStream>,
    reply: Option<oneshot::Sender<Handback>>,
    last_write: Instant,
}

impl FanOut {
    /// Start `writers` writer tasks for `hub` (none: every client writes for itself).
    pub fn start(
        hub: &Arc<Hub>,
        writers: usize,
        heartbeat: Duration,
        tracker: &TaskTracker,
        cancel: &CancellationToken,
    ) -> FanOut {
        let shards = (0..writers)
            .map(|_| {
                let (tx, rx) = mpsc::unbounded_channel();
                let w = Writer {
                    hub: hub.clone(),
                    seq_rx: hub.subscribe(),
                    heartbeat,
                    parked: HashMap::new(),
                    state: None,
                    pending: Vec::new(),
                    head_id: Bytes::new(),
                    buf: Vec::new(),
                };
                tracker.spawn(w.run(rx, cancel.clone()));
                tx
            })
            .collect();
        FanOut {
            shards,
            next: AtomicUsize::new(0),
            ids: AtomicU64::new(0),
        }
    }

    /// A writer for the next client (round robin), if there are writers.
    pub fn place(&self) -> Option<Parking> {
        if self.shards.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.shards.len();
        Some(Parking {
            id: self.ids.fetch_add(1, Ordering::Relaxed),
            tx: self.shards[i].clone(),
        })
    }
}

impl Parking {
    /// Hand `tcp` to the writer, the client being at `seq` with `cursor` (synced); the
    /// answer comes when the writer gives the client back. `None`: the writer is gone.
    pub fn park(
        &self,
        tcp: Arc<TcpStream>,
        seq: u64,
        cursor: Cursor,
        last_write: Instant,
    ) -> Option<oneshot::Receiver<Handback>> {
        let (reply, rx) = oneshot::channel();
        let entry = Entry {
            id: self.id,
            tcp,
            seq,
            cursor,
            reply,
            last_write,
        };
        self.tx.send(Msg::Park(entry)).ok()?;
        Some(rx)
    }

    /// Ask for the client back (its answer comes on the receiver `park` returned), or
    /// for the writer to forget it when the client is gone.
    pub fn leave(&self) {
        let _ = self.tx.send(Msg::Leave(self.id));
    }
}

struct Writer {
    hub: Arc<Hub>,
    seq_rx: watch::Receiver<u64>,
    heartbeat: Duration,
    parked: HashMap<u64, Parked>,
    /// Next sequence and position of every parked client (they all share them).
    state: Option<(u64, Cursor)>,
    /// Clients waiting to join (their sequence is past the writer's).
    pending: Vec<Entry>,
    /// Id of the head when the ring was last read to its end.
    head_id: Bytes,
    buf: Vec<Arc<Event>>,
}

/// A chunk framed for `transfer-encoding: chunked` (`body` is never empty: an empty chunk
/// would end the response).
fn framed(body: &[u8]) -> Bytes {
    debug_assert!(!body.is_empty());
    let mut b = BytesMut::with_capacity(body.len() + 12);
    b.put_slice(format!("{:x}\r\n", body.len()).as_bytes());
    b.put_slice(body);
    b.put_slice(b"\r\n");
    b.freeze()
}

/// How a non-blocking write of a whole chunk went.
enum Wrote {
    All,
    Part(usize),
    Failed,
}

fn try_write(tcp: &TcpStream, chunk: &[u8]) -> Wrote {
    let mut done = 0;
    while done < chunk.len() {
        match tcp.try_write(&chunk[done..]) {
            Ok(0) => return Wrote::Failed,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Wrote::Part(done),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Wrote::Failed,
        }
    }
    Wrote::All
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>, cancel: CancellationToken) {
        let mut tick = tokio::time::interval((self.heartbeat / 4).min(Duration::from_secs(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut beat = false;
            tokio::select! {
                _ = cancel.cancelled() => break,
                m = rx.recv() => match m {
                    Some(m) => self.handle(m),
                    None => break,
                },
                _ = self.seq_rx.changed() => {}
                _ = tick.tick() => beat = true,
            }
            while let Ok(m) = rx.try_recv() {
                self.handle(m);
            }
            self.admit();
            self.round();
            self.admit();
            if beat {
                self.heartbeats();
            }
            // A round never awaits: let the source's reader (and every other task on
            // this thread) run before the next one.
            tokio::task::yield_now().await;
        }
        // Shutting down: every client goes back to its own task.
        let ids: Vec<u64> = self.parked.keys().copied().collect();
        for id in ids {
            self.give_back(id, None);
        }
        for e in std::mem::take(&mut self.pending) {
            Self::refuse(e);
        }
    }

    fn handle(&mut self, m: Msg) {
        match m {
            Msg::Park(e) => self.pending.push(e),
            Msg::Leave(id) => {
                if self.parked.contains_key(&id) {
                    self.give_back(id, None);
                } else if let Some(i) = self.pending.iter().position(|e| e.id == id) {
                    Self::refuse(self.pending.swap_remove(i));
                }
            }
        }
    }

    /// Send a client that never joined back as it came.
    fn refuse(e: Entry) {
        let _ = e.reply.send(Handback {
            seq: e.seq,
            cursor: e.cursor,
            pending: None,
            last_write: e.last_write,
        });
    }

    fn give_back(&mut self, id: u64, pending: Option<Bytes>) {
        let Some(mut p) = self.unpark(id) else {
            return;
        };
        if let (Some(reply), Some((seq, cursor))) = (p.reply.take(), &self.state) {
            let _ = reply.send(Handback {
                seq: *seq,
                cursor: cursor.clone(),
                pending,
                last_write: p.last_write,
            });
        }
        self.settle();
    }

    /// Drop a client whose socket failed (its task sees the writer hang up).
    fn forget(&mut self, id: u64) {
        self.unpark(id);
        self.settle();
    }

    fn unpark(&mut self, id: u64) -> Option<Parked> {
        let p = self.parked.remove(&id)?;
        self.hub.metrics().parked.dec();
        Some(p)
    }

    /// With no client left, the writer has no position of its own.
    fn settle(&mut self) {
        if self.parked.is_empty() {
            self.state = None;
        }
    }

    /// Take in the clients whose sequence the writer has reached: the first one sets the
    /// writer's position; one behind it gets the events in between first.
    fn admit(&mut self) {
        let mut waiting = Vec::new();
        for mut e in std::mem::take(&mut self.pending) {
            let Some((seq, _)) = &self.state else {
                self.state = Some((e.seq, e.cursor.clone()));
                self.join(e);
                continue;
            };
            let seq = *seq;
            if e.seq > seq {
                waiting.push(e);
                continue;
            }
            if e.seq < seq {
                let Some(chunk) = self.gap(&mut e, seq) else {
                    Self::refuse(e);
                    continue;
                };
                let wrote = if chunk.is_empty() {
                    Wrote::All
                } else {
                    try_write(&e.tcp, &chunk)
                };
                match wrote {
                    Wrote::All => e.last_write = Instant::now(),
                    Wrote::Part(n) => {
                        // Not writable enough: it writes the rest itself.
                        let _ = e.reply.send(Handback {
                            seq,
                            cursor: e.cursor,
                            pending: Some(chunk.slice(n..)),
                            last_write: e.last_write,
                        });
                        continue;
                    }
                    Wrote::Failed => continue,
                }
            }
            self.join(e);
        }
        self.pending = waiting;
    }

    fn join(&mut self, e: Entry) {
        self.hub.metrics().parked.inc();
        self.parked.insert(
            e.id,
            Parked {
                tcp: e.tcp,
                reply: Some(e.reply),
                last_write: e.last_write,
            },
        );
    }

    /// The ring events between a joining client's sequence and `to`, framed (and counted
    /// as sent); `None` when they left the ring (the client catches up on its own).
    fn gap(&mut self, e: &mut Entry, to: u64) -> Option<Bytes> {
        let mut body = BytesMut::new();
        let mut cursor = e.cursor.clone();
        let mut at = e.seq;
        let mut events = 0u64;
        while at < to {
            self.buf.clear();
            match self.hub.read(at, (to - at) as usize, &mut self.buf) {
                Read::Events { next, .. } => at = next,
                _ => {
                    self.buf.clear();
                    return None;
                }
            }
            for ev in &self.buf {
                events += append(&mut cursor, ev, &mut body);
            }
        }
        self.buf.clear();
        e.cursor = cursor;
        e.seq = to;
        if body.is_empty() {
            return Some(Bytes::new());
        }
        let chunk = framed(&body);
        let m = self.hub.metrics();
        m.events_sent.inc_by(events);
        m.bytes_sent.inc_by(chunk.len() as u64);
        Some(chunk)
    }

    /// Write the events the ring gained to every parked client.
    fn round(&mut self) {
        self.seq_rx.borrow_and_update();
        loop {
            let Some((seq, cursor)) = self.state.as_mut() else {
                return;
            };
            self.buf.clear();
            match self.hub.read(*seq, BATCH, &mut self.buf) {
                Read::Empty { head_id } => {
                    self.head_id = head_id;
                    return;
                }
                Read::Lagged { .. } => {
                    // The writers fell out of the ring: every client resyncs itself.
                    let ids: Vec<u64> = self.parked.keys().copied().collect();
                    for id in ids {
                        self.give_back(id, None);
                    }
                    return;
                }
                Read::Events { next, .. } => {
                    *seq = next;
                    let mut body = BytesMut::new();
                    let mut events = 0u64;
                    for ev in &self.buf {
                        events += append(cursor, ev, &mut body);
                    }
                    let first_ts = self.buf.iter().find_map(|e| e.timestamp_ms);
                    self.buf.clear();
                    if events > 0 {
                        self.write_all(&framed(&body), events, first_ts);
                    }
                }
            }
        }
    }

    /// Heartbeats to the clients not written to for an interval.
    fn heartbeats(&mut self) {
        let Some((seq, cursor)) = &self.state else {
            return;
        };
        if *seq != self.hub.head().0 {
            return;
        }
        let id = if self.head_id.is_empty() {
            cursor.encode()
        } else {
            String::from_utf8_lossy(&self.head_id).into_owned()
        };
        if id.is_empty() {
            return;
        }
        let chunk = framed(&sse::heartbeat(&id));
        let now = Instant::now();
        let due: Vec<u64> = self
            .parked
            .iter()
            .filter(|(_, p)| now.duration_since(p.last_write) >= self.heartbeat)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.write_one(id, &chunk, now);
        }
    }

    fn write_one(&mut self, id: u64, chunk: &Bytes, now: Instant) {
        let Some(p) = self.parked.get_mut(&id) else {
            return;
        };
        let m = self.hub.metrics();
        m.bytes_sent.inc_by(chunk.len() as u64);
        match try_write(&p.tcp, chunk) {
            Wrote::All => p.last_write = now,
            Wrote::Part(n) => self.give_back(id, Some(chunk.slice(n..))),
            Wrote::Failed => self.forget(id),
        }
    }

    /// Write `chunk` (holding `events` events, the first created at `first_ts`) to every
    /// parked client; those that cannot take it all are handed back with the rest.
    fn write_all(&mut self, chunk: &Bytes, events: u64, first_ts: Option<i64>) {
        let now = Instant::now();
        let started = std::time::Instant::now();
        let mut back: Vec<(u64, Bytes)> = Vec::new();
        let mut failed: Vec<u64> = Vec::new();
        let latency = self.hub.metrics().latency.local();
        for (id, p) in self.parked.iter_mut() {
            match try_write(&p.tcp, chunk) {
                Wrote::All => {
                    p.last_write = now;
                    if let Some(ts) = first_ts {
                        let ms = chrono::Utc::now().timestamp_millis() - ts;
                        latency.observe(ms.max(0) as f64 / 1000.0);
                    }
                }
                Wrote::Part(n) => back.push((*id, chunk.slice(n..))),
                Wrote::Failed => failed.push(*id),
            }
        }
        latency.flush();
        let m = self.hub.metrics();
        m.fanout_write.observe(started.elapsed().as_secs_f64());
        let served = (self.parked.len() - failed.len()) as u64;
        m.events_sent.inc_by(events * served);
        m.bytes_sent.inc_by(chunk.len() as u64 * served);
        for id in failed {
            self.forget(id);
        }
        for (id, rest) in back {
            self.give_back(id, Some(rest));
        }
        self.settle();
    }
}

/// Append `ev` as `cursor` sees it to `body`; 1 when it was not skipped.
fn append(cursor: &mut Cursor, ev: &Event, body: &mut BytesMut) -> u64 {
    match cursor.accept(ev) {
        Verdict::Skip => 0,
        Verdict::Shared => {
            body.put_slice(&ev.frame.bytes);
            1
        }
        Verdict::Custom(id) => {
            body.put_slice(&id);
            body.put_slice(&ev.frame.bytes[ev.frame.body_start..]);
            1
        }
    }
}
