//! Source adapters: the closed set of backends that feed routes. Each adapter owns its
//! config section, its position type and its reader; [`start`] is the one place that
//! turns a route's config into a running source feeding the route's [`Hub`].

pub mod kafka;
pub mod mongo;

use std::sync::Arc;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::RouteConfig;
use crate::hub::Hub;
use crate::metrics::RouteMetrics;

/// A route's `source = { type = "...", ... }` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SourceConfig {
    /// Kafka topics (see [`kafka::KafkaSourceConfig`]).
    Kafka(kafka::KafkaSourceConfig),
    /// A MongoDB change stream (see [`mongo::MongoSourceConfig`]).
    #[serde(rename = "mongodb")]
    Mongo(mongo::MongoSourceConfig),
}

impl SourceConfig {
    /// Short name of the source kind, for logs and the admin API.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceConfig::Kafka(_) => "kafka",
            SourceConfig::Mongo(_) => "mongodb",
        }
    }

    /// The position of a route before anything is known.
    pub fn initial_position(&self) -> crate::hub::Position {
        match self {
            SourceConfig::Kafka(k) => kafka::KafkaSource::initial_position(k),
            SourceConfig::Mongo(_) => mongo::MongoSource::initial_position(),
        }
    }
}

/// A running source: the handle HTTP handlers use to plan client starts.
#[derive(Clone)]
pub enum Source {
    /// A Kafka route.
    Kafka(Arc<kafka::KafkaSource>),
    /// A MongoDB route.
    Mongo(Arc<mongo::MongoSource>),
}

/// Start the source of `route`, feeding `hub`, on `tracker`, until `cancel` fires.
pub fn start(
    route: &RouteConfig,
    hub: Arc<Hub>,
    metrics: RouteMetrics,
    tracker: &TaskTracker,
    cancel: CancellationToken,
) -> Source {
    match &route.source {
        SourceConfig::Kafka(cfg) => {
            let src = kafka::KafkaSource::new(route, cfg.clone(), hub, metrics);
            let runner = src.clone();
            tracker.spawn(async move { runner.run(cancel).await });
            Source::Kafka(src)
        }
        SourceConfig::Mongo(cfg) => {
            let src = mongo::MongoSource::new(route, cfg.clone(), hub, metrics);
            let runner = src.clone();
            tracker.spawn(async move { runner.run(cancel).await });
            Source::Mongo(src)
        }
    }
}

use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;

use crate::event_id::EventId;
use crate::hub::{Cursor, Event};
use crate::metrics::ResumeOutcome;

/// Where a new client asked to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientStart {
    /// No id and no `since`: the route's configured start position.
    Default,
    /// Resume after this id (`Last-Event-ID` or `?lastEventId=`).
    Id(EventId),
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
    /// Kafka said no.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

impl Source {
    /// The route's bus.
    pub fn hub(&self) -> &Arc<Hub> {
        match self {
            Source::Kafka(k) => k.hub(),
            Source::Mongo(m) => m.hub(),
        }
    }

    /// Plan the start of a new client.
    pub async fn plan(&self, start: ClientStart) -> Result<Plan, SourceError> {
        match self {
            Source::Kafka(k) => k.plan(start).await,
            Source::Mongo(m) => m.plan(start).await,
        }
    }

    /// Re-plan a client that fell out of the ring before it ever caught up, or whose
    /// catch-up from the source ended.
    pub fn resync(&self, cursor: Cursor) -> Plan {
        match self {
            Source::Kafka(k) => k.attach(cursor),
            Source::Mongo(m) => m.attach(cursor),
        }
    }
}
