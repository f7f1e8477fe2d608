//! The little HTTP/1.1 client a stream needs: send a `GET`, read the response head, then
//! the body's bytes as they come (chunked, by length, or to the end of the connection),
//! straight from the socket into the caller's parser — one task and one `read` per
//! arrival, so the load generator costs as little CPU per event as it can.

use std::net::SocketAddr;

use anyhow::{bail, ensure, Context};
use std::io::Read;

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How the body is delimited.
enum Framing {
    /// `transfer-encoding: chunked`: bytes left in the current chunk, or `None` when a
    /// size line comes next.
    Chunked { left: Option<usize>, crlf: usize },
    /// `content-length` bytes left.
    Length(usize),
    /// Until the server closes.
    Close,
}

/// A response body being read.
pub struct Body {
    fd: AsyncFd<std::net::TcpStream>,
    dec: Decoder,
}

/// The body's framing being undone.
struct Decoder {
    framing: Framing,
    /// Bytes read but not yet decoded (a partial size line).
    buf: Vec<u8>,
    started: bool,
    done: bool,
}

thread_local! {
    static READ_BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; 64 * 1024]);
}

/// Send `GET path` with `headers`; the response's status and its body.
pub async fn get(
    mut tcp: TcpStream,
    server: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<(u16, Body)> {
    let mut req = format!("GET {path} HTTP/1.1\r\nhost: {server}\r\naccept: text/event-stream\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    tcp.write_all(req.as_bytes()).await?;
    let mut buf = Vec::with_capacity(1024);
    let head_len = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        ensure!(buf.len() < 64 * 1024, "response head too large");
        buf.reserve(1024);
        if tcp.read_buf(&mut buf).await? == 0 {
            bail!("connection closed before the response head");
        }
    };
    let mut raw = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut raw);
    resp.parse(&buf[..head_len]).context("bad response head")?;
    let status = resp.code.context("no status")?;
    let mut framing = Framing::Close;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding")
            && String::from_utf8_lossy(h.value)
                .to_ascii_lowercase()
                .contains("chunked")
        {
            framing = Framing::Chunked {
                left: None,
                crlf: 0,
            };
        } else if h.name.eq_ignore_ascii_case("content-length")
            && !matches!(framing, Framing::Chunked { .. })
        {
            framing = Framing::Length(std::str::from_utf8(h.value)?.trim().parse()?);
        }
    }
    buf.drain(..head_len);
    let tcp = tcp.into_std()?;
    // SAFETY: the AsyncFd owns the socket, so its descriptor stays open (and is closed
    // only after it is deregistered) for as long as it is registered.
    let fd = unsafe { AsyncFd::register(tcp) }.map_err(|e| anyhow::anyhow!("register: {e}"))?;
    Ok((
        status,
        Body {
            fd,
            dec: Decoder {
                framing,
                buf,
                started: false,
                done: false,
            },
        },
    ))
}

impl Body {
    /// Wait for the socket, read what it has and hand the body bytes to `sink`; `false`
    /// at the end of the body. The read buffer is per thread, so an idle connection
    /// holds none.
    pub async fn read(&mut self, sink: &mut impl FnMut(&[u8])) -> anyhow::Result<bool> {
        if !self.dec.started {
            self.dec.started = true;
            let first = std::mem::take(&mut self.dec.buf);
            self.dec.decode(&first, sink)?;
            return Ok(!self.dec.done);
        }
        if self.dec.done {
            return Ok(false);
        }
        loop {
            let mut ready = self.fd.readable().await?;
            let got = READ_BUF.with(|b| {
                let mut b = b.borrow_mut();
                match ready.get_inner().read(&mut b[..]) {
                    Ok(0) => Ok(Some(0)),
                    Ok(n) => {
                        if n < b.len() {
                            // The socket is drained: wait for the next arrival instead
                            // of a read that would find nothing (tokio keeps a wake-up
                            // that raced with this read).
                            ready.clear_ready();
                        }
                        if self.dec.buf.is_empty() {
                            self.dec.decode(&b[..n], sink)?;
                        } else {
                            let mut joined = std::mem::take(&mut self.dec.buf);
                            joined.extend_from_slice(&b[..n]);
                            self.dec.decode(&joined, sink)?;
                        }
                        Ok(Some(n))
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        ready.clear_ready();
                        Ok(None)
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(None),
                    Err(e) => Err(anyhow::Error::from(e)),
                }
            })?;
            match got {
                None => continue,
                Some(0) => {
                    ensure!(
                        matches!(self.dec.framing, Framing::Close),
                        "connection closed mid-body"
                    );
                    self.dec.done = true;
                    return Ok(false);
                }
                Some(_) => return Ok(!self.dec.done),
            }
        }
    }
}

impl Decoder {
    fn decode(&mut self, mut data: &[u8], sink: &mut impl FnMut(&[u8])) -> anyhow::Result<()> {
        match &mut self.framing {
            Framing::Close => sink(data),
            Framing::Length(left) => {
                let n = data.len().min(*left);
                sink(&data[..n]);
                *left -= n;
                self.done = *left == 0;
            }
            Framing::Chunked { left, crlf } => {
                while !data.is_empty() {
                    if *crlf > 0 {
                        // The CRLF after a chunk's data.
                        let n = (*crlf).min(data.len());
                        data = &data[n..];
                        *crlf -= n;
                        continue;
                    }
                    match left {
                        Some(n) => {
                            let take = (*n).min(data.len());
                            sink(&data[..take]);
                            data = &data[take..];
                            *n -= take;
                            if *n == 0 {
                                *left = None;
                                *crlf = 2;
                            }
                        }
                        None => match httparse::parse_chunk_size(data) {
                            Ok(httparse::Status::Complete((used, size))) => {
                                data = &data[used..];
                                if size == 0 {
                                    self.done = true;
                                    return Ok(());
                                }
                                *left = Some(size as usize);
                            }
                            Ok(httparse::Status::Partial) => {
                                self.buf.extend_from_slice(data);
                                return Ok(());
                            }
                            Err(_) => bail!("bad chunk size line"),
                        },
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(framing: Framing, wire: &[u8], piece: usize) -> (Vec<u8>, bool) {
        let mut d = Decoder {
            framing,
            buf: Vec::new(),
            started: true,
            done: false,
        };
        let mut out = Vec::new();
        for part in wire.chunks(piece) {
            if d.done {
                break;
            }
            let data = if d.buf.is_empty() {
                part.to_vec()
            } else {
                let mut j = std::mem::take(&mut d.buf);
                j.extend_from_slice(part);
                j
            };
            d.decode(&data, &mut |b: &[u8]| out.extend_from_slice(b))
                .unwrap();
        }
        (out, d.done)
    }

    #[test]
    fn chunked_bodies_decode_whatever_the_read_boundaries() {
        let wire = b"5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n";
        for piece in 1..wire.len() {
            let (out, done) = decode_in_pieces(
                Framing::Chunked {
                    left: None,
                    crlf: 0,
                },
                wire,
                piece,
            );
            assert_eq!(out, b"helloabcdefghijklmnopqrstuvwxyz", "piece {piece}");
            assert!(done, "piece {piece}");
        }
    }

    #[test]
    fn length_and_close_delimited_bodies() {
        let (out, done) = decode_in_pieces(Framing::Length(3), b"abcdef", 2);
        assert_eq!((out.as_slice(), done), (&b"abc"[..], true));
        let (out, done) = decode_in_pieces(Framing::Close, b"abcdef", 4);
        assert_eq!((out.as_slice(), done), (&b"abcdef"[..], false));
    }
}
