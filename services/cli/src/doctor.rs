//! `styxy doctor`: checks each piece styxy needs on this machine and gives a
//! verdict.

use crate::Ctx;
use crate::cli::{EXIT_OK, EXIT_REFUSED};
use crate::output::{print, print_json};
use crate::run::find_preload;
use crate::table::{Table, span};
use serde::Serialize;
use serde_json::json;
use std::path::Path;
use styxy_core::config::Config;
use styxy_proto::api::{ObservePortResponse, StatusResponse};
use styxy_proto::client::{Client, Method};
use styxy_proto::paths;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
enum Level {
    Ok,
    Warning,
    Error,
}

#[derive(Debug, Serialize)]
struct Check {
    check: &'static str,
    status: Level,
    detail: String,
}

fn check(check: &'static str, status: Level, detail: impl Into<String>) -> Check {
    Check { check, status, detail: detail.into() }
}

pub fn doctor(ctx: &Ctx) -> u8 {
    let mut checks = Vec::new();
    let (client, mode) = reach_allocator(ctx, &mut checks);
    if let Some(client) = &client {
        checks.push(allocator_health(client));
    }
    checks.push(configuration());
    checks.push(state_dir(mode.as_deref()));
    checks.push(preload());
    if let Some(client) = &client {
        checks.push(listener_table(client));
        checks.extend(loopback_tcp(client, mode.as_deref()));
    }

    let worst = checks.iter().map(|c| c.status).max().unwrap_or(Level::Ok);
    let verdict = match worst {
        Level::Ok => "healthy",
        Level::Warning => "degraded",
        Level::Error => "broken",
    };
    if ctx.json {
        print_json(&json!({"status": verdict, "checks": checks}));
    } else {
        let mut table = Table::new(vec!["CHECK", "STATUS", "DETAIL"]);
        for c in &checks {
            let status = serde_json::to_value(c.status).unwrap_or_default();
            table.push(vec![c.check.into(), status.as_str().unwrap_or("-").into(), c.detail.clone()]);
        }
        print(&format!("{}\nverdict: {verdict}\n", table.render()));
    }
    if worst == Level::Ok { EXIT_OK } else { EXIT_REFUSED }
}

/// Which socket answers, in which mode; starts a user allocator when
/// allowed, since that is how styxy runs without systemd.
fn reach_allocator(ctx: &Ctx, checks: &mut Vec<Check>) -> (Option<Client>, Option<String>) {
    let (client, started) = match ctx.discovery.find() {
        Some(c) => (c, false),
        None => match ctx.discovery.connect() {
            Ok(c) => (c, true),
            Err(e) => {
                checks.push(check("socket", Level::Error, e.to_string()));
                return (None, None);
            }
        },
    };
    let status = client.get::<StatusResponse>("/status");
    let mode = status.as_ref().ok().map(|s| s.mode.clone());
    let how = if started { "started a user allocator on" } else { "allocator on" };
    let detail = match &mode {
        Some(mode) => format!("{how} {} ({mode} mode)", client.socket().display()),
        None => format!("{how} {}", client.socket().display()),
    };
    checks.push(check("socket", Level::Ok, detail));
    if let Err(e) = status {
        checks.push(check("status", Level::Error, format!("GET /status failed: {e}")));
    }
    (Some(client), mode)
}

fn allocator_health(client: &Client) -> Check {
    let status = client.get::<StatusResponse>("/status").ok();
    let about = status
        .map(|s| format!(", pid {}, up {}, {} allocations", s.pid, span(s.uptime as u64), s.allocations))
        .unwrap_or_default();
    match client.send(Method::Get, "/health") {
        Ok(r) if r.status == 200 => check("allocator", Level::Ok, format!("healthy{about}")),
        Ok(r) if r.status == 503 => {
            let body: serde_json::Value = r.decode().unwrap_or_default();
            check("allocator", Level::Warning, format!("degraded{about}: {body}"))
        }
        Ok(r) => check("allocator", Level::Error, format!("GET /health answered HTTP {}", r.status)),
        Err(e) => check("allocator", Level::Error, format!("GET /health failed: {e}")),
    }
}

