//! [`MongoToken`]: a change stream resume token, kept opaque: its raw BSON bytes are the
//! payload of a MongoDB event id (see `crate::event_id`); it is never parsed.

use mongodb::bson::{self, Bson, Document};
use mongodb::change_stream::event::ResumeToken;

/// Longest token accepted, in bytes.
const MAX_TOKEN: usize = 16 * 1024;

/// A resume token as raw BSON bytes (one document).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MongoToken(pub Vec<u8>);

impl MongoToken {
    /// From the driver's token.
    pub fn from_resume_token(t: &ResumeToken) -> Option<MongoToken> {
        match bson::to_bson(t).ok()? {
            Bson::Document(d) => bson::to_vec(&d).ok().map(MongoToken),
            _ => None,
        }
    }

    /// From the `_id` of a change event.
    pub fn from_document(d: &Document) -> Option<MongoToken> {
        bson::to_vec(d).ok().map(MongoToken)
    }

    /// To the driver's token.
    pub fn to_resume_token(&self) -> Option<ResumeToken> {
        let d = Document::from_reader(self.0.as_slice()).ok()?;
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
        Ok(MongoToken(buf.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::doc;

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
