//! SSE framing (WHATWG "server-sent events"): every frame is built here. A frame is
//! `id:` first (so a frame body can be re-used under another id), then `event:`, then one
//! `data:` line per line of the payload. LF, CR and CRLF in a payload all split lines,
//! and a conforming parser joins them with LF; see [`data_is_exact`].

use bytes::{BufMut, Bytes, BytesMut};

/// A spec parser reading streams as a browser does: for tests and the load generator only
/// (feature `test-support`), never used by the service itself.
#[cfg(any(test, feature = "test-support"))]
pub mod parse;

/// A frame: the whole encoded event, and where its body (after the `id:` line) starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// `id: ...\n` + body.
    pub bytes: Bytes,
    /// Index of the first byte after the `id:` line.
    pub body_start: usize,
}

impl Frame {
    /// The frame without its `id:` line.
    pub fn body(&self) -> Bytes {
        self.bytes.slice(self.body_start..)
    }
}

/// Encode an event. `event` of `None` or `"message"` sends no `event:` line. `data` of
/// `None` sends no `data:` line (the event updates the last event id but does not fire).
pub fn frame(id: &str, event: Option<&str>, data: Option<&str>) -> Frame {
    let data_len = data.map_or(0, |d| d.len() + 8 * (1 + line_count(d)));
    let mut b =
        BytesMut::with_capacity(id.len() + 6 + event.map_or(0, |e| e.len() + 8) + data_len + 1);
    b.put_slice(b"id: ");
    b.put_slice(id.as_bytes());
    b.put_u8(b'\n');
    let body_start = b.len();
    if let Some(e) = event.filter(|e| *e != "message") {
        b.put_slice(b"event: ");
        b.put_slice(e.as_bytes());
        b.put_u8(b'\n');
    }
    if let Some(d) = data {
        put_data(&mut b, d);
    }
    b.put_u8(b'\n');
    Frame {
        bytes: b.freeze(),
        body_start,
    }
}

/// The `id:` line for `id`, to put before a shared frame body.
pub fn id_line(id: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(id.len() + 5);
    b.put_slice(b"id: ");
    b.put_slice(id.as_bytes());
    b.put_u8(b'\n');
    b.freeze()
}

/// A heartbeat: an id-only event carrying `id` (updates the browser's last event id
/// without firing `onmessage`), preceded by a comment so proxies see traffic.
pub fn heartbeat(id: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(id.len() + 10);
    b.put_slice(b":\nid: ");
    b.put_slice(id.as_bytes());
    b.put_slice(b"\n\n");
    b.freeze()
}

/// A comment-only keepalive (no position known yet).
pub fn comment(text: &str) -> Bytes {
    Bytes::from(format!(": {}\n\n", text.replace(['\r', '\n'], " ")))
}

/// The `retry:` field, sent when a stream opens.
pub fn retry(ms: u128) -> Bytes {
    Bytes::from(format!("retry: {ms}\n\n"))
}

fn line_count(d: &str) -> usize {
    d.bytes().filter(|&c| c == b'\n' || c == b'\r').count()
}

fn put_data(b: &mut BytesMut, d: &str) {
    let bytes = d.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\r' | b'\n' => {
                put_line(b, &bytes[start..i]);
                if bytes[i] == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    put_line(b, &bytes[start..]);
}

fn put_line(b: &mut BytesMut, line: &[u8]) {
    b.put_slice(b"data: ");
    b.put_slice(line);
    b.put_u8(b'\n');
}

/// What a conforming parser yields for `data` sent through [`frame`]: the payload with
/// every CR and CRLF turned into LF. Payloads holding CR are therefore normalised;
/// envelope mode (JSON-escaped) carries them exactly.
pub fn data_is_exact(data: &str) -> bool {
    !data.contains('\r')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::parse::Parser;
    use proptest::prelude::*;

    fn parse_all(bytes: &[u8]) -> Vec<crate::sse::parse::Event> {
        let mut p = Parser::default();
        let mut out = Vec::new();
        p.feed(bytes, &mut out);
        out
    }

    #[test]
    fn frame_layout() {
        let f = frame("abc", Some("update"), Some("a\nb"));
        assert_eq!(
            &f.bytes[..],
            b"id: abc\nevent: update\ndata: a\ndata: b\n\n"
        );
        assert_eq!(&f.body()[..], b"event: update\ndata: a\ndata: b\n\n");
        assert_eq!(
            &frame("x", Some("message"), Some("")).bytes[..],
            b"id: x\ndata: \n\n"
        );
    }

    #[test]
    fn heartbeat_sets_id_without_dispatch() {
        let mut p = Parser::default();
        let mut out = Vec::new();
        p.feed(&heartbeat("pos1"), &mut out);
        assert!(out.is_empty());
        assert_eq!(p.last_event_id(), "pos1");
    }

    #[test]
    fn line_endings_become_lf() {
        let ev = parse_all(&frame("1", None, Some("a\r\nb\rc\nd")).bytes);
        assert_eq!(ev[0].data, "a\nb\nc\nd");
        assert_eq!(ev[0].event, "message");
        assert_eq!(ev[0].id, "1");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]
        #[test]
        fn payload_round_trips(data in "[^\r]{0,64}", event in "[a-z]{1,8}", id in "[A-Za-z0-9_-]{1,20}") {
            let ev = parse_all(&frame(&id, Some(&event), Some(&data)).bytes);
            prop_assert_eq!(ev.len(), 1);
            prop_assert_eq!(&ev[0].data, &data);
            prop_assert_eq!(&ev[0].event, &event);
            prop_assert_eq!(&ev[0].id, &id);
        }

        #[test]
        fn any_payload_parses_to_lf_normalised(data in "(.|\r|\n){0,64}") {
            let ev = parse_all(&frame("i", None, Some(&data)).bytes);
            prop_assert_eq!(ev[0].data.clone(), data.replace("\r\n", "\n").replace('\r', "\n"));
        }
    }
}
