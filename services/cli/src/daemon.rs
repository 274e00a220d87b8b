//! `daemon status`, `daemon stop` and `token` (with `--write-legacy`, the
//! original's token file).

use crate::Ctx;
use crate::cli::{EXIT_OK, EXIT_UNREACHABLE};
use crate::output::{Failure, print, print_json, print_raw_json};
use crate::table::span;
use serde_json::json;
use std::time::{Duration, Instant};
use styxy_proto::api::{StatusResponse, TokenResponse};
use styxy_proto::client::Method;
use styxy_proto::dirs::{self, Policy};
use styxy_proto::paths;

pub fn status(ctx: &Ctx) -> Result<u8, Failure> {
    // Asking whether it runs must not start it.
    let Some(client) = ctx.discovery.find() else {
        if ctx.json {
            print_json(&json!({"status": "stopped"}));
        } else {
            print("Status: stopped (no allocator answers)\n");
        }
        return Ok(EXIT_UNREACHABLE);
    };
    let reply = client.call(Method::Get, "/status")?;
    if ctx.json {
        print_raw_json(&reply.body);
        return Ok(EXIT_OK);
    }
    let s: StatusResponse = reply.decode()?;
    print(&format!(
        "Status: running ({} mode)\nPID: {}\nUptime: {}\nAllocations: {}\nInstances: {}\nVersion: {}\nSocket: {}\n",
        s.mode,
        s.pid,
        span(s.uptime as u64),
        s.allocations,
        s.instances,
        s.version,
        client.socket().display()
    ));
    Ok(EXIT_OK)
}

pub fn stop(ctx: &Ctx) -> Result<u8, Failure> {
    let Some(client) = ctx.discovery.find() else {
        if ctx.json {
            print_json(&json!({"success": true, "message": "allocator is not running"}));
        } else {
            print("Allocator is not running\n");
        }
        return Ok(EXIT_OK);
    };
    let status: StatusResponse = client.get("/status")?;
    if status.mode == "system" {
        return Err(Failure::local(
            "forbidden",
            "the system allocator is managed by systemd; use: sudo systemctl stop styxy.socket styxy.service",
        ));
    }
    let reply = client.call(Method::Post, "/daemon/stop")?;
    // Return once it is gone, so a following command sees it stopped.
    let deadline = Instant::now() + ctx.discovery.timeout;
    while styxy_observe::process::is_alive(status.pid, None) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if ctx.json {
        print_raw_json(&reply.body);
    } else {
        print(&format!("Stopped the allocator (pid {})\n", status.pid));
    }
    Ok(EXIT_OK)
}

pub fn token(ctx: &Ctx, write_legacy: bool) -> Result<u8, Failure> {
    let reply = ctx.client()?.call(Method::Get, "/token")?;
    let t: TokenResponse = reply.decode()?;
    if !write_legacy {
        if ctx.json {
            print_raw_json(&reply.body);
        } else {
            print(&format!("{}\n", t.token));
        }
        return Ok(EXIT_OK);
    }
    let dir =
        paths::legacy_dir().ok_or_else(|| Failure::local("no_home", "HOME is not set: no ~/.styxy to write to"))?;
    let path = dirs::replace_file(&dir, paths::LEGACY_TOKEN_NAME, t.token.as_bytes(), 0o600, Policy::Private)
        .map_err(|e| Failure::local("unsafe_path", e.to_string()))?;
    if ctx.json {
        print_json(&json!({"success": true, "path": path}));
    } else {
        print(&format!("Wrote your token to {} (mode 0600) for the original Styxy's clients\n", path.display()));
    }
    Ok(EXIT_OK)
}
