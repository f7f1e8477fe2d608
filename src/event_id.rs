//! The SSE `id` wire form: the one place where positions become ids and ids become
//! positions. An id is `base64url-nopad([version][kind][payload])`; the payload is the
//! source's own binary position (see `source::kafka::position`). Decoding needs no
//! server-side state, so any replica can resume any id.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::source::kafka::KafkaPosition;
use crate::source::mongo::MongoToken;

/// Version byte of the current format.
pub const VERSION: u8 = 1;
/// Longest id accepted, in characters.
pub const MAX_ID_LEN: usize = 64 * 1024;

const KIND_KAFKA: u8 = b'k';
const KIND_MONGO: u8 = b'm';
const KIND_MULTI: u8 = b'x';
/// Most routes in one composite id.
pub const MAX_MULTI: usize = 32;

/// A decoded event id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventId {
    /// Next offset of every partition of every topic of a Kafka route.
    Kafka(KafkaPosition),
    /// A MongoDB change stream resume token (opaque BSON).
    Mongo(MongoToken),
}

/// Why an id could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Longer than [`MAX_ID_LEN`].
    #[error("event id is longer than {MAX_ID_LEN} characters")]
    TooLong,
    /// Not base64url.
    #[error("event id is not base64url")]
    NotBase64,
    /// Empty or unknown version byte.
    #[error("event id has unsupported version {0}")]
    Version(u8),
    /// Unknown source kind.
    #[error("event id is of an unknown kind")]
    Kind,
    /// Payload malformed.
    #[error("event id payload is malformed: {0}")]
    Payload(&'static str),
    /// Empty id.
    #[error("event id is empty")]
    Empty,
}

impl EventId {
    /// Encode to the wire form.
    pub fn encode(&self) -> String {
        match self {
            EventId::Kafka(p) => encode_kafka(p),
            EventId::Mongo(t) => wire(KIND_MONGO, |raw| raw.extend_from_slice(&t.0)),
        }
    }

    /// Decode the wire form; never panics on any input.
    pub fn decode(s: &str) -> Result<EventId, IdError> {
        let raw = raw_of(s)?;
        match raw.as_slice() {
            [] => Err(IdError::Empty),
            [VERSION, KIND_KAFKA, rest @ ..] => KafkaPosition::read_binary(rest)
                .map(EventId::Kafka)
                .map_err(IdError::Payload),
            [VERSION, KIND_MONGO, rest @ ..] => MongoToken::read_binary(rest)
                .map(EventId::Mongo)
                .map_err(IdError::Payload),
            [VERSION, ..] => Err(IdError::Kind),
            [v, ..] => Err(IdError::Version(*v)),
        }
    }
}

/// The bytes of a wire id (length and alphabet checked).
fn raw_of(s: &str) -> Result<Vec<u8>, IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s.len() > MAX_ID_LEN {
        return Err(IdError::TooLong);
    }
    URL_SAFE_NO_PAD
        .decode(s.as_bytes())
        .map_err(|_| IdError::NotBase64)
}

/// The composite id of a multiplexed stream: each route's name with its own id (ids that
/// are not valid wire ids are left out; such a route starts afresh on resume).
pub fn encode_multi<'a>(parts: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let parts: Vec<(&str, Vec<u8>)> = parts
        .into_iter()
        .filter_map(|(name, id)| Some((name, URL_SAFE_NO_PAD.decode(id).ok()?)))
        .filter(|(_, raw)| !raw.is_empty())
        .collect();
    wire(KIND_MULTI, |raw| {
        varint::put(raw, parts.len() as u64);
        for (name, id) in &parts {
            varint::put(raw, name.len() as u64);
            raw.extend_from_slice(name.as_bytes());
            varint::put(raw, id.len() as u64);
            raw.extend_from_slice(id);
        }
    })
}

