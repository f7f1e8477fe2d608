//! A WHATWG-conforming SSE stream parser, used by the tests and the load generator to
//! read streams exactly as a browser's `EventSource` would.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The `event:` name (`message` when absent).
    pub event: String,
    /// The data, lines joined with LF.
    pub data: String,
    /// The last event id in force when the event was dispatched.
    pub id: String,
}

/// Incremental parser state; feed it bytes as they arrive.
#[derive(Debug, Default)]
pub struct Parser {
    buf: Vec<u8>,
    seen_first: bool,
    last_cr: bool,
    data: String,
    data_set: bool,
    event: String,
    last_id: String,
    retry: Option<u64>,
}

impl Parser {
    /// The last event id (what a browser would send as `Last-Event-ID`).
    pub fn last_event_id(&self) -> &str {
        &self.last_id
    }

    /// The last `retry:` value received, in milliseconds.
    pub fn retry(&self) -> Option<u64> {
        self.retry
    }

    /// Feed bytes; dispatched events are appended to `out`.
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<Event>) {
        if !self.seen_first && !bytes.is_empty() {
            self.buf.extend_from_slice(bytes);
            if self.buf.len() < 3 && b"\xEF\xBB\xBF".starts_with(&self.buf) {
                return;
            }
            self.seen_first = true;
            let mut pending = std::mem::take(&mut self.buf);
            if pending.starts_with(b"\xEF\xBB\xBF") {
                pending.drain(..3);
            }
            self.feed_lines(&pending, out);
            return;
        }
        if self.last_cr && bytes.first() == Some(&b'\n') {
            bytes = &bytes[1..];
        }
        self.last_cr = false;
        self.feed_lines(bytes, out);
    }

    fn feed_lines(&mut self, bytes: &[u8], out: &mut Vec<Event>) {
        let mut i = 0;
        while i < bytes.len() {
            let Some(n) = bytes[i..].iter().position(|&c| c == b'\n' || c == b'\r') else {
                self.buf.extend_from_slice(&bytes[i..]);
                return;
            };
            let end = i + n;
            let line = if self.buf.is_empty() {
                self.line_slice(&bytes[i..end], out);
                None
            } else {
                self.buf.extend_from_slice(&bytes[i..end]);
                Some(std::mem::take(&mut self.buf))
            };
            if let Some(l) = line {
                self.line_slice(&l, out);
            }
            i = end + 1;
            if bytes[end] == b'\r' {
                if i < bytes.len() {
                    if bytes[i] == b'\n' {
                        i += 1;
                    }
                } else {
                    self.last_cr = true;
                }
            }
        }
    }

    fn line_slice(&mut self, line: &[u8], out: &mut Vec<Event>) {
        self.line(line, out);
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<Event>) {
        let line = String::from_utf8_lossy(line);
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.find(':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (&line[..], ""),
        };
        match field {
            "event" => self.event = value.to_owned(),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
                self.data_set = true;
            }
            "id" if !value.contains('\0') => self.last_id = value.to_owned(),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.retry = value.parse().ok();
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<Event>) {
        if !self.data_set {
            self.event.clear();
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        self.data_set = false;
        if data.ends_with('\n') {
            data.pop();
        }
        let event = std::mem::take(&mut self.event);
        out.push(Event {
            event: if event.is_empty() {
                "message".into()
            } else {
                event
            },
            data,
            id: self.last_id.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_crlf_across_feeds_and_bom() {
        let mut p = Parser::default();
        let mut out = Vec::new();
        p.feed(b"\xEF\xBB", &mut out);
        p.feed(b"\xBFdata: a\r", &mut out);
        p.feed(b"\n\r\n", &mut out);
        assert_eq!(
            out,
            vec![Event {
                event: "message".into(),
                data: "a".into(),
                id: String::new()
            }]
        );
    }

    #[test]
    fn retry_and_comments() {
        let mut p = Parser::default();
        let mut out = Vec::new();
        p.feed(
            b"retry: 1500\n\n: hi\n\nid: 7\nevent: e\ndata\n\n",
            &mut out,
        );
        assert_eq!(p.retry(), Some(1500));
        assert_eq!(
            out,
            vec![Event {
                event: "e".into(),
                data: String::new(),
                id: "7".into()
            }]
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]
        #[test]
        fn any_bytes_in_any_pieces_parse_the_same(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
            cut in 0usize..400,
        ) {
            let mut whole = Parser::default();
            let mut a = Vec::new();
            whole.feed(&bytes, &mut a);
            let mut split = Parser::default();
            let mut b = Vec::new();
            let cut = cut.min(bytes.len());
            split.feed(&bytes[..cut], &mut b);
            split.feed(&bytes[cut..], &mut b);
            proptest::prop_assert_eq!(a, b);
            proptest::prop_assert_eq!(whole.last_event_id(), split.last_event_id());
        }
    }
}
