//! The original Styxy's clients against a user-mode allocator the CLI
//! started: loopback TCP from `api.tcp`, the token where they read it, the
//! original CLI's requests answered with the fields and types it reads, and
//! a Prometheus scrape that promtool accepts.
#![allow(clippy::unwrap_used)] // a test or benchmark: a failed unwrap is a failure

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use serde_json::Value;
use styxy_proto::timestamp::Timestamp;
use styxy_testkit::net::{ask, free_port};
use styxy_testkit::{Sandbox, text};

/// What Prometheus 2.x sends when it scrapes.
const PROMETHEUS_ACCEPT: &str =
    "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1";

/// Sends one HTTP/1.1 request to 127.0.0.1:`port` and returns the status
/// code, the headers (lower-cased) and the body.
fn http(port: u16, method: &str, path: &str, headers: &[(String, String)], body: &str) -> (u16, String, String) {
    let mut request = format!("{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        request.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    request.push_str(body);
    let answer = ask("127.0.0.1", port, &request);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP answer: {answer:?}"));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{head}"));
    (status, head.to_ascii_lowercase(), body.to_string())
}

/// The value at a dotted path (`allocations.0.port`).
fn at<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').try_fold(value, |v, key| match key.parse::<usize>() {
        Ok(i) if v.is_array() => v.get(i),
        _ => v.get(key),
    })
}

/// Whether `value` has one of the JSON types in `expected` (`time` is an
/// RFC 3339 UTC string with milliseconds, the original's `toISOString()`).
fn has_type(value: Option<&Value>, expected: &str) -> bool {
    expected.split('|').any(|t| match (t, value) {
        ("string", Some(Value::String(_))) => true,
        ("number", Some(Value::Number(_))) => true,
        ("boolean", Some(Value::Bool(_))) => true,
        ("array", Some(Value::Array(_))) => true,
        ("object", Some(Value::Object(_))) => true,
        ("null", Some(Value::Null)) => true,
        ("time", Some(Value::String(s))) => s.len() == 24 && s.ends_with('Z') && Timestamp::parse(s).is_some(),
        _ => false,
    })
}

fn fill(text: &str, vars: &[(&str, String)]) -> String {
    vars.iter().fold(text.to_string(), |t, (name, value)| t.replace(&format!("{{{{{name}}}}}"), value))
}

#[test]
fn the_original_clients_reach_an_autostarted_allocator_over_tcp_and_read_what_they_expect() {
    let tcp = free_port();
    let sb = Sandbox::with_config(&format!("[auto_allocation]\nenabled = true\n\n[api]\ntcp = \"127.0.0.1:{tcp}\"\n"));
    // A single-instance service started through this styxy: the original's
    // CLI will join it.
    let ai = sb.json(&["allocate", "-s", "ai", "-n", "llm"]);

    // The token goes where the original's clients read it, for this user only.
    let o = sb.run(&["token", "--write-legacy"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let token_file = sb.path().join(".styxy/auth.token");
    assert!(text(&o.stdout).contains(&token_file.display().to_string()), "{}", text(&o.stdout));
    let token = std::fs::read_to_string(&token_file).unwrap();
    assert_eq!(format!("{token}\n"), text(&sb.run(&["token"]).stdout));
    assert_eq!(std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777, 0o600);

    let fixture: Value =
        serde_json::from_str(include_str!("fixtures/original-cli-requests.json")).expect("fixture parses");
    let mut vars = vec![("TOKEN", token.clone())];
    for exchange in fixture["exchanges"].as_array().unwrap() {
        let command = exchange["command"].as_str().unwrap();
        let headers: Vec<(String, String)> = fixture["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(name, value)| (name.clone(), fill(value.as_str().unwrap(), &vars)))
            .collect();
        let path = fill(exchange["path"].as_str().unwrap(), &vars);
        let body = exchange.get("body").map(|b| b.to_string()).unwrap_or_default();
        let (status, _, answer) = http(tcp, exchange["method"].as_str().unwrap(), &path, &headers, &body);
        assert_eq!(status, 200, "{command}: {answer}");
        let answer: Value = serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{command}: {e}: {answer}"));
        for (field, expected) in exchange["reads"].as_object().unwrap() {
            let expected = expected.as_str().unwrap();
            assert!(has_type(at(&answer, field), expected), "{command}: {field} should be {expected} in {answer}");
        }
        for (field, expected) in exchange.get("equals").and_then(Value::as_object).into_iter().flatten() {
            assert_eq!(at(&answer, field), Some(expected), "{command}: {field} in {answer}");
        }
        if command == "styxy allocate -s dev -n web" {
            vars.push(("LOCK_ID", answer["lock_id"].as_str().unwrap().to_string()));
            vars.push(("PORT", answer["port"].to_string()));
        }
        if command.contains("single instance") {
            assert_eq!(answer["port"], ai["port"], "joined the running instance");
            assert_eq!(answer["existingPid"], std::process::id(), "the process holding it: this test");
        }
    }

    // A Prometheus scrape: its Accept header, the token, no query string.
    let auth = vec![
        ("accept".to_string(), PROMETHEUS_ACCEPT.to_string()),
        ("authorization".to_string(), format!("Bearer {token}")),
    ];
    let (status, head, metrics) = http(tcp, "GET", "/metrics", &auth, "");
    assert_eq!(status, 200, "{metrics}");
    assert!(head.contains("content-type: text/plain; version=0.0.4"), "{head}");
    assert!(metrics.contains("\nstyxy_allocations_total 3\n"), "{metrics}");
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/test installs it)");
    promtool.stdin.take().unwrap().write_all(metrics.as_bytes()).unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success() && checked.stdout.is_empty() && checked.stderr.is_empty(),
        "promtool check metrics: {}{}\n{metrics}",
        text(&checked.stdout),
        text(&checked.stderr)
    );
    // JSON for those who ask for it.
    let json = [("accept".to_string(), "application/json".to_string()), auth[1].clone()];
    let (_, head, body) = http(tcp, "GET", "/metrics", &json, "");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["counters"]["allocations_total"], 3);
}
