//! Who may open a route's streams and what each client sees: `auth` (JWT), claim-bound
//! `filters`, the `client_filters` a client may narrow by, and per-route limits.

use serde::Deserialize;

use crate::problems::Problems;

pub use crate::auth::{JwtAlgorithm, JwtConfig};
pub use crate::bus::Selector;

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
    p: &mut Problems,
) {
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
        if !r.source.supports(s) {
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
        check_origins(&format!("{at}.cors_origins"), origins, p);
    }
    let effective = r.cors_origins.as_deref().unwrap_or(server_origins);
    if r.cors_credentials && effective.iter().any(|o| o == "*") {
        p.push(
            format!("{at}.cors_credentials"),
            "cannot be used with the origin `*` (list the origins by name)",
        );
    }
}

/// Check a list of CORS origins at `path`.
pub(super) fn check_origins(path: &str, origins: &[String], p: &mut Problems) {
    for (i, origin) in origins.iter().enumerate() {
        let ok = origin == "*"
            || ((origin.starts_with("http://") || origin.starts_with("https://"))
                && !origin.ends_with('/')
                && !origin.contains(char::is_whitespace));
        if !ok {
            p.push(
                format!("{path}[{i}]"),
                "must be `*` or an origin like `https://dash.example.com` (scheme and host, no path)",
            );
        }
    }
}
