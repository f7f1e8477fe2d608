//! The admin face: `/metrics` (Prometheus text), `/healthz` (alive) and `/readyz` (every
//! source connected and live, and not draining), JSON bodies.

use std::sync::Arc;

use http::{Method, StatusCode};
use serde_json::json;
use warp::reply::{Reply, Response};
use warp::Filter;

use super::errors::{json_error, method_not_allowed, not_found};
use super::App;

/// The admin filter.
pub fn filter(
    app: Arc<App>,
) -> impl Filter<Extract = (Response,), Error = std::convert::Infallible> + Clone {
    warp::any()
        .and(warp::method())
        .and(warp::path::full())
        .map(move |method: Method, path: warp::path::FullPath| handle(&app, &method, path.as_str()))
}

fn handle(app: &App, method: &Method, path: &str) -> Response {
    if !matches!(path, "/metrics" | "/healthz" | "/readyz") {
        return not_found(path);
    }
    if method != Method::GET && method != Method::HEAD {
        return method_not_allowed("GET, HEAD");
    }
    match path {
        "/metrics" => match app.metrics.render() {
            Ok(text) => warp::reply::with_header(
                text,
                "content-type",
                "text/plain; version=0.0.4; charset=utf-8",
            )
            .into_response(),
            Err(e) => json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "metrics_failed",
                e.to_string(),
            ),
        },
        "/healthz" => warp::reply::json(&json!({ "status": "ok" })).into_response(),
        _ => readyz(app),
    }
}

fn readyz(app: &App) -> Response {
    let draining = app.draining.is_cancelled();
    let table = app.table();
    let routes: Vec<_> = table
        .routes
        .iter()
        .map(|r| {
            let s = r.source.hub().state();
            json!({
                "route": r.name,
                "source": r.kind,
                "ready": s.ready(),
                "connected": s.connected,
                "live": s.live,
                "error": s.last_error,
            })
        })
        .collect();
    let ready = !draining && table.routes.iter().all(|r| r.source.hub().state().ready());
    let body = json!({ "ready": ready, "draining": draining, "routes": routes });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    warp::reply::with_status(warp::reply::json(&body), status).into_response()
}
