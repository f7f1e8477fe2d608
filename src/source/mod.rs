//! Source adapters: the closed set of backends that feed routes, and the plug they fit.
//!
//! An adapter is one folder (`kafka/`, `mongo/`, `nats/`) owning its config section and its
//! validation, its position type (a [`Position`]), its shared reader, its catch-up, its
//! client planning and how the console describes it. The rest of the crate sees only
//! this facade: [`SourceConfig`] (a route's parsed `source` table) and [`Source`] (a
//! running source: reads a client's id, plans its start).
//!
//! Adding a source:
//! 1. Create `src/source/<name>/` with a position type implementing
//!    [`Position`] and [`crate::position::Decode`] (a kind byte of its own), a config
//!    struct implementing [`SourceSpec`] (validation, the selectors it supports, its
//!    console description; `start` builds its reader from the [`Wiring`] and hands it to
//!    [`spawn`]), a reader implementing [`Reader`] (`run`, `plan`, `attach`; a client
//!    behind the ring gets its catch-up from the route's [`CatchupPool`], given a
//!    [`CatchupRead`] of the backend — sharing and bounds come with it), and a constant
//!    [`Adapter`] (its `type` name, kind byte and [`parse_section`] of its config type).
//! 2. Declare the module below and add its `Adapter` constant to `ADAPTERS`.
//!
//! Nothing else changes: the bus moves positions by their [`crate::position::Step`]s,
//! the config layer parses and validates sections through [`SourceConfig`], HTTP plans
//! clients through [`Source`], and the console shows [`SourceSpec::describe`].

mod catchup;
pub mod kafka;
pub mod mongo;
pub mod nats;
pub mod postgres;
mod reconnect;
mod route;
mod value;

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::Stream;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use catchup::{CatchupConfig, CatchupLimits, CatchupPool, CatchupRead, Permit, MIN_PREFETCH};
pub use reconnect::reconnecting;
pub use route::{EventNameConfig, ReplayConfig, RouteOptions, StartPosition};
pub use value::{put_bytes, put_value, validate_record_route, RecordPayload, ValueFormat};

use crate::bus::{Cursor, Event, Hub, Selector};
use crate::event_id::{IdError, RawId};
use crate::metrics::ResumeOutcome;
use crate::position::{Decode, Position};
use crate::problems::Problems;

/// The closed list of adapters: adding a source is a folder and one line here.
const ADAPTERS: &[&Adapter] = &[
    &kafka::ADAPTER,
    &mongo::ADAPTER,
    &nats::ADAPTER,
    &postgres::ADAPTER,
];

/// An adapter as the facade knows it before any route uses it.
pub struct Adapter {
    /// The `type` of a route's `source` table (`kafka`, `mongodb`).
    pub name: &'static str,
    /// The kind byte of its event ids.
    pub id_kind: u8,
    /// Parse a route's `source` table (without `type`); usually [`parse_section`].
    pub parse: fn(serde_json::Value) -> Result<Box<dyn SourceSpec>, String>,
}

/// What every config section type gets for free: a boxed copy and access to its own
/// type.
pub trait SpecBoxed: Any {
    /// A boxed copy.
    fn clone_box(&self) -> Box<dyn SourceSpec>;
    /// For tests and tools to recover the adapter's config type.
    fn as_any(&self) -> &dyn Any;
}

