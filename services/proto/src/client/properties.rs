//! Property tests of the response reader. Whatever comes back on the socket
//! (a broken allocator, another program bound to the path), the reader
//! answers without a panic and within its budgets; a well-formed answer,
//! framed by Content-Length, chunks or the end of the connection, parses to
//! its status and body and nothing past it is consumed.

use std::io::{self, BufRead, Read};

use proptest::prelude::*;

use super::{MAX_BODY, MAX_HEAD, ReadError, read_response};

/// The server's side of the connection: `data`, then `filler` repeated
/// without end (or the end of the connection when `filler` is empty).
/// `pos` counts every byte the reader consumed.
struct Wire {
    data: Vec<u8>,
    filler: Vec<u8>,
    pos: usize,
}

impl Wire {
    fn new(data: Vec<u8>, filler: &[u8]) -> Wire {
        Wire { data, filler: filler.to_vec(), pos: 0 }
    }
}

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Wire {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos < self.data.len() {
            return Ok(&self.data[self.pos..]);
        }
        if self.filler.is_empty() {
            return Ok(&[]);
        }
        let offset = (self.pos - self.data.len()) % self.filler.len();
        Ok(&self.filler[offset..])
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
    }
}

/// How a generated answer frames its body.
#[derive(Debug, Clone)]
enum Framing {
    ContentLength,
    /// Chunk sizes to cut the body at (the last chunk takes the rest).
    Chunked(Vec<usize>),
    EndOfConnection,
}

fn framing() -> impl Strategy<Value = Framing> {
    prop_oneof![
        Just(Framing::ContentLength),
        proptest::collection::vec(1usize..64, 0..8).prop_map(Framing::Chunked),
        Just(Framing::EndOfConnection),
    ]
}

/// Header lines that change nothing about framing.
fn other_header() -> impl Strategy<Value = String> {
    ("[A-Za-z][A-Za-z0-9-]{0,15}", "[ -~]{0,40}")
        .prop_filter("not a framing header", |(name, _)| {
            !name.eq_ignore_ascii_case("content-length") && !name.eq_ignore_ascii_case("transfer-encoding")
        })
        .prop_map(|(name, value)| format!("{name}: {value}"))
}

/// Header names arrive in any case.
fn any_case(name: &str, upper: &[bool]) -> String {
    name.chars().zip(upper.iter().cycle()).map(|(c, &u)| if u { c.to_ascii_uppercase() } else { c }).collect()
}

/// A well-formed answer carrying `body`, each line ended by `eol`.
fn encode(
    status: u16,
    reason: &str,
    headers: &[String],
    framing: &Framing,
    body: &[u8],
    eol: &str,
    upper: &[bool],
) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} {reason}{eol}").into_bytes();
    for h in headers {
        out.extend_from_slice(format!("{h}{eol}").as_bytes());
    }
    match framing {
        Framing::ContentLength => {
            out.extend_from_slice(
                format!("{}: {}{eol}{eol}", any_case("content-length", upper), body.len()).as_bytes(),
            );
            out.extend_from_slice(body);
        }
        Framing::Chunked(cuts) => {
            out.extend_from_slice(format!("{}: chunked{eol}{eol}", any_case("transfer-encoding", upper)).as_bytes());
            let mut rest = body;
            let mut cuts = cuts.iter();
            while !rest.is_empty() {
                let n = cuts.next().map_or(rest.len(), |&c| c.min(rest.len()));
                let size = if upper.first() == Some(&true) { format!("{n:X}") } else { format!("{n:x}") };
                out.extend_from_slice(format!("{size}{eol}").as_bytes());
                out.extend_from_slice(&rest[..n]);
                out.extend_from_slice(eol.as_bytes());
                rest = &rest[n..];
            }
            out.extend_from_slice(format!("0{eol}X-Trailer: done{eol}{eol}").as_bytes());
        }
        Framing::EndOfConnection => {
            out.extend_from_slice(eol.as_bytes());
            out.extend_from_slice(body);
        }
    }
    out
}

/// Sizes a server may declare: anything, and the edges of the body limit
/// and of the integer types.
fn declared_size() -> impl Strategy<Value = u64> {
    let max = MAX_BODY as u64;
    prop_oneof![any::<u64>(), (max - 4)..=(max + 64), (u64::MAX - 64)..=u64::MAX, 0u64..64]
}

