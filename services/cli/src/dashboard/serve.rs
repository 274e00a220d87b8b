//! `styxy ui`: the dashboard page on a loopback port, for the user who ran
//! it only.
//!
//! Other local users can connect to any loopback port, and any web page the
//! user's browser opens can send requests to one. So a connection is
//! served only when the kernel says the user's own process opened it (a
//! browser sends every cookie of 127.0.0.1 to any of its ports, another
//! user's server included), and every request must pass [`admit`]: the Host is this very listener's (a DNS-rebinding page
//! names its own host), an Origin or `Sec-Fetch-Site` that is present says
//! same-origin, and the session cookie is there. The cookie (HttpOnly,
//! SameSite=Strict) is given once, for the one-time code in the URL that
//! `styxy ui` prints. No CORS header is ever sent, so another origin can
//! neither read an answer nor send the `X-Styxy-Action` header an action
//! needs. Everything the page shows comes from the allocator, asked as this
//! user, and every action is checked again in [`super::Watch`].

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use styxy_observe::sockdiag::SockDiag;

use super::model::View;
use super::{ActionError, Watch};
use crate::output::{Failure, print, warn};

/// Connections served at once; more are turned away.
const MAX_CONNECTIONS: usize = 32;
/// Largest request head read.
const MAX_HEAD: u64 = 16 * 1024;
/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How often an open event stream looks for a change.
const POLL_EVERY: Duration = Duration::from_millis(100);
/// A comment line on an idle event stream, so a closed page is noticed.
const KEEPALIVE_EVERY: Duration = Duration::from_secs(15);
/// The header an action request must carry (a cross-origin page cannot
/// set it without a CORS preflight, which is never granted).
pub const ACTION_HEADER: &str = "x-styxy-action";

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// The secrets of one `styxy ui` run.
pub struct Secrets {
    /// Exchanged once for the cookie; None once used.
    code: Mutex<Option<String>>,
    /// The cookie's value.
    session: String,
}

impl Secrets {
    pub fn new(code: String, session: String) -> Secrets {
        Secrets { code: Mutex::new(Some(code)), session }
    }

    /// Random secrets from the kernel.
    pub fn random() -> io::Result<Secrets> {
        Ok(Secrets::new(random_hex()?, random_hex()?))
    }

    /// Consumes the one-time code when `offered` is it.
    fn redeem(&self, offered: &str) -> bool {
        let mut code = self.code.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let matches = code.as_deref().is_some_and(|c| constant_time_eq(c, offered));
        if matches {
            *code = None;
        }
        matches
    }
}

