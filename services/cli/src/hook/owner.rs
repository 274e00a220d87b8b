//! Whose a server is: this session's, another Claude Code session's, or
//! nobody's session. The first rule that applies decides:
//!
//! 1. a reservation tagged with a registered session (its instance id, as
//!    `styxy run` and `styxy allocate` record `$STYXY_SESSION`) belongs to
//!    that session;
//! 2. a process whose environment holds `STYXY_SESSION=<id>` of a
//!    registered session belongs to it: session-start writes the variable
//!    into the environment of every Bash command of its session, and it
//!    survives daemonising (`nohup … &`), which rule 3 does not;
//! 3. a process descending from a session's Claude Code process belongs to
//!    it: this session's is the nearest ancestor of the hook that is not a
//!    shell, another's was recorded in its registration (pid and start time);
//! 4. anything else (a terminal, a system service, another user's process,
//!    whose details the allocator does not show) is nobody's session.

use super::decide::Belongs;
use serde_json::{Value, json};
use std::collections::HashMap;
use styxy_observe::process;
use styxy_proto::model::Instance;
use styxy_proto::timestamp::Timestamp;

use crate::ports::ENV_SESSION;

/// What Claude Code's process is called in a registration's metadata.
const AGENT_PID: &str = "agent_pid";
const AGENT_START: &str = "agent_start_time";
/// Processes between Claude Code and the hook that are not Claude Code
/// (and the shells `styxy allocate` looks through when run with `-c`).
pub const SHELLS: &[&str] = &["sh", "bash", "dash", "zsh", "fish", "ksh", "mksh", "busybox"];

/// The Claude Code process that runs this hook: the nearest ancestor that is
/// not a shell (hooks run through `sh -c`). None when that is init.
pub fn agent_pid() -> Option<u32> {
    for pid in process::lineage(std::os::unix::process::parent_id()) {
        match process::comm(pid) {
            Some(name) if SHELLS.contains(&name.as_str()) => {}
            Some(_) => return Some(pid),
            None => return None,
        }
    }
    None
}

/// The metadata a session registers with, so other sessions can tell its
/// processes apart (rule 3).
pub fn registration_metadata(session_id: &str, source: Option<&str>, agent: Option<u32>) -> Value {
    let mut metadata = json!({"agent": "claude-code", "session_id": session_id});
    if let Some(source) = source {
        metadata["source"] = json!(source);
    }
    if let Some(pid) = agent {
        metadata[AGENT_PID] = json!(pid);
        if let Some(start) = process::start_time(pid) {
            metadata[AGENT_START] = json!(start);
        }
    }
    metadata
}

/// `name`'s value in the environment `pid` started with.
fn env_of(pid: u32, name: &str) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{name}=");
    environ
        .split(|b| *b == 0)
        .find_map(|entry| entry.strip_prefix(prefix.as_bytes()))
        .map(|value| String::from_utf8_lossy(value).into_owned())
}

/// This session and the other registered ones.
pub struct Sessions {
    ours: String,
    our_agent: Option<u32>,
    others: HashMap<String, Instance<Timestamp>>,
    /// Other sessions' Claude Code processes that still run, by pid.
    other_agents: HashMap<u32, String>,
}

impl Sessions {
    pub fn new(ours: String, our_agent: Option<u32>, instances: Vec<Instance<Timestamp>>) -> Sessions {
        let others: HashMap<String, Instance<Timestamp>> =
            instances.into_iter().filter(|i| i.instance_id != ours).map(|i| (i.instance_id.clone(), i)).collect();
        let other_agents = others
            .values()
            .filter_map(|i| {
                let pid = u32::try_from(i.metadata.get(AGENT_PID)?.as_u64()?).ok()?;
                let start = i.metadata.get(AGENT_START).and_then(Value::as_u64);
                process::is_alive(pid, start).then(|| (pid, i.instance_id.clone()))
            })
            .collect();
        Sessions { ours, our_agent: our_agent.filter(|p| *p > 1), others, other_agents }
    }

    /// The session an instance id names, when it is a registered one.
    fn session(&self, id: &str) -> Option<Belongs> {
        if id == self.ours {
            return Some(Belongs::ThisSession);
        }
        self.others.get(id).map(|i| Belongs::OtherSession {
            instance_id: i.instance_id.clone(),
            project: i.project_root.clone().or_else(|| i.working_directory.clone()),
        })
    }

