//! The HTTP layer's own refusals as JSON. hyper answers a request it cannot
//! parse (a garbage request line, a path that is not UTF-8, a negative
//! Content-Length, a header over its limit) by itself, with a status and an
//! empty body, before any route runs. [`JsonErrors`] sits between hyper and
//! the socket and gives such an answer the API's error body, so every error
//! a client sees, at any layer, is `{"success":false,"error":CODE,...}`.
//! Routes never send an error without a body, so an empty-bodied 4xx or 5xx
//! can only be hyper's.
//!
//! After such an answer the client may still be sending (a header flood):
//! closing at once with unread data would make the kernel reset the
//! connection, and the client would see the reset instead of the answer.
//! So the socket lingers: the write side is shut, what still arrives is read
//! and dropped for a bounded time, then it closes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use styxy_proto::api::{ErrorBody, ErrorCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Longest a refused client's remaining bytes are read and dropped.
const LINGER: Duration = Duration::from_secs(1);
/// Most bytes read and dropped while lingering.
const LINGER_BYTES: usize = 1 << 20;

pub struct JsonErrors<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> {
    /// `None` only once handed to the lingering close.
    inner: Option<S>,
    /// The rewritten answer being written: its bytes, how many are out, and
    /// how many of hyper's bytes it stands for.
    rewritten: Option<(Vec<u8>, usize, usize)>,
    /// A refusal went out: linger before closing.
    refused: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> JsonErrors<S> {
    pub fn new(inner: S) -> Self {
        JsonErrors { inner: Some(inner), rewritten: None, refused: false }
    }

    fn inner(&mut self) -> Pin<&mut S> {
        // Only Drop takes it, after which nothing polls.
        Pin::new(self.inner.as_mut().unwrap_or_else(|| unreachable!("polled after drop")))
    }

    /// Writes the rewritten answer; `hyper_len` once it is all out.
    fn poll_rewritten(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        loop {
            let Some((bytes, written, hyper_len)) = self.rewritten.take() else {
                return Poll::Ready(Ok(0));
            };
            if written == bytes.len() {
                self.refused = true;
                return Poll::Ready(Ok(hyper_len));
            }
            let n = match self.inner().poll_write(cx, &bytes[written..]) {
                Poll::Pending => {
                    self.rewritten = Some((bytes, written, hyper_len));
                    return Poll::Pending;
                }
                Poll::Ready(result) => result?,
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.rewritten = Some((bytes, written + n, hyper_len));
        }
    }
}

/// The status of an answer hyper made up itself: an error status, a
/// `content-length: 0` and nothing after the head.
fn hyper_refusal(buf: &[u8]) -> Option<u16> {
    let rest = buf.strip_prefix(b"HTTP/1.1 ").or_else(|| buf.strip_prefix(b"HTTP/1.0 "))?;
    let status: u16 = std::str::from_utf8(rest.get(..3)?).ok()?.parse().ok()?;
    let empty =
        buf.ends_with(b"\r\n\r\n") && buf.windows(21).any(|w| w.eq_ignore_ascii_case(b"\r\ncontent-length: 0\r\n"));
    (status >= 400 && empty).then_some(status)
}

/// The API's answer for hyper's `status`.
fn json_answer(status: u16) -> Vec<u8> {
    let (code, message) = match status {
        431 => (ErrorCode::HeaderTooLarge, "the request header is larger than the allocator reads"),
        414 => (ErrorCode::BadRequest, "the request path is longer than the allocator reads"),
        _ => (
            ErrorCode::BadRequest,
            "not an HTTP/1.1 request the allocator can read (request line, path, header or Content-Length)",
        ),
    };
    let body = ErrorBody { success: false, error: code, message: message.into(), context: None };
    let body = serde_json::to_vec(&body).unwrap_or_default();
    let reason = match status {
        431 => "Request Header Fields Too Large",
        414 => "URI Too Long",
        505 => "HTTP Version Not Supported",
        _ => "Bad Request",
    };
    let mut answer = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    answer.extend_from_slice(&body);
    answer
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncRead for JsonErrors<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.inner().poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncWrite for JsonErrors<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.rewritten.is_none()
            && let Some(status) = hyper_refusal(buf)
        {
            self.rewritten = Some((json_answer(status), 0, buf.len()));
        }
        if self.rewritten.is_some() {
            return self.poll_rewritten(cx);
        }
        self.inner().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // hyper's refusal is a head alone, in one slice.
        match bufs.iter().find(|b| !b.is_empty()) {
            Some(first) if self.rewritten.is_some() || hyper_refusal(first).is_some() => {
                let first: &[u8] = first;
                self.poll_write(cx, first)
            }
            _ => self.inner().poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.as_ref().is_some_and(S::is_write_vectored)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.rewritten.is_some() {
            ready!(self.poll_rewritten(cx))?;
        }
        self.inner().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner().poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Drop for JsonErrors<S> {
    fn drop(&mut self) {
        let (Some(mut stream), true) = (self.inner.take(), self.refused) else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let _ = stream.shutdown().await;
            let mut sink = [0u8; 4096];
            let mut drained = 0;
            let drain = async {
                while drained < LINGER_BYTES {
                    match stream.read(&mut sink).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => drained += n,
                    }
                }
            };
            let _ = tokio::time::timeout(LINGER, drain).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_empty_bodied_error_head_is_taken_for_hyper_s() {
        let hyper = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        assert_eq!(hyper_refusal(hyper), Some(400));
        let ours = b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 60\r\n\r\n{}";
        assert_eq!(hyper_refusal(ours), None);
        let fine = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(hyper_refusal(fine), None);
    }

    #[test]
    fn the_answer_is_the_api_error_body_with_its_length() {
        let answer = String::from_utf8(json_answer(431)).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 "));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let body: ErrorBody = serde_json::from_str(body).unwrap();
        assert_eq!(body.error, ErrorCode::HeaderTooLarge);
    }
}
