//! Several routes on one connection: `GET /streams?routes=a,b,c` (the path is
//! `server.multiplex_path`). Each route is a client stream of its own (its own
//! authentication, filter, resume and catch-up); their chunks are merged and every event
//! is re-framed with `event: <route>:<name>` and a composite id holding every route's
//! position, so a reconnect with `Last-Event-ID` resumes each route exactly.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use futures::stream::{self, Stream, StreamExt};
use http::{HeaderMap, HeaderValue, StatusCode};
use tokio_util::sync::CancellationToken;
use warp::reply::Response;

use super::errors::json_error;
use super::open::{last_id, open_stream};
use super::App;
use crate::event_id::{decode_multi, encode_multi, MAX_MULTI};

/// The merged stream's bytes.
pub type Chunks = Pin<Box<dyn Stream<Item = Bytes> + Send + Sync>>;

/// A merged stream, and the flag its writer raises when the socket passes its write
/// deadline (every route's stream then counts its end as `write_timeout`).
pub struct Merged {
    /// The merged chunks.
    pub chunks: Chunks,
    /// Raised by the writer on a write timeout.
    pub timed_out: Arc<AtomicBool>,
}
type Tagged = Pin<Box<dyn Stream<Item = (usize, Option<Bytes>)> + Send>>;

fn bad(code: &str, msg: String) -> Box<Response> {
    Box::new(json_error(StatusCode::BAD_REQUEST, code, msg))
}

/// Open the routes a multiplexed request names: the merged stream, or the first refusal.
pub async fn open(
    app: &App,
    headers: &HeaderMap,
    query: &str,
    kill: CancellationToken,
    peer: std::net::SocketAddr,
) -> Result<Merged, Box<Response>> {
    let timed_out = Arc::new(AtomicBool::new(false));
    let mut names: Vec<String> = Vec::new();
    let mut last_id_q: Option<String> = None;
    let mut others: Vec<(String, String)> = Vec::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "routes" => names.extend(
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            ),
            "lastEventId" => last_id_q = Some(v.into_owned()),
            _ => others.push((k.into_owned(), v.into_owned())),
        }
    }
    // What every route gets: the token, narrowing filters, `since`.
    let rest = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&others)
        .finish();
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    if names.is_empty() || names.len() > MAX_MULTI {
        return Err(bad(
            "bad_routes",
            format!("`routes` must name 1 to {MAX_MULTI} routes, comma-separated"),
        ));
    }
    let ids: HashMap<String, String> = match last_id(headers, last_id_q)? {
        Some(id) => decode_multi(&id)
            .map_err(|e| bad("malformed_event_id", e.to_string()))?
            .into_iter()
            .collect(),
        None => HashMap::new(),
    };
    let mut parts: Vec<Tagged> = Vec::new();
    let mut sub_ids = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let table = app.table();
        let Some(route) = table.routes.iter().find(|r| &r.name == name) else {
            return Err(Box::new(json_error(
                StatusCode::NOT_FOUND,
                "unknown_route",
                format!("no route named `{name}`"),
            )));
        };
        let mut h = headers.clone();
        h.remove("last-event-id");
        let id = ids.get(name).cloned().unwrap_or_default();
        if !id.is_empty() {
            let v = HeaderValue::from_str(&id)
                .map_err(|_| bad("malformed_event_id", "bad route id".into()))?;
            h.insert("last-event-id", v);
        }
        sub_ids.push(id);
        let mut s = open_stream(app, route, &h, &rest, kill.clone(), peer).await?;
        s.share_write_timeout(timed_out.clone());
        // Each route's chunks, tagged with its index, then `None` when it ends.
        let tagged = s
            .into_body()
            .map(move |c| (i, Some(c.unwrap_or_default())))
            .chain(stream::once(async move { (i, None) }));
        parts.push(Box::pin(tagged));
    }
    let mut framer = Framer {
        names,
        ids: sub_ids,
        retry_sent: false,
    };
    // The stream ends when any route's does (shutdown, expiry, too slow).
    let merged = stream::select_all(parts)
        .take_while(|(_, c)| futures::future::ready(c.is_some()))
        .map(move |(i, c)| framer.reframe(i, &c.unwrap_or_default()))
        .filter(|b| futures::future::ready(!b.is_empty()));
    Ok(Merged {
        chunks: Box::pin(sync_wrapper::SyncStream::new(merged)),
        timed_out,
    })
}

