//! `styxy hooks install | uninstall | status`: styxy's entries in Claude
//! Code's settings (`~/.claude/settings.json`, or `.claude/settings.json`
//! of the current directory).
//!
//! Styxy adds one matcher group of its own per event and touches nothing
//! else: every other key, hook and group stays as it was, in its order.
//! Its entries are recognised by their command (`…/styxy hook <event>`),
//! wherever they are, so uninstall removes exactly those (and an event list
//! or `hooks` object it leaves empty). A file that is not JSON, or whose
//! `hooks` is not shaped as Claude Code reads it, is refused and left
//! untouched. Writes keep a timestamped backup and replace the file
//! atomically (through a symlink to its target).

use super::protocol::EventKind;
use crate::Ctx;
use crate::cli::{EXIT_OK, HookScope};
use crate::discover::{is_executable, search_path};
use crate::output::{Failure, print, print_json};
use crate::run::sh_quote;
use serde_json::{Map, Value, json};
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Where settings of a scope live.
pub fn settings_path(scope: HookScope) -> Result<PathBuf, Failure> {
    match scope {
        HookScope::User => std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(|home| PathBuf::from(home).join(".claude/settings.json"))
            .ok_or_else(|| Failure::local("not_found", "HOME is not set")),
        HookScope::Project => std::env::current_dir()
            .map(|d| d.join(".claude/settings.json"))
            .map_err(|e| Failure::local("io", format!("cannot read the current directory: {e}"))),
    }
}

/// The command Claude Code runs for `kind`.
pub fn hook_command(exe: &Path, kind: EventKind, rewrite: bool) -> String {
    let flag = if rewrite && kind == EventKind::PreToolUse { " --rewrite" } else { "" };
    format!("{} hook {}{flag}", sh_quote(&exe.to_string_lossy()), kind.subcommand())
}

/// Words of a command line, with single quotes, double quotes and
/// backslashes undone (enough for the commands styxy writes).
fn words(command: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => words.extend(word.take()),
            '\'' => word.get_or_insert_default().extend(chars.by_ref().take_while(|c| *c != '\'')),
            '"' => {
                let w = word.get_or_insert_default();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => w.extend(chars.next()),
                        c => w.push(c),
                    }
                }
            }
            '\\' => word.get_or_insert_default().extend(chars.next()),
            c => word.get_or_insert_default().push(c),
        }
    }
    words.extend(word);
    words
}

/// The event a hook command of styxy answers (whatever the path of the
/// `styxy` binary), and whether it rewrites.
fn styxy_hook(command: &str) -> Option<(EventKind, bool)> {
    let words = words(command);
    let program = Path::new(words.first()?).file_name()?;
    if program != "styxy" || words.get(1)?.as_str() != "hook" {
        return None;
    }
    let kind = EventKind::from_subcommand(words.get(2)?)?;
    Some((kind, words[3..].iter().any(|w| w == "--rewrite")))
}

/// Whether the program of a hook command can be run.
fn program_exists(command: &str) -> bool {
    let words = words(command);
    let Some(program) = words.first() else {
        return false;
    };
    if program.contains('/') { is_executable(Path::new(program)) } else { search_path(program).is_some() }
}

fn is_ours(hook: &Value) -> bool {
    hook.get("command").and_then(Value::as_str).is_some_and(|c| styxy_hook(c).is_some())
}

/// Settings that are not shaped as Claude Code reads them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    #[error("the settings are not a JSON object")]
    NotAnObject,
    #[error("\"hooks\" is not an object")]
    HooksNotAnObject,
    #[error("\"hooks\".{0:?} is not a list")]
    EventNotAList(String),
}

/// `settings["hooks"]`, checked.
fn hooks_of(settings: &Value) -> Result<Option<&Map<String, Value>>, ShapeError> {
    let object = settings.as_object().ok_or(ShapeError::NotAnObject)?;
    let Some(hooks) = object.get("hooks") else {
        return Ok(None);
    };
    let hooks = hooks.as_object().ok_or(ShapeError::HooksNotAnObject)?;
    if let Some((event, _)) = hooks.iter().find(|(_, groups)| !groups.is_array()) {
        return Err(ShapeError::EventNotAList(event.clone()));
    }
    Ok(Some(hooks))
}

