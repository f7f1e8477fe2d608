//! Amazon MSK IAM login (`aws_msk_iam`), end to end with the bridge binary: credentials
//! from an EKS Pod Identity endpoint (AWS's credential chain reading
//! `AWS_CONTAINER_CREDENTIALS_FULL_URI`), a SigV4-presigned token handed by librdkafka
//! to the broker in its SASL/OAUTHBEARER message. Both AWS ends are stand-ins
//! (tests/fixtures/fake_msk.py); the token's signature itself is pinned against AWS's
//! own signer by the unit tests of `source::kafka::msk_iam`.

mod common;

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use common::*;

const FAKE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fake_msk.py");

struct Fake {
    child: Child,
    creds_port: u16,
    kafka_port: u16,
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn fake(dir: &Path) -> Fake {
    let mut child = Command::new("python3")
        .arg(FAKE)
        .arg(dir)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs tests/fixtures/fake_msk.py");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ports: Vec<u16> = line
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    Fake {
        child,
        creds_port: ports[0],
        kafka_port: ports[1],
    }
}

/// The bridge binary with one MSK IAM route on `broker`, credentials from `creds_url`
/// and nothing else of AWS's chain (no env keys, profiles or instance metadata).
fn bridge_with_iam(dir: &Path, broker: &str, creds_url: &str) -> (KillOnDrop, u16) {
    let (port, admin) = (fixed_port(), fixed_port());
    let toml = format!(
        r#"[server]
listen = "127.0.0.1:{port}"
admin_listen = "127.0.0.1:{admin}"

[[routes]]
name = "orders"
source = {{ type = "kafka", brokers = ["{broker}"], topics = ["orders"], aws_msk_iam = {{ region = "eu-west-1" }}, properties = {{ "security.protocol" = "SASL_PLAINTEXT" }} }}
"#
    );
    let file = dir.join("bridge.toml");
    std::fs::write(&file, toml).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sse-bridge"));
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    let child = cmd
        .arg("--config")
        .arg(&file)
        .env("RUST_LOG", "warn")
        .env("AWS_CONTAINER_CREDENTIALS_FULL_URI", creds_url)
        .env("AWS_CONTAINER_AUTHORIZATION_TOKEN", "pod-identity-auth")
        .env("AWS_CONFIG_FILE", dir.join("no-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.join("no-credentials"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sse-bridge");
    (KillOnDrop(child), admin)
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn params(url: &str) -> Vec<(String, String)> {
    let (_, q) = url.split_once('?').expect("a query");
    form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_gets_a_sigv4_token_signed_with_pod_identity_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let fake = fake(dir.path());
    let broker = format!("127.0.0.1:{}", fake.kafka_port);
    let creds_url = format!("http://127.0.0.1:{}/v1/credentials", fake.creds_port);
    let (_bridge, admin) = bridge_with_iam(dir.path(), &broker, &creds_url);

    let sasl = dir.path().join("sasl.log");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let auth = loop {
        let found = lines(&sasl)
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find_map(|v| v["auth"].as_str().map(str::to_owned));
        if let Some(a) = found {
            break a;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no SASL message reached the broker in 30 s; broker log: {:?}, credentials log: {:?}",
            lines(&sasl),
            lines(&dir.path().join("creds.log"))
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(lines(&sasl)[0], r#"{"mechanism": "OAUTHBEARER"}"#);

    // RFC 7628's client message: gs2 header, then auth=Bearer <token>, \x01-separated.
    let token = auth
        .strip_prefix("n,,\u{1}auth=Bearer ")
        .and_then(|t| t.strip_suffix("\u{1}\u{1}"))
        .unwrap_or_else(|| panic!("not an OAUTHBEARER client message: {auth:?}"));
    let url = String::from_utf8(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .expect("the token is base64url without padding"),
    )
    .unwrap();
    assert!(
        url.starts_with("https://kafka.eu-west-1.amazonaws.com/?Action=kafka-cluster%3AConnect&"),
        "{url}"
    );
    let q = params(&url);
    let get = |k: &str| {
        q.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{k} missing from {url}"))
    };
    let today = chrono::Utc::now().format("%Y%m%d").to_string();
    let credential = get("X-Amz-Credential");
    assert!(
        credential == format!("AKIDPODIDENTITY/{today}/eu-west-1/kafka-cluster/aws4_request"),
        "{credential}"
    );
    assert_eq!(get("X-Amz-Security-Token"), "pod-identity-session-token");
    assert_eq!(get("X-Amz-Algorithm"), "AWS4-HMAC-SHA256");
    assert_eq!(get("X-Amz-Expires"), "900");
    assert_eq!(get("X-Amz-SignedHeaders"), "host");
    let sig = get("X-Amz-Signature");
    assert!(
        sig.len() == 64 && sig.chars().all(|c| c.is_ascii_hexdigit()),
        "{sig}"
    );
    assert!(get("User-Agent").starts_with("sse-bridge/"));

    // The credentials came from the Pod Identity endpoint, with its token.
    let creds = lines(&dir.path().join("creds.log"));
    assert!(
        creds
            .iter()
            .any(|l| l == "/v1/credentials pod-identity-auth"),
        "{creds:?}"
    );

    // Metrics: one renewal at least, and a token that expires within 15 minutes.
    let addr: std::net::SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
    wait_metric(
        addr,
        "sse_bridge_source_login_refreshes_total{outcome=\"ok\",route=\"orders\"}",
        |v| v >= 1.0,
    )
    .await;
    let expiry = metric(
        addr,
        "sse_bridge_source_login_expiry_seconds{route=\"orders\"}",
    )
    .await;
    let now = chrono::Utc::now().timestamp() as f64;
    assert!(
        expiry > now + 800.0 && expiry <= now + 901.0,
        "expiry {expiry}, now {now}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_credentials_the_route_is_unavailable_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let fake = fake(dir.path());
    let broker = format!("127.0.0.1:{}", fake.kafka_port);
    // Nothing listens there: the chain finds no credentials.
    let dead = format!("http://127.0.0.1:{}/v1/credentials", fixed_port());
    let (_bridge, admin) = bridge_with_iam(dir.path(), &broker, &dead);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
    wait_metric(
        addr,
        "sse_bridge_source_login_refreshes_total{outcome=\"error\",route=\"orders\"}",
        |v| v >= 1.0,
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let body = readyz(addr).await;
        let err = body["routes"][0]["error"].as_str().unwrap_or("").to_owned();
        if err.contains("aws_msk_iam") {
            assert!(err.contains("credentials"), "{err}");
            assert_eq!(body["routes"][0]["ready"], false);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "readyz never named the login: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // No token ever reached the broker.
    assert!(
        !lines(&dir.path().join("sasl.log"))
            .iter()
            .any(|l| l.contains("\"auth\"")),
        "a login without credentials"
    );
}
