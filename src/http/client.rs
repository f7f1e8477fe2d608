//! The browser and Node client (`clients/js`, the npm package `sse-bridge-client`), built
//! into `clients/js/dist/` and shipped inside the binary: served at
//! `/client/sse-bridge-client.js` on both
//! listeners, so a page loads it without a bundler (`import { connect } from
//! "https://bridge.example/client/sse-bridge-client.js"`). Any origin may load it (it is
//! public code; the streams keep their own CORS rules).

use http::HeaderValue;
use warp::reply::Response;
use warp::{Filter, Rejection};

const CLIENT_JS: &str = include_str!("../../clients/js/dist/sse-bridge-client.js");

/// GET and HEAD of `/client/sse-bridge-client.js`.
pub fn filter() -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("client" / "sse-bridge-client.js")
        .and(warp::get().or(warp::head()).unify())
        .map(|| {
            // A console asset, but cached a while and loadable from any origin.
            let mut r =
                super::console::asset(CLIENT_JS.to_owned(), "text/javascript; charset=utf-8");
            let h = r.headers_mut();
            // Pages pick up a new bridge's client within minutes.
            h.insert(
                http::header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            );
            h.insert(
                http::header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
            h.insert(
                "cross-origin-resource-policy",
                HeaderValue::from_static("cross-origin"),
            );
            r
        })
}
