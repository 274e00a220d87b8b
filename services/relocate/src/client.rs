//! The allocator round trip: HTTP/1.1 over its Unix socket (it identifies us
//! by SO_PEERCRED), with stack buffers and a hard deadline. An absent
//! allocator fails at connect in microseconds; a hung one costs at most
//! [`DEADLINE_NS`] once, after which it is skipped for a while.

use crate::Subject;
use crate::config;
use crate::json;
use crate::sys::{self, StackBuf};
use core::sync::atomic::{AtomicU64, Ordering};
use libc::c_int;

/// The longest a program waits for the allocator (the rest of a move fits
/// in the remaining 10 ms of the 100 ms a hung allocator may cost).
pub const DEADLINE_NS: u64 = 90_000_000;
/// After a timeout, moves decide locally for this long.
const SKIP_AFTER_TIMEOUT_NS: u64 = 10_000_000_000;
const NAME_CAP: usize = 64;

static SKIP_UNTIL_NS: AtomicU64 = AtomicU64::new(0);

/// A short text field copied out of the answer.
#[derive(Clone, Copy)]
pub struct Text {
    bytes: [u8; NAME_CAP],
    len: usize,
}

impl Text {
    const EMPTY: Text = Text { bytes: [0; NAME_CAP], len: 0 };

    pub fn from_json(raw: &[u8]) -> Text {
        let mut text = Text::EMPTY;
        text.len = json::copy_str(raw, &mut text.bytes).unwrap_or(0);
        text
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&[])
    }
}

/// Who holds the port we asked for, as far as we may know.
#[derive(Clone, Copy)]
pub struct Holder {
    pub process: Text,
    pub user: Text,
    pub pid: Option<u32>,
    pub service_type: Text,
}

/// A port the allocator recorded for this process.
pub struct Grant {
    pub port: u16,
    lock_id: Text,
    pub holder: Option<Holder>,
}

/// Asks for a port instead of `requested` (POST /allocate), recorded as
/// an allocation of the subject's program in its scope. None when no
/// allocator answers in time. Never inlined: its answer buffer must not
/// share a frame with the move's kernel dump (the preload's stack budget).
#[inline(never)]
pub fn allocate(subject: &impl Subject, requested: u16) -> Option<Grant> {
    let mut response = [0u8; 4096];
    match post_allocate(subject, requested, Ask::Move, &mut response)? {
        (200, body) => parse_grant(body),
        _ => None,
    }
}

/// Tells the allocator the subject's program listens on `port` (under
/// `styxy run`): recorded as its allocation, and the run's reservation
/// `replaces` given back unless its owner listens on it. Whether it was
/// recorded.
#[inline(never)]
pub fn report_listening(subject: &impl Subject, port: u16, replaces: Option<&[u8]>) -> bool {
    let mut response = [0u8; 1024];
    post_allocate(subject, port, Ask::Listening { replaces }, &mut response).is_some_and(|(status, _)| status == 200)
}

/// What a `POST /allocate` asks for.
#[derive(Clone, Copy)]
enum Ask<'a> {
    /// Another port instead of a busy one.
    Move,
    /// The port listened on, as the program's allocation.
    Listening { replaces: Option<&'a [u8]> },
}

/// Sends one `POST /allocate` about `port`; the answer's status and body.
#[inline(never)]
fn post_allocate<'r>(
    subject: &impl Subject,
    port: u16,
    ask: Ask<'_>,
    response: &'r mut [u8],
) -> Option<(u32, &'r [u8])> {
    let mut comm = [0u8; 17];
    let program = Program { name: subject.name(&mut comm), pid: subject.recorded_pid() };
    let scope = config::get().and_then(|c| c.scope.as_ref()).map(|s| &*s.path);
    // A scope too long for the request is left out: the program moves all
    // the same, without recording where its clients should go.
    let request =
        allocate_request(port, &program, scope, ask).or_else(|| allocate_request(port, &program, None, ask))?;
    let received = exchange(request.as_bytes(), response)?;
    split_response(response.get(..received)?)
}

/// Who a request speaks for: the program's name, and its pid when the
/// allocator cannot take it from the socket's peer (the supervisor asks).
struct Program<'a> {
    name: &'a [u8],
    pid: Option<u32>,
}

/// Longest request `allocate` sends: a scope path of some 500 bytes fits
/// (a longer one is left out).
const REQUEST_CAP: usize = 768;
/// Room for the body's length in the head, padded with spaces (optional
/// whitespace in HTTP), so the body is written in place.
const LENGTH_WIDTH: usize = 5;

