//! The stream server's handler: path → route, method check, CORS, start position from
//! `Last-Event-ID` / `?lastEventId=` / `?since=`, then an SSE response.

use std::convert::Infallible;
use std::sync::Arc;

use futures::StreamExt;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use warp::reply::{Reply, Response};
use warp::Filter;

use super::errors::{json_error, method_not_allowed, not_found, unavailable};
use super::stream::{ClientStream, StreamSettings};
use super::{App, ConnInfo, RouteEntry};
use crate::event_id::EventId;
use crate::metrics::ResumeOutcome;
use crate::source::{ClientStart, SourceError};
use tokio_util::sync::CancellationToken;

/// Longest query string accepted.
const MAX_QUERY: usize = 8 * 1024;

/// The stream server's filter.
pub fn filter(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    warp::any()
        .and(warp::method())
        .and(warp::path::full())
        .and(warp::header::headers_cloned())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::ext::optional::<ConnInfo>())
        .then(
            move |method: Method,
                  path: warp::path::FullPath,
                  headers: HeaderMap,
                  query: String,
                  conn: Option<ConnInfo>| {
                let app = app.clone();
                async move {
                    let origin = headers.get(http::header::ORIGIN).cloned();
                    let (kill, peer) = conn
                        .map(|c| (c.kill, c.addr))
                        .unwrap_or_else(|| (CancellationToken::new(), ([0, 0, 0, 0], 0).into()));
                    let route = app.table().by_path.get(path.as_str()).cloned();
                    let mut resp =
                        handle(&app, method, path.as_str(), &headers, &query, kill, peer).await;
                    if resp.status().is_client_error() || resp.status().is_server_error() {
                        app.metrics
                            .rejected
                            .with_label_values(&[resp.status().as_str()])
                            .inc();
                    }
                    cors(&app, route.as_deref(), origin.as_ref(), resp.headers_mut());
                    resp
                }
            },
        )
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

async fn handle(
    app: &App,
    method: Method,
    path: &str,
    headers: &HeaderMap,
    query: &str,
    kill: CancellationToken,
    peer: std::net::SocketAddr,
) -> Response {
    if let Some(r) = super::console::serve(app, &method, path) {
        return r;
    }
    let table = app.table();
    let route = table.by_path.get(path);
    let multiplexed = !app.server.multiplex_path.is_empty() && path == app.server.multiplex_path;
    if route.is_none() && !multiplexed {
        return not_found(path);
    }
    if method == Method::OPTIONS {
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
        return r;
    }
    if method != Method::GET {
        return method_not_allowed("GET, OPTIONS");
    }
    let mut r = match route {
        Some(route) => match open_stream(app, route, headers, query, kill, peer).await {
            Ok(s) => warp::reply::stream(s.into_body()).into_response(),
            Err(resp) => return *resp,
        },
        None => match super::multiplex::open(app, headers, query, kill, peer).await {
            Ok(c) => warp::reply::stream(c.map(Ok::<_, Infallible>)).into_response(),
            Err(resp) => return *resp,
        },
    };
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}

/// Check and plan a GET on `route`: the client's stream, or the error response.
pub async fn open_stream(
    app: &App,
    route: &RouteEntry,
    headers: &HeaderMap,
    query: &str,
    kill: CancellationToken,
    peer: std::net::SocketAddr,
) -> Result<ClientStream, Box<Response>> {
    if app.draining.is_cancelled() {
        return Err(Box::new(unavailable(
            "draining",
            "this instance is shutting down; reconnect",
            1,
        )));
    }
    let extras = super::access::admit(app, route, headers, query, peer)?;
    let start = match start_of(headers, query) {
        Ok(s) => s,
        Err(resp) => {
            route
                .source
                .hub()
                .metrics()
                .resumed(ResumeOutcome::Malformed);
            return Err(resp);
        }
    };
    let hub = route.source.hub();
    if !hub.wait_ready(app.server.source_wait).await {
        let err = hub.state().last_error.unwrap_or_else(|| "starting".into());
        return Err(Box::new(unavailable(
            "source_unavailable",
            format!("route `{}` source is not ready: {err}", route.name),
            2,
        )));
    }
    let plan = match route.source.plan(start).await {
        Ok(p) => p,
        Err(SourceError::WrongKind) => {
            hub.metrics().resumed(ResumeOutcome::Malformed);
            return Err(Box::new(json_error(
                StatusCode::BAD_REQUEST,
                "malformed_event_id",
                "event id does not belong to this route's source",
            )));
        }
        Err(e) => {
            return Err(Box::new(unavailable(
                "source_unavailable",
                e.to_string(),
                2,
            )))
        }
    };
    let settings = StreamSettings {
        heartbeat: app.server.heartbeat_interval,
        retry: app.server.retry,
        max_lag: route.max_lag,
    };
    let stream = ClientStream::new(
        route.source.clone(),
        plan,
        settings,
        route.streams.clone(),
        kill,
        extras,
    );
    Ok(stream)
}

