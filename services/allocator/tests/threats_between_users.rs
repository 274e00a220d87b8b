//! Another local user is hostile: two ordinary users (created with
//! useradd; the tests need root and skip without it) against one allocator,
//! each attack as that user would make it. The allocator runs in system
//! mode (as root here), its socket open to everyone.
#![allow(clippy::unwrap_used)] // a test or benchmark: a failed unwrap is a failure

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Stdio};

use serde_json::{Value, json};
use styxy_testkit::{Allocator, Sandbox, TEST_CONFIG, as_user, free_port, victim_and_attacker};

/// `curl` as `who` on the sandbox's socket: (status, body).
fn api(sb: &Sandbox, who: (u32, u32), method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let sock = sb.socket().to_string_lossy().into_owned();
    let mut cmd = as_user(who.0, who.1, "curl");
    cmd.args(["-s", "--max-time", "5", "-o", "-", "-w", "\n%{http_code}", "--unix-socket", &sock, "-X", method]);
    if let Some(body) = body {
        cmd.args(["-H", "content-type: application/json", "-d", &body.to_string()]);
    }
    let out = cmd.arg(format!("http://styxy{path}")).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), serde_json::from_str(body).unwrap_or(Value::Null))
}

#[test]
fn another_user_cannot_take_over_an_expired_instance_id_and_release_the_victims_port_through_it() {
    let Some([victim, attacker]) = victim_and_attacker() else { return };
    let sb = Sandbox::with_config(TEST_CONFIG);
    let _allocator = Allocator::shared(&sb, &[]);
    let register = |who, id: &str, ttl: u64| {
        api(&sb, who, "POST", "/instance/register", Some(json!({"instance_id": id, "ttl_secs": ttl})))
    };
    assert_eq!(register(victim, "claude-v", 1).0, 200);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (status, refused) = register(attacker, "claude-v", 3600);
    assert_eq!((status, refused["error"].as_str()), (403, Some("forbidden")), "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("another user's"), "{refused}");

    assert_eq!(register(victim, "claude-v", 3600).0, 200, "the victim's session comes back under its id");
    let lease = json!({"service_type": "bulk", "lease": "session", "instance_id": "claude-v"});
    let (_, held) = api(&sb, victim, "POST", "/allocate", Some(lease));
    let port = held["port"].as_u64().unwrap();
    for (method, path) in [("DELETE", "/instance/claude-v"), ("PUT", "/instance/claude-v/heartbeat")] {
        assert_eq!(api(&sb, attacker, method, path, None).0, 403, "{method} {path}");
    }
    assert_eq!(register(attacker, "claude-v", 3600).0, 403);
    let (_, listed) = api(&sb, attacker, "GET", "/instance/list", None);
    let ids: Vec<&str> =
        listed["instances"].as_array().unwrap().iter().map(|i| i["instance_id"].as_str().unwrap()).collect();
    assert!(!ids.contains(&"claude-v"), "another user's ids are not shown: {listed}");
    assert_eq!(sb.allocations()[0]["port"].as_u64(), Some(port), "the victim's port is still held");

    assert_eq!(api(&sb, victim, "DELETE", "/instance/claude-v", None).0, 200);
    assert_eq!(register(attacker, "claude-v", 3600).0, 403, "an ended id stays the victim's too");
    assert_eq!(register((0, 0), "claude-v", 3600).0, 200, "root may register it");
}

#[test]
fn a_reservation_cannot_be_tagged_with_another_users_session() {
    let Some([victim, attacker]) = victim_and_attacker() else { return };
    let sb = Sandbox::with_config(TEST_CONFIG);
    let _allocator = Allocator::shared(&sb, &[]);
    api(&sb, victim, "POST", "/instance/register", Some(json!({"instance_id": "claude-v", "ttl_secs": 600})));
    let tagged = json!({"service_type": "bulk", "lease": "manual", "instance_id": "claude-v"});
    let (status, body) = api(&sb, attacker, "POST", "/allocate", Some(tagged));
    assert_eq!(status, 403, "{body}");
    assert!(sb.allocations().is_empty());
}

/// Holds `unix` connections to the socket and `tcp` ones to `port` (half of
/// each sending a request line and never the rest), prints "ready", waits
/// `secs`, then prints how many of each the server closed.
const FLOOD: &str = r#"
import socket, sys, time
path, port, n_unix, n_tcp, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
def hold(make, n):
    held = []
    for i in range(n):
        s = make()
        if i % 2:
            s.send(b"GET /allocations HTTP/1.1\r\nHost: x\r\n")
        held.append(s)
    return held
def unix():
    s = socket.socket(socket.AF_UNIX); s.connect(path); return s
unix_held = hold(unix, n_unix)
tcp_held = hold(lambda: socket.create_connection(("127.0.0.1", port)), n_tcp if port else 0)
print("ready", flush=True)
time.sleep(secs)
def closed(held):
    n = 0
    for s in held:
        s.setblocking(False)
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    n += 1
                    break
        except (BlockingIOError, ConnectionResetError) as e:
            n += isinstance(e, ConnectionResetError)
    return n
print(closed(unix_held), closed(tcp_held), flush=True)
sys.stdin.read()
"#;

/// The flood, started as `who`; returns once every connection is open.
fn flood(
    sb: &Sandbox,
    who: (u32, u32),
    tcp_port: u16,
    unix: usize,
    tcp: usize,
    secs: f64,
) -> (Child, BufReader<std::process::ChildStdout>) {
    let mut child = as_user(who.0, who.1, "/usr/bin/python3")
        .args(["-c", FLOOD])
        .arg(sb.socket())
        .args([tcp_port.to_string(), unix.to_string(), tcp.to_string(), secs.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "the flood did not start");
    (child, out)
}

#[test]
fn a_flood_of_idle_and_slow_connections_on_the_socket_and_over_tcp_without_a_token_does_not_hold_up_another_user() {
    let Some([victim, attacker]) = victim_and_attacker() else { return };
    let port = free_port();
    let sb = Sandbox::with_config(TEST_CONFIG);
    let _allocator = Allocator::shared(&sb, &["--tcp", &format!("127.0.0.1:{port}")]);
    // 1,100 connections, more than the old limit shared by everyone (512).
    let (mut child, mut out) = flood(&sb, attacker, port, 550, 550, 4.0);

    // curl gives up after 5 s; before, the victim waited for the flood's
    // header timeout (10 s).
    let (status, body) = api(&sb, victim, "GET", "/allocations", None);
    assert_eq!(status, 200, "the victim's listing: {body}");
    let (status, body) =
        api(&sb, victim, "POST", "/allocate", Some(json!({"service_type": "bulk", "lease": "manual"})));
    assert_eq!(status, 200, "the victim's allocation: {body}");

    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let closed: Vec<usize> = line.split_whitespace().map(|n| n.parse().unwrap()).collect();
    assert!(closed[0] >= 550 - 64, "the flood's Unix connections beyond its 64 slots were refused: {line}");
    assert_eq!(closed[1], 550, "TCP connections without a token are cut within seconds: {line}");
    child.stdin.take().unwrap().write_all(b"").unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_user_over_its_connection_slots_is_told_why_in_json() {
    let Some([_, attacker]) = victim_and_attacker() else { return };
    let sb = Sandbox::with_config(TEST_CONFIG);
    let _allocator = Allocator::shared(&sb, &[]);
    let (mut child, _out) = flood(&sb, attacker, 0, 64, 0, 0.0);
    let (status, body) = api(&sb, attacker, "GET", "/allocations", None);
    assert_eq!((status, body["error"].as_str()), (429, Some("quota_exceeded")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("connections"), "{body}");
    child.kill().unwrap();
    child.wait().unwrap();
}