fn allocate_request(
    port: u16,
    program: &Program<'_>,
    scope: Option<&[u8]>,
    ask: Ask<'_>,
) -> Option<StackBuf<REQUEST_CAP>> {
    let mut req = StackBuf::<REQUEST_CAP>::new();
    let head = req.push(b"POST /allocate HTTP/1.1\r\nHost: styxy\r\nContent-Type: application/json\r\nContent-Length:");
    let length_at = req.as_bytes().len();
    let built = head && req.push(&[b' '; LENGTH_WIDTH]) && req.push(b"\r\nConnection: close\r\n\r\n") && {
        let body_at = req.as_bytes().len();
        req.push(b"{\"preferred_port\":")
            && req.push_u32(u32::from(port))
            && req.push(b",\"source\":\"preload\",\"service_name\":\"")
            && req.push_json_str(program.name)
            && scope.is_none_or(|scope| req.push(b"\",\"scope\":\"") && req.push_json_str(scope))
            && req.push(b"\"")
            && program.pid.is_none_or(|pid| req.push(b",\"pid\":") && req.push_u32(pid))
            && match ask {
                Ask::Move => true,
                Ask::Listening { replaces } => {
                    req.push(b",\"listening\":true")
                        && replaces
                            .is_none_or(|id| req.push(b",\"replaces\":\"") && req.push_json_str(id) && req.push(b"\""))
                }
            }
            && req.push(b"}")
            && req.put_u32_at(length_at, LENGTH_WIDTH, req.as_bytes().len().saturating_sub(body_at) as u32)
    };
    built.then_some(req)
}

/// Gives back a grant we could not use (DELETE /allocate/{lock_id}).
pub fn release(grant: &Grant) {
    let id = grant.lock_id.as_bytes();
    if id.is_empty() || !id.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_') {
        return;
    }
    let mut req = StackBuf::<200>::new();
    let built = req.push(b"DELETE /allocate/")
        && req.push(id)
        && req.push(b" HTTP/1.1\r\nHost: styxy\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let mut response = [0u8; 1024];
    if built {
        let _ = exchange(req.as_bytes(), &mut response);
    }
}

fn parse_grant(body: &[u8]) -> Option<Grant> {
    let mut port = None;
    let mut lock_id = Text::EMPTY;
    let mut holder = None;
    let object = json::for_each_member(body, |key, value| match key {
        b"port" => port = json::as_u32(value).and_then(|p| u16::try_from(p).ok()),
        b"lock_id" => lock_id = Text::from_json(value),
        b"requested_port_holder" => holder = parse_holder(value),
        _ => {}
    });
    let port = port.filter(|p| object && *p != 0)?;
    Some(Grant { port, lock_id, holder })
}

fn parse_holder(value: &[u8]) -> Option<Holder> {
    let mut holder = Holder { process: Text::EMPTY, user: Text::EMPTY, pid: None, service_type: Text::EMPTY };
    let object = json::for_each_member(value, |key, value| match key {
        b"process" => holder.process = Text::from_json(value),
        b"user" => holder.user = Text::from_json(value),
        b"pid" => holder.pid = json::as_u32(value),
        b"service_type" => holder.service_type = Text::from_json(value),
        _ => {}
    });
    object.then_some(holder)
}

fn head_and_body(response: &[u8]) -> Option<(&[u8], &[u8])> {
    let head_end = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some((response.get(..head_end)?, response.get(head_end.checked_add(4)?..)?))
}

fn content_length(head: &[u8]) -> Option<usize> {
    head.split(|&b| b == b'\n').skip(1).find_map(|line| {
        let (name, value) = line.split_at_checked(line.iter().position(|&b| b == b':')?)?;
        if !name.eq_ignore_ascii_case(b"content-length") {
            return None;
        }
        sys::parse_u32(value.get(1..)?.trim_ascii()).and_then(|n| usize::try_from(n).ok())
    })
}

/// The status code and the body (cut to Content-Length when given; None
/// while it is shorter).
fn split_response(response: &[u8]) -> Option<(u32, &[u8])> {
    let (head, body) = head_and_body(response)?;
    let status_line = head.split(|&b| b == b'\n').next()?;
    if !status_line.starts_with(b"HTTP/1.") {
        return None;
    }
    let status = sys::parse_u32(status_line.split(|&b| b == b' ').nth(1)?)?;
    match content_length(head) {
        Some(n) => Some((status, body.get(..n)?)),
        None => Some((status, body)),
    }
}

/// True once the head and all Content-Length bytes of the body are in
/// (without Content-Length the answer ends when the allocator closes).
fn answer_complete(received: &[u8]) -> bool {
    head_and_body(received).is_some_and(|(head, body)| content_length(head).is_some_and(|n| body.len() >= n))
}

