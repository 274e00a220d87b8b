//! The harness of the real-client suite (services/cli/tests/claude_code.rs)
//! and its benchmark (services/cli/benches/claude_code_hooks.rs): the
//! pinned Claude Code releases, a mock Messages API on loopback that plays
//! scripted turns and records requests, headless sessions, and another
//! session holding a port. Each includes it; neither uses all of it.
#![allow(dead_code)]
#![allow(clippy::unwrap_used)] // a test or benchmark: a failed unwrap is a failure

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use styxy_testkit::build::preload_lib;
use styxy_testkit::{PATIENCE, Sandbox, text};

/// The releases tested: the newest, and the one npm picks on Node 20
/// (whose tools for background output differ: TaskOutput there, the Read
/// tool of the task's output file in the newest).
pub const VERSIONS_FILE: &str = include_str!("versions");

pub fn versions() -> Vec<&'static str> {
    VERSIONS_FILE.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).collect()
}
/// A headless run that takes longer than this is stuck.
pub const RUN_LIMIT: Duration = Duration::from_secs(90);

/// The `claude` executable of `version`, as scripts/test installs it.
pub fn claude_bin(version: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/claude-code").join(version);
    let bin = dir.join("node_modules/.bin/claude");
    assert!(
        bin.exists(),
        "Claude Code {version} is not installed at {}: scripts/test installs it \
         (npm install --prefix {} @anthropic-ai/claude-code@{version})",
        bin.display(),
        dir.display()
    );
    bin
}

/// One scripted tool call of the model.
pub fn tool(name: &str, input: Value) -> Value {
    json!({"name": name, "input": input})
}

pub fn bash(command: &str) -> Value {
    tool("Bash", json!({"command": command, "description": "run it"}))
}

/// A mock Messages API: the main loop's requests (those offering tools) get
/// the scripted tool calls in order, one per turn (the number of tool
/// results so far picks it), then a text; every other request (titles,
/// summaries) gets a text. Every request body is recorded.
pub struct MockApi {
    pub port: u16,
    pub requests: Arc<Mutex<Vec<Value>>>,
}

impl MockApi {
    pub fn start(steps: Vec<Value>) -> MockApi {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (recorded, steps) = (requests.clone(), Arc::new(steps));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (recorded, steps) = (recorded.clone(), steps.clone());
                std::thread::spawn(move || serve(stream, &recorded, &steps));
            }
        });
        MockApi { port, requests }
    }

    /// The main loop's requests, in order.
    pub fn turns(&self) -> Vec<Value> {
        self.requests.lock().unwrap().iter().filter(|r| r.get("tools").is_some()).cloned().collect()
    }

    /// Everything the model was shown in its last turn (all earlier turns
    /// are part of it), as text.
    pub fn shown(&self) -> String {
        let turns = self.turns();
        let last = turns.last().expect("the model was asked at least once");
        let mut texts = Vec::new();
        collect_text(&last["messages"], &mut texts);
        texts.join("\n")
    }
}

/// Every string inside `value` except keys.
pub fn collect_text(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| collect_text(v, out)),
        Value::Object(map) => map.values().for_each(|v| collect_text(v, out)),
        _ => {}
    }
}

pub fn serve(stream: TcpStream, recorded: &Mutex<Vec<Value>>, steps: &[Value]) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut length = 0;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (content_type, answer) = if !request_line.starts_with("POST /v1/messages") {
        ("application/json", "{}".to_string())
    } else if request_line.contains("count_tokens") {
        ("application/json", r#"{"input_tokens":10}"#.to_string())
    } else {
        recorded.lock().unwrap().push(body.clone());
        let results = tool_results(&body["messages"]);
        let step = steps.get(results).filter(|_| body.get("tools").is_some()).map(|s| with_task(s, &body));
        if body["stream"] == true {
            ("text/event-stream", events(step.as_ref(), results))
        } else {
            (
                "application/json",
                json!({"id": "msg_mock", "type": "message", "role": "assistant", "model": "mock",
                "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
                "usage": {"input_tokens": 1, "output_tokens": 1}})
                .to_string(),
            )
        }
    };
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
        answer.len()
    );
}

