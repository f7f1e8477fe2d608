//! Headless Chromium over WebDriver for the browser tests (Debian's chromium and
//! chromium-driver, installed by scripts/test), and a static file server for the pages
//! they open. Screenshots go to target/e2e/.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{fixed_port, wait_port, KillOnDrop};

pub const T: Duration = Duration::from_secs(30);

/// chromedriver on a free port, and a session of headless Chromium.
pub async fn browser() -> (KillOnDrop, Client) {
    let driver = std::env::var("SSE_BRIDGE_TEST_CHROMEDRIVER")
        .ok()
        .or_else(|| {
            std::path::Path::new("/usr/bin/chromedriver")
                .exists()
                .then(|| "/usr/bin/chromedriver".to_owned())
        })
        .unwrap_or_else(|| {
            panic!("chromedriver not found: run the tests with scripts/test, which installs chromium and chromium-driver")
        });
    let port = fixed_port();
    let child = KillOnDrop(
        std::process::Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start chromedriver"),
    );
    wait_port(port).await;
    let profile = tempfile::tempdir().unwrap().keep();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": std::env::var("SSE_BRIDGE_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--window-size=1100,900", format!("--user-data-dir={}", profile.display())],
        }),
    );
    let client = ClientBuilder::native()
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("WebDriver session");
    (child, client)
}

pub fn artifact(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/e2e");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

pub async fn eval(c: &Client, js: &str) -> Value {
    c.execute(js, vec![]).await.expect("script")
}

pub async fn until(c: &Client, what: &str, js: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let v = eval(c, js).await;
        if ok(&v) {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: last saw {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Serve the files of `dir` at http://127.0.0.1:PORT/ until the test ends.
pub async fn serve_dir(dir: PathBuf) -> u16 {
    serve_dir_with(dir, Arc::new(|_: &str| None)).await
}

/// A page's own backend: answers `path` itself when it returns `(content type, body)`.
pub type Handler = Arc<dyn Fn(&str) -> Option<(&'static str, Vec<u8>)> + Send + Sync>;

/// [`serve_dir`], with paths `handler` answers first.
pub async fn serve_dir_with(dir: PathBuf, handler: Handler) -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let dir = dir.clone();
            let handler = handler.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]);
                let path = head.split_whitespace().nth(1).unwrap_or("/");
                let path = path.split('?').next().unwrap_or("/");
                let name = if path == "/" {
                    "index.html"
                } else {
                    path.trim_start_matches('/')
                };
                let kind = match name.rsplit('.').next() {
                    Some("html") => "text/html; charset=utf-8",
                    Some("js") => "text/javascript",
                    Some("css") => "text/css",
                    _ => "application/octet-stream",
                };
                let found = match handler(path) {
                    Some((k, body)) => Ok((k, body)),
                    None => std::fs::read(dir.join(name)).map(|b| (kind, b)),
                };
                let resp = match found {
                    Ok((kind, body)) if !name.contains("..") => [
                        format!("HTTP/1.1 200 OK\r\ncontent-type: {kind}\r\ncache-control: no-store\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len()).into_bytes(),
                        body,
                    ]
                    .concat(),
                    _ => b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_vec(),
                };
                let _ = s.write_all(&resp).await;
            });
        }
    });
    port
}