    /// Whose a server is, from its reservation's session tag and the
    /// processes involved (the listener, the reservation's owner).
    pub fn belongs(&self, tag: Option<&str>, pids: &[u32]) -> Belongs {
        if let Some(b) = tag.and_then(|t| self.session(t)) {
            return b;
        }
        for &pid in pids {
            if let Some(b) = env_of(pid, ENV_SESSION).and_then(|id| self.session(&id)) {
                return b;
            }
        }
        for &pid in pids {
            for current in process::lineage(pid) {
                if Some(current) == self.our_agent {
                    return Belongs::ThisSession;
                }
                if let Some(b) = self.other_agents.get(&current).and_then(|id| self.session(id)) {
                    return b;
                }
            }
        }
        Belongs::Outside
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    fn instance(id: &str, project: &str, metadata: Value) -> Instance<Timestamp> {
        Instance {
            instance_id: id.into(),
            uid: 0,
            working_directory: None,
            project_root: Some(project.into()),
            registered_at: Timestamp(0),
            last_heartbeat: Timestamp(0),
            ttl_secs: 60,
            metadata,
        }
    }

    fn other(id: &str) -> Belongs {
        Belongs::OtherSession { instance_id: id.into(), project: Some("/p/other".into()) }
    }

    #[test]
    fn a_session_tag_decides_first_and_only_registered_ids_count() {
        let sessions = Sessions::new("claude-me".into(), None, vec![instance("claude-other", "/p/other", json!({}))]);
        assert_eq!(sessions.belongs(Some("claude-me"), &[]), Belongs::ThisSession);
        assert_eq!(sessions.belongs(Some("claude-other"), &[]), other("claude-other"));
        assert_eq!(sessions.belongs(Some("default"), &[]), Belongs::Outside);
        assert_eq!(sessions.belongs(None, &[]), Belongs::Outside);
    }

    #[test]
    fn a_process_belongs_by_its_environment_then_by_its_ancestry() {
        // This test process plays a Claude Code process; its children are
        // "its" servers.
        let me = std::process::id();
        let spawn = |session: Option<&str>| {
            let mut c = Command::new("sleep");
            c.arg("30").stdin(Stdio::null()).env_remove(ENV_SESSION);
            if let Some(s) = session {
                c.env(ENV_SESSION, s);
            }
            let child = c.spawn().unwrap();
            // Until exec, the child's /proc entry shows this process's
            // environment; just after it, none (the kernel names the
            // process before it lays out the new environment).
            let execed = |pid| {
                process::comm(pid).as_deref() == Some("sleep")
                    && process::read_proc(pid, "environ").is_some_and(|env| !env.is_empty())
            };
            while !execed(child.id()) {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            child
        };
        let mut tagged = spawn(Some("claude-other"));
        let mut plain = spawn(None);

        let as_ours =
            Sessions::new("claude-me".into(), Some(me), vec![instance("claude-other", "/p/other", json!({}))]);
        assert_eq!(as_ours.belongs(None, &[tagged.id()]), other("claude-other"));
        assert_eq!(as_ours.belongs(None, &[plain.id()]), Belongs::ThisSession);

        // Seen from a third session, the test process is claude-other's
        // Claude Code process, as its registration says.
        let metadata = registration_metadata("other", Some("startup"), Some(me));
        let as_third = Sessions::new("claude-third".into(), None, vec![instance("claude-other", "/p/other", metadata)]);
        assert_eq!(as_third.belongs(None, &[plain.id()]), other("claude-other"));
        let nobodys = Sessions::new("claude-third".into(), None, vec![]);
        assert_eq!(nobodys.belongs(None, &[plain.id()]), Belongs::Outside);

        for child in [&mut tagged, &mut plain] {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    #[test]
    fn a_recorded_agent_whose_pid_was_reused_is_not_that_session() {
        let me = std::process::id();
        let mut metadata = registration_metadata("other", None, Some(me));
        metadata[AGENT_START] = json!(1);
        let sessions = Sessions::new("claude-third".into(), None, vec![instance("claude-other", "/p/other", metadata)]);
        assert_eq!(sessions.belongs(None, &[me]), Belongs::Outside);
    }
}
