//! The sample dashboard (examples/dashboard, on the bridge's JavaScript client) in
//! headless Chromium, through what stops a plain EventSource for good: the bridge
//! killed and restarted behind an address that answers 503 `draining` meanwhile (as a
//! rolling deploy does), tokens that expire every few seconds (renewed from the page's
//! own token endpoint), and the page left and opened again (it resumes from the
//! position it kept). Every order event is counted exactly once: the counts by status
//! and the total of order events equal what was produced. Screenshots of each phase go
//! to target/e2e/dashboard-*.png.

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::browser::*;
use common::*;
use fantoccini::Client;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "dashboard-secret-dashboard-secret-0123";
/// Tokens the page's backend hands out live this long.
const TOKEN_LIFE: i64 = 4;

/// A front for the bridge, as a Service or an ingress is: forwards every connection to
/// the bridge, or, while `down`, answers as a draining pod does (503 `draining` with
/// `Retry-After: 1`, CORS preflights allowed).
async fn front(bridge_port: u16, down: Arc<AtomicBool>) -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let down = down.clone();
            tokio::spawn(async move {
                if !down.load(Ordering::SeqCst) {
                    if let Ok(mut up) =
                        tokio::net::TcpStream::connect(("127.0.0.1", bridge_port)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut s, &mut up).await;
                        return;
                    }
                }
                let mut buf = [0u8; 8192];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]);
                let resp = if head.starts_with("OPTIONS ") {
                    "HTTP/1.1 204 No Content\r\naccess-control-allow-origin: *\r\naccess-control-allow-methods: GET, OPTIONS\r\naccess-control-allow-headers: Last-Event-ID, Cache-Control, Authorization\r\nconnection: close\r\n\r\n".to_owned()
                } else {
                    let body = r#"{"error":"draining","message":"this instance is shutting down; reconnect"}"#;
                    format!("HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\naccess-control-allow-origin: *\r\naccess-control-expose-headers: Retry-After\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())
                };
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    port
}

/// The page's backend: a fresh token at `/token`.
fn tokens() -> Handler {
    Arc::new(|path: &str| {
        (path == "/token").then(|| {
            let exp = chrono::Utc::now().timestamp() + TOKEN_LIFE;
            let t = encode(
                &Header::new(Algorithm::HS256),
                &json!({ "sub": "dashboard", "exp": exp }),
                &EncodingKey::from_secret(SECRET.as_bytes()),
            )
            .unwrap();
            ("text/plain", t.into_bytes())
        })
    })
}

/// Orders produced so far, and what the page must show for them.
struct Orders {
    topic: String,
    producer: rdkafka::producer::FutureProducer,
    status: std::collections::BTreeMap<u32, &'static str>,
    total: usize,
}

impl Orders {
    async fn send(&mut self, order: u32, status: &'static str) {
        let v = format!(
            "{{\"order\":{order},\"status\":\"{status}\",\"customer\":\"ada\",\"amount\":12.5}}"
        );
        let key = format!("order-{order}");
        produce(
            &self.producer,
            &self.topic,
            Rec {
                partition: (order % 3) as i32,
                key: Some(key.as_bytes()),
                value: Some(v.as_bytes()),
                headers: vec![("type", status.as_bytes())],
                ..Rec::default()
            },
        )
        .await;
        self.status.insert(order, status);
        self.total += 1;
    }

