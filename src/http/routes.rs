//! The stream listener's warp surface: everything on it that does not open a stream —
//! the console, CORS preflights, wrong methods, unknown paths — as typed warp filters,
//! with CORS headers and JSON errors. Streams are opened only by the stream path
//! ([`super::native`] reads the request, [`super::open`] checks and plans it); a GET on a
//! stream path that reaches this surface could not be read as a stream request and is
//! refused.

use std::convert::Infallible;
use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use warp::path::FullPath;
use warp::reply::{Reply, Response};
use warp::{Filter, Rejection};

use super::errors::{json_error, method_not_allowed, not_found};
use super::{App, RouteEntry};

/// What a stream path names.
#[derive(Clone)]
pub(crate) enum Target {
    /// A route's stream.
    Route(Arc<RouteEntry>),
    /// The multiplexed stream (`server.multiplex_path`).
    Multiplexed,
}

/// The stream path `path` names in the route table now, if any.
pub(crate) fn target(app: &App, path: &str) -> Option<Target> {
    if let Some(r) = app.table().by_path.get(path) {
        return Some(Target::Route(r.clone()));
    }
    let mp = &app.server.multiplex_path;
    (!mp.is_empty() && path == mp).then_some(Target::Multiplexed)
}

/// The stream listener's filter (everything but streams).
pub fn filter(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let surface = super::console::filter(app.clone(), crate::config::ConsoleAt::Public)
        .or(super::client::filter())
        .unify()
        .or(stream_path(app.clone()))
        .unify()
        .or(warp::path::full().map(|p: FullPath| not_found(p.as_str())))
        .unify();
    warp::path::full()
        .and(warp::header::headers_cloned())
        .and(surface)
        .map(
            move |path: FullPath, headers: HeaderMap, mut resp: Response| {
                if resp.status().is_client_error() || resp.status().is_server_error() {
                    app.metrics
                        .rejected
                        .with_label_values(&[resp.status().as_str()])
                        .inc();
                }
                let route = match target(&app, path.as_str()) {
                    Some(Target::Route(r)) => Some(r),
                    _ => None,
                };
                cors(
                    &app,
                    route.as_deref(),
                    headers.get(http::header::ORIGIN),
                    resp.headers_mut(),
                );
                resp
            },
        )
}

/// A stream path asked for with anything but a stream request: a preflight, a wrong
/// method, or a GET the stream path could not read.
fn stream_path(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path::full()
        .and_then(move |path: FullPath| {
            let found = target(&app, path.as_str()).is_some();
            async move {
                if found {
                    Ok(())
                } else {
                    Err(warp::reject::not_found())
                }
            }
        })
        .untuple_one()
        .and(warp::method())
        .map(|method: Method| match method {
            Method::OPTIONS => preflight(),
            Method::GET => json_error(
                StatusCode::BAD_REQUEST,
                "unsupported_request",
                "a stream request must be an HTTP/1.0 or HTTP/1.1 GET with at most 64 well-formed headers",
            ),
            _ => method_not_allowed("GET, OPTIONS"),
        })
}

/// The answer to a CORS preflight of a stream path.
fn preflight() -> Response {
    let mut r = warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response();
    let h = r.headers_mut();
    h.insert(
        "access-control-allow-methods",
        HeaderValue::from_static("GET, OPTIONS"),
    );
    h.insert(
        "access-control-allow-headers",
        HeaderValue::from_static("Last-Event-ID, Cache-Control, Authorization"),
    );
    h.insert("access-control-max-age", HeaderValue::from_static("600"));
    r
}

/// Add CORS headers when `origin` is allowed (by the route's own list, else the
/// server's).
pub(crate) fn cors(
    app: &App,
    route: Option<&RouteEntry>,
    origin: Option<&HeaderValue>,
    h: &mut HeaderMap,
) {
    let Some(origin) = origin else { return };
    let allowed = route
        .and_then(|r| r.access.cors_origins.as_ref())
        .unwrap_or(&app.server.cors_origins);
    let listed = allowed.iter().any(|a| origin.as_bytes() == a.as_bytes());
    if !listed && !allowed.iter().any(|a| a == "*") {
        return;
    }
    h.insert("access-control-allow-origin", origin.clone());
    h.append(http::header::VARY, HeaderValue::from_static("Origin"));
    h.insert(
        "access-control-expose-headers",
        HeaderValue::from_static("Retry-After"),
    );
    // Credentials only for origins listed by name, never through `*`.
    if listed && route.is_some_and(|r| r.access.cors_credentials) {
        h.insert(
            "access-control-allow-credentials",
            HeaderValue::from_static("true"),
        );
    }
}