/// `step` with `@OUTPUT@` and `@TASK@` standing for the output file and
/// the id of the last background task the conversation started.
pub fn with_task(step: &Value, body: &Value) -> Value {
    let mut texts = Vec::new();
    collect_text(&body["messages"], &mut texts);
    let after = |marker: &str| {
        texts.iter().rev().find_map(|t| {
            let rest = &t[t.find(marker)? + marker.len()..];
            Some(rest.split(|c: char| c.is_whitespace()).next()?.trim_end_matches('.').to_string())
        })
    };
    let output =
        after("Output is being written to: ").map(|o| format!("{o}.output").replace(".output.output", ".output"));
    let task = after("background with ID: ");
    let raw = step
        .to_string()
        .replace("@OUTPUT@", output.as_deref().unwrap_or_default())
        .replace("@TASK@", task.as_deref().unwrap_or_default());
    serde_json::from_str(&raw).unwrap()
}

pub fn tool_results(messages: &Value) -> usize {
    messages
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["content"].as_array())
        .flatten()
        .filter(|c| c["type"] == "tool_result")
        .count()
}

/// One streamed answer: the tool call `step`, or a line of text.
pub fn events(step: Option<&Value>, n: usize) -> String {
    let (block, delta, stop) = match step {
        Some(step) => (
            json!({"type": "tool_use", "id": format!("toolu_{n}"), "name": step["name"], "input": {}}),
            json!({"type": "input_json_delta", "partial_json": step["input"].to_string()}),
            "tool_use",
        ),
        None => (json!({"type": "text", "text": ""}), json!({"type": "text_delta", "text": "done"}), "end_turn"),
    };
    [
        json!({"type": "message_start", "message": {"id": format!("msg_{n}"), "type": "message", "role": "assistant",
            "model": "mock", "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 10, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": block}),
        json!({"type": "content_block_delta", "index": 0, "delta": delta}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
            "usage": {"output_tokens": 5}}),
        json!({"type": "message_stop"}),
    ]
    .iter()
    .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
    .collect()
}

/// A home whose Claude Code settings hold styxy's hooks, written by
/// `styxy hooks install` as a user would.
pub fn home_with_hooks(sb: &Sandbox, install_args: &[&str]) -> PathBuf {
    let home = sb.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let out = sb.styxy().env("HOME", &home).args(["hooks", "install"]).args(install_args).output().unwrap();
    assert!(out.status.success(), "styxy hooks install: {}", text(&out.stderr));
    home
}

/// One headless session of Claude Code `version` in `cwd`.
pub struct Session<'a> {
    pub sb: &'a Sandbox,
    pub version: &'a str,
    pub home: PathBuf,
    pub cwd: PathBuf,
    pub env: Vec<(String, String)>,
}

