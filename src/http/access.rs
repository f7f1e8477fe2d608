//! Admission of a stream request: the route's authentication, the client's filter (from
//! its token's claims and the narrowing parameters the route allows), connection limits,
//! and when the stream must end (token expiry, maximum age).

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use tokio::time::Instant;
use warp::reply::Response;

use super::errors::{json_error, unavailable};
use super::limits::client_ip;
use super::stream::{EndKind, StreamExtras};
use super::{App, RouteEntry};
use crate::auth::AuthError;
use crate::bus::ClientFilter;
use crate::config::Selector;

/// Longest a stream lives on one token, whatever its `exp` says.
const MAX_TOKEN_LIFE: Duration = Duration::from_secs(366 * 24 * 3600);

/// Longest filter value a client may send.
const MAX_FILTER_VALUE: usize = 1024;

fn refusal(e: AuthError) -> Box<Response> {
    Box::new(match e {
        AuthError::Unauthorized => {
            let mut r = json_error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid bearer token is required",
            );
            r.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer"),
            );
            r
        }
        AuthError::Forbidden => json_error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the token does not grant access to this route",
        ),
    })
}

/// Check a request for `route` from `peer`: what its stream carries, or the refusal.
pub fn admit(
    app: &App,
    route: &RouteEntry,
    headers: &HeaderMap,
    query: &str,
    peer: SocketAddr,
) -> Result<StreamExtras, Box<Response>> {
    let mut extras = StreamExtras {
        draining: Some((app.draining.clone(), app.server.drain_window)),
        ..StreamExtras::default()
    };
    let auth = route.auth.read().clone();
    let claims = match &auth {
        Some(a) => Some(a.authorize(headers, query).map_err(refusal)?),
        None => None,
    };
    let mut filter = ClientFilter::default();
    let index = |s: &Selector| route.selectors.iter().position(|x| x == s);
    for f in &route.access.filters {
        let value = claims
            .as_ref()
            .and_then(|c| c.value(&f.claim))
            .ok_or_else(|| refusal(AuthError::Forbidden))?;
        if let Some(i) = index(&f.on) {
            filter.require(i, Bytes::from(value));
        }
    }
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        let Ok(sel) = Selector::parse(&k) else {
            continue;
        };
        if !route.access.client_filters.contains(&sel) {
            return Err(Box::new(json_error(
                StatusCode::BAD_REQUEST,
                "filter_not_allowed",
                format!("this route does not filter by `{}`", sel.name()),
            )));
        }
        if v.len() > MAX_FILTER_VALUE {
            return Err(Box::new(json_error(
                StatusCode::BAD_REQUEST,
                "filter_too_long",
                format!("filter values are at most {MAX_FILTER_VALUE} bytes"),
            )));
        }
        if let Some(i) = index(&sel) {
            filter.require(i, Bytes::from(v.into_owned()));
        }
    }
    extras.filter = Some(filter);

    let now = Instant::now();
    if let (Some(a), Some(exp)) = (&auth, claims.as_ref().and_then(|c| c.exp())) {
        let now_s = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        // Capped: a signed but absurd `exp` must not overflow the clock.
        let left = exp
            .saturating_add(a.leeway().as_secs())
            .saturating_sub(now_s)
            .min(MAX_TOKEN_LIFE.as_secs());
        extras.ends = Some((now + Duration::from_secs(left), EndKind::TokenExpiry));
    }
    if let Some(age) = app.server.max_connection_age {
        let at = now + age;
        if extras.ends.is_none_or(|(e, _)| at < e) {
            extras.ends = Some((at, EndKind::MaxAge));
        }
    }

    if !extras.held.route(&route.open, route.access.max_connections) {
        return Err(Box::new(unavailable(
            "route_over_capacity",
            format!("route `{}` holds its maximum of streams", route.name),
            5,
        )));
    }
    let ip = client_ip(
        peer,
        headers,
        app.server.client_ip_header.as_deref(),
        &app.trusted_proxies,
    );
    if !extras
        .held
        .ip(&app.per_ip, ip, app.server.max_connections_per_ip)
    {
        return Err(Box::new(too_many_connections()));
    }
    Ok(extras)
}

/// 429 `too_many_connections`: the address holds its share of connections.
pub fn too_many_connections() -> Response {
    let mut r = json_error(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_connections",
        "too many open connections from this address",
    );
    r.headers_mut()
        .insert(http::header::RETRY_AFTER, HeaderValue::from(5u64));
    r
}
