//! [`MongoToken`]: a change stream resume token, kept opaque: its raw BSON bytes are the
//! payload of a MongoDB event id (see `crate::event_id`); it is never parsed. Changes are
//! totally ordered, so a client either has joined the route's stream (every later event
//! is new to it) or is still looking for its token; [`Position::accept`] is that rule.

use bytes::Bytes;
use mongodb::bson::{self, Bson, Document};
use mongodb::change_stream::event::ResumeToken;

use crate::position::{Accept, Decode, Position, Step};

/// Kind byte of MongoDB event ids.
pub const KIND: u8 = b'm';

/// Longest token accepted, in bytes.
const MAX_TOKEN: usize = 16 * 1024;

/// A resume token as raw BSON bytes (one document); empty before the first is known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MongoToken(pub Bytes);

impl MongoToken {
    /// From the driver's token.
    pub fn from_resume_token(t: &ResumeToken) -> Option<MongoToken> {
        match bson::to_bson(t).ok()? {
            Bson::Document(d) => bson::to_vec(&d).ok().map(|v| MongoToken(v.into())),
            _ => None,
        }
    }

    /// From the `_id` of a change event.
    pub fn from_document(d: &Document) -> Option<MongoToken> {
        bson::to_vec(d).ok().map(|v| MongoToken(v.into()))
    }

    /// To the driver's token.
    pub fn to_resume_token(&self) -> Option<ResumeToken> {
        let d = Document::from_reader(&self.0[..]).ok()?;
        bson::from_bson(Bson::Document(d)).ok()
    }

    /// Check the payload is one well-formed BSON document (contents stay opaque).
    pub fn read_binary(buf: &[u8]) -> Result<MongoToken, &'static str> {
        if buf.len() < 5 || buf.len() > MAX_TOKEN {
            return Err("bad token length");
        }
        let declared = i32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
        if declared < 5 || declared as usize != buf.len() {
            return Err("token length mismatch");
        }
        Document::from_reader(buf).map_err(|_| "token is not a BSON document")?;
        Ok(MongoToken(Bytes::copy_from_slice(buf)))
    }
}

impl MongoToken {
    /// The step of a change event whose token is this one.
    pub fn step(&self) -> Step {
        Step::Token(self.0.clone())
    }
}

impl MongoToken {
    /// The MongoToken behind `p`, if it is one (a route's hub and cursors only hold this
    /// adapter's positions).
    pub fn of(p: &dyn Position) -> Option<&MongoToken> {
        p.as_any().downcast_ref::<MongoToken>()
    }
}

impl Position for MongoToken {
    fn kind(&self) -> u8 {
        KIND
    }

    fn is_known(&self) -> bool {
        !self.0.is_empty()
    }

    fn write_binary(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }

    fn advance(&mut self, step: &Step) {
        if let Step::Token(t) | Step::TokenRestart(t) = step {
            self.0 = t.clone();
        }
    }

    fn accept(&mut self, step: &Step, joined: bool) -> Accept {
        match step {
            Step::Token(t) | Step::TokenRestart(t) if joined => {
                self.0 = t.clone();
                Accept::Take
            }
            // A reset always reaches the client, which continues from it.
            Step::TokenRestart(t) => {
                self.0 = t.clone();
                Accept::TakeAndJoin
            }
            // Looking for the event the client already has: everything up to it is old.
            Step::Token(t) if *t == self.0 => Accept::Join,
            Step::Token(_) | Step::Record { .. } | Step::Restart { .. } => Accept::Skip,
        }
    }

    fn same(&self, other: &dyn Position) -> bool {
        MongoToken::of(other) == Some(self)
    }
}

impl Decode for MongoToken {
    const KIND: u8 = KIND;

    fn read_binary(buf: &[u8]) -> Result<MongoToken, &'static str> {
        MongoToken::read_binary(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_id::{decode_as, encode, VERSION};
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use mongodb::bson::doc;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn id_round_trip(data in "[0-9A-F]{0,200}", extra in any::<i64>()) {
            let d = doc! { "_data": data, "x": extra };
            let t = MongoToken::from_document(&d).unwrap();
            let wire = encode(&t);
            prop_assert!(wire.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            prop_assert_eq!(decode_as::<MongoToken>(&wire).unwrap(), t);
        }

        #[test]
        fn garbage_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut raw = vec![VERSION, KIND];
            raw.extend(b);
            let _ = decode_as::<MongoToken>(&URL_SAFE_NO_PAD.encode(raw));
        }
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

    /// Golden vector of the version-1 wire format (see README.md "Wire format").
    #[test]
    fn golden_mongo_token() {
        let d = doc! { "_data": "8263A1B2C3000000012B0229296E04" };
        let token = MongoToken::from_document(&d).unwrap();
        assert_eq!(
            &token.0[..],
            &MONGO_TOKEN_BSON[..],
            "token is the BSON document, byte for byte"
        );
        let mut raw = vec![0x01, b'm']; // version 1, kind: MongoDB
        raw.extend_from_slice(&MONGO_TOKEN_BSON); // payload: the token's BSON, as is
        assert_eq!(
            URL_SAFE_NO_PAD.encode(&raw),
            MONGO_WIRE,
            "golden bytes vs golden string"
        );
        assert_eq!(encode(&token), MONGO_WIRE, "encode");
        assert_eq!(decode_as::<MongoToken>(MONGO_WIRE), Ok(token), "decode");
        assert_eq!(encode(&MongoToken::default()), "", "no token yet: no id");
    }

    fn tok(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    #[test]
    fn skips_until_its_token_then_takes_everything() {
        let mut c = MongoToken(tok("b"));
        assert_eq!(c.accept(&Step::Token(tok("a")), false), Accept::Skip);
        assert_eq!(c.accept(&Step::Token(tok("b")), false), Accept::Join);
        assert_eq!(c.accept(&Step::Token(tok("c")), true), Accept::Take);
        assert_eq!(c.0, tok("c"));
        let mut lost = MongoToken(tok("zz"));
        assert_eq!(
            lost.accept(&Step::TokenRestart(tok("r")), false),
            Accept::TakeAndJoin,
            "a reset always reaches the client"
        );
        assert_eq!(lost.0, tok("r"));
    }

    #[test]
    fn resume_token_round_trip() {
        let d = doc! { "_data": "8263A1B2C3000000012B0229296E04" };
        let t = MongoToken::from_document(&d).unwrap();
        let rt = t.to_resume_token().unwrap();
        assert_eq!(MongoToken::from_resume_token(&rt).unwrap(), t);
        assert_eq!(MongoToken::read_binary(&t.0).unwrap(), t);
        assert!(MongoToken::read_binary(&t.0[..t.0.len() - 1]).is_err());
        assert!(MongoToken::read_binary(b"\x05\x00\x00\x00\x01").is_err());
    }
}
