//! PostgreSQL routes against a real PostgreSQL 15 (`wal_level = logical`, started by
//! scripts/test; the restart test starts its own): typed change events named by their
//! operation, `payload = "row"`, resumes within a transaction from the ring and from the
//! slot exactly once, another replica and a restarted one resuming each other's ids,
//! the resume window's edge as an explicit reset, stale slots dropped, a slot dropped by
//! an operator, the publication altered and dropped, and the database restarted
//! mid-stream.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;
use sse_bridge::source::postgres::PgPos;

const T: Duration = Duration::from_secs(20);

fn pos(id: &str) -> PgPos {
    sse_bridge::event_id::decode_as::<PgPos>(id).expect("a postgres id")
}

/// A name unique to this test run, as SQL and slot names want it.
fn name(prefix: &str) -> String {
    unique(prefix).replace(['.', '-'], "_")
}

/// A table `t` of (id, note) with its publication `t` (the bridge makes it).
async fn table(db: &tokio_postgres::Client, t: &str) {
    db.batch_execute(&format!(
        "CREATE TABLE {t} (id serial PRIMARY KEY, note text NOT NULL)"
    ))
    .await
    .expect("create table");
}

fn source(t: &str, replica: &str, extra: &str) -> String {
    format!("publication = \"{t}\"\ntables = [\"{t}\"]\ncreate_publication = true\nreplica = \"{replica}\"\n{extra}")
}

/// Insert `notes` into `t`, one transaction each.
async fn insert(db: &tokio_postgres::Client, t: &str, notes: &[String]) {
    for n in notes {
        db.execute(&format!("INSERT INTO {t} (note) VALUES ($1)"), &[n])
            .await
            .expect("insert");
    }
}

fn notes(prefix: &str, r: std::ops::Range<usize>) -> Vec<String> {
    r.map(|i| format!("{prefix}{i}")).collect()
}

fn note(e: &sse_bridge::sse::parse::Event) -> String {
    let v: Value = serde_json::from_str(&e.data).unwrap();
    v["new"]["note"].as_str().unwrap_or_default().to_owned()
}

