//! A blocking HTTP/1.1 client over a Unix socket: one request per
//! connection, no async runtime (the CLI's start-up time is part of every
//! command's latency).

use crate::api::ErrorBody;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Largest header block accepted from the server.
const MAX_HEAD: usize = 64 * 1024;
/// Largest body accepted from the server (a full `/allocations` listing of a
/// busy machine is far below this).
const MAX_BODY: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {}: {source}", path.display())]
    Connect { path: PathBuf, source: io::Error },
    #[error("{request} on {}: no answer within {}s", path.display(), after.as_secs_f64())]
    Timeout { path: PathBuf, request: String, after: Duration },
    #[error("{request} on {}: {operation} failed: {source}", path.display())]
    Io { path: PathBuf, request: String, operation: &'static str, source: io::Error },
    #[error("{request} on {}: malformed answer: {reason}", path.display())]
    Protocol { path: PathBuf, request: String, reason: String },
    /// The allocator answered with its error body.
    #[error("{}", body.message)]
    Api { status: u16, body: ErrorBody },
    /// A non-2xx answer that is not an error body.
    #[error("{request}: HTTP {status}: {body}")]
    Status { request: String, status: u16, body: String },
    #[error("{request}: cannot decode the answer: {source}")]
    Decode { request: String, source: serde_json::Error },
}

/// One answer: its status and the raw body (printed as-is by `--json`).
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    request: String,
}

impl Response {
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, ClientError> {
        serde_json::from_slice(&self.body)
            .map_err(|source| ClientError::Decode { request: self.request.clone(), source })
    }

    /// A 2xx answer as is; anything else as the error it carries.
    pub fn success(self) -> Result<Response, ClientError> {
        if (200..300).contains(&self.status) {
            return Ok(self);
        }
        match serde_json::from_slice::<ErrorBody>(&self.body) {
            Ok(body) => Err(ClientError::Api { status: self.status, body }),
            Err(_) => Err(ClientError::Status {
                request: self.request,
                status: self.status,
                body: String::from_utf8_lossy(&self.body).trim().to_string(),
            }),
        }
    }
}

/// The allocator's client over its Unix socket. One connection is kept
/// open between a client's requests (and its clones'): a command that asks
/// several things connects once.
#[derive(Clone)]
pub struct Client {
    socket: PathBuf,
    timeout: Duration,
    kept: Arc<Mutex<Option<Connection<UnixStream>>>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("socket", &self.socket).field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl Client {
    /// `timeout` bounds the connect and every read and write.
    pub fn new(socket: PathBuf, timeout: Duration) -> Client {
        Client { socket, timeout, kept: Arc::default() }
    }

    /// A client whose first request goes over `stream`, already connected
    /// (by [`connect`]) to `socket`.
    pub fn connected(socket: PathBuf, timeout: Duration, stream: UnixStream) -> Client {
        let connection = Connection::over(stream, &socket, timeout);
        Client { socket, timeout, kept: Arc::new(Mutex::new(Some(connection))) }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends a request without a body; answers of any status come back.
    pub fn send(&self, method: Method, path: &str) -> Result<Response, ClientError> {
        self.exchange(method, path, None)
    }

    /// Sends `body` as JSON; answers of any status come back.
    pub fn send_json<B: Serialize>(&self, method: Method, path: &str, body: &B) -> Result<Response, ClientError> {
        let bytes = serde_json::to_vec(body)
            .map_err(|source| ClientError::Decode { request: format!("{} {path}", method.as_str()), source })?;
        self.exchange(method, path, Some(&bytes))
    }

    /// A request whose non-2xx answers become errors.
    pub fn call(&self, method: Method, path: &str) -> Result<Response, ClientError> {
        self.send(method, path)?.success()
    }

    pub fn call_json<B: Serialize>(&self, method: Method, path: &str, body: &B) -> Result<Response, ClientError> {
        self.send_json(method, path, body)?.success()
    }

    /// `GET path` decoded into `T`.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::Get, path)?.decode()
    }

    fn exchange(&self, method: Method, path: &str, body: Option<&[u8]>) -> Result<Response, ClientError> {
        let mut kept = self.kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // The allocator closes a connection idle too long (or after some
        // answers): one it closed is readable (at its end), and is replaced
        // before anything is sent on it, so no request is ever sent twice.
        let mut connection = match kept.take().filter(|c| !closed_by_peer(c.reader.get_ref())) {
            Some(connection) => connection,
            None => Connection::unix(&self.socket, self.timeout, true)?,
        };
        let response = connection.exchange(method, path, body)?;
        *kept = Some(connection);
        Ok(response)
    }
}

/// Whether the other end closed `stream` (or sent something unasked).
fn closed_by_peer(stream: &UnixStream) -> bool {
    let mut poll = libc::pollfd { fd: stream.as_raw_fd(), events: libc::POLLIN | libc::POLLRDHUP, revents: 0 };
    // SAFETY: one valid pollfd for the duration of the call; no waiting.
    unsafe { libc::poll(&mut poll, 1, 0) != 0 }
}

/// One connection to the allocator, kept alive for many requests (as
/// `Client` keeps its one) or closed after one, over the Unix socket or
/// token-authenticated TCP.
pub struct Connection<S> {
    reader: BufReader<S>,
    /// Socket path or TCP address, for error messages.
    peer: PathBuf,
    timeout: Duration,
    keep_alive: bool,
    token: Option<String>,
}

impl Connection<UnixStream> {
    pub fn unix(socket: &Path, timeout: Duration, keep_alive: bool) -> Result<Self, ClientError> {
        let stream =
            connect(socket, timeout).map_err(|source| ClientError::Connect { path: socket.to_path_buf(), source })?;
        Ok(Connection { keep_alive, ..Connection::over(stream, socket, timeout) })
    }

