//! Scopes end to end (docs/design.md, "Scopes"): two git worktrees of one
//! small project run the same stack at once under `styxy run`, and each
//! worktree's clients reach its own servers at the ports checked into the
//! project; probe-then-listen; the reservation following its listener;
//! `PORT=$(styxy allocate ...)`; a browser; `never_move`.
#![allow(clippy::unwrap_used)] // a test or benchmark: a failed unwrap is a failure

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use styxy_testkit::{Hold, Sandbox, hold, local_port, preload_lib, text};

/// The project the tests run: tests/scopes/*.
const PROJECT_FILES: &[&str] = &["backend.py", "frontend.js"];

fn project_source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scopes")
}

/// A port free on both families now.
fn free_port() -> u16 {
    local_port(&hold("::", 0, Hold::default()))
}

/// A child process killed when the test ends, whatever happens.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn git(dir: &Path, args: &[&str]) {
    let o = Command::new("git")
        .args(["-c", "user.name=styxy", "-c", "user.email=styxy@example.invalid", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "git {args:?}: {}", text(&o.stderr));
}

/// The shop: a repository at `shop` whose checked-in ports are `front` and
/// `back`, and a second worktree of it at `shop-b`.
fn shop(sb: &Sandbox, front: u16, back: u16) -> (PathBuf, PathBuf) {
    let a = sb.path().join("shop");
    std::fs::create_dir(&a).unwrap();
    for file in PROJECT_FILES {
        std::fs::copy(project_source().join(file), a.join(file)).unwrap();
    }
    std::fs::write(a.join("frontend.port"), front.to_string()).unwrap();
    std::fs::write(a.join("backend.port"), back.to_string()).unwrap();
    git(&a, &["init", "-q", "."]);
    git(&a, &["add", "."]);
    git(&a, &["commit", "-qm", "the shop"]);
    git(&a, &["worktree", "add", "-q", "../shop-b"]);
    (a, sb.path().join("shop-b"))
}

/// `styxy run ARGS` in `dir`, its output kept in the sandbox.
fn styxy_run(sb: &Sandbox, dir: &Path, log: &str, args: &[&str]) -> Running {
    let out = std::fs::File::create(sb.path().join(log)).unwrap();
    let child = sb
        .styxy()
        .env_remove("STYXY_SCOPE")
        .arg("run")
        .args(args)
        .current_dir(dir)
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    Running(child)
}

/// A program under the preload working in `dir`, with no scope of its own
/// but what `dir` makes it.
fn client(sb: &Sandbox, dir: &Path, program: &str, args: &[&str]) -> Output {
    sb.command(program).env_remove("STYXY_SCOPE").args(args).current_dir(dir).output().unwrap()
}

fn answer(o: &Output) -> String {
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    text(&o.stdout).trim().to_string()
}

/// `GET http://localhost:PORT/PATH` with curl, python and node in `dir`.
fn get_with_each_client(sb: &Sandbox, dir: &Path, port: u16, path: &str) -> [String; 3] {
    let url = format!("http://localhost:{port}{path}");
    let py = format!("import urllib.request; print(urllib.request.urlopen({url:?}, timeout=5).read().decode())");
    let js = format!(
        "require('http').get({url:?}, r => {{ let b = ''; r.on('data', d => b += d); r.on('end', () => console.log(b)); }})"
    );
    [
        answer(&client(sb, dir, "curl", &["-sS", "--max-time", "5", &url])),
        answer(&client(sb, dir, "python3", &["-c", &py])),
        answer(&client(sb, dir, "node", &["-e", &js])),
    ]
}