/// Decode a composite id into (route name, route id) pairs; never panics on any input.
pub fn decode_multi(s: &str) -> Result<Vec<(String, String)>, IdError> {
    let raw = raw_of(s)?;
    let mut rest = match raw.as_slice() {
        [VERSION, KIND_MULTI, rest @ ..] => rest,
        [VERSION, ..] => return Err(IdError::Kind),
        [v, ..] => return Err(IdError::Version(*v)),
        [] => return Err(IdError::Empty),
    };
    let n = varint::get(&mut rest).map_err(IdError::Payload)?;
    if n > MAX_MULTI as u64 {
        return Err(IdError::Payload("too many routes"));
    }
    let take = |rest: &mut &[u8]| -> Result<Vec<u8>, IdError> {
        let len = varint::get(rest).map_err(IdError::Payload)? as usize;
        if len > rest.len() {
            return Err(IdError::Payload("truncated"));
        }
        let (v, r) = rest.split_at(len);
        *rest = r;
        Ok(v.to_vec())
    };
    let mut out = Vec::new();
    for _ in 0..n {
        let name = String::from_utf8(take(&mut rest)?)
            .map_err(|_| IdError::Payload("route name is not UTF-8"))?;
        let id = URL_SAFE_NO_PAD.encode(take(&mut rest)?);
        out.push((name, id));
    }
    if !rest.is_empty() {
        return Err(IdError::Payload("trailing bytes"));
    }
    Ok(out)
}

/// The wire id of a Kafka position, without copying it into an [`EventId`] (the hot
/// path encodes one per record).
pub fn encode_kafka(p: &KafkaPosition) -> String {
    wire(KIND_KAFKA, |raw| p.write_binary(raw))
}

fn wire(kind: u8, payload: impl FnOnce(&mut Vec<u8>)) -> String {
    let mut raw = Vec::with_capacity(32);
    raw.push(VERSION);
    raw.push(kind);
    payload(&mut raw);
    URL_SAFE_NO_PAD.encode(raw)
}

