//! Catch-up from behind the replay buffer, against the real broker: clients resuming
//! from far back share bounded readers; a flood of them that never read is refused or
//! cut off without growing the process, and everything they held is freed.

mod common;

use std::time::Duration;

use common::*;
use rdkafka::producer::FutureRecord;

const T: Duration = Duration::from_secs(30);

/// Produce `n` records of `size` bytes (`"{i}:xxx…"`) to partition 0, many in flight.
async fn produce_many(topic: &str, n: usize, size: usize) {
    let p = producer();
    let pad = "x".repeat(size);
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let sends = chunk.iter().map(|i| {
            let v = format!("{i}:{pad}");
            let p = &p;
            async move {
                p.send(
                    FutureRecord::<(), _>::to(topic).partition(0).payload(&v),
                    Duration::from_secs(10),
                )
                .await
                .expect("produced");
            }
        });
        futures::future::join_all(sends).await;
    }
}

/// Threads of this process (the bridge runs in it).
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// Send a stream request with `Last-Event-ID` and read only the status line.
async fn resume_without_reading(
    addr: std::net::SocketAddr,
    path: &str,
    id: &str,
) -> (tokio::net::TcpStream, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    // A small window, so an unread stream blocks the bridge's writes soon.
    sock.set_recv_buffer_size(4096).unwrap();
    let mut tcp = sock.connect(addr).await.unwrap();
    tcp.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nLast-Event-ID: {id}\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n") {
        if tcp.read(&mut b).await.unwrap_or(0) == 0 {
            break;
        }
        head.push(b[0]);
    }
    (tcp, String::from_utf8_lossy(&head).trim().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_resumers_that_never_read_is_bounded_and_freed() {
    let topic = unique("catchup-flood");
    create_topic(&topic, 1).await;
    const N: usize = 3000;
    produce_many(&topic, N, 2000).await;
    // The ring holds the last 50 records: resuming from the start reads Kafka.
    let toml = config("r", &topic, "replay = { max_events = 50 }").replace(
        "[server]\n",
        "[server]\nwrite_timeout = \"2s\"\n\
         catchup = { max_readers = 2, max_readers_per_route = 2, wait = \"1s\", buffer_events = 200 }\n",
    );
    let b = bridge(&toml).await;
    let admin = b.admin_addr;
    let before = threads();
    // 40 clients resume from "no topic known" (the earliest offsets) and never read.
    let mut held = Vec::new();
    let mut statuses = Vec::new();
    for _ in 0..40 {
        let (tcp, status) = resume_without_reading(b.http_addr, "/streams/r", "AWsA").await;
        statuses.push(status);
        held.push(tcp);
        let readers = metric(admin, "sse_bridge_catchup_readers{route=\"r\"}").await;
        assert!(readers <= 2.0, "{readers} catch-up readers, cap 2");
    }
    let ok = statuses.iter().filter(|s| s.contains(" 200 ")).count();
    let busy = statuses.iter().filter(|s| s.contains(" 503 ")).count();
    eprintln!("flood: {ok} streams opened, {busy} refused (catchup_busy)");
    assert_eq!(ok + busy, 40, "only 200 or 503: {statuses:?}");
    assert!(ok >= 1, "the first is served: {statuses:?}");
    let refused = metric(admin, "sse_bridge_catchup_refused_total{route=\"r\"}").await;
    assert_eq!(refused as usize, busy, "every 503 was catchup_busy");
    let grown = threads().saturating_sub(before);
    assert!(
        grown <= 30,
        "{grown} more threads for 40 resumers (one consumer each would be ~200)"
    );
    // The clients never read: the write deadline cuts them off and every reader stops.
    wait_metric(admin, "sse_bridge_catchup_readers{route=\"r\"}", |v| {
        v == 0.0
    })
    .await;
    wait_metric(admin, "sse_bridge_catchup_clients{route=\"r\"}", |v| {
        v == 0.0
    })
    .await;
    wait_metric(admin, "sse_bridge_catchup_buffer_bytes{route=\"r\"}", |v| {
        v == 0.0
    })
    .await;
    wait_metric(admin, "sse_bridge_connections_active{route=\"r\"}", |v| {
        v == 0.0
    })
    .await;
    drop(held);
    // An honest client resuming from the start still gets every record, in order.
    let mut c =
        SseClient::connect(&format!("http://{}/streams/r", b.http_addr), Some("AWsA")).await;
    assert_eq!(c.status, 200);
    let got = c.take(N, T).await;
    assert_eq!(got.len(), N);
    for (i, ev) in got.iter().enumerate() {
        assert!(ev.data.starts_with(&format!("{i}:")), "record {i} in order");
    }
    produce_text(&producer(), &topic, "live").await;
    assert_eq!(c.next(T).await.expect("live event").data, "live");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_resuming_from_one_place_share_one_reader() {
    let topic = unique("catchup-shared");
    create_topic(&topic, 1).await;
    const N: usize = 2000;
    produce_many(&topic, N, 200).await;
    let toml = config("r", &topic, "replay = { max_events = 50 }").replace(
        "[server]\n",
        "[server]\ncatchup = { max_readers = 1, max_readers_per_route = 1, wait = \"10s\" }\n",
    );
    let b = bridge(&toml).await;
    let url = format!("http://{}/streams/r", b.http_addr);
    // Ten readers at once, all from the start: with one reader allowed, they share it
    // or wait their turn; none is refused and each gets everything exactly once.
    let clients = (0..10).map(|_| {
        let url = url.clone();
        async move {
            let mut c = SseClient::connect(&url, Some("AWsA")).await;
            assert_eq!(c.status, 200);
            c.take(N, T).await
        }
    });
    for got in futures::future::join_all(clients).await {
        assert_eq!(got.len(), N);
        for (i, ev) in got.iter().enumerate() {
            assert!(ev.data.starts_with(&format!("{i}:")), "record {i} in order");
        }
    }
    let refused = metric(
        b.admin_addr,
        "sse_bridge_catchup_refused_total{route=\"r\"}",
    )
    .await;
    assert_eq!(refused, 0.0);
    // Ten clients, N records each behind the buffer: far fewer than 10 × N reads.
    let read = metric(
        b.admin_addr,
        "sse_bridge_catchup_events_read_total{route=\"r\"}",
    )
    .await;
    eprintln!("catch-up: {read} events read from Kafka for 10 clients × {N}");
    assert!(read <= 3.0 * N as f64, "{read} events read: not shared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_over_its_memory_budget_refuses_new_catchups_and_writes_one_event_at_a_time() {
    let topic = unique("catchup-budget");
    create_topic(&topic, 1).await;
    const N: usize = 3000;
    produce_many(&topic, N, 2000).await;
    // The route's budget holds exactly one reader (its 64 KiB buffer and librdkafka's
    // prefetch of at least one fetch, 1,000,000 bytes): nothing is left for batching
    // client writes while a reader runs.
    let toml = config(
        "r",
        &topic,
        "replay = { max_events = 50 }\nmemory_budget = 1065536",
    )
    .replace(
        "[server]\n",
        "[server]\nwrite_timeout = \"30s\"\n\
         catchup = { max_readers = 4, max_readers_per_route = 4, wait = \"1s\", buffer_events = 200, buffer_bytes = 65536 }\n",
    );
    let b = bridge(&toml).await;
    let admin = b.admin_addr;
    let url = format!("http://{}/streams/r", b.http_addr);
    assert_eq!(
        metric(admin, "sse_bridge_memory_budget_bytes{route=\"r\"}").await,
        1065536.0
    );
    assert!(metric(admin, "sse_bridge_process_memory_budget_bytes").await >= 1065536.0);
    // A position 2,500 records in (behind the buffer), taken by an honest reader.
    let far = {
        let mut c = SseClient::connect(&url, Some("AWsA")).await;
        assert_eq!(c.status, 200);
        let got = c.take(2501, T).await;
        got.last().unwrap().id.clone()
    };
    wait_metric(admin, "sse_bridge_catchup_readers{route=\"r\"}", |v| {
        v == 0.0
    })
    .await;
    // One client holds a reader from there and never reads.
    let (hold, status) = resume_without_reading(b.http_addr, "/streams/r", &far).await;
    assert!(status.contains(" 200 "), "{status}");
    wait_metric(admin, "sse_bridge_catchup_readers{route=\"r\"}", |v| {
        v == 1.0
    })
    .await;
    let used = metric(admin, "sse_bridge_memory_budget_used_bytes{route=\"r\"}").await;
    assert!(
        (1065536.0..=1065536.0).contains(&used),
        "the reader holds the whole budget: {used}"
    );
    // A client from the start needs a reader of its own (the running one starts after
    // it): free by count (4 allowed), but not by memory. Refused.
    let c = SseClient::connect(&url, Some("AWsA")).await;
    assert_eq!(c.status, 503);
    assert_eq!(c.error_code(), "catchup_busy");
    assert_eq!(
        metric(admin, "sse_bridge_catchup_readers{route=\"r\"}").await,
        1.0
    );
    // Once the holder leaves, its reader and memory are freed and the client is served,
    // one event per write (the new reader holds the budget), nothing lost.
    drop(hold);
    wait_metric(
        admin,
        "sse_bridge_memory_budget_used_bytes{route=\"r\"}",
        |v| v == 0.0,
    )
    .await;
    let mut c = SseClient::connect(&url, Some("AWsA")).await;
    assert_eq!(c.status, 200);
    let got = c.take(N, T).await;
    assert_eq!(got.len(), N);
    for (i, ev) in got.iter().enumerate() {
        assert!(ev.data.starts_with(&format!("{i}:")), "record {i} in order");
    }
    let limited = metric(admin, "sse_bridge_memory_budget_limited_total{route=\"r\"}").await;
    assert!(
        limited > 0.0,
        "writes were cut to one event for want of budget"
    );
    c.expect_quiet(Duration::from_millis(300)).await;
}
