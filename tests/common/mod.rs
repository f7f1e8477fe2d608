//! Test harness: the real broker started by `scripts/test`, topic and record helpers, an
//! in-process bridge, and an SSE client that parses streams as a browser would.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::Write;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use sse_bridge::config::Settings;
use sse_bridge::http::sse_parse::{Event, Parser};

/// Address of the Kafka-protocol broker the test script started.
pub fn broker() -> String {
    std::env::var("SSE_BRIDGE_TEST_KAFKA").unwrap_or_else(|_| {
        panic!("SSE_BRIDGE_TEST_KAFKA is not set: run the tests with scripts/test, which starts a nisshi broker and sets it")
    })
}

/// A topic name unique to this test run.
pub fn unique(prefix: &str) -> String {
    let n: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    format!("{prefix}-{}-{}", std::process::id(), n % 1_000_000_000)
}

fn admin() -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", broker())
        .create()
        .expect("admin client")
}

/// Create `topic` with `partitions` partitions.
pub async fn create_topic(topic: &str, partitions: i32) {
    let res = admin()
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .expect("create_topics");
    for r in res {
        r.unwrap_or_else(|e| panic!("create topic {topic}: {e:?}"));
    }
}

/// Delete `topic`.
pub async fn delete_topic(topic: &str) {
    let res = admin()
        .delete_topics(&[topic], &AdminOptions::new())
        .await
        .expect("delete_topics");
    for r in res {
        r.unwrap_or_else(|e| panic!("delete topic {topic}: {e:?}"));
    }
}

/// A producer on the test broker.
pub fn producer() -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", broker())
        .set("linger.ms", "0")
        .set("message.timeout.ms", "10000")
        .create()
        .expect("producer")
}

/// A record to produce.
#[derive(Default, Clone)]
pub struct Rec<'a> {
    pub partition: i32,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: Vec<(&'a str, &'a [u8])>,
    pub timestamp: Option<i64>,
}

/// Produce one record; returns its offset.
pub async fn produce(p: &FutureProducer, topic: &str, r: Rec<'_>) -> i64 {
    let mut rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).partition(r.partition);
    if let Some(k) = r.key {
        rec = rec.key(k);
    }
    if let Some(v) = r.value {
        rec = rec.payload(v);
    }
    if let Some(ts) = r.timestamp {
        rec = rec.timestamp(ts);
    }
    if !r.headers.is_empty() {
        let mut h = OwnedHeaders::new();
        for (k, v) in &r.headers {
            h = h.insert(Header {
                key: k,
                value: Some(*v),
            });
        }
        rec = rec.headers(h);
    }
    let delivery = p
        .send(rec, Duration::from_secs(10))
        .await
        .unwrap_or_else(|(e, _)| panic!("produce: {e}"));
    delivery.offset
}

/// Produce one record with only a value to `partition`.
pub async fn produce_at(p: &FutureProducer, topic: &str, partition: i32, value: &[u8]) -> i64 {
    produce(
        p,
        topic,
        Rec {
            partition,
            value: Some(value),
            ..Rec::default()
        },
    )
    .await
}

/// Produce one text record to partition 0.
pub async fn produce_text(p: &FutureProducer, topic: &str, value: &str) -> i64 {
    produce_at(p, topic, 0, value.as_bytes()).await
}

/// Produce `n` text records `"{prefix}-{i}"` round-robin over `partitions` partitions.
pub async fn produce_n(
    p: &FutureProducer,
    topic: &str,
    partitions: i32,
    prefix: &str,
    n: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..n {
        let v = format!("{prefix}-{i}");
        produce(
            p,
            topic,
            Rec {
                partition: i as i32 % partitions,
                value: Some(v.as_bytes()),
                ..Rec::default()
            },
        )
        .await;
        out.push(v);
    }
    out
}

/// The `[server]` lines every test config shares: ephemeral ports, fast timers.
const TEST_SERVER: &str = r#"[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
heartbeat_interval = "1s"
retry = "500ms"
shutdown_grace = "2s"
drain_window = "1s"
"#;