/// Unsigned LEB128 varint helpers shared by the binary position formats.
pub(crate) mod varint {
    /// Append `v`.
    pub fn put(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// Read one varint from the front of `buf`, advancing it.
    pub fn get(buf: &mut &[u8]) -> Result<u64, &'static str> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = buf.split_first().ok_or("truncated varint")?;
            *buf = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                if shift == 63 && b > 1 {
                    return Err("varint overflow");
                }
                return Ok(v);
            }
        }
        Err("varint too long")
    }

    /// Zigzag-encode a signed value.
    pub fn zigzag(v: i64) -> u64 {
        ((v << 1) ^ (v >> 63)) as u64
    }

    /// Inverse of [`zigzag`].
    pub fn unzigzag(v: u64) -> i64 {
        ((v >> 1) as i64) ^ -((v & 1) as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::kafka::UNKNOWN;
    use proptest::prelude::*;

    fn kafka_pos() -> impl Strategy<Value = KafkaPosition> {
        proptest::collection::vec(
            (
                "[a-zA-Z0-9._-]{1,40}",
                proptest::collection::vec(0i64..i64::MAX / 2, 0..20),
            ),
            0..6,
        )
        .prop_map(KafkaPosition::from_topics)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn kafka_round_trip(p in kafka_pos()) {
            let id = EventId::Kafka(p);
            let wire = id.encode();
            prop_assert!(wire.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            prop_assert_eq!(EventId::decode(&wire).unwrap(), id);
        }

        #[test]
        fn multi_round_trip(parts in proptest::collection::vec(("[a-z0-9_-]{1,20}", kafka_pos()), 0..6)) {
            let ids: Vec<(String, String)> = parts
                .iter()
                .map(|(n, p)| (n.clone(), EventId::Kafka(p.clone()).encode()))
                .collect();
            let wire = encode_multi(ids.iter().map(|(n, i)| (n.as_str(), i.as_str())));
            prop_assert_eq!(decode_multi(&wire).unwrap(), ids);
            prop_assert!(EventId::decode(&wire).is_err(), "not a single route's id");
        }

        #[test]
        fn multi_decoder_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..200), s in ".{0,100}") {
            let mut b = vec![VERSION, KIND_MULTI];
            b.extend(raw);
            let _ = decode_multi(&URL_SAFE_NO_PAD.encode(&b));
            let _ = decode_multi(&s);
        }

        #[test]
        fn mongo_round_trip(data in "[0-9A-F]{0,200}", extra in any::<i64>()) {
            let d = mongodb::bson::doc! { "_data": data, "x": extra };
            let id = EventId::Mongo(MongoToken::from_document(&d).unwrap());
            let wire = id.encode();
            prop_assert!(wire.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            prop_assert_eq!(EventId::decode(&wire).unwrap(), id);
        }

        #[test]
        fn garbage_mongo_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut raw = vec![VERSION, KIND_MONGO];
            raw.extend(b);
            let _ = EventId::decode(&URL_SAFE_NO_PAD.encode(raw));
        }

        #[test]
        fn garbage_strings_never_panic(s in ".{0,200}") {
            let _ = EventId::decode(&s);
        }

        #[test]
        fn garbage_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut raw = vec![VERSION, KIND_KAFKA];
            raw.extend(b);
            let _ = EventId::decode(&URL_SAFE_NO_PAD.encode(raw));
        }

        #[test]
        fn zigzag_round_trip(v in any::<i64>()) {
            prop_assert_eq!(varint::unzigzag(varint::zigzag(v)), v);
        }
    }

    #[test]
    fn errors_are_specific() {
        assert_eq!(EventId::decode(""), Err(IdError::Empty));
        assert_eq!(EventId::decode("!!"), Err(IdError::NotBase64));
        assert_eq!(
            EventId::decode(&URL_SAFE_NO_PAD.encode([9u8, b'k'])),
            Err(IdError::Version(9))
        );
        assert_eq!(
            EventId::decode(&URL_SAFE_NO_PAD.encode([1u8, b'z'])),
            Err(IdError::Kind)
        );
        assert!(matches!(
            EventId::decode(&URL_SAFE_NO_PAD.encode([1u8, b'k', 5])),
            Err(IdError::Payload(_))
        ));
        assert_eq!(
            EventId::decode(&"A".repeat(MAX_ID_LEN + 1)),
            Err(IdError::TooLong)
        );
    }

    // Golden vectors of the version-1 wire format. The bytes are written out by hand from
    // the format documented in README.md ("Wire format (version 1)"); a change to any of
    // them changes every id clients hold, so these tests must only ever gain vectors.

    /// `EventId` encodes to exactly `wire`, whose bytes are exactly `raw`, and decodes back.
    fn assert_golden(id: &EventId, raw: &[u8], wire: &str) {
        assert_eq!(
            URL_SAFE_NO_PAD.encode(raw),
            wire,
            "golden bytes vs golden string"
        );
        assert_eq!(id.encode(), wire, "encode");
        assert_eq!(EventId::decode(wire).as_ref(), Ok(id), "decode");
    }

    #[test]
    fn golden_kafka_readme_example() {
        // README: "For a 3-partition topic `orders` an id is about 20 characters".
        const RAW: [u8; 14] = [
            0x01, // version 1
            b'k', // kind: Kafka
            0x01, // varint topic count = 1
            0x06, // varint name length = 6
            b'o', b'r', b'd', b'e', b'r', b's', // "orders"
            0x03, // varint partition count = 3
            0x12, // zigzag(9 - 0) = 18: partition 0 at 9
            0x01, // zigzag(8 - 9) = zigzag(-1) = 1: partition 1 at 8
            0x0f, // zigzag(0 - 8) = zigzag(-8) = 15: partition 2 at 0
        ];
        let id = EventId::Kafka(KafkaPosition::from_topics(vec![(
            "orders".into(),
            vec![9, 8, 0],
        )]));
        assert_golden(&id, &RAW, "AWsBBm9yZGVycwMSAQ8");
    }

    #[test]
    fn golden_kafka_two_topics_large_offset_and_unknown() {
        const RAW: [u8; 28] = [
            0x01, // version 1
            b'k', // kind: Kafka
            0x02, // varint topic count = 2
            0x03, // varint name length = 3
            b'p', b'a', b'y', // "pay"
            0x03, // varint partition count = 3
            // zigzag(1_000_000_000_000 - 0) = 2_000_000_000_000, LEB128 in 6 bytes
            0x80, 0xc0, 0xa8, 0xca, 0x9a, 0x3a,
            // zigzag(-1 - 1_000_000_000_000) = 2_000_000_000_001: partition 1 UNKNOWN
            0x81, 0xc0, 0xa8, 0xca, 0x9a, 0x3a,
            0x56, // zigzag(42 - (-1)) = 86: partition 2 at 42
            0x02, // varint name length = 2
            b'e', b'v', // "ev"
            0x02, // varint partition count = 2
            0x01, // zigzag(-1 - 0) = 1: partition 0 UNKNOWN
            0xda, 0x04, // zigzag(300 - (-1)) = 602 = 0x25a, LEB128: partition 1 at 300
        ];
        let id = EventId::Kafka(KafkaPosition::from_topics(vec![
            ("pay".into(), vec![1_000_000_000_000, UNKNOWN, 42]),
            ("ev".into(), vec![UNKNOWN, 300]),
        ]));
        assert_golden(&id, &RAW, "AWsCA3BheQOAwKjKmjqBwKjKmjpWAmV2AgHaBA");
    }

    /// The BSON of `{"_data": "8263A1B2C3000000012B0229296E04"}`, as a resume token.
    const MONGO_TOKEN_BSON: [u8; 47] = [
        0x2f, 0x00, 0x00, 0x00, // int32 LE document length = 47
        0x02, // element type: UTF-8 string
        b'_', b'd', b'a', b't', b'a', 0x00, // cstring "_data"
        0x1f, 0x00, 0x00, 0x00, // int32 LE string length = 30 + NUL
        b'8', b'2', b'6', b'3', b'A', b'1', b'B', b'2', b'C', b'3', b'0', b'0', b'0', b'0', b'0',
        b'0', b'0', b'1', b'2', b'B', b'0', b'2', b'2', b'9', b'2', b'9', b'6', b'E', b'0', b'4',
        0x00, // the string and its NUL
        0x00, // end of document
    ];
    const MONGO_WIRE: &str = "AW0vAAAAAl9kYXRhAB8AAAA4MjYzQTFCMkMzMDAwMDAwMDEyQjAyMjkyOTZFMDQAAA";

    #[test]
    fn golden_mongo_token() {
        let d = mongodb::bson::doc! { "_data": "8263A1B2C3000000012B0229296E04" };
        let token = MongoToken::from_document(&d).unwrap();
        assert_eq!(
            token.0, MONGO_TOKEN_BSON,
            "token is the BSON document, byte for byte"
        );
        let mut raw = vec![0x01, b'm']; // version 1, kind: MongoDB
        raw.extend_from_slice(&MONGO_TOKEN_BSON); // payload: the token's BSON, as is
        assert_golden(&EventId::Mongo(token), &raw, MONGO_WIRE);
    }

    #[test]
    fn golden_multi_of_two_routes() {
        let mut raw = vec![
            0x01, // version 1
            b'x', // kind: composite
            0x02, // varint route count = 2
            0x06, // varint route name length = 6
            b'o', b'r', b'd', b'e', b'r', b's', // "orders"
            0x0e, // varint id length = 14: the route's raw id, version and kind included
            0x01, b'k', 0x01, 0x06, b'o', b'r', b'd', b'e', b'r', b's', 0x03, 0x12, 0x01, 0x0f,
            0x05, // varint route name length = 5
            b'a', b'u', b'd', b'i', b't', // "audit"
            0x31, // varint id length = 49
            0x01, b'm', // the route's raw id: version 1, kind MongoDB, ...
        ];
        raw.extend_from_slice(&MONGO_TOKEN_BSON); // ... and the token
        let wire = "AXgCBm9yZGVycw4BawEGb3JkZXJzAxIBDwVhdWRpdDEBbS8AAAACX2RhdGEAHwAAADgyNjNBMUIyQzMwMDAwMDAwMTJCMDIyOTI5NkUwNAAA";
        assert_eq!(
            URL_SAFE_NO_PAD.encode(&raw),
            wire,
            "golden bytes vs golden string"
        );
        let parts = [("orders", "AWsBBm9yZGVycwMSAQ8"), ("audit", MONGO_WIRE)];
        assert_eq!(encode_multi(parts), wire, "encode");
        let decoded = decode_multi(wire).unwrap();
        let want: Vec<(String, String)> = parts
            .iter()
            .map(|(n, i)| (n.to_string(), i.to_string()))
            .collect();
        assert_eq!(decoded, want, "decode");
    }

    #[test]
    fn compact_for_three_partitions() {
        let p =
            KafkaPosition::from_topics(vec![("orders".into(), vec![120_345, 120_401, 119_998])]);
        let wire = EventId::Kafka(p).encode();
        assert!(wire.len() <= 32, "{wire} is {} chars", wire.len());
    }
}
