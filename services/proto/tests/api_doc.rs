//! docs/api.md against the types: every JSON example decodes into its
//! route's request or answer type and encodes back to the same JSON (so a
//! misspelt, missing or never-sent field in the docs fails), and every route
//! the allocator serves has its section, its index row and its examples.
//!
//! The docs mark examples with the fence's info string: `json request`,
//! `json answer` (under the route's `### \`METHOD /path\`` heading) or
//! `json error` (anywhere).

#![cfg(feature = "wire")]

use std::collections::BTreeSet;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use styxy_proto::api::*;

const API_DOC: &str = include_str!("../../../docs/api.md");

/// Decodes an example as one type and encodes it again: the differences
/// from the example, or why it does not decode.
type Check = fn(&Value) -> Result<Vec<String>, String>;

fn check<T: Serialize + DeserializeOwned>(example: &Value) -> Result<Vec<String>, String> {
    let name = std::any::type_name::<T>().rsplit("::").next().unwrap_or_default();
    let decoded: T = serde_json::from_value(example.clone()).map_err(|e| format!("does not decode as {name}: {e}"))?;
    let encoded = serde_json::to_value(&decoded).map_err(|e| format!("{name} does not encode: {e}"))?;
    let mut differences = Vec::new();
    compare("$", example, &encoded, &mut differences);
    Ok(differences.into_iter().map(|d| format!("{name}: {d}")).collect())
}

/// Where `example` and what the type made of it differ, by JSON path.
fn compare(path: &str, example: &Value, encoded: &Value, out: &mut Vec<String>) {
    match (example, encoded) {
        (Value::Object(ex), Value::Object(en)) => {
            for key in ex.keys().filter(|k| !en.contains_key(*k)) {
                out.push(format!("{path}.{key} is in the example but the type drops it (misspelt, or never sent)"));
            }
            for key in en.keys().filter(|k| !ex.contains_key(*k)) {
                out.push(format!("{path}.{key} is sent but missing from the example"));
            }
            for (key, value) in ex {
                if let Some(other) = en.get(key) {
                    compare(&format!("{path}.{key}"), value, other, out);
                }
            }
        }
        (Value::Array(ex), Value::Array(en)) if ex.len() == en.len() => {
            for (i, (a, b)) in ex.iter().zip(en).enumerate() {
                compare(&format!("{path}[{i}]"), a, b, out);
            }
        }
        _ if example != encoded => out.push(format!("{path} is {example} in the example, sent as {encoded}")),
        _ => {}
    }
}

/// A route as the allocator serves it: `METHOD /path` as the docs head it,
/// the request body's type (none for routes without a body) and the answer's.
struct Route {
    name: &'static str,
    request: Option<Check>,
    answer: Check,
}

const fn route(name: &'static str, answer: Check) -> Route {
    Route { name, request: None, answer }
}

const fn with_body(name: &'static str, request: Check, answer: Check) -> Route {
    Route { name, request: Some(request), answer }
}

/// The allocator's routes (services/allocator/src/routes.rs, `resolve`).
const ROUTES: &[Route] = &[
    with_body("POST /allocate", check::<AllocateRequest>, check::<AllocateResponse>),
    route("DELETE /allocate/{lock_id}", check::<ReleaseResponse>),
    route("GET /check/{port}", check::<CheckResponse>),
    route("GET /status", check::<StatusResponse>),
    route("GET /allocations", check::<AllocationsResponse>),
    route("GET /config", check::<ConfigResponse>),
    route("GET /instance/list", check::<InstancesResponse>),
    with_body("POST /instance/register", check::<RegisterInstanceRequest>, check::<RegisterInstanceResponse>),
    route("PUT /instance/{id}/heartbeat", check::<HeartbeatResponse>),
    route("DELETE /instance/{id}", check::<EndInstanceResponse>),
    with_body("POST /register-instance", check::<RegisterForObserverRequest>, check::<RegisterInstanceResponse>),
    with_body("POST /cleanup", check::<CleanupRequest>, check::<CleanupResponse>),
    route("GET /scan", check::<ScanResponse>),
    route("GET /health", check::<HealthResponse>),
    route("GET /metrics", check::<MetricsResponse>),
    route("GET /audit", check::<AuditResponse>),
    route("GET /circuit-breakers", check::<CircuitBreakersResponse>),
    route("GET /observe/all", check::<ObserveAllResponse>),
    route("GET /observe/{port}", check::<ObservePortResponse>),
    route("GET /observation-stats", check::<ObservationStatsResponse>),
    route("GET /suggest/{service_type}", check::<SuggestResponse>),
    route("GET /token", check::<TokenResponse>),
    route("DELETE /config/auto-types/{type}", check::<UndoAutoTypeResponse>),
    route("POST /daemon/stop", check::<StopResponse>),
];

/// One fenced JSON block of the docs.
struct Example {
    /// 1-based line of the opening fence.
    line: usize,
    /// The `### ` heading it is under, without backticks.
    section: Option<String>,
    /// `request`, `answer` or `error`.
    kind: String,
    text: String,
}

/// The `### ` headings and the JSON examples, in order.
fn read_doc(doc: &str) -> (Vec<String>, Vec<Example>) {
    let mut headings = Vec::new();
    let mut examples = Vec::new();
    let mut section = None;
    let mut lines = doc.lines().enumerate();
    while let Some((i, line)) = lines.next() {
        if let Some(heading) = line.strip_prefix("### ") {
            let heading = heading.trim().trim_matches('`').to_string();
            headings.push(heading.clone());
            section = Some(heading);
        } else if line.starts_with("## ") {
            section = None;
        } else if let Some(info) = line.strip_prefix("```") {
            let body: Vec<&str> = lines.by_ref().map(|(_, l)| l).take_while(|l| !l.starts_with("```")).collect();
            let mut words = info.split_whitespace();
            if words.next() == Some("json") {
                let kind = words.next().unwrap_or_default().to_string();
                examples.push(Example { line: i + 1, section: section.clone(), kind, text: body.join("\n") });
            }
        }
    }
    (headings, examples)
}

