//! The reconnect storm: C clients follow a route; the bridge restarts while events keep
//! coming; every client reconnects at once with its last id. Reports the time until all
//! are live and caught up, events lost or duplicated (must be zero), and how the resumes
//! were served (buffer vs Kafka reads), from the new bridge's metrics.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::conn::{self, Totals};
use crate::produce;

/// Inputs of a storm.
pub struct Storm {
    pub url: String,
    pub admin: String,
    pub clients: usize,
    pub sources: usize,
    pub brokers: String,
    pub topic: String,
    pub rate: u64,
    pub restart_cmd: String,
    pub label: String,
}

async fn fleet(
    s: &Storm,
    resume: Option<&[conn::ConnResult]>,
    expect_from: u64,
) -> anyhow::Result<(
    Vec<tokio::task::JoinHandle<conn::ConnResult>>,
    Arc<Totals>,
    tokio::sync::watch::Sender<bool>,
)> {
    let (server, path) = crate::parse_url(&s.url)?;
    let totals = Arc::new(Totals::default());
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let sem = Arc::new(tokio::sync::Semaphore::new(if resume.is_some() {
        s.clients
    } else {
        256
    }));
    let mut handles = Vec::with_capacity(s.clients);
    for i in 0..s.clients {
        let permit = sem.clone().acquire_owned().await?;
        let (last_id, from) = match resume {
            Some(prev) => (
                Some(prev[i].last_id.clone()).filter(|x| !x.is_empty()),
                prev[i].next_seq.unwrap_or(expect_from),
            ),
            None => (None, expect_from),
        };
        handles.push(tokio::spawn(conn::run(
            server,
            path.clone(),
            conn::source_addr(i, s.sources, 1),
            last_id,
            totals.clone(),
            stop_rx.clone(),
            Some(from),
            None,
            permit,
        )));
    }
    Ok((handles, totals, stop))
}

pub(crate) async fn metrics_text(admin: &str) -> String {
    let Ok(addr) = admin
        .trim_start_matches("http://")
        .parse::<std::net::SocketAddr>()
    else {
        return String::new();
    };
    let Ok(mut tcp) = tokio::net::TcpStream::connect(addr).await else {
        return String::new();
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tcp
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await;
    let mut out = Vec::new();
    let _ = tcp.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn metric_sum(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |a, b| a + b)
}

/// Run the storm; returns the figures.
pub async fn run(s: Storm) -> anyhow::Result<serde_json::Value> {
    produce::create_topic(&s.brokers, &s.topic, 1).await?;
    let p = produce::producer(&s.brokers)?;
    let seq0 = produce::produce(&p, &s.topic, 10, Duration::from_millis(200), 0, 32).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Phase 1: everyone connected and following.
    let (handles, totals, stop) = fleet(&s, None, seq0).await?;
    while (totals.live.load(Ordering::Relaxed) + totals.failed.load(Ordering::Relaxed))
        < s.clients as u64
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seq1 = produce::produce(&p, &s.topic, s.rate, Duration::from_secs(2), seq0, 32).await?;
    let want = (seq1 - seq0) * s.clients as u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while totals.events.load(Ordering::Relaxed) < want && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Phase 2: the bridge restarts while events keep coming; streams end.
    let producing = {
        let (p2, topic, rate) = (produce::producer(&s.brokers)?, s.topic.clone(), s.rate);
        tokio::spawn(async move {
            produce::produce(&p2, &topic, rate, Duration::from_secs(3), seq1, 32).await
        })
    };
    let restart = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(&s.restart_cmd)
        .status()
        .await?;
    anyhow::ensure!(restart.success(), "restart command failed");
    let seq2 = producing.await??;
    let _ = stop.send(true);
    let mut first = Vec::with_capacity(s.clients);
    for h in handles {
        first.push(h.await?);
    }

    // Phase 3: everyone reconnects at once with its last id.
    let t0 = tokio::time::Instant::now();
    let (handles, totals, stop) = fleet(&s, Some(&first), seq0).await?;
    let caught_up: u64 = first
        .iter()
        .map(|r| seq2 - r.next_seq.unwrap_or(seq0).min(seq2))
        .sum();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while totals.events.load(Ordering::Relaxed) < caught_up
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let all_live_s = t0.elapsed().as_secs_f64();
    // A few more live events, then check every sequence end to end.
    let seq3 = produce::produce(&p, &s.topic, s.rate, Duration::from_secs(1), seq2, 32).await?;
    let want = caught_up + (seq3 - seq2) * s.clients as u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while totals.events.load(Ordering::Relaxed) < want && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop.send(true);
    let mut second = Vec::with_capacity(s.clients);
    for h in handles {
        second.push(h.await?);
    }
    let mut missing = 0u64;
    let mut dup = 0u64;
    let mut failed = 0usize;
    for (a, b) in first.iter().zip(&second) {
        missing += a.missing + b.missing + seq3.saturating_sub(b.next_seq.unwrap_or(seq0));
        dup += a.duplicated + b.duplicated;
        failed += usize::from(b.error.is_some() && b.events == 0);
    }
    let m = metrics_text(&s.admin).await;
    Ok(json!({
        "scenario": "reconnect-storm",
        "label": s.label,
        "machine": crate::report::machine(),
        "clients": s.clients,
        "events_during_restart": seq2 - seq1,
        "seconds_until_all_caught_up": all_live_s,
        "missing": missing,
        "duplicated": dup,
        "failed_reconnects": failed,
        "resumes_from_buffer": metric_sum(&m, "sse_bridge_resumes_total{outcome=\"buffer\""),
        "resumes_from_kafka_reads": metric_sum(&m, "sse_bridge_resumes_total{outcome=\"source\""),
        "resets": metric_sum(&m, "sse_bridge_resumes_total{outcome=\"reset\""),
        "shared_consumer_records": metric_sum(&m, "sse_bridge_source_records_total"),
    }))
}
