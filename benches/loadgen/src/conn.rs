//! One SSE connection of the load generator: HTTP/1.1 from a chosen 127.0.0.x source
//! address, events parsed per the spec, sequence gaps and duplicates counted, latency
//! from the creation timestamp carried in the payload.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sse_bridge::sse::parse::Parser;
use tokio::net::TcpSocket;

use crate::http1;

/// Shared counters of every connection.
#[derive(Debug, Default)]
pub struct Totals {
    /// Connections that got a 200 and their first bytes.
    pub live: AtomicU64,
    /// Events received.
    pub events: AtomicU64,
    /// Connections that failed or ended.
    pub failed: AtomicU64,
}

/// What one connection saw.
#[derive(Debug, Default, Clone)]
pub struct ConnResult {
    /// Events received.
    pub events: u64,
    /// Sequence numbers skipped.
    pub missing: u64,
    /// Sequence numbers seen twice (or going backwards).
    pub duplicated: u64,
    /// Latencies (µs), creation to receipt.
    pub latencies_us: Vec<u32>,
    /// Next expected sequence number.
    pub next_seq: Option<u64>,
    /// Last event id seen.
    pub last_id: String,
    /// Error, if the connection failed.
    pub error: Option<String>,
    /// Events below this sequence predate the measurement (a peer replaying its buffer
    /// on connect) and are ignored.
    pub window_start: Option<u64>,
}

/// Microseconds since the epoch.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn field(data: &str, name: &str) -> Option<u64> {
    let i = data.find(name)? + name.len();
    let rest = &data[i..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Source address for connection `i` spread over `sources` loopback addresses from
/// 127.0.0.`base` (the kernel gives each source address its own ~28k ephemeral ports).
pub fn source_addr(i: usize, sources: usize, base: u8) -> SocketAddr {
    let n = (i % sources.max(1)) as u8;
    SocketAddr::from((Ipv4Addr::new(127, 0, 0, base.saturating_add(n)), 0))
}

/// Open a stream and read it until `stop` fires or it ends.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    server: SocketAddr,
    path: String,
    local: SocketAddr,
    last_id: Option<String>,
    totals: Arc<Totals>,
    stop: tokio::sync::watch::Receiver<bool>,
    expect_from: Option<u64>,
    ignore_before: Option<u64>,
    connect_permit: tokio::sync::OwnedSemaphorePermit,
) -> ConnResult {
    let mut r = ConnResult {
        next_seq: expect_from,
        window_start: ignore_before,
        ..ConnResult::default()
    };
    let mut permit = Some(connect_permit);
    if let Err(e) = read(
        server,
        &path,
        local,
        last_id,
        &totals,
        stop,
        &mut r,
        &mut permit,
    )
    .await
    {
        totals.failed.fetch_add(1, Ordering::Relaxed);
        r.error = Some(e.to_string());
    }
    r
}

#[allow(clippy::too_many_arguments)]
async fn read(
    server: SocketAddr,
    path: &str,
    local: SocketAddr,
    last_id: Option<String>,
    totals: &Totals,
    mut stop: tokio::sync::watch::Receiver<bool>,
    r: &mut ConnResult,
    permit: &mut Option<tokio::sync::OwnedSemaphorePermit>,
) -> anyhow::Result<()> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(local)?;
    let tcp = sock.connect(server).await?;
    tcp.set_nodelay(true)?;
    let mut headers = Vec::new();
    if let Some(id) = &last_id {
        headers.push(("last-event-id", id.as_str()));
    }
    let (status, mut body) = http1::get(tcp, server, path, &headers).await?;
    anyhow::ensure!(status == 200, "status {status}");
    let mut parser = Parser::default();
    let mut events = Vec::new();
    let mut counted_live = false;
    loop {
        let mut sink = |data: &[u8]| parser.feed(data, &mut events);
        let more = tokio::select! {
            m = body.read(&mut sink) => m?,
            _ = stop.changed() => break,
        };
        if !more {
            anyhow::bail!("stream ended")
        }
        if events.is_empty() && counted_live {
            continue;
        }
        if !counted_live {
            counted_live = true;
            // Connected and streaming: let the next connection attempt start.
            permit.take();
            totals.live.fetch_add(1, Ordering::Relaxed);
        }
        let now = now_us();
        let before = r.events;
        for ev in events.drain(..) {
            let seq = field(&ev.data, "\"seq\":");
            if let (Some(seq), Some(w)) = (seq, r.window_start) {
                if seq < w {
                    continue;
                }
            }
            r.events += 1;
            if let Some(seq) = seq {
                match r.next_seq {
                    Some(n) if seq > n => r.missing += seq - n,
                    Some(n) if seq < n => r.duplicated += 1,
                    _ => {}
                }
                if r.next_seq.is_none_or(|n| seq >= n) {
                    r.next_seq = Some(seq + 1);
                }
            }
            if let Some(ts) = field(&ev.data, "\"ts\":") {
                r.latencies_us
                    .push(now.saturating_sub(ts).min(u64::from(u32::MAX)) as u32);
            }
        }
        totals
            .events
            .fetch_add(r.events - before, Ordering::Relaxed);
        r.last_id = parser.last_event_id().to_owned();
    }
    r.last_id = parser.last_event_id().to_owned();
    Ok(())
}