    /// A kept-alive connection over `stream`, connected to `socket`.
    fn over(stream: UnixStream, socket: &Path, timeout: Duration) -> Self {
        Connection {
            reader: BufReader::new(stream),
            peer: socket.to_path_buf(),
            timeout,
            keep_alive: true,
            token: None,
        }
    }
}

impl Connection<std::net::TcpStream> {
    /// A kept-alive TCP connection presenting `token` as a bearer token.
    pub fn tcp(addr: &str, timeout: Duration, token: Option<String>) -> Result<Self, ClientError> {
        let connect_error = |source| ClientError::Connect { path: PathBuf::from(addr), source };
        let stream = std::net::TcpStream::connect(addr).map_err(connect_error)?;
        stream.set_nodelay(true).map_err(connect_error)?;
        stream.set_read_timeout(Some(timeout)).map_err(connect_error)?;
        stream.set_write_timeout(Some(timeout)).map_err(connect_error)?;
        Ok(Connection { reader: BufReader::new(stream), peer: PathBuf::from(addr), timeout, keep_alive: true, token })
    }
}

impl<S: Read + Write> Connection<S> {
    /// Sends a request (with an optional JSON body); answers of any status come back.
    pub fn send(&mut self, method: Method, path: &str, body: Option<&[u8]>) -> Result<Response, ClientError> {
        self.exchange(method, path, body)
    }

    pub fn send_json<B: Serialize>(&mut self, method: Method, path: &str, body: &B) -> Result<Response, ClientError> {
        let bytes = serde_json::to_vec(body)
            .map_err(|source| ClientError::Decode { request: format!("{} {path}", method.as_str()), source })?;
        self.exchange(method, path, Some(&bytes))
    }

    fn exchange(&mut self, method: Method, path: &str, body: Option<&[u8]>) -> Result<Response, ClientError> {
        let request = format!("{} {path}", method.as_str());
        let io_error = |operation: &'static str, source: io::Error| {
            if matches!(source.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) {
                ClientError::Timeout { path: self.peer.clone(), request: request.clone(), after: self.timeout }
            } else {
                ClientError::Io { path: self.peer.clone(), request: request.clone(), operation, source }
            }
        };
        let body = body.unwrap_or_default();
        let connection = if self.keep_alive { "keep-alive" } else { "close" };
        let mut message = format!(
            "{request} HTTP/1.1\r\nHost: localhost\r\nConnection: {connection}\r\nAccept: application/json\r\n"
        );
        if let Some(token) = &self.token {
            message.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        if !body.is_empty() {
            message.push_str("Content-Type: application/json\r\n");
        }
        message.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut bytes = message.into_bytes();
        bytes.extend_from_slice(body);
        self.reader.get_mut().write_all(&bytes).map_err(|e| io_error("write", e))?;

        match read_response(&mut self.reader) {
            Ok((status, body)) => Ok(Response { status, body, request }),
            Err(ReadError::Io(e)) => Err(io_error("read", e)),
            Err(ReadError::Malformed(reason)) => {
                Err(ClientError::Protocol { path: self.peer.clone(), request, reason })
            }
        }
    }
}

/// Why a server another user runs is not talked to.
fn untrusted_server(uid: Option<u32>) -> io::Error {
    let who = uid.map_or_else(|| "an unknown user".to_string(), crate::dirs::describe_uid);
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("the server there runs as {who}, neither you nor root; not talking to it"),
    )
}

