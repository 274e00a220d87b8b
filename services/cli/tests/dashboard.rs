//! `styxy ui` and `styxy top` against a real allocator: what the page and
//! the table show, who gets in, and whose ports may be released. The
//! browser test drives Debian's chromium (installed by scripts/test) over
//! its DevTools pipe. The cross-user tests need root (another user's
//! process owns a reservation).
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use styxy_testkit::{
    Dashboard, Hold, PATIENCE, Running, Sandbox, TEST_CONFIG, as_user, busy_port, c_program, ensure_user, hold,
    local_port, text,
};

const OTHER_USER: &str = "styxy-dash";

/// A manual reservation of ours in the test configuration's wide range,
/// tried first at a port of this test's own (parallel tests have
/// allocators of their own, which do not know each other's reservations);
/// its lock id and port.
fn reserve(sb: &Sandbox, name: &str) -> (String, u16) {
    let test =
        std::thread::current().name().unwrap_or_default().bytes().fold(0u32, |h, b| h.wrapping_mul(31) ^ u32::from(b));
    let preferred = (20_000 + (std::process::id() ^ test) % 10_000).to_string();
    let a = sb.json(&["allocate", "-s", "bulk", "-p", &preferred, "-n", name, "--lease", "manual"]);
    (a["lock_id"].as_str().unwrap().to_string(), a["port"].as_u64().unwrap() as u16)
}

/// A reservation owned by a process of another user (root names its pid);
/// the process, lock id and port.
fn reserve_for_other_user(sb: &Sandbox) -> (Child, String, u16) {
    let (uid, gid) = ensure_user(OTHER_USER);
    let holder = as_user(uid, gid, "sleep").arg("60").spawn().unwrap();
    // setpriv runs as root until it execs sleep as the user.
    let comm = format!("/proc/{}/comm", holder.id());
    let start = Instant::now();
    while std::fs::read_to_string(&comm).unwrap_or_default() != "sleep\n" {
        assert!(start.elapsed() < PATIENCE, "sleep never started as {OTHER_USER}");
        std::thread::sleep(Duration::from_millis(5));
    }
    let (status, answer) = sb
        .post("/allocate", &json!({"service_type":"dev","service_name":"theirs","pid":holder.id(),"lease":"process"}));
    assert_eq!(status, 200, "{answer}");
    (holder, answer["lock_id"].as_str().unwrap().to_string(), answer["port"].as_u64().unwrap() as u16)
}

fn is_root() -> bool {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() == 0 }
}

#[test]
fn ui_refuses_requests_without_the_cookie_from_another_origin_or_for_another_host() {
    let sb = Sandbox::with_config(TEST_CONFIG);
    let ui = Dashboard::start(&sb);
    let (status, _, body) = ui.request("GET", "/api/view", &[]);
    assert_eq!((status, body.as_str()), (401, "open the link `styxy ui` printed (its code works once)"));
    assert_eq!(ui.request("GET", "/?code=0000", &[]).0, 401, "a wrong code");

    let cookie = ui.cookie();
    assert_eq!(ui.request("GET", &format!("/?code={}", ui.code), &[]).0, 401, "the code works once");
    assert_eq!(ui.request("GET", "/api/view", &[("Cookie", &cookie)]).0, 200);
    let rebound = ui.request("GET", "/api/view", &[("Host", "attacker.example"), ("Cookie", &cookie)]);
    assert_eq!(rebound.0, 421, "DNS rebinding: {}", rebound.2);
    let foreign = ui.request("GET", "/api/view", &[("Cookie", &cookie), ("Origin", "http://attacker.example")]);
    assert_eq!(foreign.0, 403, "{}", foreign.2);
    assert!(!foreign.1.to_ascii_lowercase().contains("access-control-allow"), "no CORS: {}", foreign.1);
    // A cross-site form post carries no custom header: refused.
    let origin = format!("http://127.0.0.1:{}", ui.port);
    let csrf = ui.request("POST", "/api/release/x", &[("Cookie", &cookie), ("Origin", &origin)]);
    assert_eq!(csrf.0, 403, "{}", csrf.2);
}

