//! The SSE `id` wire form: the one place where positions become ids and ids become
//! positions. An id is `base64url-nopad([version][kind][payload])`; the kind byte names
//! the adapter and the payload is its position's binary form ([`Position::write_binary`]).
//! Decoding needs no server-side state, so any replica can resume any id. A multiplexed
//! stream's id is a composite of route ids ([`encode_multi`]).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::position::{Decode, Position};

/// Version byte of the current format.
pub const VERSION: u8 = 1;
/// Longest id accepted, in characters.
pub const MAX_ID_LEN: usize = 64 * 1024;

const KIND_MULTI: u8 = b'x';
/// Most routes in one composite id.
pub const MAX_MULTI: usize = 32;

/// A single route's id, its envelope checked: the adapter's kind byte and the payload it
/// reads its position from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawId {
    /// The adapter's kind byte.
    pub kind: u8,
    /// The position's binary form.
    pub payload: Vec<u8>,
}

impl RawId {
    /// The position of type `P` this id holds.
    pub fn parse<P: Decode>(&self) -> Result<P, IdError> {
        if self.kind != P::KIND {
            return Err(IdError::Kind);
        }
        P::read_binary(&self.payload).map_err(IdError::Payload)
    }
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
    /// Not of the kind the route reads (another source's, a composite id on a single
    /// route, or no kind at all).
    #[error("event id is not of this route's kind")]
    Kind,
    /// Payload malformed.
    #[error("event id payload is malformed: {0}")]
    Payload(&'static str),
    /// Empty id.
    #[error("event id is empty")]
    Empty,
}

/// The wire id of `p` (empty while no position is known).
pub fn encode(p: &dyn Position) -> String {
    if !p.is_known() {
        return String::new();
    }
    wire(p.kind(), |raw| p.write_binary(raw))
}

/// Decode a single route's id (not a composite one); never panics on any input.
pub fn decode(s: &str) -> Result<RawId, IdError> {
    let raw = raw_of(s)?;
    match raw.as_slice() {
        [] => Err(IdError::Empty),
        [VERSION, KIND_MULTI, ..] | [VERSION] => Err(IdError::Kind),
        [VERSION, kind, payload @ ..] => Ok(RawId {
            kind: *kind,
            payload: payload.to_vec(),
        }),
        [v, ..] => Err(IdError::Version(*v)),
    }
}

/// Decode an id of a position of type `P`; never panics on any input.
pub fn decode_as<P: Decode>(s: &str) -> Result<P, IdError> {
    decode(s)?.parse()
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
    use crate::position::{Accept, Step};
    use proptest::prelude::*;

    /// A position of the test's own: a list of numbers under kind `t`.
    #[derive(Debug, Clone, PartialEq)]
    struct Nums(Vec<u64>);

    impl Position for Nums {
        fn kind(&self) -> u8 {
            b't'
        }
        fn is_known(&self) -> bool {
            !self.0.is_empty()
        }
        fn write_binary(&self, out: &mut Vec<u8>) {
            for n in &self.0 {
                varint::put(out, *n);
            }
        }
        fn advance(&mut self, _: &Step) {}
        fn accept(&mut self, _: &Step, _: bool) -> Accept {
            Accept::Skip
        }
        fn same(&self, other: &dyn Position) -> bool {
            crate::position::downcast::<Nums>(other) == Some(self)
        }
    }

    impl Decode for Nums {
        const KIND: u8 = b't';
        fn read_binary(mut buf: &[u8]) -> Result<Nums, &'static str> {
            let mut v = Vec::new();
            while !buf.is_empty() {
                v.push(varint::get(&mut buf)?);
            }
            Ok(Nums(v))
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn round_trip(v in proptest::collection::vec(any::<u64>(), 1..20)) {
            let wire = encode(&Nums(v.clone()));
            prop_assert!(wire.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            prop_assert_eq!(decode_as::<Nums>(&wire), Ok(Nums(v)));
        }

        #[test]
        fn multi_round_trip(parts in proptest::collection::vec(("[a-z0-9_-]{1,20}", proptest::collection::vec(any::<u64>(), 1..8)), 0..6)) {
            let ids: Vec<(String, String)> = parts
                .iter()
                .map(|(n, p)| (n.clone(), encode(&Nums(p.clone()))))
                .collect();
            let wire = encode_multi(ids.iter().map(|(n, i)| (n.as_str(), i.as_str())));
            prop_assert_eq!(decode_multi(&wire).unwrap(), ids);
            prop_assert!(decode(&wire).is_err(), "not a single route's id");
        }

        #[test]
        fn multi_decoder_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..200), s in ".{0,100}") {
            let mut b = vec![VERSION, KIND_MULTI];
            b.extend(raw);
            let _ = decode_multi(&URL_SAFE_NO_PAD.encode(&b));
            let _ = decode_multi(&s);
        }

        #[test]
        fn garbage_strings_never_panic(s in ".{0,200}") {
            let _ = decode(&s);
        }

        #[test]
        fn zigzag_round_trip(v in any::<i64>()) {
            prop_assert_eq!(varint::unzigzag(varint::zigzag(v)), v);
        }
    }

    #[test]
    fn errors_are_specific() {
        assert_eq!(decode(""), Err(IdError::Empty));
        assert_eq!(decode("!!"), Err(IdError::NotBase64));
        assert_eq!(
            decode(&URL_SAFE_NO_PAD.encode([9u8, b'k'])),
            Err(IdError::Version(9))
        );
        assert_eq!(decode(&URL_SAFE_NO_PAD.encode([1u8])), Err(IdError::Kind));
        assert_eq!(
            decode_as::<Nums>(&URL_SAFE_NO_PAD.encode([1u8, b'z', 1])),
            Err(IdError::Kind),
            "another adapter's id"
        );
        assert!(matches!(
            decode_as::<Nums>(&URL_SAFE_NO_PAD.encode([1u8, b't', 0x80])),
            Err(IdError::Payload(_))
        ));
        assert_eq!(decode(&"A".repeat(MAX_ID_LEN + 1)), Err(IdError::TooLong));
        assert_eq!(
            decode(&URL_SAFE_NO_PAD.encode([1u8, b'z', 7])),
            Ok(RawId {
                kind: b'z',
                payload: vec![7]
            }),
            "the envelope is checked here, the payload by its adapter"
        );
    }

    #[test]
    fn unknown_position_encodes_empty() {
        assert_eq!(encode(&Nums(Vec::new())), "");
        assert_eq!(
            encode(&Nums(vec![1])),
            URL_SAFE_NO_PAD.encode([1u8, b't', 1])
        );
    }

    // Golden vector of the version-1 composite format (route ids are the golden Kafka and
    // MongoDB ids pinned in their adapters' position modules).

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
}
