//! [`KafkaPosition`]: the next offset to deliver for every partition of every topic of a
//! route. Its binary form is the payload of a Kafka event id (see `crate::event_id`); its
//! [`Position`] implementation is the one place the Kafka advance rule lives (the route's
//! head, the ring's base and every client's cursor move by it).

use crate::event_id::varint;
use crate::position::{Accept, Decode, Lane, Position, Step};

/// Kind byte of Kafka event ids.
pub const KIND: u8 = b'k';

/// Most topics and partitions per topic accepted when decoding.
const MAX_TOPICS: u64 = 1024;
const MAX_PARTITIONS: u64 = 100_000;
/// Offset of a partition whose position is not known (the id predates the partition).
pub const UNKNOWN: i64 = -1;

/// Next offset per partition, per topic (topics in route order, partitions dense from 0).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KafkaPosition {
    topics: Vec<(String, Vec<i64>)>,
}

impl KafkaPosition {
    /// Build from `(topic, next offsets by partition)` pairs.
    pub fn from_topics(topics: Vec<(String, Vec<i64>)>) -> KafkaPosition {
        KafkaPosition { topics }
    }

    /// An empty position for `topics` (no partitions known yet).
    pub fn for_topics(topics: &[String]) -> KafkaPosition {
        KafkaPosition {
            topics: topics.iter().map(|t| (t.clone(), Vec::new())).collect(),
        }
    }

    /// The `(topic, offsets)` pairs.
    pub fn topics(&self) -> &[(String, Vec<i64>)] {
        &self.topics
    }

    /// Next offset of `partition` of the topic at `topic_idx`, or [`UNKNOWN`].
    pub fn get(&self, topic_idx: usize, partition: i32) -> i64 {
        self.topics
            .get(topic_idx)
            .and_then(|(_, o)| usize::try_from(partition).ok().and_then(|p| o.get(p)))
            .copied()
            .unwrap_or(UNKNOWN)
    }

    /// Set the next offset of a partition, growing the partition list as needed.
    pub fn set(&mut self, topic_idx: usize, partition: i32, next: i64) {
        let Some((_, offsets)) = self.topics.get_mut(topic_idx) else {
            return;
        };
        let Ok(p) = usize::try_from(partition) else {
            return;
        };
        if offsets.len() <= p {
            offsets.resize(p + 1, UNKNOWN);
        }
        offsets[p] = next;
    }

    /// Number of partitions known for the topic at `topic_idx`.
    pub fn partitions(&self, topic_idx: usize) -> usize {
        self.topics.get(topic_idx).map_or(0, |(_, o)| o.len())
    }

    /// Re-order a decoded position onto `route_topics`: topics the route lacks are
    /// dropped, topics the id lacks get no partitions (their offsets are [`UNKNOWN`]).
    pub fn align(&self, route_topics: &[String]) -> KafkaPosition {
        KafkaPosition {
            topics: route_topics
                .iter()
                .map(|t| {
                    let offsets = self
                        .topics
                        .iter()
                        .find(|(name, _)| name == t)
                        .map(|(_, o)| o.clone())
                        .unwrap_or_default();
                    (t.clone(), offsets)
                })
                .collect(),
        }
    }

    /// Append the binary form: varint topic count, then per topic its name (varint
    /// length + UTF-8), varint partition count and each offset as a zigzag varint delta
    /// from the previous partition's offset.
    pub fn write_binary(&self, out: &mut Vec<u8>) {
        varint::put(out, self.topics.len() as u64);
        for (topic, offsets) in &self.topics {
            varint::put(out, topic.len() as u64);
            out.extend_from_slice(topic.as_bytes());
            varint::put(out, offsets.len() as u64);
            let mut prev = 0i64;
            for &o in offsets {
                varint::put(out, varint::zigzag(o.wrapping_sub(prev)));
                prev = o;
            }
        }
    }