/// `settings` without styxy's hooks: its entries go, so do matcher groups
/// and event lists left empty by that, and `hooks` if it ends up empty.
pub fn uninstall(settings: &Value) -> Result<Value, ShapeError> {
    let Some(hooks) = hooks_of(settings)? else {
        return Ok(settings.clone());
    };
    let mut kept_hooks = Map::new();
    for (event, groups) in hooks {
        let groups = groups.as_array().map(Vec::as_slice).unwrap_or_default();
        let mut kept_groups = Vec::new();
        for group in groups {
            let Some(entries) = group.get("hooks").and_then(Value::as_array) else {
                kept_groups.push(group.clone());
                continue;
            };
            if !entries.iter().any(is_ours) {
                kept_groups.push(group.clone());
                continue;
            }
            let kept: Vec<Value> = entries.iter().filter(|h| !is_ours(h)).cloned().collect();
            if !kept.is_empty() {
                let mut group = group.clone();
                group["hooks"] = Value::Array(kept);
                kept_groups.push(group);
            }
        }
        if !kept_groups.is_empty() || groups.is_empty() {
            kept_hooks.insert(event.clone(), Value::Array(kept_groups));
        }
    }
    let mut out = settings.clone();
    if kept_hooks.is_empty() && !hooks.is_empty() {
        out.as_object_mut().map(|o| o.remove("hooks"));
    } else {
        out["hooks"] = Value::Object(kept_hooks);
    }
    Ok(out)
}

/// `settings` with styxy's hooks for every event, run by `exe`, and nothing
/// else changed.
pub fn install(settings: &Value, exe: &Path, rewrite: bool) -> Result<Value, ShapeError> {
    let mut out = uninstall(settings)?;
    let object = out.as_object_mut().ok_or(ShapeError::NotAnObject)?;
    let hooks = object
        .entry("hooks")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or(ShapeError::HooksNotAnObject)?;
    for kind in EventKind::ALL {
        let mut group = Map::new();
        if let Some(matcher) = kind.matcher() {
            group.insert("matcher".into(), json!(matcher));
        }
        group.insert(
            "hooks".into(),
            json!([{
                "type": "command",
                "command": hook_command(exe, kind, rewrite),
                "timeout": kind.settings_timeout_secs(),
            }]),
        );
        hooks
            .entry(kind.wire_name())
            .or_insert_with(|| Value::Array(Vec::new()))
            .as_array_mut()
            .ok_or_else(|| ShapeError::EventNotAList(kind.wire_name().into()))?
            .push(Value::Object(group));
    }
    Ok(out)
}

/// One styxy hook found in settings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Installed {
    /// The settings key it is under.
    pub event: String,
    /// The event its command answers.
    pub answers: &'static str,
    pub matcher: Option<String>,
    pub command: String,
    pub rewrite: bool,
}

/// Styxy's hooks in `settings`.
pub fn installed(settings: &Value) -> Result<Vec<Installed>, ShapeError> {
    let mut found = Vec::new();
    for (event, groups) in hooks_of(settings)?.into_iter().flatten() {
        for group in groups.as_array().into_iter().flatten() {
            let matcher = group.get("matcher").and_then(Value::as_str).map(str::to_string);
            for hook in group.get("hooks").and_then(Value::as_array).into_iter().flatten() {
                let Some(command) = hook.get("command").and_then(Value::as_str) else {
                    continue;
                };
                if let Some((kind, rewrite)) = styxy_hook(command) {
                    found.push(Installed {
                        event: event.clone(),
                        answers: kind.wire_name(),
                        matcher: matcher.clone(),
                        command: command.to_string(),
                        rewrite,
                    });
                }
            }
        }
    }
    Ok(found)
}

/// A settings file as read: None when there is none.
fn load(path: &Path) -> Result<Option<Value>, Failure> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Failure::local("io", format!("cannot read {}: {e}", path.display())));
        }
    };
    if text.trim().is_empty() {
        return Ok(Some(json!({})));
    }
    let value: Value = serde_json::from_str(&text).map_err(|e| {
        Failure::local(
            "invalid_json",
            format!("{}:{}:{}: not valid JSON ({e}); nothing was changed", path.display(), e.line(), e.column()),
        )
    })?;
    hooks_of(&value).map_err(|e| shape_failure(path, &e))?;
    Ok(Some(value))
}

fn shape_failure(path: &Path, e: &ShapeError) -> Failure {
    Failure::local("invalid_field", format!("{}: {e}; nothing was changed", path.display()))
}

