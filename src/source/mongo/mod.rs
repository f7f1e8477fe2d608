//! The MongoDB source adapter: one shared change stream per route ([`shared`]) feeds the
//! route's hub; a client resuming from a token the hub no longer holds reads from its own
//! change stream opened with that token ([`catchup`]) until it meets the shared stream.
//! Tokens are opaque ([`MongoToken`]); events are relaxed Extended JSON ([`encode`]).

mod catchup;
mod config;
mod cursor;
mod encode;
mod position;
mod shared;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mongodb::bson::{Document, Timestamp};
use mongodb::change_stream::event::{ChangeStreamEvent, ResumeToken};
use mongodb::change_stream::ChangeStream;
use mongodb::Client;
use serde_json::json;
use tokio_util::sync::CancellationToken;

pub use config::{redact_uri, FullDocument, FullDocumentBeforeChange, MongoSourceConfig};
pub use cursor::MongoCursor;
pub use encode::ChangeEncoder;
pub use position::MongoToken;

use crate::config::RouteConfig;
use crate::event_id::EventId;
use crate::hub::{Cursor, Hub, Position};
use crate::metrics::{ResumeOutcome, RouteMetrics};
use crate::source::{ClientStart, Plan, SourceError};
use crate::sse;

/// How long the server holds an empty `getMore` (also how often idle tokens advance).
const MAX_AWAIT: Duration = Duration::from_millis(500);

/// Where a change stream starts.
#[derive(Debug, Clone)]
pub(crate) enum Start {
    /// From the present.
    Now,
    /// After this token.
    After(ResumeToken),
    /// After this token, even an `invalidate` one.
    AfterEvenInvalidate(ResumeToken),
    /// At this cluster time.
    At(Timestamp),
}

/// A running MongoDB source of one route.
pub struct MongoSource {
    route: String,
    cfg: MongoSourceConfig,
    encoder: ChangeEncoder,
    hub: Arc<Hub>,
    metrics: RouteMetrics,
    client: parking_lot::Mutex<Option<Client>>,
}

/// Server error codes meaning a token can no longer (or never could) be resumed from.
fn unresumable(e: &mongodb::error::Error) -> Option<&'static str> {
    let code = match &*e.kind {
        mongodb::error::ErrorKind::Command(c) => c.code,
        _ => return None,
    };
    match code {
        286 => Some("history_lost"),
        280 => Some("change_stream_fatal"),
        260 => Some("invalid_resume_token"),
        9 | 40647 => Some("invalid_resume_token"),
        136 => Some("history_lost"),
        _ => None,
    }
}

impl MongoSource {
    /// Build the source of `route` (not yet running).
    pub fn new(
        route: &RouteConfig,
        cfg: MongoSourceConfig,
        hub: Arc<Hub>,
        metrics: RouteMetrics,
    ) -> Arc<MongoSource> {
        Arc::new(MongoSource {
            route: route.name.clone(),
            encoder: ChangeEncoder::new(
                route.payload_mode(),
                route.event_name.clone(),
                route.selectors(),
            ),
            cfg,
            hub,
            metrics,
            client: parking_lot::Mutex::new(None),
        })
    }

    /// The initial position: no token yet.
    pub fn initial_position() -> Position {
        Position::Mongo(Bytes::new())
    }

