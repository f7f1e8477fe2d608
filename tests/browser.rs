//! End to end in headless Chromium (Debian's chromium and chromium-driver, installed by
//! scripts/test; driven over WebDriver with fantoccini): the console lists routes and
//! shows events produced after the page opened, multi-line and unicode payloads exactly;
//! a page's EventSource survives the bridge being killed and restarted, resuming by
//! itself with Last-Event-ID, every event exactly once in per-partition order.
//! Screenshots go to target/e2e/.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const T: Duration = Duration::from_secs(30);

/// chromedriver on a free port, and a session of headless Chromium.
async fn browser() -> (KillOnDrop, Client) {
    let driver = std::env::var("SSE_BRIDGE_TEST_CHROMEDRIVER")
        .ok()
        .or_else(|| {
            std::path::Path::new("/usr/bin/chromedriver")
                .exists()
                .then(|| "/usr/bin/chromedriver".to_owned())
        })
        .unwrap_or_else(|| {
            panic!("chromedriver not found: run the tests with scripts/test, which installs chromium and chromium-driver")
        });
    let port = fixed_port();
    let child = KillOnDrop(
        std::process::Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start chromedriver"),
    );
    wait_port(port).await;
    let profile = tempfile::tempdir().unwrap().keep();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": std::env::var("SSE_BRIDGE_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--window-size=1100,900", format!("--user-data-dir={}", profile.display())],
        }),
    );
    let client = ClientBuilder::native()
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("WebDriver session");
    (child, client)
}

