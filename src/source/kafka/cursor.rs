//! [`KafkaCursor`]: one client's Kafka position, deciding per event what it receives.

use bytes::Bytes;

use super::KafkaPosition;
use crate::event_id::encode_kafka;
use crate::hub::{Origin, Verdict};
use crate::sse;

/// A client's next offset per partition; `synced` once it equals the route's head, from
/// which point the route's shared frames (whose ids are the route's position) fit it.
#[derive(Debug, Clone)]
pub struct KafkaCursor {
    /// Next offset to deliver, per partition.
    pub position: KafkaPosition,
    /// Equal to the route's head position.
    pub synced: bool,
}

impl KafkaCursor {
    /// A cursor at `position`.
    pub fn new(position: KafkaPosition, synced: bool) -> KafkaCursor {
        KafkaCursor { position, synced }
    }

    /// Decide about an event from `origin` and move past it.
    pub fn accept(&mut self, origin: &Origin) -> Verdict {
        match *origin {
            Origin::Kafka {
                topic,
                partition,
                offset,
            } => {
                if offset < self.position.get(usize::from(topic), partition) {
                    return Verdict::Skip;
                }
                self.position.set(usize::from(topic), partition, offset + 1);
            }
            Origin::KafkaReset {
                topic,
                partition,
                next,
            } => {
                // Already restarted there (told at connect time): nothing new to say.
                if self.position.get(usize::from(topic), partition) == next {
                    return Verdict::Skip;
                }
                self.position.set(usize::from(topic), partition, next);
            }
            Origin::Mongo | Origin::MongoReset => return Verdict::Skip,
        }
        if self.synced {
            Verdict::Shared
        } else {
            Verdict::Custom(self.id_line())
        }
    }

    /// The `id:` line of the current position.
    pub fn id_line(&self) -> Bytes {
        sse::id_line(&encode_kafka(&self.position))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_delivered_offsets_and_advances() {
        let mut c = KafkaCursor::new(
            KafkaPosition::from_topics(vec![("t".into(), vec![5, 0])]),
            true,
        );
        let rec = |p, o| Origin::Kafka {
            topic: 0,
            partition: p,
            offset: o,
        };
        assert_eq!(c.accept(&rec(0, 4)), Verdict::Skip);
        assert_eq!(c.accept(&rec(0, 5)), Verdict::Shared);
        assert_eq!(c.position.get(0, 0), 6);
        c.synced = false;
        assert!(matches!(c.accept(&rec(1, 0)), Verdict::Custom(_)));
        assert_eq!(c.accept(&rec(1, 0)), Verdict::Skip);
        // A partition unknown to the id is delivered from whatever comes.
        assert!(matches!(c.accept(&rec(2, 9)), Verdict::Custom(_)));
        let reset = Origin::KafkaReset {
            topic: 0,
            partition: 0,
            next: 0,
        };
        assert!(matches!(c.accept(&reset), Verdict::Custom(_)));
        assert_eq!(c.position.get(0, 0), 0);
        assert_eq!(
            c.accept(&reset),
            Verdict::Skip,
            "a reset to where the client already is"
        );
    }
}
