//! Planning a client's start: from its id, `since`, or the route's start position, to a
//! cursor, the partitions to read from Kafka first, and any `event: reset`.

use std::sync::Arc;

use bytes::Bytes;
use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;

use super::{
    catchup, kafka, partition_counts, watermarks, KafkaContext, KafkaPosition, KafkaSource,
    QUERY_TIMEOUT, UNKNOWN,
};
use crate::bus::Cursor;
use crate::metrics::ResumeOutcome;
use crate::position::Step;
use crate::source::{CatchupRead, ClientStart, Plan, SourceError, StartPosition};
use crate::sse;

/// One view of the ring: its oldest and newest sequences and positions.
struct Window {
    first_seq: u64,
    base: KafkaPosition,
    head_seq: u64,
    head: KafkaPosition,
}

/// The partitions a client must read from Kafka before the ring serves it.
struct Behind {
    /// Where a reader of `ranges` starts: the ring's base, with each partition read
    /// moved back to where its range starts (a client at or after it on every
    /// partition can share the reader).
    base: KafkaPosition,
    /// Where it ends: the ring's base.
    end: KafkaPosition,
    /// `(topic index, partition, from, to)`.
    ranges: Vec<(u16, i32, i64, i64)>,
}

impl Behind {
    fn new(end: KafkaPosition, ranges: Vec<(u16, i32, i64, i64)>) -> Behind {
        let mut base = end.clone();
        for &(t, p, from, _) in &ranges {
            base.set(usize::from(t), p, from);
        }
        Behind { base, end, ranges }
    }

