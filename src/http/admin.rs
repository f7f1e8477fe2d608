//! The admin face: `/metrics` (Prometheus text), `/healthz` (alive), `/readyz` (routes'
//! sources connected and live, as `server.readiness` asks, and not draining) and
//! `/readyz/<route>` (that route's), JSON bodies; and the console when `server.console`
//! is `admin` (the listener then also serves the streams the console opens).

use std::sync::Arc;

use http::StatusCode;
use serde_json::json;
use warp::reply::{Reply, Response};
use warp::Filter;

use super::errors::{json_error, method_not_allowed, not_found};
use super::App;
use crate::config::Readiness;

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
    let ready = {
        let app = app.clone();
        warp::path!("readyz").map(move || readyz(&app, None))
    };
    let console = super::console::filter(app.clone(), crate::config::ConsoleAt::Admin);
    let route_ready = warp::path!("readyz" / String).map(move |r: String| readyz(&app, Some(&r)));
    let pages = metrics
        .or(healthz)
        .unify()
        .or(ready)
        .unify()
        .or(route_ready)
        .unify();
    let known = warp::path!("metrics")
        .or(warp::path!("healthz"))
        .unify()
        .or(warp::path!("readyz"))
        .unify()
        .or(warp::path!("readyz" / String)
            .map(|_: String| ())
            .untuple_one())
        .unify();
    warp::get()
        .or(warp::head())
        .unify()
        .and(pages)
        .or(known.map(|| method_not_allowed("GET, HEAD")))
        .unify()
        .or(console)
        .unify()
        .or(super::client::filter())
        .unify()
        .or(warp::path::full().map(|p: warp::path::FullPath| not_found(p.as_str())))
        .unify()
}

/// Readiness of the process (`route` absent: by `server.readiness`) or of one route.
fn readyz(app: &App, route: Option<&str>) -> Response {
    let draining = app.draining.is_cancelled();
    let table = app.table();
    let shown: Vec<_> = table
        .routes
        .iter()
        .filter(|r| route.is_none_or(|n| r.name == n))
        .collect();
    if let (Some(n), true) = (route, shown.is_empty()) {
        return json_error(
            StatusCode::NOT_FOUND,
            "unknown_route",
            format!("no route named `{n}`"),
        );
    }
    let routes: Vec<_> = shown
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
    // Each route's readiness as reported above (one look at its state).
    let mut each = routes.iter().map(|r| r["ready"] == true);
    let sources = match (route, app.server.readiness) {
        (Some(_), _) | (None, Readiness::All) => each.all(|r| r),
        (None, Readiness::Any) => each.any(|r| r),
    };
    let ready = !draining && sources;
    let body = json!({
        "ready": ready,
        "draining": draining,
        "policy": app.server.readiness,
        "routes": routes,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    warp::reply::with_status(warp::reply::json(&body), status).into_response()
}
