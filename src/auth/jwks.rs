//! A JWKS fetched over HTTPS (`jwks_url`): fetched when the route starts, again every
//! `jwks_refresh`, and again (at most once per [`REFETCH_GAP`]) when a token names a key
//! id the set lacks, so a key the identity provider rotates in is picked up at once. A
//! fetch that fails (network, status, body) keeps the last good keys and is logged.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::DecodingKey;
use parking_lot::{Mutex, RwLock};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Least time between two fetches asked for by unknown key ids (a flood of tokens with
/// made-up `kid`s costs one fetch per gap, not one per request).
pub const REFETCH_GAP: Duration = Duration::from_secs(10);
/// Longest a request waits for a fetch its unknown key id started.
const FETCH_WAIT: Duration = Duration::from_secs(3);
/// Largest JWKS body accepted.
const MAX_BODY: usize = 1024 * 1024;

/// Keys by `kid`.
pub type KeySet = Vec<(Option<String>, DecodingKey)>;

/// The keys of a JWKS document; an error names what is wrong with it.
pub fn parse(body: &[u8]) -> Result<KeySet, String> {
    let set: JwkSet = serde_json::from_slice(body).map_err(|e| format!("not a JWKS: {e}"))?;
    let mut keys = Vec::new();
    for k in &set.keys {
        let dk = DecodingKey::from_jwk(k).map_err(|e| e.to_string())?;
        keys.push((k.common.key_id.clone(), dk));
    }
    if keys.is_empty() {
        return Err("holds no key".into());
    }
    Ok(keys)
}

/// A JWKS kept fresh from its URL.
pub struct RemoteJwks {
    url: String,
    client: reqwest::Client,
    keys: RwLock<Arc<KeySet>>,
    last_fetch: Mutex<Option<Instant>>,
    fetching: tokio::sync::Mutex<()>,
}

impl RemoteJwks {
    /// A JWKS at `url` (HTTPS; plain HTTP only to a loopback address), trusting the
    /// system's CAs and the PEM certificates in `ca_file`.
    pub fn new(url: &str, ca_file: Option<&str>) -> Result<RemoteJwks, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
        let loopback = matches!(parsed.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
        if parsed.scheme() != "https" && !(parsed.scheme() == "http" && loopback) {
            return Err(format!(
                "{url}: must be https:// (http:// only to localhost)"
            ));
        }
        let mut b = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::limited(3));
        if let Some(f) = ca_file {
            let pem = std::fs::read(f).map_err(|e| format!("cannot read {f}: {e}"))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("{f}: not PEM certificates: {e}"))?;
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        let client = b.build().map_err(|e| e.to_string())?;
        Ok(RemoteJwks {
            url: url.to_owned(),
            client,
            keys: RwLock::new(Arc::new(Vec::new())),
            last_fetch: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    /// The keys in use.
    pub fn keys(&self) -> Arc<KeySet> {
        self.keys.read().clone()
    }

    /// True when the set holds a key for `kid`.
    pub fn knows(&self, kid: Option<&str>) -> bool {
        let keys = self.keys();
        match kid {
            Some(kid) => keys.iter().any(|(k, _)| k.as_deref() == Some(kid)),
            None => keys.len() == 1,
        }
    }

    /// Fetch the set now; on success it replaces the keys in use (returns how many).
    pub async fn fetch(&self) -> Result<usize, String> {
        let _one = self.fetching.lock().await;
        *self.last_fetch.lock() = Some(Instant::now());
        let body = self.get().await.map_err(|e| format!("{}: {e}", self.url))?;
        let keys = parse(&body).map_err(|e| format!("{}: {e}", self.url))?;
        let n = keys.len();
        *self.keys.write() = Arc::new(keys);
        Ok(n)
    }

    async fn get(&self) -> Result<Vec<u8>, String> {
        let mut resp = self
            .client
            .get(&self.url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(format!("larger than {MAX_BODY} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// A token names `kid`, which the set lacks: fetch again unless a fetch happened
    /// within [`REFETCH_GAP`], waiting at most a few seconds for it.
    pub async fn refetch_for(&self, kid: Option<&str>) {
        if self.knows(kid) {
            return;
        }
        let recent = self
            .last_fetch
            .lock()
            .is_some_and(|t| t.elapsed() < REFETCH_GAP);
        if recent {
            return;
        }
        match tokio::time::timeout(FETCH_WAIT, self.fetch()).await {
            Ok(Ok(n)) => {
                tracing::info!(url = %self.url, keys = n, "JWKS fetched for an unknown key id")
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "JWKS fetch failed; the keys in use are kept"),
            Err(_) => {
                tracing::warn!(url = %self.url, "JWKS fetch too slow; the keys in use are kept")
            }
        }
    }

    /// Fetch now and then every `every` until `stop`, on `tracker` (the route's tasks);
    /// failures keep the last good keys
    /// and are retried sooner (every 5 s, up to `every`).
    pub fn spawn_refresh(
        self: Arc<Self>,
        every: Duration,
        tracker: &TaskTracker,
        stop: CancellationToken,
    ) {
        tracker.spawn(async move {
            let mut wait = Duration::ZERO;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
                wait = match self.fetch().await {
                    Ok(_) => every,
                    Err(e) => {
                        tracing::warn!(error = %e, "JWKS fetch failed; the keys in use are kept");
                        every.min(Duration::from_secs(5))
                    }
                };
            }
        });
    }
}