impl<T: SourceSpec + Clone> SpecBoxed for T {
    fn clone_box(&self) -> Box<dyn SourceSpec> {
        Box::new(self.clone())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A route's `source` section, typed by its adapter.
pub trait SourceSpec: SpecBoxed + fmt::Debug + Send + Sync {
    /// The adapter's name (the section's `type`).
    fn kind(&self) -> &'static str;
    /// Report every problem of the section and of the route settings it reads; `at` is
    /// the route's path (`routes[1]`), the section's is `{at}.source`.
    fn validate(&self, route: &RouteOptions, at: &str, p: &mut Problems);
    /// Whether this source's events carry what `selector` compares.
    fn supports(&self, selector: &Selector) -> bool;
    /// What the console shows the source reads (never credentials).
    fn describe(&self) -> String;
    /// The position of a route before anything is known.
    fn initial_position(&self) -> Box<dyn Position>;
    /// Start reading into the route's bus (see [`Wiring`]).
    fn start(&self, route: &RouteOptions, wiring: Wiring<'_>) -> Arc<dyn Source>;
}

/// What a route's source is started with.
pub struct Wiring<'a> {
    /// The route's bus, which the source's shared reader feeds.
    pub hub: Arc<Hub>,
    /// The route's shared catch-up readers.
    pub catchup: CatchupPool,
    /// Tasks of the process.
    pub tracker: &'a TaskTracker,
    /// Fires when the route stops.
    pub cancel: CancellationToken,
}

/// A running source: what the stream path asks of it.
pub trait Source: Send + Sync {
    /// The position a client's id holds, if the id is one of this source's.
    fn position(&self, id: &RawId) -> Result<Box<dyn Position>, IdError>;
    /// Plan the start of a new client.
    fn plan(&self, start: ClientStart) -> BoxFuture<'_, Result<Plan, SourceError>>;
    /// Re-plan a client that fell out of the ring before it ever caught up, or whose
    /// catch-up from the source ended.
    fn resync(&self, cursor: Cursor) -> Plan;
}

/// An adapter's running reader: what the facade needs to hand it out as a [`Source`]
/// (see [`spawn`]).
pub trait Reader: Send + Sync + 'static {
    /// The adapter's position type.
    type Position: Decode;
    /// Read the backend into the route's bus until `cancel` fires.
    fn run(self: Arc<Self>, cancel: CancellationToken) -> impl Future<Output = ()> + Send;
    /// Plan the start of a new client.
    fn plan(
        self: &Arc<Self>,
        start: ClientStart,
    ) -> impl Future<Output = Result<Plan, SourceError>> + Send;
    /// Re-plan a client (see [`Source::resync`]).
    fn attach(self: &Arc<Self>, cursor: Cursor) -> Plan;
}

/// Run `reader` on `tracker` until `cancel` fires, and hand it out as the route's
/// [`Source`].
pub fn spawn<R: Reader>(
    reader: Arc<R>,
    tracker: &TaskTracker,
    cancel: CancellationToken,
) -> Arc<dyn Source> {
    let runner = reader.clone();
    tracker.spawn(async move { runner.run(cancel).await });
    Arc::new(Running(reader))
}

/// A running reader, as the rest of the crate sees it.
struct Running<R>(Arc<R>);

impl<R: Reader> Source for Running<R> {
    fn position(&self, id: &RawId) -> Result<Box<dyn Position>, IdError> {
        Ok(Box::new(id.parse::<R::Position>()?))
    }

    fn plan(&self, start: ClientStart) -> BoxFuture<'_, Result<Plan, SourceError>> {
        Box::pin(self.0.plan(start))
    }

    fn resync(&self, cursor: Cursor) -> Plan {
        self.0.attach(cursor)
    }
}

/// A route's `source = { type = "...", ... }` table.
pub struct SourceConfig(Box<dyn SourceSpec>);

impl SourceConfig {
    /// The adapter's typed section, when it is a `T`.
    pub fn downcast<T: 'static>(&self) -> Option<&T> {
        self.0.as_any().downcast_ref::<T>()
    }
}

