//! Claude Code's hook protocol, as its hooks reference documents it: one
//! event as JSON on stdin; the reply as JSON on stdout with exit status 0.
//!
//! Every event carries `session_id`, `transcript_path`, `cwd` and
//! `hook_event_name`; tool events add `tool_name` and `tool_input` (Bash:
//! `{command, description, timeout, run_in_background}`), PostToolUse adds
//! `tool_response` (Bash: `{stdout, stderr, interrupted, isImage}`),
//! PostToolUseFailure adds `error`, SessionStart adds `source`. Fields this
//! hook does not use (`permission_mode`, `model`, `tool_use_id`…) are ignored.
//!
//! A reply is `{"systemMessage"?, "hookSpecificOutput": {"hookEventName",
//! …}}`; which keys `hookSpecificOutput` may hold depends on the event.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::time::Duration;

/// Tools whose output post-tool-use reads: Bash, and the tools that read a
/// background task's output: BashOutput (2.0), TaskOutput (2.1.1xx, its
/// text nested in `task.output`) and, since 2.1.3xx, Read of the task's
/// output file (`…/tasks/<id>.output`, its text in `file.content`).
const OUTPUT_TOOLS: &[&str] = &["Bash", "BashOutput", "TaskOutput", "Read"];

/// Where a tool response holds what was printed.
const TEXT_FIELDS: &[&str] = &["stdout", "stderr", "output", "content"];
/// Objects of a tool response that nest those fields.
const NESTED: &[&str] = &["task", "file"];
/// What a background task's output file is called.
const TASK_OUTPUT_DIR: &str = "tasks";
const TASK_OUTPUT_EXTENSION: &str = "output";

/// The events styxy answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    SessionStart,
    PreToolUse,
    PostToolUse,
    PostToolUseFailure,
    SessionEnd,
}

impl EventKind {
    pub const ALL: [EventKind; 5] = [
        EventKind::SessionStart,
        EventKind::PreToolUse,
        EventKind::PostToolUse,
        EventKind::PostToolUseFailure,
        EventKind::SessionEnd,
    ];

    /// `hook_event_name` and the settings key.
    pub fn wire_name(self) -> &'static str {
        match self {
            EventKind::SessionStart => "SessionStart",
            EventKind::PreToolUse => "PreToolUse",
            EventKind::PostToolUse => "PostToolUse",
            EventKind::PostToolUseFailure => "PostToolUseFailure",
            EventKind::SessionEnd => "SessionEnd",
        }
    }

    /// The `styxy hook` subcommand.
    pub fn subcommand(self) -> &'static str {
        match self {
            EventKind::SessionStart => "session-start",
            EventKind::PreToolUse => "pre-tool-use",
            EventKind::PostToolUse => "post-tool-use",
            EventKind::PostToolUseFailure => "post-tool-use-failure",
            EventKind::SessionEnd => "session-end",
        }
    }

    pub fn from_subcommand(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.subcommand() == name)
    }

    /// Tool events look at Bash commands, and after a tool ran, at the
    /// output of background shells too.
    pub fn matcher(self) -> Option<&'static str> {
        match self {
            EventKind::PreToolUse => Some("Bash"),
            EventKind::PostToolUse | EventKind::PostToolUseFailure => Some("Bash|BashOutput|TaskOutput|Read"),
            EventKind::SessionStart | EventKind::SessionEnd => None,
        }
    }

    /// The `timeout` written into the settings: Claude Code kills the hook
    /// after it (and shows an error), so it sits well above [`budget`].
    ///
    /// [`budget`]: EventKind::budget
    pub fn settings_timeout_secs(self) -> u64 {
        match self {
            EventKind::SessionStart => 10,
            EventKind::SessionEnd => 2,
            _ => 5,
        }
    }

    /// How long the hook may take before it gives up and answers nothing.
    /// Session start may start an allocator (it waits up to 3 s for one);
    /// Claude Code gives session-end hooks 1.5 s in all.
    pub fn budget(self) -> Duration {
        match self {
            EventKind::SessionStart => Duration::from_secs(6),
            EventKind::SessionEnd => Duration::from_millis(1000),
            _ => Duration::from_millis(1500),
        }
    }
}