    /// Orders `from..to` each through `statuses`, `gap` apart.
    async fn batch(&mut self, from: u32, to: u32, statuses: &[&'static str], gap: Duration) {
        for s in statuses {
            for o in from..to {
                self.send(o, s).await;
                tokio::time::sleep(gap).await;
            }
        }
    }

    fn expected(&self) -> Value {
        let n = |s: &str| {
            self.status
                .values()
                .filter(|v| **v == s)
                .count()
                .to_string()
        };
        json!([
            n("created"),
            n("paid"),
            n("shipped"),
            n("delivered"),
            self.total.to_string()
        ])
    }
}

const SHOWN: &str = "return ['created','paid','shipped','delivered'].map(s => document.getElementById('count-' + s).textContent).concat([document.getElementById('orders-total').textContent])";
const STATE: &str = "return document.getElementById('orders-state').textContent";

async fn counts_match(c: &Client, what: &str, orders: &Orders) {
    let want = orders.expected();
    until(c, what, SHOWN, |v| v == &want).await;
    // And stays there: nothing counted twice afterwards.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(eval(c, SHOWN).await, want, "{what}: counted once");
}

async fn shot(c: &Client, name: &str) {
    std::fs::write(artifact(name), c.screenshot().await.unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_counts_exactly_through_a_restart_503s_token_expiry_and_a_reload() {
    let topic = unique("dash-resilient");
    create_topic(&topic, 3).await;
    let uri = mongo_uri();
    let coll = unique("dash-stock");
    let (port, admin) = (fixed_port(), fixed_port());
    let toml = on_ports(
        &config(
            "orders",
            &topic,
            &format!(
                "payload = \"envelope\"\nevent_name = {{ header = \"type\", default = \"order\" }}\nauth = {{ type = \"jwt\", algorithm = \"HS256\", secret = \"{SECRET}\", leeway = \"0s\" }}"
            ),
        ),
        port,
        admin,
    )
    .replace("cors_origins = [\"https://dash.example\"]", "cors_origins = [\"*\"]")
    .replace(
        &format!("topics = [\"{topic}\"] }}"),
        &format!("topics = [\"{topic}\"], value_format = \"json\" }}"),
    ) + &format!(
        "\n[[routes]]\nname = \"inventory\"\nsource = {{ type = \"mongodb\", uri = \"{uri}\", database = \"sse\", collection = \"{coll}\", full_document = \"updateLookup\" }}\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bridge.toml");
    std::fs::write(&file, toml).unwrap();
    let admin_addr = format!("127.0.0.1:{admin}").parse().unwrap();
    let mut bridge_proc = spawn_bridge(&file);
    wait_status(admin_addr, 200, T).await;

    let down = Arc::new(AtomicBool::new(false));
    let front = front(port, down.clone()).await;
    let site = serve_dir_with(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/dashboard"),
        tokens(),
    )
    .await;
    let page = format!("http://127.0.0.1:{site}/?bridge=http://127.0.0.1:{front}&token_url=/token");
    let (_driver, c) = browser().await;
    c.goto(&page).await.unwrap();
    until(&c, "both streams live", "return [document.getElementById('orders-state').textContent, document.getElementById('inventory-state').textContent]", |v| {
        v == &json!(["live", "live"])
    })
    .await;
    let stock = mongo_client(&uri)
        .await
        .database("sse")
        .collection::<mongodb::bson::Document>(&coll);
    for (name, qty) in [("widget", 5), ("gadget", 7)] {
        stock
            .insert_one(mongodb::bson::doc! { "name": name, "qty": qty, "price": 9.99 })
            .await
            .unwrap();
    }
    let mut orders = Orders {
        topic: topic.clone(),
        producer: producer(),
        status: Default::default(),
        total: 0,
    };
    orders
        .batch(1, 11, &["created", "paid"], Duration::ZERO)
        .await;
    counts_match(&c, "live", &orders).await;
    shot(&c, "dashboard-1-live.png").await;

    // A restart: killed outright, its address answering 503 draining for a few seconds,
    // orders coming in meanwhile.
    bridge_proc.stop();
    down.store(true, Ordering::SeqCst);
    orders
        .batch(1, 6, &["shipped"], Duration::from_millis(50))
        .await;
    until(&c, "the page says why it waits", STATE, |v| {
        v.as_str()
            .is_some_and(|s| s.starts_with("reconnecting (503 draining"))
    })
    .await;
    shot(&c, "dashboard-2-503-draining.png").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _restarted = spawn_bridge(&file);
    wait_status(admin_addr, 200, T).await;
    down.store(false, Ordering::SeqCst);
    until(&c, "live again", STATE, |v| v == "live").await;
    counts_match(&c, "after the restart", &orders).await;
    shot(&c, "dashboard-3-restarted.png").await;

    // Tokens expire every few seconds: orders keep coming over several lifetimes.
    eval(&c, "window.expiredSeen = 0; window.subscriptions.orders.on('expired', () => window.expiredSeen++); return 1").await;
    orders
        .batch(
            11,
            21,
            &["created", "paid", "shipped"],
            Duration::from_millis(300),
        )
        .await;
    counts_match(&c, "through token expiry", &orders).await;
    let expired = eval(&c, "return window.expiredSeen").await;
    assert!(expired.as_u64().unwrap() >= 1, "a token expired: {expired}");
    shot(&c, "dashboard-4-token-renewed.png").await;

    // The page is left, orders come in, the page is opened again in the same tab: it
    // shows what it showed, and resumes from the position it kept.
    c.goto("about:blank").await.unwrap();
    orders.batch(1, 21, &["delivered"], Duration::ZERO).await;
    c.goto(&page).await.unwrap();
    counts_match(&c, "after the page was opened again", &orders).await;
    until(&c, "inventory kept", "return [...document.querySelectorAll('#inventory tr')].map(r => r.cells[1].textContent).sort()", |v| {
        v == &json!(["gadget", "widget"])
    })
    .await;
    let reconnects = eval(&c, "return window.subscriptions.orders.stats.reconnects").await;
    assert_eq!(reconnects, json!(0), "one connection since the page opened");
    shot(&c, "dashboard-5-reopened.png").await;

    // A plain reload, orders arriving around it.
    let during = tokio::spawn({
        let mut more = Orders {
            topic: topic.clone(),
            producer: producer(),
            status: Default::default(),
            total: 0,
        };
        async move {
            more.batch(21, 26, &["created"], Duration::from_millis(100))
                .await;
            more
        }
    });
    c.refresh().await.unwrap();
    let more = during.await.unwrap();
    orders.status.extend(more.status);
    orders.total += more.total;
    counts_match(&c, "after a reload", &orders).await;
    shot(&c, "dashboard-6-reloaded.png").await;
    c.close().await.unwrap();
}