    /// Parse the binary form; rejects trailing bytes and out-of-range values.
    pub fn read_binary(mut buf: &[u8]) -> Result<KafkaPosition, &'static str> {
        let n = varint::get(&mut buf)?;
        if n > MAX_TOPICS {
            return Err("too many topics");
        }
        let mut topics = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let len = varint::get(&mut buf)?;
            if len == 0 || len > 249 || len as usize > buf.len() {
                return Err("bad topic name length");
            }
            let (name, rest) = buf.split_at(len as usize);
            buf = rest;
            let name = std::str::from_utf8(name).map_err(|_| "topic name is not UTF-8")?;
            let parts = varint::get(&mut buf)?;
            if parts > MAX_PARTITIONS || parts as usize > buf.len() {
                return Err("bad partition count");
            }
            let mut offsets = Vec::with_capacity(parts as usize);
            let mut prev = 0i64;
            for _ in 0..parts {
                let o = prev
                    .checked_add(varint::unzigzag(varint::get(&mut buf)?))
                    .ok_or("offset overflow")?;
                if o < UNKNOWN {
                    return Err("negative offset");
                }
                offsets.push(o);
                prev = o;
            }
            topics.push((name.to_owned(), offsets));
        }
        if !buf.is_empty() {
            return Err("trailing bytes");
        }
        Ok(KafkaPosition { topics })
    }
}

impl KafkaPosition {
    /// Next offset of `lane`, or [`UNKNOWN`].
    fn at(&self, lane: Lane) -> i64 {
        self.get(usize::from(lane.stream), lane.partition)
    }
}

impl KafkaPosition {
    /// The KafkaPosition behind `p`, if it is one (a route's hub and cursors only hold this
    /// adapter's positions).
    pub fn of(p: &dyn Position) -> Option<&KafkaPosition> {
        p.as_any().downcast_ref::<KafkaPosition>()
    }
}

impl Position for KafkaPosition {
    fn kind(&self) -> u8 {
        KIND
    }

    fn write_binary(&self, out: &mut Vec<u8>) {
        KafkaPosition::write_binary(self, out)
    }

    fn advance(&mut self, step: &Step) {
        match *step {
            Step::Record { lane, offset } => {
                self.set(usize::from(lane.stream), lane.partition, offset + 1)
            }
            Step::Restart { lane, next } => {
                self.set(usize::from(lane.stream), lane.partition, next)
            }
            Step::Token(_) | Step::TokenRestart(_) => {}
        }
    }

    fn accept(&mut self, step: &Step, _joined: bool) -> Accept {
        match *step {
            Step::Record { lane, offset } => {
                if offset < self.at(lane) {
                    return Accept::Skip;
                }
            }
            // Already restarted there (told at connect time): nothing new to say.
            Step::Restart { lane, next } if self.at(lane) == next => return Accept::Skip,
            Step::Restart { .. } => {}
            Step::Token(_) | Step::TokenRestart(_) => return Accept::Skip,
        }
        self.advance(step);
        Accept::Take
    }

    fn same(&self, other: &dyn Position) -> bool {
        KafkaPosition::of(other) == Some(self)
    }

    fn at_or_after(&self, base: &dyn Position) -> bool {
        let Some(base) = KafkaPosition::of(base) else {
            return false;
        };
        base.topics.iter().enumerate().all(|(ti, (_, offsets))| {
            offsets.iter().enumerate().all(|(p, &b)| {
                let a = self.get(ti, p as i32);
                b == UNKNOWN || (a != UNKNOWN && a >= b)
            })
        })
    }

    /// Partitions new to the head start in the ring's base at the same offset, so the
    /// ring covers them from there.
    fn adopt_new_lanes(&mut self, head: &dyn Position) {
        let Some(head) = KafkaPosition::of(head) else {
            return;
        };
        for (ti, (_, offsets)) in head.topics.iter().enumerate() {
            for (p, &o) in offsets.iter().enumerate() {
                let p = p as i32;
                if self.get(ti, p) == UNKNOWN {
                    self.set(ti, p, o);
                }
            }
        }
    }
}

impl Decode for KafkaPosition {
    const KIND: u8 = KIND;

