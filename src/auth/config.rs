//! `auth = { type = "jwt", ... }` of a route: which algorithm and keys verify its
//! clients' tokens, which issuer, audience and claims they must carry, and where a token
//! may come from.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// The signature algorithm; a token's own `alg` header never chooses it.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with a shared secret.
    HS256,
    /// RSA PKCS#1 v1.5 with SHA-256, with a public key or a JWKS.
    RS256,
    /// ECDSA P-256 with SHA-256, with a public key or a JWKS.
    ES256,
}

/// `auth = { type = "jwt", ... }`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// The only algorithm accepted.
    pub algorithm: JwtAlgorithm,
    /// HS256: the shared secret inline (for development; prefer `secret_env`/`secret_file`).
    #[serde(default)]
    pub secret: Option<String>,
    /// HS256: name of the environment variable holding the shared secret.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// HS256: file holding the shared secret (trailing newline ignored).
    #[serde(default)]
    pub secret_file: Option<String>,
    /// RS256/ES256: PEM file of the public key.
    #[serde(default)]
    pub public_key_file: Option<String>,
    /// RS256/ES256: JWKS file; the token's `kid` picks the key.
    #[serde(default)]
    pub jwks_file: Option<String>,
    /// RS256/ES256: JWKS URL (HTTPS), fetched at start, every `jwks_refresh`, and when a
    /// token names an unknown `kid` (at most once per 10 s); the last good keys are kept
    /// when a fetch fails.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// How often `jwks_url` is fetched again.
    #[serde(default = "default_jwks_refresh", with = "humantime_serde")]
    pub jwks_refresh: Duration,
    /// PEM certificates (besides the system's) trusted for `jwks_url`, e.g. a private CA.
    #[serde(default)]
    pub jwks_ca_file: Option<String>,
    /// Required `iss`.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Required `aud` (the token must list it).
    #[serde(default)]
    pub audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(default = "default_leeway", with = "humantime_serde")]
    pub leeway: Duration,
    /// Also read the token from this cookie.
    #[serde(default)]
    pub cookie: Option<String>,
    /// Also read the token from `?access_token=` (what a browser `EventSource`, which
    /// cannot set headers, uses).
    #[serde(default = "yes")]
    pub query_token: bool,
    /// Claims a token must carry to access the route (403 otherwise): the claim equals the
    /// value, is an array holding it, or (for `scope`/`scp`) a space-separated list holding it.
    #[serde(default)]
    pub require: BTreeMap<String, String>,
}

impl std::fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtConfig")
            .field("algorithm", &self.algorithm)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("secret_env", &self.secret_env)
            .field("secret_file", &self.secret_file)
            .field("public_key_file", &self.public_key_file)
            .field("jwks_file", &self.jwks_file)
            .field("jwks_url", &self.jwks_url)
            .field("jwks_refresh", &self.jwks_refresh)
            .field("jwks_ca_file", &self.jwks_ca_file)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .field("cookie", &self.cookie)
            .field("query_token", &self.query_token)
            .field("require", &self.require)
            .finish()
    }
}

fn default_jwks_refresh() -> Duration {
    Duration::from_secs(300)
}

fn default_leeway() -> Duration {
    Duration::from_secs(30)
}

fn yes() -> bool {
    true
}