impl Session<'_> {
    /// Runs the session to its end with the model playing `steps`; returns
    /// the mock API (what the model was shown) and the stream-json lines.
    pub fn run(&self, steps: Vec<Value>) -> (MockApi, Vec<Value>) {
        self.run_with(&[], steps)
    }

    /// [`Session::run`] with more arguments of `claude`.
    pub fn run_with(&self, args: &[&str], steps: Vec<Value>) -> (MockApi, Vec<Value>) {
        // One session at a time: another test's servers would be in the
        // kernel's listeners this one's hooks read.
        static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
        let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let api = MockApi::start(steps);
        let mut command = Command::new(claude_bin(self.version));
        command
            .args(["-p", "start the dev server", "--output-format", "stream-json", "--verbose"])
            .arg("--dangerously-skip-permissions")
            .args(args)
            .current_dir(&self.cwd)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap())
            .env("HOME", &self.home)
            .env("ANTHROPIC_BASE_URL", format!("http://127.0.0.1:{}", api.port))
            .env("ANTHROPIC_API_KEY", "sk-ant-mock")
            .env("IS_SANDBOX", "1")
            .env("DISABLE_TELEMETRY", "1")
            .env("DISABLE_AUTOUPDATER", "1")
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("STYXY_SOCKET", self.sb.socket())
            .env("STYXY_STATE_DIR", self.sb.state_dir())
            .env("STYXY_CONFIG", self.sb.config_file())
            .env("STYXY_SYSTEM_CONFIG", self.sb.system_config_file())
            .env("XDG_RUNTIME_DIR", self.sb.runtime_dir())
            .env("STYXY_ALLOCATOR", styxy_testkit::build::allocator_bin())
            .env("STYXY_PRELOAD_LIB", preload_lib())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = command.spawn().expect("run claude");
        let (stdout, stderr, status) = finish(child, RUN_LIMIT);
        assert!(status, "claude -p failed or hung: {stderr}\n{stdout}");
        let lines = stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        (api, lines)
    }
}

/// Waits for `child` at most `limit`; kills it past that.
pub fn finish(mut child: Child, limit: Duration) -> (String, String, bool) {
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let ok = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.success();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (reader.join().unwrap(), err_reader.join().unwrap(), ok)
}

/// The session id Claude Code reported.
pub fn session_id(lines: &[Value]) -> String {
    lines.iter().find_map(|l| l["session_id"].as_str()).expect("a session id in the stream").to_string()
}

/// A project directory (a git repository) in the sandbox.
pub fn project(sb: &Sandbox, name: &str) -> PathBuf {
    let dir = sb.path().join(name);
    std::fs::create_dir_all(dir.join(".git")).unwrap();
    dir
}

/// Another Claude Code session (registered through its session-start hook,
/// in `project`) whose server listens on `port`; stopped on drop.
pub struct OtherSession(pub Child);

impl OtherSession {
    pub fn start(sb: &Sandbox, project: &Path, port: u16) -> OtherSession {
        let session = format!("0ther5e5-0000-4000-8000-{port:012}");
        let event = json!({"session_id": session, "cwd": project, "hook_event_name": "SessionStart",
            "source": "startup", "transcript_path": "/dev/null"});
        let event_file = sb.path().join("other-session-start.json");
        std::fs::write(&event_file, event.to_string()).unwrap();
        // Its hook runs orphaned, as if its Claude Code had gone: this test
        // process (and its mock API's socket) is nobody's session.
        let orphan = "(sleep 0.2; exec \"$0\" hook session-start < \"$1\" > /dev/null) &";
        let mut hook = sb.styxy();
        let status = Command::new("sh")
            .args(["-c", orphan])
            .arg(styxy_testkit::styxy_bin())
            .arg(&event_file)
            .envs(hook.get_envs().filter_map(|(k, v)| Some((k, v?))))
            .status()
            .unwrap();
        assert!(status.success());
        let instance = format!("claude-{session}");
        let deadline = Instant::now() + PATIENCE;
        while !text(&hook.args(["instances"]).output().unwrap().stdout).contains(&instance) {
            assert!(Instant::now() < deadline, "the other session never registered");
            std::thread::sleep(Duration::from_millis(100));
            hook = sb.styxy();
        }
        // Started the way its Bash commands start servers: with its id.
        let server = Command::new("python3")
            .env("STYXY_SESSION", format!("claude-{session}"))
            .current_dir(project)
            .args(["-m", "http.server", &port.to_string(), "--bind", "127.0.0.1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_listening(port);
        OtherSession(server)
    }

    /// Whether its server still runs.
    pub fn alive(&mut self) -> bool {
        self.0.try_wait().unwrap().is_none()
    }
}

impl Drop for OtherSession {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn wait_listening(port: u16) {
    let deadline = Instant::now() + PATIENCE;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
