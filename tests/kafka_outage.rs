//! The broker going away and coming back: readiness follows the source, and the route
//! serves again once the broker (and its topic) are back. Starts its own broker (nisshi,
//! installed by scripts/test) so it can stop it.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn start_broker(port: u16, dir: &std::path::Path) -> KillOnDrop {
    Command::new("nisshi")
        .current_dir(dir)
        .args([
            "broker",
            "--listener-url",
            &format!("tcp://127.0.0.1:{port}"),
            "--advertised-listener-url",
            &format!("tcp://127.0.0.1:{port}"),
        ])
        .args([
            "--storage-engine",
            "memory://nisshi/",
            "--group-initial-rebalance-delay",
            "0s",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(KillOnDrop)
        .expect("nisshi on PATH: run the tests with scripts/test, which installs it")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_broker_and_the_route_recovers() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let port = fixed_port();
    let mut broker = start_broker(port, dir.path());
    wait_port(port).await;
    let addr = format!("127.0.0.1:{port}");
    let topic = "outage";
    let admin_client: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &addr)
            .create()
            .unwrap();
    let create = || async {
        admin_client
            .create_topics(
                &[rdkafka::admin::NewTopic::new(
                    topic,
                    1,
                    rdkafka::admin::TopicReplication::Fixed(1),
                )],
                &rdkafka::admin::AdminOptions::new(),
            )
            .await
            .unwrap();
    };
    create().await;
    let toml = config("r", topic, "").replace(&broker_addr_in_config(), &addr);
    let b = sse_bridge::start(settings(&toml)).await.unwrap();
    wait_status(b.admin_addr, 200, Duration::from_secs(30)).await;

    broker.stop();
    wait_status(b.admin_addr, 503, Duration::from_secs(15)).await;
    let ready: serde_json::Value = readyz(b.admin_addr).await;
    assert_eq!(ready["routes"][0]["connected"], false);
    assert!(ready["routes"][0]["error"].is_string(), "{ready}");
    // A client arriving meanwhile is told the source is unavailable, not left hanging.
    let r = reqwest::Client::new()
        .get(format!("http://{}/streams/r", b.http_addr))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["retry-after"], "2");
    assert_eq!(error_of(r).await, (503, "source_unavailable".into()));

    let mut broker = start_broker(port, dir.path());
    wait_port(port).await;
    create().await;
    wait_status(b.admin_addr, 200, Duration::from_secs(40)).await;
    let mut c = SseClient::connect(&format!("http://{}/streams/r", b.http_addr), None).await;
    assert_eq!(c.status, 200);
    let p: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &addr)
        .create()
        .unwrap();
    p.send(
        rdkafka::producer::FutureRecord::<(), str>::to(topic).payload("after"),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let ev = c
        .next(Duration::from_secs(20))
        .await
        .expect("event after recovery");
    assert_eq!(ev.data, "after");
    b.shutdown().await;
    broker.stop();
}

fn broker_addr_in_config() -> String {
    broker()
}