    /// The read of a shared catch-up reader.
    fn open(self, src: Arc<KafkaSource>) -> CatchupRead {
        CatchupRead {
            base: Box::new(self.base),
            end: Some(Box::new(self.end)),
            raw: catchup::stream(src, self.ranges),
        }
    }
}

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
    pub(super) async fn plan_client(
        self: &Arc<Self>,
        start: ClientStart,
    ) -> Result<Plan, SourceError> {
        match start {
            ClientStart::Default if self.start == StartPosition::Latest => {
                let (seq, head) = self.hub.head();
                Ok(Plan {
                    cursor: Cursor::new(head, true),
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
                if let Some(plan) =
                    self.from_memory(|lows, w| start_in_memory(lows, &w.base, &w.head, n))
                {
                    return Ok(plan);
                }
                // The start is behind the ring: still no broker query when the log
                // starts are known (a start that retention passed meanwhile fails the
                // catch-up read, and the client reconnects).
                let head = kafka(self.hub.head().1);
                let tracked = self.with_lows(|l| start_at(l, &head, n));
                let pos = match tracked {
                    Some(pos) => pos,
                    None => {
                        self.query(move |src, c| src.position_at_watermarks(c, n))
                            .await?
                    }
                };
                let plan = self.attach_now(Cursor::new(Box::new(pos), false)).await?;
                Ok(Plan {
                    outcome: None,
                    ..plan
                })
            }
            ClientStart::Since(ms) => {
                let hub = self.hub.clone();
                if let Some(plan) = self.from_memory(|lows, w| {
                    hub.inspect(|ring| {
                        let events = ring.events().map(|e| (&e.step, e.timestamp_ms));
                        since_in_memory(ms, lows, &w.base, &w.head, events)
                    })
                }) {
                    return Ok(plan);
                }
                let pos = self
                    .query(move |src, c| src.position_at_time(c, ms))
                    .await?;
                let plan = self.attach_now(Cursor::new(Box::new(pos), false)).await?;
                Ok(Plan {
                    outcome: None,
                    ..plan
                })
            }
            ClientStart::Id(asked) => {
                let asked = KafkaPosition::of(&*asked)
                    .ok_or(SourceError::WrongKind)?
                    .align(&self.cfg.topics);
                // Decided and attached on one view of the ring, so nothing moves between.
                let window = self.window();
                if let Some((topic, n)) = too_many_missing(&asked, &window.head) {
                    return Err(SourceError::BadId(format!(
                        "the id names {n} partitions topic `{topic}` does not have"
                    )));
                }
                if covers(&asked, &window.base, &window.head) {
                    return Ok(self
                        .attach_in(Cursor::new(Box::new(asked), false), window)
                        .0);
                }
                let known = self.with_lows(|l| valid_in_memory(&asked, l, &window.head));
                let (pos, bad) = match known {
                    Some(pos) => (pos, Vec::new()),
                    None => self.query(move |src, c| src.validate(c, asked)).await?,
                };
                let mut plan = self.attach_now(Cursor::new(Box::new(pos), false)).await?;
                if !bad.is_empty() {
                    plan.preamble.push(self.reset_frame(&plan.cursor, bad));
                    plan.outcome = Some(ResumeOutcome::Reset);
                }
                Ok(plan)
            }
        }
    }

    /// `f` of the log starts the shared consumer last saw, once it has seen them.
    fn with_lows<T>(&self, f: impl FnOnce(&KafkaPosition) -> Option<T>) -> Option<T> {
        self.lows.lock().as_ref().and_then(f)
    }

    /// A plan for a start the ring covers, found by `find` from the log starts the
    /// shared consumer tracks and the ring's window, without asking the broker.
    fn from_memory(
        self: &Arc<Self>,
        find: impl FnOnce(&KafkaPosition, &Window) -> Option<KafkaPosition>,
    ) -> Option<Plan> {
        let window = self.window();
        let pos = self.with_lows(|l| find(l, &window))?;
        let (plan, behind) = self.attach_in(Cursor::new(Box::new(pos), false), window);
        behind.is_none().then_some(Plan {
            outcome: None,
            ..plan
        })
    }

    /// Attach a cursor to the ring: partitions below the ring's base are read from Kafka
    /// first (only those, by a shared catch-up reader joined on first read), then the
    /// ring from its oldest event.
    pub(super) fn attach_cursor(self: &Arc<Self>, cursor: Cursor) -> Plan {
        let (mut plan, behind) = self.attach_in(cursor, self.window());
        if let Some(b) = behind {
            let src = self.clone();
            let at = plan.cursor.position.clone();
            plan.catchup = Some(self.catchup.lazy(at, move || b.open(src)));
        }
        plan
    }

    /// [`KafkaSource::attach_cursor`], waiting for a catch-up reader now (refused with
    /// [`SourceError::Busy`] when none frees up in time).
    async fn attach_now(self: &Arc<Self>, cursor: Cursor) -> Result<Plan, SourceError> {
        let (mut plan, behind) = self.attach_in(cursor, self.window());
        if let Some(b) = behind {
            let src = self.clone();
            let joined = self
                .catchup
                .join(&*plan.cursor.position, move || b.open(src))
                .await?;
            plan.catchup = Some(joined);
        }
        Ok(plan)
    }

    /// The ring's window, in Kafka positions.
    fn window(&self) -> Window {
        let (first_seq, base, head_seq, head) = self.hub.window();
        Window {
            first_seq,
            base: kafka(base),
            head_seq,
            head: kafka(head),
        }
    }

    /// The plan of `cursor` on a given view of the ring, and what it must read from
    /// Kafka first.
    fn attach_in(self: &Arc<Self>, mut cursor: Cursor, window: Window) -> (Plan, Option<Behind>) {
        let Window {
            first_seq,
            base,
            head_seq,
            head,
        } = window;
        let plan = |cursor, next_seq, outcome| Plan {
            cursor,
            next_seq,
            catchup: None,
            preamble: Vec::new(),
            outcome,
        };
        let Some(position) = KafkaPosition::of(&*cursor.position) else {
            return (plan(cursor, head_seq, None), None);
        };
        if *position == head {
            cursor.joined = true;
            return (plan(cursor, head_seq, Some(ResumeOutcome::Buffer)), None);
        }
        let ranges = catchup_ranges(position, &base);
        if ranges.is_empty() {
            return (plan(cursor, first_seq, Some(ResumeOutcome::Buffer)), None);
        }
        let behind = Behind::new(base, ranges);
        (
            plan(cursor, first_seq, Some(ResumeOutcome::Source)),
            Some(behind),
        )
    }

    async fn query<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&KafkaSource, &super::Admin) -> Result<T, SourceError> + Send + 'static,
    ) -> Result<T, SourceError> {
        // A bounded number at once per route: a crowd of clients the broker must plan
        // waits there (no thread each).
        let permit = self.catchup.query_turn().await?;
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let c = me.admin()?;
            f(&me, &c)
        })
        .await
        .map_err(|e| SourceError::Unavailable(e.to_string()))?
    }

    /// Low watermarks (or `high - n`, bounded by low) of every partition.
    fn position_at_watermarks<C: Consumer<KafkaContext>>(
        &self,
        c: &C,
        last: Option<i64>,
    ) -> Result<KafkaPosition, SourceError> {
        let counts = partition_counts(c, &self.cfg.topics)?;
        Ok(at_watermarks(&self.cfg.topics, &counts, last, |t, p| {
            watermarks(c, t, p)
        })?)
    }

    /// First offset at or after `ms` of every partition (`offsets_for_times`).
    fn position_at_time<C: Consumer<KafkaContext>>(
        &self,
        c: &C,
        ms: i64,
    ) -> Result<KafkaPosition, SourceError> {
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
    fn validate<C: Consumer<KafkaContext>>(
        &self,
        c: &C,
        asked: KafkaPosition,
    ) -> Result<(KafkaPosition, Vec<Unservable>), SourceError> {
        let counts = partition_counts(c, &self.cfg.topics)?;
        Ok(check(&asked, &self.cfg.topics, &counts, |t, p| {
            watermarks(c, t, p)
        })?)
    }

    fn reset_frame(&self, cursor: &Cursor, bad: Vec<Unservable>) -> Bytes {
        let data = reset_body(&self.route, bad);
        sse::frame(&cursor.encode(), Some("reset"), Some(&data.to_string())).bytes
    }
}

