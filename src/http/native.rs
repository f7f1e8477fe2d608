//! The stream server's connections, and the one stream path. Every `GET` on a stream path
//! (a route's, or the multiplexed one), over HTTP/1.1 or HTTP/1.0, is answered here,
//! writing the stream straight to the socket: with chunked framing for HTTP/1.1, to the
//! end of the connection for HTTP/1.0 (which cannot be chunked, so those clients are never
//! parked with the fan-out writers). Once a stream runs, a connection holds no HTTP
//! buffers, only its stream state (a few KiB per idle client). An `Expect` is answered by
//! the final response (a GET has no body to wait for), an `Upgrade` is declined by
//! answering the stream, and bytes pipelined after the head are never read (a stream
//! does not end before its connection). Every other request — the console, preflights,
//! unknown paths, wrong methods — goes to the warp surface ([`super::routes`]) through
//! hyper, with the bytes already read replayed.
//!
//! Why streams bypass hyper: an idle stream held by hyper costs 13.9 KiB of RSS per
//! connection against 3.6 KiB here (README "Performance", `scripts/bench idle-19k`), and
//! the fan-out writers need the raw socket to write one framed buffer to many clients.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use warp::reply::Response;

use super::fanout::Parking;
use super::limits::Held;
use super::routes::{self, Target};
use super::stream::{cancelled_opt, sleep_until_opt, ClientStream};
use super::{multiplex, open, App};
use futures::StreamExt;

/// Longest request head read before answering 431.
pub(crate) const MAX_HEAD: usize = 16 * 1024;

/// What the first bytes of a connection asked for.
pub enum Head {
    /// A stream request to answer here.
    Stream(StreamRequest),
    /// Anything else: hand the bytes read so far to hyper.
    Other(Vec<u8>),
    /// The client went away or sent too much; close.
    Close,
}

