//! Payload framing against the real broker: line endings, unicode, empty, binary and
//! tombstones, in both payload modes, read back by a spec-conforming SSE parser.

mod common;

use std::time::Duration;

use base64::Engine;
use common::*;

const T: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_round_trip_in_both_modes() {
    let topic = unique("payloads");
    create_topic(&topic, 1).await;
    let toml = config("env", &topic, "payload = \"envelope\"\nevent_name = { header = \"type\" }")
        + &format!("\n[[routes]]\nname = \"val\"\nevent_name = {{ header = \"type\", default = \"record\" }}\nsource = {{ type = \"kafka\", brokers = [\"{}\"], topics = [\"{topic}\"] }}\n", broker());
    let b = bridge(&toml).await;
    let mut env = SseClient::connect(&format!("http://{}/streams/env", b.http_addr), None).await;
    let mut val = SseClient::connect(&format!("http://{}/streams/val", b.http_addr), None).await;

    let p = producer();
    let texts: Vec<&[u8]> = vec![
        b"line1\nline2",
        b"cr\rhere",
        b"crlf\r\nthere\r\n",
        "unicode: h\u{e9}llo \u{1F600} \u{4E16}\u{754C}".as_bytes(),
        b"",
        b"  leading spaces\n\nblank line above",
        b"data: not a field\nid: nope",
    ];
    for t in &texts {
        produce(
            &p,
            &topic,
            Rec {
                value: Some(t),
                headers: vec![("type", b"update")],
                ..Rec::default()
            },
        )
        .await;
    }
    let binary: &[u8] = &[0xff, 0x00, 0xfe, b'\n', 0x80];
    produce(
        &p,
        &topic,
        Rec {
            key: Some(b"k-bin"),
            value: Some(binary),
            ..Rec::default()
        },
    )
    .await;
    produce(
        &p,
        &topic,
        Rec {
            key: Some(b"k-gone"),
            value: None,
            ..Rec::default()
        },
    )
    .await;

    let n = texts.len() + 2;
    let got = env.take(n, T).await;
    for (i, t) in texts.iter().enumerate() {
        let j: serde_json::Value = serde_json::from_str(&got[i].data).unwrap();
        assert_eq!(
            j["value"].as_str().unwrap().as_bytes(),
            *t,
            "envelope carries text exactly"
        );
        assert_eq!(got[i].event, "update");
        assert_eq!(j["headers"][0]["name"], "type");
        assert_eq!(j["headers"][0]["value"], "update");
    }
    let j: serde_json::Value = serde_json::from_str(&got[texts.len()].data).unwrap();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(j["value_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        decoded, binary,
        "non-UTF-8 values are base64, never mangled"
    );
    assert_eq!(j["key"], "k-bin");
    let tomb = &got[texts.len() + 1];
    assert_eq!(tomb.event, "delete");
    let j: serde_json::Value = serde_json::from_str(&tomb.data).unwrap();
    assert_eq!(j["key"], "k-gone");
    assert!(j["value"].is_null());

    let got = val.take(n, T).await;
    for (i, t) in texts.iter().enumerate() {
        let want = std::str::from_utf8(t)
            .unwrap()
            .replace("\r\n", "\n")
            .replace('\r', "\n");
        assert_eq!(
            got[i].data, want,
            "value mode: lines as a browser joins them"
        );
        assert_eq!(got[i].event, "update");
    }
    assert_eq!(got[texts.len()].event, "binary");
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(&got[texts.len()].data)
            .unwrap(),
        binary
    );
    assert_eq!(got[texts.len() + 1].event, "delete");
    assert_eq!(got[texts.len() + 1].data, "k-gone");
    b.shutdown().await;
}
