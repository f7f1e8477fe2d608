//! Planning a client's start: from its id, `since`, or the route's start position, to a
//! cursor, the partitions to read from Kafka first, and any `event: reset`.

use std::sync::Arc;

use bytes::Bytes;
use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;

use super::{
    catchup, partition_counts, watermarks, KafkaCursor, KafkaPosition, KafkaSource, QUERY_TIMEOUT,
    UNKNOWN,
};
use crate::config::StartPosition;
use crate::event_id::EventId;
use crate::http::sse;
use crate::hub::Cursor;
use crate::metrics::ResumeOutcome;
use crate::source::{ClientStart, Plan, SourceError};

/// A partition whose asked-for position could not be served.
#[derive(Debug, Clone, serde::Serialize)]
struct Unservable {
    topic: String,
    partition: i32,
    requested: i64,
    earliest: Option<i64>,
    latest: Option<i64>,
    resumed_from: Option<i64>,
    reason: &'static str,
}

impl KafkaSource {
    /// Plan the start of a new client.
    pub(crate) async fn plan(self: &Arc<Self>, start: ClientStart) -> Result<Plan, SourceError> {
        match start {
            ClientStart::Default if self.start == StartPosition::Latest => {
                let (seq, head) = self.hub.head();
                let pos = head.into_kafka();
                Ok(Plan {
                    cursor: Cursor::Kafka(KafkaCursor::new(pos, true)),
                    next_seq: seq,
                    catchup: None,
                    preamble: Vec::new(),
                    outcome: None,
                })
            }
            ClientStart::Default => {
                let n = match self.start {
                    StartPosition::Last(n) => Some(n as i64),
                    _ => None,
                };
                let pos = self
                    .query(move |src, c| src.position_at_watermarks(c, n))
                    .await?;
                Ok(Plan {
                    outcome: None,
                    ..self.attach(Cursor::Kafka(KafkaCursor::new(pos, false)))
                })
            }
            ClientStart::Since(ms) => {
                let pos = self
                    .query(move |src, c| src.position_at_time(c, ms))
                    .await?;
                Ok(Plan {
                    outcome: None,
                    ..self.attach(Cursor::Kafka(KafkaCursor::new(pos, false)))
                })
            }
            ClientStart::Id(EventId::Mongo(_)) => Err(SourceError::WrongKind),
            ClientStart::Id(EventId::Kafka(asked)) => {
                let asked = asked.align(&self.cfg.topics);
                let (pos, bad) = if self.in_window(&asked) {
                    (asked, Vec::new())
                } else {
                    self.query(move |src, c| src.validate(c, asked)).await?
                };
                let mut plan = self.attach(Cursor::Kafka(KafkaCursor::new(pos, false)));
                if !bad.is_empty() {
                    plan.preamble.push(self.reset_frame(&plan.cursor, &bad));
                    plan.outcome = Some(ResumeOutcome::Reset);
                }
                Ok(plan)
            }
        }
    }

    /// Attach a cursor to the ring: partitions below the ring's base are read from Kafka
    /// first (only those), then the ring from its oldest event.
    pub(crate) fn attach(self: &Arc<Self>, mut cursor: Cursor) -> Plan {
        let (first_seq, base, head_seq, head) = self.hub.window();
        let (base, head) = (base.into_kafka(), head.into_kafka());
        let Cursor::Kafka(c) = &mut cursor else {
            return Plan {
                cursor,
                next_seq: head_seq,
                catchup: None,
                preamble: Vec::new(),
                outcome: None,
            };
        };
        let (base, head) = (&base, &head);
        if c.position == *head {
            c.synced = true;
            return Plan {
                cursor,
                next_seq: head_seq,
                catchup: None,
                preamble: Vec::new(),
                outcome: Some(ResumeOutcome::Buffer),
            };
        }
        let mut ranges = Vec::new();
        for (ti, (_, offsets)) in base.topics().iter().enumerate() {
            for (p, &b) in offsets.iter().enumerate() {
                let p = p as i32;
                let from = c.position.get(ti, p);
                if from != UNKNOWN && b != UNKNOWN && from < b {
                    ranges.push((ti as u16, p, from, b));
                }
            }
        }
        let (catchup, outcome) = if ranges.is_empty() {
            (None, ResumeOutcome::Buffer)
        } else {
            (
                Some(catchup::stream(self.clone(), ranges)),
                ResumeOutcome::Source,
            )
        };
        Plan {
            cursor,
            next_seq: first_seq,
            catchup,
            preamble: Vec::new(),
            outcome: Some(outcome),
        }
    }