/// One event as Claude Code sends it.
#[derive(Debug, Clone, Deserialize)]
pub struct Event {
    pub session_id: String,
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    pub hook_event_name: String,
    /// SessionStart: startup, resume, clear or compact.
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub tool_name: Option<String>,
    #[serde(default)]
    pub tool_input: Option<Map<String, Value>>,
    /// PostToolUse: what the tool returned.
    #[serde(default)]
    pub tool_response: Option<Value>,
    /// PostToolUseFailure: what went wrong (for Bash, with the output).
    #[serde(default)]
    pub error: Option<String>,
}

impl Event {
    /// The Bash command of a tool event.
    pub fn bash_command(&self) -> Option<&str> {
        if self.tool_name.as_deref() != Some("Bash") {
            return None;
        }
        self.tool_input.as_ref()?.get("command")?.as_str()
    }

    /// The command whose output [`shell_output`] is: Bash's own, or the
    /// one a background shell's output response names.
    ///
    /// [`shell_output`]: Event::shell_output
    pub fn shell_command(&self) -> Option<&str> {
        match self.tool_name.as_deref()? {
            "Bash" => self.bash_command(),
            name if OUTPUT_TOOLS.contains(&name) => self.tool_response.as_ref()?.get("command")?.as_str(),
            _ => None,
        }
    }

    /// Whether a Read reads a background task's output file.
    fn reads_task_output(&self) -> bool {
        let path = self.tool_input.as_ref().and_then(|i| i.get("file_path")?.as_str()).map(std::path::Path::new);
        path.is_some_and(|p| {
            p.extension().is_some_and(|e| e == TASK_OUTPUT_EXTENSION)
                && p.parent().and_then(|d| d.file_name()).is_some_and(|d| d == TASK_OUTPUT_DIR)
        })
    }

