//! The Kafka source adapter: one shared consumer per route reads every partition of the
//! route's topics into the route's hub (`consumer`); clients resuming from a position
//! the hub no longer holds read only the partitions that are behind (`catchup`); client
//! starts (ids, `since`, start positions, resets) are planned in `plan`. Every client of
//! the route shares one librdkafka context, which signs in to Amazon MSK with IAM when
//! the route asks (`msk_iam`).

mod catchup;
mod config;
mod consumer;
mod library;
mod msk_iam;
mod plan;
mod position;
mod record;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use tokio_util::sync::CancellationToken;

pub use crate::source::ValueFormat;
pub use config::{KafkaSourceConfig, Properties};
pub use library::{librdkafka, missing_features, REQUIRED_FEATURES};
pub use msk_iam::MskIamConfig;
use msk_iam::{KafkaContext, MskIam};
pub use position::{KafkaPosition, UNKNOWN};
use record::{PayloadMode, RecordEncoder};

use crate::bus::{Cursor, Hub, Selector};
use crate::metrics::RouteMetrics;
use crate::position::Position;
use crate::problems::Problems;
use crate::source::{
    parse_section, spawn, Adapter, CatchupPool, ClientStart, Plan, Reader, RouteOptions,
    SourceError, SourceSpec, StartPosition, Wiring,
};

/// The Kafka adapter (`type = "kafka"`).
pub const ADAPTER: Adapter = Adapter {
    name: "kafka",
    id_kind: position::KIND,
    parse: parse_section::<KafkaSourceConfig>,
};

impl SourceSpec for KafkaSourceConfig {
    fn kind(&self) -> &'static str {
        "kafka"
    }

    fn validate(&self, route: &RouteOptions, at: &str, p: &mut Problems) {
        KafkaSourceConfig::validate(self, &format!("{at}.source"), p);
        crate::source::validate_record_route(
            "kafka",
            route,
            self.value_format,
            record::RESERVED,
            at,
            p,
        );
    }

    fn supports(&self, selector: &Selector) -> bool {
        matches!(
            selector,
            Selector::Key | Selector::Header(_) | Selector::Event
        )
    }

    fn describe(&self) -> String {
        self.topics.join(", ")
    }

    fn initial_position(&self) -> Box<dyn Position> {
        Box::new(KafkaPosition::for_topics(&self.topics))
    }

    fn start(&self, route: &RouteOptions, w: Wiring<'_>) -> Arc<dyn crate::source::Source> {
        let src = KafkaSource::new(route, self.clone(), w.hub, w.catchup);
        spawn(src, w.tracker, w.cancel)
    }
}

impl Reader for KafkaSource {
    type Position = KafkaPosition;

    async fn run(self: Arc<Self>, cancel: CancellationToken) {
        match self.ctx.iam.clone() {
            // The login renews its token beside the reader, for as long as it runs.
            Some(iam) => {
                tokio::join!(iam.keep_fresh(cancel.clone()), consumer::run(self, cancel));
            }
            None => consumer::run(self, cancel).await,
        }
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

impl From<KafkaError> for SourceError {
    fn from(e: KafkaError) -> SourceError {
        unavailable(e)
    }
}

/// A broker failure, as clients are told of it.
fn unavailable(e: KafkaError) -> SourceError {
    SourceError::Unavailable(format!("kafka: {e}"))
}

/// The Kafka position in a box the route's hub handed out (a Kafka route's hub only ever
/// holds Kafka positions), taken out without a copy.
fn kafka(p: Box<dyn Position>) -> KafkaPosition {
    p.into_any()
        .downcast::<KafkaPosition>()
        .map(|k| *k)
        .unwrap_or_default()
}

/// Timeout of metadata, watermark and time-index queries.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// A running Kafka source of one route.
struct KafkaSource {
    route: String,
    cfg: KafkaSourceConfig,
    encoder: RecordEncoder,
    start: StartPosition,
    warm_events: usize,
    hub: Arc<Hub>,
    catchup: CatchupPool,
    metrics: RouteMetrics,
    admin: Mutex<Option<Arc<Admin>>>,
    /// First offsets of every partition (low watermarks) as the shared consumer last
    /// saw them (at most a few seconds old; logs only ever start later).
    lows: Mutex<Option<KafkaPosition>>,
    /// The context of every librdkafka client of the route (its login).
    ctx: KafkaContext,
}

/// The adapter's librdkafka clients: streaming (shared reader, catch-up) and blocking
/// (metadata and offset queries).
type Stream = rdkafka::consumer::StreamConsumer<KafkaContext>;
type Admin = BaseConsumer<KafkaContext>;

impl KafkaSource {
    /// Build the source of `route` (not yet running).
    fn new(
        route: &RouteOptions,
        cfg: KafkaSourceConfig,
        hub: Arc<Hub>,
        catchup: CatchupPool,
    ) -> Arc<KafkaSource> {
        Arc::new(KafkaSource {
            route: route.name.clone(),
            encoder: RecordEncoder::new(
                PayloadMode::of(route.payload.as_deref()),
                route.event_name.clone(),
                route.selectors.clone(),
            )
            .with_value_format(cfg.value_format),
            start: route.start,
            warm_events: if route.replay.warm_start {
                route.replay.max_events
            } else {
                0
            },
            ctx: KafkaContext {
                iam: cfg
                    .aws_msk_iam
                    .as_ref()
                    .map(|c| MskIam::new(&route.name, c, &cfg.brokers, hub.metrics().clone())),
            },
            metrics: hub.metrics().clone(),
            cfg,
            hub,
            catchup,
            admin: Mutex::new(None),
            lows: Mutex::new(None),
        })
    }

    /// A consumer for metadata and offset queries (created once, on first use).
    fn admin(&self) -> Result<Arc<Admin>, KafkaError> {
        let mut slot = self.admin.lock();
        let c = match slot.as_ref() {
            Some(c) => c.clone(),
            None => {
                let c: Admin = self
                    .cfg
                    .client_config(&format!("sse-bridge-{}-admin", self.route))
                    .create_with_context(self.ctx.clone())?;
                let c = Arc::new(c);
                *slot = Some(c.clone());
                c
            }
        };
        if self.ctx.iam.is_some() {
            // Nothing else polls this consumer: serve librdkafka's token requests here
            // (it is never assigned a partition, so no message is taken).
            let _ = c.poll(Duration::ZERO);
        }
        Ok(c)
    }

    fn topic_index(&self, topic: &str) -> Option<u16> {
        self.cfg
            .topics
            .iter()
            .position(|t| t == topic)
            .and_then(|i| u16::try_from(i).ok())
    }
}

/// `(low, high)` watermarks of a partition, by a blocking query.
fn watermarks<C: Consumer<KafkaContext>>(
    c: &C,
    topic: &str,
    partition: i32,
) -> Result<(i64, i64), KafkaError> {
    c.fetch_watermarks(topic, partition, QUERY_TIMEOUT)
}

/// Partition count of each topic (`None` where the topic does not exist).
fn partition_counts<C: Consumer<KafkaContext>>(
    c: &C,
    topics: &[String],
) -> Result<Vec<Option<usize>>, KafkaError> {
    let mut out = Vec::with_capacity(topics.len());
    for t in topics {
        let md = c.fetch_metadata(Some(t), QUERY_TIMEOUT)?;
        let n = md
            .topics()
            .iter()
            .find(|mt| mt.name() == t)
            .filter(|mt| mt.error().is_none() && !mt.partitions().is_empty())
            .map(|mt| mt.partitions().len());
        out.push(n);
    }
    Ok(out)
}
