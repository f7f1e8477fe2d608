//! Hostile input against the real broker, each case asserting the documented answer, and
//! a normal client still served afterwards: duplicated `Last-Event-ID` or `Authorization`
//! headers, records whose event-name header names one of the bridge's own events,
//! refusals that must not leak internal detail, and streams that say their connection
//! closes with them.

mod common;

use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_headers_are_refused() {
    let topic = unique("hostile-dup");
    create_topic(&topic, 1).await;
    let b = bridge(&config("r", &topic, "")).await;
    let url = format!("http://{}/streams/r", b.http_addr);
    let id = "AWsBAXQBBg";
    for (name, a, b2) in [
        ("Last-Event-ID", id, id),
        ("Authorization", "Bearer a", "Bearer b"),
    ] {
        let r = reqwest::Client::new()
            .get(&url)
            .header(name, a)
            .header(name, b2)
            .send()
            .await
            .unwrap();
        assert_eq!(
            error_of(r).await,
            (400, "duplicate_header".to_owned()),
            "{name} twice"
        );
    }
    // One of each is fine, and the stream is announced to end with its connection.
    let mut c = SseClient::connect(&url, None).await;
    assert_eq!(c.status, 200);
    assert_eq!(c.headers["connection"], "close");
    let p = producer();
    produce_text(&p, &topic, "still-served").await;
    let ev = c.next(T).await.expect("event");
    assert_eq!(ev.data, "still-served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_cannot_name_the_bridges_own_events() {
    let topic = unique("hostile-names");
    create_topic(&topic, 1).await;
    let b = bridge(&config("r", &topic, "event_name = { header = \"type\" }")).await;
    let url = format!("http://{}/streams/r", b.http_addr);
    let mut c = SseClient::connect(&url, None).await;
    let p = producer();
    for name in ["reset", "expired", "binary", "delete", "order"] {
        produce(
            &p,
            &topic,
            Rec {
                value: Some(name.as_bytes()),
                headers: vec![("type", name.as_bytes())],
                ..Rec::default()
            },
        )
        .await;
    }
    let mut got = Vec::new();
    for _ in 0..5 {
        let ev = c.next(T).await.expect("event");
        got.push((ev.event, ev.data));
    }
    assert_eq!(
        got,
        vec![
            ("record.reset".to_owned(), "reset".to_owned()),
            ("record.expired".to_owned(), "expired".to_owned()),
            ("record.binary".to_owned(), "binary".to_owned()),
            ("record.delete".to_owned(), "delete".to_owned()),
            ("order".to_owned(), "order".to_owned()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_carry_no_internal_detail() {
    let good = unique("hostile-good");
    create_topic(&good, 1).await;
    let missing = unique("hostile-missing-topic");
    let toml = config("r", &good, "")
        + &format!(
            "\n[[routes]]\nname = \"gone\"\nsource = {{ type = \"kafka\", brokers = [\"{}\"], topics = [\"{missing}\"] }}\n",
            broker()
        );
    init_logs();
    let b = sse_bridge::start(settings(&toml)).await.expect("starts");
    // The route whose topic does not exist is refused after `source_wait`, saying only
    // that it cannot serve now; the cause is on the admin server's /readyz.
    let r = reqwest::get(format!("http://{}/streams/gone", b.http_addr))
        .await
        .unwrap();
    assert_eq!(r.headers()["retry-after"], "2");
    let body = r.text().await.unwrap();
    let j: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(j["error"], "source_unavailable", "{j}");
    assert!(
        !body.contains(&missing) && !body.contains("exist") && !body.contains("kafka"),
        "internal detail in a public error: {body}"
    );
    let ready: serde_json::Value = readyz(b.admin_addr).await;
    let gone = ready["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == "gone")
        .unwrap()
        .clone();
    assert!(
        gone["error"].as_str().unwrap_or("").contains(&missing),
        "the operator sees the cause: {gone}"
    );
    // The other route serves as ever.
    wait_until_route_ready(b.admin_addr, "r").await;
    let mut c = SseClient::connect(&format!("http://{}/streams/r", b.http_addr), None).await;
    produce_text(&producer(), &good, "fine").await;
    assert_eq!(c.next(T).await.expect("event").data, "fine");
}

/// Wait until `/readyz` lists route `name` as ready.
async fn wait_until_route_ready(admin: std::net::SocketAddr, name: &str) {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let j: serde_json::Value = readyz(admin).await;
        let ready = j["routes"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["route"] == name && r["ready"] == true);
        if ready {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} never ready: {j}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Write `parts` to a new connection one after another (each its own write, a pause
/// between), then read the whole answer (the server closes after it).
async fn trickle(addr: std::net::SocketAddr, parts: &[Vec<u8>]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    for p in parts {
        if tcp.write_all(p).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut out = Vec::new();
    let mut b = [0u8; 4096];
    // The status line and headers are enough.
    let _ = tokio::time::timeout(T, async {
        while !out.windows(4).any(|w| w == b"\r\n\r\n") {
            match tcp.read(&mut b).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&b[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_head_limit_holds_however_the_head_arrives() {
    let topic = unique("hostile-head");
    create_topic(&topic, 1).await;
    let b = bridge(&config("r", &topic, "")).await;
    let filler = |n: usize| format!("x-fill: {}\r\n", "a".repeat(n)).into_bytes();
    for path in ["/streams/r", "/console/api/routes", "/nope"] {
        // 25 KiB in three writes, the empty line only in the last.
        let parts = vec![
            [
                format!("GET {path} HTTP/1.1\r\nHost: x\r\n").into_bytes(),
                filler(8000),
            ]
            .concat(),
            filler(8000),
            [filler(8000), b"\r\n".to_vec()].concat(),
        ];
        let answer = trickle(b.http_addr, &parts).await;
        assert!(
            answer.starts_with("HTTP/1.1 431"),
            "{path}, in 3 writes: {answer}"
        );
        // 20 KiB in one write.
        let one = vec![[
            format!("GET {path} HTTP/1.1\r\nHost: x\r\n").into_bytes(),
            filler(20_000),
            b"\r\n".to_vec(),
        ]
        .concat()];
        let answer = trickle(b.http_addr, &one).await;
        assert!(
            answer.starts_with("HTTP/1.1 431"),
            "{path}, in 1 write: {answer}"
        );
    }
    // A head just within the limit is served.
    let ok = vec![[
        b"GET /streams/r HTTP/1.1\r\nHost: x\r\n".to_vec(),
        filler(15_000),
        b"\r\n".to_vec(),
    ]
    .concat()];
    let answer = trickle(b.http_addr, &ok).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_lf_heads_are_read() {
    let topic = unique("hostile-lf");
    create_topic(&topic, 1).await;
    let b = bridge(&config("r", &topic, "")).await;
    let started = tokio::time::Instant::now();
    let answer = trickle(
        b.http_addr,
        &[b"GET /streams/r HTTP/1.1\nHost: x\n\n".to_vec()],
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains("text/event-stream"),
        "answered as a stream: {answer}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered at once"
    );
    let answer = trickle(b.http_addr, &[b"GET /nope HTTP/1.1\nHost: x\n\n".to_vec()]).await;
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
}

/// A bridge with route `r` on a new topic whose clients only the write deadline (1 s)
/// can cut off (the lag limit is out of reach).
async fn deadline_bridge(prefix: &str) -> (sse_bridge::Running, String) {
    let topic = unique(prefix);
    create_topic(&topic, 1).await;
    let toml = config(
        "r",
        &topic,
        "replay = { max_events = 100000 }\nmax_client_lag = 100000",
    )
    .replace("[server]\n", "[server]\nwrite_timeout = \"1s\"\n");
    (bridge(&toml).await, topic)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_whose_socket_takes_nothing_meets_the_write_deadline() {
    use tokio::io::AsyncWriteExt;
    let (b, topic) = deadline_bridge("hostile-deadline").await;
    let url = format!("http://{}/streams/r", b.http_addr);
    // A socket that never reads after its request.
    let mut stuck = tokio::net::TcpStream::connect(b.http_addr).await.unwrap();
    stuck
        .write_all(b"GET /streams/r HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut fast = SseClient::connect(&url, None).await;
    let gauge = "sse_bridge_connections_active{route=\"r\"}";
    wait_metric(b.admin_addr, gauge, |v| v == 2.0).await;
    let timed_out = "sse_bridge_disconnects_total{reason=\"write_timeout\",route=\"r\"}";
    let p = producer();
    let big = "x".repeat(16 * 1024);
    // Enough to fill the stuck socket's buffers many times over.
    for batch in 0..20 {
        for i in 0..100 {
            produce_text(&p, &topic, &format!("{}:{big}", batch * 100 + i)).await;
        }
        let got = fast.take(100, T).await;
        assert!(got[0].data.starts_with(&format!("{}:", batch * 100)));
    }
    wait_metric(b.admin_addr, timed_out, |v| v == 1.0).await;
    wait_metric(b.admin_addr, gauge, |v| v == 1.0).await;
    // The reader is still served.
    produce_text(&p, &topic, "after").await;
    assert_eq!(fast.next(T).await.expect("event").data, "after");
    drop(stuck);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_naming_missing_partitions_get_a_small_reset_or_a_400() {
    use sse_bridge::source::kafka::{KafkaPosition, UNKNOWN};
    let topic = unique("hostile-reset");
    create_topic(&topic, 1).await;
    produce_text(&producer(), &topic, "first").await;
    let b = bridge(&config("r", &topic, "")).await;
    let url = format!("http://{}/streams/r", b.http_addr);
    // Partition 0 at its start, then every other one of `n` that do not exist.
    let id = |n: usize| {
        let mut offsets = vec![0i64];
        offsets.extend((1..n).map(|p| if p % 2 == 1 { 1 } else { UNKNOWN }));
        sse_bridge::event_id::encode(&KafkaPosition::from_topics(vec![(topic.clone(), offsets)]))
    };
    // 5,500 missing partitions (an id of ~15 KiB, inside the head limit): refused cheaply.
    let huge = id(11_000);
    assert!(huge.len() > 12_000 && huge.len() < 16_000, "{}", huge.len());
    let r = reqwest::Client::new()
        .get(&url)
        .header("Last-Event-ID", &huge)
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await, (400, "malformed_event_id".to_owned()));
    // 256 missing partitions (the most an id may name): a reset of bounded size.
    let mut c = SseClient::connect(&url, Some(&id(513))).await;
    assert_eq!(c.status, 200);
    let reset = c.next(T).await.expect("reset");
    assert_eq!(reset.event, "reset");
    let size = reset.data.len() + reset.id.len();
    assert!(size < 4096, "reset of {size} bytes");
    let j: serde_json::Value = serde_json::from_str(&reset.data).unwrap();
    assert_eq!(j["omitted"].as_u64().unwrap() + 16, 256, "{j}");
    // Then the record the id had not seen, and live ones.
    assert_eq!(c.next(T).await.expect("event").data, "first");
    produce_text(&producer(), &topic, "live").await;
    assert_eq!(c.next(T).await.expect("event").data, "live");
}

/// A TCP connection to `to` from the local address `from`.
async fn connect_from(from: &str, to: std::net::SocketAddr) -> tokio::net::TcpStream {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.bind(format!("{from}:0").parse().unwrap()).unwrap();
    s.connect(to).await.unwrap()
}

/// Send a stream request on `tcp` and read the status line.
async fn status_of(mut tcp: tokio::net::TcpStream, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tcp
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await;
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    let _ = tokio::time::timeout(T, async {
        while !head.ends_with(b"\r\n") {
            if tcp.read(&mut b).await.unwrap_or(0) == 0 {
                break;
            }
            head.push(b[0]);
        }
    })
    .await;
    String::from_utf8_lossy(&head).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_count_against_their_address_from_accept() {
    let topic = unique("hostile-idle");
    create_topic(&topic, 1).await;
    let toml = config("r", &topic, "").replace(
        "[server]\n",
        "[server]\nmax_connections_per_ip = 3\nhead_timeout = \"1500ms\"\n",
    );
    let b = bridge(&toml).await;
    // One address holds its three places with sockets that never send a head...
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(connect_from("127.0.0.1", b.http_addr).await);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // ...so its fourth connection is refused at once, whatever it asks...
    let fourth = connect_from("127.0.0.1", b.http_addr).await;
    assert!(status_of(fourth, "/streams/r")
        .await
        .starts_with("HTTP/1.1 429"));
    // ...while another address is served.
    let other = connect_from("127.0.0.2", b.http_addr).await;
    assert!(status_of(other, "/streams/r")
        .await
        .starts_with("HTTP/1.1 200"));
    // The idle sockets are closed at the head timeout, and the address is served again.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    for mut s in idle {
        use tokio::io::AsyncReadExt;
        let mut b = [0u8; 16];
        let n = tokio::time::timeout(T, s.read(&mut b))
            .await
            .expect("closed");
        assert!(matches!(n, Ok(0) | Err(_)), "closed without an answer");
    }
    let again = connect_from("127.0.0.1", b.http_addr).await;
    assert!(status_of(again, "/streams/r")
        .await
        .starts_with("HTTP/1.1 200"));
    let rejected = metric(
        b.admin_addr,
        "sse_bridge_requests_rejected_total{status=\"429\"}",
    )
    .await;
    assert_eq!(rejected, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multiplexed_client_whose_socket_takes_nothing_is_counted_as_timed_out() {
    use tokio::io::AsyncWriteExt;
    let (b, topic) = deadline_bridge("hostile-deadline-multi").await;
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.set_recv_buffer_size(4096).unwrap();
    let mut stuck = s.connect(b.http_addr).await.unwrap();
    stuck
        .write_all(b"GET /streams?routes=r HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let gauge = "sse_bridge_connections_active{route=\"r\"}";
    wait_metric(b.admin_addr, gauge, |v| v == 1.0).await;
    let p = producer();
    let big = "x".repeat(16 * 1024);
    let timed_out = "sse_bridge_disconnects_total{reason=\"write_timeout\",route=\"r\"}";
    let deadline = tokio::time::Instant::now() + T;
    while series_value(&metrics_text(b.admin_addr).await, timed_out).is_none() {
        assert!(tokio::time::Instant::now() < deadline, "never timed out");
        for i in 0..50 {
            produce_text(&p, &topic, &format!("{i}:{big}")).await;
        }
    }
    assert_eq!(metric(b.admin_addr, timed_out).await, 1.0);
    wait_metric(b.admin_addr, gauge, |v| v == 0.0).await;
    drop(stuck);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reading_the_buffer_gets_it_in_bounded_chunks() {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let topic = unique("hostile-chunks");
    create_topic(&topic, 1).await;
    let p = producer();
    let big = "z".repeat(16 * 1024);
    for i in 0..40 {
        produce_text(&p, &topic, &format!("{i}:{big}")).await;
    }
    // Warm start puts all 40 (640 KiB) in the buffer; a resume from the start reads them
    // from there.
    let b = bridge(&config("r", &topic, "")).await;
    let mut tcp = tokio::net::TcpStream::connect(b.http_addr).await.unwrap();
    tcp.write_all(b"GET /streams/r HTTP/1.1\r\nHost: x\r\nLast-Event-ID: AWsA\r\n\r\n")
        .await
        .unwrap();
    let mut r = tokio::io::BufReader::new(tcp);
    let mut line = String::new();
    loop {
        line.clear();
        r.read_line(&mut line).await.unwrap();
        if line == "\r\n" {
            break;
        }
    }
    // Chunked framing: every chunk's size, until all 40 events have come.
    let (mut got, mut largest) = (0, 0usize);
    while got < 40 {
        line.clear();
        tokio::time::timeout(T, r.read_line(&mut line))
            .await
            .unwrap()
            .unwrap();
        let size = usize::from_str_radix(line.trim(), 16).unwrap();
        let mut body = vec![0u8; size + 2];
        r.read_exact(&mut body).await.unwrap();
        got += body.windows(2).filter(|w| w == b":z").count();
        largest = largest.max(size);
    }
    assert!(
        largest <= 64 * 1024 + 17 * 1024,
        "a chunk of {largest} bytes: a client holds about one chunk at a time"
    );
}
