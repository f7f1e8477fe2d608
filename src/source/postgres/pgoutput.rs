//! The row-change messages of PostgreSQL's `pgoutput` plugin (protocol version 1, text
//! values), as the replication stream carries them between a transaction's Begin and
//! Commit (which the replication client reads itself). See "Logical Replication
//! Message Formats" in PostgreSQL's documentation.

use std::collections::HashMap;

/// A column of a relation.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub type_oid: u32,
    /// Part of the replica identity (the key).
    pub key: bool,
}

/// A table as the stream describes it (sent before its first change, and again after
/// it changed).
#[derive(Debug, Clone, PartialEq)]
pub struct Relation {
    pub schema: String,
    pub table: String,
    pub columns: Vec<Column>,
}

/// One column value of a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Datum {
    Null,
    /// A TOASTed value the change did not touch (its value is not in the stream).
    Unchanged,
    Text(Vec<u8>),
}

/// A message of the stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Relation(u32, Relation),
    /// A user-defined type's namespace and name.
    Type(u32, String, String),
    Insert {
        rel: u32,
        new: Vec<Datum>,
    },
    Update {
        rel: u32,
        /// The old row (`REPLICA IDENTITY FULL`) or its old key, when sent.
        old: Option<(OldKind, Vec<Datum>)>,
        new: Vec<Datum>,
    },
    Delete {
        rel: u32,
        old: (OldKind, Vec<Datum>),
    },
    Truncate(Vec<u32>),
    /// Anything else (origin, logical messages): no row change.
    Other,
}

/// What an old tuple holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OldKind {
    /// The replica identity's columns only (others null).
    Key,
    /// The whole old row.
    Row,
}

struct Reader<'a>(&'a [u8]);

type R<T> = Result<T, String>;

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> R<&'a [u8]> {
        if self.0.len() < n {
            return Err("pgoutput: truncated message".into());
        }
        let (h, t) = self.0.split_at(n);
        self.0 = t;
        Ok(h)
    }
    fn u8(&mut self) -> R<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> R<u16> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> R<u32> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn string(&mut self) -> R<String> {
        let end = self
            .0
            .iter()
            .position(|b| *b == 0)
            .ok_or("pgoutput: unterminated string")?;
        let s = String::from_utf8_lossy(&self.0[..end]).into_owned();
        self.0 = &self.0[end + 1..];
        Ok(s)
    }
    fn tuple(&mut self) -> R<Vec<Datum>> {
        let n = self.u16()?;
        (0..n)
            .map(|_| match self.u8()? {
                b'n' => Ok(Datum::Null),
                b'u' => Ok(Datum::Unchanged),
                b't' => {
                    let len = self.u32()? as usize;
                    Ok(Datum::Text(self.take(len)?.to_vec()))
                }
                k => Err(format!("pgoutput: unexpected column kind {:?}", k as char)),
            })
            .collect()
    }
    fn old_kind(&mut self) -> R<OldKind> {
        match self.u8()? {
            b'K' => Ok(OldKind::Key),
            b'O' => Ok(OldKind::Row),
            k => Err(format!("pgoutput: unexpected old tuple {:?}", k as char)),
        }
    }
}