/// Most entries a connect-time `event: reset` lists; the rest are counted in `omitted`.
const MAX_LISTED: usize = 16;

/// The JSON of a connect-time reset, bounded whatever the id asked for: a run of
/// consecutive missing partitions of a topic is one entry (`partition` to `through`),
/// and at most [`MAX_LISTED`] entries are listed (`omitted`: partitions left out).
fn reset_body(route: &str, bad: Vec<Unservable>) -> serde_json::Value {
    let mut entries: Vec<serde_json::Value> = Vec::new();
    let mut omitted = 0usize;
    let mut run: Option<(Unservable, i32)> = None;
    let mut push = |e: serde_json::Value, size: usize, entries: &mut Vec<_>| {
        if entries.len() < MAX_LISTED {
            entries.push(e);
        } else {
            omitted += size;
        }
    };
    let flush = |run: (Unservable, i32)| -> (serde_json::Value, usize) {
        let (first, last) = run;
        if last == first.partition {
            return (json!(first), 1);
        }
        let size = (last - first.partition) as usize + 1;
        let mut e = json!(first);
        e["through"] = json!(last);
        e["requested"] = serde_json::Value::Null;
        (e, size)
    };
    for u in bad {
        if u.reason == "partition_missing" {
            match &mut run {
                Some((first, last)) if first.topic == u.topic && *last + 1 == u.partition => {
                    *last = u.partition;
                    continue;
                }
                _ => {}
            }
            if let Some(r) = run.take() {
                let (e, n) = flush(r);
                push(e, n, &mut entries);
            }
            let p = u.partition;
            run = Some((u, p));
            continue;
        }
        if let Some(r) = run.take() {
            let (e, n) = flush(r);
            push(e, n, &mut entries);
        }
        push(json!(u), 1, &mut entries);
    }
    if let Some(r) = run.take() {
        let (e, n) = flush(r);
        push(e, n, &mut entries);
    }
    let mut body = json!({
        "reason": "position_unavailable",
        "route": route,
        "partitions": entries,
    });
    if omitted > 0 {
        body["omitted"] = json!(omitted);
    }
    body
}

