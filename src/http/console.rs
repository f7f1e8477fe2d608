//! The console: a small page at `/` (with `/console/*` assets, shipped inside the binary)
//! listing the routes and showing one route's events live, and the JSON it reads
//! (`/console/api/routes`). Off with `server.console = false`.

use http::{HeaderValue, Method, StatusCode};
use serde_json::{json, Value};
use warp::reply::{Reply, Response};

use super::App;

const INDEX: &str = include_str!("console/index.html");
const APP_JS: &str = include_str!("console/app.js");
const STYLE: &str = include_str!("console/style.css");

/// The console's answer to `method path`, if the path is the console's.
pub fn serve(app: &App, method: &Method, path: &str) -> Option<Response> {
    if !app.server.console || (method != Method::GET && method != Method::HEAD) {
        return None;
    }
    let (body, kind) = match path {
        "/" => (INDEX.to_owned(), "text/html; charset=utf-8"),
        "/console/app.js" => (APP_JS.to_owned(), "text/javascript; charset=utf-8"),
        "/console/style.css" => (STYLE.to_owned(), "text/css; charset=utf-8"),
        "/console/api/routes" => (routes(app).to_string(), "application/json"),
        _ => return None,
    };
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
    Some(r)
}

/// What the console lists: each route's source (never its credentials), open streams,
/// records read so far (the page derives events/s) and readiness.
fn routes(app: &App) -> Value {
    let table = app.table();
    let routes: Vec<Value> = table
        .routes
        .iter()
        .map(|r| {
            let src = &r.raw["source"];
            let source = match r.kind {
                "kafka" => src["topics"]
                    .as_array()
                    .map(|t| t.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
                    .unwrap_or_default(),
                _ => match (src["database"].as_str(), src["collection"].as_str()) {
                    (Some(d), Some(c)) => format!("{d}.{c}"),
                    (Some(d), None) => d.to_owned(),
                    _ => "whole deployment".to_owned(),
                },
            };
            let hub = r.source.hub();
            json!({
                "name": r.name,
                "path": r.path,
                "kind": r.kind,
                "source": source,
                "connections": r.open.load(std::sync::atomic::Ordering::Relaxed),
                "records": hub.metrics().source_records.get(),
                "ready": hub.state().ready(),
                "auth": r.auth.is_some(),
                "client_filters": r.access.client_filters.iter().map(|s| s.name()).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "routes": routes, "multiplex_path": app.server.multiplex_path })
}
