//! Turning connection results into figures: printed, and written as JSON.

use serde_json::{json, Value};

use crate::conn::ConnResult;
use crate::proc_stats::Sample;

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

/// The machine: CPU model, cores, memory.
pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|s| s.trim_start_matches([' ', '\t', ':']).to_owned());
    let cores = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let mem_kb = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
    });
    json!({ "cpu": model, "cores": cores, "memory_gib": mem_kb.map(|k| (k as f64 / 1048576.0 * 10.0).round() / 10.0) })
}

/// Figures of an idle run.
pub fn idle(
    label: &str,
    clients: usize,
    failed: u64,
    before: Sample,
    peak: u64,
    connect_s: f64,
    results: &[ConnResult],
) -> Value {
    let per_conn = (peak.saturating_sub(before.rss_bytes)) as f64 / clients.max(1) as f64;
    let with_heartbeat = results.iter().filter(|r| !r.last_id.is_empty()).count();
    json!({
        "scenario": "idle",
        "label": label,
        "machine": machine(),
        "clients": clients,
        "failed": failed,
        "connect_seconds": connect_s,
        "server_rss_before_mib": before.rss_bytes as f64 / 1048576.0,
        "server_rss_peak_mib": peak as f64 / 1048576.0,
        "server_bytes_per_connection": per_conn.round(),
        "server_kib_per_connection": (per_conn / 1024.0 * 100.0).round() / 100.0,
        "connections_with_heartbeat_id": with_heartbeat,
    })
}

/// Inputs of [`fanout`].
pub struct FanoutInput<'a> {
    pub label: &'a str,
    pub clients: usize,
    pub rate: u64,
    pub produced: u64,
    pub seq0: u64,
    pub produce_s: f64,
    pub elapsed_s: f64,
    pub before: Sample,
    pub connected: Sample,
    pub after: Sample,
    pub peak_rss: u64,
    pub results: &'a [ConnResult],
}

/// Figures of a fan-out run.
pub fn fanout(i: FanoutInput<'_>) -> Value {
    let mut lat: Vec<u32> = i
        .results
        .iter()
        .flat_map(|r| r.latencies_us.iter().copied())
        .collect();
    lat.sort_unstable();
    let delivered: u64 = i.results.iter().map(|r| r.events).sum();
    let end = i.seq0 + i.produced;
    let mut missing = 0u64;
    let mut dup = 0u64;
    let mut lossy = 0usize;
    for r in i.results {
        // Every connection was live before the first event: it expects seq0..end.
        let m = r.missing + end.saturating_sub(r.next_seq.unwrap_or(i.seq0));
        if m > 0 || r.duplicated > 0 || r.error.is_some() {
            lossy += 1;
        }
        missing += m;
        dup += r.duplicated;
    }
    let cpu = i.after.cpu_seconds - i.connected.cpu_seconds;
    let errors: Vec<&str> = i
        .results
        .iter()
        .filter_map(|r| r.error.as_deref())
        .take(5)
        .collect();
    json!({
        "scenario": "fanout",
        "label": i.label,
        "machine": machine(),
        "clients": i.clients,
        "rate_events_per_s": i.rate,
        "produced": i.produced,
        "expected_deliveries": i.produced * i.clients as u64,
        "delivered": delivered,
        "missing": missing,
        "duplicated": dup,
        "connections_with_loss_or_error": lossy,
        "errors_sample": errors,
        "produce_seconds": i.produce_s,
        // A publisher that waits on each publish (Nchan's HTTP endpoint answers after
        // fanning out) falls behind the offered rate when the server saturates.
        "achieved_rate_events_per_s": i.produced as f64 / i.produce_s.max(1e-9),
        "deliveries_per_second": delivered as f64 / i.produce_s.max(1e-9),
        "latency_ms": { "p50": percentile(&lat, 0.50), "p99": percentile(&lat, 0.99), "max": lat.last().map_or(f64::NAN, |m| f64::from(*m) / 1000.0) },
        "server_cpu_seconds": cpu,
        "deliveries_per_server_cpu_second": if cpu > 0.0 { delivered as f64 / cpu } else { f64::NAN },
        "server_rss_before_mib": i.before.rss_bytes as f64 / 1048576.0,
        "server_rss_connected_mib": i.connected.rss_bytes as f64 / 1048576.0,
        "server_rss_peak_mib": i.peak_rss as f64 / 1048576.0,
        "server_kib_per_connection": ((i.connected.rss_bytes.saturating_sub(i.before.rss_bytes)) as f64 / i.clients.max(1) as f64 / 1024.0 * 100.0).round() / 100.0,
        "elapsed_seconds": i.elapsed_s,
    })
}

/// Print `v` and write it to `path`.
pub fn emit(v: &Value, path: Option<&std::path::Path>) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(v)?;
    println!("{text}");
    if let Some(p) = path {
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(p, text)?;
    }
    Ok(())
}
