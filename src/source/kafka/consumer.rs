//! The shared consumer of a route: assigns every partition of the route's topics (no
//! group), warms the ring from recent history at start, publishes every record to the
//! hub, refreshes metadata (new partitions, lag, connectivity) and reconnects with
//! backoff when it fails.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{kafka, partition_counts, watermarks, KafkaPosition, KafkaSource, Stream, UNKNOWN};
use crate::bus::Event;
use crate::event_id;
use crate::position::{downcast_mut, Lane, Step};
use crate::source::SourceError;
use crate::sse;

/// Metadata (topics, partition counts) is refreshed this often; watermarks (lag, lost
/// positions) every `WATERMARK_EVERY` refreshes.
const REFRESH: Duration = Duration::from_millis(500);
const WATERMARK_EVERY: u64 = 4;
const WARMUP_CHECK: Duration = Duration::from_millis(100);

pub(super) async fn run(src: Arc<KafkaSource>, cancel: CancellationToken) {
    crate::source::reconnecting(&src.hub, "kafka", &cancel, || run_once(&src, &cancel)).await
}

/// Blocking query on the consumer, off the async threads.
async fn blocking<T: Send + 'static>(
    c: &Arc<Stream>,
    f: impl FnOnce(&Stream) -> Result<T, KafkaError> + Send + 'static,
) -> Result<T, SourceError> {
    let c = c.clone();
    tokio::task::spawn_blocking(move || f(&c))
        .await
        .map_err(|e| SourceError::Unavailable(e.to_string()))?
        .map_err(super::unavailable)
}

struct Partition {
    topic: u16,
    partition: i32,
    /// Log end at start-up; the ring is warm once every partition got there.
    warm_until: i64,
}

async fn run_once(src: &Arc<KafkaSource>, cancel: &CancellationToken) -> Result<(), SourceError> {
    let consumer: Stream = src
        .cfg
        .client_config(&format!("sse-bridge-{}", src.route))
        // Never jump silently: an out-of-range position stops the partition and the
        // metadata refresh turns it into an explicit reset.
        .set("auto.offset.reset", "error")
        .create_with_context(src.ctx.clone())?;
    if let Some(iam) = &src.ctx.iam {
        // The blocking queries below need the login done: wait for the first token,
        // then poll once (nothing is assigned yet, so no message is taken) to serve
        // librdkafka's request for it.
        iam.ready().await?;
        let _ = tokio::time::timeout(Duration::ZERO, consumer.recv()).await;
    }
    let consumer = Arc::new(consumer);
    let topics = src.cfg.topics.clone();
    let counts = blocking(&consumer, move |c| partition_counts(c, &topics)).await?;
    if let Some(i) = counts.iter().position(Option::is_none) {
        return Err(SourceError::Unavailable(format!(
            "topic `{}` does not exist",
            src.cfg.topics[i]
        )));
    }
    let head = kafka(src.hub.head().1);
    let warm = src.warm_events;
    let total: usize = counts.iter().map(|n| n.unwrap_or(0)).sum();
    let per_partition = (warm / total.max(1)) as i64;
    let mut parts = Vec::new();
    let mut tpl = TopicPartitionList::new();
    let mut start = KafkaPosition::for_topics(&src.cfg.topics);
    let mut lows = KafkaPosition::for_topics(&src.cfg.topics);
    for (ti, n) in counts.iter().enumerate() {
        let topic = src.cfg.topics[ti].clone();
        for p in 0..n.unwrap_or(0) as i32 {
            let t = topic.clone();
            let (low, high) = blocking(&consumer, move |c| watermarks(c, &t, p)).await?;
            let known = head.get(ti, p);
            // Continue where the ring is after a reconnect; warm start otherwise.
            let from = if known != UNKNOWN && known >= low && known <= high {
                known
            } else {
                (high - per_partition).max(low)
            };
            start.set(ti, p, from);
            lows.set(ti, p, low);
            tpl.add_partition_offset(&topic, p, Offset::Offset(from))?;
            parts.push(Partition {
                topic: ti as u16,
                partition: p,
                warm_until: high,
            });
        }
    }
    consumer.assign(&tpl)?;
    *src.lows.lock() = Some(lows);
    let fresh = head.topics().iter().all(|(_, o)| o.is_empty());
    if fresh {
        src.hub.set_head(|h| *h = Box::new(start.clone()));
    }
    info!(route = %src.route, partitions = parts.len(), "kafka source assigned");
    src.hub.set_state(|s| {
        s.connected = true;
        s.last_error = None;
    });
    let mut live = src.hub.state().live;
    let mut refresh = tokio::time::interval(REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut warm_check = tokio::time::interval(WARMUP_CHECK);
    // The route's head position: only this task moves it, so it is kept here rather than
    // read back from the hub for every record.
    let mut pos = kafka(src.hub.head().1);
    let mut topics = TopicWatch::default();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = warm_check.tick(), if !live => {
                let c = consumer.clone();
                let fetched = blocking(&c, |c| c.position()).await?;
                live = parts.iter().all(|p| {
                    let topic = &src.cfg.topics[usize::from(p.topic)];
                    p.warm_until <= 0 || fetched.find_partition(topic, p.partition).is_some_and(|e| match e.offset() {
                        Offset::Offset(o) => o >= p.warm_until,
                        _ => false,
                    }) || pos.get(usize::from(p.topic), p.partition) >= p.warm_until
                });
                if live {
                    info!(route = %src.route, "kafka source live");
                    src.hub.set_state(|s| s.live = true);
                }
            }
            _ = refresh.tick() => {
                refresh_metadata(src, &consumer, &mut parts, &mut topics).await?;
                // The refresh may have moved the head (new partitions, resets).
                pos = kafka(src.hub.head().1);
            }
            m = consumer.recv() => match m {
                Ok(msg) => publish(src, &msg, &mut pos),
                Err(KafkaError::PartitionEOF(_)) => {}
                Err(e) => {
                    src.metrics.source_errors.inc();
                    debug!(route = %src.route, error = %e, "kafka consumer error");
                }
            },
        }
    }
}

