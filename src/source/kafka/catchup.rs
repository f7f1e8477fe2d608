//! Reading the partitions a resuming client is behind on, from Kafka, up to where the
//! ring takes over: the raw read of one shared catch-up reader (see
//! `crate::source::CatchupPool`). One short-lived consumer per reader, assigned only
//! those partitions, its prefetch bounded to the reader's buffer; a partition ends at
//! its range end or at the end of its log.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::{KafkaSource, Stream};
use crate::bus::Event;
use crate::position::{Lane, Step};
use crate::source::MIN_PREFETCH;
use crate::source::{CatchupStream, SourceError};

/// Give up when a catch-up read makes no progress for this long.
const STALL: Duration = Duration::from_secs(15);

struct State {
    src: Arc<KafkaSource>,
    consumer: Option<Stream>,
    /// Topic being read (one consumer per topic, since end-of-partition events name
    /// only the partition).
    topic: u16,
    /// Partition → end offset (exclusive), for `topic`.
    open: HashMap<i32, i64>,
    /// Ranges of the topics not yet read.
    pending: Vec<Vec<(u16, i32, i64, i64)>>,
}

/// Stream the records of `ranges` (`(topic index, partition, from, to)`), in offset order
/// per partition.
pub(super) fn stream(
    src: Arc<KafkaSource>,
    mut ranges: Vec<(u16, i32, i64, i64)>,
) -> CatchupStream {
    ranges.sort_unstable();
    let mut pending: Vec<Vec<(u16, i32, i64, i64)>> = Vec::new();
    for r in ranges {
        match pending.last_mut() {
            Some(g) if g[0].0 == r.0 => g.push(r),
            _ => pending.push(vec![r]),
        }
    }
    pending.reverse();
    let st = State {
        src,
        consumer: None,
        topic: 0,
        open: HashMap::new(),
        pending,
    };
    Box::pin(futures::stream::unfold(st, |mut st| async move {
        match next(&mut st).await {
            Ok(Some(ev)) => Some((Ok(ev), st)),
            Ok(None) => None,
            Err(e) => {
                st.open.clear();
                st.pending.clear();
                Some((Err(e), st))
            }
        }
    }))
}

fn open_consumer(src: &KafkaSource, group: &[(u16, i32, i64, i64)]) -> Result<Stream, KafkaError> {
    // librdkafka prefetches up to 64 MiB per consumer by default: bound it to the
    // reader's buffer (or one fetch response, at least).
    let bytes = src.catchup.config().buffer_bytes;
    let kbytes = (bytes / 1024).clamp(64, 2_097_151);
    let fetch = bytes.clamp(MIN_PREFETCH, 50 * 1024 * 1024);
    let mut cc = src
        .cfg
        .client_config(&format!("sse-bridge-{}-catchup", src.route));
    let c: Stream = cc
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "error")
        .set("queued.max.messages.kbytes", kbytes.to_string())
        .set("queued.min.messages", "1000")
        .set("fetch.max.bytes", fetch.to_string())
        .set(
            "max.partition.fetch.bytes",
            fetch.min(1024 * 1024).to_string(),
        )
        .create_with_context(src.ctx.clone())?;
    let mut tpl = TopicPartitionList::new();
    for &(t, p, from, _) in group {
        tpl.add_partition_offset(&src.cfg.topics[usize::from(t)], p, Offset::Offset(from))?;
    }
    c.assign(&tpl)?;
    Ok(c)
}

async fn next(st: &mut State) -> Result<Option<Arc<Event>>, SourceError> {
    loop {
        if st.open.is_empty() {
            st.consumer = None;
            let Some(group) = st.pending.pop() else {
                return Ok(None);
            };
            st.consumer = Some(open_consumer(&st.src, &group).map_err(super::unavailable)?);
            st.topic = group[0].0;
            st.open = group.iter().map(|&(_, p, _, to)| (p, to)).collect();
        }
        let Some(c) = st.consumer.as_ref() else {
            continue;
        };
        let msg = match tokio::time::timeout(STALL, c.recv()).await {
            Err(_) => return Err(SourceError::Unavailable("catch-up read stalled".into())),
            Ok(Err(KafkaError::PartitionEOF(p))) => {
                st.open.remove(&p);
                continue;
            }
            Ok(Err(e)) => return Err(super::unavailable(e)),
            Ok(Ok(m)) => m,
        };
        if st.src.topic_index(msg.topic()) != Some(st.topic) {
            continue;
        }
        let p = msg.partition();
        let Some(&end) = st.open.get(&p) else {
            continue;
        };
        if msg.offset() >= end {
            st.open.remove(&p);
            continue;
        }
        if msg.offset() + 1 >= end {
            st.open.remove(&p);
        }
        let frame = st.src.encoder.encode(&msg, "");
        return Ok(Some(Arc::new(Event {
            attrs: st.src.encoder.attrs(&msg, &frame),
            frame,
            step: Step::Record {
                lane: Lane {
                    stream: st.topic,
                    partition: p,
                },
                offset: msg.offset(),
            },
            timestamp_ms: msg.timestamp().to_millis(),
        })));
    }
}
