//! `styxy run`'s seccomp supervisor with real programs the preload never
//! reaches: Go servers built here (static and cgo, Debian's golang-go), a
//! static musl C server (musl-tools), each on a busy port: moved, the line
//! printed, recorded with the allocator, serving where it says; the same for
//! Debian's hugo (`hugo server` on a busy 1313) and esbuild's own Go binary
//! (`esbuild --serve`, the npm package, pinned in tests/esbuild/version and
//! installed under target/esbuild by scripts/test); a Go client sent after
//! its scope's moved server; a 32-bit program, whose sockets fail rather
//! than slip past the supervisor.
#![allow(clippy::unwrap_used)] // a test or benchmark: a failed unwrap is a failure

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use styxy_testkit::{
    Hold, Running, Sandbox, ask, busy_port, free_port, go_program, hold, http_get, local_port, musl_program, text,
};

/// `styxy run ARGS -- PROGRAM...` in the sandbox, running.
fn styxy_run(sb: &Sandbox, args: &[&str], program: &[&str]) -> Running {
    let mut cmd = sb.styxy();
    cmd.arg("run").args(args).arg("--").args(program);
    Running::start(cmd)
}

/// Stops a supervised program as a process manager would: SIGTERM to
/// `styxy run`, which passes it on and ends as the program did.
fn stop(running: &mut Running) {
    // SAFETY: signalling the styxy run the test started.
    unsafe { libc::kill(running.pid() as i32, libc::SIGTERM) };
    let status = running.wait_exit();
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
}

/// The allocation the sandbox's allocator lists on `port`.
fn listed(sb: &Sandbox, port: u16) -> serde_json::Value {
    let list = sb.json(&["list"]);
    let found = list["allocations"].as_array().unwrap().iter().find(|a| a["port"] == port).cloned();
    found.unwrap_or_else(|| panic!("port {port} is not listed: {list}"))
}

/// A server under the supervisor on a busy port: says it moved, listens
/// and answers where it says, and the move is the program's allocation.
fn moves_and_serves(sb: &Sandbox, args: &[&str], program: &[&str], busy: u16) {
    let mut server = styxy_run(sb, args, program);
    let line = server.stdout_line(|l| l.starts_with("listening "));
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (port, pid): (u16, u32) = (fields[2].parse().unwrap(), fields[3].parse().unwrap());
    let (requested, now) = server.the_move();
    assert_eq!((requested, now), (busy, port), "{line}");
    assert_ne!(port, busy);
    assert_eq!(server.styxy_lines().len(), 1, "exactly one line: {:?}", server.styxy_lines());
    assert_eq!(http_get("127.0.0.1", port).lines().last().unwrap(), format!("serve {pid} {port}"));
    let allocation = listed(sb, port);
    assert_eq!(allocation["source"], "preload", "{allocation}");
    assert_eq!(allocation["owner"]["pid"], pid, "{allocation}");
    stop(&mut server);
}

#[test]
fn a_static_go_server_on_a_busy_port_is_moved_and_serves_where_it_says() {
    let sb = Sandbox::new();
    let (_held, busy) = busy_port();
    let server = go_program("serve", false);
    let port = busy.to_string();
    // auto picks the supervisor for a Go program.
    moves_and_serves(&sb, &[], &[server.to_str().unwrap(), "127.0.0.1", &port], busy);
}

/// The program `styxy run` started (its only child).
fn supervised_pid(running: &Running) -> u32 {
    let children = format!("/proc/{0}/task/{0}/children", running.pid());
    let listed = std::fs::read_to_string(&children).unwrap_or_else(|e| panic!("read {children}: {e}"));
    listed.split_whitespace().next().unwrap_or_else(|| panic!("{children} is empty")).parse().unwrap()
}