/// Encode `msg` under the route position after it (`pos`, the head, moves past it) and
/// publish it (preceded by an `event: reset` when the partition's log went backwards).
fn publish(src: &KafkaSource, msg: &BorrowedMessage<'_>, pos: &mut KafkaPosition) {
    let Some(ti) = src.topic_index(msg.topic()) else {
        return;
    };
    src.metrics.source_records.inc();
    let p = msg.partition();
    let offset = msg.offset();
    let expected = pos.get(usize::from(ti), p);
    let mut events = Vec::with_capacity(2);
    if expected != UNKNOWN && offset < expected {
        warn!(route = %src.route, topic = msg.topic(), partition = p, expected, offset, "partition log went backwards (topic recreated?)");
        pos.set(usize::from(ti), p, offset);
        events.push(reset_event(
            src,
            pos,
            ti,
            p,
            "log_went_backwards",
            expected,
            None,
            offset,
        ));
    }
    pos.set(usize::from(ti), p, offset + 1);
    let id = event_id::encode(pos);
    let frame = src.encoder.encode(msg, &id);
    events.push(Event {
        attrs: src.encoder.attrs(msg, &frame),
        frame,
        step: Step::Record {
            lane: Lane {
                stream: ti,
                partition: p,
            },
            offset,
        },
        timestamp_ms: msg.timestamp().to_millis(),
    });
    src.hub.publish(events);
}

/// An `event: reset` for a partition of the route that restarts at `next`; `pos` is the
/// route position after the reset.
#[allow(clippy::too_many_arguments)]
fn reset_event(
    src: &KafkaSource,
    pos: &KafkaPosition,
    ti: u16,
    p: i32,
    reason: &str,
    requested: i64,
    latest: Option<i64>,
    next: i64,
) -> Event {
    let data = json!({
        "reason": reason,
        "route": src.route,
        "partitions": [{
            "topic": src.cfg.topics[usize::from(ti)], "partition": p, "requested": requested,
            "earliest": next, "latest": latest, "resumed_from": next,
        }],
    });
    let id = event_id::encode(pos);
    Event {
        frame: sse::frame(&id, Some("reset"), Some(&data.to_string())),
        step: Step::Restart {
            lane: Lane {
                stream: ti,
                partition: p,
            },
            next,
        },
        timestamp_ms: None,
        attrs: None,
    }
}

/// The assigned partitions of the topic at `topic_idx`.
fn assigned(src: &KafkaSource, parts: &[Partition], topic_idx: usize) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for p in parts.iter().filter(|p| usize::from(p.topic) == topic_idx) {
        tpl.add_partition(&src.cfg.topics[topic_idx], p.partition);
    }
    tpl
}

/// What the refresher remembers between rounds.
#[derive(Default)]
struct TopicWatch {
    /// Topics seen missing since they were last present (deleted, maybe to be recreated).
    gone: std::collections::HashSet<usize>,
    rounds: u64,
}