    fn read_binary(buf: &[u8]) -> Result<KafkaPosition, &'static str> {
        KafkaPosition::read_binary(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_id::{decode_as, encode, IdError};
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use proptest::prelude::*;

    fn kafka_pos() -> impl Strategy<Value = KafkaPosition> {
        proptest::collection::vec(
            (
                "[a-zA-Z0-9._-]{1,40}",
                proptest::collection::vec(0i64..i64::MAX / 2, 0..20),
            ),
            0..6,
        )
        .prop_map(KafkaPosition::from_topics)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn id_round_trip(p in kafka_pos()) {
            let wire = encode(&p);
            prop_assert!(wire.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            prop_assert_eq!(decode_as::<KafkaPosition>(&wire).unwrap(), p);
        }

        #[test]
        fn garbage_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut raw = vec![crate::event_id::VERSION, KIND];
            raw.extend(b);
            let _ = decode_as::<KafkaPosition>(&URL_SAFE_NO_PAD.encode(raw));
        }
    }

    // Golden vectors of the version-1 wire format. The bytes are written out by hand from
    // the format documented in README.md ("Wire format (version 1)"); a change to any of
    // them changes every id clients hold, so these tests must only ever gain vectors.

    /// `p` encodes to exactly `wire`, whose bytes are exactly `raw`, and decodes back.
    fn assert_golden(p: &KafkaPosition, raw: &[u8], wire: &str) {
        assert_eq!(
            URL_SAFE_NO_PAD.encode(raw),
            wire,
            "golden bytes vs golden string"
        );
        assert_eq!(encode(p), wire, "encode");
        assert_eq!(decode_as::<KafkaPosition>(wire).as_ref(), Ok(p), "decode");
    }

    #[test]
    fn golden_kafka_readme_example() {
        // README: "For a 3-partition topic `orders` an id is about 20 characters".
        const RAW: [u8; 14] = [
            0x01, // version 1
            b'k', // kind: Kafka
            0x01, // varint topic count = 1
            0x06, // varint name length = 6
            b'o', b'r', b'd', b'e', b'r', b's', // "orders"
            0x03, // varint partition count = 3
            0x12, // zigzag(9 - 0) = 18: partition 0 at 9
            0x01, // zigzag(8 - 9) = zigzag(-1) = 1: partition 1 at 8
            0x0f, // zigzag(0 - 8) = zigzag(-8) = 15: partition 2 at 0
        ];
        let p = KafkaPosition::from_topics(vec![("orders".into(), vec![9, 8, 0])]);
        assert_golden(&p, &RAW, "AWsBBm9yZGVycwMSAQ8");
    }

    #[test]
    fn golden_kafka_two_topics_large_offset_and_unknown() {
        const RAW: [u8; 28] = [
            0x01, // version 1
            b'k', // kind: Kafka
            0x02, // varint topic count = 2
            0x03, // varint name length = 3
            b'p', b'a', b'y', // "pay"
            0x03, // varint partition count = 3
            // zigzag(1_000_000_000_000 - 0) = 2_000_000_000_000, LEB128 in 6 bytes
            0x80, 0xc0, 0xa8, 0xca, 0x9a, 0x3a,
            // zigzag(-1 - 1_000_000_000_000) = 2_000_000_000_001: partition 1 UNKNOWN
            0x81, 0xc0, 0xa8, 0xca, 0x9a, 0x3a,
            0x56, // zigzag(42 - (-1)) = 86: partition 2 at 42
            0x02, // varint name length = 2
            b'e', b'v', // "ev"
            0x02, // varint partition count = 2
            0x01, // zigzag(-1 - 0) = 1: partition 0 UNKNOWN
            0xda, 0x04, // zigzag(300 - (-1)) = 602 = 0x25a, LEB128: partition 1 at 300
        ];
        let p = KafkaPosition::from_topics(vec![
            ("pay".into(), vec![1_000_000_000_000, UNKNOWN, 42]),
            ("ev".into(), vec![UNKNOWN, 300]),
        ]);
        assert_golden(&p, &RAW, "AWsCA3BheQOAwKjKmjqBwKjKmjpWAmV2AgHaBA");
    }

    #[test]
    fn compact_for_three_partitions() {
        let p =
            KafkaPosition::from_topics(vec![("orders".into(), vec![120_345, 120_401, 119_998])]);
        let wire = encode(&p);
        assert!(wire.len() <= 32, "{wire} is {} chars", wire.len());
    }

    #[test]
    fn a_mongodb_id_is_not_a_kafka_position() {
        assert_eq!(
            decode_as::<KafkaPosition>(&URL_SAFE_NO_PAD.encode([1u8, b'm', 5, 0, 0, 0, 0])),
            Err(IdError::Kind)
        );
    }

    #[test]
    fn accept_skips_delivered_offsets_and_advances() {
        let mut c = KafkaPosition::from_topics(vec![("t".into(), vec![5, 0])]);
        let rec = |p, o| Step::Record {
            lane: Lane {
                stream: 0,
                partition: p,
            },
            offset: o,
        };
        assert_eq!(c.accept(&rec(0, 4), true), Accept::Skip);
        assert_eq!(c.accept(&rec(0, 5), true), Accept::Take);
        assert_eq!(c.get(0, 0), 6);
        assert_eq!(c.accept(&rec(1, 0), false), Accept::Take);
        assert_eq!(c.accept(&rec(1, 0), false), Accept::Skip);
        // A partition unknown to the id is delivered from whatever comes.
        assert_eq!(c.accept(&rec(2, 9), false), Accept::Take);
        let reset = Step::Restart {
            lane: Lane {
                stream: 0,
                partition: 0,
            },
            next: 0,
        };
        assert_eq!(c.accept(&reset, false), Accept::Take);
        assert_eq!(c.get(0, 0), 0);
        assert_eq!(
            c.accept(&reset, false),
            Accept::Skip,
            "a reset to where the client already is"
        );
        assert_eq!(
            c.accept(&Step::Token(Default::default()), true),
            Accept::Skip
        );
    }

    #[test]
    fn new_lanes_of_the_head_are_adopted_where_unknown() {
        let mut base = KafkaPosition::from_topics(vec![("t".into(), vec![3])]);
        let head = KafkaPosition::from_topics(vec![("t".into(), vec![9, 4])]);
        base.adopt_new_lanes(&head);
        assert_eq!(
            base,
            KafkaPosition::from_topics(vec![("t".into(), vec![3, 4])])
        );
    }

    #[test]
    fn set_grows_and_get_defaults_to_unknown() {
        let mut p = KafkaPosition::for_topics(&["a".into(), "b".into()]);
        p.set(1, 2, 7);
        assert_eq!(p.get(1, 2), 7);
        assert_eq!(p.get(1, 0), UNKNOWN);
        assert_eq!(p.get(0, 0), UNKNOWN);
        assert_eq!(p.get(5, 0), UNKNOWN);
        assert_eq!(p.partitions(1), 3);
    }

    #[test]
    fn align_reorders_and_drops() {
        let p = KafkaPosition::from_topics(vec![("x".into(), vec![1]), ("a".into(), vec![2, 3])]);
        let a = p.align(&["a".into(), "new".into()]);
        assert_eq!(
            a.topics(),
            &[("a".into(), vec![2, 3]), ("new".into(), vec![])]
        );
    }

    #[test]
    fn rejects_trailing_bytes_and_negative() {
        let mut raw = Vec::new();
        KafkaPosition::from_topics(vec![("t".into(), vec![5])]).write_binary(&mut raw);
        let mut extra = raw.clone();
        extra.push(0);
        assert!(KafkaPosition::read_binary(&extra).is_err());
        let mut neg = Vec::new();
        KafkaPosition::from_topics(vec![("t".into(), vec![-7])]).write_binary(&mut neg);
        assert!(KafkaPosition::read_binary(&neg).is_err());
    }
}
