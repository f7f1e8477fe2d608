//! What record-like sources (Kafka, NATS) share in their JSON envelopes: bytes as text
//! or base64, and the record value as text or embedded JSON (`value_format`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Deserialize;
use serde_json::{Map, Value};

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
