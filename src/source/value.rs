//! What record-like sources (Kafka, NATS) share: their payload modes (the record value
//! as-is, or a JSON envelope), the route settings those modes allow, and in envelopes
//! bytes as text or base64 and the value as text or embedded JSON (`value_format`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::RouteOptions;
use crate::problems::Problems;

/// What an event's `data:` carries on a record-like route (`payload = "..."`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordPayload {
    /// `value` (default): the record value as-is (UTF-8); other values are sent base64 as
    /// `event: binary`.
    Value,
    /// `envelope`: a JSON envelope with where the record was, its key or subject, its
    /// headers and its value.
    Envelope,
}

impl RecordPayload {
    /// The names a route may give, default first.
    pub const NAMES: &'static [&'static str] = &["value", "envelope"];

    /// The mode a route's `payload` names (`None`: the default; unknown names too, which
    /// validation reports).
    pub fn of(name: Option<&str>) -> RecordPayload {
        match name {
            Some("envelope") => RecordPayload::Envelope,
            _ => RecordPayload::Value,
        }
    }
}

/// Report the problems of a record-like route's own settings: an `event_name.default`
/// among the names the bridge gives events itself (`reserved`), a payload mode the
/// source lacks, a `value_format` without envelopes. `kind` names the source in
/// messages, `at` is the route's path.
pub fn validate_record_route(
    kind: &str,
    route: &RouteOptions,
    value_format: ValueFormat,
    reserved: &[&str],
    at: &str,
    p: &mut Problems,
) {
    if let Some(d) = &route.event_name.default {
        if reserved.contains(&d.as_str()) {
            p.push(
                format!("{at}.event_name.default"),
                format!("`{d}` is a name the bridge gives events itself"),
            );
        }
    }
    if let Some(mode) = &route.payload {
        if !RecordPayload::NAMES.contains(&mode.as_str()) {
            p.push(
                format!("{at}.payload"),
                format!("must be `value` or `envelope` for a {kind} source"),
            );
        }
    }
    if value_format != ValueFormat::Text
        && RecordPayload::of(route.payload.as_deref()) != RecordPayload::Envelope
    {
        p.push(
            format!("{at}.source.value_format"),
            "applies to `payload = \"envelope\"` only (in `value` mode the value is sent as-is)",
        );
    }
}

/// `value_format`: how an envelope (`payload = "envelope"`) carries the record value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueFormat {
    /// `"value"` is the value as a string (UTF-8; else `"value_base64"`). The default.
    #[default]
    Text,
    /// `"value"` is the value parsed as JSON; a value that is not JSON is never put
    /// there: it goes to `"value_text"` (or `"value_base64"`) instead.
    Json,
    /// `"value"` is the value parsed as JSON when it is JSON, else the value as a string.
    Auto,
}

/// Bytes as a JSON field: `name` when UTF-8, `name_base64` otherwise, null when absent.
pub fn put_bytes(obj: &mut Map<String, Value>, name: &str, bytes: Option<&[u8]>) {
    match bytes {
        None => {
            obj.insert(name.to_owned(), Value::Null);
        }
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) => {
                obj.insert(name.to_owned(), Value::String(s.to_owned()));
            }
            Err(_) => {
                obj.insert(format!("{name}_base64"), Value::String(STANDARD.encode(b)));
            }
        },
    }
}

/// A record's value as `format` says (an absent value, a tombstone, is null in every
/// format).
pub fn put_value(obj: &mut Map<String, Value>, format: ValueFormat, value: Option<&[u8]>) {
    let parsed = || value.and_then(|b| serde_json::from_slice::<Value>(b).ok());
    match format {
        ValueFormat::Text => put_bytes(obj, "value", value),
        _ if value.is_none() => put_bytes(obj, "value", None),
        ValueFormat::Json => match parsed() {
            Some(v) => {
                obj.insert("value".into(), v);
            }
            None => put_bytes(obj, "value_text", value),
        },
        ValueFormat::Auto => match parsed() {
            Some(v) => {
                obj.insert("value".into(), v);
            }
            None => put_bytes(obj, "value", value),
        },
    }
}
