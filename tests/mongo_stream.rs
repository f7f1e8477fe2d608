//! MongoDB change streams as SSE routes, against the real replica set started by
//! scripts/test (SecantusDB): operations and payloads, resumption from the buffer, from
//! the server and across a bridge restart, resets, `$match` pipelines, `invalidate`.

mod common;

use std::time::Duration;

use common::*;
use mongodb::bson::{doc, oid::ObjectId, DateTime, Decimal128, Document};
use sse_bridge::event_id::{decode_as, encode};
use sse_bridge::source::mongo::MongoToken;
use sse_bridge::sse::parse::Event;

const T: Duration = Duration::from_secs(20);

fn json(e: &Event) -> serde_json::Value {
    serde_json::from_str(&e.data).unwrap_or_else(|err| panic!("{err}: {}", e.data))
}

async fn insert_n(coll: &mongodb::Collection<Document>, prefix: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..n {
        let name = format!("{prefix}-{i}");
        coll.insert_one(doc! { "name": &name }).await.unwrap();
        out.push(name);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_arrive_with_names_and_payloads() {
    let uri = mongo_uri();
    let coll_name = unique("ops");
    let toml = mongo_config("chg", &uri, "sse", &coll_name, "")
        + &format!("\n[[routes]]\nname = \"doc\"\npayload = \"document\"\nsource = {{ type = \"mongodb\", uri = \"{uri}\", database = \"sse\", collection = \"{coll_name}\", full_document = \"updateLookup\" }}\n");
    let b = bridge(&toml).await;
    let mut chg = SseClient::connect(&format!("http://{}/streams/chg", b.http_addr), None).await;
    let mut docm = SseClient::connect(&format!("http://{}/streams/doc", b.http_addr), None).await;
    assert_eq!(chg.status, 200);
    let coll = mongo_client(&uri)
        .await
        .database("sse")
        .collection::<Document>(&coll_name);
    let oid = ObjectId::new();
    let at = DateTime::from_millis(1_700_000_000_000);
    coll.insert_one(doc! { "_id": oid, "at": at, "price": Decimal128::from_bytes([0; 16]), "n": 1, "text": "line1\nline2 ü" }).await.unwrap();
    coll.update_one(doc! { "_id": oid }, doc! { "$set": { "n": 2 } })
        .await
        .unwrap();
    coll.replace_one(doc! { "_id": oid }, doc! { "n": 3 })
        .await
        .unwrap();
    coll.delete_one(doc! { "_id": oid }).await.unwrap();

    let evs = chg.take(4, T).await;
    let ops: Vec<&str> = evs.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(ops, ["insert", "update", "replace", "delete"]);
    let ins = json(&evs[0]);
    assert_eq!(ins["operationType"], "insert");
    assert_eq!(ins["fullDocument"]["_id"]["$oid"], oid.to_hex());
    assert_eq!(ins["fullDocument"]["at"]["$date"], "2023-11-14T22:13:20Z");
    assert!(
        ins["fullDocument"]["price"]["$numberDecimal"].is_string(),
        "{ins}"
    );
    assert_eq!(ins["fullDocument"]["n"], 1);
    assert_eq!(ins["fullDocument"]["text"], "line1\nline2 ü");
    assert_eq!(json(&evs[1])["updateDescription"]["updatedFields"]["n"], 2);
    // updateLookup reads the document when the event is read: by then it may already be
    // replaced or deleted, so only its presence is certain.
    assert!(json(&evs[1]).get("fullDocument").is_some(), "updateLookup");
    assert_eq!(json(&evs[2])["fullDocument"]["n"], 3);
    assert_eq!(json(&evs[3])["documentKey"]["_id"]["$oid"], oid.to_hex());
    for e in &evs {
        assert!(
            decode_as::<MongoToken>(&e.id).is_ok(),
            "id is a resume token"
        );
    }

    let evs = docm.take(4, T).await;
    assert_eq!(
        evs.iter().map(|e| e.event.as_str()).collect::<Vec<_>>(),
        ["insert", "update", "replace", "delete"]
    );
    assert_eq!(json(&evs[0])["n"], 1);
    assert!(
        json(&evs[0]).get("operationType").is_none(),
        "document mode carries the document only"
    );
    assert_eq!(json(&evs[2])["n"], 3);
    assert_eq!(
        json(&evs[3])["_id"]["$oid"],
        oid.to_hex(),
        "deletes carry the document key"
    );

    // Idle: heartbeats carry the stream's latest position, which keeps moving.
    chg.expect_quiet(Duration::from_millis(2500)).await;
    let hb = chg.last_id();
    assert!(decode_as::<MongoToken>(&hb).is_ok());
    assert_ne!(
        hb, evs[3].id,
        "the idle position advanced past the last change"
    );
    let mut resumed =
        SseClient::connect(&format!("http://{}/streams/chg", b.http_addr), Some(&hb)).await;
    coll.insert_one(doc! { "name": "after-idle" })
        .await
        .unwrap();
    let e = resumed.take(1, T).await;
    assert_eq!(
        names(&e),
        ["after-idle"],
        "resuming from a heartbeat id gives exactly what followed"
    );
    b.shutdown().await;
}

/// Read k, drop, write more, resume with the last id on `resume_route`: exactly the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_from_buffer_and_from_server() {
    let uri = mongo_uri();
    let coll_name = unique("resume");
    let toml = mongo_config("big", &uri, "sse", &coll_name, "")
        + &format!("\n[[routes]]\nname = \"small\"\nreplay = {{ max_events = 2 }}\nmax_client_lag = 2\nsource = {{ type = \"mongodb\", uri = \"{uri}\", database = \"sse\", collection = \"{coll_name}\", full_document = \"updateLookup\" }}\n");
    let b = bridge(&toml).await;
    let coll = mongo_client(&uri)
        .await
        .database("sse")
        .collection::<Document>(&coll_name);
    let mut c = SseClient::connect(&format!("http://{}/streams/big", b.http_addr), None).await;
    let mut sent = insert_n(&coll, "a", 8).await;
    let first = c.take(3, T).await;
    let last = c.last_id();
    drop(c);
    sent.extend(insert_n(&coll, "b", 4).await);
    // Let both routes read everything before resuming.
    let deadline = tokio::time::Instant::now() + T;
    while metric(
        b.admin_addr,
        "sse_bridge_source_records_total{route=\"small\"}",
    )
    .await
        < 12.0
        || metric(
            b.admin_addr,
            "sse_bridge_source_records_total{route=\"big\"}",
        )
        .await
            < 12.0
    {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (route, outcome) in [("big", "buffer"), ("small", "source")] {
        let mut c2 = SseClient::connect(
            &format!("http://{}/streams/{route}", b.http_addr),
            Some(&last),
        )
        .await;
        let rest = c2.take(9, T).await;
        c2.expect_quiet(Duration::from_millis(500)).await;
        let mut all = names(&first);
        all.extend(names(&rest));
        assert_eq!(all, sent, "{route}: every change exactly once, in order");
        let series = format!("sse_bridge_resumes_total{{outcome=\"{outcome}\",route=\"{route}\"}}");
        assert_eq!(metric(b.admin_addr, &series).await, 1.0, "{series}");
    }
    // The server-served client joined the live stream: later changes reach it too.
    let mut c3 = SseClient::connect(
        &format!("http://{}/streams/small", b.http_addr),
        Some(&last),
    )
    .await;
    c3.take(9, T).await;
    coll.insert_one(doc! { "name": "live" }).await.unwrap();
    assert_eq!(names(&c3.take(1, T).await), ["live"]);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_across_a_bridge_restart() {
    let uri = mongo_uri();
    let coll_name = unique("restart");
    let toml = mongo_config("r", &uri, "sse", &coll_name, "");
    let coll = mongo_client(&uri)
        .await
        .database("sse")
        .collection::<Document>(&coll_name);
    let b = bridge(&toml).await;
    let mut c = SseClient::connect(&format!("http://{}/streams/r", b.http_addr), None).await;
    let mut sent = insert_n(&coll, "x", 5).await;
    let first = c.take(5, T).await;
    let last = c.last_id();
    b.shutdown().await;
    assert!(c.wait_end(Duration::from_secs(5)).await);
    sent.extend(insert_n(&coll, "y", 4).await);
    let b2 = bridge(&toml).await;
    let mut c =
        SseClient::connect(&format!("http://{}/streams/r", b2.http_addr), Some(&last)).await;
    let rest = c.take(4, T).await;
    c.expect_quiet(Duration::from_millis(500)).await;
    let mut all = names(&first);
    all.extend(names(&rest));
    assert_eq!(all, sent);
    // The new bridge warmed its ring with the recent changes: served from memory.
    let series = "sse_bridge_resumes_total{outcome=\"buffer\",route=\"r\"}";
    assert_eq!(metric(b2.admin_addr, series).await, 1.0);
    b2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_token_yields_reset_then_live() {
    let uri = mongo_uri();
    let coll_name = unique("badtoken");
    let b = bridge(&mongo_config("r", &uri, "sse", &coll_name, "")).await;
    let bogus = encode(&MongoToken::from_document(&doc! { "_data": "00" }).unwrap());
    let mut c =
        SseClient::connect(&format!("http://{}/streams/r", b.http_addr), Some(&bogus)).await;
    assert_eq!(c.status, 200);
    let reset = c.next(T).await.expect("reset");
    assert_eq!(reset.event, "reset");
    let j = json(&reset);
    assert_eq!(j["reason"], "invalid_resume_token", "{j}");
    assert_eq!(j["resumed_from"], "now");
    let coll = mongo_client(&uri)
        .await
        .database("sse")
        .collection::<Document>(&coll_name);
    coll.insert_one(doc! { "name": "fresh" }).await.unwrap();
    assert_eq!(names(&c.take(1, T).await), ["fresh"]);
    assert_eq!(
        metric(
            b.admin_addr,
            "sse_bridge_resumes_total{outcome=\"reset\",route=\"r\"}"
        )
        .await,
        1.0
    );
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn match_pipeline_filters_on_the_server() {
    let uri = mongo_uri();
    let coll_name = unique("match");
    let toml = mongo_config("r", &uri, "sse", &coll_name, "").replace(
        "full_document = \"updateLookup\"",
        "full_document = \"updateLookup\"\npipeline = [ { \"$match\" = { \"fullDocument.kind\" = \"keep\" } } ]",
    );
    let b = bridge(&toml).await;
    let mut c = SseClient::connect(&format!("http://{}/streams/r", b.http_addr), None).await;
    let coll = mongo_client(&uri)
        .await
        .database("sse")
        .collection::<Document>(&coll_name);
    for (name, kind) in [
        ("k1", "keep"),
        ("d1", "drop"),
        ("k2", "keep"),
        ("d2", "drop"),
    ] {
        coll.insert_one(doc! { "name": name, "kind": kind })
            .await
            .unwrap();
    }
    assert_eq!(names(&c.take(2, T).await), ["k1", "k2"]);
    c.expect_quiet(Duration::from_millis(700)).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidate_on_drop_and_the_route_keeps_serving() {
    let uri = mongo_uri();
    let coll_name = unique("drop");
    let b = bridge(&mongo_config("r", &uri, "sse", &coll_name, "")).await;
    let mut c = SseClient::connect(&format!("http://{}/streams/r", b.http_addr), None).await;
    let coll = mongo_client(&uri)
        .await
        .database("sse")
        .collection::<Document>(&coll_name);
    coll.insert_one(doc! { "name": "before" }).await.unwrap();
    assert_eq!(names(&c.take(1, T).await), ["before"]);
    coll.drop().await.unwrap();
    let evs = c.take(2, T).await;
    assert_eq!(
        evs.iter().map(|e| e.event.as_str()).collect::<Vec<_>>(),
        ["drop", "invalidate"]
    );
    coll.insert_one(doc! { "name": "recreated" }).await.unwrap();
    let e = c.take(1, T).await;
    assert_eq!(e[0].event, "insert");
    assert_eq!(names(&e), ["recreated"]);
    b.shutdown().await;
}

/// `?since=` on a route whose ring holds the history (warm start) or not: the same
/// events either way; from memory, no change stream is opened.
async fn since_starts_at_an_operation_time(warm: bool) {
    let uri = mongo_uri();
    let coll_name = unique("since");
    let coll = mongo_client(&uri)
        .await
        .database("sse")
        .collection::<Document>(&coll_name);
    insert_n(&coll, "old", 3).await;
    // Cluster times have one-second resolution: leave a clear gap around the cut.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let cut = chrono::Utc::now().timestamp_millis() - 1000;
    let new = insert_n(&coll, "new", 3).await;
    let extra = format!("replay = {{ warm_start = {warm} }}");
    let b = bridge(&mongo_config("r", &uri, "sse", &coll_name, &extra)).await;
    let mut c = SseClient::connect(
        &format!("http://{}/streams/r?since={cut}", b.http_addr),
        None,
    )
    .await;
    assert_eq!(c.status, 200);
    let got = c.take(3, T).await;
    assert_eq!(names(&got), new);
    coll.insert_one(doc! { "name": "live" }).await.unwrap();
    assert_eq!(
        names(&c.take(1, T).await),
        ["live"],
        "then joins the live stream"
    );
    c.expect_quiet(Duration::from_millis(500)).await;
    let read = metric(
        b.admin_addr,
        "sse_bridge_catchup_events_read_total{route=\"r\"}",
    )
    .await;
    if warm {
        assert_eq!(read, 0.0, "planned from the ring: no change stream opened");
    } else {
        assert!(read >= 3.0, "read through a catch-up change stream: {read}");
    }
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn since_starts_at_an_operation_time_from_the_ring() {
    since_starts_at_an_operation_time(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn since_starts_at_an_operation_time_through_a_change_stream() {
    since_starts_at_an_operation_time(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn since_after_2106_starts_at_the_present() {
    let uri = mongo_uri();
    let coll_name = unique("since-future");
    let coll = mongo_client(&uri)
        .await
        .database("sse")
        .collection::<Document>(&coll_name);
    insert_n(&coll, "old", 2).await;
    let b = bridge(&mongo_config("r", &uri, "sse", &coll_name, "")).await;
    // 2200-01-01: beyond 32-bit cluster seconds; once wrapped to 2063, it started a
    // stream that would deliver nothing for decades.
    let mut c = SseClient::connect(
        &format!("http://{}/streams/r?since=7258118400000", b.http_addr),
        None,
    )
    .await;
    assert_eq!(c.status, 200);
    coll.insert_one(doc! { "name": "live" }).await.unwrap();
    assert_eq!(names(&c.take(1, T).await), ["live"], "from the present on");
    c.expect_quiet(Duration::from_millis(500)).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_see_only_their_documents_by_token_claim() {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    let uri = mongo_uri();
    let coll_name = unique("owner");
    let secret = "mongo-owner-secret-mongo-owner-secret-01";
    let toml = mongo_config(
        "r",
        &uri,
        "sse",
        &coll_name,
        &format!(
            "auth = {{ type = \"jwt\", algorithm = \"HS256\", secret = \"{secret}\" }}\nfilters = [{{ on = \"field:fullDocument.owner\", claim = \"sub\" }}]\nclient_filters = [\"event\"]"
        ),
    );
    let b = bridge(&toml).await;
    let url = format!("http://{}/streams/r", b.http_addr);
    let token = |sub: &str| {
        let exp = chrono::Utc::now().timestamp() + 600;
        let t = encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({ "sub": sub, "exp": exp }),
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap();
        vec![("authorization", format!("Bearer {t}"))]
    };
    let mut ann = SseClient::connect_with(&url, &token("ann")).await;
    let mut ann_updates =
        SseClient::connect_with(&format!("{url}?event=update"), &token("ann")).await;
    let mut sly = SseClient::connect_with(&url, &token("{\"$exists\": true}")).await;
    let coll = mongo_client(&uri)
        .await
        .database("sse")
        .collection::<Document>(&coll_name);
    for (name, owner) in [("a1", "ann"), ("b1", "ben"), ("a2", "ann"), ("b2", "ben")] {
        coll.insert_one(doc! { "name": name, "owner": owner })
            .await
            .unwrap();
    }
    coll.update_one(doc! { "name": "a1" }, doc! { "$set": { "n": 1 } })
        .await
        .unwrap();
    let got = ann.take(3, T).await;
    assert_eq!(names(&got), ["a1", "a2", "a1"]);
    assert_eq!(got[2].event, "update");
    ann.expect_quiet(Duration::from_millis(500)).await;
    assert_eq!(names(&ann_updates.take(1, T).await), ["a1"]);
    ann_updates.expect_quiet(Duration::from_millis(200)).await;
    sly.expect_quiet(Duration::from_millis(200)).await;
    b.shutdown().await;
}