/// The first column of the route index (`| \`METHOD /path\` | ...`).
fn index_rows(doc: &str) -> Vec<String> {
    doc.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`'))
        .map(|(name, _)| name.to_string())
        .collect()
}

/// Everything wrong with `doc`, one line each.
fn problems(doc: &str) -> Vec<String> {
    let (headings, examples) = read_doc(doc);
    let mut problems = Vec::new();
    let find = |name: &str| ROUTES.iter().find(|r| r.name == name);
    for heading in &headings {
        if find(heading).is_none() {
            problems.push(format!("section {heading:?} is not a route the allocator serves"));
        }
    }
    for example in &examples {
        let at = format!("docs/api.md:{}", example.line);
        let route = example.section.as_deref().and_then(find);
        let check = match (example.kind.as_str(), route) {
            ("error", _) => check::<ErrorBody>,
            ("request", Some(Route { request: Some(request), .. })) => *request,
            ("request", Some(_)) => {
                problems.push(format!("{at}: a request example for a route that takes no body"));
                continue;
            }
            ("answer", Some(route)) => route.answer,
            ("request" | "answer", None) => {
                problems.push(format!("{at}: json {} outside a route's section", example.kind));
                continue;
            }
            (other, _) => {
                problems.push(format!("{at}: the fence says json {other:?}; say json request, answer or error"));
                continue;
            }
        };
        let value: Value = match serde_json::from_str(&example.text) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("{at}: not JSON: {e}"));
                continue;
            }
        };
        match check(&value) {
            Ok(differences) => problems.extend(differences.into_iter().map(|d| format!("{at}: {d}"))),
            Err(e) => problems.push(format!("{at}: {e}")),
        }
    }
    for route in ROUTES {
        let of_route = |kind: &str| examples.iter().any(|e| e.section.as_deref() == Some(route.name) && e.kind == kind);
        if !headings.iter().any(|h| h == route.name) {
            problems.push(format!("no section for {}", route.name));
        }
        if !of_route("answer") {
            problems.push(format!("no answer example for {}", route.name));
        }
        if route.request.is_some() && !of_route("request") {
            problems.push(format!("no request example for {}", route.name));
        }
    }
    let index: BTreeSet<String> = index_rows(doc).into_iter().collect();
    let served: BTreeSet<String> = ROUTES.iter().map(|r| r.name.to_string()).collect();
    for missing in served.difference(&index) {
        problems.push(format!("the route index has no row for {missing}"));
    }
    for stale in index.difference(&served) {
        problems.push(format!("the route index lists {stale}, which the allocator does not serve"));
    }
    if !examples.iter().any(|e| e.kind == "error") {
        problems.push("no error example".into());
    }
    problems
}

#[test]
fn every_example_in_the_api_doc_is_what_the_allocator_sends() {
    let problems = problems(API_DOC);
    assert!(problems.is_empty(), "docs/api.md disagrees with styxy-proto's api types:\n{}", problems.join("\n"));
}

// The checks above can fail: each kind of mistake is caught.

#[test]
fn a_misspelt_or_missing_field_is_caught() {
    let misspelt = json!({"success": true, "port": 3000, "lock_id": "x", "message": "m", "mesage": "m"});
    let found = check::<ReleaseResponse>(&misspelt).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("$.mesage"), "{found:?}");
    let missing = json!({"success": true, "port": 3000, "lock_id": "x"});
    assert!(check::<ReleaseResponse>(&missing).unwrap_err().contains("missing field `message`"));
}

#[test]
fn an_optional_field_shown_where_it_is_never_sent_is_caught() {
    let answer = json!({"success": true, "port": 3000, "lock_id": "x", "message": "m", "service_type": "dev",
        "service_name": "web", "existing": false});
    let found = check::<AllocateResponse>(&answer).unwrap();
    assert!(found.len() == 1 && found[0].contains("$.existing"), "{found:?}");
    let free = json!({"port": 3000, "available": true});
    let found = check::<CheckResponse>(&free).unwrap();
    assert!(found.iter().any(|d| d.contains("$.allocated_to is sent but missing")), "{found:?}");
}

#[test]
fn a_number_of_the_wrong_kind_is_caught() {
    let status = json!({"status": "running", "mode": "user", "pid": 1, "uptime": 12, "allocations": 0,
        "instances": 0, "generation": 0, "version": "0.1.0"});
    let found = check::<StatusResponse>(&status).unwrap();
    assert!(found.len() == 1 && found[0].contains("$.uptime is 12 in the example, sent as 12.0"), "{found:?}");
}

#[test]
fn routes_without_examples_and_unknown_sections_are_caught() {
    let doc = "| `GET /status` | | x |\n\n### `GET /status`\n\n```json answer\n{}\n```\n\n### `GET /nothing`\n\n\
               ```json\n{}\n```\n";
    let found = problems(doc);
    let has = |needle: &str| found.iter().any(|p| p.contains(needle));
    assert!(has("does not decode as StatusResponse"), "{found:?}");
    assert!(has("section \"GET /nothing\" is not a route"), "{found:?}");
    assert!(has("say json request, answer or error"), "{found:?}");
    assert!(has("no answer example for POST /allocate"), "{found:?}");
    assert!(has("no request example for POST /allocate"), "{found:?}");
    assert!(has("the route index has no row for POST /allocate"), "{found:?}");
    assert!(has("no error example"), "{found:?}");
}
