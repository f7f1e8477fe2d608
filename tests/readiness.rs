//! Readiness by policy (`server.readiness`) and per route (`/readyz/<route>`): a route
//! whose source is down takes the pod out of its Service only when the policy says so.

mod common;

use common::*;

/// Two routes: `up` on the test broker, `down` on a broker address nothing listens on
/// (their topic is created first).
async fn two_routes(policy: Option<&str>) -> String {
    let topic = unique("ready");
    let toml = config("up", &topic, "");
    create_topic(&topic, 1).await;
    let toml = match policy {
        Some(p) => toml.replace("[server]\n", &format!("[server]\nreadiness = \"{p}\"\n")),
        None => toml,
    };
    format!(
        "{toml}\n[[routes]]\nname = \"down\"\nsource = {{ type = \"kafka\", brokers = [\"127.0.0.1:1\"], topics = [\"{topic}\"] }}\n"
    )
}

async fn get(admin: std::net::SocketAddr, path: &str) -> (u16, serde_json::Value) {
    let r = reqwest::get(format!("http://{admin}{path}")).await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_a_pod_with_one_working_route_is_ready_and_each_route_reports_its_own() {
    let toml = two_routes(None).await;
    let b = sse_bridge::start(settings(&toml)).await.expect("starts");
    let admin = b.admin_addr;
    wait_status(admin, 200, std::time::Duration::from_secs(30)).await;
    let (status, body) = get(admin, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["policy"], "any");
    let (status, body) = get(admin, "/readyz/up").await;
    assert_eq!(
        (status, &body["routes"][0]["route"]),
        (200, &serde_json::json!("up"))
    );
    let (status, body) = get(admin, "/readyz/down").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["routes"][0]["ready"], false);
    assert_eq!(
        body["routes"].as_array().unwrap().len(),
        1,
        "that route only"
    );
    let (status, body) = get(admin, "/readyz/nope").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "unknown_route");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_policy_all_one_route_down_makes_the_pod_unready() {
    let toml = two_routes(Some("all")).await;
    let b = sse_bridge::start(settings(&toml)).await.expect("starts");
    let admin = b.admin_addr;
    // The working route gets ready; the pod stays unready for the other.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while get(admin, "/readyz/up").await.0 != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "route up never ready"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (status, body) = get(admin, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["policy"], "all");
    b.shutdown().await;
}