    /// The route's hub.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Run the shared change stream until `cancel` fires.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        shared::run(self, cancel).await
    }

    async fn client(&self) -> Result<Client, SourceError> {
        if let Some(c) = self.client.lock().as_ref() {
            return Ok(c.clone());
        }
        let make = async {
            let mut opts = mongodb::options::ClientOptions::parse(&self.cfg.uri).await?;
            opts.app_name = Some(format!("sse-bridge-{}", self.route));
            opts.server_selection_timeout = Some(Duration::from_secs(5));
            opts.connect_timeout = Some(Duration::from_secs(5));
            Client::with_options(opts)
        };
        let c = make
            .await
            .map_err(|e| SourceError::Unavailable(redact_uri(&e.to_string())))?;
        *self.client.lock() = Some(c.clone());
        Ok(c)
    }

    /// Forget the client after a failure: the next open starts a fresh one (fresh
    /// sessions and cluster time, as after a server restart).
    pub(crate) fn reset_client(&self) {
        self.client.lock().take();
    }

    /// Open a change stream on the route's target.
    pub(crate) async fn open(
        &self,
        start: Start,
    ) -> Result<ChangeStream<ChangeStreamEvent<Document>>, mongodb::error::Error> {
        let client = match self.client().await {
            Ok(c) => c,
            Err(e) => return Err(mongodb::error::Error::custom(e.to_string())),
        };
        let client = &client;
        let db = self.cfg.database.as_ref().map(|d| client.database(d));
        let coll = match (&db, &self.cfg.collection) {
            (Some(db), Some(c)) => Some(db.collection::<Document>(c)),
            _ => None,
        };
        let w = match (&db, &coll) {
            (_, Some(coll)) => coll.watch(),
            (Some(db), None) => db.watch(),
            _ => client.watch(),
        };
        let mut w = w
            .pipeline(self.cfg.pipeline_docs())
            .max_await_time(MAX_AWAIT);
        if let Some(fd) = self.cfg.full_document_option() {
            w = w.full_document(fd);
        }
        if let Some(b) = self.cfg.before_change_option() {
            w = w.full_document_before_change(b);
        }
        match start {
            Start::Now => w.await,
            Start::After(t) => w.resume_after(t).await,
            Start::AfterEvenInvalidate(t) => w.start_after(t).await,
            Start::At(ts) => w.start_at_operation_time(ts).await,
        }
    }

    /// Plan the start of a new client.
    pub(crate) async fn plan(self: &Arc<Self>, start: ClientStart) -> Result<Plan, SourceError> {
        match start {
            ClientStart::Default => Ok(self.live_plan(None)),
            ClientStart::Id(EventId::Mongo(t)) => {
                let wire = Bytes::from(EventId::Mongo(t.clone()).encode());
                let plan = self.attach(Cursor::Mongo(MongoCursor::new(wire, false)));
                if plan.catchup.is_none() {
                    return Ok(plan);
                }
                let token = t.to_resume_token().ok_or(SourceError::WrongKind)?;
                self.catchup_plan(Start::After(token), plan).await
            }
            ClientStart::Id(_) => Err(SourceError::WrongKind),
            ClientStart::Since(ms) => {
                let ts = Timestamp {
                    time: (ms / 1000) as u32,
                    increment: 0,
                };
                let plan = Plan {
                    cursor: Cursor::Mongo(MongoCursor::new(Bytes::new(), true)),
                    next_seq: 0,
                    catchup: None,
                    preamble: Vec::new(),
                    outcome: None,
                };
                let mut plan = self.catchup_plan(Start::At(ts), plan).await?;
                plan.outcome = None;
                Ok(plan)
            }
        }
    }

    /// Join the live stream at the head; `reset` is the reason a resume failed.
    fn live_plan(&self, reset: Option<(&str, String)>) -> Plan {
        let (seq, head) = self.hub.head();
        let Position::Mongo(h) = head else {
            unreachable_position()
        };
        let mut preamble = Vec::new();
        let outcome = reset.as_ref().map(|_| ResumeOutcome::Reset);
        if let Some((reason, detail)) = reset {
            let data = json!({ "reason": reason, "route": self.route, "detail": detail, "resumed_from": "now" });
            preamble.push(
                sse::frame(
                    &String::from_utf8_lossy(&h),
                    Some("reset"),
                    Some(&data.to_string()),
                )
                .bytes,
            );
        }
        Plan {
            cursor: Cursor::Mongo(MongoCursor::new(h, true)),
            next_seq: seq,
            catchup: None,
            preamble,
            outcome,
        }
    }

    /// Open the client's own change stream; an unresumable token becomes a reset.
    async fn catchup_plan(
        self: &Arc<Self>,
        start: Start,
        mut plan: Plan,
    ) -> Result<Plan, SourceError> {
        match self.open(start).await {
            Ok(stream) => {
                if let Cursor::Mongo(c) = &mut plan.cursor {
                    c.joined = true;
                }
                plan.catchup = Some(catchup::stream(self.clone(), Some(stream), None));
                plan.outcome = Some(ResumeOutcome::Source);
                Ok(plan)
            }
            Err(e) => match unresumable(&e) {
                Some(reason) => Ok(self.live_plan(Some((reason, redact_uri(&e.to_string()))))),
                None => Err(SourceError::Unavailable(redact_uri(&e.to_string()))),
            },
        }
    }

    /// Attach a cursor to the ring: at the head, after its token in the ring, or (when
    /// the ring does not hold the token) with a catch-up placeholder the caller fills.
    pub(crate) fn attach(self: &Arc<Self>, cursor: Cursor) -> Plan {
        let Cursor::Mongo(mut c) = cursor else {
            unreachable_position()
        };
        let (head_seq, head) = self.hub.head();
        let Position::Mongo(h) = head else {
            unreachable_position()
        };
        if !h.is_empty() && c.last == h {
            c.joined = true;
            return Plan {
                cursor: Cursor::Mongo(c),
                next_seq: head_seq,
                catchup: None,
                preamble: Vec::new(),
                outcome: Some(ResumeOutcome::Buffer),
            };
        }
        if let Some(seq) = self.hub.find_id(&c.last) {
            c.joined = true;
            return Plan {
                cursor: Cursor::Mongo(c),
                next_seq: seq,
                catchup: None,
                preamble: Vec::new(),
                outcome: Some(ResumeOutcome::Buffer),
            };
        }
        c.joined = false;
        let token = resume_token_of(&c.last);
        let pending = catchup::stream(self.clone(), None, token.map(Start::After));
        Plan {
            cursor: Cursor::Mongo(c),
            next_seq: head_seq,
            catchup: Some(pending),
            preamble: Vec::new(),
            outcome: Some(ResumeOutcome::Source),
        }
    }
}