async fn slots_of(db: &tokio_postgres::Client, route: &str) -> Vec<String> {
    let prefix = format!("sse_bridge_{}__", route.replace('-', "_"));
    let mut names: Vec<String> = db
        .query(
            "SELECT slot_name::text FROM pg_replication_slots WHERE NOT temporary",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .filter(|n| n.starts_with(&prefix))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_are_typed_events_named_by_their_operation() {
    let url = pg_url();
    let db = pg_client(&url).await;
    let t = name("typed");
    db.batch_execute(&format!(
        "CREATE TABLE {t} (id int PRIMARY KEY, n numeric, f float8, b bool, j jsonb, \
         ts timestamptz, bin bytea, note text); ALTER TABLE {t} REPLICA IDENTITY FULL"
    ))
    .await
    .unwrap();
    let (rc, rr) = (name("change"), name("row"));
    let b = bridge(&pg_config(&rc, &url, &source(&t, "a", ""), "")).await;
    let rows = bridge(&pg_config(
        &rr,
        &url,
        &source(&t, "a", ""),
        "payload = \"row\"",
    ))
    .await;
    let mut c = SseClient::connect(&format!("http://{}/streams/{rc}", b.http_addr), None).await;
    let mut r = SseClient::connect(&format!("http://{}/streams/{rr}", rows.http_addr), None).await;
    assert_eq!((c.status, r.status), (200, 200));
    db.batch_execute(&format!(
        "BEGIN;
         INSERT INTO {t} VALUES (1, 12.50, 1.25, true, '{{\"k\": [1, 2]}}', '2026-01-02 03:04:05.678+00', '\\x0102', 'a');
         INSERT INTO {t} VALUES (2, NULL, 'NaN', false, 'null', NULL, NULL, 'x');
         UPDATE {t} SET note = 'b' WHERE id = 1;
         DELETE FROM {t} WHERE id = 2;
         COMMIT;
         TRUNCATE {t};"
    ))
    .await
    .unwrap();
    let evs = c.take(5, T).await;
    assert_eq!(
        evs.iter().map(|e| e.event.as_str()).collect::<Vec<_>>(),
        ["insert", "insert", "update", "delete", "truncate"]
    );
    let d: Vec<Value> = evs
        .iter()
        .map(|e| serde_json::from_str(&e.data).unwrap())
        .collect();
    assert_eq!(
        d[0]["new"],
        serde_json::json!({"id": 1, "n": 12.5, "f": 1.25, "b": true, "j": {"k": [1, 2]},
            "ts": "2026-01-02T03:04:05.678Z", "bin": "AQI=", "note": "a"})
    );
    assert_eq!(
        (&d[0]["schema"], &d[0]["table"], &d[0]["op"], &d[0]["key"]),
        (
            &Value::from("public"),
            &Value::from(t.as_str()),
            &Value::from("insert"),
            // REPLICA IDENTITY FULL: every column is the key.
            &d[0]["new"]
        )
    );
    assert_eq!(d[1]["new"]["f"], "NaN");
    assert_eq!(d[1]["new"]["n"], Value::Null);
    // REPLICA IDENTITY FULL: the old row comes with updates and deletes.
    assert_eq!(
        (d[2]["old"]["note"].as_str(), d[2]["new"]["note"].as_str()),
        (Some("a"), Some("b"))
    );
    assert_eq!(d[3]["old"]["note"], "x");
    assert_eq!(d[3]["key"], d[3]["old"]);
    assert!(d[4]["new"].is_null() && d[4]["old"].is_null());
    assert!(d[0]["commit_time"].as_str().unwrap().ends_with('Z'));
    // One transaction: one commit LSN, its changes numbered; the truncate is another.
    let ids: Vec<PgPos> = evs.iter().map(|e| pos(&e.id)).collect();
    assert!(ids[..4].iter().all(|p| p.lsn == ids[0].lsn));
    assert_eq!(
        ids[..4].iter().map(|p| p.next).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    assert_eq!(d[0]["commit_lsn"], PgPos::lsn_text(ids[0].lsn));
    assert!(ids[4].lsn > ids[0].lsn && ids[4].next == 1);
    // `payload = "row"`: the new row; a delete's old row; a truncate's table.
    let rs = r.take(5, T).await;
    let rd: Vec<Value> = rs
        .iter()
        .map(|e| serde_json::from_str(&e.data).unwrap())
        .collect();
    assert_eq!(rd[0], d[0]["new"]);
    assert_eq!(rd[2]["note"], "b");
    assert_eq!(rd[3], d[3]["old"]);
    assert_eq!(rd[4]["table"], t.as_str());
    assert_eq!(
        rs.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
        evs.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
        "ids are the same on every route of the database"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_within_a_transaction_from_the_ring_and_from_the_slot_exactly_once() {
    let url = pg_url();
    let db = pg_client(&url).await;
    let t = name("resume");
    table(&db, &t).await;
    let route = name("resume");
    // One instance reads them all live; the next, on the same slot, keeps 5 in its ring.
    let first = bridge(&pg_config(&route, &url, &source(&t, "a", ""), "")).await;
    let mut live =
        SseClient::connect(&format!("http://{}/streams/{route}", first.http_addr), None).await;
    // Three transactions of ten rows.
    for tx in 0..3 {
        let values: Vec<String> = (0..10).map(|i| format!("('t{tx}r{i}')")).collect();
        db.batch_execute(&format!(
            "INSERT INTO {t} (note) VALUES {}",
            values.join(", ")
        ))
        .await
        .unwrap();
    }
    let all = live.take(30, T).await;
    let want: Vec<String> = (0..3)
        .flat_map(|tx| (0..10).map(move |i| format!("t{tx}r{i}")))
        .collect();
    assert_eq!(all.iter().map(note).collect::<Vec<_>>(), want);
    drop(live);
    first.shutdown().await;
    let b = bridge(&pg_config(
        &route,
        &url,
        &source(&t, "a", ""),
        "replay = { max_events = 5 }",
    ))
    .await;
    let url_r = format!("http://{}/streams/{route}", b.http_addr);
    // After row 3 of the second transaction: only the slot has it.
    let mut c = SseClient::connect(&url_r, Some(&all[13].id)).await;
    assert_eq!(c.status, 200);
    let evs = c.take(16, T).await;
    assert_eq!(evs.iter().map(note).collect::<Vec<_>>(), want[14..]);
    c.expect_quiet(Duration::from_millis(300)).await;
    // After row 7 of the third: from the ring.
    let mut c = SseClient::connect(&url_r, Some(&all[27].id)).await;
    let evs = c.take(2, T).await;
    assert_eq!(evs.iter().map(note).collect::<Vec<_>>(), want[28..]);
    c.expect_quiet(Duration::from_millis(300)).await;
    let m = metrics_text(b.admin_addr).await;
    for outcome in ["source", "buffer"] {
        let series = format!("sse_bridge_resumes_total{{outcome=\"{outcome}\",route=\"{route}\"}}");
        assert_eq!(series_value(&m, &series), Some(1.0), "{series}\n{m}");
    }
    // And live after both.
    insert(&db, &t, &["after".into()]).await;
    assert_eq!(note(&c.take(1, T).await[0]), "after");
    // The id of an idle route (a heartbeat's) resumes too: nothing is repeated.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut h = SseClient::connect(&url_r, None).await;
    h.expect_quiet(Duration::from_millis(2500)).await;
    let hb_id = h.last_id();
    assert!(
        pos(&hb_id).lsn > pos(&c.last_id()).lsn,
        "the heartbeat's position moved on"
    );
    drop(h);
    insert(&db, &t, &["after2".into()]).await;
    let mut c = SseClient::connect(&url_r, Some(&hb_id)).await;
    let evs = c.take(1, T).await;
    assert_eq!(note(&evs[0]), "after2");
    c.expect_quiet(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_replica_and_a_restarted_one_resume_each_others_ids() {
    let url = pg_url();
    let db = pg_client(&url).await;
    let t = name("replicas");
    table(&db, &t).await;
    let route = name("rep");
    let extra = "replay = { max_events = 6 }";
    let a = bridge(&pg_config(&route, &url, &source(&t, "pod-a", ""), "")).await;
    let path = format!("/streams/{route}");
    let mut c = SseClient::connect(&format!("http://{}{path}", a.http_addr), None).await;
    let want = notes("n", 0..15);
    insert(&db, &t, &want[..10]).await;
    let first = c.take(10, T).await;
    assert_eq!(first.iter().map(note).collect::<Vec<_>>(), want[..10]);
    drop(c);
    a.shutdown().await;
    // A second replica: its slot copies the first's (and its history).
    let b = bridge(&pg_config(&route, &url, &source(&t, "pod-b", ""), extra)).await;
    assert_eq!(
        slots_of(&db, &route).await,
        [
            format!("sse_bridge_{}__pod_a", route),
            format!("sse_bridge_{}__pod_b", route)
        ]
    );
    // After the third row: the slot has rows 3 to 9, the ring 4 to 9.
    let mut c =
        SseClient::connect(&format!("http://{}{path}", b.http_addr), Some(&first[2].id)).await;
    assert_eq!(c.status, 200);
    let mut got = c.take(7, T).await;
    insert(&db, &t, &want[10..]).await;
    got.extend(c.take(5, T).await);
    assert_eq!(got.iter().map(note).collect::<Vec<_>>(), want[3..]);
    c.expect_quiet(Duration::from_millis(300)).await;
    // The first replica restarted resumes the second's id from its own slot.
    let a = bridge(&pg_config(&route, &url, &source(&t, "pod-a", ""), extra)).await;
    let mut c =
        SseClient::connect(&format!("http://{}{path}", a.http_addr), Some(&got[8].id)).await;
    let evs = c.take(3, T).await;
    assert_eq!(evs.iter().map(note).collect::<Vec<_>>(), want[12..]);
    c.expect_quiet(Duration::from_millis(300)).await;
    assert_eq!(
        evs[2].id, got[11].id,
        "both replicas give a change the same id"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_outside_the_resume_window_is_a_reset_then_exactly_what_is_left() {
    let url = pg_url();
    let db = pg_client(&url).await;
    let t = name("window");
    table(&db, &t).await;
    let route = name("window");
    let src = source(&t, "a", "resume_window = \"0s\"");
    let first = bridge(&pg_config(&route, &url, &src, "")).await;
    let mut live =
        SseClient::connect(&format!("http://{}/streams/{route}", first.http_addr), None).await;
    let want = notes("w", 0..10);
    insert(&db, &t, &want).await;
    let all = live.take(10, T).await;
    // With no window, the slot confirms what was delivered: wait until it is past the
    // fifth change.
    let fifth = pos(&all[4].id).lsn;
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let row = db
            .query_one(
                "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
                &[&format!("sse_bridge_{route}__a")],
            )
            .await
            .unwrap();
        let c = pgwire_lsn(&row.get::<_, String>(0));
        if c > fifth {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slot never confirmed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(live);
    first.shutdown().await;
    let b = bridge(&pg_config(
        &route,
        &url,
        &src,
        "replay = { max_events = 2 }",
    ))
    .await;
    let url_w = format!("http://{}/streams/{route}", b.http_addr);
    let mut c = SseClient::connect(&url_w, Some(&all[1].id)).await;
    assert_eq!(c.status, 200);
    let mut resets = Vec::new();
    let mut rows = Vec::new();
    // What is left of the ten, then a row written now.
    let first = c.next(T).await.expect("an event");
    insert(&db, &t, &["after".into()]).await;
    let mut e = first;
    loop {
        if e.event == "reset" {
            assert!(rows.is_empty(), "the reset comes first");
            resets.push(serde_json::from_str::<Value>(&e.data).unwrap());
        } else if note(&e) == "after" {
            break;
        } else {
            rows.push(e);
        }
        e = c.next(T).await.expect("an event");
    }
    let reset = resets.last().expect("an explicit reset");
    assert_eq!(reset["cause"], "position_outside_window", "{reset}");
    assert_eq!(
        reset["requested"]["lsn"],
        PgPos::lsn_text(pos(&all[1].id).lsn)
    );
    let from = pgwire_lsn(reset["resumed_from"]["lsn"].as_str().unwrap());
    // Exactly the changes committed from where it resumed, once each, in order.
    let left: Vec<String> = all
        .iter()
        .filter(|e| pos(&e.id).lsn >= from)
        .map(note)
        .collect();
    assert!(
        left.len() < 8,
        "the reset skipped what the slot let go: {left:?}"
    );
    assert_eq!(rows.iter().map(note).collect::<Vec<_>>(), left);
    let m = metrics_text(b.admin_addr).await;
    assert_eq!(
        series_value(
            &m,
            &format!("sse_bridge_resumes_total{{outcome=\"reset\",route=\"{route}\"}}")
        ),
        Some(1.0),
        "{m}"
    );
}

fn pgwire_lsn(s: &str) -> u64 {
    let (hi, lo) = s.split_once('/').unwrap();
    (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_of_replicas_that_went_away_are_dropped() {
    let url = pg_url();
    let db = pg_client(&url).await;
    let t = name("stale");
    table(&db, &t).await;
    let route = name("stale");
    let gone = format!("sse_bridge_{route}__pod_gone");
    let other = name("not_ours");
    for s in [&gone, &other] {
        db.execute(
            "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
            &[s],
        )
        .await
        .unwrap();
    }
    let _b = bridge(&pg_config(
        &route,
        &url,
        &source(&t, "pod-live", "stale_slot_after = \"10s\""),
        "",
    ))
    .await;
    let own = format!("sse_bridge_{route}__pod_live");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while slots_of(&db, &route).await != [own.clone()] {
        assert!(
            tokio::time::Instant::now() < deadline,
            "stale slot kept: {:?}",
            slots_of(&db, &route).await
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // A slot of no route of the bridge is never touched.
    let n = db
        .query_one(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1",
            &[&other],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(n, 1);
    db.execute("SELECT pg_drop_replication_slot($1)", &[&other])
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_dropped_by_an_operator_is_made_again_with_a_reset() {
    let url = pg_url();
    let db = pg_client(&url).await;
    let t = name("dropped");
    table(&db, &t).await;
    let route = name("dropped");
    let slot = format!("sse_bridge_{route}__a");
    let b = bridge(&pg_config(&route, &url, &source(&t, "a", ""), "")).await;
    let mut c = SseClient::connect(&format!("http://{}/streams/{route}", b.http_addr), None).await;
    insert(&db, &t, &notes("r", 0..5)).await;
    let before = c.take(5, T).await;
    assert_eq!(
        before.iter().map(note).collect::<Vec<_>>(),
        notes("r", 0..5)
    );
    // The operator's way: end the session reading it, drop it; rows written then are
    // in no slot.
    db.execute(
        "SELECT pg_terminate_backend(active_pid, 5000) FROM pg_replication_slots WHERE slot_name = $1",
        &[&format!("{slot}_l")],
    )
    .await
    .unwrap();
    db.execute("SELECT pg_drop_replication_slot($1)", &[&slot])
        .await
        .unwrap();
    insert(&db, &t, &notes("lost", 0..3)).await;
    let reset = c.next(T).await.expect("a reset");
    assert_eq!(reset.event, "reset", "{reset:?}");
    let r: Value = serde_json::from_str(&reset.data).unwrap();
    assert_eq!(r["cause"], "slot_lost", "{r}");
    insert(&db, &t, &notes("n", 0..5)).await;
    // Rows the new slot has (if it was made before them) come once, then the rest.
    let mut after = Vec::new();
    while after.last().map(String::as_str) != Some("n4") {
        after.push(note(&c.next(T).await.expect("an event")));
    }
    let lost = after.len() - 5;
    assert_eq!(after[..lost], notes("lost", 3 - lost..3)[..], "{after:?}");
    assert_eq!(after[lost..], notes("n", 0..5)[..]);
    c.expect_quiet(Duration::from_millis(300)).await;
    assert_eq!(slots_of(&db, &route).await, [slot]);
    wait_status(b.admin_addr, 200, T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publication_altered_and_dropped() {
    let url = pg_url();
    let db = pg_client(&url).await;
    let (t1, t2) = (name("pub_a"), name("pub_b"));
    table(&db, &t1).await;
    table(&db, &t2).await;
    let p = name("pub");
    db.batch_execute(&format!("CREATE PUBLICATION {p} FOR TABLE {t1}"))
        .await
        .unwrap();
    let b = bridge(&pg_config(
        &p,
        &url,
        &format!("publication = \"{p}\"\nreplica = \"a\""),
        "",
    ))
    .await;
    let mut c = SseClient::connect(&format!("http://{}/streams/{p}", b.http_addr), None).await;
    insert(&db, &t1, &["one".into()]).await;
    insert(&db, &t2, &["not published".into()]).await;
    db.batch_execute(&format!("ALTER PUBLICATION {p} ADD TABLE {t2}"))
        .await
        .unwrap();
    insert(&db, &t2, &["two".into()]).await;
    let evs = c.take(2, T).await;
    let tables: Vec<Value> = evs
        .iter()
        .map(|e| serde_json::from_str::<Value>(&e.data).unwrap()["table"].clone())
        .collect();
    assert_eq!(evs.iter().map(note).collect::<Vec<_>>(), ["one", "two"]);
    assert_eq!(tables, [Value::from(t1.as_str()), Value::from(t2.as_str())]);
    // Dropped: the route is not ready and says why.
    db.batch_execute(&format!("DROP PUBLICATION {p}"))
        .await
        .unwrap();
    insert(&db, &t1, &["unpublished".into()]).await;
    wait_status(b.admin_addr, 503, T).await;
    let r = readyz(b.admin_addr).await;
    let err = r["routes"][0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(err.contains(&p), "{r}");
    // Made again: the changes made without it were never published; the slot cannot
    // decode past them, so the route starts over with an explicit reset.
    db.batch_execute(&format!("CREATE PUBLICATION {p} FOR TABLE {t1}"))
        .await
        .unwrap();
    wait_status(b.admin_addr, 200, Duration::from_secs(40)).await;
    let reset = c.next(T).await.expect("a reset");
    assert_eq!(reset.event, "reset", "{reset:?}");
    let r: Value = serde_json::from_str(&reset.data).unwrap();
    assert_eq!(r["cause"], "publication_recreated", "{r}");
    insert(&db, &t1, &["three".into()]).await;
    assert_eq!(note(&c.next(T).await.expect("a row")), "three");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_restarted_mid_stream_loses_nothing() {
    let lib = std::env::var("SSE_BRIDGE_TEST_SCRIPTS_LIB").unwrap_or_else(|_| {
        panic!("SSE_BRIDGE_TEST_SCRIPTS_LIB is not set: run the tests with scripts/test, which starts PostgreSQL with scripts/lib.sh")
    });
    // What a script prints goes through a file: the server it starts keeps a pipe open.
    let out_file = tempfile::NamedTempFile::new().unwrap();
    let out_path = out_file.path().to_owned();
    let sh = |script: &str| {
        let status = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source '{lib}' && {{ {script}; }} > '{}'",
                out_path.display()
            ))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("bash");
        assert!(status.success(), "{script} failed");
        std::fs::read_to_string(&out_path).unwrap()
    };
    let started = sh("start_postgres pg-restart 2>/dev/null && echo \"$PG_URL $PG_PID $PG_DIR\"");
    let mut parts = started.split_whitespace().map(str::to_owned);
    let (url, mut pid, dir) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    struct Stop<'a>(&'a dyn Fn() -> String);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            (self.0)();
        }
    }
    let pid_file = format!("{dir}/pid");
    let stop_all = || sh(&format!("stop_postgres \"$(cat '{pid_file}')\" '{dir}'"));
    let _cleanup = Stop(&stop_all);
    let port = url
        .rsplit(':')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    eprintln!("started {started}");
    let db = pg_client(&url).await;
    eprintln!("connected");
    let t = name("restart");
    table(&db, &t).await;
    let b = bridge(&pg_config("r", &url, &source(&t, "a", ""), "")).await;
    let mut c = SseClient::connect(&format!("http://{}/streams/r", b.http_addr), None).await;
    let want = notes("m", 0..20);
    insert(&db, &t, &want[..10]).await;
    let mut got = c.take(10, T).await;
    drop(db);
    sh(&format!(
        "kill -INT {pid}; while kill -0 {pid} 2>/dev/null; do sleep 0.1; done"
    ));
    wait_status(b.admin_addr, 503, T).await;
    pid = sh(&format!(
        "run_postgres '{dir}' {port} 2>/dev/null && echo $PG_PID"
    ))
    .trim()
    .to_owned();
    assert!(!pid.is_empty());
    let db = pg_client(&url).await;
    insert(&db, &t, &want[10..]).await;
    got.extend(c.take(10, Duration::from_secs(40)).await);
    assert_eq!(
        got.iter().map(note).collect::<Vec<_>>(),
        want,
        "every row once, in order, across the restart"
    );
    c.expect_quiet(Duration::from_millis(300)).await;
    wait_status(b.admin_addr, 200, T).await;
}
