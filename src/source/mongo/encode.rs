//! Turning a change event into an SSE frame: relaxed Extended JSON, event name from the
//! operation type (or a constant), whole change or document only.

use mongodb::bson::{Bson, Document};

use bytes::Bytes;

use crate::bus::{Attrs, Selector};
use crate::source::EventNameConfig;
use crate::sse::{self, Frame};

/// What an event's `data:` carries (`payload = "..."` of a MongoDB route).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadMode {
    /// `change` (default): the whole change event, as relaxed Extended JSON.
    Change,
    /// `document`: only the full document (the document key for deletes), with the
    /// operation as the event name.
    Document,
}

impl PayloadMode {
    /// The names a route may give, default first.
    pub const NAMES: &'static [&'static str] = &["change", "document"];

    /// The mode a route's `payload` names (`None`: the default; unknown names too, which
    /// validation reports).
    pub fn of(name: Option<&str>) -> PayloadMode {
        match name {
            Some("document") => PayloadMode::Document,
            _ => PayloadMode::Change,
        }
    }
}

/// Encodes the changes of one route.
#[derive(Debug, Clone)]
pub struct ChangeEncoder {
    payload: PayloadMode,
    event_name: EventNameConfig,
    selectors: std::sync::Arc<[Selector]>,
}

/// The value at a dotted `path` of `doc`.
fn field<'a>(doc: &'a Document, path: &str) -> Option<&'a Bson> {
    let mut parts = path.split('.');
    let mut cur = doc.get(parts.next()?)?;
    for p in parts {
        cur = cur.as_document()?.get(p)?;
    }
    Some(cur)
}

/// A scalar as the bytes a filter compares.
fn scalar(b: &Bson) -> Option<Bytes> {
    let s = match b {
        Bson::String(s) => s.clone(),
        Bson::ObjectId(o) => o.to_hex(),
        Bson::Int32(i) => i.to_string(),
        Bson::Int64(i) => i.to_string(),
        Bson::Double(d) => d.to_string(),
        Bson::Boolean(v) => v.to_string(),
        _ => return None,
    };
    Some(Bytes::from(s))
}

/// A BSON value as relaxed Extended JSON text.
pub fn relaxed_json(b: Bson) -> String {
    b.into_relaxed_extjson().to_string()
}

impl ChangeEncoder {
    /// An encoder for a route's payload mode and event naming.
    pub fn new(
        payload: PayloadMode,
        event_name: EventNameConfig,
        selectors: Vec<Selector>,
    ) -> ChangeEncoder {
        ChangeEncoder {
            payload,
            event_name,
            selectors: selectors.into(),
        }
    }

    /// What the route's filters compare in change `doc` (whose frame is `frame`): a
    /// field's string, number, boolean or ObjectId (as hex) value; `None` on a route
    /// without filters.
    pub fn attrs(&self, doc: &Document, frame: &Frame) -> Option<Box<Attrs>> {
        if self.selectors.is_empty() {
            return None;
        }
        Attrs::of(&self.selectors, frame, |s| match s {
            Selector::Field(path) => field(doc, path).and_then(scalar),
            Selector::Key | Selector::Header(_) | Selector::Event => None,
        })
    }

    /// The frame of change `doc` under `id`.
    pub fn encode(&self, doc: &Document, id: &str) -> Frame {
        let op = doc.get_str("operationType").unwrap_or("change");
        let name = self.event_name.default_or(op).to_owned();
        let data = match self.payload {
            PayloadMode::Document => {
                let body = doc
                    .get("fullDocument")
                    .filter(|b| !matches!(b, Bson::Null))
                    .or_else(|| doc.get("documentKey"))
                    .cloned()
                    .unwrap_or(Bson::Null);
                relaxed_json(body)
            }
            PayloadMode::Change => relaxed_json(Bson::Document(doc.clone())),
        };
        sse::frame(id, Some(&name), Some(&data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::{doc, oid::ObjectId, DateTime};

    #[test]
    fn payload_mode_names() {
        assert_eq!(PayloadMode::of(None), PayloadMode::Change, "the default");
        assert_eq!(PayloadMode::of(Some("change")), PayloadMode::Change);
        assert_eq!(PayloadMode::of(Some("document")), PayloadMode::Document);
        assert_eq!(PayloadMode::NAMES, ["change", "document"]);
    }

    #[test]
    fn change_and_document_modes() {
        let oid = ObjectId::parse_str("65a1b2c3d4e5f60718293a4b").unwrap();
        let change = doc! {
            "_id": { "_data": "82" }, "operationType": "insert",
            "fullDocument": { "_id": oid, "at": DateTime::from_millis(1_700_000_000_000), "n": 1i64 },
            "documentKey": { "_id": oid },
        };
        let c = ChangeEncoder::new(PayloadMode::Change, EventNameConfig::default(), Vec::new())
            .encode(&change, "i");
        let body = String::from_utf8(c.body().to_vec()).unwrap();
        assert!(body.starts_with("event: insert\ndata: "));
        let j: serde_json::Value =
            serde_json::from_str(body.lines().nth(1).unwrap().trim_start_matches("data: "))
                .unwrap();
        assert_eq!(j["fullDocument"]["_id"]["$oid"], "65a1b2c3d4e5f60718293a4b");
        assert_eq!(j["fullDocument"]["at"]["$date"], "2023-11-14T22:13:20Z");
        assert_eq!(j["fullDocument"]["n"], 1);
        let d = ChangeEncoder::new(
            PayloadMode::Document,
            EventNameConfig::default(),
            Vec::new(),
        )
        .encode(&change, "i");
        let body = String::from_utf8(d.body().to_vec()).unwrap();
        assert!(body.contains("\"n\":1") && !body.contains("operationType"));
        let del = doc! { "operationType": "delete", "documentKey": { "_id": oid } };
        let d = ChangeEncoder::new(
            PayloadMode::Document,
            EventNameConfig {
                header: None,
                default: Some("change".into()),
                reserved_prefix: None,
            },
            Vec::new(),
        )
        .encode(&del, "i");
        let body = String::from_utf8(d.body().to_vec()).unwrap();
        assert!(body.starts_with("event: change\n") && body.contains("$oid"));
    }
}