/// Parse one message.
pub fn parse(data: &[u8]) -> R<Message> {
    let mut r = Reader(data);
    Ok(match r.u8()? {
        b'R' => {
            let oid = r.u32()?;
            let schema = r.string()?;
            let table = r.string()?;
            let _identity = r.u8()?;
            let n = r.u16()?;
            let columns = (0..n)
                .map(|_| {
                    let flags = r.u8()?;
                    let name = r.string()?;
                    let type_oid = r.u32()?;
                    let _typmod = r.u32()?;
                    Ok(Column {
                        name,
                        type_oid,
                        key: flags & 1 == 1,
                    })
                })
                .collect::<R<Vec<_>>>()?;
            Message::Relation(
                oid,
                Relation {
                    schema,
                    table,
                    columns,
                },
            )
        }
        b'Y' => {
            let oid = r.u32()?;
            let ns = r.string()?;
            let name = r.string()?;
            Message::Type(oid, ns, name)
        }
        b'I' => {
            let rel = r.u32()?;
            if r.u8()? != b'N' {
                return Err("pgoutput: insert without a new tuple".into());
            }
            Message::Insert {
                rel,
                new: r.tuple()?,
            }
        }
        b'U' => {
            let rel = r.u32()?;
            let mut old = None;
            let mut tag = r.u8()?;
            if tag == b'K' || tag == b'O' {
                let kind = if tag == b'K' {
                    OldKind::Key
                } else {
                    OldKind::Row
                };
                old = Some((kind, r.tuple()?));
                tag = r.u8()?;
            }
            if tag != b'N' {
                return Err("pgoutput: update without a new tuple".into());
            }
            Message::Update {
                rel,
                old,
                new: r.tuple()?,
            }
        }
        b'D' => {
            let rel = r.u32()?;
            let kind = r.old_kind()?;
            Message::Delete {
                rel,
                old: (kind, r.tuple()?),
            }
        }
        b'T' => {
            let n = r.u32()?;
            let _options = r.u8()?;
            Message::Truncate((0..n).map(|_| r.u32()).collect::<R<Vec<_>>>()?)
        }
        _ => Message::Other,
    })
}

/// What a session has learnt of relations and types.
#[derive(Debug, Default)]
pub struct Catalog {
    pub relations: HashMap<u32, Relation>,
    /// User-defined types: oid → `schema.name`.
    pub types: HashMap<u32, String>,
}

impl Catalog {
    /// Learn from `m` (relations and types); true when it was one of those.
    pub fn learn(&mut self, m: &Message) -> bool {
        match m {
            Message::Relation(oid, r) => {
                self.relations.insert(*oid, r.clone());
                true
            }
            Message::Type(oid, ns, name) => {
                self.types.insert(*oid, format!("{ns}.{name}"));
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(out: &mut Vec<u8>, v: &str) {
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }

    #[test]
    fn relation_and_changes() {
        let mut m = vec![b'R'];
        m.extend_from_slice(&16384u32.to_be_bytes());
        s(&mut m, "public");
        s(&mut m, "orders");
        m.push(b'd');
        m.extend_from_slice(&2u16.to_be_bytes());
        m.push(1);
        s(&mut m, "id");
        m.extend_from_slice(&23u32.to_be_bytes());
        m.extend_from_slice(&(-1i32).to_be_bytes());
        m.push(0);
        s(&mut m, "note");
        m.extend_from_slice(&25u32.to_be_bytes());
        m.extend_from_slice(&(-1i32).to_be_bytes());
        let Message::Relation(16384, r) = parse(&m).unwrap() else {
            panic!()
        };
        assert_eq!((r.schema.as_str(), r.table.as_str()), ("public", "orders"));
        assert!(r.columns[0].key && !r.columns[1].key);

        let mut u = vec![b'U'];
        u.extend_from_slice(&16384u32.to_be_bytes());
        u.push(b'K');
        u.extend_from_slice(&2u16.to_be_bytes());
        u.extend_from_slice(&[b't', 0, 0, 0, 1, b'7', b'n']);
        u.push(b'N');
        u.extend_from_slice(&2u16.to_be_bytes());
        u.extend_from_slice(&[b't', 0, 0, 0, 1, b'8', b'u']);
        assert_eq!(
            parse(&u).unwrap(),
            Message::Update {
                rel: 16384,
                old: Some((OldKind::Key, vec![Datum::Text(b"7".to_vec()), Datum::Null])),
                new: vec![Datum::Text(b"8".to_vec()), Datum::Unchanged],
            }
        );
        assert!(parse(&u[..u.len() - 3]).is_err(), "truncated");

        let mut t = vec![b'T'];
        t.extend_from_slice(&2u32.to_be_bytes());
        t.push(0);
        t.extend_from_slice(&1u32.to_be_bytes());
        t.extend_from_slice(&2u32.to_be_bytes());
        assert_eq!(parse(&t).unwrap(), Message::Truncate(vec![1, 2]));
    }
}