/// Sends `request` to the first allocator that accepts a connection and
/// reads the answer until it closes, all within the deadline.
fn exchange(request: &[u8], response: &mut [u8]) -> Option<usize> {
    let start = sys::now_ns();
    if start < SKIP_UNTIL_NS.load(Ordering::Relaxed) {
        return None;
    }
    let deadline = start.saturating_add(DEADLINE_NS);
    let config = config::get()?;
    let fd = config.sockets.iter().flatten().find_map(connect)?;
    let result = send_all(fd, request, deadline).and_then(|()| receive(fd, response, deadline));
    sys::close(fd);
    if result.is_none() && sys::now_ns() >= deadline {
        SKIP_UNTIL_NS.store(deadline.saturating_add(SKIP_AFTER_TIMEOUT_NS), Ordering::Relaxed);
    }
    result
}

fn connect(addr: &libc::sockaddr_un) -> Option<c_int> {
    // SAFETY: plain socket calls; addr is a complete sockaddr_un.
    unsafe {
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0);
        if fd < 0 {
            return None;
        }
        // A Unix connect completes at once or fails (EAGAIN when the
        // allocator's backlog is full, i.e. it is not accepting).
        let rc = libc::connect(
            fd,
            (addr as *const libc::sockaddr_un).cast(),
            size_of::<libc::sockaddr_un>() as libc::socklen_t,
        );
        // Another user's server on this path (a planted socket) gets
        // nothing from us and is treated as no allocator at all.
        if rc != 0 || styxy_proto::trust::check_server(fd).is_err() {
            sys::close(fd);
            return None;
        }
        Some(fd)
    }
}

/// Waits until `fd` is ready for `events`; false at the deadline.
fn wait(fd: c_int, events: libc::c_short, deadline: u64) -> bool {
    loop {
        let left_ms = deadline.saturating_sub(sys::now_ns()).div_ceil(1_000_000);
        if left_ms == 0 {
            return false;
        }
        let mut pfd = libc::pollfd { fd, events, revents: 0 };
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, c_int::try_from(left_ms).unwrap_or(c_int::MAX)) };
        if rc > 0 {
            return true;
        }
        if rc < 0 && sys::errno() != libc::EINTR {
            return false;
        }
    }
}

fn send_all(fd: c_int, mut data: &[u8], deadline: u64) -> Option<()> {
    while !data.is_empty() {
        // SAFETY: data is readable; MSG_NOSIGNAL: no SIGPIPE into the host
        // program if the allocator goes away.
        let n = unsafe { libc::send(fd, data.as_ptr().cast(), data.len(), libc::MSG_NOSIGNAL) };
        match usize::try_from(n) {
            Ok(n) => data = data.get(n..)?,
            Err(_) => match sys::errno() {
                libc::EINTR => {}
                libc::EAGAIN => {
                    if !wait(fd, libc::POLLOUT, deadline) {
                        return None;
                    }
                }
                _ => return None,
            },
        }
    }
    Some(())
}

