//! JSON error responses: every refusal is an HTTP status with a JSON body
//! `{"error": "<code>", "message": "<human text>"}`.

use http::{HeaderValue, StatusCode};
use serde_json::json;
use warp::reply::{Reply, Response};

/// A JSON error response.
pub fn json_error(status: StatusCode, code: &str, message: impl AsRef<str>) -> Response {
    let body = json!({ "error": code, "message": message.as_ref() });
    warp::reply::with_status(warp::reply::json(&body), status).into_response()
}

/// 404 for an unknown path.
pub fn not_found(path: &str) -> Response {
    json_error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route at {path}"),
    )
}

/// 405 for a known path with the wrong method.
pub fn method_not_allowed(allow: &'static str) -> Response {
    let mut r = json_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("allowed methods: {allow}"),
    );
    r.headers_mut()
        .insert(http::header::ALLOW, HeaderValue::from_static(allow));
    r
}

/// 503 with `Retry-After`.
pub fn unavailable(code: &str, message: impl AsRef<str>, retry_after_s: u64) -> Response {
    let mut r = json_error(StatusCode::SERVICE_UNAVAILABLE, code, message);
    r.headers_mut()
        .insert(http::header::RETRY_AFTER, HeaderValue::from(retry_after_s));
    r
}
