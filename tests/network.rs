//! Hostile networks, with the bridge, the broker and the clients as separate hosts: the
//! test creates network namespaces `bridge` and `broker` (this process is the clients'
//! host), joins them with veth pairs, starts nisshi and the sse-bridge binary inside them,
//! breaks the links with nftables rules and a `tbf` rate limit, and tears everything down
//! at the end. Needs root, `ip`, `nft` and `tc` (iproute2, nftables: `scripts/test`
//! installs them) and the nisshi binary (`SSE_BRIDGE_TEST_NISSHI`, set by `scripts/test`).
//!
//! Cases, in one run on one topology: (a) clients whose network goes silent (every packet
//! dropped, no RST) are freed by the write deadline; (c) 5% random loss and a 256 kbit/s
//! link between clients and bridge lose and repeat nothing; (b) the broker partitioned
//! away for 30 s: `/readyz` says 503, connected clients keep their streams with heartbeats,
//! and everything produced meanwhile arrives exactly once afterwards.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

const T: Duration = Duration::from_secs(30);
/// Clients (this namespace) ↔ bridge.
const CLIENT: &str = "10.77.1.1";
const SILENT: &str = "10.77.1.3";
const BRIDGE: &str = "10.77.1.2";
/// Bridge ↔ broker, and the broker's side for this namespace's producer.
const BRIDGE_TO_BROKER: &str = "10.77.2.1";
const BROKER: &str = "10.77.2.2";
const BROKER_FOR_TESTS: &str = "10.77.3.2";
const KAFKA_PORT: u16 = 19092;
const HTTP_PORT: u16 = 18080;
const ADMIN_PORT: u16 = 19090;

fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (scripts/test installs iproute2 and nftables)",
                args[0]
            )
        });
    assert!(
        out.status.success(),
        "{}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The namespaces, links and processes of the run; all removed on drop.
struct Net {
    ns: [String; 2],
    procs: Vec<Child>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Net {
    fn bridge(&self) -> &str {
        &self.ns[0]
    }
    fn broker(&self) -> &str {
        &self.ns[1]
    }

    fn up() -> Net {
        assert!(
            unsafe { libc::geteuid() } == 0,
            "tests/network.rs needs root (network namespaces); run it through scripts/test"
        );
        let id = std::process::id();
        let ns = [format!("sseb-bridge-{id}"), format!("sseb-broker-{id}")];
        // Leftovers of an earlier run with the same addresses.
        let _ = Command::new("ip").args(["link", "del", "sseb-c"]).output();
        let _ = Command::new("ip").args(["link", "del", "sseb-t"]).output();
        let net = Net {
            ns: ns.clone(),
            procs: Vec::new(),
            _dirs: Vec::new(),
        };
        let (b, k) = (&ns[0], &ns[1]);
        for n in [b, k] {
            sh(&["ip", "netns", "add", n]);
            sh(&["ip", "-n", n, "link", "set", "lo", "up"]);
        }
        // clients ↔ bridge
        sh(&[
            "ip", "link", "add", "sseb-c", "type", "veth", "peer", "name", "sseb-cb",
        ]);
        sh(&["ip", "link", "set", "sseb-cb", "netns", b]);
        sh(&[
            "ip",
            "addr",
            "add",
            &format!("{CLIENT}/24"),
            "dev",
            "sseb-c",
        ]);
        sh(&[
            "ip",
            "addr",
            "add",
            &format!("{SILENT}/24"),
            "dev",
            "sseb-c",
        ]);
        sh(&["ip", "link", "set", "sseb-c", "up"]);
        sh(&[
            "ip",
            "-n",
            b,
            "addr",
            "add",
            &format!("{BRIDGE}/24"),
            "dev",
            "sseb-cb",
        ]);
        sh(&["ip", "-n", b, "link", "set", "sseb-cb", "up"]);
        // bridge ↔ broker
        sh(&[
            "ip", "-n", b, "link", "add", "sseb-bk", "type", "veth", "peer", "name", "sseb-kb",
        ]);
        sh(&["ip", "-n", b, "link", "set", "sseb-kb", "netns", k]);
        sh(&[
            "ip",
            "-n",
            b,
            "addr",
            "add",
            &format!("{BRIDGE_TO_BROKER}/24"),
            "dev",
            "sseb-bk",
        ]);
        sh(&["ip", "-n", b, "link", "set", "sseb-bk", "up"]);
        sh(&[
            "ip",
            "-n",
            k,
            "addr",
            "add",
            &format!("{BROKER}/24"),
            "dev",
            "sseb-kb",
        ]);
        sh(&["ip", "-n", k, "link", "set", "sseb-kb", "up"]);
        // this namespace ↔ broker (the test's producer), routed to the broker's address
        sh(&[
            "ip", "link", "add", "sseb-t", "type", "veth", "peer", "name", "sseb-tk",
        ]);
        sh(&["ip", "link", "set", "sseb-tk", "netns", k]);
        sh(&["ip", "addr", "add", "10.77.3.1/24", "dev", "sseb-t"]);
        sh(&["ip", "link", "set", "sseb-t", "up"]);
        sh(&[
            "ip",
            "-n",
            k,
            "addr",
            "add",
            &format!("{BROKER_FOR_TESTS}/24"),
            "dev",
            "sseb-tk",
        ]);
        sh(&["ip", "-n", k, "link", "set", "sseb-tk", "up"]);
        sh(&[
            "ip",
            "route",
            "add",
            "10.77.2.0/24",
            "via",
            BROKER_FOR_TESTS,
        ]);
        // One nftables table in the bridge's namespace; cases add and flush rules.
        sh(&[
            "ip", "netns", "exec", b, "nft", "add", "table", "inet", "fault",
        ]);
        for chain in ["input", "output"] {
            sh(&[
                "ip",
                "netns",
                "exec",
                b,
                "nft",
                "add",
                "chain",
                "inet",
                "fault",
                chain,
                &format!("{{ type filter hook {chain} priority 0; }}"),
            ]);
        }
        net
    }

    fn exec(&mut self, ns: &str, dir: Option<&std::path::Path>, args: &[&str]) {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).args(args);
        if let Some(d) = dir {
            c.current_dir(d);
        }
        let child = c
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .env("RUST_LOG", "warn")
            .spawn()
            .expect("ip netns exec");
        self.procs.push(child);
    }

    fn nft(&self, rule: &str) {
        let mut args = vec!["ip", "netns", "exec", self.bridge(), "nft"];
        args.extend(rule.split(' '));
        sh(&args);
    }

    fn heal(&self) {
        self.nft("flush chain inet fault input");
        self.nft("flush chain inet fault output");
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.kill();
            let _ = p.wait();
        }
        let _ = Command::new("ip")
            .args(["route", "del", "10.77.2.0/24"])
            .output();
        let _ = Command::new("ip").args(["link", "del", "sseb-c"]).output();
        let _ = Command::new("ip").args(["link", "del", "sseb-t"]).output();
        for n in &self.ns {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
    }
}

async fn wait_http(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while reqwest::get(url).await.ok().map(|r| r.status().as_u16()) != Some(200) {
        assert!(Instant::now() < deadline, "{url} never answered 200");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn producer_at(broker: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("linger.ms", "1")
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer")
}

async fn send(p: &FutureProducer, topic: &str, value: &str) {
    p.send(
        FutureRecord::<(), _>::to(topic).partition(0).payload(value),
        Duration::from_secs(30),
    )
    .await
    .expect("produced");
}

/// Open a stream from `from` that never reads (its packets are about to be dropped).
async fn open_unread(from: &str, url_path: &str) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.set_recv_buffer_size(4096).unwrap();
    s.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut tcp = s
        .connect(format!("{BRIDGE}:{HTTP_PORT}").parse().unwrap())
        .await
        .unwrap();
    tcp.write_all(format!("GET {url_path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut b = [0u8; 12];
    tcp.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"HTTP/1.1 200");
    tcp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_survive_hostile_networks() {
    let nisshi = std::env::var("SSE_BRIDGE_TEST_NISSHI")
        .expect("SSE_BRIDGE_TEST_NISSHI (the nisshi binary) is set by scripts/test");
    let mut net = Net::up();
    let (bridge_ns, broker_ns) = (net.bridge().to_owned(), net.broker().to_owned());

    // The broker, listening on both of its links, advertising the bridge-side address.
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("tcp://0.0.0.0:{KAFKA_PORT}");
    let advertised = format!("tcp://{BROKER}:{KAFKA_PORT}");
    net.exec(
        &broker_ns,
        Some(dir.path()),
        &[
            &nisshi,
            "broker",
            "--listener-url",
            &listen,
            "--advertised-listener-url",
            &advertised,
            "--storage-engine",
            "memory://nisshi/",
            "--group-initial-rebalance-delay",
            "0s",
        ],
    );
    net._dirs.push(dir);
    let kafka = format!("{BROKER}:{KAFKA_PORT}");
    let topic = "net-orders";
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
            ClientConfig::new()
                .set("bootstrap.servers", &kafka)
                .create()
                .unwrap();
        let r = admin
            .create_topics(
                &[rdkafka::admin::NewTopic::new(
                    topic,
                    1,
                    rdkafka::admin::TopicReplication::Fixed(1),
                )],
                &rdkafka::admin::AdminOptions::new(),
            )
            .await;
        if r.is_ok_and(|v| v.iter().all(|x| x.is_ok())) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "broker in its namespace never answered"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // The bridge, with a short write deadline.
    let cfg = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(
        cfg.path(),
        format!(
            r#"[server]
listen = "0.0.0.0:{HTTP_PORT}"
admin_listen = "0.0.0.0:{ADMIN_PORT}"
heartbeat_interval = "1s"
write_timeout = "3s"
source_wait = "2s"

[[routes]]
name = "orders"
source = {{ type = "kafka", brokers = ["{kafka}"], topics = ["{topic}"], properties = {{ "fetch.wait.max.ms" = "20" }} }}
"#
        ),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_sse-bridge");
    let cfg_path = cfg.path().to_str().unwrap().to_owned();
    net.exec(&bridge_ns, None, &[bin, "--config", &cfg_path]);
    let admin = format!("http://{BRIDGE}:{ADMIN_PORT}");
    wait_http(&format!("{admin}/readyz")).await;
    let url = format!("http://{BRIDGE}:{HTTP_PORT}/streams/orders");
    let admin_addr: std::net::SocketAddr = format!("{BRIDGE}:{ADMIN_PORT}").parse().unwrap();
    let p = producer_at(&format!("{BROKER}:{KAFKA_PORT}"));

    // (a) Clients whose network goes silent are freed by the write deadline.
    let mut honest = SseClient::connect(&url, None).await;
    let mut silent = Vec::new();
    for _ in 0..5 {
        silent.push(open_unread(SILENT, "/streams/orders").await);
    }
    wait_metric(
        admin_addr,
        "sse_bridge_connections_active{route=\"orders\"}",
        |v| v == 6.0,
    )
    .await;
    net.nft(&format!("add rule inet fault input ip saddr {SILENT} drop"));
    let started = Instant::now();
    let big = "x".repeat(4000);
    let mut seq = 0;
    let timed_out = "sse_bridge_disconnects_total{reason=\"write_timeout\",route=\"orders\"}";
    while metric_or_zero(admin_addr, timed_out).await < 5.0 {
        assert!(started.elapsed() < T, "silent clients never freed");
        for _ in 0..20 {
            send(&p, topic, &format!("{seq}:{big}")).await;
            seq += 1;
        }
        let got = honest.take(20, T).await;
        assert_eq!(got.len(), 20, "the honest client keeps up");
    }
    let freed_after = started.elapsed();
    wait_metric(
        admin_addr,
        "sse_bridge_connections_active{route=\"orders\"}",
        |v| v == 1.0,
    )
    .await;
    eprintln!(
        "(a) 5 silent clients freed {:.1} s after their network went silent (write_timeout 3 s)",
        freed_after.as_secs_f64()
    );
    drop(silent);
    net.heal();

    // (c) 5% loss both ways and 256 kbit/s towards the clients: nothing lost or repeated.
    net.nft("add rule inet fault input ip saddr 10.77.1.0/24 numgen random mod 100 < 5 drop");
    net.nft("add rule inet fault output ip daddr 10.77.1.0/24 numgen random mod 100 < 5 drop");
    sh(&[
        "ip", "netns", "exec", &bridge_ns, "tc", "qdisc", "add", "dev", "sseb-cb", "root", "tbf",
        "rate", "256kbit", "burst", "16kb", "latency", "400ms",
    ]);
    let mut lossy = SseClient::connect(&url, None).await;
    let t0 = Instant::now();
    let first = seq;
    for _ in 0..200 {
        send(&p, topic, &format!("{seq}:{}", "y".repeat(200))).await;
        seq += 1;
    }
    let got = lossy.take(200, Duration::from_secs(60)).await;
    let want: Vec<String> = (first..seq)
        .map(|i| format!("{i}:{}", "y".repeat(200)))
        .collect();
    assert_eq!(got.iter().map(|e| e.data.clone()).collect::<Vec<_>>(), want);
    lossy.expect_quiet(Duration::from_millis(500)).await;
    let _ = honest.take(200, T).await;
    eprintln!(
        "(c) 200 events of 200 B through 5% loss and 256 kbit/s: all, once, in order, in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    sh(&[
        "ip", "netns", "exec", &bridge_ns, "tc", "qdisc", "del", "dev", "sseb-cb", "root",
    ]);
    net.heal();

    // (b) The broker partitioned away for 30 s.
    let id_before = honest.last_id();
    net.nft(&format!(
        "add rule inet fault output ip daddr {BROKER} drop"
    ));
    net.nft(&format!("add rule inet fault input ip saddr {BROKER} drop"));
    let cut = Instant::now();
    wait_status(admin_addr, 503, Duration::from_secs(20)).await;
    eprintln!(
        "(b) /readyz 503 {:.1} s after the partition",
        cut.elapsed().as_secs_f64()
    );
    let during_first = seq;
    for _ in 0..50 {
        send(&p, topic, &format!("{seq}:during")).await;
        seq += 1;
    }
    // Heartbeats keep the stream open, carrying the position it had.
    let sent = "sse_bridge_bytes_sent_total{route=\"orders\"}";
    let bytes_before = metric(admin_addr, sent).await;
    while cut.elapsed() < Duration::from_secs(30) {
        assert!(
            !honest.wait_end(Duration::from_secs(3)).await,
            "the stream ended during the partition"
        );
    }
    assert_eq!(honest.last_id(), id_before, "nothing new while partitioned");
    let beats = metric(admin_addr, sent).await - bytes_before;
    assert!(beats > 0.0, "heartbeats were written");
    net.heal();
    wait_status(admin_addr, 200, Duration::from_secs(60)).await;
    let healed = Instant::now();
    let got = honest.take(50, Duration::from_secs(60)).await;
    let want: Vec<String> = (during_first..seq).map(|i| format!("{i}:during")).collect();
    assert_eq!(got.iter().map(|e| e.data.clone()).collect::<Vec<_>>(), want);
    honest.expect_quiet(Duration::from_millis(500)).await;
    eprintln!(
        "(b) {beats} bytes of heartbeats during 30 s of partition; the 50 events produced meanwhile arrived once, in order, {:.1} s after /readyz was 200 again",
        healed.elapsed().as_secs_f64()
    );
}

/// A metric's value, 0 while the series does not exist yet.
async fn metric_or_zero(admin: std::net::SocketAddr, series: &str) -> f64 {
    series_value(&metrics_text(admin).await, series).unwrap_or(0.0)
}