/// The decision of [`KafkaSource::validate`], given each topic's partition count (`None`
/// where the topic does not exist) and a watermark query: partitions the id has but the
/// topic no longer has are `partition_missing`; offsets below the low or above the high
/// watermark resume from the low one; partitions the id predates start at the low one.
fn check<E>(
    asked: &KafkaPosition,
    topics: &[String],
    counts: &[Option<usize>],
    watermarks: impl Fn(&str, i32) -> Result<(i64, i64), E>,
) -> Result<(KafkaPosition, Vec<Unservable>), E> {
    let mut pos = KafkaPosition::for_topics(topics);
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
            let (low, high) = watermarks(t, p)?;
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

/// The start of every partition at the watermarks: the low one, or with `last = n` the
/// `n`th-last offset bounded by the low one (see [`start_offset`]).
fn at_watermarks<E>(
    topics: &[String],
    counts: &[Option<usize>],
    last: Option<i64>,
    watermarks: impl Fn(&str, i32) -> Result<(i64, i64), E>,
) -> Result<KafkaPosition, E> {
    let mut pos = KafkaPosition::for_topics(topics);
    for (ti, (t, n)) in topics.iter().zip(counts).enumerate() {
        for p in 0..n.unwrap_or(0) as i32 {
            let (low, high) = watermarks(t, p)?;
            pos.set(ti, p, start_offset(low, high, last));
        }
    }
    Ok(pos)
}

/// Where a partition with watermarks `low..high` starts: `low`, or `high - n` (but not
/// below `low`) with `last = n`.
fn start_offset(low: i64, high: i64, last: Option<i64>) -> i64 {
    last.map_or(low, |n| (high - n).max(low))
}

/// The start of `earliest` (`last = None`) or `{ last = N }` from the tracked log starts
/// and the ring's head, wherever the ring begins (`None` when a start is not known).
fn start_at(
    lows: &KafkaPosition,
    head: &KafkaPosition,
    last: Option<i64>,
) -> Option<KafkaPosition> {
    let mut pos = head.clone();
    for (ti, (_, offsets)) in head.topics().iter().enumerate() {
        if lows.partitions(ti) != offsets.len() {
            return None;
        }
        for (p, &h) in offsets.iter().enumerate() {
            let p = p as i32;
            let low = lows.get(ti, p);
            if h == UNKNOWN || low == UNKNOWN {
                return None;
            }
            pos.set(ti, p, start_offset(low, h, last).min(h));
        }
    }
    Some(pos)
}

/// The start of `earliest` (`last = None`) or `{ last = N }` from memory: per partition,
/// [`start_offset`] of its log start (`lows`) and the ring's head, when the ring holds
/// everything from there (its base at or before it on every partition).
fn start_in_memory(
    lows: &KafkaPosition,
    base: &KafkaPosition,
    head: &KafkaPosition,
    last: Option<i64>,
) -> Option<KafkaPosition> {
    let pos = start_at(lows, head, last)?;
    let held = head.topics().iter().enumerate().all(|(ti, (_, offsets))| {
        (0..offsets.len() as i32).all(|p| {
            let b = base.get(ti, p);
            b != UNKNOWN && b <= pos.get(ti, p)
        })
    });
    held.then_some(pos)
}

/// Most partitions an id may name that its topic does not have (topics only lose
/// partitions when deleted and created again with fewer): beyond it the id is refused
/// (400) instead of costing a broker query and a reset listing them.
const MAX_MISSING: usize = 256;

/// The first topic of which `asked` names more than [`MAX_MISSING`] partitions the route's
/// head does not know, and how many.
fn too_many_missing<'a>(
    asked: &'a KafkaPosition,
    head: &KafkaPosition,
) -> Option<(&'a str, usize)> {
    asked.topics().iter().enumerate().find_map(|(ti, (t, o))| {
        let n = o
            .iter()
            .skip(head.partitions(ti))
            .filter(|&&a| a != UNKNOWN)
            .count();
        (n > MAX_MISSING).then_some((t.as_str(), n))
    })
}

/// `asked`, when memory alone shows every partition of it servable: each known offset
/// between its partition's log start (as last seen) and the ring's head, no partition
/// the route does not know. Anything else (a reset, an offset past this replica's head,
/// partitions it has not seen) is for the broker to decide.
fn valid_in_memory(
    asked: &KafkaPosition,
    lows: &KafkaPosition,
    head: &KafkaPosition,
) -> Option<KafkaPosition> {
    let mut pos = head.clone();
    for (ti, (_, offsets)) in head.topics().iter().enumerate() {
        if offsets.is_empty() || lows.partitions(ti) != offsets.len() {
            return None;
        }
        for (p, &h) in offsets.iter().enumerate() {
            let p = p as i32;
            let (a, low) = (asked.get(ti, p), lows.get(ti, p));
            if low == UNKNOWN || h == UNKNOWN {
                return None;
            }
            let next = if a == UNKNOWN { low } else { a };
            if next < low || next > h {
                return None;
            }
            pos.set(ti, p, next);
        }
    }
    let unknown_beyond = asked
        .topics()
        .iter()
        .enumerate()
        .any(|(ti, (_, o))| o.iter().skip(head.partitions(ti)).any(|&a| a != UNKNOWN));
    (!unknown_beyond).then_some(pos)
}

/// The start of `?since=ms` from memory: per partition, the first record in the ring
/// stamped at or after `ms` (else the head). Only when the ring reaches back before
/// `ms` (its oldest event is older) or holds every partition's whole log; a ring holding
/// a reset is left to the broker.
fn since_in_memory<'a>(
    ms: i64,
    lows: &KafkaPosition,
    base: &KafkaPosition,
    head: &KafkaPosition,
    events: impl Iterator<Item = (&'a Step, Option<i64>)>,
) -> Option<KafkaPosition> {
    let whole_log = start_in_memory(lows, base, head, None).is_some();
    let mut pos = head.clone();
    let mut found = std::collections::HashSet::new();
    let mut first = true;
    for (step, ts) in events {
        let Step::Record { lane, offset } = *step else {
            return None;
        };
        if first && !whole_log && ts.is_none_or(|t| t >= ms) {
            return None;
        }
        first = false;
        let key = (lane.stream, lane.partition);
        if ts.is_some_and(|t| t >= ms) && found.insert(key) {
            pos.set(usize::from(lane.stream), lane.partition, offset);
        }
    }
    if first && !whole_log {
        return None;
    }
    Some(pos)
}

