//! Client lifecycle against the real broker: heartbeats carry the position, a slow client
//! is cut off without slowing a fast one, the connection gauge returns to zero, and
//! shutdown ends streams.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const T: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_carries_the_current_position_without_an_event() {
    let topic = unique("heartbeat");
    create_topic(&topic, 2).await;
    let p = producer();
    let b = bridge(&config("r", &topic, "")).await;
    let url = format!("http://{}/streams/r", b.http_addr);
    let mut watcher = SseClient::connect(&url, None).await;
    let mut idle = SseClient::connect(&url, None).await;
    // A client connected before any event learns the current position from a heartbeat.
    idle.expect_quiet(Duration::from_millis(1300)).await;
    let start = idle.last_id();
    assert!(!start.is_empty(), "heartbeat set the last event id");
    produce_n(&p, &topic, 2, "x", 4).await;
    let evs = watcher.take(4, T).await;
    // A client that has since moved on resumes from the heartbeat's id: nothing repeats.
    let pos = evs.last().unwrap().id.clone();
    let mut resumed = SseClient::connect(&url, Some(&start)).await;
    assert_eq!(resumed.take(4, T).await.len(), 4);
    let mut again = SseClient::connect(&url, Some(&pos)).await;
    again.expect_quiet(Duration::from_millis(1300)).await;
    assert_eq!(
        again.last_id(),
        pos,
        "heartbeat id equals the position after the last event"
    );
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_client_is_disconnected_and_fast_client_keeps_receiving() {
    let topic = unique("slow");
    create_topic(&topic, 1).await;
    let b = bridge(&config(
        "r",
        &topic,
        "replay = { max_events = 2000 }\nmax_client_lag = 600",
    ))
    .await;
    let url = format!("http://{}/streams/r", b.http_addr);

    // The slow client: a raw socket that never reads after the request.
    let mut slow = tokio::net::TcpStream::connect(b.http_addr).await.unwrap();
    slow.write_all(b"GET /streams/r HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut fast = SseClient::connect(&url, None).await;
    let gauge = "sse_bridge_connections_active{route=\"r\"}";
    let deadline = tokio::time::Instant::now() + T;
    while metric(b.admin_addr, gauge).await < 2.0 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let p = producer();
    let big = "x".repeat(16 * 1024);
    // Batches of 100: the fast client keeps up (never more than a batch behind) while the
    // slow one falls further behind with every batch.
    for batch in 0..20 {
        for i in 0..100 {
            let v = format!("{}:{big}", batch * 100 + i);
            produce_text(&p, &topic, &v).await;
        }
        let got = fast.take(100, T).await;
        assert!(
            got[0].data.starts_with(&format!("{}:", batch * 100)),
            "fast client in order, nothing lost"
        );
    }
    let slow_series = "sse_bridge_disconnects_total{reason=\"slow_client\",route=\"r\"}";
    // The series appears when the slow client is cut off.
    wait_metric(b.admin_addr, slow_series, |v| v == 1.0).await;
    // The slow client's socket is closed by the server once it drains what was queued.
    let mut buf = vec![0u8; 1 << 20];
    let drained = tokio::time::timeout(T, async {
        loop {
            match slow.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "server closed the slow client's stream");
    assert_eq!(
        metric(b.admin_addr, gauge).await,
        1.0,
        "the fast client is still connected"
    );
    drop(fast);
    let deadline = tokio::time::Instant::now() + T;
    while metric(b.admin_addr, gauge).await != 0.0 {
        assert!(tokio::time::Instant::now() < deadline, "gauge back to zero");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        metric(
            b.admin_addr,
            "sse_bridge_connections_opened_total{route=\"r\"}"
        )
        .await,
        2.0
    );
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_leaving_free_their_connections_and_shutdown_ends_streams() {
    let topic = unique("leave");
    create_topic(&topic, 1).await;
    let b = bridge(&config("r", &topic, "")).await;
    let url = format!("http://{}/streams/r", b.http_addr);
    let gauge = "sse_bridge_connections_active{route=\"r\"}";
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(SseClient::connect(&url, None).await);
    }
    assert_eq!(metric(b.admin_addr, gauge).await, 20.0);
    clients.truncate(5);
    let deadline = tokio::time::Instant::now() + T;
    while metric(b.admin_addr, gauge).await != 5.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gauge follows clients leaving"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let admin = b.admin_addr;
    let shutdown = tokio::spawn(b.shutdown());
    for c in clients.iter_mut() {
        assert!(
            c.wait_end(Duration::from_secs(5)).await,
            "stream ended on shutdown"
        );
    }
    shutdown.await.unwrap();
    assert!(
        reqwest::get(format!("http://{admin}/readyz"))
            .await
            .is_err(),
        "admin closed after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_capacity_connections_get_503_not_a_stall() {
    let topic = unique("capacity");
    create_topic(&topic, 1).await;
    let toml = config("r", &topic, "").replace(
        "source_wait = \"3s\"",
        "source_wait = \"3s\"\nmax_connections = 3",
    );
    let b = bridge(&toml).await;
    let url = format!("http://{}/streams/r", b.http_addr);
    let mut held = Vec::new();
    for _ in 0..3 {
        let c = SseClient::connect(&url, None).await;
        assert_eq!(c.status, 200);
        held.push(c);
    }
    let r = reqwest::get(&url).await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["error"],
        "over_capacity"
    );
    assert_eq!(
        metric(
            b.admin_addr,
            "sse_bridge_requests_rejected_total{status=\"503\"}"
        )
        .await,
        1.0
    );
    held.pop();
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let c = SseClient::connect(&url, None).await;
        if c.status == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a freed slot is reused"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    b.shutdown().await;
}
