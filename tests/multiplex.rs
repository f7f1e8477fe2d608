//! Several routes on one connection against the real broker: events name their route,
//! the composite id resumes every route exactly, and each route's auth applies.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;

const T: Duration = Duration::from_secs(30);
const SECRET: &str = "multiplex-secret-multiplex-secret-0123";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merged_routes_resume_exactly_and_check_each_routes_auth() {
    let (ta, tb) = (unique("mux-a"), unique("mux-b"));
    create_topic(&ta, 2).await;
    create_topic(&tb, 1).await;
    let toml = format!(
        "{}\n[[routes]]\nname = \"b\"\nsource = {{ type = \"kafka\", brokers = [\"{}\"], topics = [\"{tb}\"] }}\nauth = {{ type = \"jwt\", algorithm = \"HS256\", secret = \"{SECRET}\" }}\nevent_name = {{ default = \"tick\" }}\n",
        config("a", &ta, ""),
        broker()
    );
    let b = bridge(&toml).await;
    let url = format!("http://{}/streams?routes=a,b", b.http_addr);
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let token = encode(
        &Header::new(Algorithm::HS256),
        &json!({ "sub": "u", "exp": exp }),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let auth = ("authorization", format!("Bearer {token}"));

    let refused = SseClient::connect(&url, None).await;
    assert_eq!(
        (refused.status, refused.error_code().as_str()),
        (401, "unauthorized"),
        "route b needs a token"
    );
    let unknown =
        SseClient::connect(&format!("http://{}/streams?routes=a,zz", b.http_addr), None).await;
    assert_eq!(
        (unknown.status, unknown.error_code().as_str()),
        (404, "unknown_route")
    );
    let bad = SseClient::connect_with(
        &url,
        &[auth.clone(), ("last-event-id", "AWsBAXQBAg".into())],
    )
    .await;
    assert_eq!(
        (bad.status, bad.error_code().as_str()),
        (400, "malformed_event_id"),
        "a single route's id is not a composite id"
    );

    let mut c = SseClient::connect_with(&url, std::slice::from_ref(&auth)).await;
    assert_eq!(c.status, 200);
    let p = producer();
    produce_n(&p, &ta, 2, "a", 6).await;
    produce_n(&p, &tb, 1, "b", 4).await;
    let got = c.take(10, T).await;
    let names: Vec<&str> = got.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(
        names.iter().filter(|n| **n == "a:message").count(),
        6,
        "{names:?}"
    );
    assert_eq!(
        names.iter().filter(|n| **n == "b:tick").count(),
        4,
        "{names:?}"
    );

    // Leave after 10; 5 more on each; resume with the composite id: exactly those 10.
    let last = c.last_id();
    drop(c);
    produce_n(&p, &ta, 2, "a2", 5).await;
    produce_n(&p, &tb, 1, "b2", 5).await;
    let mut back = SseClient::connect_with(&url, &[auth.clone(), ("last-event-id", last)]).await;
    assert_eq!(back.status, 200);
    let got = back.take(10, T).await;
    let mut data: Vec<String> = got.iter().map(|e| e.data.clone()).collect();
    data.sort();
    let mut want: Vec<String> = (0..5)
        .map(|i| format!("a2-{i}"))
        .chain((0..5).map(|i| format!("b2-{i}")))
        .collect();
    want.sort();
    assert_eq!(data, want);
    back.expect_quiet(Duration::from_millis(500)).await;
    b.shutdown().await;
}