/// Writes `value` to the settings at `path` atomically, after copying the
/// current file aside. Returns the backup.
fn save(path: &Path, value: &Value, existed: bool) -> Result<Option<PathBuf>, Failure> {
    // A symlinked settings file (dotfiles) is written at its target.
    let target =
        if existed { fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()) } else { path.to_path_buf() };
    let io_error = |what: &str, p: &Path, e: std::io::Error| {
        Failure::local("io", format!("cannot {what} {}: {e}; nothing was changed", p.display()))
    };
    let dir = target.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| io_error("create", dir, e))?;
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "settings.json".into());

    let backup = if existed {
        let stamp = styxy_proto::model::now_millis();
        let backup = (0..)
            .map(|n| {
                dir.join(format!("{name}.styxy-backup-{stamp}{}", if n == 0 { String::new() } else { format!("-{n}") }))
            })
            .find(|b| !b.exists())
            .unwrap_or_else(|| dir.join(format!("{name}.styxy-backup")));
        fs::copy(&target, &backup).map_err(|e| io_error("back up to", &backup, e))?;
        Some(backup)
    } else {
        None
    };

    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    let temp = dir.join(format!(".{name}.styxy-{}", std::process::id()));
    let written = (|| {
        let mut file = fs::File::create(&temp)?;
        if let Ok(meta) = fs::metadata(&target) {
            file.set_permissions(fs::Permissions::from_mode(meta.permissions().mode()))?;
        }
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&temp, &target)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(io_error("write", &target, e));
    }
    Ok(backup)
}

fn current_exe() -> Result<PathBuf, Failure> {
    std::env::current_exe()
        .and_then(fs::canonicalize)
        .map_err(|e| Failure::local("io", format!("cannot tell where styxy is installed: {e}")))
}