/// `toml` (made by [`config`] or [`mongo_config`]) listening on `port` and `admin`
/// instead of ephemeral ports, for a bridge process that restarts on the same ones.
pub fn on_ports(toml: &str, port: u16, admin: u16) -> String {
    toml.replace(
        "admin_listen = \"127.0.0.1:0\"",
        &format!("admin_listen = \"127.0.0.1:{admin}\""),
    )
    .replace(
        "\nlisten = \"127.0.0.1:0\"",
        &format!("\nlisten = \"127.0.0.1:{port}\""),
    )
}

/// The sse-bridge binary running the configuration in `file` (killed when dropped).
pub fn spawn_bridge(file: &std::path::Path) -> KillOnDrop {
    KillOnDrop(
        std::process::Command::new(env!("CARGO_BIN_EXE_sse-bridge"))
            .arg("--config")
            .arg(file)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn sse-bridge"),
    )
}

/// TOML of a one-route config on `topic`, listening on ephemeral ports.
pub fn config(route: &str, topic: &str, route_extra: &str) -> String {
    format!(
        r#"
{TEST_SERVER}source_wait = "3s"
cors_origins = ["https://dash.example"]

[[routes]]
name = "{route}"
source = {{ type = "kafka", brokers = ["{broker}"], topics = ["{topic}"] }}
{route_extra}
"#,
        broker = broker()
    )
}

/// Write `toml` to a temporary file and load it.
pub fn settings(toml: &str) -> Settings {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(toml.as_bytes()).unwrap();
    Settings::load(f.path()).unwrap_or_else(|e| panic!("{e}"))
}

/// Log to the test output when `RUST_LOG` is set.
pub fn init_logs() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// Start a bridge in this process and wait until `/readyz` says ready.
pub async fn bridge(toml: &str) -> sse_bridge::Running {
    init_logs();
    let r = sse_bridge::start(settings(toml))
        .await
        .expect("bridge starts");
    wait_ready(&format!("http://{}/readyz", r.admin_addr)).await;
    r
}

/// Poll a readiness URL until 200.
pub async fn wait_ready(url: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(url).await {
            if r.status() == 200 {
                return;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{url} not ready within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of a metric line (exact name with labels) in `/metrics`.
pub async fn metric(admin: std::net::SocketAddr, series: &str) -> f64 {
    let text = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0.0)
}

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// An SSE client that parses like a browser's `EventSource`.
pub struct SseClient {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    stream: Option<ByteStream>,
    parser: Parser,
    pending: VecDeque<Event>,
    returned_id: Option<String>,
    pub ended: bool,
}

impl SseClient {
    /// Connect to `url`, optionally sending `Last-Event-ID`.
    pub async fn connect(url: &str, last_id: Option<&str>) -> SseClient {
        let mut headers = Vec::new();
        if let Some(id) = last_id {
            headers.push(("Last-Event-ID", id.to_owned()));
        }
        SseClient::connect_with(url, &headers).await
    }

    /// Connect to `url` sending `headers`.
    pub async fn connect_with(url: &str, headers: &[(&str, String)]) -> SseClient {
        let mut req = reqwest::Client::new().get(url);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = req.send().await.expect("connect");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        SseClient {
            status,
            headers,
            stream: Some(Box::pin(resp.bytes_stream())),
            parser: Parser::default(),
            pending: VecDeque::new(),
            returned_id: None,
            ended: false,
        }
    }

    /// The last event id as of the events returned so far (what a browser that had
    /// dispatched just those events would send on reconnect).
    pub fn last_id(&self) -> String {
        match &self.returned_id {
            Some(id) if !self.pending.is_empty() => id.clone(),
            _ => self.parser.last_event_id().to_owned(),
        }
    }

    /// Read more bytes; false at end of stream or timeout.
    async fn fill(&mut self, deadline: tokio::time::Instant) -> bool {
        let Some(s) = self.stream.as_mut() else {
            return false;
        };
        match tokio::time::timeout_at(deadline, s.next()).await {
            Ok(Some(Ok(b))) => {
                let mut out = Vec::new();
                self.parser.feed(&b, &mut out);
                self.pending.extend(out);
                true
            }
            Ok(_) => {
                self.ended = true;
                self.stream = None;
                false
            }
            Err(_) => false,
        }
    }

    /// The next event within `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(e) = self.pending.pop_front() {
                self.returned_id = Some(e.id.clone());
                return Some(e);
            }
            if !self.fill(deadline).await {
                let e = self.pending.pop_front()?;
                self.returned_id = Some(e.id.clone());
                return Some(e);
            }
        }
    }

    /// Exactly `n` events (panics naming how many arrived otherwise).
    pub async fn take(&mut self, n: usize, timeout: Duration) -> Vec<Event> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut out = Vec::new();
        while out.len() < n {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(e) => out.push(e),
                None => panic!(
                    "got {} of {n} events (stream ended: {}): {:?}",
                    out.len(),
                    self.ended,
                    out.iter()
                        .take(50)
                        .map(|e| e.data.chars().take(40).collect::<String>())
                        .collect::<Vec<_>>()
                ),
            }
        }
        out
    }

    /// Assert nothing more arrives within `wait` (heartbeats don't dispatch events).
    pub async fn expect_quiet(&mut self, wait: Duration) {
        if let Some(e) = self.next(wait).await {
            panic!("unexpected event {e:?}");
        }
    }

    /// Wait until the stream ends (server closed it).
    pub async fn wait_end(&mut self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.ended && tokio::time::Instant::now() < deadline {
            self.fill(deadline).await;
        }
        self.ended
    }
}