/// The client's start: `Last-Event-ID` header first (a browser's reconnect), then
/// `?lastEventId=`, then `?since=`.
fn start_of(headers: &HeaderMap, query: &str) -> Result<ClientStart, Box<Response>> {
    let bad = |code: &str, msg: String| Box::new(json_error(StatusCode::BAD_REQUEST, code, msg));
    if query.len() > MAX_QUERY {
        return Err(bad(
            "query_too_long",
            format!("query string longer than {MAX_QUERY} bytes"),
        ));
    }
    let mut id: Option<String> = None;
    let mut since: Option<String> = None;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "lastEventId" => id = Some(v.into_owned()),
            "since" => since = Some(v.into_owned()),
            _ => {}
        }
    }
    if let Some(id) = last_id(headers, id)? {
        return EventId::decode(&id)
            .map(ClientStart::Id)
            .map_err(|e| bad("malformed_event_id", e.to_string()));
    }
    if let Some(s) = since {
        return parse_since(&s).map(ClientStart::Since).ok_or_else(|| {
            bad(
                "malformed_since",
                "`since` must be RFC 3339 or milliseconds since the epoch".into(),
            )
        });
    }
    Ok(ClientStart::Default)
}

/// The id a client resumes from: its `Last-Event-ID` header (what a browser sends when
/// it reconnects), else `?lastEventId=` (`from_query`); trimmed; `None` when blank.
pub(crate) fn last_id(
    headers: &HeaderMap,
    from_query: Option<String>,
) -> Result<Option<String>, Box<Response>> {
    let id = match headers.get("last-event-id") {
        Some(h) => Some(
            h.to_str()
                .map_err(|_| {
                    Box::new(json_error(
                        StatusCode::BAD_REQUEST,
                        "malformed_event_id",
                        "Last-Event-ID is not ASCII",
                    ))
                })?
                .to_owned(),
        ),
        None => from_query,
    };
    Ok(id.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()))
}

/// RFC 3339 or epoch milliseconds.
pub fn parse_since(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<i64>() {
        return (ms >= 0).then_some(ms);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
        .filter(|ms| *ms >= 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn since_forms() {
        assert_eq!(parse_since("1700000000000"), Some(1_700_000_000_000));
        assert_eq!(parse_since("2023-11-14T22:13:20Z"), Some(1_700_000_000_000));
        assert_eq!(
            parse_since("2023-11-14T23:13:20+01:00"),
            Some(1_700_000_000_000)
        );
        assert_eq!(parse_since("yesterday"), None);
        assert_eq!(parse_since("-5"), None);
    }

    #[test]
    fn header_wins_over_query() {
        let id = EventId::Kafka(crate::source::kafka::KafkaPosition::from_topics(vec![(
            "t".into(),
            vec![3],
        )]));
        let mut h = HeaderMap::new();
        h.insert(
            "last-event-id",
            HeaderValue::from_str(&id.encode()).unwrap(),
        );
        assert_eq!(
            start_of(&h, "lastEventId=garbage&since=5").unwrap(),
            ClientStart::Id(id)
        );
        assert!(start_of(&HeaderMap::new(), "lastEventId=%21%21").is_err());
        assert_eq!(
            start_of(&HeaderMap::new(), "since=5").unwrap(),
            ClientStart::Since(5)
        );
        assert_eq!(
            start_of(&HeaderMap::new(), "").unwrap(),
            ClientStart::Default
        );
    }

    proptest! {
        #[test]
        fn query_parser_never_panics(q in ".{0,300}", h in "[ -~]{0,100}") {
            let mut headers = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&h) { headers.insert("last-event-id", v); }
            let _ = start_of(&headers, &q);
        }
    }
}
