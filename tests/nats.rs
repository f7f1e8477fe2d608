//! NATS JetStream routes against a real nats-server (started by scripts/test; the
//! restart test starts its own): envelopes with subject and headers, event names from a
//! header, resumes from the ring and from the stream exactly once, `start` and `since`,
//! a purged sequence as an explicit reset with the available range, subject filters and
//! client filters, and the server restarted mid-stream.

mod common;

use std::time::Duration;

use async_nats::jetstream::stream::Config as StreamConfig;
use async_nats::HeaderMap;
use common::*;
use serde_json::Value;
use sse_bridge::source::nats::NatsSeq;

const T: Duration = Duration::from_secs(20);

/// A fresh stream named `name` on subjects `<name>.>`.
async fn stream(js: &async_nats::jetstream::Context, name: &str) {
    js.create_stream(StreamConfig {
        name: name.to_owned(),
        subjects: vec![format!("{name}.>")],
        ..Default::default()
    })
    .await
    .expect("create stream");
}

/// Publish `data` to `subject` (headers `(name, value)`), acknowledged; its sequence.
async fn publish(
    js: &async_nats::jetstream::Context,
    subject: &str,
    data: &str,
    headers: &[(&str, &str)],
) -> u64 {
    let mut h = HeaderMap::new();
    for (n, v) in headers {
        h.insert(*n, *v);
    }
    js.publish_with_headers(subject.to_owned(), h, data.to_owned().into())
        .await
        .expect("publish")
        .await
        .expect("ack")
        .sequence
}

fn seq_of(id: &str) -> u64 {
    sse_bridge::event_id::decode_as::<NatsSeq>(id)
        .expect("a nats id")
        .0
}