/// The driver's token behind a wire id, if the id is a MongoDB one.
fn resume_token_of(wire: &[u8]) -> Option<ResumeToken> {
    match EventId::decode(&String::from_utf8_lossy(wire)).ok()? {
        EventId::Mongo(t) => t.to_resume_token(),
        _ => None,
    }
}

fn unreachable_position() -> ! {
    // The hub of a MongoDB route only ever holds MongoDB positions and cursors.
    panic!("MongoDB route with a non-MongoDB position")
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::doc;
    use mongodb::error::{CommandError, Error, ErrorKind};

    /// A server command error as the driver builds it from a reply.
    fn command_error(code: i32, code_name: &str) -> Error {
        let c: CommandError = mongodb::bson::from_document(doc! {
            "code": code,
            "codeName": code_name,
            "errmsg": "from the server",
        })
        .unwrap();
        Error::from(ErrorKind::Command(c))
    }

    #[test]
    fn unresumable_server_codes() {
        let table = [
            (286, "ChangeStreamHistoryLost", Some("history_lost")),
            (280, "ChangeStreamFatalError", Some("change_stream_fatal")),
            (260, "InvalidResumeToken", Some("invalid_resume_token")),
            (9, "FailedToParse", Some("invalid_resume_token")),
            (40647, "Location40647", Some("invalid_resume_token")),
            (136, "CappedPositionLost", Some("history_lost")),
            // Transient or unrelated failures are not resets.
            (6, "HostUnreachable", None),
            (13, "Unauthorized", None),
            (26, "NamespaceNotFound", None),
            (50, "MaxTimeMSExpired", None),
            (11601, "Interrupted", None),
            (0, "", None),
        ];
        for (code, name, want) in table {
            assert_eq!(unresumable(&command_error(code, name)), want, "code {code}");
        }
    }

    #[test]
    fn unresumable_no_other_code() {
        let table = [286, 280, 260, 9, 40647, 136];
        let template = match *command_error(0, "").kind {
            ErrorKind::Command(ref c) => c.clone(),
            _ => unreachable!(),
        };
        let codes = (-1000..=100_000).chain([i32::MIN, i32::MAX]);
        for code in codes.filter(|c| !table.contains(c)) {
            let mut c = template.clone();
            c.code = code;
            assert_eq!(
                unresumable(&Error::from(ErrorKind::Command(c))),
                None,
                "{code}"
            );
        }
    }

    #[test]
    fn unresumable_only_for_command_errors() {
        // What `open` returns when no client can be made.
        assert_eq!(unresumable(&Error::custom("286".to_string())), None);
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(unresumable(&Error::from(io)), None);
    }
}
