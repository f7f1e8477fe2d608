//! Turning a JetStream message into an SSE frame: event name (from a header), payload
//! mode, binary data. The subject and headers play the part of a Kafka record's key and
//! headers (envelopes, event names, filters: `key` compares the subject).

use std::borrow::Cow;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::bus::{Attrs, Selector};
use crate::source::EventNameConfig;
use crate::source::{put_value, ValueFormat};
use crate::sse::{self, Frame};

pub use crate::source::RecordPayload as PayloadMode;

/// Event names the bridge gives events itself: a header never chooses them.
pub const RESERVED: &[&str] = &["reset", "expired", "binary"];

/// One message, as the encoder reads it.
#[derive(Debug, Clone)]
pub struct Msg {
    pub stream: String,
    pub subject: String,
    pub seq: u64,
    /// When the stream stored it (ms since the epoch).
    pub time_ms: i64,
    /// Header name and values, names sorted.
    pub headers: Vec<(String, Vec<String>)>,
    pub data: Bytes,
}

impl Msg {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.first())
            .map(String::as_str)
    }
}

/// Encodes the messages of one route.
#[derive(Debug, Clone)]
pub struct MsgEncoder {
    payload: PayloadMode,
    value_format: ValueFormat,
    event_name: EventNameConfig,
    selectors: std::sync::Arc<[Selector]>,
}

impl MsgEncoder {
    pub fn new(
        payload: PayloadMode,
        value_format: ValueFormat,
        event_name: EventNameConfig,
        selectors: Vec<Selector>,
    ) -> MsgEncoder {
        MsgEncoder {
            payload,
            value_format,
            event_name,
            selectors: selectors.into(),
        }
    }

    /// What the route's filters compare in `m`; `None` on a route without filters.
    pub fn attrs(&self, m: &Msg, frame: &Frame) -> Option<Box<Attrs>> {
        Attrs::of(&self.selectors, frame, |s| match s {
            Selector::Key => Some(Bytes::copy_from_slice(m.subject.as_bytes())),
            Selector::Header(name) => m.header(name).map(|v| Bytes::copy_from_slice(v.as_bytes())),
            Selector::Event | Selector::Field(_) => None,
        })
    }

    fn event_name<'a>(&'a self, m: &'a Msg) -> Cow<'a, str> {
        if let Some(v) = self.event_name.header.as_deref().and_then(|h| m.header(h)) {
            if RESERVED.contains(&v) {
                return Cow::Owned(format!("{}{v}", self.event_name.reserved_prefix()));
            }
            if !v.is_empty() && !v.contains(['\r', '\n', '\0']) {
                return Cow::Borrowed(v);
            }
        }
        Cow::Borrowed(self.event_name.default_or("message"))
    }

    /// The frame of `m` under `id`.
    pub fn encode(&self, m: &Msg, id: &str) -> Frame {
        match self.payload {
            PayloadMode::Envelope => {
                let data = self.envelope(m).to_string();
                sse::frame(id, Some(&self.event_name(m)), Some(&data))
            }
            PayloadMode::Value => match std::str::from_utf8(&m.data) {
                Ok(s) => sse::frame(id, Some(&self.event_name(m)), Some(s)),
                Err(_) => sse::frame(id, Some("binary"), Some(&STANDARD.encode(&m.data))),
            },
        }
    }

    fn envelope(&self, m: &Msg) -> Value {
        let mut obj = Map::new();
        obj.insert("stream".into(), json!(m.stream));
        obj.insert("subject".into(), json!(m.subject));
        obj.insert("seq".into(), json!(m.seq));
        obj.insert("timestamp".into(), json!(m.time_ms));
        let headers: Vec<Value> = m
            .headers
            .iter()
            .flat_map(|(n, vs)| vs.iter().map(move |v| json!({ "name": n, "value": v })))
            .collect();
        obj.insert("headers".into(), Value::Array(headers));
        put_value(&mut obj, self.value_format, Some(&m.data));
        Value::Object(obj)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(data: &[u8], headers: &[(&str, &str)]) -> Msg {
        Msg {
            stream: "ORDERS".into(),
            subject: "orders.eu".into(),
            seq: 42,
            time_ms: 1_700_000_000_000,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), vec![v.to_string()]))
                .collect(),
            data: Bytes::copy_from_slice(data),
        }
    }

    fn body(f: &Frame) -> String {
        String::from_utf8(f.body().to_vec()).unwrap()
    }

    #[test]
    fn value_mode_names_events_from_a_header_and_guards_reserved_names() {
        let enc = MsgEncoder::new(
            PayloadMode::Value,
            ValueFormat::Text,
            EventNameConfig {
                header: Some("type".into()),
                ..Default::default()
            },
            vec![],
        );
        assert_eq!(
            body(&enc.encode(&msg(b"hi", &[("type", "paid")]), "I")),
            "event: paid\ndata: hi\n\n"
        );
        assert_eq!(
            body(&enc.encode(&msg(b"hi", &[("type", "reset")]), "I")),
            "event: record.reset\ndata: hi\n\n"
        );
        assert_eq!(body(&enc.encode(&msg(b"hi", &[]), "I")), "data: hi\n\n");
        assert_eq!(
            body(&enc.encode(&msg(&[0xff, 0], &[]), "I")),
            "event: binary\ndata: /wA=\n\n"
        );
    }

    #[test]
    fn envelope_with_json_values() {
        let enc = MsgEncoder::new(
            PayloadMode::Envelope,
            ValueFormat::Json,
            EventNameConfig::default(),
            vec![],
        );
        let f = enc.encode(&msg(br#"{"n":1}"#, &[("a", "1")]), "I");
        let data = body(&f);
        let json: Value =
            serde_json::from_str(data.trim_end().rsplit_once("data: ").unwrap().1).unwrap();
        assert_eq!(
            json,
            json!({"stream": "ORDERS", "subject": "orders.eu", "seq": 42, "timestamp": 1_700_000_000_000i64,
                   "headers": [{"name": "a", "value": "1"}], "value": {"n": 1}})
        );
        let f = enc.encode(&msg(b"not json", &[]), "I");
        assert!(
            body(&f).contains(r#""value_text":"not json""#),
            "{}",
            body(&f)
        );
    }

    #[test]
    fn filters_read_the_subject_as_key_and_headers() {
        let enc = MsgEncoder::new(
            PayloadMode::Value,
            ValueFormat::Text,
            EventNameConfig::default(),
            vec![Selector::Key, Selector::Header("region".into())],
        );
        let m = msg(b"x", &[("region", "eu")]);
        let a = enc.attrs(&m, &enc.encode(&m, "I")).unwrap();
        assert_eq!(
            a.0,
            vec![
                Some(Bytes::from_static(b"orders.eu")),
                Some(Bytes::from_static(b"eu"))
            ]
        );
    }
}
