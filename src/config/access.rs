//! Who may open a route's streams and what each client sees: `auth` (JWT), claim-bound
//! `filters`, the `client_filters` a client may narrow by, and per-route limits.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// `auth`: how a route's clients authenticate.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum AuthConfig {
    /// Anyone may connect.
    #[default]
    None,
    /// A JSON Web Token, verified with the configured algorithm and key.
    Jwt(Box<JwtConfig>),
}

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
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .field("cookie", &self.cookie)
            .field("query_token", &self.query_token)
            .field("require", &self.require)
            .finish()
    }
}

fn default_leeway() -> Duration {
    Duration::from_secs(30)
}

fn yes() -> bool {
    true
}

/// What part of an event a filter compares, written `key`, `header:NAME`, `event` or
/// `field:PATH` (a dotted path into a MongoDB change event, e.g. `fullDocument.owner`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Selector {
    /// Kafka record key.
    Key,
    /// Kafka record header, by name.
    Header(String),
    /// The SSE event name.
    Event,
    /// MongoDB change event field, by dotted path.
    Field(String),
}

impl Selector {
    /// Parse `key`, `header:NAME`, `event` or `field:PATH`.
    pub fn parse(s: &str) -> Result<Selector, String> {
        let ok_name = |n: &str| {
            !n.is_empty()
                && n.len() <= 128
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        match s.split_once(':') {
            None if s == "key" => Ok(Selector::Key),
            None if s == "event" => Ok(Selector::Event),
            Some(("header", n)) if ok_name(n) => Ok(Selector::Header(n.to_owned())),
            Some(("field", p)) if ok_name(p) && !p.starts_with('.') && !p.ends_with('.') => {
                Ok(Selector::Field(p.to_owned()))
            }
            _ => Err(format!(
                "`{s}`: expected `key`, `header:NAME`, `event` or `field:PATH` (letters, digits, `-`, `_`, `.`)"
            )),
        }
    }

    /// The text form (also the query parameter a client narrows by).
    pub fn name(&self) -> String {
        match self {
            Selector::Key => "key".into(),
            Selector::Event => "event".into(),
            Selector::Header(h) => format!("header:{h}"),
            Selector::Field(p) => format!("field:{p}"),
        }
    }
}

impl<'de> Deserialize<'de> for Selector {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Selector, D::Error> {
        let s = String::deserialize(d)?;
        Selector::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// `filters = [{ on = "key", claim = "sub" }]`: every client sees only events whose `on`
/// equals the value of its token's `claim` (the claim is compared as a value, never
/// interpreted).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimFilter {
    /// What to compare.
    pub on: Selector,
    /// Token claim holding the value (a string or a number).
    pub claim: String,
}

/// Per-route access settings (the fields of `[[routes]]` of the same names).
#[derive(Debug, Clone, Default)]
pub struct RouteAccess {
    /// Authentication.
    pub auth: AuthConfig,
    /// Equalities bound to token claims (needs `auth`).
    pub filters: Vec<ClaimFilter>,
    /// What a client may narrow by with query parameters of the same name
    /// (`?key=..&header:region=..&event=..`); each only narrows.
    pub client_filters: Vec<Selector>,
    /// Most open streams on this route (0: no limit beyond the server's); beyond it, 503.
    pub max_connections: usize,
    /// Origins allowed for this route (replaces `server.cors_origins` when set).
    pub cors_origins: Option<Vec<String>>,
    /// Send `Access-Control-Allow-Credentials: true` (cookies), for listed origins only.
    pub cors_credentials: bool,
}

/// A network in CIDR form, or a single address.
pub fn parse_net(s: &str) -> Result<ipnet::IpNet, String> {
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("`{s}` is not an address or a CIDR network"))
}

/// Check the access settings of route `r` (at `at`, e.g. `routes[0]`).
pub(super) fn validate_route(
    at: &str,
    r: &super::RouteConfig,
    server_origins: &[String],
    p: &mut super::validate::Problems,
) {
    let kafka = matches!(r.source, super::SourceConfig::Kafka(_));
    if let AuthConfig::Jwt(j) = &r.auth {
        if let Err((field, msg)) = crate::auth::Authenticator::new(j) {
            p.push(format!("{at}.auth.{field}"), msg);
        }
        for claim in j.require.keys() {
            if claim.is_empty() {
                p.push(
                    format!("{at}.auth.require"),
                    "claim names must not be empty",
                );
            }
        }
    } else if !r.filters.is_empty() {
        p.push(
            format!("{at}.filters"),
            "claim filters need `auth` (a token to take claims from)",
        );
    }
    let selectors = r
        .filters
        .iter()
        .map(|f| (&f.on, "filters"))
        .chain(r.client_filters.iter().map(|s| (s, "client_filters")));
    for (s, field) in selectors {
        let fits = match s {
            Selector::Key | Selector::Header(_) => kafka,
            Selector::Field(_) => !kafka,
            Selector::Event => true,
        };
        if !fits {
            p.push(
                format!("{at}.{field}"),
                format!(
                    "`{}` does not apply to a {} source",
                    s.name(),
                    r.source.kind()
                ),
            );
        }
    }
    if let Some(origins) = &r.cors_origins {
        super::validate::check_origins(&format!("{at}.cors_origins"), origins, p);
    }
    let effective = r.cors_origins.as_deref().unwrap_or(server_origins);
    if r.cors_credentials && effective.iter().any(|o| o == "*") {
        p.push(
            format!("{at}.cors_credentials"),
            "cannot be used with the origin `*` (list the origins by name)",
        );
    }
}
