//! Authentication, per-user filtering and limits against the real broker: forged tokens
//! are refused, users see only their own events (resuming included), claims and query
//! parameters cannot widen what a user sees, tokens expire mid-stream, caps hold.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use sse_bridge::config::Settings;

const T: Duration = Duration::from_secs(30);
const SECRET: &str = "test-secret-test-secret-test-secret-0123";
const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(sub: Value) -> Value {
    json!({ "sub": sub, "iss": "https://auth.test", "aud": "dash", "exp": now() + 600, "scope": "read orders:read" })
}

fn hs(claims: &Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn rs(claims: &Value, kid: Option<&str>) -> String {
    let pem = std::fs::read(format!("{FIX}/rsa_private.pem")).unwrap();
    let mut h = Header::new(Algorithm::RS256);
    h.kid = kid.map(str::to_owned);
    encode(&h, claims, &EncodingKey::from_rsa_pem(&pem).unwrap()).unwrap()
}

fn es(claims: &Value) -> String {
    let pem = std::fs::read(format!("{FIX}/ec_private.pem")).unwrap();
    encode(
        &Header::new(Algorithm::ES256),
        claims,
        &EncodingKey::from_ec_pem(&pem).unwrap(),
    )
    .unwrap()
}

fn b64(v: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

fn hs_route(extra: &str) -> String {
    format!(
        "auth = {{ type = \"jwt\", algorithm = \"HS256\", secret = \"{SECRET}\", issuer = \"https://auth.test\", audience = \"dash\", leeway = \"0s\", cookie = \"session\", require = {{ scope = \"orders:read\" }} }}\n{extra}"
    )
}

async fn status(url: &str, headers: &[(&str, String)]) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut req = reqwest::Client::new().get(url);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let r = req.send().await.unwrap();
    let (s, h) = (r.status().as_u16(), r.headers().clone());
    if s == 200 {
        return (s, Value::Null, h);
    }
    (s, r.json().await.unwrap_or(Value::Null), h)
}

/// The status and JSON error code of a refused GET.
async fn refusal(url: &str, headers: &[(&str, String)]) -> (u16, String) {
    let mut req = reqwest::Client::new().get(url);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    error_of(req.send().await.unwrap()).await
}

fn bearer(t: &str) -> Vec<(&'static str, String)> {
    vec![("authorization", format!("Bearer {t}"))]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_unfit_tokens_are_refused() {
    let topic = unique("auth-forged");
    create_topic(&topic, 1).await;
    let b = bridge(&config("r", &topic, &hs_route(""))).await;
    let url = format!("http://{}/streams/r", b.http_addr);
    let good = hs(&claims(json!("alice")));
    assert_eq!(status(&url, &bearer(&good)).await.0, 200);
    assert_eq!(
        status(&format!("{url}?access_token={good}"), &[]).await.0,
        200,
        "query token"
    );
    assert_eq!(
        status(&url, &[("cookie", format!("a=1; session={good}"))])
            .await
            .0,
        200,
        "cookie"
    );

    let (s, body, h) = status(&url, &[]).await;
    assert_eq!((s, body["error"].as_str()), (401, Some("unauthorized")));
    assert_eq!(h["www-authenticate"], "Bearer");
    let wrong_key = encode(
        &Header::new(Algorithm::HS256),
        &claims(json!("alice")),
        &EncodingKey::from_secret(b"another-secret-another-secret-0123456"),
    )
    .unwrap();
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims(json!("alice")))
    );
    let mut expired = claims(json!("alice"));
    expired["exp"] = json!(now() - 5);
    let mut not_yet = claims(json!("alice"));
    not_yet["nbf"] = json!(now() + 300);
    let mut wrong_aud = claims(json!("alice"));
    wrong_aud["aud"] = json!("other");
    let mut wrong_iss = claims(json!("alice"));
    wrong_iss["iss"] = json!("https://evil.test");
    let mut no_iss = claims(json!("alice"));
    no_iss.as_object_mut().unwrap().remove("iss");
    let mut no_aud = claims(json!("alice"));
    no_aud.as_object_mut().unwrap().remove("aud");
    let mut huge_exp = claims(json!("alice"));
    huge_exp["exp"] = json!(u64::MAX);
    let mut no_exp = claims(json!("alice"));
    no_exp.as_object_mut().unwrap().remove("exp");
    let tampered = {
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        parts[1] = b64(&claims(json!("bob")));
        parts.join(".")
    };
    for (what, t) in [
        ("wrong key", wrong_key),
        ("alg none", alg_none),
        ("expired", hs(&expired)),
        ("not yet valid", hs(&not_yet)),
        ("wrong audience", hs(&wrong_aud)),
        ("wrong issuer", hs(&wrong_iss)),
        ("no expiry", hs(&no_exp)),
        ("no issuer", hs(&no_iss)),
        ("no audience", hs(&no_aud)),
        ("tampered payload", tampered),
        (
            "RS256 token on an HS256 route",
            rs(&claims(json!("alice")), None),
        ),
        ("garbage", "a.b.c".to_owned()),
    ] {
        let (s, body, h) = status(&url, &bearer(&t)).await;
        assert_eq!(
            (s, body["error"].as_str()),
            (401, Some("unauthorized")),
            "{what}"
        );
        assert_eq!(h["www-authenticate"], "Bearer", "{what}");
        assert_eq!(
            body["message"], "a valid bearer token is required",
            "{what}: no detail"
        );
    }
    // A signed token with an absurd expiry is served (capped), never a crash.
    assert_eq!(status(&url, &bearer(&hs(&huge_exp))).await.0, 200);
    let mut no_scope = claims(json!("alice"));
    no_scope["scope"] = json!("read");
    let (s, body, _) = status(&url, &bearer(&hs(&no_scope))).await;
    assert_eq!((s, body["error"].as_str()), (403, Some("forbidden")));
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_key_routes_fix_their_algorithm() {
    let topic = unique("auth-pk");
    create_topic(&topic, 1).await;
    let toml = format!(
        "{}\n[[routes]]\nname = \"ec\"\nsource = {{ type = \"kafka\", brokers = [\"{}\"], topics = [\"{topic}\"] }}\nauth = {{ type = \"jwt\", algorithm = \"ES256\", public_key_file = \"{FIX}/ec_public.pem\" }}\n",
        config("rsa", &topic, &format!("auth = {{ type = \"jwt\", algorithm = \"RS256\", jwks_file = \"{FIX}/rsa_jwks.json\" }}")),
        broker()
    );
    let b = bridge(&toml).await;
    let rsa = format!("http://{}/streams/rsa", b.http_addr);
    let ec = format!("http://{}/streams/ec", b.http_addr);
    let c = claims(json!("alice"));
    assert_eq!(
        status(&rsa, &bearer(&rs(&c, Some("test-rsa-1")))).await.0,
        200
    );
    assert_eq!(
        refusal(&rsa, &bearer(&rs(&c, Some("unknown-kid")))).await,
        (401, "unauthorized".into())
    );
    assert_eq!(status(&ec, &bearer(&es(&c))).await.0, 200);
    // HS/RS confusion: an HS256 token whose secret is the public key.
    let public = std::fs::read(format!("{FIX}/rsa_public.pem")).unwrap();
    let confused = encode(
        &Header::new(Algorithm::HS256),
        &c,
        &EncodingKey::from_secret(&public),
    )
    .unwrap();
    assert_eq!(
        refusal(&rsa, &bearer(&confused)).await,
        (401, "unauthorized".into())
    );
    assert_eq!(
        refusal(&ec, &bearer(&rs(&c, None))).await,
        (401, "unauthorized".into()),
        "RS256 on ES256 route"
    );
    b.shutdown().await;
}

/// Produce one record of `user` (the key) in `region` (a header); returns its offset.
async fn produce_one(
    p: &rdkafka::producer::FutureProducer,
    topic: &str,
    partition: i32,
    (user, region): (&str, &str),
    value: &str,
) -> i64 {
    produce(
        p,
        topic,
        Rec {
            partition,
            key: Some(user.as_bytes()),
            value: Some(value.as_bytes()),
            headers: vec![("region", region.as_bytes())],
            ..Rec::default()
        },
    )
    .await
}

/// Produce `n` records `"{user}-{region}-{i}"` alternating partitions 0 and 1; returns
/// each record's (partition, offset).
async fn produce_for(
    p: &rdkafka::producer::FutureProducer,
    topic: &str,
    user: &str,
    region: &str,
    n: usize,
) -> Vec<(i32, i64)> {
    let mut out = Vec::new();
    for i in 0..n {
        let part = (i % 2) as i32;
        let v = format!("{user}-{region}-{i}");
        out.push((part, produce_one(p, topic, part, (user, region), &v).await));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_see_only_their_own_events_resuming_included() {
    let topic = unique("auth-users");
    create_topic(&topic, 2).await;
    let b = bridge(&config(
        "r",
        &topic,
        &hs_route(
            "filters = [{ on = \"key\", claim = \"sub\" }]\nclient_filters = [\"header:region\"]",
        ),
    ))
    .await;
    let url = format!("http://{}/streams/r", b.http_addr);
    let alice = hs(&claims(json!("alice")));
    let mut a = SseClient::connect_with(&url, &bearer(&alice)).await;
    let mut bob = SseClient::connect_with(&url, &bearer(&hs(&claims(json!("bob"))))).await;
    let mut alice_eu =
        SseClient::connect_with(&format!("{url}?header:region=eu"), &bearer(&alice)).await;
    let mut widen = SseClient::connect_with(&format!("{url}?key=bob"), &bearer(&alice)).await;
    assert_eq!(
        (widen.status, widen.error_code().as_str()),
        (400, "filter_not_allowed"),
        "key is not a client filter on this route"
    );
    let mut injected = Vec::new();
    for sub in [
        json!("*"),
        json!("alice' OR '1'='1"),
        json!(".*"),
        json!(""),
    ] {
        injected.push(SseClient::connect_with(&url, &bearer(&hs(&claims(sub)))).await);
    }
    assert_eq!(
        refusal(&url, &bearer(&hs(&claims(json!({"$ne": null}))))).await,
        (401, "unauthorized".into()),
        "a `sub` that is not a string is not a valid token"
    );

    let p = producer();
    produce_for(&p, &topic, "bob", "eu", 3).await;
    produce_for(&p, &topic, "alice", "us", 4).await;
    produce_for(&p, &topic, "alice", "eu", 2).await;
    produce_for(&p, &topic, "carol", "eu", 3).await;
    let got = a.take(6, T).await;
    assert!(got.iter().all(|e| e.data.starts_with("alice-")), "{got:?}");
    a.expect_quiet(Duration::from_millis(500)).await;
    let got = bob.take(3, T).await;
    assert!(got.iter().all(|e| e.data.starts_with("bob-")));
    bob.expect_quiet(Duration::from_millis(200)).await;
    let got = alice_eu.take(2, T).await;
    assert!(
        got.iter().all(|e| e.data.starts_with("alice-eu-")),
        "{got:?}"
    );
    alice_eu.expect_quiet(Duration::from_millis(200)).await;
    widen.expect_quiet(Duration::from_millis(10)).await;
    for c in injected.iter_mut() {
        assert_eq!(c.status, 200);
        c.expect_quiet(Duration::from_millis(200)).await;
    }

    // Alice leaves; others' events and hers arrive; she resumes from her last id and
    // gets exactly her missed events.
    let last = a.last_id();
    drop(a);
    produce_for(&p, &topic, "bob", "us", 5).await;
    produce_for(&p, &topic, "alice", "us", 3).await;
    let mut back = SseClient::connect_with(
        &url,
        &[
            ("authorization", format!("Bearer {alice}")),
            ("last-event-id", last),
        ],
    )
    .await;
    let got = back.take(3, T).await;
    let data: Vec<&str> = got.iter().map(|e| e.data.as_str()).collect();
    assert_eq!(data.len(), 3);
    assert!(data.iter().all(|d| d.starts_with("alice-us-")), "{data:?}");
    back.expect_quiet(Duration::from_millis(300)).await;
    b.shutdown().await;
}

/// The next offsets of the partitions of `topic` that a Kafka event id carries, decoded
/// from the documented wire form (README, "Wire format (version 1)": base64url of 0x01,
/// 'k', varint topic count, then per topic its name and its offsets as zigzag varint
/// deltas) rather than through the crate, so it checks the contract itself.
fn position(id: &str, topic: &str) -> Vec<i64> {
    use base64::Engine;
    fn varint(buf: &mut &[u8]) -> u64 {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, tail) = buf.split_first().expect("truncated varint");
            *buf = tail;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return v;
            }
        }
        panic!("varint longer than 64 bits")
    }
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(id)
        .unwrap_or_else(|e| panic!("id {id:?} is not base64url: {e}"));
    let [1, b'k', rest @ ..] = raw.as_slice() else {
        panic!("not a version 1 Kafka id: {id:?}")
    };
    let buf = &mut &rest[..];
    assert_eq!(varint(buf), 1, "one topic in {id:?}");
    let len = varint(buf) as usize;
    assert!(buf.len() >= len, "truncated topic name in {id:?}");
    assert_eq!(&buf[..len], topic.as_bytes(), "topic of {id:?}");
    *buf = &buf[len..];
    let mut prev = 0i64;
    let next = (0..varint(buf))
        .map(|_| {
            let z = varint(buf);
            prev += (z >> 1) as i64 ^ -((z & 1) as i64);
            prev
        })
        .collect();
    assert!(buf.is_empty(), "trailing bytes in {id:?}");
    next
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_clients_heartbeat_covers_the_records_it_skipped() {
    let topic = unique("auth-skip");
    create_topic(&topic, 2).await;
    let b = bridge(&config(
        "r",
        &topic,
        &hs_route(
            "filters = [{ on = \"key\", claim = \"sub\" }]\nclient_filters = [\"header:region\"]",
        ),
    ))
    .await;
    let url = format!("http://{}/streams/r", b.http_addr);
    let eu = format!("{url}?header:region=eu");
    let user = |sub: &str, last: &str| {
        let mut h = bearer(&hs(&claims(json!(sub))));
        h.push(("last-event-id", last.to_owned()));
        h
    };
    // Alice, narrowed to region eu, sees one record on each partition: the id after the
    // second is the route's position after both.
    let mut narrow = SseClient::connect_with(&eu, &user("alice", "")).await;
    assert_eq!(narrow.status, 200);
    let p = producer();
    let mut next = vec![0i64; 2];
    let mut advance = |recs: &[(i32, i64)]| {
        for &(part, off) in recs {
            next[part as usize] = off + 1;
        }
        next.clone()
    };
    let at_seen = advance(&produce_for(&p, &topic, "alice", "eu", 2).await);
    assert_eq!(
        sorted_data(&narrow.take(2, T).await),
        ["alice-eu-0", "alice-eu-1"]
    );
    let before = narrow.last_id();
    assert_eq!(position(&before, &topic), at_seen, "id after what she saw");

    // Records filtered out for her, on both partitions: another user's (by the key
    // filter from her token) and her own in another region (by her narrowing filter).
    advance(&produce_for(&p, &topic, "bob", "eu", 4).await);
    let ends = advance(&produce_for(&p, &topic, "alice", "us", 3).await);
    assert_ne!(ends, at_seen);
    // She receives none of them, but her heartbeats' id moves past all of them: exactly
    // the route's end offsets.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while position(&narrow.last_id(), &topic) != ends {
        assert!(
            tokio::time::Instant::now() < deadline,
            "heartbeat id never covered the skipped records: {:?}, want {ends:?}",
            position(&narrow.last_id(), &topic)
        );
        narrow.expect_quiet(Duration::from_millis(250)).await;
    }
    let hb = narrow.last_id();

    // Resuming from the heartbeat id repeats none of the skipped records, whoever resumes
    // and with whatever filter; resuming from the id before them gives exactly them.
    let mut alice_before = SseClient::connect_with(&url, &user("alice", &before)).await;
    let mut bob_before = SseClient::connect_with(&url, &user("bob", &before)).await;
    let mut alice_hb = SseClient::connect_with(&url, &user("alice", &hb)).await;
    let mut bob_hb = SseClient::connect_with(&url, &user("bob", &hb)).await;
    let mut narrow_hb = SseClient::connect_with(&eu, &user("alice", &hb)).await;
    assert_eq!(
        sorted_data(&alice_before.take(3, T).await),
        ["alice-us-0", "alice-us-1", "alice-us-2"]
    );
    assert_eq!(
        sorted_data(&bob_before.take(4, T).await),
        ["bob-eu-0", "bob-eu-1", "bob-eu-2", "bob-eu-3"]
    );
    for c in [
        &mut alice_before,
        &mut bob_before,
        &mut alice_hb,
        &mut bob_hb,
        &mut narrow_hb,
    ] {
        assert_eq!(c.status, 200);
        c.expect_quiet(Duration::from_millis(500)).await;
    }
    // The next record she may see reaches every one of her streams, with the same id.
    let off = produce_one(&p, &topic, 1, ("alice", "eu"), "alice-eu-after").await;
    let after = advance(&[(1, off)]);
    for c in [&mut alice_before, &mut alice_hb, &mut narrow_hb] {
        let e = c.take(1, T).await;
        assert_eq!(e[0].data, "alice-eu-after");
        assert_eq!(position(&e[0].id, &topic), after);
    }
    for c in [&mut bob_before, &mut bob_hb] {
        c.expect_quiet(Duration::from_millis(300)).await;
    }
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ends_with_expired_when_its_token_expires() {
    let topic = unique("auth-exp");
    create_topic(&topic, 1).await;
    let b = bridge(&config("r", &topic, &hs_route(""))).await;
    let url = format!("http://{}/streams/r", b.http_addr);
    let mut c = claims(json!("alice"));
    c["exp"] = json!(now() + 2);
    let mut s = SseClient::connect_with(&url, &bearer(&hs(&c))).await;
    assert_eq!(s.status, 200);
    let p = producer();
    produce_n(&p, &topic, 1, "e", 2).await;
    assert_eq!(s.take(2, T).await.len(), 2);
    let ev = s.next(Duration::from_secs(5)).await.expect("expired event");
    assert_eq!(ev.event, "expired");
    assert!(!ev.id.is_empty(), "the expiry carries the position");
    assert!(s.wait_end(Duration::from_secs(5)).await, "stream closed");
    assert_eq!(
        metric(
            b.admin_addr,
            "sse_bridge_disconnects_total{reason=\"token_expired\",route=\"r\"}"
        )
        .await,
        1.0
    );
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caps_hold_under_a_burst_of_connections() {
    let topic = unique("caps");
    create_topic(&topic, 1).await;
    let toml = config("r", &topic, "max_connections = 8").replace(
        "source_wait = \"3s\"",
        "source_wait = \"3s\"\nmax_connections_per_ip = 5\nclient_ip_header = \"x-forwarded-for\"\ntrusted_proxies = [\"127.0.0.0/8\"]\nmax_connection_age = \"8s\"",
    );
    let b = bridge(&toml).await;
    let url = format!("http://{}/streams/r", b.http_addr);
    // 20 at once from one address: 5 get in, the rest 429 with Retry-After.
    let burst = (0..20).map(|_| {
        let url = url.clone();
        tokio::spawn(async move {
            SseClient::connect_with(&url, &[("x-forwarded-for", "203.0.113.9".into())]).await
        })
    });
    let mut held = Vec::new();
    let mut refused = 0;
    for h in burst {
        let c = h.await.unwrap();
        match c.status {
            200 => held.push(c),
            429 => {
                assert_eq!(c.headers["retry-after"], "5");
                assert_eq!(c.error_code(), "too_many_connections");
                refused += 1;
            }
            s => panic!("status {s}"),
        }
    }
    assert_eq!((held.len(), refused), (5, 15));
    // Other addresses fill the route's cap of 8; beyond it, 503.
    for i in 0..5 {
        let c =
            SseClient::connect_with(&url, &[("x-forwarded-for", format!("198.51.100.{i}"))]).await;
        if i < 3 {
            assert_eq!(c.status, 200);
            held.push(c);
        } else {
            assert_eq!(
                (c.status, c.error_code().as_str()),
                (503, "route_over_capacity"),
                "route full"
            );
            assert_eq!(c.headers["retry-after"], "5");
        }
    }
    // Maximum age (long enough that no stream ends while the caps are checked, on a
    // loaded machine too): every stream ends cleanly, its last heartbeat carrying its
    // position.
    for c in held.iter_mut() {
        assert!(
            c.wait_end(Duration::from_secs(20)).await,
            "closed at its maximum age"
        );
        assert!(!c.last_id().is_empty());
    }
    let c = SseClient::connect_with(&url, &[("x-forwarded-for", "203.0.113.9".into())]).await;
    assert_eq!(c.status, 200, "places released");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_has_its_own_origins_and_credentials() {
    let topic = unique("cors");
    create_topic(&topic, 1).await;
    let b = bridge(&config(
        "r",
        &topic,
        &hs_route("cors_origins = [\"https://app.test\"]\ncors_credentials = true"),
    ))
    .await;
    let url = format!("http://{}/streams/r", b.http_addr);
    let token = hs(&claims(json!("alice")));
    let cookie = ("cookie", format!("session={token}"));
    let (s, _, h) = status(
        &url,
        &[("origin", "https://app.test".into()), cookie.clone()],
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(h["access-control-allow-origin"], "https://app.test");
    assert_eq!(h["access-control-allow-credentials"], "true");
    let (s, _, h) = status(&url, &[("origin", "https://dash.example".into()), cookie]).await;
    assert_eq!(s, 200);
    assert!(
        h.get("access-control-allow-origin").is_none(),
        "the route's list replaces the server's"
    );
    let (s, body, h) = status(&url, &[("origin", "https://app.test".into())]).await;
    assert_eq!((s, body["error"].as_str()), (401, Some("unauthorized")));
    assert_eq!(
        h["access-control-allow-origin"], "https://app.test",
        "errors are readable by the page"
    );
    let pre = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", "https://app.test")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status(), 204);
    assert!(pre.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("Authorization"));
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_jwks_file_applies_on_reload_without_a_config_change() {
    let topic = unique("auth-rotate");
    create_topic(&topic, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    let fixture = std::fs::read_to_string(format!("{FIX}/rsa_jwks.json")).unwrap();
    // Before the rotation the key is published under another kid.
    std::fs::write(&jwks, fixture.replace("test-rsa-1", "retired-kid")).unwrap();
    let toml = config(
        "rsa",
        &topic,
        &format!(
            "auth = {{ type = \"jwt\", algorithm = \"RS256\", jwks_file = \"{}\" }}",
            jwks.display()
        ),
    );
    let file = dir.path().join("bridge.toml");
    std::fs::write(&file, &toml).unwrap();
    let b = sse_bridge::start(Settings::load(&file).unwrap())
        .await
        .unwrap();
    wait_ready(&format!("http://{}/readyz", b.admin_addr)).await;
    let url = format!("http://{}/streams/rsa", b.http_addr);
    let token = bearer(&rs(&claims(json!("alice")), Some("test-rsa-1")));
    assert_eq!(refusal(&url, &token).await, (401, "unauthorized".into()));
    std::fs::write(&jwks, &fixture).unwrap();
    let r = b.reload(&file).unwrap();
    assert_eq!(r.unchanged, ["rsa"], "the route itself did not change");
    assert_eq!(status(&url, &token).await.0, 200, "the new key is in use");
    // A broken key file: the reload is refused (naming the file) and the keys in use
    // are kept.
    std::fs::write(&jwks, "not json").unwrap();
    let e = b.reload(&file).unwrap_err().to_string();
    assert!(e.contains("routes[0].auth.jwks_file"), "{e}");
    assert_eq!(status(&url, &token).await.0, 200, "last good keys kept");
    b.shutdown().await;
}