#[test]
fn hugo_server_on_a_busy_1313_is_moved_by_styxy_and_serves_the_site() {
    let sb = Sandbox::new();
    let _held = hold("127.0.0.1", 1313, Hold { reuseaddr: true, ..Hold::default() });
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("hugo.toml"), "title = \"styxy test site\"\n").unwrap();
    std::fs::create_dir(site.path().join("layouts")).unwrap();
    std::fs::write(site.path().join("layouts/index.html"), "<p>{{ .Site.Title }}</p>\n").unwrap();
    let source = site.path().to_str().unwrap();
    let cache = site.path().join("cache");
    // --port: hugo asked for 1313 itself, so without styxy it would fail
    // ("address already in use") instead of picking a port of its own.
    let program = ["hugo", "server", "--source", source, "--cacheDir", cache.to_str().unwrap()];
    let flags = ["--bind", "127.0.0.1", "--port", "1313", "--watch=false", "--disableLiveReload"];
    let mut hugo = styxy_run(&sb, &[], &[&program[..], &flags[..]].concat());
    hugo.stdout_line(|l| l.starts_with("Web Server is available at "));
    let (requested, port) = hugo.the_move();
    assert_eq!(requested, 1313);
    assert_ne!(port, 1313);
    assert_eq!(hugo.styxy_lines().len(), 1, "exactly one line: {:?}", hugo.styxy_lines());
    // styxy moved it, not hugo: its probe of 1313 (a listen it closes at
    // once) was moved too, so hugo never saw the port busy. Its own URL line
    // still names 1313: hugo prints the port it asked for.
    assert!(!hugo.out.iter().chain(&hugo.err).any(|l| l.contains("already in use")), "{:?}", hugo.out);
    let page = http_get("127.0.0.1", port);
    assert!(page.starts_with("HTTP/1.0 200 OK"), "{page}");
    assert!(page.contains("<p>styxy test site</p>"), "{page}");
    let allocation = listed(&sb, port);
    assert_eq!(allocation["owner"]["pid"], supervised_pid(&hugo), "{allocation}");
    // hugo catches SIGTERM and exits 0; `styxy run` ends as it did.
    // SAFETY: signalling the styxy run the test started.
    unsafe { libc::kill(hugo.pid() as i32, libc::SIGTERM) };
    let status = hugo.wait_exit();
    assert_eq!(status.code(), Some(0), "{status:?}");
}

/// esbuild's native binary at the pinned version, as scripts/test installs it.
fn esbuild_bin() -> PathBuf {
    let version = include_str!("esbuild/version").lines().find(|l| !l.starts_with('#')).unwrap().trim();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/esbuild").join(version);
    // The package's install step puts the platform's Go binary here.
    let bin = dir.join("node_modules/esbuild/bin/esbuild");
    assert!(
        bin.exists(),
        "esbuild {version} is not installed at {}: scripts/test installs it (npm install --prefix {} esbuild@{version})",
        bin.display(),
        dir.display()
    );
    bin
}

#[test]
fn esbuild_serve_on_a_busy_port_is_moved_and_serves_its_bundle() {
    let sb = Sandbox::new();
    let (_held, busy) = busy_port();
    let project = tempfile::tempdir().unwrap();
    std::fs::write(project.path().join("app.js"), "console.log(\"served by esbuild\");\n").unwrap();
    let entry = project.path().join("app.js");
    let serve = format!("--serve=127.0.0.1:{busy}");
    let esbuild = esbuild_bin();
    let outdir = format!("--outdir={}", project.path().join("out").display());
    let program = [esbuild.to_str().unwrap(), entry.to_str().unwrap(), "--bundle", &outdir, &serve];
    let mut server = styxy_run(&sb, &[], &program);
    let (requested, port) = server.the_move();
    assert_eq!((requested, port == busy), (busy, false));
    // esbuild reads the port back from its socket, so its own line is true.
    let local = format!("http://127.0.0.1:{port}/");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.err.iter().any(|l| l.contains(&local)) {
        assert!(Instant::now() < deadline, "esbuild never named {local}: {:?}", server.err);
        std::thread::sleep(Duration::from_millis(20));
        server.styxy_lines();
    }
    assert_eq!(server.styxy_lines().len(), 1, "exactly one line: {:?}", server.styxy_lines());
    let bundle = ask("127.0.0.1", port, "GET /app.js HTTP/1.0\r\nHost: localhost\r\n\r\n");
    assert!(bundle.starts_with("HTTP/1.0 200 OK"), "{bundle}");
    assert!(bundle.contains("console.log(\"served by esbuild\")"), "{bundle}");
    let allocation = listed(&sb, port);
    assert_eq!(allocation["owner"]["pid"], supervised_pid(&server), "{allocation}");
    stop(&mut server);
}

#[test]
fn a_static_go_client_in_a_scope_reaches_its_scopes_moved_backend() {
    let sb = Sandbox::new();
    // Another worktree's backend holds the canonical port; it never answers.
    let (_held, canonical) = busy_port();
    let scope = tempfile::tempdir().unwrap();
    let port = canonical.to_string();
    let server = go_program("serve", false);
    let mut backend = {
        let mut cmd = sb.styxy();
        cmd.env("STYXY_SCOPE", scope.path()).args(["run", "--intercept", "seccomp", "--"]);
        cmd.arg(&server).args(["127.0.0.1", &port]);
        Running::start(cmd)
    };
    let line = backend.stdout_line(|l| l.starts_with("listening "));
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (moved, pid): (u16, u32) = (fields[2].parse().unwrap(), fields[3].parse().unwrap());
    assert_ne!(moved, canonical, "{line}");

    // A client of the same scope asks for the canonical port (auto picks
    // the supervisor for a Go program).
    let client = go_program("get", false);
    let got = sb
        .styxy()
        .env("STYXY_SCOPE", scope.path())
        .args(["run", "--"])
        .arg(&client)
        .args(["127.0.0.1", &port])
        .output()
        .unwrap();
    assert_eq!(text(&got.stdout), format!("serve {pid} {moved}\n"), "{}", text(&got.stderr));
    stop(&mut backend);
}