    /// True when the ring covers `asked` on every partition (no query needed).
    fn in_window(&self, asked: &KafkaPosition) -> bool {
        let (_, base, _, head) = self.hub.window();
        let (base, head) = (&base.into_kafka(), &head.into_kafka());
        if asked
            .topics()
            .iter()
            .enumerate()
            .any(|(ti, (_, o))| o.len() > head.partitions(ti))
        {
            return false;
        }
        head.topics().iter().enumerate().all(|(ti, (_, offsets))| {
            offsets.iter().enumerate().all(|(p, &h)| {
                let a = asked.get(ti, p as i32);
                let b = base.get(ti, p as i32);
                a != UNKNOWN && b != UNKNOWN && b <= a && a <= h
            })
        })
    }

    async fn query<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&KafkaSource, &rdkafka::consumer::BaseConsumer) -> Result<T, SourceError>
            + Send
            + 'static,
    ) -> Result<T, SourceError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let c = me.admin()?;
            f(&me, &c)
        })
        .await
        .map_err(|e| SourceError::Unavailable(e.to_string()))?
    }

    /// Low watermarks (or `high - n`, bounded by low) of every partition.
    fn position_at_watermarks<C: Consumer>(
        &self,
        c: &C,
        last: Option<i64>,
    ) -> Result<KafkaPosition, SourceError> {
        let counts = partition_counts(c, &self.cfg.topics)?;
        let mut pos = KafkaPosition::for_topics(&self.cfg.topics);
        for (ti, (t, n)) in self.cfg.topics.iter().zip(counts).enumerate() {
            for p in 0..n.unwrap_or(0) as i32 {
                let (low, high) = watermarks(c, t, p)?;
                pos.set(ti, p, last.map_or(low, |n| (high - n).max(low)));
            }
        }
        Ok(pos)
    }

    /// First offset at or after `ms` of every partition (`offsets_for_times`).
    fn position_at_time<C: Consumer>(&self, c: &C, ms: i64) -> Result<KafkaPosition, SourceError> {
        let counts = partition_counts(c, &self.cfg.topics)?;
        let mut tpl = TopicPartitionList::new();
        for (t, n) in self.cfg.topics.iter().zip(&counts) {
            for p in 0..n.unwrap_or(0) as i32 {
                tpl.add_partition_offset(t, p, Offset::Offset(ms))?;
            }
        }
        let found = c.offsets_for_times(tpl, QUERY_TIMEOUT)?;
        let mut pos = KafkaPosition::for_topics(&self.cfg.topics);
        for e in found.elements() {
            let Some(ti) = self.topic_index(e.topic()) else {
                continue;
            };
            let next = match e.offset() {
                Offset::Offset(o) => o,
                _ => watermarks(c, e.topic(), e.partition())?.1,
            };
            pos.set(usize::from(ti), e.partition(), next);
        }
        Ok(pos)
    }

    /// Check an id against the log: partitions gone, or offsets outside the retained
    /// range, are reset to the earliest retained offset; partitions the id predates start
    /// at their earliest offset.
    fn validate<C: Consumer>(
        &self,
        c: &C,
        asked: KafkaPosition,
    ) -> Result<(KafkaPosition, Vec<Unservable>), SourceError> {
        let counts = partition_counts(c, &self.cfg.topics)?;
        let mut pos = KafkaPosition::for_topics(&self.cfg.topics);
        let mut bad = Vec::new();
        for (ti, ((t, offsets), n)) in asked.topics().iter().zip(counts).enumerate() {
            let n = n.unwrap_or(0);
            for (p, &a) in offsets.iter().enumerate().skip(n) {
                if a != UNKNOWN {
                    bad.push(Unservable {
                        topic: t.clone(),
                        partition: p as i32,
                        requested: a,
                        earliest: None,
                        latest: None,
                        resumed_from: None,
                        reason: "partition_missing",
                    });
                }
            }
            for p in 0..n as i32 {
                let (low, high) = watermarks(c, t, p)?;
                let a = asked.get(ti, p);
                let next = if a == UNKNOWN {
                    low
                } else if a < low || a > high {
                    let reason = if a < low {
                        "offset_below_log_start"
                    } else {
                        "offset_beyond_log_end"
                    };
                    bad.push(Unservable {
                        topic: t.clone(),
                        partition: p,
                        requested: a,
                        earliest: Some(low),
                        latest: Some(high),
                        resumed_from: Some(low),
                        reason,
                    });
                    low
                } else {
                    a
                };
                pos.set(ti, p, next);
            }
        }
        Ok((pos, bad))
    }

    fn reset_frame(&self, cursor: &Cursor, bad: &[Unservable]) -> Bytes {
        let data = json!({
            "reason": "position_unavailable",
            "route": self.route,
            "partitions": bad,
        });
        sse::frame(&cursor.encode(), Some("reset"), Some(&data.to_string())).bytes
    }
}
