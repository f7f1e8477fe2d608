//! Test harness: the real broker started by `scripts/test`, topic and record helpers, an
//! in-process bridge, and an SSE client that parses streams as a browser would.
#![allow(dead_code)]

pub mod browser;

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
use sse_bridge::sse::parse::{Event, Parser};

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
/// instead of ephemeral ports, for a bridge process that restarts on the same ones (take
/// them from [`fixed_port`]).
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

/// Poll a readiness URL until 200 with every route ready (`/readyz` is 200 once any
/// route is, by default).
pub async fn wait_ready(url: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(url).await {
            if r.status() == 200 {
                let body: serde_json::Value = r.json().await.unwrap_or_default();
                let all = body["routes"]
                    .as_array()
                    .is_none_or(|rs| rs.iter().all(|r| r["ready"] == true));
                if all {
                    return;
                }
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{url} not ready within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The Prometheus text of the bridge's `/metrics`.
pub async fn metrics_text(admin: std::net::SocketAddr) -> String {
    let r = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap_or_else(|e| panic!("GET http://{admin}/metrics: {e}"));
    assert_eq!(r.status(), 200, "GET http://{admin}/metrics");
    r.text().await.expect("/metrics body")
}

/// The value of `series` (exact name with labels, labels in name order as the exporter
/// writes them) in the exposition `text`; `None` when no such line exists.
pub fn series_value(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .map(|v| {
                v.trim()
                    .parse()
                    .unwrap_or_else(|e| panic!("{series}: value {v:?}: {e}"))
            })
    })
}

/// Why `series` is not in `text`: the series that do exist under the longest prefix of
/// its name (cut at `_`) that matches any, so a renamed metric or a wrong label set
/// shows what to assert on instead.
fn missing_series(text: &str, series: &str) -> String {
    let name = series.split('{').next().unwrap_or(series);
    let present: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.rsplit_once(' ').map(|(s, _)| s))
        .collect();
    let mut prefix = name;
    loop {
        let similar: Vec<&str> = present
            .iter()
            .copied()
            .filter(|s| s.starts_with(prefix))
            // Histogram buckets only when a bucket was asked for: they drown the rest.
            .filter(|s| series.contains("_bucket{") || !s.contains("_bucket{"))
            .take(40)
            .collect();
        if !similar.is_empty() || prefix.is_empty() {
            return format!(
                "metric series `{series}` is not in /metrics (renamed? labels wrong or never \
                 touched?); series named `{prefix}*`:\n  {}",
                similar.join("\n  ")
            );
        }
        prefix = prefix.rsplit_once('_').map_or("", |(p, _)| p);
    }
}

/// The value of a metric series (exact name with labels) in `/metrics`. Panics when the
/// series is missing, naming it and listing the series with a similar name: a renamed
/// metric or a label never set must fail the test, not read as 0. (A labelled series
/// appears once its labels are first used; a family with no series is not exported at
/// all. To wait for a series to appear, use [`wait_metric`].)
pub async fn metric(admin: std::net::SocketAddr, series: &str) -> f64 {
    let text = metrics_text(admin).await;
    series_value(&text, series).unwrap_or_else(|| panic!("{}", missing_series(&text, series)))
}

