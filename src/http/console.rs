//! The console: a small page at `/` (with `/console/*` assets, shipped inside the binary)
//! listing the routes and showing one route's events live, and the JSON it reads
//! (`/console/api/routes`). Served where `server.console` says: on the admin listener
//! (the default), on the stream listener, or not at all.

use std::sync::Arc;

use http::{HeaderValue, StatusCode};
use serde_json::{json, Value};
use warp::reply::{Reply, Response};
use warp::{Filter, Rejection};

use super::App;
use crate::config::ConsoleAt;

const INDEX: &str = include_str!("console/index.html");
const APP_JS: &str = include_str!("console/app.js");
const STYLE: &str = include_str!("console/style.css");

/// The console's pages and JSON, for GET and HEAD, on the listener `server.console`
/// names (`here`).
pub fn filter(
    app: Arc<App>,
    here: ConsoleAt,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let on = {
        let app = app.clone();
        warp::any()
            .and_then(move || {
                let on = app.server.console == here;
                async move {
                    if on {
                        Ok(())
                    } else {
                        Err(warp::reject::not_found())
                    }
                }
            })
            .untuple_one()
    };
    let index = warp::path::end().map(|| asset(INDEX.to_owned(), "text/html; charset=utf-8"));
    let js = warp::path!("console" / "app.js")
        .map(|| asset(APP_JS.to_owned(), "text/javascript; charset=utf-8"));
    let css = warp::path!("console" / "style.css")
        .map(|| asset(STYLE.to_owned(), "text/css; charset=utf-8"));
    let api = warp::path!("console" / "api" / "routes")
        .map(move || asset(routes(&app).to_string(), "application/json"));
    on.and(warp::get().or(warp::head()).unify())
        .and(index.or(js).unify().or(css).unify().or(api).unify())
}

/// A console page or document.
pub(super) fn asset(body: String, kind: &'static str) -> Response {
    let mut r = warp::reply::with_status(body, StatusCode::OK).into_response();
    let h = r.headers_mut();
    h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
        ),
    );
    r
}

/// What the console lists: each route's source (never its credentials), open streams,
/// records read so far (the page derives events/s) and readiness.
fn routes(app: &App) -> Value {
    let table = app.table();
    let routes: Vec<Value> = table
        .routes
        .iter()
        .map(|r| {
            let hub = &r.hub;
            json!({
                "name": r.name,
                "path": r.path,
                "kind": r.kind,
                "source": r.reads,
                "connections": r.open.load(std::sync::atomic::Ordering::Relaxed),
                "records": hub.metrics().source_records.get(),
                "ready": hub.state().ready(),
                "auth": r.auth.read().is_some(),
                "client_filters": r.access.client_filters.iter().map(|s| s.name()).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "routes": routes, "multiplex_path": app.server.multiplex_path })
}
