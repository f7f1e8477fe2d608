//! A resuming client's own change stream, opened after its token, read until the route's
//! shared stream holds the same event (then the client joins the ring right after it).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mongodb::bson::Document;
use mongodb::change_stream::event::ChangeStreamEvent;
use mongodb::change_stream::ChangeStream;

use super::{redact_uri, shared, MongoSource, Start};
use crate::source::{CatchupStream, SourceError};

/// Give up when the catch-up stream fails to meet the shared one for this long.
const STALL: Duration = Duration::from_secs(60);

struct State {
    src: Arc<MongoSource>,
    stream: Option<ChangeStream<Document>>,
    start: Option<Start>,
    last: Option<Bytes>,
    done: bool,
}

/// The catch-up stream: `opened`, or one opened at `start` on first use.
pub(super) fn stream(
    src: Arc<MongoSource>,
    opened: Option<ChangeStream<ChangeStreamEvent<Document>>>,
    start: Option<Start>,
) -> CatchupStream {
    let st = State {
        src,
        stream: opened.map(|s| s.with_type::<Document>()),
        start,
        last: None,
        done: false,
    };
    Box::pin(futures::stream::unfold(st, |mut st| async move {
        if st.done {
            return None;
        }
        match next(&mut st).await {
            Ok(Some(ev)) => Some((Ok(ev), st)),
            Ok(None) => None,
            Err(e) => {
                st.done = true;
                Some((Err(e), st))
            }
        }
    }))
}

async fn next(st: &mut State) -> Result<Option<Arc<crate::bus::Event>>, SourceError> {
    if st.stream.is_none() {
        let start = st.start.take().ok_or(SourceError::WrongKind)?;
        let s = st
            .src
            .open(start)
            .await
            .map_err(|e| SourceError::Unavailable(redact_uri(&e.to_string())))?;
        st.stream = Some(s.with_type::<Document>());
    }
    let deadline = tokio::time::Instant::now() + STALL;
    loop {
        // Met the shared stream: the ring holds what this client has last.
        if let Some(last) = &st.last {
            if st.src.hub.find_id(last).is_some() {
                st.done = true;
                return Ok(None);
            }
        }
        let Some(stream) = st.stream.as_mut() else {
            return Ok(None);
        };
        match stream.next_if_any().await {
            Ok(Some(doc)) => {
                let Some(ev) = shared::event_of(&st.src, &doc) else {
                    continue;
                };
                st.last = Some(ev.id());
                return Ok(Some(Arc::new(ev)));
            }
            Ok(None) => {
                if tokio::time::Instant::now() > deadline {
                    return Err(SourceError::Unavailable(
                        "catch-up did not meet the live stream".into(),
                    ));
                }
            }
            Err(e) => return Err(SourceError::Unavailable(redact_uri(&e.to_string()))),
        }
    }
}
