//! Styxy's hooks inside the real Claude Code CLI (the npm package, at the
//! versions pinned in tests/claude_code/versions, installed under target/claude-code by
//! scripts/test), run headless (`claude -p --output-format stream-json`)
//! against a mock Anthropic Messages API on loopback. The mock streams
//! scripted turns (tool calls, then a line of text) and records every
//! request, so each test asserts what the model was shown, and what ran
//! (the listeners that exist).
#![allow(clippy::unwrap_used)] // a test or benchmark: a failed unwrap is a failure

#[path = "claude_code/harness.rs"]
mod harness;

use harness::*;
use serde_json::{Value, json};
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};
use styxy_testkit::{PATIENCE, Sandbox, free_port, text};

/// Session start: the model hears of another session's server (and is
/// told not to stop it), and the session's id reaches its Bash commands
/// through the environment file.
#[test]
fn session_start_tells_the_model_of_other_sessions_and_its_bash_gets_the_session() {
    for version in versions() {
        let sb = Sandbox::new();
        let port = free_port();
        let _other = OtherSession::start(&sb, &project(&sb, "other"), port);
        let session =
            Session { sb: &sb, version, home: home_with_hooks(&sb, &[]), cwd: project(&sb, "app"), env: Vec::new() };
        let (api, lines) = session.run(vec![bash("echo \"session=$STYXY_SESSION\"")]);
        let shown = api.shown();
        assert!(shown.contains(&format!("Ports held by other sessions: {port} (python3")), "{version}: {shown}");
        assert!(shown.contains("do not stop them"), "{version}: {shown}");
        let id = session_id(&lines);
        assert!(shown.contains(&format!("session=claude-{id}")), "{version}: {shown}");
    }
}

/// The tool that reads a background task's output in `version`.
fn read_task_output(version: &str) -> Value {
    if version == versions()[0] {
        tool("Read", json!({"file_path": "@OUTPUT@"}))
    } else {
        tool("TaskOutput", json!({"task_id": "@TASK@", "block": false, "timeout": 1000}))
    }
}

/// A background start on another session's port, the preload on: the
/// model is told the start moves and which line names the port, and the
/// output it reads names the port the server really listened on.
#[test]
fn a_background_start_on_another_sessions_port_is_moved_and_the_model_told_so() {
    for version in versions() {
        let sb = Sandbox::new();
        let port = free_port();
        let _other = OtherSession::start(&sb, &project(&sb, "other"), port);
        let session =
            Session { sb: &sb, version, home: home_with_hooks(&sb, &[]), cwd: project(&sb, "app"), env: Vec::new() };
        // Ends by itself: a headless session waits for its background tasks.
        let start = format!("timeout 6 python3 -u -m http.server {port} --bind 127.0.0.1");
        let steps = vec![
            tool("Bash", json!({"command": start, "description": "serve", "run_in_background": true})),
            bash("sleep 2"),
            read_task_output(version),
        ];
        let (api, _) = session.run(steps);
        let shown = api.shown();
        assert!(shown.contains(&format!("port {port} is in use by python3")), "{version}: {shown}");
        assert!(shown.contains("This start is moved to a free port by styxy"), "{version}: {shown}");
        assert!(!shown.contains("is free:"), "{version}: no port of styxy's choosing: {shown}");
        let moved = shown
            .lines()
            .find_map(|l| styxy_testkit::moved_line(l.trim_start_matches(|c: char| c.is_ascii_digit() || c == '\t')))
            .unwrap_or_else(|| panic!("{version}: the model never saw where the server listens: {shown}"));
        assert_eq!(moved.0, port, "{version}");
        assert_ne!(moved.1, port, "{version}");
    }
}

/// Where the shown output says the preload moved a start: (asked, actual).
fn moved(shown: &str) -> Option<(u16, u16)> {
    shown
        .lines()
        .find_map(|l| styxy_testkit::moved_line(l.trim_start_matches(|c: char| c.is_ascii_digit() || c == '\t')))
}