    /// What a shell tool printed: Bash's stdout and stderr (or those of a
    /// background task, read with BashOutput, TaskOutput or Read of its
    /// output file) on success, the error text on failure. None for other
    /// tools and other files.
    pub fn shell_output(&self) -> Option<String> {
        let tool = self.tool_name.as_deref()?;
        if !OUTPUT_TOOLS.contains(&tool) || (tool == "Read" && !self.reads_task_output()) {
            return None;
        }
        fn texts(object: &Map<String, Value>) -> Vec<&str> {
            TEXT_FIELDS.iter().filter_map(|k| object.get(*k)?.as_str()).collect()
        }
        let mut parts: Vec<&str> = match &self.tool_response {
            Some(Value::Object(response)) => {
                let nested = NESTED.iter().filter_map(|k| response.get(*k)?.as_object());
                texts(response).into_iter().chain(nested.flat_map(texts)).collect()
            }
            Some(Value::String(s)) => vec![s.as_str()],
            _ => Vec::new(),
        };
        parts.extend(self.error.as_deref());
        Some(parts.join("\n"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Ask,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SpecificOutput {
    pub hook_event_name: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permission_decision: Option<Decision>,
    /// Shown to the user with `ask`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permission_decision_reason: Option<String>,
    /// The whole tool input to run instead (with `ask`, shown for confirmation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_input: Option<Map<String, Value>>,
    /// Added to Claude's context.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub additional_context: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reply {
    /// One line shown to the user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_message: Option<String>,
    pub hook_specific_output: SpecificOutput,
}

impl Reply {
    /// A reply that only adds `context` for Claude.
    pub fn context(kind: EventKind, context: String) -> Reply {
        Reply {
            system_message: None,
            hook_specific_output: SpecificOutput {
                hook_event_name: kind.wire_name(),
                permission_decision: None,
                permission_decision_reason: None,
                updated_input: None,
                additional_context: Some(context),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subcommands_and_wire_names_round_trip() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::from_subcommand(kind.subcommand()), Some(kind));
            assert!(kind.budget() < Duration::from_secs(kind.settings_timeout_secs()));
        }
        assert_eq!(EventKind::from_subcommand("stop"), None);
    }

    #[test]
    fn bash_output_joins_stdout_stderr_and_the_error() {
        let event: Event = serde_json::from_value(serde_json::json!({
            "session_id": "s", "hook_event_name": "PostToolUse", "tool_name": "Bash",
            "tool_input": {"command": "npm start"},
            "tool_response": {"stdout": "ready", "stderr": "EADDRINUSE", "interrupted": false, "isImage": false}
        }))
        .unwrap();
        assert_eq!(event.bash_command(), Some("npm start"));
        assert_eq!(event.shell_output().as_deref(), Some("ready\nEADDRINUSE"));
    }

    #[test]
    fn a_background_shells_output_is_read_without_a_command() {
        let event: Event = serde_json::from_value(serde_json::json!({
            "session_id": "s", "hook_event_name": "PostToolUse", "tool_name": "BashOutput",
            "tool_input": {"bash_id": "bash_1"},
            "tool_response": {"shellId": "bash_1", "status": "failed", "stdout": "", "stderr": "Error: listen EADDRINUSE: address already in use :::3000", "exitCode": 1}
        }))
        .unwrap();
        assert_eq!(event.bash_command(), None);
        assert_eq!(event.shell_command(), None);
        assert!(event.shell_output().unwrap().contains("EADDRINUSE"));
    }

    #[test]
    fn background_output_is_read_from_task_output_and_from_the_tasks_output_file() {
        let task_output: Event = serde_json::from_value(serde_json::json!({
            "session_id": "s", "hook_event_name": "PostToolUse", "tool_name": "TaskOutput",
            "tool_input": {"task_id": "b4gr57lm9", "block": true, "timeout": 5000},
            "tool_response": {"retrieval_status": "success", "task": {"task_id": "b4gr57lm9",
                "task_type": "local_bash", "status": "failed", "description": "x",
                "output": "Error: listen EADDRINUSE: address already in use :::3000\n", "exitCode": 1}}
        }))
        .unwrap();
        assert!(task_output.shell_output().unwrap().contains("EADDRINUSE"));
        let read = |path: &str| -> Event {
            serde_json::from_value(serde_json::json!({
                "session_id": "s", "hook_event_name": "PostToolUse", "tool_name": "Read",
                "tool_input": {"file_path": path},
                "tool_response": {"type": "text", "file": {"filePath": path,
                    "content": "Error: listen EADDRINUSE: address already in use :::3000\n", "numLines": 1}}
            }))
            .unwrap()
        };
        let output = read("/tmp/claude-0/-src-app/cf5b0718/tasks/bqixj3nd0.output");
        assert!(output.shell_output().unwrap().contains("EADDRINUSE"));
        assert_eq!(output.shell_command(), None);
        // Any other file is the code's, not a server's output.
        assert_eq!(read("/src/app/docs/errors.md").shell_output(), None);
        assert_eq!(read("/src/app/tasks.output/notes.txt").shell_output(), None);
    }

    #[test]
    fn a_non_bash_tool_has_no_command() {
        let event: Event = serde_json::from_value(serde_json::json!({
            "session_id": "s", "hook_event_name": "PreToolUse", "tool_name": "Write",
            "tool_input": {"command": "npm start", "file_path": "/tmp/x"}
        }))
        .unwrap();
        assert_eq!(event.bash_command(), None);
        assert_eq!(event.shell_output(), None);
    }

    #[test]
    fn replies_use_the_documented_key_names() {
        let mut reply = Reply::context(EventKind::PreToolUse, "note".into());
        reply.hook_specific_output.permission_decision = Some(Decision::Ask);
        assert_eq!(
            serde_json::to_value(&reply).unwrap(),
            serde_json::json!({"hookSpecificOutput": {
                "hookEventName": "PreToolUse", "permissionDecision": "ask", "additionalContext": "note"
            }})
        );
    }
}
