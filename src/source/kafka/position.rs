//! [`KafkaPosition`]: the next offset to deliver for every partition of every topic of a
//! route. Its binary form is the payload of a Kafka event id (see `crate::event_id`).

use crate::event_id::varint;

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

#[cfg(test)]
mod tests {
    use super::*;

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
