//! Open rate: how many streams per second the bridge opens for each way a client can
//! start (latest, earliest, last N, `since`, a resume by id), with the route's history
//! inside the replay buffer. Each mode opens N streams (at most 256 opening at once),
//! counts the time until every one has its `200` head, then closes them all.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::conn::source_addr;
use crate::http1;

/// One way of starting: a label, a path (with query) and request headers.
pub struct Mode {
    pub label: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

/// Open `clients` streams of `mode` on `server`; returns (opened, failed, seconds).
async fn run_mode(
    server: SocketAddr,
    mode: &Mode,
    clients: usize,
    sources: usize,
) -> (usize, usize, f64) {
    let sem = Arc::new(tokio::sync::Semaphore::new(256));
    let t0 = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for i in 0..clients {
        let permit = sem.clone().acquire_owned().await.expect("semaphore");
        let path = mode.path.clone();
        let headers = mode.headers.clone();
        let local = source_addr(i, sources, 1);
        tasks.push(tokio::spawn(async move {
            let r = async {
                let s = tokio::net::TcpSocket::new_v4()?;
                s.bind(local)?;
                let tcp = s.connect(server).await?;
                let h: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let (status, body) = http1::get(tcp, server, &path, &h).await?;
                anyhow::ensure!(status == 200, "status {status}");
                anyhow::Ok(body)
            }
            .await;
            drop(permit);
            r
        }));
    }
    let mut held = Vec::with_capacity(clients);
    let mut failed = 0;
    for t in tasks {
        match t.await {
            Ok(Ok(body)) => held.push(body),
            _ => failed += 1,
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let opened = held.len();
    drop(held);
    (opened, failed, secs)
}

/// Run every mode in turn and report streams opened per second, each against `latest`.
pub async fn run(
    server: SocketAddr,
    modes: &[Mode],
    clients: usize,
    sources: usize,
) -> anyhow::Result<Value> {
    let mut rows = Vec::new();
    let mut latest_rate = None;
    for m in modes {
        let (opened, failed, secs) = run_mode(server, m, clients, sources).await;
        let rate = opened as f64 / secs;
        if m.label == "latest" {
            latest_rate = Some(rate);
        }
        eprintln!(
            "{:<10} {opened:>6} opened {failed:>5} failed {secs:>7.2} s {rate:>9.0} streams/s",
            m.label
        );
        rows.push((m.label.clone(), opened, failed, secs, rate));
        // Let the closed streams go before the next mode.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let modes: Vec<Value> = rows
        .iter()
        .map(|(label, opened, failed, secs, rate)| {
            json!({
                "mode": label,
                "opened": opened,
                "failed": failed,
                "seconds": (secs * 100.0).round() / 100.0,
                "streams_per_s": rate.round(),
                "vs_latest": latest_rate.map(|l| (rate / l * 100.0).round() / 100.0),
            })
        })
        .collect();
    let within = rows.iter().all(|(_, _, failed, _, rate)| {
        *failed == 0 && latest_rate.is_some_and(|l| *rate >= 0.8 * l)
    });
    Ok(json!({
        "scenario": "open-rate",
        "clients_per_mode": clients,
        "modes": modes,
        "every_mode_within_80pct_of_latest": within,
    }))
}
