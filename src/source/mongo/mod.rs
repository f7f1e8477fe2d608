//! The MongoDB source adapter: one shared change stream per route (`shared`) feeds the
//! route's hub; a client resuming from a token the hub no longer holds reads from its own
//! change stream opened with that token (`catchup`) until it meets the shared stream.
//! Tokens are opaque ([`MongoToken`]); events are relaxed Extended JSON (`encode`).

mod catchup;
mod config;
mod encode;
mod position;
mod shared;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use mongodb::bson::{Document, Timestamp};
use mongodb::change_stream::event::{ChangeStreamEvent, ResumeToken};
use mongodb::change_stream::ChangeStream;
use mongodb::Client;
use serde_json::json;
use tokio_util::sync::CancellationToken;

pub use config::{redact_uri, FullDocument, FullDocumentBeforeChange, MongoSourceConfig};
use encode::{ChangeEncoder, PayloadMode};
pub use position::MongoToken;

use crate::bus::{Cursor, Hub, Selector};
use crate::event_id;
use crate::metrics::{ResumeOutcome, RouteMetrics};
use crate::position::Position;
use crate::problems::Problems;
use crate::source::{
    parse_section, spawn, Adapter, CatchupPool, CatchupRead, ClientStart, Plan, Reader,
    RouteOptions, SourceError, SourceSpec, StartPosition, Wiring,
};
use crate::sse;

/// The MongoDB adapter (`type = "mongodb"`).
pub const ADAPTER: Adapter = Adapter {
    name: "mongodb",
    id_kind: position::KIND,
    parse: parse_section::<MongoSourceConfig>,
};

impl SourceSpec for MongoSourceConfig {
    fn kind(&self) -> &'static str {
        "mongodb"
    }

    fn validate(&self, route: &RouteOptions, at: &str, p: &mut Problems) {
        MongoSourceConfig::validate(self, &format!("{at}.source"), p);
        if let Some(d @ ("reset" | "expired")) = route.event_name.default.as_deref() {
            p.push(
                format!("{at}.event_name.default"),
                format!("`{d}` is a name the bridge gives events itself"),
            );
        }
        if let Some(mode) = &route.payload {
            if !PayloadMode::NAMES.contains(&mode.as_str()) {
                p.push(
                    format!("{at}.payload"),
                    "must be `change` or `document` for a mongodb source",
                );
            }
        }
        if route.event_name.header.is_some() {
            p.push(
                format!("{at}.event_name.header"),
                "is for Kafka sources only",
            );
        }
        if route.start != StartPosition::Latest {
            p.push(
                format!("{at}.start"),
                "a mongodb source supports only `latest` (use `?since=` for history)",
            );
        }
    }

    fn supports(&self, selector: &Selector) -> bool {
        matches!(selector, Selector::Field(_) | Selector::Event)
    }

    fn describe(&self) -> String {
        match (&self.database, &self.collection) {
            (Some(d), Some(c)) => format!("{d}.{c}"),
            (Some(d), None) => d.clone(),
            _ => "whole deployment".to_owned(),
        }
    }

    fn initial_position(&self) -> Box<dyn Position> {
        Box::new(MongoToken::default())
    }

    fn start(&self, route: &RouteOptions, w: Wiring<'_>) -> Arc<dyn crate::source::Source> {
        let src = MongoSource::new(route, self.clone(), w.hub, w.catchup);
        spawn(src, w.tracker, w.cancel)
    }
}

impl Reader for MongoSource {
    type Position = MongoToken;

    fn run(self: Arc<Self>, cancel: CancellationToken) -> impl Future<Output = ()> + Send {
        shared::run(self, cancel)
    }

    fn plan(
        self: &Arc<Self>,
        start: ClientStart,
    ) -> impl Future<Output = Result<Plan, SourceError>> + Send {
        self.plan_client(start)
    }

    fn attach(self: &Arc<Self>, cursor: Cursor) -> Plan {
        self.attach_cursor(cursor)
    }
}