impl std::ops::Deref for SourceConfig {
    type Target = dyn SourceSpec;
    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

impl Clone for SourceConfig {
    fn clone(&self) -> Self {
        SourceConfig(self.0.clone_box())
    }
}

impl fmt::Debug for SourceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for SourceConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SourceConfig, D::Error> {
        use serde::de::Error;
        let mut table = serde_json::Value::deserialize(d)?;
        let kind = match table.as_object_mut().map(|t| t.remove("type")) {
            Some(Some(serde_json::Value::String(k))) => k,
            Some(_) => return Err(D::Error::missing_field("type")),
            None => return Err(D::Error::custom("a source must be a table")),
        };
        let Some(adapter) = ADAPTERS.iter().find(|a| a.name == kind) else {
            let known: Vec<&str> = ADAPTERS.iter().map(|a| a.name).collect();
            return Err(D::Error::custom(format!(
                "unknown source type `{kind}`, expected one of: {}",
                known.join(", ")
            )));
        };
        (adapter.parse)(table)
            .map(SourceConfig)
            .map_err(D::Error::custom)
    }
}

/// Parse an adapter's section into its config type `T` (for [`Adapter::parse`]).
pub fn parse_section<T: SourceSpec + DeserializeOwned + 'static>(
    table: serde_json::Value,
) -> Result<Box<dyn SourceSpec>, String> {
    serde_json::from_value::<T>(table)
        .map(|t| Box::new(t) as Box<dyn SourceSpec>)
        .map_err(|e| e.to_string())
}

/// Where a new client asked to start.
#[derive(Debug, Clone)]
pub enum ClientStart {
    /// No id and no `since`: the route's configured start position.
    Default,
    /// Resume after this position (`Last-Event-ID` or `?lastEventId=`).
    Id(Box<dyn Position>),
    /// Start at this time (ms since the epoch).
    Since(i64),
}

/// Events read from the source for one client before it joins the ring.
pub type CatchupStream = Pin<Box<dyn Stream<Item = Result<Arc<Event>, SourceError>> + Send>>;

/// How a client's stream starts.
pub struct Plan {
    /// The client's position.
    pub cursor: Cursor,
    /// First ring sequence to read after the catch-up.
    pub next_seq: u64,
    /// Events to read from the source first, if the ring does not cover the position.
    pub catchup: Option<CatchupStream>,
    /// Frames to send before anything else (`event: reset`).
    pub preamble: Vec<Bytes>,
    /// How the position was served, when the client asked for one.
    pub outcome: Option<ResumeOutcome>,
}

/// A source failure while planning or reading.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The source is not reachable or not ready.
    #[error("source unavailable: {0}")]
    Unavailable(String),
    /// The id names a position of another kind of source.
    #[error("event id does not belong to this route's source")]
    WrongKind,
    /// The id cannot be a position of this route (it says why).
    #[error("{0}")]
    BadId(String),
    /// Every catch-up reader the client could use is busy.
    #[error("no catch-up reader free")]
    Busy {
        /// Seconds the client is told to wait.
        retry_after_s: u64,
    },
}

/// The start of the source of a route.
pub fn start(source: &SourceConfig, route: &RouteOptions, wiring: Wiring<'_>) -> Arc<dyn Source> {
    source.start(route, wiring)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adapters_have_distinct_names_and_id_kinds() {
        let mut names: Vec<&str> = ADAPTERS.iter().map(|a| a.name).collect();
        let mut kinds: Vec<u8> = ADAPTERS.iter().map(|a| a.id_kind).collect();
        names.sort_unstable();
        names.dedup();
        kinds.sort_unstable();
        kinds.dedup();
        assert_eq!(names.len(), ADAPTERS.len(), "a `type` names one adapter");
        assert_eq!(
            kinds.len(),
            ADAPTERS.len(),
            "an id's kind names one adapter"
        );
        assert!(
            !kinds.contains(&b'x'),
            "`x` is the kind of composite (multiplexed) ids"
        );
    }

    #[test]
    fn unknown_source_types_name_the_known_ones() {
        let e = serde_json::from_value::<SourceConfig>(serde_json::json!({ "type": "pulsar" }))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`pulsar`") && e.contains("kafka") && e.contains("mongodb"),
            "{e}"
        );
        let e = serde_json::from_value::<SourceConfig>(serde_json::json!({ "topics": [] }))
            .unwrap_err()
            .to_string();
        assert!(e.contains("type"), "{e}");
    }
}
