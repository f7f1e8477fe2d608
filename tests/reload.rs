//! Configuration reload against the real broker: added, removed and changed routes start
//! and stop while clients of unchanged routes keep their streams; an invalid file changes
//! nothing; the binary reloads on SIGHUP, and by itself when a mounted configuration is
//! swapped as kubelet does.

mod common;

use std::time::Duration;

use common::*;
use sse_bridge::config::Settings;

const T: Duration = Duration::from_secs(30);

fn route(name: &str, topic: &str, extra: &str) -> String {
    format!(
        "\n[[routes]]\nname = \"{name}\"\nsource = {{ type = \"kafka\", brokers = [\"{}\"], topics = [\"{topic}\"] }}\n{extra}\n",
        broker()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_route_changes_without_dropping_unchanged_routes() {
    let t: Vec<String> = (0..4).map(|i| unique(&format!("reload-{i}"))).collect();
    for topic in &t {
        create_topic(topic, 1).await;
    }
    let head = config("keep", &t[0], "");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bridge.toml");
    let first = head.clone()
        + &route("change", &t[1], "replay = { max_events = 100 }")
        + &route("drop", &t[2], "");
    std::fs::write(&file, &first).unwrap();
    let b = sse_bridge::start(Settings::load(&file).unwrap())
        .await
        .unwrap();
    wait_ready(&format!("http://{}/readyz", b.admin_addr)).await;
    let url = |r: &str| format!("http://{}/streams/{r}", b.http_addr);
    let mut keep = SseClient::connect(&url("keep"), None).await;
    let mut change = SseClient::connect(&url("change"), None).await;
    let mut dropped = SseClient::connect(&url("drop"), None).await;
    let p = producer();
    produce_n(&p, &t[0], 1, "k", 2).await;
    produce_n(&p, &t[1], 1, "c", 2).await;
    assert_eq!(keep.take(2, T).await.len(), 2);
    assert_eq!(change.take(2, T).await.len(), 2);

    // An invalid file changes nothing.
    std::fs::write(
        &file,
        first.replace(
            "heartbeat_interval = \"1s\"",
            "heartbeat_interval = \"1ms\"",
        ),
    )
    .unwrap();
    let err = b.reload(&file).unwrap_err().to_string();
    assert!(err.contains("server.heartbeat_interval"), "{err}");

    let second = head
        + &route("change", &t[1], "replay = { max_events = 200 }")
        + &route("fresh", &t[3], "");
    std::fs::write(&file, &second).unwrap();
    let r = b.reload(&file).unwrap();
    assert_eq!(r.unchanged, ["keep"]);
    assert_eq!(r.changed, ["change"]);
    assert_eq!(r.added, ["fresh"]);
    assert_eq!(r.removed, ["drop"]);

    assert!(
        dropped.wait_end(Duration::from_secs(5)).await,
        "removed route's streams end"
    );
    assert!(
        change.wait_end(Duration::from_secs(5)).await,
        "changed route's streams end"
    );
    let gone = reqwest::get(url("drop")).await.unwrap();
    assert_eq!(error_of(gone).await, (404, "not_found".into()));
    // The unchanged route's client keeps its stream: the next events arrive on it.
    produce_n(&p, &t[0], 1, "k2", 3).await;
    let got = keep.take(3, T).await;
    assert_eq!(got[0].data, "k2-0");
    // The changed route's client resumes on the new route with nothing lost.
    produce_n(&p, &t[1], 1, "c2", 2).await;
    let mut back = SseClient::connect(&url("change"), Some(&change.last_id())).await;
    assert_eq!(back.status, 200);
    let data: Vec<String> = back.take(2, T).await.into_iter().map(|e| e.data).collect();
    assert_eq!(data, ["c2-0", "c2-1"]);
    let mut fresh = SseClient::connect(&url("fresh"), None).await;
    assert_eq!(fresh.status, 200);
    produce_n(&p, &t[3], 1, "f", 1).await;
    assert_eq!(fresh.take(1, T).await[0].data, "f-0");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_reloads_on_sighup() {
    let topic = unique("sighup");
    create_topic(&topic, 1).await;
    let (port, admin) = (fixed_port(), fixed_port());
    // Not watching the file: the reload comes from the signal.
    let head = on_ports(&config("a", &topic, ""), port, admin)
        .replace("[server]\n", "[server]\nwatch_config = false\n");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bridge.toml");
    std::fs::write(&file, &head).unwrap();
    let mut child = spawn_bridge(&file);
    wait_port(port).await;
    let b_url = format!("http://127.0.0.1:{port}/streams/b");
    assert_eq!(
        error_of(reqwest::get(&b_url).await.unwrap()).await,
        (404, "not_found".into())
    );
    std::fs::write(&file, head + &route("b", &topic, "")).unwrap();
    let pid = child.0.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let mut c = SseClient::connect(&b_url, None).await;
        if c.status == 200 {
            let p = producer();
            produce_n(&p, &topic, 1, "x", 1).await;
            assert_eq!(c.take(1, T).await[0].data, "x-0");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "route b never appeared"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.stop();
}

/// Publish `text` as the mounted file `config.toml` in `dir` the way kubelet updates a
/// ConfigMap volume: a new timestamped directory, then the `..data` symlink swapped to it
/// atomically (`config.toml` itself is a symlink into `..data`).
fn kubelet_publish(dir: &std::path::Path, version: u32, text: &str) {
    use std::os::unix::fs::symlink;
    let data = format!("..2026_12_02_{version:02}");
    std::fs::create_dir(dir.join(&data)).unwrap();
    std::fs::write(dir.join(&data).join("config.toml"), text).unwrap();
    let tmp = dir.join("..data_tmp");
    symlink(&data, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    if !dir.join("config.toml").exists() {
        symlink("..data/config.toml", dir.join("config.toml")).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_reloads_when_its_mounted_config_is_swapped() {
    let topic = unique("watched");
    create_topic(&topic, 1).await;
    let (port, admin) = (fixed_port(), fixed_port());
    let head = on_ports(&config("keep", &topic, ""), port, admin);
    let dir = tempfile::tempdir().unwrap();
    kubelet_publish(dir.path(), 1, &(head.clone() + &route("gone", &topic, "")));
    let mut child = spawn_bridge(&dir.path().join("config.toml"));
    wait_port(port).await;
    wait_ready(&format!("http://127.0.0.1:{admin}/readyz")).await;
    let url = |r: &str| format!("http://127.0.0.1:{port}/streams/{r}");
    let mut keep = SseClient::connect(&url("keep"), None).await;
    assert_eq!(keep.status, 200);
    let p = producer();
    produce_n(&p, &topic, 1, "before", 1).await;
    assert_eq!(keep.take(1, T).await[0].data, "before-0");
    // The ConfigMap changes: `gone` removed, `added` added, `keep` as it was.
    kubelet_publish(dir.path(), 2, &(head + &route("added", &topic, "")));
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let added = reqwest::get(url("added"))
            .await
            .map(|r| r.status().as_u16());
        let gone = reqwest::get(url("gone")).await.map(|r| r.status().as_u16());
        if let (Ok(200), Ok(404)) = (&added, &gone) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no reload after the swap: added {added:?}, gone {gone:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The client of the unchanged route kept its stream: the next event, once.
    produce_n(&p, &topic, 1, "after", 1).await;
    assert_eq!(keep.take(1, T).await[0].data, "after-0");
    keep.expect_quiet(Duration::from_millis(500)).await;
    let disconnects = metrics_text(format!("127.0.0.1:{admin}").parse().unwrap()).await;
    assert!(
        !disconnects
            .lines()
            .any(|l| l.starts_with("sse_bridge_disconnects_total{") && l.contains("route=\"keep\"")),
        "a stream of the unchanged route ended"
    );
    child.stop();
}