#[test]
fn ui_shows_reservations_and_listeners_and_releases_only_your_own() {
    if !is_root() {
        eprintln!("skipped: needs root for another user's reservation");
        return;
    }
    let sb = Sandbox::with_config(TEST_CONFIG);
    let (lock_id, port) = reserve(&sb, "web");
    let mut server = Running::start({
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "http.server", "--bind", "127.0.0.1", &port.to_string()]).env("PYTHONUNBUFFERED", "1");
        cmd
    });
    assert_eq!(server.listening(), port);
    let external = hold("127.0.0.1", 0, Hold::default());
    let external_port = local_port(&external);
    let (mut holder, their_lock, their_port) = reserve_for_other_user(&sb);

    let ui = Dashboard::start(&sb);
    let cookie = ui.cookie();
    let (status, _, body) = ui.request("GET", "/api/view", &[("Cookie", &cookie)]);
    assert_eq!(status, 200, "{body}");
    let view: Value = serde_json::from_str(&body).unwrap();
    let rows: Vec<&Value> = view["projects"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["scopes"].as_array().unwrap())
        .flat_map(|s| s["services"].as_array().unwrap())
        .collect();
    let mine = rows.iter().find(|r| r["lock_id"] == lock_id.as_str()).expect("our reservation");
    assert_eq!((mine["port"].as_u64(), mine["state"].as_str()), (Some(u64::from(port)), Some("listening")));
    assert_eq!(mine["url"], format!("http://localhost:{port}/"));
    assert_eq!((mine["mine"].as_bool(), mine["pid"].as_u64()), (Some(true), Some(u64::from(server.pid()))));
    assert!(mine["command"].as_str().unwrap().contains("http.server"), "{mine}");
    let theirs = rows.iter().find(|r| r["lock_id"] == their_lock.as_str()).expect("their reservation");
    assert_eq!((theirs["user"].as_str(), theirs["mine"].as_bool()), (Some(OTHER_USER), Some(false)));
    let others = view["others"].as_array().unwrap();
    assert!(others.iter().any(|o| o["port"] == external_port), "external listener {external_port}: {others:?}");

    // Another user with the cookie (a browser sends it to any port of
    // 127.0.0.1, theirs too) is still refused: the kernel says who connected.
    let (uid, gid) = ensure_user(OTHER_USER);
    let stolen = as_user(uid, gid, "curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", &format!("Cookie: {cookie}")])
        .arg(format!("http://127.0.0.1:{}/api/view", ui.port))
        .output()
        .unwrap();
    assert_eq!(text(&stolen.stdout), "403", "{}", text(&stolen.stderr));

    let origin = format!("http://127.0.0.1:{}", ui.port);
    let action = [("Cookie", cookie.as_str()), ("Origin", origin.as_str()), ("X-Styxy-Action", "1")];
    for kind in ["release", "stop"] {
        let (status, _, body) = ui.request("POST", &format!("/api/{kind}/{their_lock}"), &action);
        assert_eq!(status, 403, "{kind} of another user's: {body}");
        assert!(body.contains(&format!("port {their_port} is {OTHER_USER}'s")), "{body}");
    }
    assert!(holder.try_wait().unwrap().is_none(), "their process still runs");
    assert!(sb.allocations().iter().any(|a| a["lock_id"] == their_lock.as_str()), "their port still reserved");

    // Our own server is stopped with SIGTERM, and its port released.
    let (status, _, body) = ui.request("POST", &format!("/api/stop/{lock_id}"), &action);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("sent SIGTERM to pid {} (port {port})", server.pid())), "{body}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(server.wait_exit().signal(), Some(libc::SIGTERM));
    let (status, _, body) = ui.request("POST", &format!("/api/release/{lock_id}"), &action);
    assert_eq!(status, 200, "{body}");
    assert!(!sb.allocations().iter().any(|a| a["lock_id"] == lock_id.as_str()), "ours released");
    holder.kill().unwrap();
    holder.wait().unwrap();
}

