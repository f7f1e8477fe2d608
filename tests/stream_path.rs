//! The one stream path, against the real broker: every request that opens a stream is
//! answered by the same code, whatever it came with — HTTP/1.0 (no chunking: the body
//! ends with the connection), an `Expect` header, an `Upgrade` header, bytes pipelined
//! behind it, or a connection that first asked the warp surface for something else.

mod common;

use std::time::Duration;

use common::*;
use sse_bridge::sse::parse::{Event, Parser};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const T: Duration = Duration::from_secs(20);

/// A raw connection: the response head, then the body as it arrives.
struct Raw {
    tcp: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    async fn open(addr: std::net::SocketAddr) -> Raw {
        Raw {
            tcp: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &str) {
        self.tcp.write_all(bytes.as_bytes()).await.unwrap();
    }

    /// Read until `buf` holds `needle` (or the connection ends); the bytes up to and
    /// including it are taken out.
    async fn until(&mut self, needle: &[u8]) -> Vec<u8> {
        tokio::time::timeout(T, async {
            loop {
                if let Some(i) = self.buf.windows(needle.len()).position(|w| w == needle) {
                    let rest = self.buf.split_off(i + needle.len());
                    return std::mem::replace(&mut self.buf, rest);
                }
                let mut b = [0u8; 4096];
                let n = self.tcp.read(&mut b).await.unwrap_or(0);
                if n == 0 {
                    return std::mem::take(&mut self.buf);
                }
                self.buf.extend_from_slice(&b[..n]);
            }
        })
        .await
        .expect("bytes in time")
    }

    /// The response head (status line and headers).
    async fn head(&mut self) -> String {
        String::from_utf8(self.until(b"\r\n\r\n").await).unwrap()
    }
}

/// Events from a body that is not chunked (HTTP/1.0): the raw bytes are the SSE stream.
async fn events_close_delimited(c: &mut Raw, n: usize) -> Vec<Event> {
    let mut p = Parser::default();
    let mut out = Vec::new();
    p.feed(&std::mem::take(&mut c.buf), &mut out);
    tokio::time::timeout(T, async {
        while out.len() < n {
            let mut b = [0u8; 4096];
            let k = c.tcp.read(&mut b).await.unwrap();
            assert!(k > 0, "stream ended early");
            p.feed(&b[..k], &mut out);
        }
    })
    .await
    .expect("events in time");
    out
}

/// Events from a chunked body (HTTP/1.1): chunk sizes are taken off first.
async fn events_chunked(c: &mut Raw, n: usize) -> Vec<Event> {
    let mut p = Parser::default();
    let mut out = Vec::new();
    while out.len() < n {
        let size = String::from_utf8(c.until(b"\r\n").await).unwrap();
        let size = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        while c.buf.len() < size + 2 {
            let mut b = [0u8; 4096];
            let k = tokio::time::timeout(T, c.tcp.read(&mut b))
                .await
                .expect("chunk in time")
                .unwrap();
            assert!(k > 0, "stream ended early");
            c.buf.extend_from_slice(&b[..k]);
        }
        let chunk: Vec<u8> = c.buf.drain(..size + 2).collect();
        p.feed(&chunk[..size], &mut out);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stream_request_takes_the_one_stream_path() {
    let topic = unique("streampath");
    create_topic(&topic, 1).await;
    // The console on the stream listener: a page of the warp surface there.
    let b =
        bridge(&config("r", &topic, "").replace("[server]\n", "[server]\nconsole = \"public\"\n"))
            .await;
    let addr = b.http_addr;
    let get =
        |extra: &str, version: &str| format!("GET /streams/r {version}\r\nHost: x\r\n{extra}\r\n");

    // HTTP/1.0: 200, no chunking, the connection closes when the stream does.
    let mut h10 = Raw::open(addr).await;
    h10.send(&get("", "HTTP/1.0")).await;
    let head = h10.head().await.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    assert!(!head.contains("transfer-encoding"), "{head}");
    assert!(head.contains("connection: close"), "{head}");

    // `Expect: 100-continue` and `Upgrade`: answered with the stream itself.
    let mut expect = Raw::open(addr).await;
    expect
        .send(&get("Expect: 100-continue\r\n", "HTTP/1.1"))
        .await;
    let head = expect.head().await.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    let mut upgrade = Raw::open(addr).await;
    upgrade
        .send(&get(
            "Connection: Upgrade\r\nUpgrade: websocket\r\n",
            "HTTP/1.1",
        ))
        .await;
    let head = upgrade.head().await.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");

    // A request pipelined behind the stream request is never answered: the stream is.
    let mut piped = Raw::open(addr).await;
    piped
        .send(&(get("", "HTTP/1.1") + "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"))
        .await;
    let head = piped.head().await.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");

    // A kept-alive connection that first asked the warp surface: that answer closes the
    // connection, so the client's stream request comes on a new one, to the stream path.
    let mut first = Raw::open(addr).await;
    first.send("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let head = first.head().await.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 404"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    let client = reqwest::Client::new();
    let r = client
        .get(format!("http://{addr}/console/api/routes"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .get(format!("http://{addr}/streams/r"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "the pooled client's stream request is served"
    );
    assert_eq!(
        r.headers()["content-type"],
        "text/event-stream; charset=utf-8"
    );
    drop(r);

    // Every one of them gets the same events, exactly.
    let p = producer();
    let mut offsets = Vec::new();
    for i in 0..3 {
        offsets.push(produce_text(&p, &topic, &format!("v{i}")).await);
    }
    let data = |evs: &[Event]| -> Vec<String> {
        evs.iter()
            .filter(|e| !e.data.is_empty())
            .map(|e| e.data.clone())
            .collect()
    };
    let want = vec!["v0".to_owned(), "v1".to_owned(), "v2".to_owned()];
    let evs = events_close_delimited(&mut h10, 3).await;
    assert_eq!(data(&evs), want, "HTTP/1.0");
    for (name, c) in [
        ("expect", &mut expect),
        ("upgrade", &mut upgrade),
        ("pipelined", &mut piped),
    ] {
        let evs = events_chunked(c, 3).await;
        assert_eq!(data(&evs), want, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_path_outside_the_stream_path_is_refused_in_json() {
    let topic = unique("streampath-bad");
    create_topic(&topic, 1).await;
    let b = bridge(&config("r", &topic, "")).await;
    // 70 headers: more than the stream path reads; the warp surface refuses it.
    let mut many = String::from("GET /streams/r HTTP/1.1\r\nHost: x\r\n");
    for i in 0..70 {
        many.push_str(&format!("x-h{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let mut c = Raw::open(b.http_addr).await;
    c.send(&many).await;
    let head = c.head().await.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 400"), "{head}");
    let body = String::from_utf8(c.until(b"}").await).unwrap();
    let body = body.rsplit("\r\n").next().unwrap_or(&body).to_owned();
    let j: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(j["error"], "unsupported_request", "{j}");
    // Other methods on a stream path: 405 with Allow; preflights: 204.
    let r = reqwest::Client::new()
        .post(format!("http://{}/streams/r", b.http_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["allow"], "GET, OPTIONS");
    assert_eq!(error_of(r).await, (405, "method_not_allowed".to_owned()));
    let r = reqwest::Client::new()
        .request(
            reqwest::Method::OPTIONS,
            format!("http://{}/streams/r", b.http_addr),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_on_the_admin_listener_by_default_and_never_public() {
    let topic = unique("console-admin");
    create_topic(&topic, 1).await;
    let b = bridge(&config("r", &topic, "")).await;
    let public = format!("http://{}", b.http_addr);
    let admin = format!("http://{}", b.admin_addr);
    for path in ["/", "/console/app.js", "/console/api/routes"] {
        let r = reqwest::get(format!("{public}{path}")).await.unwrap();
        assert_eq!(r.status(), 404, "{path} on the public listener");
        let r = reqwest::get(format!("{admin}{path}")).await.unwrap();
        assert_eq!(r.status(), 200, "{path} on the admin listener");
    }
    // The streams the console opens are served on its origin too, and metrics still are.
    let mut c = SseClient::connect(&format!("{admin}/streams/r"), None).await;
    assert_eq!(c.status, 200);
    produce_text(&producer(), &topic, "hello").await;
    assert_eq!(c.next(Duration::from_secs(30)).await.unwrap().data, "hello");
    let m = metrics_text(b.admin_addr).await;
    assert!(
        m.contains("sse_bridge_connections_active{route=\"r\"} 1"),
        "{m}"
    );
    // Off: nowhere.
    let off =
        bridge(&config("r", &topic, "").replace("[server]\n", "[server]\nconsole = \"off\"\n"))
            .await;
    for base in [off.http_addr, off.admin_addr] {
        let r = reqwest::get(format!("http://{base}/console/api/routes"))
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_javascript_client_is_served_on_both_listeners_for_any_origin() {
    let topic = unique("client-js");
    create_topic(&topic, 1).await;
    let b = bridge(&config("r", &topic, "")).await;
    let built = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/clients/js/dist/sse-bridge-client.js"
    ))
    .unwrap();
    let http = reqwest::Client::new();
    for base in [b.http_addr, b.admin_addr] {
        let url = format!("http://{base}/client/sse-bridge-client.js");
        let r = http
            .get(&url)
            .header("Origin", "https://elsewhere.example")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{url}");
        let h = r.headers().clone();
        assert_eq!(h["content-type"], "text/javascript; charset=utf-8");
        assert!(h.contains_key("access-control-allow-origin"), "{h:?}");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(r.text().await.unwrap(), built, "the built client, as-is");
        let head = http.head(&url).send().await.unwrap();
        assert_eq!(head.status(), 200);
        let post = http.post(&url).send().await.unwrap();
        assert_ne!(post.status(), 200, "GET and HEAD only");
    }
}