/// 32 random bytes as hex.
fn random_hex() -> io::Result<String> {
    let mut bytes = [0u8; 32];
    // SAFETY: getrandom writes at most `bytes.len()` bytes into the buffer.
    let got = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if got != bytes.len() as isize {
        return Err(io::Error::last_os_error());
    }
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// One request as read: method, path, query and headers (names lowercase).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == "cookie")
            .flat_map(|(_, v)| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }

    fn query_param(&self, name: &str) -> Option<&str> {
        self.query.split('&').filter_map(|pair| pair.split_once('=')).find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

/// What [`admit`] decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// A request of the page: serve it.
    Page,
    /// The one-time code: set the cookie and go to the page.
    Redeemed,
    Refused {
        status: u16,
        reason: &'static str,
    },
}

/// The name of the session cookie of the listener on `port` (cookies are
/// not kept apart by port: each run's has its own name).
pub fn cookie_name(port: u16) -> String {
    format!("styxy_ui_{port}")
}

/// Whether to serve `request` on loopback `port`.
pub fn admit(request: &Request, port: u16, secrets: &Secrets) -> Admission {
    let refused = |status, reason| Admission::Refused { status, reason };
    let ours = |authority: &str| authority == format!("127.0.0.1:{port}") || authority == format!("localhost:{port}");
    if !request.header("host").is_some_and(ours) {
        return refused(421, "this dashboard answers only to its own loopback address");
    }
    if let Some(origin) = request.header("origin")
        && !origin.strip_prefix("http://").is_some_and(ours)
    {
        return refused(403, "requests from other origins are refused");
    }
    if request.header("sec-fetch-site").is_some_and(|site| site != "same-origin" && site != "none") {
        return refused(403, "requests from other sites are refused");
    }
    let has_cookie = request.cookie(&cookie_name(port)).is_some_and(|c| constant_time_eq(c, &secrets.session));
    if !has_cookie {
        if request.method == "GET"
            && request.path == "/"
            && request.query_param("code").is_some_and(|code| secrets.redeem(code))
        {
            return Admission::Redeemed;
        }
        return refused(401, "open the link `styxy ui` printed (its code works once)");
    }
    if request.method == "POST" && (request.header("origin").is_none() || request.header(ACTION_HEADER) != Some("1")) {
        return refused(403, "an action needs the page's own request");
    }
    Admission::Page
}

/// `styxy ui`: checks that the allocator answers, binds, prints the URL
/// (and opens it when `open` and a desktop is there), then serves until
/// interrupted.
pub fn ui(ctx: &crate::Ctx, port: u16, open: bool) -> Result<u8, Failure> {
    let watch = Arc::new(Watch::new(ctx.discovery.clone()));
    watch.view()?;
    let local = |what: &str, e: io::Error| Failure::local("ui", format!("{what}: {e}"));
    let listener = bind(port).map_err(|e| local(&format!("cannot listen on 127.0.0.1:{port}"), e))?;
    let port = listener.local_addr().map_err(|e| local("cannot read the listening address", e))?.port();
    let secrets = Arc::new(Secrets::random().map_err(|e| local("cannot read random bytes", e))?);
    let code = secrets.code.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone().unwrap_or_default();
    let url = format!("http://127.0.0.1:{port}/?code={code}");
    if ctx.json {
        print(&format!("{}\n", serde_json::json!({"url": url, "port": port})));
    } else {
        print(&format!("Styxy dashboard: {url}\n(the link works once, in one browser; Ctrl-C stops the dashboard)\n"));
    }
    if open {
        open_browser(&url);
    }
    serve(listener, watch, secrets).map_err(|e| local(&format!("serving 127.0.0.1:{port}"), e))?;
    Ok(crate::cli::EXIT_OK)
}

/// Opens `url` in `$BROWSER`, else with xdg-open, when a graphical session is there.
fn open_browser(url: &str) {
    let desktop = ["DISPLAY", "WAYLAND_DISPLAY"].iter().any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()));
    if !desktop {
        return;
    }
    let browser = std::env::var("BROWSER").ok().filter(|b| !b.trim().is_empty());
    let program = browser.as_deref().unwrap_or("xdg-open");
    let spawned = std::process::Command::new(program)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if let Err(e) = spawned {
        warn(&format!("cannot open a browser with {program}: {e}; open the link yourself"));
    }
}

/// Binds the dashboard's listener on 127.0.0.1 (`port` 0: any free port).
pub fn bind(port: u16) -> io::Result<TcpListener> {
    TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
}

/// Serves the dashboard on `listener` until the process ends.
pub fn serve(listener: TcpListener, watch: Arc<Watch>, secrets: Arc<Secrets>) -> io::Result<()> {
    let port = listener.local_addr()?.port();
    let open = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        if open.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            open.fetch_sub(1, Ordering::SeqCst);
            let _ = respond(&stream, 503, "text/plain", b"too many connections", &[]);
            continue;
        }
        let (watch, secrets, open) = (watch.clone(), secrets.clone(), open.clone());
        std::thread::spawn(move || {
            let _ = if connected_by(&stream) == Some(watch.viewer_uid) {
                handle(&stream, port, &watch, &secrets)
            } else {
                respond(&stream, 403, "text/plain", b"this dashboard serves only its own user's programs", &[])
            };
            open.fetch_sub(1, Ordering::SeqCst);
        });
    }
    Ok(())
}

/// The uid of the process that opened `stream` (loopback only: the kernel
/// knows both ends); None when it cannot be told.
fn connected_by(stream: &TcpStream) -> Option<u32> {
    let (peer, local) = (stream.peer_addr().ok()?, stream.local_addr().ok()?);
    SockDiag::open().and_then(|mut diag| diag.tcp_connection_uid(peer.port(), local.port())).ok().flatten()
}

fn read_request(stream: &TcpStream) -> io::Result<Option<Request>> {
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    let mut reader = BufReader::new(stream.take(MAX_HEAD));
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
        return Ok(None);
    };
    if !version.starts_with("HTTP/1.") {
        return Ok(None);
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut request = Request { method: method.into(), path: path.into(), query: query.into(), headers: Vec::new() };
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || !line.ends_with('\n') {
            return Ok(None);
        }
        let line = line.trim_end();
        if line.is_empty() {
            return Ok(Some(request));
        }
        let Some((name, value)) = line.split_once(':') else { return Ok(None) };
        request.headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
}