/// Pick up new partitions and recreated topics, update lag gauges and connectivity.
async fn refresh_metadata(
    src: &Arc<KafkaSource>,
    consumer: &Arc<Stream>,
    parts: &mut Vec<Partition>,
    watch: &mut TopicWatch,
) -> Result<(), SourceError> {
    watch.rounds += 1;
    let topics = src.cfg.topics.clone();
    let counts = match blocking(consumer, move |c| partition_counts(c, &topics)).await {
        Ok(c) => c,
        Err(e) => {
            src.metrics.source_errors.inc();
            src.hub.set_state(|s| {
                s.connected = false;
                s.last_error = Some(e.to_string());
            });
            return Ok(());
        }
    };
    let missing = counts.iter().position(Option::is_none);
    src.hub.set_state(|s| {
        s.connected = missing.is_none();
        s.last_error = missing.map(|i| format!("topic `{}` does not exist", src.cfg.topics[i]));
    });
    let mut reassign = false;
    for (ti, n) in counts.iter().enumerate() {
        let topic = &src.cfg.topics[ti];
        let Some(n) = *n else {
            if watch.gone.insert(ti) {
                warn!(route = %src.route, topic = %topic, "topic disappeared");
                // Stop fetching it: were it created again before the next round, the
                // old positions would read the new log as if it were the old one.
                consumer.pause(&assigned(src, parts, ti))?;
            }
            continue;
        };
        if watch.gone.remove(&ti) {
            // Deleted and created again: a new log. Every known partition restarts at
            // its first offset, announced to clients; then the whole assignment restarts.
            let mut head = kafka(src.hub.head().1);
            for p in parts
                .iter()
                .filter(|p| usize::from(p.topic) == ti && (p.partition as usize) < n)
            {
                let part = p.partition;
                let t = topic.clone();
                let (low, high) = blocking(consumer, move |c| watermarks(c, &t, part)).await?;
                let at = head.get(ti, part);
                head.set(ti, part, low);
                src.hub.publish([reset_event(
                    src,
                    &head,
                    ti as u16,
                    part,
                    "topic_recreated",
                    at,
                    Some(high),
                    low,
                )]);
            }
            parts.retain(|p| usize::from(p.topic) != ti || (p.partition as usize) < n);
            warn!(route = %src.route, topic = %topic, partitions = n, "topic recreated; positions reset");
            reassign = true;
        }
        let known = parts.iter().filter(|p| usize::from(p.topic) == ti).count();
        for p in known as i32..n as i32 {
            let t = topic.clone();
            let (low, _) = blocking(consumer, move |c| watermarks(c, &t, p)).await?;
            parts.push(Partition {
                topic: ti as u16,
                partition: p,
                warm_until: 0,
            });
            src.hub.set_head(|h| {
                if let Some(h) = downcast_mut::<KafkaPosition>(&mut **h) {
                    h.set(ti, p, low);
                }
            });
            info!(route = %src.route, topic = %topic, partition = p, "new partition assigned");
            reassign = true;
        }
    }
    if reassign {
        let head = kafka(src.hub.head().1);
        let mut tpl = TopicPartitionList::new();
        for p in parts.iter() {
            let at = head.get(usize::from(p.topic), p.partition).max(0);
            tpl.add_partition_offset(
                &src.cfg.topics[usize::from(p.topic)],
                p.partition,
                Offset::Offset(at),
            )?;
        }
        consumer.assign(&tpl)?;
        // Partitions paused while their topic was gone fetch again, from the reset.
        consumer.resume(&tpl)?;
    }
    if watch.rounds % WATERMARK_EVERY != 1 {
        return Ok(());
    }
    let mut lows = Some(KafkaPosition::for_topics(&src.cfg.topics));
    for p in parts.iter() {
        let topic = src.cfg.topics[usize::from(p.topic)].clone();
        let (t, part) = (topic.clone(), p.partition);
        let Ok((low, high)) = blocking(consumer, move |c| watermarks(c, &t, part)).await else {
            lows = None;
            continue;
        };
        if let Some(l) = lows.as_mut() {
            l.set(usize::from(p.topic), part, low);
        }
        let mut head = kafka(src.hub.head().1);
        let at = head.get(usize::from(p.topic), p.partition);
        if at != UNKNOWN && (at > high || at < low) {
            // The log moved under us: recreated (position beyond its end) or retention
            // passed the position. Say so to every client, then continue from the start.
            let reason = if at > high {
                "log_recreated"
            } else {
                "log_truncated"
            };
            warn!(route = %src.route, topic = %topic, partition = part, position = at, low, high, reason, "partition position lost; resetting");
            head.set(usize::from(p.topic), part, low);
            src.hub.publish([reset_event(
                src,
                &head,
                p.topic,
                part,
                reason,
                at,
                Some(high),
                low,
            )]);
            let t = topic.clone();
            blocking(consumer, move |c| {
                c.seek(&t, part, Offset::Offset(low), super::QUERY_TIMEOUT)
            })
            .await?;
        }
        let at = if at > high || at < low { low } else { at };
        let lag = if at == UNKNOWN {
            high
        } else {
            (high - at).max(0)
        };
        src.metrics.set_lag(&topic, p.partition, lag);
    }
    // Only a complete round replaces what planning reads.
    if let Some(l) = lows {
        *src.lows.lock() = Some(l);
    }
    Ok(())
}