/// Re-frames the events of the merged routes.
struct Framer {
    names: Vec<String>,
    ids: Vec<String>,
    retry_sent: bool,
}

impl Framer {
    fn composite(&self) -> String {
        encode_multi(
            self.names
                .iter()
                .zip(&self.ids)
                .map(|(n, i)| (n.as_str(), i.as_str())),
        )
    }

    /// The chunk of route `i` as the multiplexed stream carries it.
    fn reframe(&mut self, i: usize, chunk: &[u8]) -> Bytes {
        let mut out = BytesMut::new();
        let text = String::from_utf8_lossy(chunk);
        for block in text.split("\n\n").filter(|b| !b.is_empty()) {
            let mut name: Option<&str> = None;
            let mut data: Vec<&str> = Vec::new();
            let mut id_seen = false;
            let mut retry: Option<&str> = None;
            let mut comment = false;
            for line in block.split('\n') {
                if let Some(id) = line.strip_prefix("id: ") {
                    self.ids[i] = id.to_owned();
                    id_seen = true;
                } else if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n);
                } else if line.starts_with("data:") {
                    data.push(line);
                } else if line.starts_with("retry: ") {
                    retry = Some(line);
                } else if line.starts_with(':') {
                    comment = true;
                }
            }
            if let Some(r) = retry {
                if !self.retry_sent {
                    self.retry_sent = true;
                    out.put_slice(r.as_bytes());
                    out.put_slice(b"\n\n");
                }
            } else if name.is_some() || !data.is_empty() {
                out.put_slice(format!("id: {}\n", self.composite()).as_bytes());
                // `expired` keeps its name: the whole connection ends with it.
                let name = match name {
                    Some("expired") => "expired".to_owned(),
                    n => format!("{}:{}", self.names[i], n.unwrap_or("message")),
                };
                out.put_slice(format!("event: {name}\n").as_bytes());
                for d in data {
                    out.put_slice(d.as_bytes());
                    out.put_u8(b'\n');
                }
                out.put_u8(b'\n');
            } else if id_seen {
                out.put_slice(format!(":\nid: {}\n\n", self.composite()).as_bytes());
            } else if comment {
                out.put_slice(b": heartbeat\n\n");
            }
        }
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_renamed_and_carry_every_routes_position() {
        let a = crate::event_id::encode_multi([]);
        assert!(!a.is_empty());
        let mut f = Framer {
            names: vec!["orders".into(), "users".into()],
            ids: vec![String::new(), String::new()],
            retry_sent: false,
        };
        let k1 = "AWsBAXQBAg"; // any base64url id
        let out = f.reframe(
            0,
            format!("retry: 2000\n\nid: {k1}\nevent: paid\ndata: a\ndata: b\n\n").as_bytes(),
        );
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert!(text.starts_with("retry: 2000\n\nid: "), "{text}");
        assert!(
            text.contains("event: orders:paid\ndata: a\ndata: b\n\n"),
            "{text}"
        );
        let id = text
            .split("id: ")
            .nth(1)
            .unwrap()
            .split('\n')
            .next()
            .unwrap();
        assert_eq!(
            decode_multi(id).unwrap(),
            vec![("orders".to_owned(), k1.to_owned())]
        );
        let out = f.reframe(1, b"retry: 2000\n\n:\nid: AWsBAXQBBA\n\n");
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert!(
            text.starts_with(":\nid: "),
            "one retry, then a heartbeat: {text}"
        );
        let id = text.trim_start_matches(":\nid: ").trim();
        assert_eq!(decode_multi(id).unwrap().len(), 2);
        let out = f.reframe(1, b"id: AWsBAXQBBQ\ndata: x\n\n");
        assert!(String::from_utf8(out.to_vec())
            .unwrap()
            .contains("event: users:message\n"));
    }
}
