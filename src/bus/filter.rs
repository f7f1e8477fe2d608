//! Per-client filtering on a shared route: each event carries the values a route's
//! selectors pick out of it ([`Attrs`]); a client's [`ClientFilter`] is a list of exact
//! equalities on those values (from its token's claims and its own narrowing query
//! parameters). Values are compared as bytes, never interpreted, so no value can widen
//! what a client sees. Resets always pass: every client must learn of them.

use bytes::Bytes;
use serde::Deserialize;

use super::Event;
use crate::sse::Frame;

/// What part of an event a filter compares, written `key`, `header:NAME`, `event` or
/// `field:PATH` (a dotted path into a MongoDB change event, e.g. `fullDocument.owner`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Selector {
    /// Kafka record key.
    Key,
    /// Kafka record header, by name.
    Header(String),
    /// The SSE event name.
    Event,
    /// MongoDB change event field, by dotted path.
    Field(String),
}

impl Selector {
    /// Parse `key`, `header:NAME`, `event` or `field:PATH`.
    pub fn parse(s: &str) -> Result<Selector, String> {
        let ok_name = |n: &str| {
            !n.is_empty()
                && n.len() <= 128
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        match s.split_once(':') {
            None if s == "key" => Ok(Selector::Key),
            None if s == "event" => Ok(Selector::Event),
            Some(("header", n)) if ok_name(n) => Ok(Selector::Header(n.to_owned())),
            Some(("field", p)) if ok_name(p) && !p.starts_with('.') && !p.ends_with('.') => {
                Ok(Selector::Field(p.to_owned()))
            }
            _ => Err(format!(
                "`{s}`: expected `key`, `header:NAME`, `event` or `field:PATH` (letters, digits, `-`, `_`, `.`)"
            )),
        }
    }

    /// The text form (also the query parameter a client narrows by).
    pub fn name(&self) -> String {
        match self {
            Selector::Key => "key".into(),
            Selector::Event => "event".into(),
            Selector::Header(h) => format!("header:{h}"),
            Selector::Field(p) => format!("field:{p}"),
        }
    }
}

impl<'de> Deserialize<'de> for Selector {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Selector, D::Error> {
        let s = String::deserialize(d)?;
        Selector::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The values of the route's selectors for one event, in the route's selector order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Attrs(pub Vec<Option<Bytes>>);

impl Attrs {
    /// The values `selectors` pick from an event encoded as `frame`: its event name from
    /// the frame, anything else from `from_source` (`None` where the source has no such
    /// part). `None` on a route without selectors, so unfiltered routes carry nothing.
    pub fn of(
        selectors: &[Selector],
        frame: &Frame,
        from_source: impl Fn(&Selector) -> Option<Bytes>,
    ) -> Option<Box<Attrs>> {
        if selectors.is_empty() {
            return None;
        }
        let values = selectors
            .iter()
            .map(|s| match s {
                Selector::Event => Some(Bytes::copy_from_slice(frame_event_name(frame))),
                other => from_source(other),
            })
            .collect();
        Some(Box::new(Attrs(values)))
    }
}

/// A client's conditions: (index of the route selector, required value); all must hold.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ClientFilter {
    conds: Vec<(usize, Bytes)>,
}

impl ClientFilter {
    /// Add the condition "selector `index` equals `value`".
    pub fn require(&mut self, index: usize, value: Bytes) {
        self.conds.push((index, value));
    }

    /// True when the filter lets everything through.
    pub fn is_empty(&self) -> bool {
        self.conds.is_empty()
    }

    /// Does `ev` pass?
    pub fn matches(&self, ev: &Event) -> bool {
        if self.conds.is_empty() || ev.step.is_reset() {
            return true;
        }
        let Some(attrs) = &ev.attrs else {
            return false;
        };
        self.conds
            .iter()
            .all(|(i, v)| attrs.0.get(*i).and_then(Option::as_ref) == Some(v))
    }
}

/// The SSE event name of an encoded frame (`message` when it has no `event:` line).
pub fn frame_event_name(frame: &Frame) -> &[u8] {
    let body = &frame.bytes[frame.body_start..];
    body.strip_prefix(b"event: ")
        .and_then(|rest| rest.split(|b| *b == b'\n').next())
        .unwrap_or(b"message")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::position::{Lane, Step};
    use crate::sse;

    fn ev(step: Step, attrs: Option<Vec<Option<&'static str>>>) -> Event {
        Event {
            frame: sse::frame("i", Some("order"), Some("{}")),
            step,
            timestamp_ms: None,
            attrs: attrs
                .map(|v| Box::new(Attrs(v.into_iter().map(|x| x.map(Bytes::from)).collect()))),
        }
    }

    const LANE: Lane = Lane {
        stream: 0,
        partition: 0,
    };
    const REC: Step = Step::Record {
        lane: LANE,
        offset: 1,
    };

    #[test]
    fn every_condition_must_hold_exactly() {
        let mut f = ClientFilter::default();
        assert!(f.matches(&ev(REC, None)), "no conditions: everything");
        f.require(0, Bytes::from("alice"));
        assert!(f.matches(&ev(REC, Some(vec![Some("alice"), None]))));
        assert!(!f.matches(&ev(REC, Some(vec![Some("alicex"), None]))));
        assert!(!f.matches(&ev(REC, Some(vec![None, None]))));
        assert!(!f.matches(&ev(REC, None)), "no attributes: no match");
        f.require(1, Bytes::from("eu"));
        assert!(!f.matches(&ev(REC, Some(vec![Some("alice"), Some("us")]))));
        assert!(f.matches(&ev(REC, Some(vec![Some("alice"), Some("eu")]))));
        let reset = Step::Restart {
            lane: LANE,
            next: 0,
        };
        assert!(f.matches(&ev(reset, None)), "resets reach everyone");
    }

    #[test]
    fn event_names_of_frames() {
        assert_eq!(
            frame_event_name(&sse::frame("1", Some("order"), Some("x"))),
            b"order"
        );
        assert_eq!(
            frame_event_name(&sse::frame("1", None, Some("x"))),
            b"message"
        );
    }
}