/// The token of a route's hub (which only ever holds MongoDB positions).
fn head_token(hub: &Hub) -> MongoToken {
    hub.head()
        .1
        .into_any()
        .downcast::<MongoToken>()
        .map(|t| *t)
        .unwrap_or_default()
}

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
struct MongoSource {
    route: String,
    cfg: MongoSourceConfig,
    encoder: ChangeEncoder,
    hub: Arc<Hub>,
    catchup: CatchupPool,
    /// Pre-fill the ring with recent changes at start (`replay.warm_start`).
    warm: bool,
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
    fn new(
        route: &RouteOptions,
        cfg: MongoSourceConfig,
        hub: Arc<Hub>,
        catchup: CatchupPool,
    ) -> Arc<MongoSource> {
        Arc::new(MongoSource {
            route: route.name.clone(),
            encoder: ChangeEncoder::new(
                PayloadMode::of(route.payload.as_deref()),
                route.event_name.clone(),
                route.selectors.clone(),
            ),
            metrics: hub.metrics().clone(),
            cfg,
            hub,
            catchup,
            warm: route.replay.warm_start,
            client: parking_lot::Mutex::new(None),
        })
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
    async fn plan_client(self: &Arc<Self>, start: ClientStart) -> Result<Plan, SourceError> {
        match start {
            ClientStart::Default => Ok(self.live_plan(None)),
            ClientStart::Id(asked) => {
                let t = MongoToken::of(&*asked).ok_or(SourceError::WrongKind)?;
                if let Some(plan) = self.in_ring(t) {
                    return Ok(plan);
                }
                let mut plan = Plan {
                    cursor: Cursor::new(Box::new(t.clone()), true),
                    next_seq: self.hub.head().0,
                    catchup: self.catchup.existing(t),
                    preamble: Vec::new(),
                    outcome: Some(ResumeOutcome::Source),
                };
                if plan.catchup.is_some() {
                    return Ok(plan);
                }
                plan.cursor.joined = false;
                let token = t.to_resume_token().ok_or(SourceError::WrongKind)?;
                self.catchup_plan(Start::After(token), Box::new(t.clone()), plan)
                    .await
            }
            // A time still to come starts at the present, as on Kafka (whose time index
            // answers the log's end).
            ClientStart::Since(ms) if ms > chrono::Utc::now().timestamp_millis() => {
                Ok(self.live_plan(None))
            }
            ClientStart::Since(ms) => {
                if let Some(plan) = self.since_in_ring(ms) {
                    return Ok(plan);
                }
                let ts = Timestamp {
                    // Cluster times are 32-bit seconds; past times fit until 2106.
                    time: u32::try_from(ms / 1000).unwrap_or(u32::MAX),
                    increment: 0,
                };
                let plan = Plan {
                    cursor: Cursor::new(Box::new(MongoToken::default()), true),
                    next_seq: 0,
                    catchup: None,
                    preamble: Vec::new(),
                    outcome: None,
                };
                let base = Box::new(MongoToken::default());
                let mut plan = self.catchup_plan(Start::At(ts), base, plan).await?;
                plan.outcome = None;
                Ok(plan)
            }
        }
    }

    /// Join the live stream at the head; `reset` is the reason a resume failed.
    fn live_plan(&self, reset: Option<(&str, String)>) -> Plan {
        let (seq, _) = self.hub.head();
        let h = head_token(&self.hub);
        let mut preamble = Vec::new();
        let outcome = reset.as_ref().map(|_| ResumeOutcome::Reset);
        if let Some((reason, detail)) = reset {
            let data = json!({ "reason": reason, "route": self.route, "detail": detail, "resumed_from": "now" });
            preamble.push(
                sse::frame(
                    &event_id::encode(&h),
                    Some("reset"),
                    Some(&data.to_string()),
                )
                .bytes,
            );
        }
        Plan {
            cursor: Cursor::new(Box::new(h), true),
            next_seq: seq,
            catchup: None,
            preamble,
            outcome,
        }
    }

    /// Open a shared catch-up change stream at `start` (whose position is `base`) once a
    /// reader is free; an unresumable token becomes a reset.
    async fn catchup_plan(
        self: &Arc<Self>,
        start: Start,
        base: Box<dyn Position>,
        mut plan: Plan,
    ) -> Result<Plan, SourceError> {
        let permit = self.catchup.permit().await?;
        match self.open(start).await {
            Ok(stream) => {
                plan.cursor.joined = true;
                let raw = catchup::stream(self.clone(), Some(stream), None);
                let read = CatchupRead {
                    base,
                    end: None,
                    raw,
                };
                plan.catchup = Some(self.catchup.start(permit, read));
                plan.outcome = Some(ResumeOutcome::Source);
                Ok(plan)
            }
            Err(e) => match unresumable(&e) {
                Some(reason) => Ok(self.live_plan(Some((reason, redact_uri(&e.to_string()))))),
                None => Err(SourceError::Unavailable(redact_uri(&e.to_string()))),
            },
        }
    }

    /// A plan for `?since=ms` from the ring, when its oldest change is older: right
    /// after the last event before the first change of that second or later (change
    /// stream start times are cluster times, whole seconds).
    fn since_in_ring(&self, ms: i64) -> Option<Plan> {
        let from = ms.div_euclid(1000) * 1000;
        let before = self.hub.inspect(|r| {
            let mut timed = r.events().filter_map(|e| e.timestamp_ms);
            if timed.next().is_none_or(|t| t >= from) {
                // The ring may not reach back that far.
                return None;
            }
            let mut prev = None;
            for ev in r.events() {
                if ev.timestamp_ms.is_some_and(|t| t >= from) {
                    return Some(prev);
                }
                prev = Some(ev.id());
            }
            Some(None)
        })?;
        let plan = match before {
            Some(id) => {
                let t = event_id::decode_as::<MongoToken>(std::str::from_utf8(&id).ok()?).ok()?;
                self.in_ring(&t)?
            }
            // Every change the ring holds is older: from the head.
            None => self.live_plan(None),
        };
        Some(Plan {
            outcome: None,
            ..plan
        })
    }

    /// A plan from the ring, when it holds `c`: at the head, or right after its event.
    fn in_ring(&self, c: &MongoToken) -> Option<Plan> {
        let (head_seq, _) = self.hub.head();
        let h = head_token(&self.hub);
        let next_seq = if h.is_known() && *c == h {
            head_seq
        } else {
            self.hub.find_id(event_id::encode(c).as_bytes())?
        };
        Some(Plan {
            cursor: Cursor::new(Box::new(c.clone()), true),
            next_seq,
            catchup: None,
            preamble: Vec::new(),
            outcome: Some(ResumeOutcome::Buffer),
        })
    }

    /// Attach a cursor to the ring: at the head, after its token in the ring, or (when
    /// the ring does not hold the token) through a shared catch-up reader joined on
    /// first read.
    fn attach_cursor(self: &Arc<Self>, cursor: Cursor) -> Plan {
        let Some(c) = MongoToken::of(&*cursor.position).cloned() else {
            return self.live_plan(None);
        };
        if let Some(plan) = self.in_ring(&c) {
            return plan;
        }
        let token = c.is_known().then(|| c.to_resume_token()).flatten();
        let (src, base) = (self.clone(), c.clone());
        let pending = self.catchup.lazy(Box::new(c.clone()), move || CatchupRead {
            base: Box::new(base),
            end: None,
            raw: catchup::stream(src, None, token.map(Start::After)),
        });
        // Every event of a catch-up read comes after the client's token.
        Plan {
            cursor: Cursor::new(Box::new(c), true),
            next_seq: self.hub.head().0,
            catchup: Some(pending),
            preamble: Vec::new(),
            outcome: Some(ResumeOutcome::Source),
        }
    }
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