fn receive(fd: c_int, buf: &mut [u8], deadline: u64) -> Option<usize> {
    let mut filled = 0usize;
    loop {
        let room = buf.get_mut(filled..)?;
        if room.is_empty() {
            return Some(filled);
        }
        // SAFETY: room is writable for its length.
        let n = unsafe { libc::recv(fd, room.as_mut_ptr().cast(), room.len(), 0) };
        match usize::try_from(n) {
            Ok(0) => return Some(filled),
            Ok(n) => {
                filled = filled.saturating_add(n);
                if answer_complete(buf.get(..filled)?) {
                    return Some(filled);
                }
            }
            Err(_) => match sys::errno() {
                libc::EINTR => {}
                libc::EAGAIN => {
                    if !wait(fd, libc::POLLIN, deadline) {
                        return None;
                    }
                }
                _ => return None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_port_lock_and_holder_from_an_allocate_answer() -> Result<(), &'static str> {
        let body = r#"{"success":true,"port":8001,"lock_id":"3f2a-11","requested_port":8000,"requested_port_holder":{"uid":0,"pid":4242,"process":"python3","service_type":"api"},"message":"ok"}"#;
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let (status, body) = split_response(answer.as_bytes()).ok_or("no response")?;
        assert_eq!(status, 200);
        let grant = parse_grant(body).ok_or("no grant")?;
        assert_eq!(grant.port, 8001);
        assert_eq!(grant.lock_id.as_bytes(), b"3f2a-11");
        let holder = grant.holder.ok_or("no holder")?;
        assert_eq!(holder.pid, Some(4242));
        assert_eq!(holder.process.as_bytes(), b"python3");
        assert_eq!(holder.service_type.as_bytes(), b"api");
        Ok(())
    }

    #[test]
    fn an_incomplete_answer_is_not_complete() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123";
        assert!(!answer_complete(head));
        assert!(answer_complete(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n0123"));
        assert!(!answer_complete(b"HTTP/1.1 200 OK\r\n\r\n0123"));
    }

    /// A header line other than Content-Length.
    fn other_header() -> impl Strategy<Value = String> {
        ("[A-Za-z][A-Za-z-]{0,15}", "[ -~]{0,30}")
            .prop_filter("not Content-Length", |(name, _)| !name.eq_ignore_ascii_case("content-length"))
            .prop_map(|(name, value)| format!("{name}: {value}\r\n"))
    }

    /// Content-Length as servers spell it.
    fn length_name() -> impl Strategy<Value = &'static str> {
        prop_oneof![Just("Content-Length"), Just("content-length"), Just("CONTENT-LENGTH")]
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Some((_, body)) = split_response(&bytes) {
                prop_assert!(body.len() <= bytes.len());
            }
            let _ = answer_complete(&bytes);
            let _ = parse_grant(&bytes);
        }

        #[test]
        fn an_answer_splits_into_its_status_and_body(
            status in 100u32..600,
            reason in "[A-Za-z ]{0,20}",
            headers in proptest::collection::vec(other_header(), 0..4),
            length_name in length_name(),
            length_at in 0usize..5,
            body in proptest::collection::vec(any::<u8>(), 0..200),
            trailing in proptest::collection::vec(any::<u8>(), 0..20),
            cut in any::<proptest::sample::Index>(),
        ) {
            let mut head = format!("HTTP/1.1 {status} {reason}\r\n");
            for (i, header) in headers.iter().enumerate() {
                if i == length_at {
                    head.push_str(&format!("{length_name}: {}\r\n", body.len()));
                }
                head.push_str(header);
            }
            if length_at >= headers.len() {
                head.push_str(&format!("{length_name}:{}\r\n", body.len()));
            }
            head.push_str("\r\n");
            let answer = [head.as_bytes(), &body, &trailing].concat();
            prop_assert_eq!(split_response(&answer), Some((status, body.as_slice())));
            prop_assert!(answer_complete(&answer));
            // An answer still arriving is neither complete nor split.
            let partial = answer.get(..cut.index(head.len().saturating_add(body.len()))).unwrap_or_default();
            prop_assert!(!answer_complete(partial));
            prop_assert_eq!(split_response(partial), None);
        }

        #[test]
        fn without_content_length_the_body_is_the_rest(
            status in 100u32..600,
            headers in proptest::collection::vec(other_header(), 0..4),
            body in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let head = format!("HTTP/1.0 {status} OK\r\n{}\r\n", headers.concat());
            let answer = [head.as_bytes(), &body].concat();
            prop_assert_eq!(split_response(&answer), Some((status, body.as_slice())));
            prop_assert!(!answer_complete(&answer));
        }

        #[test]
        fn a_grant_reads_back(
            port in 1u16..,
            lock_id in "[a-f0-9-]{0,36}",
            holder in proptest::option::of((
                "[a-z0-9 ._-]{0,70}",
                "[a-z]{0,20}",
                proptest::option::of(any::<u32>()),
                "[a-z]{0,20}",
            )),
        ) {
            // Absent or null, a holder reads as none.
            let holder_json = holder.as_ref().map(|(process, user, pid, kind)| {
                serde_json::json!({"uid": 0, "process": process, "user": user, "pid": pid, "service_type": kind})
            });
            let answer = serde_json::json!({
                "success": true, "port": port, "lock_id": lock_id, "requested_port_holder": holder_json, "message": "ok"
            });
            let grant = parse_grant(serde_json::to_string(&answer)?.as_bytes());
            let grant = grant.ok_or_else(|| TestCaseError::fail("no grant"))?;
            prop_assert_eq!(grant.port, port);
            prop_assert_eq!(grant.lock_id.as_bytes(), lock_id.as_bytes());
            let text = |t: &Text| t.as_bytes().to_vec();
            let clip = |t: &str| t.as_bytes().get(..NAME_CAP).unwrap_or(t.as_bytes()).to_vec();
            let read = grant.holder.map(|h| (text(&h.process), text(&h.user), h.pid, text(&h.service_type)));
            let sent = holder.as_ref().map(|(process, user, pid, kind)| (clip(process), clip(user), *pid, clip(kind)));
            prop_assert_eq!(read, sent);
        }
    }
}