fn artifact(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/e2e");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

async fn eval(c: &Client, js: &str) -> Value {
    c.execute(js, vec![]).await.expect("script")
}

async fn until(c: &Client, what: &str, js: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let v = eval(c, js).await;
        if ok(&v) {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: last saw {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_lists_routes_and_shows_events_exactly() {
    let topic = unique("console");
    create_topic(&topic, 1).await;
    let b = bridge(&(config("orders", &topic, "") + &format!(
        "\n[[routes]]\nname = \"audit\"\nsource = {{ type = \"kafka\", brokers = [\"{}\"], topics = [\"{topic}\"] }}\nclient_filters = [\"key\"]\n",
        broker()
    )))
    .await;
    let (_driver, c) = browser().await;
    // The console is on the admin listener by default, and so are the streams it opens.
    c.goto(&format!("http://{}/", b.admin_addr)).await.unwrap();
    let names = until(
        &c,
        "route list",
        "return [...document.querySelectorAll('#routes tbody a')].map(a => a.textContent)",
        |v| v.as_array().is_some_and(|a| a.len() == 2),
    )
    .await;
    assert_eq!(names, json!(["orders", "audit"]));
    c.find(Locator::LinkText("orders"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &c,
        "stream open",
        "return document.getElementById('state').textContent",
        |v| v == "open",
    )
    .await;
    let p = producer();
    let payloads = [
        "{\"order\":1,\"status\":\"paid\"}",
        "first line\nsecond line\n  indented third",
        "unicode: héllo 🌍 — 你好, ünïcödé ✓",
    ];
    for v in payloads {
        produce_text(&p, &topic, v).await;
    }
    let shown = until(
        &c,
        "events shown",
        "return [...document.querySelectorAll('#events pre.data')].map(p => p.dataset.raw).reverse()",
        |v| v.as_array().is_some_and(|a| a.len() == 3),
    )
    .await;
    assert_eq!(shown, json!(payloads), "payloads shown exactly as produced");
    let text = eval(
        &c,
        "return document.querySelector('#events li pre').textContent",
    )
    .await;
    assert_eq!(text, json!(payloads[2]));
    let pretty = eval(
        &c,
        "return document.querySelectorAll('#events li pre')[2].textContent",
    )
    .await;
    assert!(
        pretty
            .as_str()
            .unwrap()
            .contains("\n  \"status\": \"paid\""),
        "JSON pretty-printed: {pretty}"
    );
    let last = eval(&c, "return document.getElementById('last-id').textContent").await;
    assert!(
        last.as_str().is_some_and(|s| s.len() > 4),
        "Last-Event-ID shown: {last}"
    );
    std::fs::write(artifact("console.png"), c.screenshot().await.unwrap()).unwrap();
    // Drop and resume: nothing is lost while dropped.
    c.find(Locator::Id("drop"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    produce_text(&p, &topic, "while dropped").await;
    let shown = until(
        &c,
        "resumed",
        "return [...document.querySelectorAll('#events pre.data')].map(p => p.dataset.raw)",
        |v| v.as_array().is_some_and(|a| a.len() == 4),
    )
    .await;
    assert_eq!(shown[0], json!("while dropped"));
    // A phone-sized screen.
    c.set_window_size(390, 844).await.unwrap();
    std::fs::write(artifact("console-phone.png"), c.screenshot().await.unwrap()).unwrap();
    c.close().await.unwrap();
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_uses_the_token_field_for_routes_with_auth() {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    let topic = unique("console-auth");
    create_topic(&topic, 1).await;
    let secret = "console-secret-console-secret-console-01";
    let b = bridge(&config(
        "secure",
        &topic,
        &format!("auth = {{ type = \"jwt\", algorithm = \"HS256\", secret = \"{secret}\" }}"),
    ))
    .await;
    let (_driver, c) = browser().await;
    c.goto(&format!("http://{}/#route=secure", b.admin_addr))
        .await
        .unwrap();
    let state = "return document.getElementById('state').textContent";
    until(&c, "refused without a token", state, |v| {
        v == "refused: 401 unauthorized"
    })
    .await;
    let exp = chrono::Utc::now().timestamp() + 600;
    let token = encode(
        &Header::new(Algorithm::HS256),
        &json!({ "sub": "console", "exp": exp }),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    let field = c.find(Locator::Id("token")).await.unwrap();
    field.send_keys(&token).await.unwrap();
    eval(
        &c,
        "document.getElementById('token').dispatchEvent(new Event('change')); return 1",
    )
    .await;
    until(&c, "open with the token", state, |v| v == "open").await;
    let p = producer();
    produce_text(&p, &topic, "for token holders").await;
    until(
        &c,
        "event shown",
        "return [...document.querySelectorAll('#events pre.data')].map(p => p.dataset.raw)",
        |v| v == &json!(["for token holders"]),
    )
    .await;
    c.close().await.unwrap();
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_source_resumes_by_itself_after_the_bridge_is_killed() {
    let topic = unique("browser-kill");
    create_topic(&topic, 2).await;
    let (port, admin) = (fixed_port(), fixed_port());
    let toml = on_ports(&config("r", &topic, ""), port, admin).replace(
        "cors_origins = [\"https://dash.example\"]",
        "cors_origins = [\"*\"]",
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bridge.toml");
    std::fs::write(&file, toml).unwrap();
    let start = || spawn_bridge(&file);
    let mut bridge_proc = start();
    wait_status(format!("127.0.0.1:{admin}").parse().unwrap(), 200, T).await;
    let page = format!(
        "<!doctype html><meta charset=utf-8><title>es</title><script>
window.got = []; window.opens = 0;
const es = new EventSource('http://127.0.0.1:{port}/streams/r');
es.onopen = () => window.opens++;
es.onmessage = (e) => window.got.push([e.lastEventId, e.data]);
</script>"
    );
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("index.html"), page).unwrap();
    let page_port = serve_dir(site.path().to_path_buf()).await;
    let (_driver, c) = browser().await;
    c.goto(&format!("http://127.0.0.1:{page_port}/"))
        .await
        .unwrap();
    until(&c, "open", "return window.opens", |v| v == 1).await;
    let p = producer();
    let send = |from: usize, to: usize| {
        let (p, topic) = (p.clone(), topic.clone());
        async move {
            for i in from..to {
                let part = (i % 2) as i32;
                let v = format!("p{part}-{i}");
                produce_at(&p, &topic, part, v.as_bytes()).await;
            }
        }
    };
    send(0, 20).await;
    until(&c, "first half", "return window.got.length", |v| {
        v.as_u64() == Some(20)
    })
    .await;
    // Killed outright (no drain); events keep coming while it is down.
    bridge_proc.stop();
    send(20, 40).await;
    let _restarted = start();
    until(
        &c,
        "every event after the restart",
        "return window.got",
        |v| v.as_array().is_some_and(|a| a.len() >= 40),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let got = eval(&c, "return window.got").await;
    let data: Vec<String> = got
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e[1].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(data.len(), 40, "every event exactly once: {data:?}");
    for part in 0..2 {
        let seq: Vec<usize> = data
            .iter()
            .filter(|d| d.starts_with(&format!("p{part}-")))
            .map(|d| d.split('-').nth(1).unwrap().parse().unwrap())
            .collect();
        let want: Vec<usize> = (0..40).filter(|i| i % 2 == part).collect();
        assert_eq!(seq, want, "partition {part} in order");
    }
    assert!(
        eval(&c, "return window.opens").await.as_u64().unwrap() >= 2,
        "the browser reconnected by itself"
    );
    std::fs::write(artifact("event-source.png"), c.screenshot().await.unwrap()).unwrap();
    c.close().await.unwrap();
}

/// Serve the files of `dir` at http://127.0.0.1:PORT/ until the test ends.
async fn serve_dir(dir: PathBuf) -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let dir = dir.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]);
                let path = head.split_whitespace().nth(1).unwrap_or("/");
                let path = path.split('?').next().unwrap_or("/");
                let name = if path == "/" {
                    "index.html"
                } else {
                    path.trim_start_matches('/')
                };
                let kind = match name.rsplit('.').next() {
                    Some("html") => "text/html; charset=utf-8",
                    Some("js") => "text/javascript",
                    Some("css") => "text/css",
                    _ => "application/octet-stream",
                };
                let resp = match std::fs::read(dir.join(name)) {
                    Ok(body) if !name.contains("..") => [
                        format!("HTTP/1.1 200 OK\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len()).into_bytes(),
                        body,
                    ]
                    .concat(),
                    _ => b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_vec(),
                };
                let _ = s.write_all(&resp).await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_dashboard_shows_orders_and_inventory() {
    use mongodb::bson::{doc, Document};
    let topic = unique("dash-orders");
    create_topic(&topic, 3).await;
    let uri = mongo_uri();
    let coll_name = unique("dash-inventory");
    let toml = config(
        "orders",
        &topic,
        "payload = \"envelope\"\nevent_name = { header = \"type\", default = \"order\" }",
    )
    .replace("cors_origins = [\"https://dash.example\"]", "cors_origins = [\"*\"]")
    // As the demo: the order is embedded in the envelope as JSON.
    .replace(
        &format!("topics = [\"{topic}\"] }}"),
        &format!("topics = [\"{topic}\"], value_format = \"json\" }}"),
    )
        + &format!(
            "\n[[routes]]\nname = \"inventory\"\nsource = {{ type = \"mongodb\", uri = \"{uri}\", database = \"sse\", collection = \"{coll_name}\", full_document = \"updateLookup\" }}\n"
        );
    let b = bridge(&toml).await;
    let site =
        serve_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/dashboard")).await;
    let (_driver, c) = browser().await;
    c.goto(&format!(
        "http://127.0.0.1:{site}/?bridge=http://{}",
        b.http_addr
    ))
    .await
    .unwrap();
    until(&c, "both streams live", "return [document.getElementById('orders-state').textContent, document.getElementById('inventory-state').textContent]", |v| {
        v == &json!(["live", "live"])
    })
    .await;
    let p = producer();
    for (order, status) in [
        (1, "created"),
        (2, "created"),
        (1, "paid"),
        (3, "created"),
        (2, "paid"),
        (1, "shipped"),
    ] {
        let v = format!(
            "{{\"order\":{order},\"status\":\"{status}\",\"customer\":\"ada\",\"amount\":12.5}}"
        );
        let key = format!("order-{order}");
        produce(
            &p,
            &topic,
            Rec {
                partition: order % 3,
                key: Some(key.as_bytes()),
                value: Some(v.as_bytes()),
                headers: vec![("type", status.as_bytes())],
                ..Rec::default()
            },
        )
        .await;
    }
    let coll = mongo_client(&uri)
        .await
        .database("sse")
        .collection::<Document>(&coll_name);
    for (name, qty) in [("widget", 5), ("gadget", 7), ("sprocket", 1)] {
        coll.insert_one(doc! { "name": name, "qty": qty, "price": 9.99 })
            .await
            .unwrap();
    }
    coll.update_one(doc! { "name": "widget" }, doc! { "$set": { "qty": 42 } })
        .await
        .unwrap();
    coll.delete_one(doc! { "name": "sprocket" }).await.unwrap();
    let counts = "return ['created','paid','shipped','delivered'].map(s => document.getElementById('count-' + s).textContent)";
    until(&c, "order counts", counts, |v| {
        v == &json!(["1", "1", "1", "0"])
    })
    .await;
    let table = "return [...document.querySelectorAll('#inventory tr')].map(r => [r.cells[1].textContent, r.cells[2].textContent]).sort()";
    until(&c, "inventory table", table, |v| {
        v == &json!([["gadget", "7"], ["widget", "42"]])
    })
    .await;
    std::fs::write(artifact("dashboard.png"), c.screenshot().await.unwrap()).unwrap();
    c.close().await.unwrap();
    b.shutdown().await;
}
