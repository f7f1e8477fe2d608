//! A row change as an SSE event: the event name is the operation (`insert`, `update`,
//! `delete`, `truncate`), `data:` is the change as JSON with column values typed from
//! the relation (`payload = "change"`, the default) or the row alone (`payload = "row"`).

use std::collections::HashSet;

use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Map, Number, Value};

use super::pgoutput::{Catalog, Datum, OldKind, Relation};
use crate::bus::{Attrs, Selector};
use crate::source::EventNameConfig;
use crate::sse::{self, Frame};

/// Names the bridge gives events itself, which `event_name.default` may not take.
pub const RESERVED: &[&str] = &["reset", "expired"];

/// What `data:` carries (`payload = "..."`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// `change` (default): `{schema, table, op, commit_lsn, commit_time, new, old, key}`.
    Change,
    /// `row`: the new row (a delete's old row or key; a truncate's table).
    Row,
}

impl Payload {
    /// The names a route may give, default first.
    pub const NAMES: &'static [&'static str] = &["change", "row"];

    pub fn of(name: Option<&str>) -> Payload {
        match name {
            Some("row") => Payload::Row,
            _ => Payload::Change,
        }
    }
}

/// The transaction a change belongs to.
#[derive(Debug, Clone, Copy)]
pub struct Txn {
    pub commit_lsn: u64,
    /// Microseconds since 2000-01-01 (PostgreSQL's epoch).
    pub commit_time_us: i64,
}

/// Microseconds from the Unix epoch to PostgreSQL's.
const PG_EPOCH_US: i64 = 946_684_800_000_000;

impl Txn {
    pub fn time_ms(&self) -> i64 {
        (self.commit_time_us + PG_EPOCH_US).div_euclid(1000)
    }
}

/// One row change.
pub struct Change<'a> {
    pub op: &'static str,
    pub rel: &'a Relation,
    pub new: Option<&'a [Datum]>,
    pub old: Option<(OldKind, &'a [Datum])>,
}

/// Encodes the changes of one route.
pub struct Encoder {
    pub payload: Payload,
    pub event_name: EventNameConfig,
    pub selectors: Vec<Selector>,
    /// Only changes of these tables, when some are named.
    pub tables: Option<HashSet<(String, String)>>,
}

impl Encoder {
    /// Whether the route serves changes of `rel`.
    pub fn wants(&self, rel: &Relation) -> bool {
        self.tables
            .as_ref()
            .is_none_or(|t| t.contains(&(rel.schema.clone(), rel.table.clone())))
    }

    /// The change as JSON (the `change` payload).
    pub fn change_json(&self, c: &Change, txn: &Txn, cat: &Catalog) -> Value {
        let row = |d: &[Datum]| row_json(c.rel, d, cat, false);
        let key_from = c.old.map(|(_, d)| d).filter(|_| c.op == "delete").or(c.new);
        json!({
            "schema": c.rel.schema,
            "table": c.rel.table,
            "op": c.op,
            "commit_lsn": super::PgPos::lsn_text(txn.commit_lsn),
            "commit_time": iso_ms(txn.time_ms()),
            "new": c.new.map(row),
            "old": c.old.filter(|(k, _)| *k == OldKind::Row).map(|(_, d)| row(d)),
            "key": key_from.map(|d| row_json(c.rel, d, cat, true)),
        })
    }

    /// The frame of change `c` under `id`, and the JSON selectors read.
    pub fn encode(&self, c: &Change, txn: &Txn, cat: &Catalog, id: &str) -> (Frame, Value) {
        let change = self.change_json(c, txn, cat);
        let data = match self.payload {
            Payload::Change => change.to_string(),
            Payload::Row => match (c.new, c.old) {
                (Some(_), _) => change["new"].to_string(),
                (None, Some(_)) if !change["old"].is_null() => change["old"].to_string(),
                (None, Some(_)) => change["key"].to_string(),
                (None, None) => json!({"schema": c.rel.schema, "table": c.rel.table}).to_string(),
            },
        };
        let name = self.event_name.default_or(c.op);
        (sse::frame(id, Some(name), Some(&data)), change)
    }

    /// What the route's selectors pick: `key` is `schema.table`, `field:PATH` a field of
    /// the change (`new.status`, `table`).
    pub fn attrs(&self, c: &Change, change: &Value, frame: &Frame) -> Option<Box<Attrs>> {
        Attrs::of(&self.selectors, frame, |s| match s {
            Selector::Key => Some(Bytes::from(format!("{}.{}", c.rel.schema, c.rel.table))),
            Selector::Field(path) => {
                let v = path.split('.').try_fold(change, |v, k| v.get(k))?;
                match v {
                    Value::String(s) => Some(Bytes::copy_from_slice(s.as_bytes())),
                    Value::Number(_) | Value::Bool(_) => Some(Bytes::from(v.to_string())),
                    _ => None,
                }
            }
            Selector::Header(_) | Selector::Event => None,
        })
    }
}

/// `ms` since the Unix epoch as ISO-8601 UTC with milliseconds.
fn iso_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

