//! The MongoDB server restarting under a live route: `/readyz` reports the source down
//! while it is, the shared change stream resumes on its own from its last token, and a
//! connected client loses nothing. Starts its own SecantusDB (installed by scripts/test)
//! with on-disk, durable storage (`--sync-on-commit`: like MongoDB's journal, without it
//! a killed server forgets its last writes) so it can restart it.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use mongodb::bson::{doc, Document};

const T: Duration = Duration::from_secs(30);

fn start_server(port: u16, dir: &std::path::Path) -> KillOnDrop {
    let bin = std::env::var("SSE_BRIDGE_TEST_SECANTUSD")
        .unwrap_or_else(|_| panic!("SSE_BRIDGE_TEST_SECANTUSD is not set: run the tests with scripts/test, which installs SecantusDB"));
    Command::new(bin)
        .current_dir(dir)
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--storage-path",
        ])
        .arg(dir.join("data"))
        .args(["--noop-heartbeat-seconds", "1", "--sync-on-commit"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(KillOnDrop)
        .expect("start SecantusDB")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_survives_a_database_restart() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let port = fixed_port();
    let uri = format!("mongodb://127.0.0.1:{port}/?replicaSet=secantus");
    let mut server = start_server(port, dir.path());
    wait_port(port).await;
    let coll = mongo_client(&uri)
        .await
        .database("sse")
        .collection::<Document>("outage");
    coll.insert_one(doc! { "name": "seed" }).await.unwrap();

    let b = sse_bridge::start(settings(&mongo_config("r", &uri, "sse", "outage", "")))
        .await
        .unwrap();
    wait_status(b.admin_addr, 200, T).await;
    let mut c = SseClient::connect(&format!("http://{}/streams/r", b.http_addr), None).await;
    assert_eq!(c.status, 200);
    for n in ["one", "two"] {
        coll.insert_one(doc! { "name": n }).await.unwrap();
    }
    let mut got = names(&c.take(2, T).await);

    server.stop();
    wait_status(b.admin_addr, 503, T).await;
    let ready: serde_json::Value = readyz(b.admin_addr).await;
    assert_eq!(ready["routes"][0]["connected"], false, "{ready}");

    let mut server = start_server(port, dir.path());
    wait_port(port).await;
    wait_status(b.admin_addr, 200, T).await;
    let coll = mongo_client(&uri)
        .await
        .database("sse")
        .collection::<Document>("outage");
    for n in ["three", "four"] {
        coll.insert_one(doc! { "name": n }).await.unwrap();
    }
    got.extend(names(&c.take(2, T).await));
    c.expect_quiet(Duration::from_millis(700)).await;
    assert_eq!(
        got,
        ["one", "two", "three", "four"],
        "nothing lost or repeated across the restart"
    );
    b.shutdown().await;
    server.stop();
}
