//! Resumption against the real broker: from the replay buffer, from Kafka when the buffer
//! no longer covers the position, across a bridge process restart, from a time, and the
//! explicit reset when a position cannot be served.

mod common;

use std::time::Duration;

use common::*;
use sse_bridge::sse::parse::Event;

const T: Duration = Duration::from_secs(20);

fn datas(evs: &[Event]) -> Vec<String> {
    let mut v: Vec<String> = evs.iter().map(|e| e.data.clone()).collect();
    v.sort();
    v
}

/// Read k events, drop, produce more, resume with the last id: exactly the rest.
async fn resume_case(replay: &str, want_outcome: &str, records_read_by_bridge: f64) {
    let topic = unique("resume");
    create_topic(&topic, 3).await;
    let p = producer();
    let mut sent = produce_n(&p, &topic, 3, "a", 30).await;
    let b = bridge(&config(
        "r",
        &topic,
        &format!("start = \"earliest\"\n{replay}"),
    ))
    .await;
    let url = format!("http://{}/streams/r", b.http_addr);

    let mut c = SseClient::connect(&url, None).await;
    let first = c.take(12, T).await;
    let last = c.last_id();
    drop(c);
    sent.extend(produce_n(&p, &topic, 3, "b", 30).await);
    // Let the shared consumer read everything first, so the resume races nothing.
    let series = "sse_bridge_source_records_total{route=\"r\"}";
    let deadline = tokio::time::Instant::now() + T;
    while metric(b.admin_addr, series).await < records_read_by_bridge {
        assert!(
            tokio::time::Instant::now() < deadline,
            "bridge did not read the records"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut c2 = SseClient::connect(&url, Some(&last)).await;
    assert_eq!(c2.status, 200);
    let rest = c2.take(48, T).await;
    c2.expect_quiet(Duration::from_millis(700)).await;
    let mut all = first.clone();
    all.extend(rest);
    let mut want = sent.clone();
    want.sort();
    assert_eq!(datas(&all), want, "every event exactly once");
    let series = format!("sse_bridge_resumes_total{{outcome=\"{want_outcome}\",route=\"r\"}}");
    assert_eq!(metric(b.admin_addr, &series).await, 1.0, "{series}");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_served_from_the_replay_buffer() {
    // Warm start reads the 30 older records, then the 30 new ones.
    resume_case("", "buffer", 60.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_served_from_kafka_when_the_buffer_is_too_small() {
    resume_case(
        "replay = { max_events = 5, warm_start = false }\nmax_client_lag = 5",
        "source",
        30.0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_on_another_replica_which_is_ahead_or_behind() {
    let topic = unique("replica");
    create_topic(&topic, 2).await;
    let p = producer();
    let a = bridge(&config("r", &topic, "")).await;
    let b = bridge(&config(
        "r",
        &topic,
        "replay = { max_events = 3, warm_start = false }\nmax_client_lag = 3",
    ))
    .await;
    let mut ca = SseClient::connect(&format!("http://{}/streams/r", a.http_addr), None).await;
    let mut sent = produce_n(&p, &topic, 2, "x", 20).await;
    let first = ca.take(7, T).await;
    let last = ca.last_id();
    drop(ca);
    sent.extend(produce_n(&p, &topic, 2, "y", 10).await);
    let mut cb =
        SseClient::connect(&format!("http://{}/streams/r", b.http_addr), Some(&last)).await;
    let rest = cb.take(23, T).await;
    cb.expect_quiet(Duration::from_millis(500)).await;
    let mut all = first;
    all.extend(rest);
    sent.sort();
    assert_eq!(datas(&all), sent);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn since_starts_at_a_point_in_time() {
    let topic = unique("since");
    create_topic(&topic, 2).await;
    let p = producer();
    let t0 = chrono::Utc::now().timestamp_millis() - 60_000;
    for i in 0..6 {
        let v = format!("old-{i}");
        produce(
            &p,
            &topic,
            Rec {
                partition: i % 2,
                value: Some(v.as_bytes()),
                timestamp: Some(t0 + i64::from(i)),
                ..Rec::default()
            },
        )
        .await;
    }
    for i in 0..4 {
        let v = format!("new-{i}");
        produce(
            &p,
            &topic,
            Rec {
                partition: i % 2,
                value: Some(v.as_bytes()),
                timestamp: Some(t0 + 30_000 + i64::from(i)),
                ..Rec::default()
            },
        )
        .await;
    }
    let b = bridge(&config("r", &topic, "")).await;
    let since = chrono::DateTime::from_timestamp_millis(t0 + 10_000)
        .unwrap()
        .to_rfc3339();
    let url = format!(
        "http://{}/streams/r?since={}",
        b.http_addr,
        since.replace('+', "%2B")
    );
    let mut c = SseClient::connect(&url, None).await;
    assert_eq!(c.status, 200);
    let got = c.take(4, T).await;
    c.expect_quiet(Duration::from_millis(500)).await;
    assert_eq!(datas(&got), vec!["new-0", "new-1", "new-2", "new-3"]);
    let mut c = SseClient::connect(
        &format!("http://{}/streams/r?since={}", b.http_addr, t0 + 4),
        None,
    )
    .await;
    let got = c.take(6, T).await;
    assert_eq!(
        datas(&got),
        vec!["new-0", "new-1", "new-2", "new-3", "old-4", "old-5"]
    );
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_positions_earliest_and_last_n() {
    let topic = unique("start");
    create_topic(&topic, 2).await;
    let p = producer();
    produce_n(&p, &topic, 2, "h", 10).await;
    let toml = config("e", &topic, "start = \"earliest\"")
        + &format!("\n[[routes]]\nname = \"l\"\nstart = {{ last = 2 }}\nsource = {{ type = \"kafka\", brokers = [\"{}\"], topics = [\"{topic}\"] }}\n", broker());
    let b = bridge(&toml).await;
    let mut e = SseClient::connect(&format!("http://{}/streams/e", b.http_addr), None).await;
    assert_eq!(e.take(10, T).await.len(), 10);
    e.expect_quiet(Duration::from_millis(300)).await;
    let mut l = SseClient::connect(&format!("http://{}/streams/l", b.http_addr), None).await;
    let got = l.take(4, T).await;
    assert_eq!(datas(&got), vec!["h-6", "h-7", "h-8", "h-9"]);
    l.expect_quiet(Duration::from_millis(300)).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreated_topic_yields_reset_then_continues_from_earliest() {
    let topic = unique("reset");
    create_topic(&topic, 2).await;
    let p = producer();
    let b = bridge(&config("r", &topic, "")).await;
    let url = format!("http://{}/streams/r", b.http_addr);
    let mut c = SseClient::connect(&url, None).await;
    produce_n(&p, &topic, 2, "gen1", 10).await;
    c.take(10, T).await;
    let old = c.last_id();
    drop(c);
    let mut watcher = SseClient::connect(&url, Some(&old)).await;

    delete_topic(&topic).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    create_topic(&topic, 2).await;
    let sent = produce_n(&p, &topic, 2, "gen2", 2).await;

    // A client connected through the change is told live, by the shared reader.
    let mut live_resets = 0;
    let mut live = Vec::new();
    while live.len() < 2 {
        let e = watcher.next(T).await.expect("live reset and events");
        if e.event == "reset" {
            let j: serde_json::Value = serde_json::from_str(&e.data).unwrap();
            // Seen gone then back (`topic_recreated`), or only back with less data
            // (`log_recreated`), depending on when the metadata refresh ran.
            assert!(
                ["topic_recreated", "log_recreated"].contains(&j["reason"].as_str().unwrap()),
                "{j}"
            );
            assert_eq!(j["partitions"][0]["requested"], 5);
            assert_eq!(j["partitions"][0]["resumed_from"], 0);
            live_resets += 1;
        } else {
            assert_eq!(live_resets, 2, "resets come before the new log's events");
            live.push(e);
        }
    }
    assert_eq!(datas(&live), sent);

    let mut c = SseClient::connect(&url, Some(&old)).await;
    assert_eq!(c.status, 200);
    let reset = c.next(T).await.expect("reset event");
    assert_eq!(reset.event, "reset", "{reset:?}");
    let j: serde_json::Value = serde_json::from_str(&reset.data).unwrap();
    // A client reconnecting afterwards with its old id is told at connect time.
    assert_eq!(j["reason"], "position_unavailable", "{j}");
    let parts = j["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 2);
    assert!(
        parts
            .iter()
            .all(|p| p["requested"] == 5 && p["resumed_from"] == 0 && p["latest"] == 1),
        "{j}"
    );
    let got = c.take(2, T).await;
    assert_eq!(datas(&got), sent);
    c.expect_quiet(Duration::from_millis(500)).await;
    assert_eq!(
        metric(
            b.admin_addr,
            "sse_bridge_resumes_total{outcome=\"reset\",route=\"r\"}"
        )
        .await,
        1.0
    );
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_process_restart_loses_nothing() {
    let topic = unique("restart");
    create_topic(&topic, 3).await;
    let p = producer();
    let admin_port = fixed_port();
    let port = fixed_port();
    let toml = on_ports(&config("r", &topic, ""), port, admin_port);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bridge.toml");
    std::fs::write(&cfg, toml).unwrap();
    let spawn = || spawn_bridge(&cfg);
    let ready = format!("http://127.0.0.1:{admin_port}/readyz");
    let url = format!("http://127.0.0.1:{port}/streams/r");

    let mut proc1 = spawn();
    wait_ready(&ready).await;
    let mut c = SseClient::connect(&url, None).await;
    let mut sent = produce_n(&p, &topic, 3, "before", 20).await;
    let first = c.take(20, T).await;
    let last = c.last_id();
    // SIGTERM: graceful shutdown closes the stream.
    std::process::Command::new("kill")
        .arg(proc1.0.id().to_string())
        .status()
        .unwrap();
    assert!(
        c.wait_end(Duration::from_secs(10)).await,
        "stream closed on shutdown"
    );
    assert!(proc1.0.wait().unwrap().success());
    sent.extend(produce_n(&p, &topic, 3, "during", 15).await);

    let mut proc2 = spawn();
    wait_ready(&ready).await;
    let mut c = SseClient::connect(&url, Some(&last)).await;
    sent.extend(produce_n(&p, &topic, 3, "after", 5).await);
    let rest = c.take(20, T).await;
    c.expect_quiet(Duration::from_millis(500)).await;
    let mut all = first;
    all.extend(rest);
    sent.sort();
    assert_eq!(datas(&all), sent);
    proc2.stop();
}
