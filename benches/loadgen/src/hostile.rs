//! Hostile load: honest clients follow a route at a fixed event rate, first alone, then
//! while hostile connections from other addresses run (non-reading resumers from the
//! earliest offset, idle sockets, trickled heads, oversized and duplicated headers,
//! huge ids). Reports the honest clients' loss, duplicates and latency in both runs, the
//! bridge's peak RSS, threads and catch-up readers under attack, and its RSS once the
//! flood has been over for a while.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use std::sync::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::conn::source_addr;
use crate::proc_stats;
use crate::storm::{metric_sum, metrics_text};
use crate::{produce, Common};

/// What to run.
pub struct Hostile {
    pub url: String,
    pub admin: String,
    pub pid: u32,
    pub brokers: String,
    pub topic: String,
    pub honest: usize,
    pub hostile: usize,
    pub rate: u64,
    pub duration: f64,
    /// Seconds to wait after the flood before the last RSS sample.
    pub after: f64,
    /// Kinds of attacker to run (all when empty).
    pub kinds: Vec<String>,
    pub label: String,
}

/// The kinds of hostile connection, one per attacker in turn.
const KINDS: [&str; 6] = [
    "resume_no_read",
    "idle_socket",
    "trickled_head",
    "oversized_head",
    "duplicate_header",
    "huge_id",
];

/// Outcomes per kind: answer (status code, `closed`, `refused`) → count.
type Seen = Arc<Mutex<BTreeMap<String, BTreeMap<String, u64>>>>;

fn note(seen: &Seen, kind: &str, what: String) {
    *seen
        .lock()
        .expect("not poisoned")
        .entry(kind.to_owned())
        .or_default()
        .entry(what)
        .or_default() += 1;
}

/// Send `head`, read the status line; `hold`: keep the socket (unread) until `stop` or
/// the server closes it.
async fn ask(
    local: SocketAddr,
    server: SocketAddr,
    head: &[u8],
    recv_buf: Option<u32>,
    hold: bool,
    stop: &mut watch::Receiver<bool>,
) -> String {
    let Ok(s) = tokio::net::TcpSocket::new_v4() else {
        return "socket_error".into();
    };
    if let Some(b) = recv_buf {
        let _ = s.set_recv_buffer_size(b);
    }
    if s.bind(local).is_err() {
        return "bind_error".into();
    }
    let Ok(mut tcp) = s.connect(server).await else {
        return "refused".into();
    };
    if tcp.write_all(head).await.is_err() {
        return "closed".into();
    }
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    let got = tokio::time::timeout(Duration::from_secs(30), async {
        while !line.ends_with(b"\r\n") {
            match tcp.read(&mut b).await {
                Ok(1) => line.push(b[0]),
                _ => return false,
            }
        }
        true
    })
    .await
    .unwrap_or(false);
    let status = if got {
        String::from_utf8_lossy(&line)
            .split_whitespace()
            .nth(1)
            .unwrap_or("?")
            .to_owned()
    } else {
        "closed".into()
    };
    if hold && status == "200" {
        // Never read again: wait for the end of the run or for the server to close.
        let mut probe = [0u8; 1];
        let closed = async {
            // Peek does not consume: data arriving keeps the buffer full, only a close
            // or an error ends this.
            loop {
                match tcp.peek(&mut probe).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                }
            }
        };
        tokio::select! {
            _ = stop.changed() => {}
            _ = closed => {}
        }
    }
    status
}