/// Poll `/metrics` until `series` exists and its value satisfies `ok` (30 s). A missing
/// series counts as "not yet" (a labelled counter appears only when first incremented),
/// but if it is still missing at the deadline the panic names it and lists the similar
/// series that do exist.
pub async fn wait_metric(admin: std::net::SocketAddr, series: &str, ok: impl Fn(f64) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = metrics_text(admin).await;
        let v = series_value(&text, series);
        if v.is_some_and(&ok) {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            match v {
                Some(v) => panic!("{series} stuck at {v}"),
                None => panic!("{}", missing_series(&text, series)),
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The status and JSON error code of a refusal, checking the body is the documented
/// `{"error": "<code>", "message": "<text>"}` (panics, showing the body, otherwise).
pub async fn error_of(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let body = r.text().await.expect("error body");
    (status, error_code(status, &body))
}

/// The `error` code of a refusal's JSON `body`.
fn error_code(status: u16, body: &str) -> String {
    let j: serde_json::Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("{status} body is not JSON ({e}): {body:?}"));
    assert!(
        j["message"].is_string(),
        "{status} body has no `message`: {body}"
    );
    j["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{status} body has no `error` code: {body}"))
        .to_owned()
}

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// An SSE client that parses like a browser's `EventSource`.
pub struct SseClient {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    /// The whole body of a refusal (any status but 2xx); empty for a stream.
    pub body: String,
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
        if !resp.status().is_success() {
            // A refusal: its body is a JSON error, not a stream.
            let body = resp.text().await.expect("refusal body");
            return SseClient {
                status,
                headers,
                body,
                stream: None,
                parser: Parser::default(),
                pending: VecDeque::new(),
                returned_id: None,
                ended: true,
            };
        }
        SseClient {
            status,
            headers,
            body: String::new(),
            stream: Some(Box::pin(resp.bytes_stream())),
            parser: Parser::default(),
            pending: VecDeque::new(),
            returned_id: None,
            ended: false,
        }
    }

    /// The JSON error code of a refusal (panics unless the body is
    /// `{"error": "<code>", "message": "<text>"}`).
    pub fn error_code(&self) -> String {
        error_code(self.status, &self.body)
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

/// URL of the NATS server (JetStream) the test script started.
pub fn nats_url() -> String {
    std::env::var("SSE_BRIDGE_TEST_NATS").unwrap_or_else(|_| {
        panic!("SSE_BRIDGE_TEST_NATS is not set: run the tests with scripts/test, which starts nats-server and sets it")
    })
}

/// A JetStream context on `url`.
pub async fn jetstream(url: &str) -> async_nats::jetstream::Context {
    let c = async_nats::connect(url)
        .await
        .expect("connect to nats-server");
    async_nats::jetstream::new(c)
}

/// TOML of a one-route config on the NATS stream `stream` at `url` (`source_extra` goes
/// into the source table, `route_extra` into the route), on ephemeral ports.
pub fn nats_config(
    route: &str,
    url: &str,
    stream: &str,
    source_extra: &str,
    route_extra: &str,
) -> String {
    format!(
        r#"
{TEST_SERVER}source_wait = "5s"

[[routes]]
name = "{route}"
{route_extra}
[routes.source]
type = "nats"
servers = ["{url}"]
stream = "{stream}"
{source_extra}
"#
    )
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

/// The body of the admin server's `/readyz`.
pub async fn readyz(admin: std::net::SocketAddr) -> serde_json::Value {
    reqwest::get(format!("http://{admin}/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
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

/// A port for a server the test starts itself on a port it chooses, and may stop and
/// restart on that same port (a bridge process, a broker, a database, chromedriver).
///
/// Binding port 0 and releasing it is racy here: the kernel hands the same port out
/// again to the next ephemeral bind or outgoing connection (other tests' bridges bind
/// port 0, every client connection takes an ephemeral source port), so in the gap
/// between releasing the port and the server (re)binding it, something else can take it.
/// So these ports come from BELOW the kernel's ephemeral range
/// (`/proc/sys/net/ipv4/ip_local_port_range`; 32768 when it cannot be read), which no
/// port-0 bind or outgoing connection can ever be given. Within this process a counter
/// hands out each port once; its start is derived from the pid so concurrent test
/// processes start far apart; and a port is only handed out if it can be bound now
/// (nothing listens on it).
pub fn fixed_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let (lo, hi) = fixed_port_range();
    let span = u32::from(hi - lo);
    let start = std::process::id().wrapping_mul(7919) % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = lo + ((start + n) % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no bindable port in {lo}..{hi}");
}

/// The ports [`fixed_port`] uses: the upper half of the ports below the ephemeral range
/// (never below 1024), e.g. 16384..32768 with the default range.
fn fixed_port_range() -> (u16, u16) {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let lo = (ephemeral_low / 2).max(1024);
    assert!(
        ephemeral_low >= lo + 1000,
        "the ephemeral port range starts at {ephemeral_low}: no room below it for fixed test ports"
    );
    (lo, ephemeral_low)
}

/// The data of `evs`, sorted (for events over several partitions, whose interleaving is
/// the bridge's).
pub fn sorted_data(evs: &[Event]) -> Vec<String> {
    let mut v: Vec<String> = evs.iter().map(|e| e.data.clone()).collect();
    v.sort();
    v
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

/// URL of the PostgreSQL server (`wal_level = logical`) the test script started.
pub fn pg_url() -> String {
    std::env::var("SSE_BRIDGE_TEST_POSTGRES").unwrap_or_else(|_| {
        panic!("SSE_BRIDGE_TEST_POSTGRES is not set: run the tests with scripts/test, which starts PostgreSQL and sets it")
    })
}

/// A SQL session on `url` (its connection driven in the background).
pub async fn pg_client(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to PostgreSQL");
    tokio::spawn(conn);
    client
}

/// TOML of a one-route config on the PostgreSQL database at `url` (`source_extra` goes
/// into the source table, `route_extra` into the route), on ephemeral ports.
pub fn pg_config(route: &str, url: &str, source_extra: &str, route_extra: &str) -> String {
    format!(
        r#"
{TEST_SERVER}source_wait = "5s"

[[routes]]
name = "{route}"
{route_extra}
[routes.source]
type = "postgres"
url = "{url}"
{source_extra}
"#
    )
}