/// Waits until `ready` holds, or fails naming what was waited for.
fn wait_for<T>(what: &str, sb: &Sandbox, mut ready: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(value) = ready() {
            return value;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = std::fs::read_dir(sb.path())
                .unwrap()
                .flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
                .map(|e| format!("{}:\n{}", e.path().display(), std::fs::read_to_string(e.path()).unwrap_or_default()))
                .collect();
            panic!("timed out waiting for {what}\n{}", logs.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The port the allocation of `scope` with canonical port `canonical` has.
fn actual_port(sb: &Sandbox, scope: &Path, canonical: u16) -> Option<u16> {
    sb.allocations().iter().find_map(|a| {
        let in_scope = a["scope"] == scope.to_string_lossy().as_ref();
        let asked = a["requested_port"].as_u64().unwrap_or_else(|| a["port"].as_u64().unwrap_or(0));
        (in_scope && asked == u64::from(canonical)).then(|| a["port"].as_u64().unwrap() as u16)
    })
}

/// Whether a plain GET (no preload) of `port` answers.
fn answers(port: u16) -> bool {
    std::process::Command::new("curl")
        .args(["-sf", "--max-time", "2", &format!("http://127.0.0.1:{port}/")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn two_worktrees_run_one_stack_each_and_their_clients_reach_their_own_servers() {
    preload_lib();
    let sb = Sandbox::new();
    let (front, back) = (free_port(), free_port());
    let (a, b) = shop(&sb, front, back);
    // The ports checked into the project are the canonical ones.
    let (back_arg, front_arg) = (back.to_string(), front.to_string());
    let backend = ["-s", "api", "-n", "backend", "-p", &back_arg, "--", "python3", "backend.py"];
    let frontend = ["-s", "dev", "-n", "web", "-p", &front_arg, "--", "node", "frontend.js"];
    let _backend_a = styxy_run(&sb, &a, "backend-a.log", &backend);
    wait_for("A's backend", &sb, || answers(back).then_some(()));
    let _frontend_a = styxy_run(&sb, &a, "frontend-a.log", &frontend);
    wait_for("A's frontend", &sb, || answers(front).then_some(()));
    let _backend_b = styxy_run(&sb, &b, "backend-b.log", &backend);
    let _frontend_b = styxy_run(&sb, &b, "frontend-b.log", &frontend);
    let back_b = wait_for("B's backend, moved", &sb, || actual_port(&sb, &b, back).filter(|&p| answers(p)));
    let front_b = wait_for("B's frontend, moved", &sb, || actual_port(&sb, &b, front).filter(|&p| answers(p)));
    assert!(back_b != back && front_b != front, "B's servers were moved: {back_b} {front_b}");

    // Each frontend's dev proxy reaches its own worktree's backend.
    assert_eq!(answer(&client(&sb, &a, "curl", &["-sS", &format!("http://localhost:{front}/api")])), "shop");
    assert_eq!(answer(&client(&sb, &b, "curl", &["-sS", &format!("http://localhost:{front}/api")])), "shop-b");
    // curl, python and node in B reach B's backend at the checked-in port;
    // outside any scope, the same port is A's.
    assert_eq!(get_with_each_client(&sb, &b, back, "/"), ["shop-b", "shop-b", "shop-b"]);
    let outside = sb.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    assert_eq!(get_with_each_client(&sb, &outside, back, "/"), ["shop", "shop", "shop"]);
    assert_eq!(get_with_each_client(&sb, &a, back, "/"), ["shop", "shop", "shop"]);

    // `styxy list` groups by scope and shows CANONICAL → ACTUAL.
    let listed = text(&sb.styxy().env_remove("STYXY_SCOPE").arg("list").output().unwrap().stdout);
    let b_section = listed.split(&format!("scope {}\n", b.display())).nth(1).unwrap_or_else(|| panic!("{listed}"));
    assert!(b_section.contains(&format!("{back} → {back_b}")), "{listed}");
    assert!(b_section.contains(&format!("{front} → {front_b}")), "{listed}");

    // `styxy env` prints B's map for what the preload does not reach.
    let env = sb.styxy().env_remove("STYXY_SCOPE").args(["env", "--scope"]).arg(&b).output().unwrap();
    let env = text(&env.stdout);
    assert!(env.contains(&format!("STYXY_PORT_{back}={back_b}\n")), "{env}");
    assert!(env.contains(&format!("STYXY_URL_{front}=http://localhost:{front_b}\n")), "{env}");
    let shell = Command::new("sh").arg("-c").arg(format!("{env}\nsh -c 'echo $STYXY_URL_{front}'")).output().unwrap();
    assert_eq!(text(&shell.stdout).trim(), format!("http://localhost:{front_b}"));
    let json = sb.styxy().current_dir(&b).env_remove("STYXY_SCOPE").args(["--json", "env"]).output().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json["scope"], b.to_string_lossy().as_ref());
    assert!(json["ports"].as_array().unwrap().iter().any(|p| p["canonical"] == back && p["actual"] == back_b));

    headless_chromium_in_b_loads_bs_frontend(&sb, &b, front);
}

/// Headless Chromium started in worktree B, loading the frontend's
/// checked-in URL.
fn headless_chromium_in_b_loads_bs_frontend(sb: &Sandbox, b: &Path, front: u16) {
    let Some(chromium) = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok())
    else {
        panic!("chromium is not installed (scripts/test installs Debian's chromium package)");
    };
    let profile = sb.path().join("chromium-profile");
    let url = format!("http://localhost:{front}/");
    let o = client(
        sb,
        b,
        chromium,
        &[
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            &format!("--user-data-dir={}", profile.display()),
            "--timeout=10000",
            "--dump-dom",
            &url,
        ],
    );
    let dom = text(&o.stdout);
    assert!(
        dom.contains("frontend of shop-b"),
        "Chromium in B did not reach B's frontend:\n{dom}\n{}",
        text(&o.stderr)
    );
}

#[test]
fn a_probe_then_listen_server_serves_where_it_says_and_reaches_itself() {
    preload_lib();
    let sb = Sandbox::new();
    sb.json(&["list"]); // the allocator runs
    let taken = hold("::", 0, Hold::default());
    let busy = local_port(&taken);
    let script = project_source().join("detect_port.js");
    let o = sb.command("node").arg(&script).arg(busy.to_string()).output().unwrap();
    let out = text(&o.stdout);
    assert!(o.status.success(), "{out}{}", text(&o.stderr));
    assert!(out.contains(&format!("serving at http://localhost:{busy}/")), "{out}");
    assert!(out.contains("self-check: self "), "{out}");
}

#[test]
fn a_server_started_after_a_probe_of_its_port_listens_where_the_probe_landed() {
    preload_lib();
    let sb = Sandbox::new();
    sb.json(&["list"]); // the allocator runs
    let project = sb.path().join("app");
    std::fs::create_dir(&project).unwrap();
    git(&project, &["init", "-q", "."]);
    let taken = hold("::", 0, Hold::default());
    let busy = local_port(&taken);
    let script = project_source().join("probe_then_spawn.js");
    let o = client(&sb, &project, "node", &[&script.to_string_lossy(), &busy.to_string()]);
    let out = text(&o.stdout);
    assert!(o.status.success(), "{out}{}", text(&o.stderr));
    assert!(out.contains("check: server "), "{out}");
}

#[test]
fn styxy_run_of_a_server_that_ignores_port_leaves_one_allocation_on_the_port_it_listens_on() {
    preload_lib();
    let sb = Sandbox::new();
    let dir = sb.path().join("site");
    std::fs::create_dir(&dir).unwrap();
    let server = styxy_run(&sb, &dir, "http-server.log", &["-s", "dev", "--", "python3", "-u", "-m", "http.server"]);
    let log = sb.path().join("http-server.log");
    let port: u16 = wait_for("python's listening line", &sb, || {
        let said = std::fs::read_to_string(&log).ok()?;
        said.lines()
            .find_map(|l| l.strip_prefix("Serving HTTP on ")?.split(" port ").nth(1)?.split(' ').next()?.parse().ok())
    });
    let pid = server.0.id();
    let held = wait_for("one allocation", &sb, || {
        let held: Vec<(u64, u64)> = sb
            .allocations()
            .iter()
            .map(|a| (a["port"].as_u64().unwrap(), a["owner"]["pid"].as_u64().unwrap_or(0)))
            .collect();
        (held.len() == 1).then_some(held)
    });
    assert_eq!(held, [(u64::from(port), u64::from(pid))], "exactly one allocation, python's");
}

/// `sh -c SCRIPT` with the sandbox's styxy first on PATH and its settings.
fn shell(sb: &Sandbox, script: &str) -> Command {
    let styxy = sb.styxy();
    let mut sh = Command::new("sh");
    for (name, value) in styxy.get_envs() {
        match value {
            Some(value) => sh.env(name, value),
            None => sh.env_remove(name),
        };
    }
    let bin = Path::new(styxy.get_program()).parent().unwrap().to_path_buf();
    let path =
        std::env::join_paths(std::iter::once(bin).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())));
    sh.env("PATH", path.unwrap()).arg("-c").arg(script).current_dir(sb.path());
    sh
}

const PORT_OF_JSON: &str = "python3 -c 'import json, sys; print(json.load(sys.stdin)[\"port\"])'";

#[test]
fn port_from_a_command_substitution_passes_to_the_server_started_within_the_grace() {
    let sb = Sandbox::with_config("[health]\nhandoff_grace_secs = 2\n");
    let script = format!(
        "PORT=$(styxy --json allocate -s api | {PORT_OF_JSON}); echo $PORT; exec python3 -u -m http.server $PORT"
    );
    let log = std::fs::File::create(sb.path().join("server.log")).unwrap();
    let server = Running(shell(&sb, &script).stdout(log.try_clone().unwrap()).stderr(log).spawn().unwrap());
    let log = sb.path().join("server.log");
    let port: u64 =
        wait_for("the port", &sb, || std::fs::read_to_string(&log).ok()?.lines().next()?.trim().parse().ok());
    wait_for("the server", &sb, || answers(port as u16).then_some(()));
    std::thread::sleep(Duration::from_millis(2500));
    let listed = sb.allocations();
    let a = listed.iter().find(|a| a["port"] == port).unwrap_or_else(|| panic!("port {port} freed: {listed:?}"));
    assert_eq!(a["owner"]["pid"], server.0.id(), "the server holds it: {a}");
    assert!(a.get("handoff_until").is_none(), "{a}");
    let table = text(&sb.run(&["list"]).stdout);
    assert!(table.contains(&server.0.id().to_string()), "{table}");

    // Without a server, the port is free once the grace is over.
    let o = shell(&sb, &format!("PORT=$(styxy --json allocate -s api | {PORT_OF_JSON}); echo $PORT")).output().unwrap();
    let lone: u64 = text(&o.stdout).trim().parse().unwrap();
    assert!(sb.allocations().iter().any(|a| a["port"] == lone), "held during the grace");
    std::thread::sleep(Duration::from_millis(2500));
    assert!(!sb.allocations().iter().any(|a| a["port"] == lone), "still held after the grace");
}

#[test]
fn a_never_move_lock_port_fails_as_it_would_without_styxy() {
    preload_lib();
    let (_first_instance, lock) = {
        let fd = hold("127.0.0.1", 0, Hold::default());
        let port = local_port(&fd);
        (fd, port)
    };
    let second_instance = format!(
        "import socket; s = socket.socket(); s.bind(('127.0.0.1', {lock})); s.listen(); print(s.getsockname()[1])"
    );
    // Without the opt-out the preload moves the second instance.
    let sb = Sandbox::new();
    sb.json(&["list"]);
    let moved = sb.command("python3").args(["-c", &second_instance]).output().unwrap();
    assert!(moved.status.success(), "{}", text(&moved.stderr));
    assert_ne!(text(&moved.stdout).trim(), lock.to_string());

    for never_move in [lock.to_string(), "\"python3\"".to_string()] {
        let sb = Sandbox::with_config(&format!("[preload]\nnever_move = [{never_move}]\n"));
        sb.json(&["list"]);
        let o = sb.command("python3").args(["-c", &second_instance]).output().unwrap();
        assert!(!o.status.success(), "never_move = [{never_move}]: the second instance ran: {}", text(&o.stdout));
        assert!(text(&o.stderr).contains("Address already in use"), "{}", text(&o.stderr));
    }
}