#[test]
fn top_prints_a_plain_table_off_a_terminal() {
    let sb = Sandbox::with_config(TEST_CONFIG);
    let (lock_id, port) = reserve(&sb, "web");
    let _serving = hold("127.0.0.1", port, Hold::default());
    let external = hold("127.0.0.1", 0, Hold::default());
    let external_port = local_port(&external);
    let out = sb.run(&["top"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let mut lines = table.lines();
    assert!(lines.next().unwrap().starts_with("PORT  "), "{table}");
    let row = table.lines().find(|l| l.starts_with(&format!("{port} "))).unwrap_or_else(|| panic!("{table}"));
    for cell in ["web", "bulk", "listening", &format!("http://localhost:{port}/")] {
        assert!(row.contains(cell), "row lacks {cell}: {row}");
    }
    let others = table.split("Other listeners\n").nth(1).unwrap_or_else(|| panic!("{table}"));
    assert!(others.lines().any(|l| l.starts_with(&format!("{external_port} "))), "{table}");
    assert!(!table.contains(&lock_id), "the table names ports, not lock ids");
}

/// Chromium's DevTools protocol over `--remote-debugging-pipe`: JSON
/// messages ended by NUL, commands on its fd 3, answers on its fd 4.
struct Chromium {
    child: Child,
    commands: std::fs::File,
    answers: BufReader<std::fs::File>,
    next_id: u64,
    session: Option<String>,
    _profile: tempfile::TempDir,
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two-element array.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fresh descriptors we own.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

impl Chromium {
    fn start() -> Chromium {
        let profile = tempfile::tempdir().unwrap();
        let (their_read, our_write) = pipe();
        let (our_read, their_write) = pipe();
        let (r, w) = (their_read.as_raw_fd(), their_write.as_raw_fd());
        let mut cmd = Command::new("chromium");
        cmd.args(["--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe", "--no-first-run"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: dup2 only, between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(r, 3) < 0 || libc::dup2(w, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("run chromium (scripts/test installs it): {e}"));
        drop((their_read, their_write));
        Chromium {
            child,
            commands: std::fs::File::from(our_write),
            answers: BufReader::new(std::fs::File::from(our_read)),
            next_id: 0,
            session: None,
            _profile: profile,
        }
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let mut message = json!({"id": self.next_id, "method": method, "params": params});
        if let Some(session) = &self.session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.commands.write_all(&bytes).unwrap();
        loop {
            let mut raw = Vec::new();
            self.answers.read_until(0, &mut raw).unwrap();
            raw.pop();
            let answer: Value = serde_json::from_slice(&raw).unwrap();
            if answer["id"] == self.next_id {
                assert!(answer.get("error").is_none(), "{method}: {answer}");
                return answer["result"].clone();
            }
        }
    }

    fn open(&mut self, url: &str) {
        let target = self.call("Target.createTarget", json!({"url": url}));
        let attached = self.call("Target.attachToTarget", json!({"targetId": target["targetId"], "flatten": true}));
        self.session = Some(attached["sessionId"].as_str().unwrap().to_string());
    }

    fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call("Runtime.evaluate", json!({"expression": expression, "returnByValue": true, "awaitPromise": true}));
        result["result"]["value"].clone()
    }

    /// Evaluates `expression` until it is true, and how long that took.
    fn wait_for(&mut self, expression: &str) -> Duration {
        let start = Instant::now();
        while start.elapsed() < PATIENCE {
            if self.eval(expression) == json!(true) {
                return start.elapsed();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("never true: {expression}; page: {}", self.eval("document.body.innerText"));
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_page_in_chromium_shows_a_server_and_a_listener_and_releases_only_your_own() {
    if !is_root() {
        eprintln!("skipped: needs root for another user's reservation");
        return;
    }
    let sb = Sandbox::with_config(TEST_CONFIG);
    let (lock_id, port) = reserve(&sb, "web");
    let external = hold("127.0.0.1", 0, Hold::default());
    let external_port = local_port(&external);
    let (mut holder, their_lock, _) = reserve_for_other_user(&sb);
    let ui = Dashboard::start(&sb);
    let mut browser = Chromium::start();
    browser.open(&ui.url());

    let row = format!("document.querySelector('tr[data-lock-id=\"{lock_id}\"]')");
    browser.wait_for(&format!("{row}?.innerText.includes('reserved') === true"));
    browser.wait_for(&format!("document.querySelector('#others tr[data-port=\"{external_port}\"]') !== null"));
    // A server starting on the reserved port shows as listening.
    let serving = hold("127.0.0.1", port, Hold::default());
    let took = browser.wait_for(&format!("{row}?.innerText.includes('listening') === true"));
    assert!(took < PATIENCE, "listening shown after {took:?}");
    let link = browser.eval(&format!("{row}.querySelector('a').href"));
    assert_eq!(link, json!(format!("http://localhost:{port}/")));

    // A server the preload moves off a busy port shows as `busy → actual`,
    // linked to the actual port, and goes when it exits.
    let (_busy_holder, busy) = busy_port();
    let mut cmd = sb.command(c_program("serve"));
    cmd.args(["127.0.0.1", &busy.to_string()]);
    let mut moved = Running::start(cmd);
    let (_, actual) = moved.the_move();
    let moved_row = format!("document.querySelector('tr[data-port=\"{actual}\"]')");
    browser.wait_for(&format!("{moved_row}?.querySelector('a').innerText === '{busy} → {actual}'"));
    assert_eq!(
        browser.eval(&format!("{moved_row}.querySelector('a').href")),
        json!(format!("http://localhost:{actual}/"))
    );
    assert_eq!(browser.eval(&format!("{moved_row}.querySelector('.state').innerText")), json!("moved"));
    moved.stop();
    browser.wait_for(&format!("{moved_row} === null"));
    browser.wait_for(&format!("document.getElementById('recent').innerText.includes('{busy} → {actual}')"));

    let their_row = format!("document.querySelector('tr[data-lock-id=\"{their_lock}\"]')");
    browser.wait_for(&format!("{their_row} !== null && {their_row}.querySelector('button') === null"));
    // The server refuses it even when the page's own script asks.
    let refused = browser.eval(&format!(
        "fetch('/api/release/{their_lock}', {{method: 'POST', headers: {{'X-Styxy-Action': '1'}}}}).then(r => r.status)"
    ));
    assert_eq!(refused, json!(403));

    browser.eval(&format!("{row}.querySelector('button.release').click(), true"));
    browser.wait_for(&format!("{row} === null"));
    assert!(!sb.allocations().iter().any(|a| a["lock_id"] == lock_id.as_str()), "released");
    assert!(sb.allocations().iter().any(|a| a["lock_id"] == their_lock.as_str()), "theirs kept");
    drop(serving);
    holder.kill().unwrap();
    holder.wait().unwrap();
}

/// `styxy top` in a detached 80×24 tmux window on a private tmux socket.
struct Tmux {
    socket: std::path::PathBuf,
}

impl Tmux {
    fn start(sb: &Sandbox, args: &[&str]) -> Tmux {
        let tmux = Tmux { socket: sb.path().join("tmux.sock") };
        let styxy = sb.styxy();
        let mut cmd = tmux.command();
        cmd.args(["new-session", "-d", "-x", "80", "-y", "24"]);
        for (name, value) in styxy.get_envs() {
            if let Some(value) = value {
                cmd.arg("-e").arg(format!("{}={}", name.to_string_lossy(), value.to_string_lossy()));
            }
        }
        cmd.arg("--").arg(styxy.get_program()).args(args);
        let status = cmd.status().unwrap_or_else(|e| panic!("run tmux (scripts/test installs it): {e}"));
        assert!(status.success());
        tmux
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("tmux");
        cmd.arg("-S").arg(&self.socket).env_remove("TMUX");
        cmd
    }

    fn screen(&self) -> String {
        text(&self.command().args(["capture-pane", "-p"]).output().unwrap().stdout)
    }

    fn keys(&self, keys: &[&str]) {
        assert!(self.command().arg("send-keys").args(keys).status().unwrap().success());
    }

    fn wait_for(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if ok(&screen) {
                return screen;
            }
            assert!(start.elapsed() < PATIENCE, "never {what}:\n{screen}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // The server is gone already when `top` quit.
        let _ = self.command().arg("kill-server").stderr(Stdio::null()).status();
    }
}

#[test]
fn top_in_a_terminal_shows_the_server_and_releases_it_from_the_keyboard() {
    let sb = Sandbox::with_config(TEST_CONFIG);
    let (lock_id, port) = reserve(&sb, "web");
    let _serving = hold("127.0.0.1", port, Hold::default());
    let tmux = Tmux::start(&sb, &["top"]);
    let row_of = |screen: &str| screen.lines().find(|l| l.starts_with(&format!("{port} "))).map(str::to_string);
    let screen = tmux.wait_for("shows the server", |s| row_of(s).is_some_and(|r| r.contains("listening")));
    let row = row_of(&screen).unwrap();
    for cell in ["web", "bulk", "listening", "root"] {
        assert!(row.contains(cell), "row lacks {cell}: {row}\n{screen}");
    }
    assert!(screen.lines().all(|l| l.chars().count() <= 80), "{screen}");

    // The cursor starts on the first row under the headings: the server.
    tmux.keys(&["r"]);
    tmux.wait_for("says it released the port", |s| s.contains(&format!("Port {port} released")));
    // The test's socket still listens: the port moves to the other listeners.
    tmux.wait_for("drops the reservation", |s| row_of(s).is_some_and(|r| !r.contains("web")));
    assert!(!sb.allocations().iter().any(|a| a["lock_id"] == lock_id.as_str()), "released");
    tmux.keys(&["q"]);
}