fn list_events(hooks: &[Installed]) -> String {
    hooks
        .iter()
        .map(|h| match &h.matcher {
            Some(m) => format!("{} ({m})", h.event),
            None => h.event.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `styxy hooks install`.
pub fn install_command(ctx: &Ctx, scope: HookScope, rewrite: bool) -> Result<u8, Failure> {
    let path = settings_path(scope)?;
    let current = load(&path)?;
    let before = current.clone().unwrap_or_else(|| json!({}));
    let after = install(&before, &current_exe()?, rewrite).map_err(|e| shape_failure(&path, &e))?;
    let changed = current.as_ref() != Some(&after);
    let backup = if changed { save(&path, &after, current.is_some())? } else { None };
    let hooks = installed(&after).map_err(|e| shape_failure(&path, &e))?;
    if ctx.json {
        print_json(&json!({
            "success": true, "settings": path, "changed": changed, "backup": backup, "hooks": hooks,
        }));
        return Ok(EXIT_OK);
    }
    let mut out = if changed {
        format!("Installed styxy's Claude Code hooks in {}: {}\n", path.display(), list_events(&hooks))
    } else {
        format!("styxy's hooks are already installed in {}; nothing changed\n", path.display())
    };
    if let Some(b) = backup {
        out.push_str(&format!("Backup of the previous file: {}\n", b.display()));
    }
    if rewrite {
        out.push_str("PreToolUse rewrites a server start whose port is taken and asks you to confirm it.\n");
    }
    print(&out);
    Ok(EXIT_OK)
}

/// `styxy hooks uninstall`.
pub fn uninstall_command(ctx: &Ctx, scope: HookScope) -> Result<u8, Failure> {
    let path = settings_path(scope)?;
    let current = load(&path)?;
    let (removed, backup) = match &current {
        Some(settings) => {
            let removed = installed(settings).map_err(|e| shape_failure(&path, &e))?;
            let backup = if removed.is_empty() {
                None
            } else {
                let after = uninstall(settings).map_err(|e| shape_failure(&path, &e))?;
                save(&path, &after, true)?
            };
            (removed, backup)
        }
        None => (Vec::new(), None),
    };
    if ctx.json {
        print_json(&json!({
            "success": true, "settings": path, "changed": !removed.is_empty(), "backup": backup, "removed": removed,
        }));
        return Ok(EXIT_OK);
    }
    let mut out = if removed.is_empty() {
        format!("No styxy hooks in {}; nothing changed\n", path.display())
    } else {
        format!("Removed styxy's hooks from {}: {}\n", path.display(), list_events(&removed))
    };
    if let Some(b) = backup {
        out.push_str(&format!("Backup of the previous file: {}\n", b.display()));
    }
    print(&out);
    Ok(EXIT_OK)
}

/// `styxy hooks status`: each scope's file and the styxy hooks in it.
pub fn status_command(ctx: &Ctx, scopes: &[HookScope]) -> Result<u8, Failure> {
    let mut reports = Vec::new();
    let mut text = String::new();
    for scope in scopes {
        let path = settings_path(*scope)?;
        let current = load(&path)?;
        let hooks = match &current {
            Some(s) => installed(s).map_err(|e| shape_failure(&path, &e))?,
            None => Vec::new(),
        };
        let missing: Vec<&str> = EventKind::ALL
            .iter()
            .filter(|k| !hooks.iter().any(|h| h.answers == k.wire_name() && h.event == k.wire_name()))
            .map(|k| k.wire_name())
            .collect();
        let scope_name = match scope {
            HookScope::User => "user",
            HookScope::Project => "project",
        };
        text.push_str(&format!("{scope_name}: {}", path.display()));
        if current.is_none() {
            text.push_str(" (no such file)");
        }
        text.push('\n');
        if hooks.is_empty() {
            text.push_str("  styxy hooks: not installed\n");
        }
        for h in &hooks {
            let matcher = h.matcher.as_deref().map(|m| format!(" [{m}]")).unwrap_or_default();
            let runnable = if program_exists(&h.command) { "" } else { " (program not found)" };
            text.push_str(&format!("  {}{matcher}: {}{runnable}\n", h.event, h.command));
        }
        if !hooks.is_empty() && !missing.is_empty() {
            text.push_str(&format!("  missing: {}\n", missing.join(", ")));
        }
        reports.push(json!({
            "scope": scope_name, "settings": path, "exists": current.is_some(),
            "hooks": hooks, "missing": missing,
        }));
    }
    if ctx.json {
        print_json(&json!({"success": true, "scopes": reports}));
    } else {
        print(&text);
    }
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXE: &str = "/usr/bin/styxy";

    fn others() -> Value {
        json!({
            "model": "opus",
            "permissions": {"allow": ["Bash(npm test)"]},
            "hooks": {
                "PreToolUse": [
                    {"matcher": "Write|Edit", "hooks": [{"type": "command", "command": "prettier --check"}]},
                    {"matcher": "Bash", "hooks": [{"type": "command", "command": "~/bin/audit.sh", "timeout": 3}]}
                ],
                "Stop": [{"hooks": [{"type": "command", "command": "notify-send done"}]}]
            },
            "env": {"FOO": "1"}
        })
    }

    #[test]
    fn install_adds_one_group_per_event_and_keeps_everything_else() {
        let before = others();
        let after = install(&before, Path::new(EXE), false).unwrap();
        assert_eq!(after["model"], "opus");
        assert_eq!(after["env"], before["env"]);
        assert_eq!(after["hooks"]["Stop"], before["hooks"]["Stop"]);
        let pre = after["hooks"]["PreToolUse"].as_array().unwrap();
        assert_eq!(pre[..2], before["hooks"]["PreToolUse"].as_array().unwrap()[..]);
        assert_eq!(
            pre[2],
            json!({"matcher": "Bash", "hooks": [{"type": "command", "command": "/usr/bin/styxy hook pre-tool-use", "timeout": 5}]})
        );
        assert_eq!(
            after["hooks"]["SessionStart"],
            json!([{"hooks": [{"type": "command", "command": "/usr/bin/styxy hook session-start", "timeout": 10}]}])
        );
        let found = installed(&after).unwrap();
        assert_eq!(found.len(), 5);
        assert!(found.iter().all(|h| h.event == h.answers && !h.rewrite));
        // Keys stay in the file's order.
        let keys: Vec<&String> = after.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["model", "permissions", "hooks", "env"]);
    }

    #[test]
    fn installing_twice_changes_nothing_and_uninstall_restores_the_original() {
        let once = install(&others(), Path::new(EXE), false).unwrap();
        let twice = install(&once, Path::new(EXE), false).unwrap();
        assert_eq!(serde_json::to_string(&once).unwrap(), serde_json::to_string(&twice).unwrap());
        assert_eq!(uninstall(&twice).unwrap(), others());
        let fresh = install(&json!({}), Path::new(EXE), true).unwrap();
        assert_eq!(uninstall(&fresh).unwrap(), json!({}));
    }

    #[test]
    fn rewrite_is_on_the_pre_tool_use_command_only_and_reinstalling_switches_it() {
        let with = install(&json!({}), Path::new(EXE), true).unwrap();
        let rewriting: Vec<&str> =
            installed(&with).unwrap().into_iter().filter(|h| h.rewrite).map(|h| h.answers).collect();
        assert_eq!(rewriting, ["PreToolUse"]);
        let without = install(&with, Path::new(EXE), false).unwrap();
        assert!(installed(&without).unwrap().iter().all(|h| !h.rewrite));
        assert_eq!(installed(&without).unwrap().len(), 5);
    }

    #[test]
    fn installing_over_an_older_install_upgrades_its_matchers_and_leaves_one_group_per_event() {
        let older = json!({"hooks": {
            "PostToolUse": [{"matcher": "Bash|BashOutput", "hooks": [
                {"type": "command", "command": "/usr/local/bin/styxy hook post-tool-use", "timeout": 5}]}],
            "PostToolUseFailure": [{"matcher": "Bash", "hooks": [
                {"type": "command", "command": "/usr/local/bin/styxy hook post-tool-use-failure"}]}]
        }});
        let after = install(&older, Path::new(EXE), false).unwrap();
        for event in ["PostToolUse", "PostToolUseFailure"] {
            let groups = after["hooks"][event].as_array().unwrap();
            assert_eq!(groups.len(), 1, "{event}: {groups:?}");
            assert_eq!(groups[0]["matcher"], "Bash|BashOutput|TaskOutput|Read", "{event}");
            assert_eq!(groups[0]["hooks"][0]["command"], format!("{EXE} hook {}", event_subcommand(event)));
        }
        assert_eq!(installed(&after).unwrap().len(), 5);
    }

    fn event_subcommand(event: &str) -> &'static str {
        EventKind::ALL.into_iter().find(|k| k.wire_name() == event).unwrap().subcommand()
    }

    #[test]
    fn styxy_hooks_are_recognised_wherever_the_binary_is_and_only_they_are_removed() {
        let mixed = json!({"hooks": {"PreToolUse": [{"matcher": "Bash", "hooks": [
            {"type": "command", "command": "'/opt/my tools/styxy' hook pre-tool-use --rewrite"},
            {"type": "command", "command": "styxy-lint hook pre-tool-use"},
            {"type": "command", "command": "echo styxy hook pre-tool-use"}
        ]}]}});
        let found = installed(&mixed).unwrap();
        assert_eq!(found.len(), 1);
        assert!(found[0].rewrite);
        let after = uninstall(&mixed).unwrap();
        assert_eq!(after["hooks"]["PreToolUse"][0]["hooks"].as_array().unwrap().len(), 2);
        assert_eq!(after["hooks"]["PreToolUse"][0]["matcher"], "Bash");
    }

    #[test]
    fn a_hook_whose_program_is_gone_is_told_apart() {
        let exe = std::env::current_exe().unwrap();
        assert!(program_exists(&hook_command(&exe, EventKind::SessionEnd, false)));
        assert!(program_exists("sh -c true"));
        assert!(!program_exists("/nonexistent/styxy hook session-end"));
    }

    #[test]
    fn commands_quote_paths_that_need_it() {
        let command = hook_command(Path::new("/opt/my tools/styxy"), EventKind::PreToolUse, true);
        assert_eq!(command, "'/opt/my tools/styxy' hook pre-tool-use --rewrite");
        assert_eq!(styxy_hook(&command), Some((EventKind::PreToolUse, true)));
        assert_eq!(words(r#"a "b c\"d" 'e f'g \h"#), ["a", "b c\"d", "e fg", "h"]);
    }

    #[test]
    fn badly_shaped_settings_are_refused() {
        assert_eq!(install(&json!([]), Path::new(EXE), false), Err(ShapeError::NotAnObject));
        assert_eq!(install(&json!({"hooks": []}), Path::new(EXE), false), Err(ShapeError::HooksNotAnObject));
        assert_eq!(
            uninstall(&json!({"hooks": {"PreToolUse": {"matcher": "Bash"}}})),
            Err(ShapeError::EventNotAList("PreToolUse".into()))
        );
    }

    #[test]
    fn saving_keeps_a_backup_the_mode_and_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("dotfiles/settings.json");
        fs::create_dir_all(real.parent().unwrap()).unwrap();
        fs::write(&real, "{\"model\": \"opus\"}").unwrap();
        fs::set_permissions(&real, fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.path().join("settings.json");
        std::os::unix::fs::symlink(&real, &link).unwrap();

        let backup = save(&link, &json!({"model": "sonnet"}), true).unwrap().unwrap();
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(load(&link).unwrap(), Some(json!({"model": "sonnet"})));
        assert_eq!(fs::read_to_string(&backup).unwrap(), "{\"model\": \"opus\"}");
        assert_eq!(fs::metadata(&real).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