fn handle(stream: &TcpStream, port: u16, watch: &Watch, secrets: &Secrets) -> io::Result<()> {
    let Some(request) = read_request(stream)? else {
        return respond(stream, 400, "text/plain", b"bad request", &[]);
    };
    match admit(&request, port, secrets) {
        Admission::Refused { status, reason } => respond(stream, status, "text/plain", reason.as_bytes(), &[]),
        Admission::Redeemed => {
            let cookie =
                format!("Set-Cookie: {}={}; Path=/; HttpOnly; SameSite=Strict", cookie_name(port), secrets.session);
            respond(stream, 303, "text/plain", b"", &[&cookie, "Location: /"])
        }
        Admission::Page => route(stream, &request, watch),
    }
}

fn route(stream: &TcpStream, request: &Request, watch: &Watch) -> io::Result<()> {
    let json = "application/json";
    match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/") => respond(stream, 200, "text/html; charset=utf-8", INDEX_HTML.as_bytes(), &[]),
        ("GET", "/app.js") => respond(stream, 200, "text/javascript; charset=utf-8", APP_JS.as_bytes(), &[]),
        ("GET", "/app.css") => respond(stream, 200, "text/css; charset=utf-8", APP_CSS.as_bytes(), &[]),
        ("GET", "/api/view") => match watch.view() {
            Ok(view) => respond(stream, 200, json, &serde_json::to_vec(&*view).unwrap_or_default(), &[]),
            Err(failure) => respond(stream, 502, json, failure.to_json().as_bytes(), &[]),
        },
        ("GET", "/api/events") => events(stream, watch),
        ("POST", path) => {
            let result = if let Some(lock_id) = path.strip_prefix("/api/release/") {
                watch.release(lock_id)
            } else if let Some(lock_id) = path.strip_prefix("/api/stop/") {
                watch.stop(lock_id)
            } else {
                return respond(stream, 404, "text/plain", b"not found", &[]);
            };
            let (status, body) = action_answer(result);
            respond(stream, status, json, body.to_string().as_bytes(), &[])
        }
        (_, "/" | "/app.js" | "/app.css" | "/api/view" | "/api/events") => {
            respond(stream, 405, "text/plain", b"method not allowed", &[])
        }
        _ => respond(stream, 404, "text/plain", b"not found", &[]),
    }
}

fn action_answer(result: Result<String, ActionError>) -> (u16, serde_json::Value) {
    use super::model::Refusal;
    let (status, code, message) = match result {
        Ok(message) => return (200, serde_json::json!({"success": true, "message": message})),
        Err(ActionError::Refused(refusal @ Refusal::Unknown(_))) => (404, "not_found", refusal.to_string()),
        Err(ActionError::Refused(refusal)) => (403, "forbidden", refusal.to_string()),
        Err(error) => (502, "failed", error.to_string()),
    };
    (status, serde_json::json!({"success": false, "error": code, "message": message}))
}

/// Server-sent events: the view each time it changes, read every
/// [`POLL_EVERY`] while the page is open and not at all once it closes.
fn events(stream: &TcpStream, watch: &Watch) -> io::Result<()> {
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n\
                X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n";
    let mut out = stream;
    out.write_all(head.as_bytes())?;
    // The view last sent (the same Arc comes back while nothing changed,
    // so an idle page costs no serialising), and its bytes.
    let mut last_view: Option<Arc<View>> = None;
    let mut last = Vec::new();
    let mut last_write = Instant::now();
    loop {
        let message = match watch.view() {
            Ok(view) if last_view.as_ref().is_some_and(|sent| Arc::ptr_eq(sent, &view)) => None,
            Ok(view) => {
                let bytes = serde_json::to_vec(&*view).unwrap_or_default();
                last_view = Some(view);
                Some(bytes)
            }
            Err(failure) => {
                last_view = None;
                Some(format!("{{\"failure\":{}}}", failure.to_json()).into_bytes())
            }
        };
        if let Some(message) = message.filter(|m| *m != last) {
            out.write_all(b"data: ")?;
            out.write_all(&message)?;
            out.write_all(b"\n\n")?;
            last = message;
            last_write = Instant::now();
        } else if last_write.elapsed() >= KEEPALIVE_EVERY {
            out.write_all(b": still here\n\n")?;
            last_write = Instant::now();
        }
        if hung_up(stream, POLL_EVERY) {
            return Ok(());
        }
    }
}