fn name(prefix: &str) -> String {
    unique(prefix).replace(['.', '-'], "_")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelopes_carry_subject_and_headers_and_a_header_names_the_event() {
    let url = nats_url();
    let js = jetstream(&url).await;
    let s = name("env");
    stream(&js, &s).await;
    let b = bridge(&nats_config(
        "r",
        &url,
        &s,
        "value_format = \"json\"",
        "payload = \"envelope\"\nevent_name = { header = \"type\" }",
    ))
    .await;
    let url_r = format!("http://{}/streams/r", b.http_addr);
    let mut c = SseClient::connect(&url_r, None).await;
    assert_eq!(c.status, 200);
    let subj = format!("{s}.eu.orders");
    let s1 = publish(
        &js,
        &subj,
        r#"{"n":1}"#,
        &[("type", "paid"), ("region", "eu")],
    )
    .await;
    let s2 = publish(&js, &subj, "plain", &[("type", "reset")]).await;
    let evs = c.take(2, T).await;
    let events: Vec<&str> = evs.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(events, ["paid", "record.reset"]);
    let e: Value = serde_json::from_str(&evs[0].data).unwrap();
    assert_eq!(e["stream"], s.as_str());
    assert_eq!(e["subject"], subj.as_str());
    assert_eq!(e["seq"], s1);
    assert_eq!(e["value"], serde_json::json!({"n": 1}));
    assert_eq!(
        e["headers"],
        serde_json::json!([{"name": "region", "value": "eu"}, {"name": "type", "value": "paid"}])
    );
    let e2: Value = serde_json::from_str(&evs[1].data).unwrap();
    assert_eq!(e2["value_text"], "plain");
    // The id is the stream sequence after the message.
    assert_eq!(seq_of(&evs[0].id), s1 + 1);
    assert_eq!(seq_of(&evs[1].id), s2 + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_from_the_ring_and_from_the_stream_exactly_once() {
    let url = nats_url();
    let js = jetstream(&url).await;
    let s = name("resume");
    stream(&js, &s).await;
    for i in 0..30 {
        publish(&js, &format!("{s}.a"), &format!("m{i}"), &[]).await;
    }
    // A ring of 5: the first 25 messages are only in the stream.
    let b = bridge(&nats_config(
        "r",
        &url,
        &s,
        "",
        "replay = { max_events = 5 }\nmax_client_lag = 5",
    ))
    .await;
    let url_r = format!("http://{}/streams/r", b.http_addr);
    // After message 3 (sequence 3): from the stream, then the ring.
    let id = sse_bridge::event_id::encode(&NatsSeq(4));
    let mut c = SseClient::connect(&url_r, Some(&id)).await;
    assert_eq!(c.status, 200);
    let evs = c.take(27, T).await;
    let want: Vec<String> = (3..30).map(|i| format!("m{i}")).collect();
    assert_eq!(evs.iter().map(|e| e.data.clone()).collect::<Vec<_>>(), want);
    c.expect_quiet(Duration::from_millis(300)).await;
    // After message 28 (sequence 29): from the ring.
    let id = sse_bridge::event_id::encode(&NatsSeq(30));
    let mut c = SseClient::connect(&url_r, Some(&id)).await;
    let evs = c.take(1, T).await;
    assert_eq!(evs[0].data, "m29");
    c.expect_quiet(Duration::from_millis(300)).await;
    let m = metrics_text(b.admin_addr).await;
    for outcome in ["source", "buffer"] {
        let series = format!("sse_bridge_resumes_total{{outcome=\"{outcome}\",route=\"r\"}}");
        assert_eq!(series_value(&m, &series), Some(1.0), "{series}\n{m}");
    }
    // And live after both.
    publish(&js, &format!("{s}.a"), "m30", &[]).await;
    assert_eq!(c.take(1, T).await[0].data, "m30");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_earliest_last_and_since() {
    let url = nats_url();
    let js = jetstream(&url).await;
    let s = name("start");
    stream(&js, &s).await;
    for i in 0..10 {
        publish(&js, &format!("{s}.a"), &format!("m{i}"), &[]).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let cut = chrono::Utc::now().timestamp_millis();
    tokio::time::sleep(Duration::from_millis(50)).await;
    for i in 10..13 {
        publish(&js, &format!("{s}.a"), &format!("m{i}"), &[]).await;
    }
    for (start, first) in [("\"earliest\"", 0), ("{ last = 4 }", 9)] {
        let b = bridge(&nats_config(
            "r",
            &url,
            &s,
            "",
            &format!("start = {start}\nreplay = {{ max_events = 2 }}"),
        ))
        .await;
        let mut c = SseClient::connect(&format!("http://{}/streams/r", b.http_addr), None).await;
        let evs = c.take(13 - first, T).await;
        let want: Vec<String> = (first..13).map(|i| format!("m{i}")).collect();
        assert_eq!(
            evs.iter().map(|e| e.data.clone()).collect::<Vec<_>>(),
            want,
            "start = {start}"
        );
        c.expect_quiet(Duration::from_millis(300)).await;
    }
    let b = bridge(&nats_config("r", &url, &s, "", "")).await;
    let mut c = SseClient::connect(
        &format!("http://{}/streams/r?since={cut}", b.http_addr),
        None,
    )
    .await;
    let evs = c.take(3, T).await;
    assert_eq!(
        evs.iter().map(|e| e.data.clone()).collect::<Vec<_>>(),
        ["m10", "m11", "m12"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purged_sequence_is_a_reset_naming_the_available_range() {
    let url = nats_url();
    let js = jetstream(&url).await;
    let s = name("purge");
    stream(&js, &s).await;
    for i in 0..10 {
        publish(&js, &format!("{s}.a"), &format!("m{i}"), &[]).await;
    }
    let b = bridge(&nats_config(
        "r",
        &url,
        &s,
        "",
        "replay = { max_events = 2 }",
    ))
    .await;
    // Keep the last 3 messages (sequences 8..10).
    js.get_stream(&s)
        .await
        .unwrap()
        .purge()
        .keep(3)
        .await
        .expect("purge");
    let id = sse_bridge::event_id::encode(&NatsSeq(3));
    let mut c = SseClient::connect(&format!("http://{}/streams/r", b.http_addr), Some(&id)).await;
    assert_eq!(c.status, 200);
    let evs = c.take(4, T).await;
    assert_eq!(evs[0].event, "reset");
    let r: Value = serde_json::from_str(&evs[0].data).unwrap();
    assert_eq!(r["reason"], "position_unavailable");
    assert_eq!(r["route"], "r");
    assert_eq!(r["requested"], 3);
    assert_eq!(r["earliest"], 8);
    assert_eq!(r["latest"], 10);
    assert_eq!(r["resumed_from"], 8);
    assert_eq!(seq_of(&evs[0].id), 8);
    assert_eq!(
        evs[1..].iter().map(|e| e.data.clone()).collect::<Vec<_>>(),
        ["m7", "m8", "m9"]
    );
    // An id from an earlier stream of that name, beyond this one's end: a reset too.
    let id = sse_bridge::event_id::encode(&NatsSeq(500));
    let mut c = SseClient::connect(&format!("http://{}/streams/r", b.http_addr), Some(&id)).await;
    let evs = c.take(4, T).await;
    let r: Value = serde_json::from_str(&evs[0].data).unwrap();
    assert_eq!(
        (r["cause"].as_str(), r["requested"].as_u64()),
        (Some("sequence_beyond_stream_end"), Some(500))
    );
    assert_eq!(evs[3].data, "m9");
    let m = metrics_text(b.admin_addr).await;
    assert_eq!(
        series_value(
            &m,
            "sse_bridge_resumes_total{outcome=\"reset\",route=\"r\"}"
        ),
        Some(2.0)
    );
}

/// The ring still reaches back to the stream's new first sequence: the reset's rest is
/// read from memory, and the resume still counts as a reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purged_sequence_served_from_the_ring_is_still_a_reset() {
    let url = nats_url();
    let js = jetstream(&url).await;
    let s = name("purge-ring");
    stream(&js, &s).await;
    for i in 0..10 {
        publish(&js, &format!("{s}.a"), &format!("m{i}"), &[]).await;
    }
    // The ring holds sequences 6..=10.
    let b = bridge(&nats_config(
        "r",
        &url,
        &s,
        "",
        "replay = { max_events = 5 }",
    ))
    .await;
    js.get_stream(&s)
        .await
        .unwrap()
        .purge()
        .keep(3)
        .await
        .expect("purge");
    let id = sse_bridge::event_id::encode(&NatsSeq(3));
    let mut c = SseClient::connect(&format!("http://{}/streams/r", b.http_addr), Some(&id)).await;
    let evs = c.take(4, T).await;
    assert_eq!(evs[0].event, "reset");
    let r: Value = serde_json::from_str(&evs[0].data).unwrap();
    assert_eq!(
        (r["requested"].as_u64(), r["resumed_from"].as_u64()),
        (Some(3), Some(8))
    );
    assert_eq!(
        evs[1..].iter().map(|e| e.data.clone()).collect::<Vec<_>>(),
        ["m7", "m8", "m9"]
    );
    let m = metrics_text(b.admin_addr).await;
    assert_eq!(
        series_value(
            &m,
            "sse_bridge_resumes_total{outcome=\"reset\",route=\"r\"}"
        ),
        Some(1.0),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subject_filter_and_client_filters_on_subject_and_headers() {
    let url = nats_url();
    let js = jetstream(&url).await;
    let s = name("filter");
    stream(&js, &s).await;
    let b = bridge(&nats_config(
        "r",
        &url,
        &s,
        &format!("subject = \"{s}.eu.*\""),
        "client_filters = [\"key\", \"header:kind\"]",
    ))
    .await;
    let base = format!("http://{}/streams/r", b.http_addr);
    let mut all = SseClient::connect(&base, None).await;
    let mut one = SseClient::connect(&format!("{base}?key={s}.eu.b"), None).await;
    let mut kind = SseClient::connect(&format!("{base}?header:kind=x"), None).await;
    publish(&js, &format!("{s}.us.a"), "us", &[]).await;
    publish(&js, &format!("{s}.eu.a"), "eu-a", &[("kind", "x")]).await;
    publish(&js, &format!("{s}.eu.b"), "eu-b", &[]).await;
    let evs = all.take(2, T).await;
    assert_eq!(
        evs.iter().map(|e| e.data.clone()).collect::<Vec<_>>(),
        ["eu-a", "eu-b"]
    );
    all.expect_quiet(Duration::from_millis(300)).await;
    assert_eq!(one.take(1, T).await[0].data, "eu-b");
    assert_eq!(kind.take(1, T).await[0].data, "eu-a");
    one.expect_quiet(Duration::from_millis(200)).await;
    kind.expect_quiet(Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_restarted_mid_stream_loses_nothing() {
    let bin = std::env::var("SSE_BRIDGE_TEST_NATS_SERVER").unwrap_or_else(|_| {
        panic!("SSE_BRIDGE_TEST_NATS_SERVER is not set: run the tests with scripts/test, which installs nats-server")
    });
    let store = tempfile::tempdir().unwrap();
    let port = fixed_port();
    let start = || {
        KillOnDrop(
            std::process::Command::new(&bin)
                .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
                .arg(store.path())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("start nats-server"),
        )
    };
    let mut server = start();
    wait_port(port).await;
    let url = format!("nats://127.0.0.1:{port}");
    let js = jetstream(&url).await;
    stream(&js, "restart").await;
    let b = bridge(&nats_config("r", &url, "restart", "", "")).await;
    let mut c = SseClient::connect(&format!("http://{}/streams/r", b.http_addr), None).await;
    for i in 0..10 {
        publish(&js, "restart.a", &format!("m{i}"), &[]).await;
    }
    let mut got: Vec<String> = c.take(10, T).await.into_iter().map(|e| e.data).collect();
    server.stop();
    wait_status(b.admin_addr, 503, T).await;
    let _server = start();
    wait_port(port).await;
    let js = jetstream(&url).await;
    for i in 10..20 {
        publish(&js, "restart.a", &format!("m{i}"), &[]).await;
    }
    got.extend(
        c.take(10, Duration::from_secs(40))
            .await
            .into_iter()
            .map(|e| e.data),
    );
    let want: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    assert_eq!(
        got, want,
        "every message once, in order, across the restart"
    );
    c.expect_quiet(Duration::from_millis(300)).await;
    wait_status(b.admin_addr, 200, T).await;
}
