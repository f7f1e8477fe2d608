//! The fan-out writers against the real broker: they deliver exactly what per-client
//! writes deliver; a client that stops reading is handed back to its own task, loses
//! nothing, and rejoins a writer once it has caught up.

mod common;

use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(30);
const PARKED: &str = "sse_bridge_fanout_clients{route=\"r\"}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_and_per_client_writes_deliver_the_same_stream() {
    let topic = unique("fanout-same");
    create_topic(&topic, 3).await;
    let writers = bridge(&config("r", &topic, "")).await;
    let own = bridge(&config("r", &topic, "").replace(
        "source_wait = \"3s\"",
        "source_wait = \"3s\"\nfanout_writers = 0",
    ))
    .await;
    let mut clients = Vec::new();
    for b in [&writers, &own] {
        for _ in 0..4 {
            let url = format!("http://{}/streams/r", b.http_addr);
            clients.push(SseClient::connect(&url, None).await);
        }
    }
    wait_metric(writers.admin_addr, PARKED, |v| v == 4.0).await;
    assert_eq!(metric(own.admin_addr, PARKED).await, 0.0);
    let p = producer();
    produce_n(&p, &topic, 3, "e", 150).await;
    let mut seen: Vec<Vec<(String, String)>> = Vec::new();
    for c in clients.iter_mut() {
        let evs = c.take(150, T).await;
        seen.push(evs.into_iter().map(|e| (e.id, e.data)).collect());
    }
    for (i, s) in seen.iter().enumerate() {
        assert_eq!(s.len(), 150, "client {i}");
        let mut data: Vec<&str> = s.iter().map(|(_, d)| d.as_str()).collect();
        data.sort();
        data.dedup();
        assert_eq!(data.len(), 150, "client {i}: every event once");
    }
    // Ids are the route's position, so both bridges send the same ids (each client's
    // order of partitions is the bridge's, which may differ between bridges).
    for s in &seen[1..4] {
        assert_eq!(s, &seen[0], "clients of the writers agree");
    }
    for s in &seen[5..8] {
        assert_eq!(s, &seen[4], "clients of per-client writes agree");
    }
    let last = |s: &Vec<(String, String)>| s.last().unwrap().0.clone();
    assert_eq!(last(&seen[0]), last(&seen[4]), "same final position");
    writers.shutdown().await;
    own.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_handed_back_and_loses_nothing() {
    let topic = unique("fanout-pause");
    create_topic(&topic, 1).await;
    let b = bridge(&config(
        "r",
        &topic,
        "replay = { max_events = 2000 }\nmax_client_lag = 1500",
    ))
    .await;
    let url = format!("http://{}/streams/r", b.http_addr);
    let mut paused = SseClient::connect(&url, None).await;
    let mut reader = SseClient::connect(&url, None).await;
    wait_metric(b.admin_addr, PARKED, |v| v == 2.0).await;

    // 400 × 32 KiB: far more than the socket buffers hold, so the writer cannot give the
    // paused client everything and hands it back to its own task.
    let p = producer();
    let big = "x".repeat(32 * 1024);
    for batch in 0..8 {
        for i in 0..50 {
            let v = format!("{}:{big}", batch * 50 + i);
            produce_text(&p, &topic, &v).await;
        }
        let got = reader.take(50, T).await;
        assert!(got[0].data.starts_with(&format!("{}:", batch * 50)));
    }
    assert!(
        metric(b.admin_addr, PARKED).await < 2.0,
        "the paused client left its writer"
    );
    let got = paused.take(400, T).await;
    for (i, e) in got.iter().enumerate() {
        assert!(e.data.starts_with(&format!("{i}:")), "event {i} in order");
    }
    // Caught up again: back with a writer, and live events still arrive once each.
    wait_metric(b.admin_addr, PARKED, |v| v == 2.0).await;
    produce_n(&p, &topic, 1, "after", 3).await;
    assert_eq!(paused.take(3, T).await.len(), 3);
    assert_eq!(reader.take(3, T).await.len(), 3);
    paused.expect_quiet(Duration::from_millis(300)).await;
    // Neither stream was cut off or reopened: both still open, two ever opened, and when
    // both leave, both are counted as closed by the client (not as `slow_client`).
    assert_eq!(
        metric(b.admin_addr, "sse_bridge_connections_active{route=\"r\"}").await,
        2.0
    );
    assert_eq!(
        metric(
            b.admin_addr,
            "sse_bridge_connections_opened_total{route=\"r\"}"
        )
        .await,
        2.0
    );
    drop((paused, reader));
    let closed = "sse_bridge_disconnects_total{reason=\"client_closed\",route=\"r\"}";
    wait_metric(b.admin_addr, closed, |v| v == 2.0).await;
    assert_eq!(
        metrics_text(b.admin_addr)
            .await
            .lines()
            .filter(|l| l.starts_with("sse_bridge_disconnects_total{"))
            .collect::<Vec<_>>(),
        [format!("{closed} 2")],
        "no other disconnect reason"
    );
    b.shutdown().await;
}