/// Whether `connect` refused the server for the user it runs as.
pub fn is_untrusted_server(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::PermissionDenied && e.raw_os_error().is_none()
}

/// Connects to a Unix socket, giving up after `timeout`, and only to a
/// server that runs as this user, root or the system service's user
/// (`crate::trust`): nothing is sent to anyone else. std has no connect
/// timeout for Unix sockets; Linux bounds a blocking `connect()` (which waits
/// while the listener's backlog is full) by the socket's send timeout.
pub fn connect(path: &Path, timeout: Duration) -> io::Result<UnixStream> {
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: sockaddr_un is plain data; all-zero is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= addr.sun_path.len() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "socket path too long"));
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: plain socket(2) call; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let stream = UnixStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
    stream.set_write_timeout(Some(timeout))?;
    stream.set_read_timeout(Some(timeout))?;
    let len = std::mem::offset_of!(libc::sockaddr_un, sun_path) + bytes.len() + 1;
    loop {
        // SAFETY: addr is a valid sockaddr_un and len does not exceed it.
        let rc = unsafe {
            libc::connect(stream.as_raw_fd(), (&raw const addr).cast::<libc::sockaddr>(), len as libc::socklen_t)
        };
        if rc == 0 {
            return match crate::trust::check_server(stream.as_raw_fd()) {
                Ok(()) => Ok(stream),
                Err(uid) => Err(untrusted_server(uid)),
            };
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

#[derive(Debug)]
enum ReadError {
    Io(io::Error),
    Malformed(String),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

fn malformed(reason: impl Into<String>) -> ReadError {
    ReadError::Malformed(reason.into())
}

/// Reads one line (without its CRLF), counting it against `budget`.
fn read_line<R: BufRead>(reader: &mut R, budget: &mut usize) -> Result<String, ReadError> {
    let mut line = Vec::new();
    let n = reader.by_ref().take(*budget as u64 + 1).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Err(malformed("connection closed before the end of the header"));
    }
    if n > *budget {
        return Err(malformed("header too large"));
    }
    *budget -= n;
    if line.last() != Some(&b'\n') {
        return Err(malformed("connection closed in the middle of a line"));
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| malformed("header is not UTF-8"))
}

/// Reads a status line, headers and a body framed by Content-Length,
/// chunked transfer coding, or the end of the connection.
fn read_response<R: BufRead>(reader: &mut R) -> Result<(u16, Vec<u8>), ReadError> {
    let mut budget = MAX_HEAD;
    let status_line = read_line(reader, &mut budget)?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(malformed(format!("not an HTTP/1 status line: {status_line:?}")));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| malformed(format!("bad status line: {status_line:?}")))?;

    let mut content_length = None;
    let mut chunked = false;
    loop {
        let line = read_line(reader, &mut budget)?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').ok_or_else(|| malformed(format!("bad header line: {line:?}")))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n: usize = value.parse().map_err(|_| malformed(format!("bad Content-Length: {value:?}")))?;
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.split(',').any(|c| c.trim().eq_ignore_ascii_case("chunked"));
        }
    }

    let body = if chunked {
        read_chunked(reader)?
    } else if let Some(n) = content_length {
        if n > MAX_BODY {
            return Err(malformed(format!("body of {n} bytes is too large")));
        }
        let mut body = vec![0; n];
        reader.read_exact(&mut body).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                malformed("connection closed before the end of the body")
            } else {
                ReadError::Io(e)
            }
        })?;
        body
    } else {
        let mut body = Vec::new();
        reader.take(MAX_BODY as u64).read_to_end(&mut body)?;
        body
    };
    Ok((status, body))
}