#[test]
fn a_cgo_server_on_a_busy_port_is_moved_and_serves_where_it_says() {
    let sb = Sandbox::new();
    let (_held, busy) = busy_port();
    let server = go_program("serve", true);
    let port = busy.to_string();
    moves_and_serves(&sb, &["--intercept", "seccomp"], &[server.to_str().unwrap(), "127.0.0.1", &port], busy);
}

#[test]
fn a_static_musl_server_binding_from_threads_is_moved() {
    let sb = Sandbox::new();
    let (_held, busy) = busy_port();
    let server = musl_program("serve");
    let port = busy.to_string();
    // -t: each address bound from its own thread, so the notifications name
    // threads, not the process. Both v4 addresses land on one new port.
    let mut running = styxy_run(&sb, &[], &[server.to_str().unwrap(), "-t", "127.0.0.1", &port]);
    let now = running.listening();
    assert_eq!(running.the_move(), (busy, now));
    let answer = http_like(now);
    assert!(answer.starts_with("serve "), "{answer}");
    assert_eq!(listed(&sb, now)["source"], "preload");
    stop(&mut running);
}

/// A program of the 32-bit ABI runs under the supervisor, but its sockets
/// fail with ENOSYS instead of binding where the supervisor never looked.
#[cfg(target_arch = "x86_64")]
#[test]
fn a_32_bit_server_runs_but_cannot_bind_past_the_supervisor() {
    let sb = Sandbox::new();
    let server = styxy_testkit::i386_program("serve");
    let port = free_port();
    let mut child = sb
        .styxy()
        .args(["run", "--intercept", "seccomp", "--"])
        .arg(&server)
        .args(["127.0.0.1", &port.to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A server that got its socket would serve until stopped.
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the 32-bit server is still running: it bound a socket past the supervisor");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "serve exits 1 on a failed call: {stderr}");
    assert!(stderr.contains("Function not implemented"), "{stderr}");
    assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(), "nothing listens on {port}");
}

/// What serve.c answers on `port` (it writes one line and closes).
fn http_like(port: u16) -> String {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn a_conflict_that_shows_only_at_listen_gets_a_replacement_socket() {
    let sb = Sandbox::new();
    let port = free_port();
    let server = musl_program("serve");
    let mut running = styxy_run(
        &sb,
        &["--intercept", "seccomp"],
        &[server.to_str().unwrap(), "-a", "-g", "127.0.0.1", &port.to_string()],
    );
    running.stdout_line(|l| l.starts_with("bound "));
    // Another SO_REUSEADDR socket binds the same port and listens first: the
    // program's listen() fails with EADDRINUSE.
    let other = hold("127.0.0.1", port, Hold { reuseaddr: true, ..Hold::default() });
    assert_eq!(local_port(&other), port);
    running.send_line("go");
    let now = running.listening();
    assert_ne!(now, port);
    assert_eq!(running.the_move(), (port, now));
    assert!(http_like(now).starts_with("serve "));
    stop(&mut running);
}

#[test]
fn a_bind_racing_a_changed_address_never_lands_on_a_port_it_was_not_allowed() {
    let sb = Sandbox::new();
    // A port reserved for another owner (a live process that is not the
    // program's ancestor): free in the kernel, so only the supervisor's
    // check keeps the program off it.
    let mut owner = std::process::Command::new("sleep").arg("60").spawn().unwrap();
    let reserved = free_port();
    let reserved_text = reserved.to_string();
    let owner_pid = owner.id().to_string();
    sb.json(&["allocate", "-s", "api", "-p", &reserved_text, "--pid", &owner_pid]);
    let allowed = free_port();
    let racer = musl_program("race_bind");
    let mut running = styxy_run(
        &sb,
        &["--intercept", "seccomp"],
        &[racer.to_str().unwrap(), "127.0.0.1", &allowed.to_string(), &reserved_text, "300"],
    );
    let line = running.stdout_line(|l| l.starts_with("bound "));
    let counts: Vec<u32> = line.split_whitespace().skip(2).step_by(2).map(|n| n.parse().unwrap()).collect();
    assert_eq!(counts[1], 0, "a bind landed on the reserved port: {line}");
    assert_eq!(counts.iter().sum::<u32>(), 300, "every bind succeeded: {line}");
    owner.kill().unwrap();
    owner.wait().unwrap();
}

#[test]
fn the_exit_status_and_ctrl_c_pass_through() {
    let sb = Sandbox::new();
    let o = sb.styxy().args(["run", "--intercept", "seccomp", "--", "sh", "-c", "exit 42"]).output().unwrap();
    assert_eq!(o.status.code(), Some(42), "{}", text(&o.stderr));

    // Ctrl-C: SIGINT to the terminal's foreground process group, here a
    // group of its own holding styxy and the Go server.
    let server = go_program("serve", false);
    let mut cmd = sb.styxy();
    cmd.args(["run", "--"]).arg(&server).args(["127.0.0.1", &free_port().to_string()]).process_group(0);
    let mut running = Running::start(cmd);
    running.listening();
    let group = running.pid() as i32;
    // SAFETY: signalling the group the test made.
    assert_eq!(unsafe { libc::kill(-group, libc::SIGINT) }, 0);
    let status = running.wait_exit();
    assert_eq!(status.signal(), Some(libc::SIGINT), "{status:?}");
}

/// Under another supervisor (a sandbox with its own listener), the filter
/// cannot be installed: one line says so and the preload moves the server.
#[test]
fn under_another_supervisor_the_preload_moves_the_server_instead() {
    let sb = Sandbox::new();
    let (_held, busy) = busy_port();
    let styxy = sb.styxy();
    let inner = [
        styxy.get_program().to_str().unwrap(),
        "run",
        "--intercept",
        "seccomp",
        "--",
        "python3",
        "-c",
        "import socket, sys; s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(); \
         print('listening', s.getsockname()[1], flush=True)",
    ];
    let mut outer = sb.styxy();
    outer.args(["run", "--intercept", "seccomp", "--"]).args(inner).arg(busy.to_string());
    let o = outer.output().unwrap();
    let stderr = text(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.lines().any(|l| l
            == "styxy: another seccomp supervisor already watches this process (EBUSY): using the preload instead"),
        "{stderr}"
    );
    let now: u16 = text(&o.stdout).trim().strip_prefix("listening ").unwrap().parse().unwrap();
    assert_ne!(now, busy, "moved off the busy port");
}

#[test]
fn a_setuid_program_in_the_tree_is_named() {
    let sb = Sandbox::new();
    let setuid_true = sb.path().join("setuid-true");
    std::fs::copy("/bin/true", &setuid_true).unwrap();
    std::fs::set_permissions(&setuid_true, std::os::unix::fs::PermissionsExt::from_mode(0o4755)).unwrap();
    let script = format!("{}; echo done", setuid_true.display());
    let o = sb.styxy().args(["run", "--intercept", "seccomp", "--", "sh", "-c", &script]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout).trim(), "done");
    let expected = format!(
        "styxy: {} is setuid; under styxy's seccomp supervisor (no_new_privs) it runs without those privileges",
        setuid_true.display()
    );
    assert!(text(&o.stderr).lines().any(|l| l == expected), "{}", text(&o.stderr));
}

#[test]
fn a_killed_supervisor_leaves_a_server_serving_and_no_call_blocked() {
    let sb = Sandbox::new();
    let server = go_program("serve", false);
    let go = &mut styxy_run(&sb, &[], &[server.to_str().unwrap(), "127.0.0.1", &free_port().to_string()]);
    let line = go.stdout_line(|l| l.starts_with("listening "));
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (port, go_pid): (u16, i32) = (fields[2].parse().unwrap(), fields[3].parse().unwrap());
    let waiting = musl_program("serve");
    let mut musl = styxy_run(
        &sb,
        &["--intercept", "seccomp"],
        &[waiting.to_str().unwrap(), "-g", "127.0.0.1", &free_port().to_string()],
    );
    musl.stdout_line(|l| l.starts_with("bound "));

    for supervised in [&*go, &musl] {
        // SAFETY: killing the styxy run the test started.
        assert_eq!(unsafe { libc::kill(supervised.pid() as i32, libc::SIGKILL) }, 0);
    }
    // The running server goes on serving.
    assert!(http_get("127.0.0.1", port).contains("serve "));
    // A trapped call made now fails at once instead of waiting for an
    // answer that will never come: listen() gets ENOSYS and serve exits.
    let asked = Instant::now();
    musl.send_line("go");
    // The pipes close when the program (styxy's orphan) exits.
    musl.wait_exit();
    assert!(asked.elapsed() < Duration::from_secs(1), "blocked for {:?}", asked.elapsed());
    assert!(musl.err.iter().any(|l| l.starts_with("listen ") && l.contains("not implemented")), "{:?}", musl.err);
    // SAFETY: ending the orphaned Go server the test started.
    unsafe { libc::kill(go_pid, libc::SIGKILL) };
}