/// Read until the end of a request head (an empty line, CRLF or bare LF as RFC 9112
/// allows), at most [`MAX_HEAD`] bytes however many reads it takes, within `within`: the
/// bytes read, and the head's length when it is complete and within the limit.
pub async fn read_head_bytes(tcp: &mut TcpStream, within: Duration) -> (Vec<u8>, Option<usize>) {
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let end = tokio::time::timeout(within, async {
        loop {
            if let Some(end) = head_end(&buf) {
                return (end <= MAX_HEAD).then_some(end);
            }
            if buf.len() >= MAX_HEAD {
                return None;
            }
            buf.reserve(1024);
            match tcp.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
    .flatten();
    (buf, end)
}

/// The length of the head in `buf`: up to and including its empty line.
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.iter().enumerate().find_map(|(i, &b)| {
        if b != b'\n' {
            return None;
        }
        match buf.get(i + 1..) {
            Some([b'\n', ..]) => Some(i + 2),
            Some([b'\r', b'\n', ..]) => Some(i + 3),
            _ => None,
        }
    })
}

/// Read the request head (within `server.head_timeout`) and decide who answers it;
/// `pending`, the connection's place in its address's share, is given up once the head
/// is read (a stream then takes a place of its own).
pub async fn read_head(tcp: &mut TcpStream, app: &App, pending: Option<Held>) -> Head {
    let (buf, end) = read_head_bytes(tcp, app.server.head_timeout).await;
    drop(pending);
    let Some(head_len) = end else {
        // Incomplete at the limit, or complete beyond it.
        if buf.len() >= MAX_HEAD {
            let _ = tcp
                .write_all(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\ncontent-length: 66\r\nconnection: close\r\n\r\n{\"error\":\"headers_too_large\",\"message\":\"request head over 16 KiB\"}")
                .await;
        }
        return Head::Close;
    };
    match parse(&buf, head_len, app) {
        Some(h) => h,
        None => Head::Other(buf),
    }
}

/// A stream request, if the head is one this path serves.
fn parse(buf: &[u8], head_len: usize, app: &App) -> Option<Head> {
    let mut raw = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut raw);
    // Bytes after the head (a pipelined request) are left unread: the stream lasts as
    // long as the connection.
    if !matches!(
        req.parse(&buf[..head_len]),
        Ok(httparse::Status::Complete(_))
    ) {
        return None;
    }
    if req.method != Some("GET") {
        return None;
    }
    let chunked = match req.version {
        Some(1) => true,
        Some(0) => false,
        _ => return None,
    };
    let uri = req.path?;
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    let target = routes::target(app, path)?;
    let mut headers = HeaderMap::new();
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        headers.append(name, HeaderValue::from_bytes(h.value).ok()?);
    }
    Some(Head::Stream(StreamRequest {
        target,
        query: query.to_owned(),
        headers,
        chunked,
    }))
}

/// A stream request read from a connection.
pub struct StreamRequest {
    /// What the path names.
    pub target: Target,
    /// Raw query string.
    pub query: String,
    /// Request headers.
    pub headers: HeaderMap,
    /// HTTP/1.1 chunked framing (else HTTP/1.0: the body ends with the connection).
    pub chunked: bool,
}

/// Answer a stream request on `tcp`.
pub async fn serve_stream(
    mut tcp: TcpStream,
    app: Arc<App>,
    req: StreamRequest,
    kill: CancellationToken,
    peer: std::net::SocketAddr,
) {
    let StreamRequest {
        target,
        query,
        headers,
        chunked,
    } = req;
    let route = match &target {
        Target::Route(r) => Some(r.clone()),
        Target::Multiplexed => None,
    };
    let origin = headers.get(http::header::ORIGIN).cloned();
    let mut extra = HeaderMap::new();
    routes::cors(&app, route.as_deref(), origin.as_ref(), &mut extra);
    let opened = match &route {
        Some(r) => open::open_stream(&app, r, &headers, &query, kill.clone(), peer)
            .await
            .map(|s| Opened::Route(s, r.fanout.place().filter(|_| chunked))),
        None => multiplex::open(&app, &headers, &query, kill.clone(), peer)
            .await
            .map(Opened::Merged),
    };
    let opened = match opened {
        Ok(o) => o,
        Err(resp) => {
            let mut resp = *resp;
            resp.headers_mut().extend(extra);
            app.metrics
                .rejected
                .with_label_values(&[resp.status().as_str()])
                .inc();
            write_response(&mut tcp, resp, Duration::from_secs(5)).await;
            return;
        }
    };
    drop(headers);
    let mut head = String::from(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ncache-control: no-cache\r\nx-accel-buffering: no\r\n",
    );
    // The connection ends with the stream (HTTP/1.1: after the final chunk).
    head.push_str(if chunked {
        "transfer-encoding: chunked\r\nconnection: close\r\n"
    } else {
        "connection: close\r\n"
    });
    for (k, v) in &extra {
        if let Ok(v) = v.to_str() {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    head.push_str("\r\n");
    if tcp.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    drop(head);
    let sink = Sink {
        tcp: Arc::new(tcp),
        chunked,
        deadline: app.server.write_timeout,
    };
    match opened {
        Opened::Route(stream, parking) => pump(sink, stream, kill, parking).await,
        Opened::Merged(merged) => pump_merged(sink, merged, kill).await,
    }
}

/// An opened stream: one route's, or several merged.
#[allow(clippy::large_enum_variant)] // held only while the stream starts, then moved out
enum Opened {
    Route(ClientStream, Option<Parking>),
    Merged(multiplex::Merged),
}

/// Where a stream's bytes go: the socket, its framing and its write deadline.
struct Sink {
    tcp: Arc<TcpStream>,
    /// HTTP/1.1 chunked framing (else HTTP/1.0: bytes as they are).
    chunked: bool,
    /// Longest time the socket may take no bytes.
    deadline: Duration,
}

impl Sink {
    /// Write `chunk` with chunked framing (in one vectored write when the socket takes
    /// it), or for `None` the final empty chunk; `Ok(false)` once the response is
    /// complete. Without `chunked` (HTTP/1.0) the bytes go as they are and the end is the
    /// connection's.
    async fn chunk(&self, chunk: Option<Bytes>) -> io::Result<bool> {
        let Some(mut chunk) = chunk else {
            if self.chunked {
                self.all(&mut Bytes::from_static(b"0\r\n\r\n")).await?;
            }
            return Ok(false);
        };
        if !self.chunked {
            self.all(&mut chunk).await?;
            return Ok(true);
        }
        let mut framed = Bytes::from(format!("{:x}\r\n", chunk.len()))
            .chain(chunk)
            .chain(&b"\r\n"[..]);
        self.all(&mut framed).await?;
        Ok(true)
    }

    /// Write all of `buf`; `TimedOut` when the socket takes no bytes for the deadline.
    async fn all(&self, buf: &mut impl Buf) -> io::Result<()> {
        while buf.has_remaining() {
            let mut slices = [io::IoSlice::new(&[]); 4];
            let n = buf.chunks_vectored(&mut slices);
            match self.tcp.try_write_vectored(&slices[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => buf.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    tokio::time::timeout(self.deadline, self.tcp.writable())
                        .await
                        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// What a failed write means for the stream: a write deadline passed, or the client is
/// gone.
fn write_failed(stream: &mut ClientStream, e: &io::Error) {
    if e.kind() == io::ErrorKind::TimedOut {
        stream.write_timed_out();
    }
}

/// Write a merged stream's chunks until it ends, the client goes away, the connection
/// is killed or a write passes its deadline.
async fn pump_merged(sink: Sink, merged: multiplex::Merged, kill: CancellationToken) {
    let multiplex::Merged {
        mut chunks,
        timed_out,
    } = merged;
    let gone = gone(&sink.tcp);
    tokio::pin!(gone);
    let killed = kill.cancelled();
    tokio::pin!(killed);
    loop {
        let chunk = tokio::select! {
            c = chunks.next() => c,
            _ = &mut gone => return,
            _ = &mut killed => return,
        };
        tokio::select! {
            r = sink.chunk(chunk) => match r {
                Ok(true) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    timed_out.store(true, std::sync::atomic::Ordering::Relaxed);
                    return;
                }
                _ => return,
            },
            _ = &mut killed => return,
        }
    }
}

/// Write the stream's chunks until it ends, the client goes away, the connection is
/// killed (too slow), a write passes its deadline, or the stream is cancelled (shutdown,
/// route removed: a blocked write ends at once). While the stream is live at the head,
/// its socket is parked with a fan-out writer, which writes the route's events to it;
/// this task then only waits.
async fn pump(
    sink: Sink,
    mut stream: ClientStream,
    kill: CancellationToken,
    parking: Option<Parking>,
) {
    let tcp = sink.tcp.clone();
    // Long-lived watchers (not re-armed per chunk): the client closing, the connection
    // being killed.
    let gone = gone(&tcp);
    tokio::pin!(gone);
    let killed = kill.cancelled();
    tokio::pin!(killed);
    let cancel = stream.cancel_token().clone();
    loop {
        if let Some(p) = &parking {
            if let Some((seq, cursor, last)) = stream.park() {
                let Some(mut rx) = p.park(tcp.clone(), seq, cursor, last) else {
                    return;
                };
                let ends = stream.ends_at();
                let draining = stream.draining();
                let back = tokio::select! {
                    r = &mut rx => r,
                    _ = &mut gone => { p.leave(); return }
                    _ = &mut killed => { p.leave(); return }
                    _ = cancel.cancelled() => { p.leave(); rx.await }
                    // Token expiry or maximum age: the stream's own task writes the end.
                    _ = sleep_until_opt(ends) => { p.leave(); rx.await }
                    // The instance drains: the stream's own task schedules its end.
                    _ = cancelled_opt(draining.as_ref()) => { p.leave(); rx.await }
                };
                // No answer: the writer found the socket broken.
                let Ok(back) = back else { return };
                stream.unpark(back.seq, back.cursor, back.last_write);
                if let Some(mut rest) = back.pending {
                    tokio::select! {
                        biased;
                        r = sink.all(&mut rest) => if let Err(e) = r {
                            write_failed(&mut stream, &e);
                            return;
                        },
                        _ = &mut killed => return,
                        _ = cancel.cancelled() => return,
                    }
                }
                continue;
            }
        }
        let chunk = tokio::select! {
            c = stream.next_chunk() => c,
            _ = &mut gone => return,
            _ = &mut killed => return,
        };
        let len = chunk.as_ref().map_or(0, Bytes::len);
        tokio::select! {
            biased;
            r = sink.chunk(chunk) => match r {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    write_failed(&mut stream, &e);
                    return;
                }
            },
            _ = &mut killed => return,
            _ = cancel.cancelled() => return,
        }
        stream.wrote(len);
    }
}

/// Resolves when the client closes its side (or the socket fails).
async fn gone(tcp: &TcpStream) {
    let mut b = [0u8; 64];
    loop {
        if tcp.readable().await.is_err() {
            return;
        }
        match tcp.try_read(&mut b) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

/// Write a complete (error) response, giving up after `within`; the caller closes.
pub async fn write_response(tcp: &mut TcpStream, resp: Response, within: Duration) {
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        parts.status.as_u16(),
        parts.status.canonical_reason().unwrap_or("")
    );
    for (k, v) in &parts.headers {
        if k != http::header::CONTENT_LENGTH && k != http::header::CONNECTION {
            if let Ok(v) = v.to_str() {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
        }
    }
    head.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    ));
    let mut all = Bytes::from(head).chain(body);
    let _ = tokio::time::timeout(within, tcp.write_all_buf(&mut all)).await;
}

/// A socket whose first bytes were already read: they are read again first.
pub struct Prefixed {
    prefix: Bytes,
    io: TcpStream,
}

impl Prefixed {
    /// `prefix` then `io`.
    pub fn new(prefix: Vec<u8>, io: TcpStream) -> Prefixed {
        Prefixed {
            prefix: Bytes::from(prefix),
            io,
        }
    }
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(out.remaining());
            out.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, out)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_end_at_an_empty_line_crlf_or_bare_lf() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nrest"), Some(27));
        assert_eq!(head_end(b"GET / HTTP/1.1\nHost: x\n\nrest"), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\n\r\n"), Some(26));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
        assert_eq!(head_end(b""), None);
    }
}
