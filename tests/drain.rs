//! Draining against the real broker: two instances of one route; the one terminated fails
//! readiness at once, closes its streams spread over the drain window (each after a final
//! heartbeat carrying its position), and exits in time; its clients resume on the other
//! instance with nothing lost or duplicated.

mod common;

use std::time::Duration;

use common::*;
use tokio::time::Instant;

const T: Duration = Duration::from_secs(30);
const CLIENTS: usize = 12;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_instance_drains_its_clients_to_the_other_without_loss() {
    let topic = unique("drain");
    create_topic(&topic, 2).await;
    let toml = config("r", &topic, "");
    let a = bridge(&toml).await;
    let b = bridge(&toml).await;
    let url_a = format!("http://{}/streams/r", a.http_addr);
    let url_b = format!("http://{}/streams/r", b.http_addr);
    let admin_a = a.admin_addr;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(SseClient::connect(&url_a, None).await);
    }
    // Events keep flowing through the drain: 150 over about 3 s.
    let producing = {
        let topic = topic.clone();
        tokio::spawn(async move {
            let p = producer();
            for i in 0..150 {
                produce_at(&p, &topic, i % 2, format!("{i}").as_bytes()).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let shutdown = tokio::spawn(a.shutdown());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ready = reqwest::get(format!("http://{admin_a}/readyz"))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503, "readiness fails at once");
    let ready: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(
        (&ready["ready"], &ready["draining"]),
        (&serde_json::json!(false), &serde_json::json!(true)),
        "{ready}"
    );

    // Every client read at once, noting when its stream ended.
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                let mut got = Vec::new();
                while let Some(e) = c.next(T).await {
                    got.push(e.data.parse::<u64>().unwrap());
                }
                assert!(c.ended, "stream closed by the draining instance");
                (c, started.elapsed(), got)
            })
        })
        .collect();
    let mut ends = Vec::new();
    let mut seen: Vec<Vec<u64>> = Vec::new();
    let mut clients = Vec::new();
    for r in readers {
        let (c, end, got) = r.await.unwrap();
        clients.push(c);
        ends.push(end);
        seen.push(got);
    }
    shutdown.await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "exited within the grace period"
    );
    let spread = ends
        .iter()
        .max()
        .unwrap()
        .saturating_sub(*ends.iter().min().unwrap());
    assert!(
        spread >= Duration::from_millis(250),
        "closes spread over the window: {ends:?}"
    );

    // Each client resumes on the other instance from its last id (a final heartbeat's).
    for (i, c) in clients.iter_mut().enumerate() {
        let mut r = SseClient::connect(&url_b, Some(&c.last_id())).await;
        while seen[i].len() < 150 {
            let e = r.next(T).await.expect("the rest on the other instance");
            seen[i].push(e.data.parse::<u64>().unwrap());
        }
        r.expect_quiet(Duration::from_millis(300)).await;
        let mut all = seen[i].clone();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 150, "client {i}: every event exactly once");
    }
    producing.await.unwrap();
    b.shutdown().await;
}