/// URI of the MongoDB-protocol replica set the test script started.
pub fn mongo_uri() -> String {
    std::env::var("SSE_BRIDGE_TEST_MONGO").unwrap_or_else(|_| {
        panic!("SSE_BRIDGE_TEST_MONGO is not set: run the tests with scripts/test, which starts SecantusDB and sets it")
    })
}

/// A driver client on `uri`.
pub async fn mongo_client(uri: &str) -> mongodb::Client {
    let mut o = mongodb::options::ClientOptions::parse(uri)
        .await
        .expect("mongo uri");
    o.server_selection_timeout = Some(Duration::from_secs(10));
    mongodb::Client::with_options(o).expect("mongo client")
}

/// TOML of a one-route config on `db.coll` at `uri`, listening on ephemeral ports.
pub fn mongo_config(route: &str, uri: &str, db: &str, coll: &str, route_extra: &str) -> String {
    format!(
        r#"
{TEST_SERVER}source_wait = "5s"

[[routes]]
name = "{route}"
{route_extra}
[routes.source]
type = "mongodb"
uri = "{uri}"
database = "{db}"
collection = "{coll}"
full_document = "updateLookup"
"#
    )
}

/// A child process killed when dropped (so a failing test leaves no server behind).
pub struct KillOnDrop(pub std::process::Child);

impl KillOnDrop {
    /// Kill now and wait.
    pub fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Wait until something listens on 127.0.0.1:`port` (a server just started).
pub async fn wait_port(port: u16) {
    for _ in 0..600 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("nothing listened on port {port} within 60 s");
}

/// Wait until `/readyz` answers `want`.
pub async fn wait_status(admin: std::net::SocketAddr, want: u16, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let got = reqwest::get(format!("http://{admin}/readyz"))
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz never became {want} (last {got})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A port nothing listens on now (for servers a test starts and restarts itself).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `fullDocument.name` of each MongoDB change event ("?" where absent).
pub fn names(evs: &[Event]) -> Vec<String> {
    evs.iter()
        .map(|e| {
            serde_json::from_str::<serde_json::Value>(&e.data)
                .unwrap_or_else(|err| panic!("{err}: {}", e.data))["fullDocument"]["name"]
                .as_str()
                .unwrap_or("?")
                .to_owned()
        })
        .collect()
}