/// A foreground start on another session's port, the preload on: the
/// model is told once that it moves, and its output names where the
/// server really listened.
#[test]
fn a_foreground_start_on_another_sessions_port_is_moved_and_the_model_told_where() {
    let version = versions()[0];
    let sb = Sandbox::new();
    let port = free_port();
    let _other = OtherSession::start(&sb, &project(&sb, "other"), port);
    let session =
        Session { sb: &sb, version, home: home_with_hooks(&sb, &[]), cwd: project(&sb, "app"), env: Vec::new() };
    let (api, _) = session.run(vec![bash(&format!("timeout 3 python3 -u -m http.server {port} --bind 127.0.0.1"))]);
    let shown = api.shown();
    assert_eq!(shown.matches("of another Claude Code session").count(), 1, "one explanation: {shown}");
    assert!(shown.contains("This start is moved to a free port by styxy"), "{shown}");
    let (asked, actual) = moved(&shown).unwrap_or_else(|| panic!("the model never saw where it listens: {shown}"));
    assert_eq!(asked, port);
    assert!(shown.contains(&format!("Serving HTTP on 127.0.0.1 port {actual}")), "it listened there: {shown}");
    assert!(!shown.contains("is free:") && !shown.contains("already in use"), "{shown}");
}

/// With the preload off a start on another session's port fails; the
/// model hears once of the holder and gets the command in the tool's own
/// syntax on a port that is free, and no word of servers moving.
#[test]
fn without_the_preload_the_model_gets_the_command_on_a_free_port_once() {
    let version = versions()[0];
    let sb = Sandbox::new();
    let port = free_port();
    let mut other = OtherSession::start(&sb, &project(&sb, "other"), port);
    // The victim holds a port of its own, so its session start says something.
    let session = Session {
        sb: &sb,
        version,
        home: home_with_hooks(&sb, &[]),
        cwd: project(&sb, "app"),
        env: vec![("STYXY_PRELOAD".into(), "off".into())],
    };
    let (api, _) = session.run(vec![bash(&format!("python3 -m http.server {port} --bind 127.0.0.1"))]);
    let shown = api.shown();
    assert!(shown.contains("Address already in use"), "the start failed: {shown}");
    assert_eq!(shown.matches("of another Claude Code session").count(), 1, "one explanation: {shown}");
    assert!(shown.contains(&format!("the conflict on port {port} styxy noted")), "{shown}");
    let advice = shown.split("is free: ").nth(1).unwrap_or_else(|| panic!("no command on a free port: {shown}"));
    let free: u16 = advice
        .strip_prefix("python3 -m http.server ")
        .and_then(|rest| rest.strip_suffix(" --bind 127.0.0.1").or(rest.split(' ').next()))
        .and_then(|p| p.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("not the tool's syntax: {advice}"));
    assert_ne!(free, port);
    assert!(TcpListener::bind(("127.0.0.1", free)).is_ok(), "port {free} is free");
    assert!(!shown.contains("moves to a free one") && !shown.contains("is moved"), "nothing moves: {shown}");
    assert!(other.alive());
}

/// `kill`, `pkill` and `fuser -k` of another session's server: headless,
/// each is refused (the client takes `ask` as a refusal), the model is
/// told why, and the server still runs.
#[test]
fn stopping_another_sessions_server_is_refused_headless_and_the_server_runs_on() {
    let version = versions()[0];
    let sb = Sandbox::new();
    let port = free_port();
    let mut other = OtherSession::start(&sb, &project(&sb, "other"), port);
    let pid = other.0.id();
    let session =
        Session { sb: &sb, version, home: home_with_hooks(&sb, &[]), cwd: project(&sb, "app"), env: Vec::new() };
    let (api, _) = session.run(vec![
        bash(&format!("kill {pid}")),
        bash(&format!("pkill -f 'http.server {port}'")),
        bash(&format!("fuser -k {port}/tcp")),
    ]);
    let shown = api.shown();
    assert_eq!(shown.matches("styxy: this stops servers this session did not start").count(), 3, "{shown}");
    // Whose the server is, once per command: in the refusal, not again in the context.
    assert_eq!(shown.matches("of another Claude Code session").count(), 3, "{shown}");
    assert!(!shown.contains("killed") && !shown.contains("stopped"), "nothing was stopped: {shown}");
    assert!(other.alive(), "the server was stopped: {shown}");
    wait_listening(port);
}

