//! Wall time of `styxy hook pre-tool-use` (process start to exit, the
//! allocator warm) as percentiles (goal: median ≤ 10 ms), for the cases an
//! agent meets: a command that starts nothing, a server start on a free
//! port, one whose port another session's server holds (the reply with
//! holder and alternative), a post-tool-use conflict, and a session start
//! while another session holds a port. `styxy
//! --version` is the baseline: process start-up alone.
//!
//!     cargo bench -p styxy --bench hook_latency
#![allow(clippy::unwrap_used)] // a test or benchmark: a failed unwrap is a failure

use std::io::Write;
use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

use styxy_testkit::Sandbox;
use styxy_testkit::percentiles::report;

const RUNS: usize = 300;

fn measure(sb: &Sandbox, args: &[&str], input: &str) -> Vec<Duration> {
    let mut times: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            let mut child =
                sb.styxy().args(args).stdin(Stdio::piped()).stdout(Stdio::null()).spawn().expect("run styxy");
            child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
            let status = child.wait().expect("wait for styxy");
            let elapsed = start.elapsed();
            assert!(status.success(), "styxy {args:?} failed");
            elapsed
        })
        .collect();
    times.sort_unstable();
    times
}

/// What `styxy hook EVENT` prints for `input` (it must succeed).
fn answer(sb: &Sandbox, hook: &str, input: &str) -> String {
    let mut child =
        sb.styxy().args(["hook", hook]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("run styxy");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "styxy hook {hook} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn event(name: &str, session: &str, cwd: &str, extra: serde_json::Value) -> String {
    let mut e = serde_json::json!({
        "session_id": session,
        "transcript_path": format!("/home/dev/.claude/projects/app/{session}.jsonl"),
        "cwd": cwd,
        "permission_mode": "default",
        "hook_event_name": name,
    });
    for (k, v) in extra.as_object().unwrap() {
        e[k] = v.clone();
    }
    e.to_string()
}

fn bash(command: &str) -> serde_json::Value {
    serde_json::json!({"tool_name": "Bash", "tool_input": {"command": command, "description": "bench"}})
}

fn main() {
    let sb = Sandbox::new();
    let cwd = sb.path().join("app");
    std::fs::create_dir_all(cwd.join(".git")).unwrap();
    let cwd = cwd.to_string_lossy().into_owned();
    let (a, b) = ("bench-session-a", "bench-session-b");
    // Nothing is held yet: both sessions start with nothing to be told.
    for session in [a, b] {
        let start = event("SessionStart", session, &cwd, serde_json::json!({"source": "startup"}));
        assert_eq!(answer(&sb, "session-start", &start), "", "session start with nothing held says nothing");
    }

    // Session A's server: a port its session reserved, listened on.
    let reserved = sb
        .styxy()
        .env("STYXY_SESSION", format!("claude-{a}"))
        .args(["--json", "allocate", "-s", "api", "-n", "web"])
        .output()
        .unwrap();
    assert!(reserved.status.success());
    let reserved: serde_json::Value = serde_json::from_slice(&reserved.stdout).unwrap();
    let held = reserved["port"].as_u64().unwrap() as u16;
    let server = TcpListener::bind(("127.0.0.1", held)).unwrap();
    let free = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let conflict = format!("python3 -m http.server {held}");

    let pre = |command: &str| event("PreToolUse", b, &cwd, bash(command));
    let failed = event(
        "PostToolUseFailure",
        b,
        &cwd,
        serde_json::json!({"tool_name": "Bash", "tool_input": {"command": conflict},
            "error": "Exit code 1\nOSError: [Errno 98] Address already in use"}),
    );
    // The measured cases take the paths they are named after.
    assert_eq!(answer(&sb, "pre-tool-use", &pre("git status")), "");
    assert!(answer(&sb, "pre-tool-use", &pre(&conflict)).contains("another Claude Code session"));
    assert!(answer(&sb, "post-tool-use-failure", &failed).contains(&format!("the conflict on port {held}")));

    report("styxy --version", &mut measure(&sb, &["--version"], ""));
    report("pre-tool-use: git status", &mut measure(&sb, &["hook", "pre-tool-use"], &pre("git status")));
    report(
        "pre-tool-use: start, port free",
        &mut measure(&sb, &["hook", "pre-tool-use"], &pre(&format!("python3 -m http.server {free}"))),
    );
    report("pre-tool-use: start, port held", &mut measure(&sb, &["hook", "pre-tool-use"], &pre(&conflict)));
    report("post-tool-use-failure: conflict", &mut measure(&sb, &["hook", "post-tool-use-failure"], &failed));
    let start = event("SessionStart", b, &cwd, serde_json::json!({"source": "startup"}));
    report("session-start: another session holds a port", &mut measure(&sb, &["hook", "session-start"], &start));
    drop(server);
}