fn configuration() -> Check {
    let system = paths::system_config_file();
    let user = paths::user_config_file();
    let issues = Config::validate_files(&system, user.as_deref());
    match issues.first() {
        None => match Config::load_from(&system, user.as_deref()) {
            Ok(c) => check("config", Level::Ok, format!("valid ({} service types)", c.service_types.len())),
            Err(e) => check("config", Level::Error, e.to_string()),
        },
        Some(first) => check(
            "config",
            Level::Error,
            format!("{} issue(s), first: {first} (run `styxy config validate`)", issues.len()),
        ),
    }
}

/// The user allocator writes its state here; in system mode systemd owns it.
fn state_dir(mode: Option<&str>) -> Check {
    if mode == Some("system") {
        return check("state dir", Level::Ok, format!("{} (kept by the system allocator)", paths::SYSTEM_STATE_DIR));
    }
    let dir = paths::user_state_dir();
    match probe_writable(&dir) {
        Ok(()) => check("state dir", Level::Ok, format!("{} is writable", dir.display())),
        Err(e) => check("state dir", Level::Error, format!("{} is not writable: {e}", dir.display())),
    }
}

fn probe_writable(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let probe = dir.join(format!(".doctor-{}", std::process::id()));
    std::fs::write(&probe, b"probe")?;
    std::fs::remove_file(&probe)
}

fn preload() -> Check {
    match find_preload() {
        Ok(lib) => check("preload", Level::Ok, lib.display().to_string()),
        Err(looked) => {
            let looked: Vec<String> = looked.iter().map(|p| p.display().to_string()).collect();
            check(
                "preload",
                Level::Warning,
                format!("library not found (looked at {}); busy ports will not be moved", looked.join(", ")),
            )
        }
    }
}

/// Opens a listener and asks the allocator whether it sees it: proves the
/// kernel's socket table (sock_diag) is readable.
fn listener_table(client: &Client) -> Check {
    let listener = match std::net::TcpListener::bind("127.0.0.1:0") {
        Ok(l) => l,
        Err(e) => {
            return check("sock_diag", Level::Warning, format!("cannot open a test listener: {e}"));
        }
    };
    let port = match listener.local_addr() {
        Ok(a) => a.port(),
        Err(e) => {
            return check("sock_diag", Level::Warning, format!("cannot open a test listener: {e}"));
        }
    };
    match client.get::<ObservePortResponse>(&format!("/observe/{port}")) {
        Ok(r) if r.bound => check("sock_diag", Level::Ok, "the allocator sees listening sockets"),
        Ok(_) => {
            check("sock_diag", Level::Error, format!("the allocator did not see a test listener on 127.0.0.1:{port}"))
        }
        Err(e) => check("sock_diag", Level::Error, format!("GET /observe/{port} failed: {e}")),
    }
}

/// User mode with `api.tcp` set: the original's clients send the token to
/// whoever listens there, so it must be this user's own allocator.
fn loopback_tcp(client: &Client, mode: Option<&str>) -> Option<Check> {
    if mode != Some("user") {
        return None;
    }
    let addr = Config::load().ok()?.api.tcp;
    let port = addr.parse::<std::net::SocketAddr>().ok()?.port();
    let me = styxy_proto::paths::uid();
    Some(match client.get::<ObservePortResponse>(&format!("/observe/{port}")) {
        Err(e) => check("tcp", Level::Error, format!("GET /observe/{port} failed: {e}")),
        Ok(r) => match r.listeners.iter().find(|l| l.uid != me) {
            Some(other) => check(
                "tcp",
                Level::Error,
                format!(
                    "{addr} (api.tcp) is held by uid {}{}, not your allocator: clients reading ~/.styxy/auth.token would send it there",
                    other.uid,
                    other.user.as_ref().map(|u| format!(" ({u})")).unwrap_or_default()
                ),
            ),
            None if r.bound => check("tcp", Level::Ok, format!("your allocator serves {addr} (api.tcp)")),
            None => check(
                "tcp",
                Level::Warning,
                format!("nothing listens on {addr} (api.tcp): restart the allocator (`styxy daemon stop`)"),
            ),
        },
    })
}