/// Connect and send nothing (`idle`) or one byte every 200 ms (trickle) until the
/// server closes the socket or `stop` fires.
async fn linger(
    local: SocketAddr,
    server: SocketAddr,
    trickle: bool,
    stop: &mut watch::Receiver<bool>,
) -> String {
    let Ok(s) = tokio::net::TcpSocket::new_v4() else {
        return "socket_error".into();
    };
    if s.bind(local).is_err() {
        return "bind_error".into();
    }
    let Ok(mut tcp) = s.connect(server).await else {
        return "refused".into();
    };
    let head = b"GET /streams/bench HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    let mut i = 0;
    let mut b = [0u8; 256];
    loop {
        tokio::select! {
            _ = stop.changed() => return "held_to_end".into(),
            r = tcp.read(&mut b) => return match r {
                Ok(0) | Err(_) => "closed".into(),
                Ok(_) => String::from_utf8_lossy(&b).split_whitespace().nth(1).unwrap_or("?").to_owned(),
            },
            _ = tokio::time::sleep(Duration::from_millis(200)), if trickle => {
                let byte = head.get(i).copied().unwrap_or(b'a');
                i += 1;
                if tcp.write_all(&[byte]).await.is_err() {
                    return "closed".into();
                }
            }
        }
    }
}