/// A row as a JSON object (`keys_only`: the replica identity's columns); columns whose
/// value the change did not carry (unchanged TOAST) are left out.
fn row_json(rel: &Relation, data: &[Datum], cat: &Catalog, keys_only: bool) -> Value {
    let mut obj = Map::new();
    for (col, d) in rel.columns.iter().zip(data) {
        if keys_only && !col.key {
            continue;
        }
        match d {
            Datum::Unchanged => {}
            Datum::Null => {
                obj.insert(col.name.clone(), Value::Null);
            }
            Datum::Text(t) => {
                obj.insert(col.name.clone(), value(col.type_oid, t, cat));
            }
        }
    }
    Value::Object(obj)
}

/// Most significant digits of a `numeric` sent as a JSON number (more stay a string,
/// exact).
const NUMERIC_DIGITS: usize = 15;

/// A column's text value as JSON, typed by its type.
pub fn value(type_oid: u32, text: &[u8], _cat: &Catalog) -> Value {
    let s = String::from_utf8_lossy(text);
    let string = || Value::String(s.clone().into_owned());
    match type_oid {
        // bool
        16 => match &*s {
            "t" => Value::Bool(true),
            "f" => Value::Bool(false),
            _ => string(),
        },
        // int8, int2, int4, oid, xid
        20 | 21 | 23 | 26 | 28 => s
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| string()),
        // float4, float8: NaN and infinities stay strings (JSON has no such numbers).
        700 | 701 => s
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map(Value::Number)
            .unwrap_or_else(string),
        // numeric: a number when a double holds it exactly enough.
        1700 => {
            let digits = s.chars().filter(char::is_ascii_digit).count();
            match s.parse::<f64>().ok().and_then(Number::from_f64) {
                Some(n) if digits <= NUMERIC_DIGITS => Value::Number(n),
                _ => string(),
            }
        }
        // json, jsonb: embedded.
        114 | 3802 => serde_json::from_slice(text).unwrap_or_else(|_| string()),
        // bytea (hex output): base64.
        17 => match s.strip_prefix("\\x").and_then(hex) {
            Some(b) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
            None => string(),
        },
        // timestamp: ISO-8601 without zone.
        1114 => Value::String(s.replacen(' ', "T", 1)),
        // timestamptz (the session is in UTC): ISO-8601 with the zone.
        1184 => Value::String(iso_tz(&s)),
        _ => string(),
    }
}

fn hex(h: &str) -> Option<Vec<u8>> {
    if !h.len().is_multiple_of(2) {
        return None;
    }
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(h.get(i..i + 2)?, 16).ok())
        .collect()
}

/// `2026-12-02 19:04:16.123+00` → `2026-12-02T19:04:16.123Z`; other offsets as `+hh:mm`.
fn iso_tz(s: &str) -> String {
    let t = s.replacen(' ', "T", 1);
    let Some(at) = t.rfind(['+', '-']).filter(|i| *i > 10) else {
        return t;
    };
    let (base, zone) = t.split_at(at);
    match zone.len() {
        3 if &zone[1..] == "00" => format!("{base}Z"),
        3 => format!("{base}{zone}:00"),
        _ => t.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_values() {
        let c = Catalog::default();
        let v = |oid, s: &str| value(oid, s.as_bytes(), &c);
        assert_eq!(v(16, "t"), json!(true));
        assert_eq!(v(23, "-42"), json!(-42));
        assert_eq!(v(20, "9007199254740993"), json!(9007199254740993i64));
        assert_eq!(v(701, "1.5"), json!(1.5));
        assert_eq!(v(701, "NaN"), json!("NaN"));
        assert_eq!(v(1700, "12.50"), json!(12.5));
        assert_eq!(v(1700, "12345678901234567.5"), json!("12345678901234567.5"));
        assert_eq!(v(3802, r#"{"a": [1, 2]}"#), json!({"a": [1, 2]}));
        assert_eq!(v(114, "not json"), json!("not json"));
        assert_eq!(v(17, "\\x00ff10"), json!("AP8Q"));
        assert_eq!(
            v(1114, "2026-12-02 19:04:16.5"),
            json!("2026-12-02T19:04:16.5")
        );
        assert_eq!(
            v(1184, "2026-12-02 19:04:16.5+00"),
            json!("2026-12-02T19:04:16.5Z")
        );
        assert_eq!(
            v(1184, "2026-12-02 19:04:16+05:30"),
            json!("2026-12-02T19:04:16+05:30")
        );
        assert_eq!(
            v(1184, "1999-01-08 04:05:06-08"),
            json!("1999-01-08T04:05:06-08:00")
        );
        assert_eq!(v(1082, "2026-12-02"), json!("2026-12-02"));
        assert_eq!(v(25, "text"), json!("text"));
    }

    #[test]
    fn commit_time() {
        let t = Txn {
            commit_lsn: 1,
            commit_time_us: 0,
        };
        assert_eq!(iso_ms(t.time_ms()), "2000-01-01T00:00:00.000Z");
    }
}
