//! `styxy allocate` run through runuser, su and sudo (issue 17): no process
//! of the user runs above it, so the port is held for the hand-off grace
//! and adopted by the first of the user's processes that listens on it. In
//! user mode: the allocator is the user's own, started by its first command.
//! Needs root (to create the user and switch to it).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use styxy_testkit::{PATIENCE, Running, Sandbox, as_user, ensure_user, styxy_bin, text};

const USER: &str = "styxy-switch";
/// A short grace and a frequent health pass, so the test waits seconds.
const CONFIG: &str = "[health]\nhandoff_grace_secs = 2\nperiod_secs = 1\n";
/// What the CLI says about a hand-off.
const HELD: &str =
    "no process of yours above this command: held for 2 s for the first of your processes that listens on it";

/// The sandbox's environment for `styxy`, as NAME=VALUE pairs.
fn styxy_env(sb: &Sandbox) -> Vec<(String, String)> {
    sb.styxy()
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_str()?.to_string(), v?.to_str()?.to_string())))
        .filter(|(k, _)| k != "HOME")
        .collect()
}

/// `styxy allocate -s dev -n NAME` as USER through `how`; returns the port.
fn allocate_through(sb: &Sandbox, how: &str, name: &str) -> u16 {
    let env = styxy_env(sb);
    let styxy = styxy_bin().to_string_lossy().into_owned();
    let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
    let mut cmd = match how {
        "runuser" => {
            let mut c = Command::new("runuser");
            c.args(["-u", USER, "--", &styxy, "allocate", "-s", "dev", "-n", name]);
            c
        }
        "su" => {
            let mut c = Command::new("su");
            c.args(["-w", &names.join(","), "-s", "/bin/sh", USER, "-c"]);
            c.arg(format!("{styxy} allocate -s dev -n {name}"));
            c
        }
        "sudo" => {
            let mut c = Command::new("sudo");
            c.arg(format!("--preserve-env={}", names.join(",")));
            c.args(["-u", USER, &styxy, "allocate", "-s", "dev", "-n", name]);
            c
        }
        _ => unreachable!("{how}"),
    };
    cmd.envs(env.iter().map(|(k, v)| (k, v))).current_dir(sb.path()).stdin(Stdio::null());
    let out = cmd.output().unwrap_or_else(|e| panic!("run {how}: {e}"));
    let said = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{how}: {said}{}", text(&out.stderr));
    assert!(said.contains(HELD), "{how} says what happens to the port: {said}");
    let port = said.split_whitespace().nth(1).and_then(|p| p.parse().ok());
    port.unwrap_or_else(|| panic!("{how}: no port in {said:?}"))
}

/// `styxy ARGS` in the sandbox as USER: the allocator runs as USER, and
/// root's styxy does not talk to another user's allocator.
fn styxy_as_user(sb: &Sandbox, (uid, gid): (u32, u32), args: &[&str]) -> String {
    let template = sb.styxy();
    let mut cmd = as_user(uid, gid, template.get_program());
    for (name, value) in template.get_envs() {
        match value {
            Some(value) => cmd.env(name, value),
            None => cmd.env_remove(name),
        };
    }
    let out = cmd.args(args).current_dir(sb.path()).output().expect("run styxy as the user");
    assert_eq!(out.status.code(), Some(0), "styxy {args:?}: {}{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

/// The allocation on `port` as USER lists it.
fn listed(sb: &Sandbox, user: (u32, u32), port: u16) -> Option<Value> {
    let all: Value = serde_json::from_str(&styxy_as_user(sb, user, &["--json", "list"])).expect("JSON");
    all["allocations"].as_array().expect("allocations").iter().find(|a| a["port"] == port).cloned()
}

/// Waits until `test` holds, failing with `what` after PATIENCE.
fn wait_for(what: &str, mut test: impl FnMut() -> bool) {
    let start = Instant::now();
    while !test() {
        assert!(start.elapsed() < PATIENCE, "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A python3 server of USER listening on `port`.
fn listen_as(uid: u32, gid: u32, port: u16) -> Running {
    let mut cmd = as_user(uid, gid, "/usr/bin/python3");
    cmd.args(["-u", "-c"]).arg(format!(
        "import socket, time\ns = socket.socket()\ns.bind(('127.0.0.1', {port}))\ns.listen()\nprint('listening on', {port})\ntime.sleep(600)"
    ));
    let mut server = Running::start(cmd);
    server.stdout_line(|l| l.starts_with("listening on"));
    server
}

#[test]
fn runuser_su_and_sudo_get_a_port_their_listener_adopts_and_frees() {
    if styxy_proto::paths::uid() != 0 {
        eprintln!("skipped: switching users needs root");
        return;
    }
    if Command::new("sudo").arg("-V").output().is_err() {
        panic!("sudo is missing (scripts/test installs it)");
    }
    let (uid, gid) = ensure_user(USER);
    let sb = Sandbox::with_config(CONFIG);
    let chown = Command::new("chown").arg("-R").arg(format!("{uid}:{gid}")).arg(sb.path()).status().unwrap();
    assert!(chown.success());

    for (how, name) in [("runuser", "web-runuser"), ("su", "web-su"), ("sudo", "web-sudo")] {
        let port = allocate_through(&sb, how, name);
        let held = listed(&sb, (uid, gid), port).unwrap_or_else(|| panic!("{how}: port {port} is not held"));
        assert_eq!(held["user"], USER, "{how}: {held}");

        let mut server = listen_as(uid, gid, port);
        let pid = server.pid();
        wait_for(&format!("{how}: `styxy list` never named pid {pid} as the holder of {port}"), || {
            listed(&sb, (uid, gid), port).is_some_and(|a| a["owner"]["pid"] == pid && a["user"] == USER)
        });
        let table = styxy_as_user(&sb, (uid, gid), &["list"]);
        assert!(table.contains(&pid.to_string()) && table.contains(USER), "{how}: {table}");
        std::thread::sleep(Duration::from_secs(3));
        assert!(listed(&sb, (uid, gid), port).is_some(), "{how}: the adopted port outlives the grace");

        server.stop();
        wait_for(&format!("{how}: port {port} still held after its holder exited"), || {
            listed(&sb, (uid, gid), port).is_none()
        });
    }

    // Nobody listens: free once the grace is over, and not before.
    let port = allocate_through(&sb, "runuser", "nobody-listens");
    let allocated = Instant::now();
    assert!(listed(&sb, (uid, gid), port).is_some(), "held during the grace");
    wait_for("a port nobody listens on is still held after the grace", || listed(&sb, (uid, gid), port).is_none());
    assert!(allocated.elapsed() >= Duration::from_millis(1500), "freed before the grace ended");
    // The allocator is USER's: root's `daemon stop` at the sandbox's end would not be heard.
    styxy_as_user(&sb, (uid, gid), &["daemon", "stop"]);
}
