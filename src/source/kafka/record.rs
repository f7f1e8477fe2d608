//! Turning a Kafka record into an SSE frame: event name, payload mode, tombstones and
//! binary values.

use std::borrow::Cow;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rdkafka::message::{Headers, Message};
use serde_json::{json, Map, Value};

use bytes::Bytes;

use crate::bus::{Attrs, Selector};
use crate::source::EventNameConfig;
use crate::source::{put_bytes, put_value, ValueFormat};
use crate::sse::{self, Frame};

pub use crate::source::RecordPayload as PayloadMode;

/// Event names the bridge gives events itself: a record's header never chooses them (it
/// gets [`EventNameConfig::reserved_prefix`] before it).
pub const RESERVED: &[&str] = &["reset", "expired", "binary", "delete"];

/// Encodes records of one route.
#[derive(Debug, Clone)]
pub struct RecordEncoder {
    payload: PayloadMode,
    value_format: ValueFormat,
    event_name: EventNameConfig,
    selectors: std::sync::Arc<[Selector]>,
}

impl RecordEncoder {
    /// An encoder for a route's payload mode and event naming.
    pub fn new(
        payload: PayloadMode,
        event_name: EventNameConfig,
        selectors: Vec<Selector>,
    ) -> RecordEncoder {
        RecordEncoder {
            payload,
            value_format: ValueFormat::Text,
            event_name,
            selectors: selectors.into(),
        }
    }

    /// The same encoder, carrying envelope values as `format` says.
    pub fn with_value_format(self, format: ValueFormat) -> RecordEncoder {
        RecordEncoder {
            value_format: format,
            ..self
        }
    }

    /// What the route's filters compare in `msg` (whose frame is `frame`); `None` on a
    /// route without filters.
    pub fn attrs<M: Message>(&self, msg: &M, frame: &Frame) -> Option<Box<Attrs>> {
        if self.selectors.is_empty() {
            return None;
        }
        Attrs::of(&self.selectors, frame, |s| match s {
            Selector::Key => msg.key().map(Bytes::copy_from_slice),
            Selector::Header(name) => msg.headers().and_then(|hs| {
                hs.iter()
                    .find(|h| h.key == name)
                    .and_then(|h| h.value.map(Bytes::copy_from_slice))
            }),
            Selector::Event | Selector::Field(_) => None,
        })
    }

    fn event_name<'a, M: Message>(&'a self, msg: &'a M) -> Cow<'a, str> {
        if let (Some(h), Some(headers)) = (&self.event_name.header, msg.headers()) {
            for hd in headers.iter() {
                if hd.key == h {
                    if let Some(v) = hd.value.and_then(|v| std::str::from_utf8(v).ok()) {
                        if RESERVED.contains(&v) {
                            return Cow::Owned(format!("{}{v}", self.event_name.reserved_prefix()));
                        }
                        if !v.is_empty() && !v.contains(['\r', '\n', '\0']) {
                            return Cow::Borrowed(v);
                        }
                    }
                }
            }
        }
        Cow::Borrowed(self.event_name.default_or("message"))
    }

    /// The frame of `msg` under `id`.
    pub fn encode<M: Message>(&self, msg: &M, id: &str) -> Frame {
        let tombstone = msg.payload().is_none();
        match self.payload {
            PayloadMode::Envelope => {
                let event = if tombstone {
                    Cow::Borrowed("delete")
                } else {
                    self.event_name(msg)
                };
                let data = self.envelope(msg).to_string();
                sse::frame(id, Some(&event), Some(&data))
            }
            PayloadMode::Value => {
                let bytes = if tombstone { msg.key() } else { msg.payload() };
                let named = || {
                    if tombstone {
                        Cow::Borrowed("delete")
                    } else {
                        self.event_name(msg)
                    }
                };
                let (event, data) = match bytes.map(std::str::from_utf8) {
                    None => (named(), String::new()),
                    Some(Ok(s)) => (named(), s.to_owned()),
                    Some(Err(_)) => (
                        Cow::Borrowed(if tombstone { "delete" } else { "binary" }),
                        STANDARD.encode(bytes.unwrap_or_default()),
                    ),
                };
                sse::frame(id, Some(&event), Some(&data))
            }
        }
    }