proptest! {
    #[test]
    fn arbitrary_bytes_are_read_without_a_panic(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let len = data.len();
        let mut wire = Wire::new(data, b"");
        if let Ok((_, body)) = read_response(&mut wire) {
            prop_assert!(body.len() <= len);
        }
        prop_assert!(wire.pos <= len);
    }

    #[test]
    fn arbitrary_bytes_after_a_status_line_are_read_without_a_panic(
        head in proptest::collection::vec(other_header(), 0..4),
        framing in "(content-length: [0-9a-f ]{0,6}|transfer-encoding: (chunked|gzip, chunked|identity))?",
        tail in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut data = b"HTTP/1.1 200 OK\r\n".to_vec();
        for h in head.iter().chain([&framing]) {
            data.extend_from_slice(h.as_bytes());
            data.extend_from_slice(b"\r\n");
        }
        data.extend_from_slice(b"\r\n");
        data.extend_from_slice(&tail);
        let len = data.len();
        let mut wire = Wire::new(data, b"");
        let _ = read_response(&mut wire);
        prop_assert!(wire.pos <= len);
    }

    /// A peer that never ends its header is cut off after MAX_HEAD bytes,
    /// whether it sends one endless line or endless header lines.
    #[test]
    fn an_endless_header_stops_at_the_header_budget(
        start in proptest::collection::vec(any::<u8>().prop_filter("no newline", |b| *b != b'\n'), 0..256),
        filler in prop_oneof![Just(&b"x"[..]), Just(&b"X-Pad: 0123456789\r\n"[..]), Just(&b"a\r\n"[..])],
    ) {
        let mut data = b"HTTP/1.1 200 OK\r\n".to_vec();
        data.extend_from_slice(&start);
        let mut wire = Wire::new(data, filler);
        let answer = read_response(&mut wire);
        prop_assert!(matches!(answer, Err(ReadError::Malformed(_))), "{answer:?}");
        prop_assert!(wire.pos <= MAX_HEAD + 1, "read {} header bytes", wire.pos);
    }

    /// A declared size is checked before the body is read: a size past the
    /// limit is refused having read nothing of the body, whatever follows.
    #[test]
    fn declared_sizes_are_checked_before_the_body_is_read(
        size in declared_size(),
        chunked in any::<bool>(),
        first_chunk in proptest::collection::vec(any::<u8>(), 0..16),
    ) {
        let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
        if chunked {
            head.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            if !first_chunk.is_empty() {
                head.extend_from_slice(format!("{:x}\r\n", first_chunk.len()).as_bytes());
                head.extend_from_slice(&first_chunk);
                head.extend_from_slice(b"\r\n");
            }
            head.extend_from_slice(format!("{size:x}\r\n").as_bytes());
        } else {
            head.extend_from_slice(format!("Content-Length: {size}\r\n\r\n").as_bytes());
        }
        let head_len = head.len();
        let mut wire = Wire::new(head, &[b'z'; 4096]);
        let answer = read_response(&mut wire);
        let limit = MAX_BODY as u64 - if chunked { first_chunk.len() as u64 } else { 0 };
        if size > limit {
            prop_assert!(matches!(answer, Err(ReadError::Malformed(_))), "{answer:?}");
            prop_assert_eq!(wire.pos, head_len);
        } else if size <= 64 {
            // Small bodies are read from the endless `z`s; a chunked one
            // then never ends (no CRLF after the data, or endless trailers).
            prop_assert_eq!(answer.is_ok(), !chunked, "{:?}", answer);
        }
    }

    #[test]
    fn well_formed_answers_parse_to_their_status_and_body(
        status in 100u16..600,
        reason in "[ -~]{0,20}",
        headers in proptest::collection::vec(other_header(), 0..6),
        framing in framing(),
        body in proptest::collection::vec(any::<u8>(), 0..1024),
        crlf in any::<bool>(),
        upper in proptest::collection::vec(any::<bool>(), 1..8),
        after in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let eol = if crlf { "\r\n" } else { "\n" };
        let answer = encode(status, &reason, &headers, &framing, &body, eol, &upper);
        let answer_len = answer.len();
        let framed = !matches!(framing, Framing::EndOfConnection);
        let mut data = answer;
        if framed {
            data.extend_from_slice(&after);
        }
        let mut wire = Wire::new(data, b"");
        let (got_status, got_body) = read_response(&mut wire).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        prop_assert_eq!(got_status, status);
        prop_assert_eq!(got_body, body);
        prop_assert_eq!(wire.pos, answer_len, "consumed bytes past the answer");
    }
}