/// True when the ring between `base` and `head` covers `asked` on every partition: the
/// id knows no partition the head does not, and every partition of the head has a known
/// offset in `base..=head`.
fn covers(asked: &KafkaPosition, base: &KafkaPosition, head: &KafkaPosition) -> bool {
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

/// The partitions a cursor at `position` must read from Kafka before the ring whose base
/// is `base`: `(topic index, partition, from, to)` for every partition known to both and
/// behind the base.
fn catchup_ranges(position: &KafkaPosition, base: &KafkaPosition) -> Vec<(u16, i32, i64, i64)> {
    let mut ranges = Vec::new();
    for (ti, (_, offsets)) in base.topics().iter().enumerate() {
        for (p, &b) in offsets.iter().enumerate() {
            let p = p as i32;
            let from = position.get(ti, p);
            if from != UNKNOWN && b != UNKNOWN && from < b {
                ranges.push((ti as u16, p, from, b));
            }
        }
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn pos(topics: &[(&str, &[i64])]) -> KafkaPosition {
        KafkaPosition::from_topics(
            topics
                .iter()
                .map(|(t, o)| (t.to_string(), o.to_vec()))
                .collect(),
        )
    }

    fn names(topics: &[&str]) -> Vec<String> {
        topics.iter().map(|t| t.to_string()).collect()
    }

    /// A watermark query answering from `table`; any other partition is an error (so a
    /// test also pins which partitions are queried).
    fn wm<'a>(
        table: &'a [(&'a str, i32, (i64, i64))],
    ) -> impl Fn(&str, i32) -> Result<(i64, i64), String> + 'a {
        move |t: &str, p: i32| {
            table
                .iter()
                .find(|(tt, pp, _)| *tt == t && *pp == p)
                .map(|(_, _, w)| *w)
                .ok_or(format!("unexpected watermark query {t}/{p}"))
        }
    }

    /// The reset event's `partitions` array, as clients receive it.
    fn json(bad: &[Unservable]) -> Value {
        serde_json::to_value(bad).unwrap()
    }

    #[test]
    fn check_offset_below_log_start_resumes_from_low() {
        let asked = pos(&[("orders", &[3])]);
        let (p, bad) = check(
            &asked,
            &names(&["orders"]),
            &[Some(1)],
            wm(&[("orders", 0, (10, 20))]),
        )
        .unwrap();
        assert_eq!(p, pos(&[("orders", &[10])]));
        assert_eq!(
            json(&bad),
            serde_json::json!([{"topic": "orders", "partition": 0, "requested": 3,
                "earliest": 10, "latest": 20, "resumed_from": 10,
                "reason": "offset_below_log_start"}])
        );
    }

    #[test]
    fn check_offset_beyond_log_end_resumes_from_low() {
        let asked = pos(&[("orders", &[21])]);
        let (p, bad) = check(
            &asked,
            &names(&["orders"]),
            &[Some(1)],
            wm(&[("orders", 0, (10, 20))]),
        )
        .unwrap();
        assert_eq!(p, pos(&[("orders", &[10])]));
        assert_eq!(
            json(&bad),
            serde_json::json!([{"topic": "orders", "partition": 0, "requested": 21,
                "earliest": 10, "latest": 20, "resumed_from": 10,
                "reason": "offset_beyond_log_end"}])
        );
    }

    #[test]
    fn check_exact_low_and_exact_high_are_served() {
        let asked = pos(&[("orders", &[10, 20])]);
        let (p, bad) = check(
            &asked,
            &names(&["orders"]),
            &[Some(2)],
            wm(&[("orders", 0, (10, 20)), ("orders", 1, (0, 20))]),
        )
        .unwrap();
        assert_eq!(p, asked);
        assert!(bad.is_empty(), "{bad:?}");
    }

    #[test]
    fn check_missing_partitions_reported_unknown_ones_ignored() {
        // Partitions 2 and 4 are gone (reported, before the watermark reasons of the
        // same topic); partition 3 is gone too but the id never knew it (ignored).
        let asked = pos(&[("orders", &[3, 12, 15, UNKNOWN, 7])]);
        let (p, bad) = check(
            &asked,
            &names(&["orders"]),
            &[Some(2)],
            wm(&[("orders", 0, (10, 20)), ("orders", 1, (10, 20))]),
        )
        .unwrap();
        assert_eq!(p, pos(&[("orders", &[10, 12])]));
        assert_eq!(
            json(&bad),
            serde_json::json!([
                {"topic": "orders", "partition": 2, "requested": 15, "earliest": null,
                 "latest": null, "resumed_from": null, "reason": "partition_missing"},
                {"topic": "orders", "partition": 4, "requested": 7, "earliest": null,
                 "latest": null, "resumed_from": null, "reason": "partition_missing"},
                {"topic": "orders", "partition": 0, "requested": 3, "earliest": 10,
                 "latest": 20, "resumed_from": 10, "reason": "offset_below_log_start"},
            ])
        );
    }

    #[test]
    fn check_partitions_the_id_predates_start_at_low_without_reset() {
        // Partition 1 is UNKNOWN in the id; partition 2 is beyond the id's list.
        let asked = pos(&[("orders", &[12, UNKNOWN])]);
        let (p, bad) = check(
            &asked,
            &names(&["orders"]),
            &[Some(3)],
            wm(&[
                ("orders", 0, (10, 20)),
                ("orders", 1, (5, 9)),
                ("orders", 2, (4, 4)),
            ]),
        )
        .unwrap();
        assert_eq!(p, pos(&[("orders", &[12, 5, 4])]));
        assert!(bad.is_empty(), "{bad:?}");
    }

    #[test]
    fn check_topic_missing_entirely() {
        // `gone` no longer exists: its known partitions are missing, nothing is queried
        // for it, and the position has no partitions for it.
        let asked = pos(&[("gone", &[4, UNKNOWN]), ("orders", &[11])]);
        let (p, bad) = check(
            &asked,
            &names(&["gone", "orders"]),
            &[None, Some(1)],
            wm(&[("orders", 0, (10, 20))]),
        )
        .unwrap();
        assert_eq!(p, pos(&[("gone", &[]), ("orders", &[11])]));
        assert_eq!(
            json(&bad),
            serde_json::json!([{"topic": "gone", "partition": 0, "requested": 4,
                "earliest": null, "latest": null, "resumed_from": null,
                "reason": "partition_missing"}])
        );
    }

    #[test]
    fn earliest_and_last_n_from_memory_only_when_the_ring_holds_them() {
        let lows = pos(&[("a", &[0, 5])]);
        let head = pos(&[("a", &[10, 20])]);
        // The ring holds both whole logs.
        let base = pos(&[("a", &[0, 5])]);
        assert_eq!(
            start_in_memory(&lows, &base, &head, None),
            Some(pos(&[("a", &[0, 5])]))
        );
        assert_eq!(
            start_in_memory(&lows, &base, &head, Some(3)),
            Some(pos(&[("a", &[7, 17])]))
        );
        // More than a partition holds starts at its log start.
        assert_eq!(
            start_in_memory(&lows, &base, &head, Some(12)),
            Some(pos(&[("a", &[0, 8])]))
        );
        // The ring starts after partition 1's log start: earliest needs the broker, the
        // last 3 do not.
        let base = pos(&[("a", &[0, 9])]);
        assert_eq!(start_in_memory(&lows, &base, &head, None), None);
        assert_eq!(
            start_in_memory(&lows, &base, &head, Some(3)),
            Some(pos(&[("a", &[7, 17])]))
        );
        // Log starts not known for every partition: the broker decides.
        let partial = pos(&[("a", &[0])]);
        assert_eq!(start_in_memory(&partial, &base, &head, Some(3)), None);
    }

    fn rec(partition: i32, offset: i64) -> Step {
        Step::Record {
            lane: crate::position::Lane {
                stream: 0,
                partition,
            },
            offset,
        }
    }

    #[test]
    fn starts_from_tracked_log_starts_wherever_the_ring_begins() {
        let lows = pos(&[("a", &[0, 5])]);
        let head = pos(&[("a", &[100, 20])]);
        assert_eq!(start_at(&lows, &head, None), Some(pos(&[("a", &[0, 5])])));
        assert_eq!(
            start_at(&lows, &head, Some(30)),
            Some(pos(&[("a", &[70, 5])]))
        );
        assert_eq!(start_at(&pos(&[("a", &[0])]), &head, None), None);
    }

    #[test]
    fn since_from_memory_only_when_the_ring_reaches_back_before_it() {
        let lows = pos(&[("a", &[0, 0])]);
        let base = pos(&[("a", &[3, 1])]);
        let head = pos(&[("a", &[6, 4])]);
        let ring = [
            (rec(0, 3), Some(100)),
            (rec(1, 1), Some(110)),
            (rec(0, 4), Some(120)),
            (rec(1, 2), Some(130)),
            (rec(1, 3), Some(140)),
            (rec(0, 5), Some(150)),
        ];
        let events = || ring.iter().map(|(s, t)| (s, *t));
        // Each partition from its first record at or after the time.
        assert_eq!(
            since_in_memory(125, &lows, &base, &head, events()),
            Some(pos(&[("a", &[5, 2])]))
        );
        // A time after everything: the head.
        assert_eq!(
            since_in_memory(1000, &lows, &base, &head, events()),
            Some(head.clone())
        );
        // A time at or before the ring's oldest record: the broker's time index decides.
        assert_eq!(since_in_memory(100, &lows, &base, &head, events()), None);
        // ...unless the ring holds the whole logs.
        let whole = pos(&[("a", &[0, 0])]);
        assert_eq!(
            since_in_memory(50, &lows, &whole, &head, events()),
            Some(pos(&[("a", &[3, 1])]))
        );
        // A reset in the ring: the broker decides.
        let with_reset = [
            (rec(0, 3), Some(100)),
            (
                Step::Restart {
                    lane: crate::position::Lane {
                        stream: 0,
                        partition: 1,
                    },
                    next: 0,
                },
                None,
            ),
        ];
        let events = with_reset.iter().map(|(s, t)| (s, *t));
        assert_eq!(since_in_memory(125, &lows, &base, &head, events), None);
    }

    #[test]
    fn resumes_are_validated_in_memory_only_when_memory_decides() {
        let lows = pos(&[("a", &[2, 0])]);
        let head = pos(&[("a", &[10, 7])]);
        // Within log start and head; a partition the id predates starts at its low.
        assert_eq!(
            valid_in_memory(&pos(&[("a", &[2, UNKNOWN])]), &lows, &head),
            Some(pos(&[("a", &[2, 0])]))
        );
        assert_eq!(
            valid_in_memory(&pos(&[("a", &[10, 7])]), &lows, &head),
            Some(head.clone())
        );
        // Below the log start (a reset), past this replica's head (another may be
        // ahead), or a partition it does not know: the broker decides.
        assert_eq!(valid_in_memory(&pos(&[("a", &[1, 0])]), &lows, &head), None);
        assert_eq!(
            valid_in_memory(&pos(&[("a", &[11, 0])]), &lows, &head),
            None
        );
        assert_eq!(
            valid_in_memory(&pos(&[("a", &[2, 0, 5])]), &lows, &head),
            None
        );
        // ...but a partition it does not know that the id does not know either is fine.
        assert_eq!(
            valid_in_memory(&pos(&[("a", &[2, 0, UNKNOWN])]), &lows, &head),
            Some(pos(&[("a", &[2, 0])]))
        );
    }

    #[test]
    fn ids_naming_too_many_missing_partitions_are_refused() {
        let head = pos(&[("a", &[1]), ("b", &[1, 1])]);
        let with = |extra: usize| {
            let mut o = vec![1i64, 1];
            o.extend(std::iter::repeat_n(5, extra));
            pos(&[("a", &[1]), ("b", &o)])
        };
        assert_eq!(too_many_missing(&with(MAX_MISSING), &head), None);
        assert_eq!(
            too_many_missing(&with(MAX_MISSING + 1), &head),
            Some(("b", MAX_MISSING + 1))
        );
        // Partitions the id does not know do not count.
        let mut o = vec![1i64, 1];
        o.extend(std::iter::repeat_n(UNKNOWN, 5000));
        assert_eq!(
            too_many_missing(&pos(&[("a", &[1]), ("b", &o)]), &head),
            None
        );
    }

    #[test]
    fn reset_bodies_stay_small_whatever_the_id_names() {
        // An id naming 12,000 partitions a one-partition topic lacks (every other one, so
        // no run forms) and one below the log start.
        let mut offsets = vec![3i64];
        offsets.extend((1..24_000).map(|p| if p % 2 == 1 { 5 } else { UNKNOWN }));
        let asked = pos(&[("orders", &offsets)]);
        let (_, bad) = check(
            &asked,
            &names(&["orders"]),
            &[Some(1)],
            wm(&[("orders", 0, (10, 20))]),
        )
        .unwrap();
        assert_eq!(bad.len(), 12_001);
        let body = reset_body("r", bad);
        let text = body.to_string();
        assert!(text.len() < 4096, "{} bytes", text.len());
        assert_eq!(body["partitions"].as_array().unwrap().len(), MAX_LISTED);
        assert_eq!(body["omitted"], 12_001 - MAX_LISTED as u64);
    }

    #[test]
    fn missing_partitions_in_a_row_are_one_entry() {
        let asked = pos(&[("orders", &[11, 5, 5, 5, UNKNOWN, 5])]);
        let (_, bad) = check(
            &asked,
            &names(&["orders"]),
            &[Some(1)],
            wm(&[("orders", 0, (10, 20))]),
        )
        .unwrap();
        assert_eq!(
            reset_body("r", bad),
            serde_json::json!({"reason": "position_unavailable", "route": "r", "partitions": [
                {"topic": "orders", "partition": 1, "through": 3, "requested": null,
                 "earliest": null, "latest": null, "resumed_from": null,
                 "reason": "partition_missing"},
                {"topic": "orders", "partition": 5, "requested": 5, "earliest": null,
                 "latest": null, "resumed_from": null, "reason": "partition_missing"},
            ]})
        );
    }

    #[test]
    fn check_propagates_watermark_errors() {
        let asked = pos(&[("orders", &[11])]);
        let r = check(
            &asked,
            &names(&["orders"]),
            &[Some(2)],
            wm(&[("orders", 0, (10, 20))]),
        );
        assert_eq!(r.unwrap_err(), "unexpected watermark query orders/1");
    }

    #[test]
    fn start_offset_rule() {
        assert_eq!(start_offset(10, 20, None), 10, "earliest");
        assert_eq!(start_offset(10, 20, Some(3)), 17, "last 3");
        assert_eq!(start_offset(10, 20, Some(0)), 20, "last 0 is the end");
        assert_eq!(start_offset(10, 20, Some(10)), 10, "exactly the log");
        assert_eq!(start_offset(10, 20, Some(100)), 10, "larger than the log");
        assert_eq!(start_offset(5, 5, Some(3)), 5, "empty log");
    }

    #[test]
    fn at_watermarks_per_partition_and_missing_topic() {
        let topics = names(&["orders", "gone"]);
        let table = [("orders", 0, (10, 20)), ("orders", 1, (0, 2))];
        let first = at_watermarks(&topics, &[Some(2), None], None, wm(&table)).unwrap();
        assert_eq!(first, pos(&[("orders", &[10, 0]), ("gone", &[])]));
        let last = at_watermarks(&topics, &[Some(2), None], Some(5), wm(&table)).unwrap();
        assert_eq!(last, pos(&[("orders", &[15, 0]), ("gone", &[])]));
        assert!(at_watermarks(&topics, &[Some(3), None], None, wm(&table)).is_err());
    }

    #[test]
    fn covers_within_bounds_inclusive() {
        let base = pos(&[("a", &[10, 20]), ("b", &[0])]);
        let head = pos(&[("a", &[15, 30]), ("b", &[5])]);
        assert!(covers(&pos(&[("a", &[10, 30]), ("b", &[5])]), &base, &head));
        assert!(covers(&pos(&[("a", &[12, 25]), ("b", &[0])]), &base, &head));
    }

    #[test]
    fn covers_rejects_below_base_and_above_head() {
        let base = pos(&[("a", &[10, 20]), ("b", &[0])]);
        let head = pos(&[("a", &[15, 30]), ("b", &[5])]);
        assert!(!covers(&pos(&[("a", &[9, 25]), ("b", &[1])]), &base, &head));
        assert!(!covers(
            &pos(&[("a", &[12, 31]), ("b", &[1])]),
            &base,
            &head
        ));
        assert!(!covers(
            &pos(&[("a", &[12, 25]), ("b", &[6])]),
            &base,
            &head
        ));
    }

    #[test]
    fn covers_rejects_more_partitions_than_head() {
        let base = pos(&[("a", &[10, 20])]);
        let head = pos(&[("a", &[15, 30])]);
        assert!(!covers(&pos(&[("a", &[12, 25, 0])]), &base, &head));
        assert!(!covers(&pos(&[("a", &[12, 25, UNKNOWN])]), &base, &head));
    }

    #[test]
    fn covers_rejects_unknown_partitions() {
        let base = pos(&[("a", &[10, 20])]);
        let head = pos(&[("a", &[15, 30])]);
        assert!(
            !covers(&pos(&[("a", &[12, UNKNOWN])]), &base, &head),
            "asked unknown"
        );
        assert!(
            !covers(&pos(&[("a", &[12])]), &base, &head),
            "asked lacks it"
        );
        let new_in_ring = pos(&[("a", &[10, UNKNOWN])]);
        assert!(
            !covers(&pos(&[("a", &[12, 2])]), &new_in_ring, &head),
            "base unknown"
        );
    }

    #[test]
    fn covers_empty_head_covers_empty_id() {
        let empty = pos(&[("a", &[])]);
        assert!(covers(&empty, &empty, &empty));
    }

    #[test]
    fn catchup_ranges_only_partitions_behind_base() {
        let base = pos(&[("a", &[10, 20, UNKNOWN, 5, 8]), ("b", &[7])]);
        let at = pos(&[("a", &[4, 20, 3, 9, UNKNOWN]), ("b", &[2, 1])]);
        assert_eq!(
            catchup_ranges(&at, &base),
            vec![(0, 0, 4, 10), (1, 0, 2, 7)],
            "a/1 at base, a/2 base unknown, a/3 ahead, a/4 unknown, b/1 not in base"
        );
        assert!(catchup_ranges(&base, &base).is_empty());
    }
}
