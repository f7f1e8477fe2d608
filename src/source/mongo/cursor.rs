//! [`MongoCursor`]: one client's resume token. Change events are totally ordered, so a
//! client either has joined the route's stream (every later event is for it, under the
//! route's shared frames) or is still looking for its token in the ring.

use bytes::Bytes;

use crate::hub::{Event, Origin, Verdict};

/// A client's last token (as its wire id).
#[derive(Debug, Clone)]
pub struct MongoCursor {
    /// Wire id of the last event (or heartbeat position) the client has.
    pub last: Bytes,
    /// Every event from here on is new to the client.
    pub joined: bool,
}

impl MongoCursor {
    /// A cursor after `last`.
    pub fn new(last: Bytes, joined: bool) -> MongoCursor {
        MongoCursor { last, joined }
    }

    /// Decide about `ev` and move past it.
    pub fn accept(&mut self, ev: &Event) -> Verdict {
        let id = ev.id();
        if !self.joined {
            // Looking for the event the client already has: everything up to it is old.
            if id == self.last || matches!(ev.origin, Origin::MongoReset) {
                self.joined = true;
                if matches!(ev.origin, Origin::MongoReset) {
                    self.last = id;
                    return Verdict::Shared;
                }
            }
            return Verdict::Skip;
        }
        self.last = id;
        Verdict::Shared
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse;

    fn ev(id: &str, origin: Origin) -> Event {
        Event {
            frame: sse::frame(id, Some("insert"), Some("{}")),
            origin,
            timestamp_ms: None,
            attrs: None,
        }
    }

    #[test]
    fn skips_until_its_token_then_takes_everything() {
        let mut c = MongoCursor::new(Bytes::from_static(b"b"), false);
        assert_eq!(c.accept(&ev("a", Origin::Mongo)), Verdict::Skip);
        assert_eq!(c.accept(&ev("b", Origin::Mongo)), Verdict::Skip);
        assert!(c.joined);
        assert_eq!(c.accept(&ev("c", Origin::Mongo)), Verdict::Shared);
        assert_eq!(&c.last[..], b"c");
        let mut lost = MongoCursor::new(Bytes::from_static(b"zz"), false);
        assert_eq!(
            lost.accept(&ev("r", Origin::MongoReset)),
            Verdict::Shared,
            "a reset always reaches the client"
        );
    }
}