    fn envelope<M: Message>(&self, msg: &M) -> Value {
        let mut obj = Map::new();
        obj.insert("topic".into(), json!(msg.topic()));
        obj.insert("partition".into(), json!(msg.partition()));
        obj.insert("offset".into(), json!(msg.offset()));
        obj.insert("timestamp".into(), json!(msg.timestamp().to_millis()));
        put_bytes(&mut obj, "key", msg.key());
        let headers: Vec<Value> = msg
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| {
                        let mut o = Map::new();
                        o.insert("name".into(), json!(h.key));
                        put_bytes(&mut o, "value", h.value);
                        Value::Object(o)
                    })
                    .collect()
            })
            .unwrap_or_default();
        obj.insert("headers".into(), Value::Array(headers));
        put_value(&mut obj, self.value_format, msg.payload());
        Value::Object(obj)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{Header, OwnedHeaders, OwnedMessage, Timestamp};

    fn msg(
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: Option<OwnedHeaders>,
    ) -> OwnedMessage {
        OwnedMessage::new(
            value.map(<[u8]>::to_vec),
            key.map(<[u8]>::to_vec),
            "t".into(),
            Timestamp::CreateTime(1_700_000_000_000),
            2,
            41,
            headers,
        )
    }

    fn body(f: &Frame) -> String {
        String::from_utf8(f.body().to_vec()).unwrap()
    }

    #[test]
    fn value_mode_header_name_tombstone_binary() {
        let enc = RecordEncoder::new(
            PayloadMode::Value,
            EventNameConfig {
                header: Some("type".into()),
                default: None,
                reserved_prefix: None,
            },
            Vec::new(),
        );
        let h = OwnedHeaders::new().insert(Header {
            key: "type",
            value: Some("order"),
        });
        assert_eq!(
            body(&enc.encode(&msg(None, Some(b"a\nb"), Some(h)), "1")),
            "event: order\ndata: a\ndata: b\n\n"
        );
        assert_eq!(
            body(&enc.encode(&msg(None, Some(b"x"), None), "1")),
            "data: x\n\n"
        );
        assert_eq!(
            body(&enc.encode(&msg(Some(b"k1"), None, None), "1")),
            "event: delete\ndata: k1\n\n"
        );
        assert_eq!(
            body(&enc.encode(&msg(None, Some(&[0xff, 0x00]), None), "1")),
            "event: binary\ndata: /wA=\n\n"
        );
        let bad = OwnedHeaders::new().insert(Header {
            key: "type",
            value: Some("a\nb"),
        });
        assert_eq!(
            body(&enc.encode(&msg(None, Some(b"x"), Some(bad)), "1")),
            "data: x\n\n"
        );
    }

    #[test]
    fn reserved_names_from_headers_are_prefixed() {
        let named = |prefix: Option<&str>, v: &str| {
            let enc = RecordEncoder::new(
                PayloadMode::Value,
                EventNameConfig {
                    header: Some("type".into()),
                    default: None,
                    reserved_prefix: prefix.map(str::to_owned),
                },
                Vec::new(),
            );
            let h = OwnedHeaders::new().insert(Header {
                key: "type",
                value: Some(v),
            });
            body(&enc.encode(&msg(None, Some(b"x"), Some(h)), "1"))
        };
        for r in RESERVED {
            assert_eq!(named(None, r), format!("event: record.{r}\ndata: x\n\n"));
        }
        assert_eq!(
            named(Some("kafka-"), "reset"),
            "event: kafka-reset\ndata: x\n\n"
        );
        assert_eq!(named(None, "resets"), "event: resets\ndata: x\n\n");
    }

    #[test]
    fn payload_mode_names() {
        assert_eq!(PayloadMode::of(None), PayloadMode::Value, "the default");
        assert_eq!(PayloadMode::of(Some("value")), PayloadMode::Value);
        assert_eq!(PayloadMode::of(Some("envelope")), PayloadMode::Envelope);
        assert_eq!(PayloadMode::NAMES, ["value", "envelope"]);
    }

    #[test]
    fn envelope_value_formats() {
        let data = |format: ValueFormat, value: Option<&[u8]>| -> Value {
            let enc = RecordEncoder::new(
                PayloadMode::Envelope,
                EventNameConfig::default(),
                Vec::new(),
            )
            .with_value_format(format);
            let f = enc.encode(&msg(None, value, None), "1");
            let text = body(&f);
            let line = text.lines().find(|l| l.starts_with("data: ")).unwrap();
            serde_json::from_str(&line["data: ".len()..]).unwrap()
        };
        let obj = br#"{"a":[1,2]}"#;
        // text: the value as a string, as before.
        assert_eq!(
            data(ValueFormat::Text, Some(obj))["value"],
            r#"{"a":[1,2]}"#
        );
        // json: embedded; not JSON → value_text (or value_base64), never value.
        assert_eq!(
            data(ValueFormat::Json, Some(obj))["value"],
            json!({"a": [1, 2]})
        );
        let not_json = data(ValueFormat::Json, Some(b"hello"));
        assert_eq!(not_json.get("value"), None);
        assert_eq!(not_json["value_text"], "hello");
        let binary = data(ValueFormat::Json, Some(&[0xff]));
        assert_eq!(
            (binary.get("value"), &binary["value_text_base64"]),
            (None, &json!("/w=="))
        );
        // auto: embedded when JSON, else a string.
        assert_eq!(data(ValueFormat::Auto, Some(b"42"))["value"], 42);
        assert_eq!(data(ValueFormat::Auto, Some(b"hello"))["value"], "hello");
        // Tombstones: null in every format.
        for f in [ValueFormat::Text, ValueFormat::Json, ValueFormat::Auto] {
            assert_eq!(data(f, None)["value"], Value::Null);
        }
    }

    #[test]
    fn envelope_mode() {
        let enc = RecordEncoder::new(
            PayloadMode::Envelope,
            EventNameConfig::default(),
            Vec::new(),
        );
        let h = OwnedHeaders::new().insert(Header {
            key: "h",
            value: Some(&[0xfe][..]),
        });
        let f = enc.encode(&msg(Some(b"k"), Some(&[0xff]), Some(h)), "1");
        let data = body(&f);
        let json: Value =
            serde_json::from_str(data.trim_start_matches("data: ").trim_end()).unwrap();
        assert_eq!(json["topic"], "t");
        assert_eq!(json["partition"], 2);
        assert_eq!(json["offset"], 41);
        assert_eq!(json["timestamp"], 1_700_000_000_000i64);
        assert_eq!(json["key"], "k");
        assert_eq!(json["value_base64"], "/w==");
        assert_eq!(json["headers"][0]["name"], "h");
        assert_eq!(json["headers"][0]["value_base64"], "/g==");
        let t = enc.encode(&msg(Some(b"k"), None, None), "1");
        assert!(body(&t).starts_with("event: delete\n"));
    }
}