fn read_chunked<R: BufRead>(reader: &mut R) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    loop {
        let mut budget = MAX_HEAD;
        let line = read_line(reader, &mut budget)?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| malformed(format!("bad chunk size: {line:?}")))?;
        if size == 0 {
            // Trailer fields, up to the empty line.
            while !read_line(reader, &mut budget)?.is_empty() {}
            return Ok(body);
        }
        // The body never exceeds MAX_BODY, so this cannot underflow; a sum
        // could overflow on a size near usize::MAX.
        if size > MAX_BODY - body.len() {
            return Err(malformed("chunked body is too large"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        if !read_line(reader, &mut budget)?.is_empty() {
            return Err(malformed("chunk not followed by CRLF"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ErrorCode;
    use std::os::unix::net::UnixListener;

    fn parse(raw: &str) -> Result<(u16, Vec<u8>), ReadError> {
        read_response(&mut BufReader::new(raw.as_bytes()))
    }

    #[test]
    fn content_length_body_is_read_exactly() {
        let (status, body) =
            parse("HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: application/json\r\n\r\n{}trailing").unwrap();
        assert_eq!(status, 200);
        assert_eq!(body, b"{}");
    }

    #[test]
    fn chunked_body_is_reassembled() {
        let (status, body) = parse(
            "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\nX-Trailer: y\r\n\r\n",
        )
        .unwrap();
        assert_eq!(status, 404);
        assert_eq!(body, br#"{"a":1}"#);
    }

    #[test]
    fn body_without_framing_runs_to_the_end_of_the_connection() {
        let (_, body) = parse("HTTP/1.0 200 OK\r\n\r\nhello").unwrap();
        assert_eq!(body, b"hello");
    }

    #[test]
    fn truncated_or_garbage_answers_are_protocol_errors() {
        assert!(matches!(parse("SSH-2.0-OpenSSH\r\n\r\n"), Err(ReadError::Malformed(_))));
        assert!(matches!(parse("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"), Err(ReadError::Malformed(_))));
        assert!(matches!(parse("HTTP/1.1 200 OK\r\nContent-Len"), Err(ReadError::Malformed(_))));
        assert!(matches!(
            parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
            Err(ReadError::Malformed(_))
        ));
    }

    /// Serves one canned answer (`status` line, JSON `body`) on a fresh
    /// socket and returns what the client sent.
    fn serve_once(status: &str, body: &str) -> (tempfile::TempDir, PathBuf, std::thread::JoinHandle<String>) {
        let answer = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let handle = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(&stream);
            let mut head = String::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                head.push_str(&line);
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            head.push_str(&String::from_utf8(body).unwrap());
            (&stream).write_all(answer.as_bytes()).unwrap();
            head
        });
        (dir, path, handle)
    }

    #[test]
    fn request_carries_method_path_and_json_body() {
        let (_dir, path, server) = serve_once("200 OK", r#"{"success":true}"#);
        let client = Client::new(path, Duration::from_secs(5));
        let reply = client.call_json(Method::Post, "/cleanup", &serde_json::json!({"force": true})).unwrap();
        assert_eq!(reply.body, br#"{"success":true}"#);
        let sent = server.join().unwrap();
        assert!(sent.starts_with("POST /cleanup HTTP/1.1\r\n"), "{sent}");
        assert!(sent.contains("Content-Length: 14\r\n"), "{sent}");
        assert!(sent.ends_with(r#"{"force":true}"#), "{sent}");
    }

    #[test]
    fn error_body_becomes_a_typed_error() {
        let (_dir, path, server) = serve_once(
            "409 Conflict",
            r#"{"success":false,"error":"range_exhausted","message":"no free port in dev"}"#,
        );
        let client = Client::new(path, Duration::from_secs(5));
        let err = client.call(Method::Get, "/allocations").unwrap_err();
        server.join().unwrap();
        match err {
            ClientError::Api { status, body } => {
                assert_eq!(status, 409);
                assert_eq!(body.error, ErrorCode::RangeExhausted);
                assert_eq!(body.message, "no free port in dev");
            }
            other => panic!("expected an API error, got {other:?}"),
        }
    }

    #[test]
    fn silent_server_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        let _listener = UnixListener::bind(&path).unwrap();
        let client = Client::new(path, Duration::from_millis(100));
        let err = client.call(Method::Get, "/status").unwrap_err();
        assert!(matches!(err, ClientError::Timeout { .. }), "{err:?}");
    }

    #[test]
    fn missing_socket_is_a_connect_error() {
        let dir = tempfile::tempdir().unwrap();
        let client = Client::new(dir.path().join("nothing.sock"), Duration::from_secs(1));
        let err = client.call(Method::Get, "/status").unwrap_err();
        assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
    }
}

#[cfg(test)]
mod properties;
