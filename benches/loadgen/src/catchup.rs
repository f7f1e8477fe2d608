//! Catch-up storm: C clients resume at once from one position far behind the replay
//! buffer. Reports the time until every client has read up to the head, events lost or
//! duplicated, and how many events the bridge read from Kafka for them against the size
//! of the range behind its buffer (1.0: the range was read once for everyone).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::conn::{self, Totals};
use crate::storm::{metric_sum, metrics_text};

/// Inputs of a catch-up storm.
pub struct Catchup {
    pub url: String,
    pub admin: String,
    pub pid: u32,
    pub topic: String,
    pub clients: usize,
    pub sources: usize,
    /// First loopback source address (127.0.0.N), to run several generators side by side.
    pub source_base: u8,
    /// Sequence (= offset of the one partition) the clients resume from.
    pub from: u64,
    /// Sequence after the last record (the head).
    pub head: u64,
}

pub async fn run(c: Catchup) -> anyhow::Result<Value> {
    let (server, path) = crate::parse_url(&c.url)?;
    let before = metrics_text(&c.admin).await;
    let read0 = metric_sum(&before, "sse_bridge_catchup_events_read_total{");
    let in_buffer = metric_sum(&before, "sse_bridge_replay_buffer_events{");
    let id = sse_bridge::event_id::encode(&sse_bridge::source::kafka::KafkaPosition::from_topics(
        vec![(c.topic.clone(), vec![c.from as i64])],
    ));
    let totals = Arc::new(Totals::default());
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    // Everyone at once.
    let sem = Arc::new(tokio::sync::Semaphore::new(c.clients));
    let t0 = tokio::time::Instant::now();
    let mut handles = Vec::with_capacity(c.clients);
    for i in 0..c.clients {
        let permit = sem.clone().acquire_owned().await?;
        handles.push(tokio::spawn(conn::run(
            server,
            path.clone(),
            conn::source_addr(i, c.sources, c.source_base),
            Some(id.clone()),
            totals.clone(),
            stop_rx.clone(),
            Some(c.from),
            None,
            permit,
        )));
    }
    let want = (c.head - c.from) * c.clients as u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    let mut peak_rss = 0;
    let mut peak_readers = 0f64;
    while totals.events.load(Ordering::Relaxed) < want
        && totals.failed.load(Ordering::Relaxed) == 0
        && tokio::time::Instant::now() < deadline
    {
        peak_rss = peak_rss.max(crate::proc_stats::sample(&[c.pid]).rss_bytes);
        let m = metrics_text(&c.admin).await;
        peak_readers = f64::max(peak_readers, metric_sum(&m, "sse_bridge_catchup_readers{"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let all_live_s = t0.elapsed().as_secs_f64();
    let _ = stop.send(true);
    let mut missing = 0u64;
    let mut dup = 0u64;
    let mut failed = 0usize;
    let mut errors = Vec::new();
    for h in handles {
        let r = h.await?;
        missing += r.missing + c.head.saturating_sub(r.next_seq.unwrap_or(c.from));
        dup += r.duplicated;
        if let Some(e) = r.error {
            failed += 1;
            if errors.len() < 5 {
                errors.push(e);
            }
        }
    }
    let after = metrics_text(&c.admin).await;
    let read = metric_sum(&after, "sse_bridge_catchup_events_read_total{") - read0;
    // What lay behind the buffer when the clients came.
    let behind = (c.head - c.from) as f64 - in_buffer;
    Ok(json!({
        "scenario": "catchup",
        "machine": crate::report::machine(),
        "clients": c.clients,
        "events_behind_head": c.head - c.from,
        "events_behind_buffer": behind,
        "seconds_until_all_at_head": (all_live_s * 100.0).round() / 100.0,
        "deliveries": totals.events.load(Ordering::Relaxed),
        "missing": missing,
        "duplicated": dup,
        "failed": failed,
        "errors_sample": errors,
        "kafka_events_read_by_catchup": read,
        "kafka_read_ratio": (read / behind.max(1.0) * 100.0).round() / 100.0,
        "catchup_readers_peak": peak_readers,
        "catchup_refused": metric_sum(&after, "sse_bridge_catchup_refused_total{"),
        "bridge_disconnects": after
            .lines()
            .filter(|l| l.starts_with("sse_bridge_disconnects_total{"))
            .collect::<Vec<_>>(),
        "catchup_readers_started": metric_sum(&after, "sse_bridge_catchup_readers_started_total{"),
        "writes_cut_for_budget": metric_sum(&after, "sse_bridge_memory_budget_limited_total{"),
        "requests_rejected": after
            .lines()
            .filter(|l| l.starts_with("sse_bridge_requests_rejected_total{"))
            .collect::<Vec<_>>(),
        "bridge_rss_mib_peak": (peak_rss as f64 / 1048576.0).round(),
        "targets_met": missing == 0 && dup == 0 && failed == 0 && read / behind.max(1.0) <= 3.0,
    }))
}