/// Waits up to `wait` for the page to close its end; true when it did. A
/// closed page stops its reading at once, not at the next write.
fn hung_up(stream: &TcpStream, wait: Duration) -> bool {
    use std::os::fd::AsRawFd;
    let mut poll = libc::pollfd { fd: stream.as_raw_fd(), events: libc::POLLRDHUP, revents: 0 };
    // SAFETY: one valid pollfd for the duration of the call.
    let ready = unsafe { libc::poll(&mut poll, 1, wait.as_millis() as libc::c_int) };
    ready > 0 && poll.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}

fn respond(mut stream: &TcpStream, status: u16, content_type: &str, body: &[u8], extra: &[&str]) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        303 => "See Other",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        421 => "Misdirected Request",
        502 => "Bad Gateway",
        _ => "Service Unavailable",
    };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nX-Frame-Options: DENY\r\n\
         Referrer-Policy: no-referrer\r\nContent-Security-Policy: default-src 'self'; frame-ancestors 'none'; \
         base-uri 'none'; form-action 'none'\r\n",
        body.len()
    );
    for line in extra {
        head.push_str(line);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PORT: u16 = 41234;

    fn request(method: &str, target: &str, headers: &[(&str, &str)]) -> Request {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        Request {
            method: method.into(),
            path: path.into(),
            query: query.into(),
            headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
        }
    }

    fn secrets() -> Secrets {
        Secrets::new("c0de".into(), "5e55".into())
    }

    const HOST: (&str, &str) = ("host", "127.0.0.1:41234");
    const COOKIE: (&str, &str) = ("cookie", "other=1; styxy_ui_41234=5e55");

    #[test]
    fn the_one_time_code_gives_the_cookie_once() {
        let s = secrets();
        assert_eq!(admit(&request("GET", "/?code=c0de", &[HOST]), PORT, &s), Admission::Redeemed);
        assert!(matches!(
            admit(&request("GET", "/?code=c0de", &[HOST]), PORT, &s),
            Admission::Refused { status: 401, .. }
        ));
        assert_eq!(admit(&request("GET", "/", &[HOST, COOKIE]), PORT, &s), Admission::Page);
    }

    #[test]
    fn requests_without_the_cookie_or_with_a_wrong_one_are_refused() {
        let s = secrets();
        for headers in
            [vec![HOST], vec![HOST, ("cookie", "styxy_ui_41234=5e56")], vec![HOST, ("cookie", "styxy_ui_1=5e55")]]
        {
            assert!(matches!(
                admit(&request("GET", "/api/view", &headers), PORT, &s),
                Admission::Refused { status: 401, .. }
            ));
        }
        assert!(matches!(admit(&request("GET", "/?code=wrong", &[HOST]), PORT, &s), Admission::Refused { .. }));
    }

    #[test]
    fn a_foreign_host_origin_or_site_is_refused_even_with_the_cookie() {
        let s = secrets();
        let cases: [(&[(&str, &str)], u16); 5] = [
            (&[("host", "evil.example:41234"), COOKIE], 421),
            (&[("host", "127.0.0.1:9999"), COOKIE], 421),
            (&[COOKIE], 421),
            (&[HOST, COOKIE, ("origin", "http://evil.example")], 403),
            (&[HOST, COOKIE, ("sec-fetch-site", "cross-site")], 403),
        ];
        for (headers, status) in cases {
            assert_eq!(
                admit(&request("GET", "/api/view", headers), PORT, &s),
                Admission::Refused {
                    status,
                    reason: match status {
                        421 => "this dashboard answers only to its own loopback address",
                        _ if headers.iter().any(|(n, _)| *n == "origin") => "requests from other origins are refused",
                        _ => "requests from other sites are refused",
                    }
                },
                "{headers:?}"
            );
        }
        let localhost = [("host", "localhost:41234"), COOKIE, ("origin", "http://localhost:41234")];
        assert_eq!(admit(&request("GET", "/api/view", &localhost), PORT, &s), Admission::Page);
    }

    #[test]
    fn an_action_needs_the_pages_origin_and_header() {
        let s = secrets();
        let origin = ("origin", "http://127.0.0.1:41234");
        let action = (ACTION_HEADER, "1");
        assert_eq!(
            admit(&request("POST", "/api/release/x", &[HOST, COOKIE, origin, action]), PORT, &s),
            Admission::Page
        );
        for headers in [vec![HOST, COOKIE, origin], vec![HOST, COOKIE, action]] {
            assert!(matches!(
                admit(&request("POST", "/api/release/x", &headers), PORT, &s),
                Admission::Refused { status: 403, .. }
            ));
        }
    }
}