/// One attacker: its kind, over and over, until `stop`.
async fn attacker(
    kind: &'static str,
    i: usize,
    server: SocketAddr,
    huge_id: Arc<String>,
    seen: Seen,
    mut stop: watch::Receiver<bool>,
) {
    let local = source_addr(i, 10, 50);
    let path = "/streams/bench";
    while !*stop.borrow() {
        let what = match kind {
            "resume_no_read" => {
                let head = format!("GET {path} HTTP/1.1\r\nHost: x\r\nLast-Event-ID: AWsA\r\n\r\n");
                ask(local, server, head.as_bytes(), Some(4096), true, &mut stop).await
            }
            "idle_socket" => linger(local, server, false, &mut stop).await,
            "trickled_head" => linger(local, server, true, &mut stop).await,
            "oversized_head" => {
                let head = format!(
                    "GET {path} HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
                    "a".repeat(20 * 1024)
                );
                ask(local, server, head.as_bytes(), None, false, &mut stop).await
            }
            "duplicate_header" => {
                let head = format!(
                    "GET {path} HTTP/1.1\r\nHost: x\r\nLast-Event-ID: AWsA\r\nLast-Event-ID: AWsA\r\n\r\n"
                );
                ask(local, server, head.as_bytes(), None, false, &mut stop).await
            }
            _ => {
                let head =
                    format!("GET {path} HTTP/1.1\r\nHost: x\r\nLast-Event-ID: {huge_id}\r\n\r\n");
                ask(local, server, head.as_bytes(), None, false, &mut stop).await
            }
        };
        note(&seen, kind, what);
        // Each attacker holds about one connection: a new one a second at most.
        tokio::select! {
            _ = stop.changed() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// The honest clients' run: connect, produce `rate` events/s for `duration`, report.
async fn honest_run(h: &Hostile, label: &str) -> anyhow::Result<Value> {
    let c = Common {
        url: vec![h.url.clone()],
        clients: h.honest,
        pid: vec![h.pid],
        sources: 2,
        source_base: 1,
        json: None,
        label: label.into(),
        hold: 5.0,
    };
    let p = produce::producer(&h.brokers)?;
    let seq0 =
        produce::produce(&p, &h.topic, 10, Duration::from_millis(200), 1_000_000, 64).await?;
    let (topic, rate, dur) = (h.topic.clone(), h.rate, Duration::from_secs_f64(h.duration));
    crate::fanout_measure(&c, h.rate, h.duration, seq0, async move {
        produce::produce(&p, &topic, rate, dur, seq0, 64).await
    })
    .await
}

/// Run both phases and the aftermath.
pub async fn run(h: Hostile, huge_id: String) -> anyhow::Result<Value> {
    let server = crate::parse_url(&h.url)?.0;
    let idle = proc_stats::sample(&[h.pid]);
    let quiet = honest_run(&h, "honest alone").await?;
    let before_flood = proc_stats::sample(&[h.pid]);

    let seen: Seen = Arc::default();
    let (stop, stop_rx) = watch::channel(false);
    let huge_id = Arc::new(huge_id);
    let mut attackers = Vec::new();
    let kinds: Vec<&'static str> = KINDS
        .iter()
        .copied()
        .filter(|k| h.kinds.is_empty() || h.kinds.iter().any(|w| w == k))
        .collect();
    anyhow::ensure!(!kinds.is_empty(), "no such attacker kind: {:?}", h.kinds);
    for i in 0..h.hostile {
        attackers.push(tokio::spawn(attacker(
            kinds[i % kinds.len()],
            i,
            server,
            huge_id.clone(),
            seen.clone(),
            stop_rx.clone(),
        )));
    }
    // Peak RSS, threads and catch-up readers while the flood runs.
    let (pid, admin) = (h.pid, h.admin.clone());
    let (sample_stop, mut sample_rx) = watch::channel(false);
    let sampler = tokio::spawn(async move {
        let (mut rss, mut th, mut readers, mut clients, mut budget) =
            (0u64, 0usize, 0f64, 0f64, 0f64);
        loop {
            rss = rss.max(proc_stats::sample(&[pid]).rss_bytes);
            th = th.max(proc_stats::threads(pid));
            let m = metrics_text(&admin).await;
            readers = f64::max(readers, metric_sum(&m, "sse_bridge_catchup_readers{"));
            clients = f64::max(clients, metric_sum(&m, "sse_bridge_connections_active{"));
            budget = f64::max(
                budget,
                metric_sum(&m, "sse_bridge_process_memory_budget_used_bytes"),
            );
            tokio::select! {
                _ = sample_rx.changed() => return (rss, th, readers, clients, budget),
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    let attacked = honest_run(&h, "honest under attack").await?;
    let _ = stop.send(true);
    for a in attackers {
        let _ = a.await;
    }
    let _ = sample_stop.send(true);
    let (peak_rss, peak_threads, peak_readers, peak_streams, peak_budget) = sampler.await?;
    let m = metrics_text(&h.admin).await;
    let budget = metric_sum(&m, "sse_bridge_process_memory_budget_bytes");
    let refused = metric_sum(&m, "sse_bridge_catchup_refused_total{");
    tokio::time::sleep(Duration::from_secs_f64(h.after)).await;
    let settled = proc_stats::sample(&[h.pid]);
    let mib = |b: u64| (b as f64 / 1048576.0 * 10.0).round() / 10.0;
    let p99 = |v: &Value| v["latency_ms"]["p99"].as_f64().unwrap_or(f64::NAN);
    let (q, a) = (p99(&quiet), p99(&attacked));
    let lost = attacked["missing"].as_u64().unwrap_or(u64::MAX)
        + quiet["missing"].as_u64().unwrap_or(u64::MAX);
    let dup = attacked["duplicated"].as_u64().unwrap_or(u64::MAX)
        + quiet["duplicated"].as_u64().unwrap_or(u64::MAX);
    let rss_ratio = settled.rss_bytes as f64 / before_flood.rss_bytes.max(1) as f64;
    Ok(json!({
        "scenario": "hostile",
        "label": h.label,
        "honest_clients": h.honest,
        "hostile_connections": h.hostile,
        "rate_events_per_s": h.rate,
        "honest_lost": lost,
        "honest_duplicated": dup,
        "honest_p99_ms_alone": q,
        "honest_p99_ms_under_attack": a,
        "p99_ratio": (a / q * 100.0).round() / 100.0,
        "bridge_rss_mib_idle": mib(idle.rss_bytes),
        "bridge_rss_mib_before_flood": mib(before_flood.rss_bytes),
        "bridge_rss_mib_peak": mib(peak_rss),
        "bridge_threads_peak": peak_threads,
        "catchup_readers_peak": peak_readers,
        "memory_budget_mib": mib(budget as u64),
        "memory_budget_used_mib_peak": mib(peak_budget as u64),
        "catchup_refused": refused,
        "streams_open_peak": peak_streams,
        "bridge_rss_mib_after": mib(settled.rss_bytes),
        "seconds_after_flood": h.after,
        "rss_after_vs_before_flood": (rss_ratio * 100.0).round() / 100.0,
        "hostile_answers": *seen.lock().expect("not poisoned"),
        "targets_met": lost == 0 && dup == 0 && a <= 2.0 * q.max(1.0) && rss_ratio <= 1.2,
        "runs": [quiet, attacked],
    }))
}