/// `--rewrite`: a start on another session's port runs on a free one, and
/// the model is told the command it really ran.
#[test]
fn with_rewrite_a_start_on_a_held_port_runs_on_a_free_one_and_the_model_knows() {
    for version in versions() {
        let sb = Sandbox::new();
        let port = free_port();
        let _other = OtherSession::start(&sb, &project(&sb, "other"), port);
        let session = Session {
            sb: &sb,
            version,
            home: home_with_hooks(&sb, &["--rewrite"]),
            cwd: project(&sb, "app"),
            env: Vec::new(),
        };
        let (api, _) = session.run(vec![bash(&format!("timeout 3 python3 -u -m http.server {port} --bind 127.0.0.1"))]);
        let shown = api.shown();
        let changed = shown
            .split("styxy changed the command to use port ")
            .nth(1)
            .and_then(|rest| rest.split(':').next()?.parse::<u16>().ok())
            .unwrap_or_else(|| panic!("{version}: not told of the rewrite: {shown}"));
        assert_ne!(changed, port, "{version}");
        assert!(
            shown.contains(&format!("Serving HTTP on 127.0.0.1 port {changed}")),
            "{version}: it ran there: {shown}"
        );
        assert!(moved(&shown).is_none() && !shown.contains("already in use"), "{version}: {shown}");
    }
}

/// Session start says nothing when nobody holds a port; session end
/// releases the ports the session reserved.
#[test]
fn session_end_releases_the_sessions_ports() {
    let version = versions()[0];
    let sb = Sandbox::new();
    let session =
        Session { sb: &sb, version, home: home_with_hooks(&sb, &[]), cwd: project(&sb, "app"), env: Vec::new() };
    let styxy = styxy_testkit::styxy_bin();
    let (api, lines) = session.run(vec![
        bash(&format!("{} allocate -s dev -n web --json", styxy.display())),
        bash(&format!("{} list --json", styxy.display())),
    ]);
    let shown = api.shown();
    assert!(!shown.contains("styxy coordinates"), "nothing worth saying at session start: {shown}");
    let answer = shown
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["success"] == true)
        .unwrap_or_else(|| panic!("no allocation answer: {shown}"));
    let allocated = answer["port"].as_u64().unwrap_or_else(|| panic!("no port: {answer}"));
    assert!(shown.contains(&format!("claude-{}", session_id(&lines))), "a lease of the session: {shown}");
    // The listing in the session held it, in the shape looked for below.
    assert!(shown.contains(&format!("\"port\":{allocated}")), "{shown}");
    let list = |sb: &Sandbox| text(&sb.styxy().args(["list", "--json"]).output().unwrap().stdout);
    let deadline = Instant::now() + PATIENCE;
    while list(&sb).contains(&format!("\"port\":{allocated}")) {
        assert!(Instant::now() < deadline, "port {allocated} outlived its session: {}", list(&sb));
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A session Claude Code starts in a worktree of its own (`--worktree`)
/// has that worktree as its scope: its Bash commands get it.
#[test]
fn a_session_in_a_worktree_has_the_worktree_as_its_scope() {
    let version = versions()[0];
    let sb = Sandbox::new();
    let repo = sb.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(&repo)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
    };
    git(&["init", "-q"]);
    git(&["commit", "-q", "--allow-empty", "-m", "start"]);
    let session = Session { sb: &sb, version, home: home_with_hooks(&sb, &[]), cwd: repo.clone(), env: Vec::new() };
    let (api, _) = session.run_with(&["--worktree", "feature"], vec![bash("echo \"scope=$STYXY_SCOPE\"")]);
    let shown = api.shown();
    let worktree = repo.join(".claude/worktrees/feature");
    assert!(worktree.is_dir(), "no worktree at {}: {shown}", worktree.display());
    let expected = format!("scope={}", worktree.display());
    assert!(shown.lines().any(|l| l.trim() == expected), "{shown}");
}
