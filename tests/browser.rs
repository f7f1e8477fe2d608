//! End to end in headless Chromium (Debian's chromium and chromium-driver, installed by
//! scripts/test; driven over WebDriver with fantoccini): the console lists routes and
//! shows events produced after the page opened, multi-line and unicode payloads exactly;
//! a page's EventSource survives the bridge being killed and restarted, resuming by
//! itself with Last-Event-ID, every event exactly once in per-partition order, and so
//! does the JavaScript client over its EventSource transport.
//! Screenshots go to target/e2e/.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::browser::*;
use common::*;
use fantoccini::Locator;
use serde_json::json;

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
    resumes_after_kill(
        "<script>
window.got = []; window.opens = 0;
const es = new EventSource('http://127.0.0.1:PORT/streams/r');
es.onopen = () => window.opens++;
es.onmessage = (e) => window.got.push([e.lastEventId, e.data]);
</script>",
        "event-source.png",
    )
    .await;
}

/// The client's EventSource transport (for browsers without streaming fetch) keeps the
/// same contract, loaded from the bridge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_event_source_transport_resumes_after_the_bridge_is_killed() {
    resumes_after_kill(
        "<script type=module>
window.got = []; window.opens = 0;
const { connect } = await import('http://127.0.0.1:PORT/client/sse-bridge-client.js');
const sub = connect('http://127.0.0.1:PORT/streams/r', { transport: 'eventsource', backoff: { initial: 200, max: 1000 } });
sub.on('open', () => window.opens++);
sub.on('message', (e) => window.got.push([e.id, e.data]));
if (sub.stats.transport !== 'eventsource') { sub.close(); throw new Error('not the EventSource transport'); }
</script>",
        "client-event-source.png",
    )
    .await;
}

/// A page (`script`, `PORT` standing for the bridge's port) collecting `window.got` and
/// counting `window.opens` gets every event exactly once, in per-partition order, across
/// the bridge killed and restarted.
async fn resumes_after_kill(script: &str, shot: &str) {
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
        "<!doctype html><meta charset=utf-8><title>es</title>{}",
        script.replace("PORT", &port.to_string())
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
    std::fs::write(artifact(shot), c.screenshot().await.unwrap()).unwrap();
    c.close().await.unwrap();
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
