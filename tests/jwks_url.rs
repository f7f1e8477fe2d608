//! JWT keys from a JWKS served over HTTPS (`jwks_url`): a local HTTPS server (Python's,
//! with a certificate made for the test and trusted through `jwks_ca_file`) rotates its
//! key mid-test; the bridge picks the new key up on the first token that names it, keeps
//! the last good keys when the server is gone, and fetches at most once per 10 s however
//! many unknown key ids arrive.

mod common;

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

const SERVER: &str = r#"
import http.server, ssl, sys, os
os.chdir(sys.argv[1])
class H(http.server.SimpleHTTPRequestHandler):
    def log_message(self, fmt, *args):
        with open(sys.argv[4], "a") as f:
            f.write(self.path + "\n")
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[2], sys.argv[3])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"#;

struct Https {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Drop for Https {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Https {
    fn fetches(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| *l == "/jwks.json")
            .count()
    }
}

/// A certificate for 127.0.0.1 (also its own CA) in `dir`: (cert, key).
fn certificate(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let ok = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl (Debian package openssl) makes the test's certificate");
    assert!(ok.success());
    (cert, key)
}

fn serve(root: &std::path::Path, cert: &std::path::Path, key: &std::path::Path) -> Https {
    let log = root.join("requests.log");
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(SERVER)
        .arg(root)
        .arg(cert)
        .arg(key)
        .arg(&log)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 serves the JWKS");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().parse().expect("the server prints its port");
    Https { child, port, log }
}

/// The fixture's RSA key published under `kid`.
fn jwks_with(kid: &str) -> String {
    std::fs::read_to_string(format!("{FIX}/rsa_jwks.json"))
        .unwrap()
        .replace("test-rsa-1", kid)
}

fn token(kid: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let pem = std::fs::read(format!("{FIX}/rsa_private.pem")).unwrap();
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(kid.to_owned());
    let claims: Value = json!({ "sub": "alice", "exp": now + 600 });
    encode(&h, &claims, &EncodingKey::from_rsa_pem(&pem).unwrap()).unwrap()
}

async fn status_with(url: &str, kid: &str) -> u16 {
    let c =
        SseClient::connect_with(url, &[("Authorization", format!("Bearer {}", token(kid)))]).await;
    c.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_from_a_jwks_url_rotate_refetch_on_unknown_kids_and_survive_an_outage() {
    let topic = unique("jwks-url");
    create_topic(&topic, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    let site = dir.path().join("site");
    std::fs::create_dir(&site).unwrap();
    std::fs::write(site.join("jwks.json"), jwks_with("k1")).unwrap();
    let server = serve(&site, &cert, &key);
    let auth = format!(
        "auth = {{ type = \"jwt\", algorithm = \"RS256\", jwks_url = \"https://127.0.0.1:{}/jwks.json\", jwks_ca_file = \"{}\", jwks_refresh = \"1h\" }}",
        server.port,
        cert.display()
    );
    let b = bridge(&config("r", &topic, &auth)).await;
    let url = format!("http://{}/streams/r", b.http_addr);
    assert_eq!(
        status_with(&url, "k1").await,
        200,
        "the key fetched at start"
    );
    // The provider rotates: k2 replaces k1. The first token naming k2 fetches the set
    // again (the hourly refresh is far off) and is accepted.
    std::fs::write(site.join("jwks.json"), jwks_with("k2")).unwrap();
    tokio::time::sleep(Duration::from_secs(11)).await; // past the refetch gap of the start
    let before = server.fetches();
    assert_eq!(
        status_with(&url, "k2").await,
        200,
        "rotated key picked up at once"
    );
    assert_eq!(server.fetches(), before + 1);
    assert_eq!(
        status_with(&url, "k1").await,
        401,
        "the retired key is gone"
    );
    // Made-up key ids cost at most one fetch per 10 s, however many.
    let before = server.fetches();
    for i in 0..20 {
        assert_eq!(status_with(&url, &format!("bogus-{i}")).await, 401);
    }
    assert!(
        server.fetches() <= before + 1,
        "{} fetches",
        server.fetches() - before
    );
    // The provider is gone: the keys in use stay.
    drop(server);
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(
        status_with(&url, "k3").await,
        401,
        "unknown key, fetch fails"
    );
    assert_eq!(status_with(&url, "k2").await, 200, "last good keys kept");
    b.shutdown().await;
}

#[test]
fn a_jwks_url_must_be_https_except_to_localhost() {
    let toml = |u: &str| {
        config(
            "r",
            "t",
            &format!("auth = {{ type = \"jwt\", algorithm = \"RS256\", jwks_url = \"{u}\" }}"),
        )
    };
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::io::Write::write_all(&mut f, toml("http://idp.example.com/jwks").as_bytes()).unwrap();
    let e = sse_bridge::config::Settings::load(f.path())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("routes[0].auth.jwks_url") && e.contains("must be https://"),
        "{e}"
    );
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::io::Write::write_all(&mut f, toml("http://127.0.0.1:9/jwks").as_bytes()).unwrap();
    assert!(sse_bridge::config::Settings::load(f.path()).is_ok());
}
