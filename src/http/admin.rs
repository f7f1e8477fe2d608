//! The admin face: `/metrics` (Prometheus text), `/healthz` (alive) and `/readyz` (every
//! source connected and live, and not draining), JSON bodies.

use std::sync::Arc;

use http::StatusCode;
use serde_json::json;
use warp::reply::{Reply, Response};
use warp::Filter;

use super::errors::{json_error, method_not_allowed, not_found};
use super::App;

/// The admin filter: `/metrics`, `/healthz` and `/readyz` for GET and HEAD; JSON errors
/// for anything else.
pub fn filter(
    app: Arc<App>,
) -> impl Filter<Extract = (Response,), Error = std::convert::Infallible> + Clone {
    let metrics = {
        let app = app.clone();
        warp::path!("metrics").map(move || match app.metrics.render() {
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
        })
    };
    let healthz = warp::path!("healthz")
        .map(|| warp::reply::json(&json!({ "status": "ok" })).into_response());
    let ready = warp::path!("readyz").map(move || readyz(&app));
    let pages = metrics.or(healthz).unify().or(ready).unify();
    let known = warp::path!("metrics")
        .or(warp::path!("healthz"))
        .unify()
        .or(warp::path!("readyz"))
        .unify();
    warp::get()
        .or(warp::head())
        .unify()
        .and(pages)
        .or(known.map(|| method_not_allowed("GET, HEAD")))
        .unify()
        .or(warp::path::full().map(|p: warp::path::FullPath| not_found(p.as_str())))
        .unify()
}

fn readyz(app: &App) -> Response {
    let draining = app.draining.is_cancelled();
    let table = app.table();
    let routes: Vec<_> = table
        .routes
        .iter()
        .map(|r| {
            let s = r.hub.state();
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
    let ready = !draining && table.routes.iter().all(|r| r.hub.state().ready());
    let body = json!({ "ready": ready, "draining": draining, "routes": routes });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    warp::reply::with_status(warp::reply::json(&body), status).into_response()
}
