//! The stream path: every request that opens a stream — one route's, or each route of a
//! multiplexed one — is checked and planned here, whatever listener or HTTP version it
//! came with: draining, admission (auth, limits, filters), the start position from
//! `Last-Event-ID` / `?lastEventId=` / `?since=`, the source's readiness, and the plan.

use http::{HeaderMap, StatusCode};
use tokio_util::sync::CancellationToken;
use warp::reply::Response;

use super::errors::{json_error, unavailable};
use super::stream::{ClientStream, StreamSettings};
use super::{App, RouteEntry};
use crate::event_id::{self, RawId};
use crate::metrics::ResumeOutcome;
use crate::source::{ClientStart, Source, SourceError};

/// Longest query string accepted.
const MAX_QUERY: usize = 8 * 1024;

/// Check and plan a GET on `route`: the client's stream, or the error response.
pub(crate) async fn open_stream(
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
    for name in ["last-event-id", "authorization"] {
        if headers.get_all(name).iter().nth(1).is_some() {
            return Err(Box::new(json_error(
                StatusCode::BAD_REQUEST,
                "duplicate_header",
                format!("`{name}` must appear at most once"),
            )));
        }
    }
    // A token naming a key a fetched JWKS lacks: fetch it again first (rate-limited).
    let auth = route.auth.read().clone();
    if let Some(a) = auth {
        a.prepare(headers, query).await;
    }
    let extras = super::access::admit(app, route, headers, query, peer)?;
    let start = match start_of(headers, query).and_then(|asked| read(asked, &*route.source)) {
        Ok(s) => s,
        Err(resp) => {
            route.hub.metrics().resumed(ResumeOutcome::Malformed);
            return Err(resp);
        }
    };
    let hub = &route.hub;
    // What went wrong is logged (and on the admin server's /readyz), never told to
    // clients.
    if !hub.wait_ready(app.server.source_wait).await {
        let err = hub.state().last_error.unwrap_or_else(|| "starting".into());
        tracing::warn!(route = %route.name, error = %err, "client refused: source not ready");
        return Err(Box::new(unavailable(
            "source_unavailable",
            format!(
                "route `{}` cannot serve streams right now; retry",
                route.name
            ),
            2,
        )));
    }
    let plan = match route.source.plan(start).await {
        Ok(p) => p,
        Err(e @ (SourceError::WrongKind | SourceError::BadId(_))) => {
            hub.metrics().resumed(ResumeOutcome::Malformed);
            return Err(Box::new(json_error(
                StatusCode::BAD_REQUEST,
                "malformed_event_id",
                e.to_string(),
            )));
        }
        Err(SourceError::Busy { retry_after_s }) => {
            tracing::info!(route = %route.name, "client refused: no catch-up reader free");
            return Err(Box::new(unavailable(
                "catchup_busy",
                format!(
                    "route `{}` is serving as many clients from history as it can; retry",
                    route.name
                ),
                retry_after_s,
            )));
        }
        Err(e) => {
            tracing::warn!(route = %route.name, error = %e, "client refused: planning its start failed");
            return Err(Box::new(unavailable(
                "source_unavailable",
                format!(
                    "route `{}` cannot serve streams right now; retry",
                    route.name
                ),
                2,
            )));
        }
    };
    let settings = StreamSettings {
        heartbeat: app.server.heartbeat_interval,
        retry: app.server.retry,
        max_lag: route.max_lag,
    };
    let stream = ClientStream::new(route, plan, settings, kill, extras);
    Ok(stream)
}

/// Where a client asked to start, its id's envelope checked.
#[derive(Debug, PartialEq, Eq)]
enum Asked {
    Default,
    Id(RawId),
    Since(i64),
}

/// The client's start, its id read by the route's source.
fn read(asked: Asked, source: &dyn Source) -> Result<ClientStart, Box<Response>> {
    Ok(match asked {
        Asked::Default => ClientStart::Default,
        Asked::Since(ms) => ClientStart::Since(ms),
        Asked::Id(raw) => ClientStart::Id(source.position(&raw).map_err(|e| {
            Box::new(json_error(
                StatusCode::BAD_REQUEST,
                "malformed_event_id",
                e.to_string(),
            ))
        })?),
    })
}

/// The client's start: `Last-Event-ID` header first (a browser's reconnect), then
/// `?lastEventId=`, then `?since=`.
fn start_of(headers: &HeaderMap, query: &str) -> Result<Asked, Box<Response>> {
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
        return event_id::decode(&id)
            .map(Asked::Id)
            .map_err(|e| bad("malformed_event_id", e.to_string()));
    }
    if let Some(s) = since {
        return parse_since(&s).map(Asked::Since).ok_or_else(|| {
            bad(
                "malformed_since",
                "`since` must be RFC 3339 or milliseconds since the epoch".into(),
            )
        });
    }
    Ok(Asked::Default)
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
pub(crate) fn parse_since(s: &str) -> Option<i64> {
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
    use http::HeaderValue;
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
        let wire = "AWsBAXQBBg"; // a Kafka id: topic `t`, partition 0 at 3
        let id = Asked::Id(event_id::decode(wire).unwrap());
        let mut h = HeaderMap::new();
        h.insert("last-event-id", HeaderValue::from_static(wire));
        assert_eq!(start_of(&h, "lastEventId=garbage&since=5").unwrap(), id);
        assert!(start_of(&HeaderMap::new(), "lastEventId=%21%21").is_err());
        assert_eq!(
            start_of(&HeaderMap::new(), "since=5").unwrap(),
            Asked::Since(5)
        );
        assert_eq!(start_of(&HeaderMap::new(), "").unwrap(), Asked::Default);
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
