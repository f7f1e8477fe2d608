//! The Kafka source adapter: one shared consumer per route reads every partition of the
//! route's topics into the route's hub ([`consumer`]); clients resuming from a position
//! the hub no longer holds read only the partitions that are behind ([`catchup`]); client
//! starts (ids, `since`, start positions, resets) are planned in [`plan`].

mod catchup;
mod config;
mod consumer;
mod cursor;
mod plan;
mod position;
mod record;

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use tokio_util::sync::CancellationToken;

pub use config::{KafkaSourceConfig, Properties};
pub use cursor::KafkaCursor;
pub use position::{KafkaPosition, UNKNOWN};
pub use record::RecordEncoder;

use crate::config::{RouteConfig, StartPosition};
use crate::hub::{Hub, Position};
use crate::metrics::RouteMetrics;

/// Timeout of metadata, watermark and time-index queries.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// A running Kafka source of one route.
pub struct KafkaSource {
    route: String,
    cfg: KafkaSourceConfig,
    encoder: RecordEncoder,
    start: StartPosition,
    warm_events: usize,
    hub: Arc<Hub>,
    metrics: RouteMetrics,
    admin: Mutex<Option<Arc<BaseConsumer>>>,
}

impl KafkaSource {
    /// Build the source of `route` (not yet running).
    pub fn new(
        route: &RouteConfig,
        cfg: KafkaSourceConfig,
        hub: Arc<Hub>,
        metrics: RouteMetrics,
    ) -> Arc<KafkaSource> {
        Arc::new(KafkaSource {
            route: route.name.clone(),
            encoder: RecordEncoder::new(
                route.payload_mode(),
                route.event_name.clone(),
                route.selectors(),
            ),
            start: route.start,
            warm_events: if route.replay.warm_start {
                route.replay.max_events
            } else {
                0
            },
            cfg,
            hub,
            metrics,
            admin: Mutex::new(None),
        })
    }

    /// The initial (empty) position of a route over `topics`.
    pub fn initial_position(cfg: &KafkaSourceConfig) -> Position {
        Position::Kafka(KafkaPosition::for_topics(&cfg.topics))
    }

    /// The route's hub.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Run the shared consumer until `cancel` fires, reconnecting with backoff.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        consumer::run(self, cancel).await
    }

    /// A consumer for metadata and offset queries (created once, on first use).
    fn admin(&self) -> Result<Arc<BaseConsumer>, KafkaError> {
        let mut slot = self.admin.lock();
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c: BaseConsumer = self
            .cfg
            .client_config(&format!("sse-bridge-{}-admin", self.route))
            .create()?;
        let c = Arc::new(c);
        *slot = Some(c.clone());
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
fn watermarks<C: Consumer>(c: &C, topic: &str, partition: i32) -> Result<(i64, i64), KafkaError> {
    c.fetch_watermarks(topic, partition, QUERY_TIMEOUT)
}

/// Partition count of each topic (`None` where the topic does not exist).
fn partition_counts<C: Consumer>(
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
