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
    let mut vars = vec![("TOKEN", token.clone()), ("TCP", tcp.to_string())];
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

#[test]
fn config_import_refuses_an_invalid_entry_then_writes_the_rest_as_toml_keeping_the_old_file() {
    let sb = Sandbox::with_config("[allocator]\nidle_timeout_secs = 60\n");
    let original = include_str!("fixtures/original-config.json");
    let given = sb.path().join("config.json");
    std::fs::write(&given, original).unwrap();

    // One invalid entry: named, and nothing changes.
    let o = sb.run(&["config", "import", given.to_str().unwrap()]);
    let said = text(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{said}");
    assert!(said.contains("service_types.broken-svc.instance_behavior") && said.contains("nothing written"), "{said}");
    assert_eq!(std::fs::read_to_string(sb.config_file()).unwrap(), "[allocator]\nidle_timeout_secs = 60\n");
    assert_eq!(std::fs::read_dir(sb.path()).unwrap().filter(|e| is_backup(e.as_ref().unwrap())).count(), 0);

    // Fixed, from where the original kept it: written, with what was left out said.
    let mut fixed: Value = serde_json::from_str(original).unwrap();
    fixed["service_types"].as_object_mut().unwrap().remove("broken-svc");
    std::fs::create_dir_all(sb.path().join(".styxy")).unwrap();
    std::fs::write(sb.path().join(".styxy/config.json"), fixed.to_string()).unwrap();
    let o = sb.run(&["config", "import"]);
    let said = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{said}{}", text(&o.stderr));
    for left_out in [
        "not imported: recovery:",
        "not imported: daemon:",
        "not imported: service_types.grafana.multi_instance_pattern: informational",
        "not imported: auto_allocation_rules.monitoring-*.preferred_range_start",
    ] {
        assert!(said.contains(left_out), "{left_out:?} missing from\n{said}");
    }
    let backups: Vec<_> =
        std::fs::read_dir(sb.path()).unwrap().map(Result::unwrap).filter(is_backup).map(|e| e.path()).collect();
    assert_eq!(backups.len(), 1, "{said}");
    assert_eq!(std::fs::read_to_string(&backups[0]).unwrap(), "[allocator]\nidle_timeout_secs = 60\n");

    // The written file is a valid configuration with the original's types and rules.
    let valid = sb.json(&["config", "validate"]);
    assert_eq!(valid["valid"], true, "{valid}");
    assert_eq!(valid["service_types"], 17 + 2, "grafana and monitoring-loki join the built-ins");
    let written: toml::Table = std::fs::read_to_string(sb.config_file()).unwrap().parse().unwrap();
    assert_eq!(written["service_types"]["grafana"]["range"], toml::Value::try_from([13000, 13019]).unwrap());
    assert_eq!(written["service_types"]["grafana"]["instance_behavior"].as_str(), Some("single"));
    assert_eq!(written["service_types"]["dev"]["preferred_ports"], toml::Value::try_from([3005, 3006]).unwrap());
    let rules = written["auto_allocation"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 2);
    assert!(
        rules.iter().any(|r| r["pattern"].as_str() == Some("monitoring-*") && r["chunk_size"].as_integer() == Some(20))
    );
    assert_eq!(written["auto_allocation"]["enabled"].as_bool(), Some(true));
}

fn is_backup(entry: &std::fs::DirEntry) -> bool {
    entry.file_name().to_string_lossy().starts_with("config.toml.backup-")
}
