//! Soak: steady clients follow a route starting at `earliest` while events are produced
//! at a fixed rate, first alone, then while visitors keep arriving (N per second, each
//! reading from the earliest offset for up to 1.5 s, then leaving). Reports the steady
//! clients' loss, duplicates and latency in both runs, and the bridge's threads and RSS
//! over time (flat after the first minute is the target).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::conn::source_addr;
use crate::{http1, proc_stats, produce, Common};

/// What to run.
pub struct Soak {
    /// Stream URLs of the two routes (alone, with visitors), each on its own topic.
    pub urls: [String; 2],
    pub admin: String,
    pub pid: u32,
    pub brokers: String,
    pub topics: [String; 2],
    pub steady: usize,
    pub visitors_per_s: u64,
    pub rate: u64,
    pub duration: f64,
}

/// One run of `duration` seconds on its own route: steady clients (and visitors when
/// `visitors`); returns the figures.
async fn phase(s: &Soak, visitors: bool, label: &str) -> anyhow::Result<Value> {
    let k = usize::from(visitors);
    let (url, topic) = (&s.urls[k], &s.topics[k]);
    let p = produce::producer(&s.brokers)?;
    let seq0 = produce::produce(&p, topic, 10, Duration::from_millis(200), 0, 64).await?;
    let c = Common {
        url: vec![url.clone()],
        clients: s.steady,
        pid: vec![s.pid],
        sources: 4,
        source_base: 1,
        json: None,
        label: label.into(),
        hold: 5.0,
    };
    let (server, path) = crate::parse_url(url)?;
    let opened = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let visiting = visitors.then(|| {
        let (opened, refused, per_s) = (opened.clone(), refused.clone(), s.visitors_per_s);
        let path = path.clone();
        let mut stop_rx = stop_rx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(1000 / per_s.max(1)));
            let mut i = 0usize;
            loop {
                tokio::select! {
                    _ = stop_rx.changed() => return,
                    _ = tick.tick() => {}
                }
                i += 1;
                let (opened, refused, path) = (opened.clone(), refused.clone(), path.clone());
                let local = source_addr(i, 4, 20);
                tokio::spawn(async move {
                    let visit = async {
                        let sock = tokio::net::TcpSocket::new_v4()?;
                        sock.bind(local)?;
                        let tcp = sock.connect(server).await?;
                        let (status, mut body) = http1::get(tcp, server, &path, &[]).await?;
                        if status != 200 {
                            refused.fetch_add(1, Ordering::Relaxed);
                            return anyhow::Ok(());
                        }
                        opened.fetch_add(1, Ordering::Relaxed);
                        let stay = Duration::from_millis(fastrand_ms(1500));
                        let _ = tokio::time::timeout(stay, async {
                            while body.read(&mut |_: &[u8]| {}).await.unwrap_or(false) {}
                        })
                        .await;
                        Ok(())
                    };
                    let _ = visit.await;
                });
            }
        })
    });
    let samples: Arc<std::sync::Mutex<Vec<(f64, usize, u64)>>> = Arc::default();
    let sampler = {
        let (samples, pid, mut stop_rx) = (samples.clone(), s.pid, stop_rx.clone());
        tokio::spawn(async move {
            let t0 = tokio::time::Instant::now();
            loop {
                let rss = proc_stats::sample(&[pid]).rss_bytes;
                samples.lock().expect("not poisoned").push((
                    t0.elapsed().as_secs_f64(),
                    proc_stats::threads(pid),
                    rss,
                ));
                tokio::select! {
                    _ = stop_rx.changed() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        })
    };
    // Steady clients start at the earliest offset: what predates this run is not counted.
    let (topic_, rate, dur) = (topic.clone(), s.rate, Duration::from_secs_f64(s.duration));
    let steady = crate::fanout_measure(&c, s.rate, s.duration, seq0, async move {
        produce::produce(&p, &topic_, rate, dur, seq0, 64).await
    })
    .await?;
    let _ = stop.send(true);
    if let Some(v) = visiting {
        let _ = v.await;
    }
    let _ = sampler.await;
    let samples = samples.lock().expect("not poisoned").clone();
    let at = |t: f64| {
        samples
            .iter()
            .find(|(s, _, _)| *s >= t)
            .or(samples.last())
            .copied()
    };
    let mib = |b: u64| (b as f64 / 1048576.0 * 10.0).round() / 10.0;
    let (t1, th1, rss1) = at(60.0).unwrap_or_default();
    let (t2, th2, rss2) = samples.last().copied().unwrap_or_default();
    let m = crate::storm::metrics_text(&s.admin).await;
    let route = if visitors { "visited" } else { "alone" };
    let disconnects: Vec<&str> = m
        .lines()
        .filter(|l| {
            l.starts_with("sse_bridge_disconnects_total{")
                && l.contains(&format!("route=\"{route}\""))
        })
        .collect();
    Ok(json!({
        "label": label,
        "steady_clients": s.steady,
        "events": steady["produced"],
        "deliveries_expected": steady["expected_deliveries"],
        "missing": steady["missing"],
        "duplicated": steady["duplicated"],
        "latency_ms": steady["latency_ms"],
        "visitors_opened": opened.load(Ordering::Relaxed),
        "visitors_refused": refused.load(Ordering::Relaxed),
        "bridge_threads": { "at_s": t1.round(), "then": th1, "at_end_s": t2.round(), "end": th2,
                            "max": samples.iter().map(|s| s.1).max() },
        "bridge_rss_mib": { "at_s": t1.round(), "then": mib(rss1), "at_end_s": t2.round(), "end": mib(rss2),
                            "max": mib(samples.iter().map(|s| s.2).max().unwrap_or(0)) },
        "bridge_disconnects": disconnects,
        "catchup_refused": crate::storm::metric_sum(&m, &format!("sse_bridge_catchup_refused_total{{route=\"{route}\"")),
    }))
}

/// A random stay of up to `max` ms.
fn fastrand_ms(max: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    u64::from(nanos) % max.max(1)
}

/// Both runs: steady alone, then with visitors.
pub async fn run(s: Soak) -> anyhow::Result<Value> {
    let alone = phase(&s, false, "steady alone").await?;
    let visited = phase(&s, true, "steady with visitors").await?;
    let p99 = |v: &Value| v["latency_ms"]["p99"].as_f64().unwrap_or(f64::NAN);
    let ratio = p99(&visited) / p99(&alone).max(1.0);
    let lost = alone["missing"].as_u64().unwrap_or(u64::MAX)
        + visited["missing"].as_u64().unwrap_or(u64::MAX);
    let dup = alone["duplicated"].as_u64().unwrap_or(u64::MAX)
        + visited["duplicated"].as_u64().unwrap_or(u64::MAX);
    Ok(json!({
        "scenario": "soak",
        "machine": crate::report::machine(),
        "seconds_per_run": s.duration,
        "rate_events_per_s": s.rate,
        "visitors_per_s": s.visitors_per_s,
        "steady_lost": lost,
        "steady_duplicated": dup,
        "steady_p99_ms_alone": p99(&alone),
        "steady_p99_ms_with_visitors": p99(&visited),
        "p99_ratio": (ratio * 100.0).round() / 100.0,
        "runs": [alone, visited],
        "targets_met": lost == 0 && dup == 0 && ratio <= 2.0,
    }))
}
