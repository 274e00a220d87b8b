//! `styxy config …`: what the allocator uses (asked over the API), and the
//! configuration files on this machine (read and edited locally).

use crate::Ctx;
use crate::cli::{AutoAllocationCommand, ConfigCommand, EXIT_OK, EXIT_REFUSED};
use crate::output::{Failure, print, print_json, print_raw_json};
use crate::table::{Table, local, or_dash};
use serde_json::json;
use styxy_core::config::{Config, import_original, set_user_auto_allocation_enabled};
use styxy_proto::api::{ConfigResponse, ServiceTypeView, UndoAutoTypeResponse};
use styxy_proto::client::Method;
use styxy_proto::dirs::{self, Policy};
use styxy_proto::paths;

pub fn config(ctx: &Ctx, command: &ConfigCommand) -> Result<u8, Failure> {
    match command {
        ConfigCommand::Show => show(ctx),
        ConfigCommand::Validate => validate(ctx.json),
        ConfigCommand::Import { path, dry_run } => import(ctx.json, path.as_deref(), *dry_run),
        ConfigCommand::AutoAllocation { action } => match action {
            None | Some(AutoAllocationCommand::Status) => auto_status(ctx),
            Some(AutoAllocationCommand::List) => auto_list(ctx),
            Some(AutoAllocationCommand::Enable) => auto_enable(ctx.json, true),
            Some(AutoAllocationCommand::Disable) => auto_enable(ctx.json, false),
            Some(AutoAllocationCommand::Undo { service_type }) => auto_undo(ctx, service_type),
        },
    }
}

fn range_text([lo, hi]: [u16; 2]) -> String {
    format!("{lo}-{hi}")
}

fn show(ctx: &Ctx) -> Result<u8, Failure> {
    let reply = ctx.client()?.call(Method::Get, "/config")?;
    if ctx.json {
        print_raw_json(&reply.body);
        return Ok(EXIT_OK);
    }
    let view: ConfigResponse = reply.decode()?;
    let mut table = Table::new(vec!["TYPE", "RANGE", "PREFERRED", "INSTANCES", "ORIGIN", "DESCRIPTION"]);
    for (name, view) in &view.service_types {
        let t = &view.service_type;
        let preferred: Vec<String> = t.preferred_ports.iter().map(u16::to_string).collect();
        table.push(vec![
            name.clone(),
            range_text(t.range),
            if preferred.is_empty() { "-".into() } else { preferred.join(",") },
            t.instance_behavior.as_str().into(),
            if view.auto_allocated { "auto" } else { "config" }.into(),
            if t.description.is_empty() { "-".into() } else { t.description.clone() },
        ]);
    }
    let mut out = table.render();
    out.push_str(&format!(
        "\n{} service types; auto-allocation {}\n",
        view.service_types.len(),
        if view.auto_allocation.enabled { "enabled" } else { "disabled" }
    ));
    print(&out);
    Ok(EXIT_OK)
}

/// Local: checks the system and user files layered over the built-ins.
fn validate(json: bool) -> Result<u8, Failure> {
    let system = paths::system_config_file();
    let user = paths::user_config_file();
    let issues = Config::validate_files(&system, user.as_deref());
    let types = if issues.is_empty() {
        Config::load_from(&system, user.as_deref())
            .map(|c| c.service_types.len())
            .map_err(|e| Failure::local("invalid_config", e.to_string()))?
    } else {
        0
    };
    if json {
        let list: Vec<_> =
            issues.iter().map(|i| json!({"file": i.file, "field": i.field, "reason": i.reason})).collect();
        print_json(&json!({
            "valid": issues.is_empty(),
            "service_types": types,
            "issues": list,
            "files": [system, user],
        }));
    } else if issues.is_empty() {
        print(&format!("configuration is valid ({types} service types)\n"));
    } else {
        print(&issues.iter().map(|i| format!("{i}\n")).collect::<String>());
    }
    Ok(if issues.is_empty() { EXIT_OK } else { EXIT_REFUSED })
}

/// `config import`: the original's JSON as this user's TOML, the file it
/// replaces kept beside it as `config.toml.backup-MILLIS`.
fn import(json: bool, path: Option<&std::path::Path>, dry_run: bool) -> Result<u8, Failure> {
    let source = match path {
        Some(p) => p.to_path_buf(),
        None => paths::legacy_dir()
            .ok_or_else(|| Failure::local("no_home", "HOME is not set: give the path of config.json"))?
            .join(paths::LEGACY_CONFIG_NAME),
    };
    let text = std::fs::read_to_string(&source)
        .map_err(|e| Failure::local("unreadable", format!("cannot read {}: {e}", source.display())))?;
    let imported = import_original(&source, &text, &paths::system_config_file());
    let target = paths::user_config_file()
        .ok_or_else(|| Failure::local("no_home", "HOME is not set: no ~/.config/styxy/config.toml to write"))?;
    let issues: Vec<String> = imported.issues.iter().map(ToString::to_string).collect();
    let mut backup = None;
    let write = issues.is_empty() && !dry_run;
    if write {
        let (dir, name) = match (target.parent(), target.file_name().and_then(|n| n.to_str())) {
            (Some(dir), Some(name)) => (dir, name),
            _ => return Err(Failure::local("invalid_path", format!("{} is not a file path", target.display()))),
        };
        if let Ok(old) = std::fs::read(&target) {
            let kept = format!("{name}.backup-{}", styxy_proto::model::now_millis());
            backup = Some(
                dirs::replace_file(dir, &kept, &old, 0o600, Policy::Private)
                    .map_err(|e| Failure::local("unsafe_path", e.to_string()))?,
            );
        }
        dirs::replace_file(dir, name, imported.toml.as_bytes(), 0o644, Policy::Private)
            .map_err(|e| Failure::local("unsafe_path", e.to_string()))?;
    }
    if json {
        print_json(&json!({
            "success": issues.is_empty(),
            "source": source,
            "target": target,
            "written": write,
            "backup": backup,
            "toml": imported.toml,
            "left_out": imported.left_out,
            "issues": issues,
        }));
    } else {
        let mut out = format!("# {} as {}:\n{}\n", source.display(), target.display(), imported.toml);
        for line in &imported.left_out {
            out.push_str(&format!("not imported: {line}\n"));
        }
        for line in &issues {
            out.push_str(&format!("invalid: {line}\n"));
        }
        if let Some(b) = &backup {
            out.push_str(&format!("kept the previous file as {}\n", b.display()));
        }
        out.push_str(&match (issues.is_empty(), write) {
            (false, _) => format!("nothing written: fix {} and run it again\n", source.display()),
            (true, true) => format!("wrote {}\n", target.display()),
            (true, false) => "dry run: nothing written\n".into(),
        });
        print(&out);
    }
    Ok(if issues.is_empty() { EXIT_OK } else { EXIT_REFUSED })
}

fn auto_types(view: &ConfigResponse) -> impl Iterator<Item = (&String, &ServiceTypeView)> {
    view.service_types.iter().filter(|(_, t)| t.auto_allocated)
}

/// The automatically created types of a raw `/config` answer.
fn auto_types_json(config: &serde_json::Value) -> serde_json::Value {
    let types = config["service_types"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, t)| t["auto_allocated"].as_bool() == Some(true));
    serde_json::Value::Object(types.map(|(k, v)| (k.clone(), v.clone())).collect())
}

fn auto_table(view: &ConfigResponse) -> String {
    let mut table = Table::new(vec!["TYPE", "RANGE", "PORTS", "CREATED"]);
    for (name, t) in auto_types(view) {
        table.push(vec![
            name.clone(),
            range_text(t.service_type.range),
            (u32::from(t.service_type.range[1]) - u32::from(t.service_type.range[0]) + 1).to_string(),
            or_dash(t.auto_allocated_at.map(local)),
        ]);
    }
    if table.is_empty() { "No service types have been auto-allocated yet\n".into() } else { table.render() }
}

fn auto_status(ctx: &Ctx) -> Result<u8, Failure> {
    let reply = ctx.client()?.call(Method::Get, "/config")?;
    if ctx.json {
        let raw: serde_json::Value = reply.decode()?;
        print_json(&json!({
            "auto_allocation": raw["auto_allocation"],
            "service_types": auto_types_json(&raw),
        }));
        return Ok(EXIT_OK);
    }
    let view: ConfigResponse = reply.decode()?;
    let a = &view.auto_allocation;
    let mut out = format!(
        "Auto-allocation: {}\nChunk size: {} ports\nPlacement: {}\nPort range: {}-{}\nGaps: {}\n",
        if a.enabled { "enabled" } else { "disabled" },
        a.default_chunk_size,
        a.placement,
        a.min_port,
        a.max_port,
        if a.preserve_gaps { format!("{} ports", a.gap_size) } else { "none".into() },
    );
    for rule in &a.rules {
        let mut details = Vec::new();
        if let Some(chunk) = rule.chunk_size {
            details.push(format!("chunk {chunk}"));
        }
        if let Some(placement) = rule.placement {
            details.push(format!("placement {placement}"));
        }
        out.push_str(&format!("Rule: {} ({})\n", rule.pattern, details.join(", ")));
    }
    out.push('\n');
    out.push_str(&auto_table(&view));
    print(&out);
    Ok(EXIT_OK)
}

fn auto_list(ctx: &Ctx) -> Result<u8, Failure> {
    let reply = ctx.client()?.call(Method::Get, "/config")?;
    if ctx.json {
        let raw: serde_json::Value = reply.decode()?;
        print_json(&json!({"service_types": auto_types_json(&raw)}));
        return Ok(EXIT_OK);
    }
    print(&auto_table(&reply.decode()?));
    Ok(EXIT_OK)
}

/// Local: edits the user config file.
fn auto_enable(json: bool, enabled: bool) -> Result<u8, Failure> {
    let path = paths::user_config_file()
        .ok_or_else(|| Failure::local("not_found", "no user config file: set HOME or STYXY_CONFIG"))?;
    set_user_auto_allocation_enabled(&path, enabled).map_err(|e| Failure::local("invalid_config", e.to_string()))?;
    let state = if enabled { "enabled" } else { "disabled" };
    if json {
        print_json(&json!({"success": true, "enabled": enabled, "path": path}));
    } else {
        print(&format!(
            "Auto-allocation {state} in {}\n\
             A user allocator reads it when it starts: `styxy daemon stop` stops it, the next command starts it again.\n\
             The system allocator reads {} instead.\n",
            path.display(),
            paths::system_config_file().display()
        ));
    }
    Ok(EXIT_OK)
}

fn auto_undo(ctx: &Ctx, service_type: &str) -> Result<u8, Failure> {
    if service_type.is_empty() || !service_type.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
        return Err(Failure::local("invalid_field", format!("not a service type name: {service_type:?}")));
    }
    let reply = ctx.client()?.call(Method::Delete, &format!("/config/auto-types/{service_type}"))?;
    if ctx.json {
        print_raw_json(&reply.body);
        return Ok(EXIT_OK);
    }
    let r: UndoAutoTypeResponse = reply.decode()?;
    print(&format!(
        "Removed auto-allocated service type '{}'; range {} is free again\n",
        r.service_type,
        range_text(r.range)
    ));
    Ok(EXIT_OK)
}
