//! `styxy hook <event>`: answers one Claude Code hook event read on stdin.
//! This file is the I/O edge (stdin, the allocator, the env file, stdout);
//! what to answer is decided in [`decide`] from what was gathered here.
//!
//! A hook never stands in the agent's way: an unreachable allocator, a
//! malformed event or any failure ends with exit status 0 and no answer
//! (one line on stderr, which Claude Code keeps in its debug log), and a
//! watchdog ends the hook the same way when its budget is spent. Session
//! start may start a user allocator and wait for it (once per session);
//! tool hooks never wait for one: when none answers and the command
//! matters, they start one in the background for the next call.

pub mod conflict;
pub mod decide;
pub mod install;
pub mod owner;
pub mod protocol;

use crate::Ctx;
use crate::cli::EXIT_OK;
use crate::discover::Discovery;
use crate::output::{Failure, print, warn};
use crate::ports::ENV_SESSION;
use crate::run::{find_preload, posix_preload_lines, preload_switched_off, preloadable, sh_quote};
use crate::scopes;
use decide::{Advice, Failure as ConflictFailure, Holder, Plan, StartCheck};
use owner::Sessions;
use protocol::{Event, EventKind, Reply};
use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use styxy_observe::process;
use styxy_observe::project::project_root;
use styxy_proto::api::{
    AllocationView, AllocationsResponse, CheckResponse, InstancesResponse, Listener, ObserveAllResponse,
    RegisterInstanceRequest, SuggestResponse,
};
use styxy_proto::caller::redact;
use styxy_proto::client::{Client, ClientError, Method};
use styxy_proto::paths;
use styxy_proto::scope;

/// Events larger than this are not read to the end, nor answered.
const MAX_EVENT: u64 = 4 * 1024 * 1024;
/// A session's registration lives this long without a heartbeat (every
/// Bash call sends one; session end removes it at once).
const SESSION_TTL_SECS: u64 = 24 * 3600;
const INSTANCE_PREFIX: &str = "claude-";
/// The allocator's limit on instance ids.
const MAX_INSTANCE_ID: usize = 100;
/// Names Claude Code's environment file for the session's Bash commands.
const ENV_FILE: &str = "CLAUDE_ENV_FILE";

/// Held while the answer is written, so the watchdog cannot cut it short.
static OUTPUT: Mutex<()> = Mutex::new(());

/// Answers one event; always exits 0.
pub fn hook(ctx: &Ctx, kind: EventKind, rewrite: bool) -> u8 {
    let budget = kind.budget();
    std::thread::spawn(move || {
        std::thread::sleep(budget);
        let _writing = OUTPUT.lock().unwrap_or_else(|e| e.into_inner());
        warn(&format!("hook {}: no answer within {} ms", kind.subcommand(), budget.as_millis()));
        std::process::exit(EXIT_OK.into());
    });
    let discovery = Discovery { timeout: ctx.discovery.timeout.min(budget), ..ctx.discovery.clone() };
    match answer(&discovery, kind, rewrite) {
        Ok(Some(reply)) => {
            let _writing = OUTPUT.lock().unwrap_or_else(|e| e.into_inner());
            // Serialising a Reply cannot fail: it holds strings and maps only.
            let text = serde_json::to_string(&reply).unwrap_or_default();
            print(&format!("{text}\n"));
        }
        Ok(None) => {}
        Err(failure) => warn(&format!("hook {}: {failure}; no answer", kind.subcommand())),
    }
    EXIT_OK
}

fn read_event() -> Result<Event, Failure> {
    let mut raw = Vec::new();
    std::io::stdin()
        .lock()
        .take(MAX_EVENT + 1)
        .read_to_end(&mut raw)
        .map_err(|e| Failure::local("io", format!("cannot read the event on stdin: {e}")))?;
    if raw.len() as u64 > MAX_EVENT {
        return Err(Failure::local("payload_too_large", format!("the event is larger than {MAX_EVENT} bytes")));
    }
    serde_json::from_slice(&raw)
        .map_err(|e| Failure::local("invalid_json", format!("the event is not a hook event: {e}")))
}

/// The session an event comes from.
struct Session {
    instance_id: String,
    cwd: PathBuf,
    project: Option<PathBuf>,
}

impl Session {
    fn of(event: &Event) -> Result<Session, Failure> {
        let instance_id = instance_id(&event.session_id)
            .ok_or_else(|| Failure::local("invalid_field", "the event has no usable session_id"))?;
        let here = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        let cwd = match &event.cwd {
            Some(c) => here.join(c),
            None => here,
        };
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let project = project_root(&cwd, home.as_deref());
        Ok(Session { instance_id, cwd, project })
    }
}

/// `claude-<session id>`, keeping the characters the allocator accepts.
pub fn instance_id(session_id: &str) -> Option<String> {
    let kept: String = session_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
        .take(MAX_INSTANCE_ID - INSTANCE_PREFIX.len())
        .collect();
    (!kept.is_empty()).then(|| format!("{INSTANCE_PREFIX}{kept}"))
}

fn answer(discovery: &Discovery, kind: EventKind, rewrite: bool) -> Result<Option<Reply>, Failure> {
    let event = read_event()?;
    if event.hook_event_name != kind.wire_name() {
        return Err(Failure::local(
            "invalid_field",
            format!("the event is {:?}, not {}", event.hook_event_name, kind.wire_name()),
        ));
    }
    let session = Session::of(&event)?;
    match kind {
        EventKind::SessionStart => session_start(discovery, &event, &session),
        EventKind::SessionEnd => session_end(discovery, &session),
        EventKind::PreToolUse => pre_tool_use(discovery, &event, &session, rewrite),
        EventKind::PostToolUse | EventKind::PostToolUseFailure => post_tool_use(discovery, kind, &event, &session),
    }
}

/// The allocator, if one answers now; else, when `matters` and starting is
/// allowed, one is started for the next call and this one gets nothing.
fn reachable(discovery: &Discovery, matters: bool) -> Option<Client> {
    let found = Discovery { autostart: false, ..discovery.clone() }.find();
    if found.is_none()
        && matters
        && discovery.autostart
        && let Err(e) = discovery.start_in_background()
    {
        warn(&format!("hook: {e}"));
    }
    found
}

fn session_start(discovery: &Discovery, event: &Event, session: &Session) -> Result<Option<Reply>, Failure> {
    let world = World::new(discovery.connect()?, session);
    world.register(session, event.source.as_deref())?;
    let preload = match std::env::var_os(ENV_FILE).filter(|v| !v.is_empty()) {
        Some(file) => write_env_file(Path::new(&file), &session.instance_id, session.project.as_deref())?,
        None => false,
    };

    let listed: AllocationsResponse = world.client.get("/allocations")?;
    let servers = world.servers(&listed.allocations)?;
    let project = session.project.as_ref().map(|p| p.to_string_lossy());
    let routes = match &project {
        Some(scope) => scopes::routes(&listed.allocations, styxy_proto::paths::uid(), scope),
        None => Vec::new(),
    };
    Ok(decide::session_start(&session.instance_id, project.as_deref(), &servers, preload, &routes))
}

/// The preload library session start puts into the session's Bash
/// commands: none when it is missing or switched off (`STYXY_PRELOAD=off`,
/// which those commands inherit from Claude Code as this hook does).
fn session_preload() -> Option<PathBuf> {
    find_preload().ok().filter(|lib| preloadable(lib) && !preload_switched_off())
}

/// Appends `STYXY_SESSION`, the session's scope (its worktree, wherever its
/// commands `cd` to) and the preload activation to Claude Code's
/// environment file (once). Returns whether the preload library is in it.
fn write_env_file(file: &Path, instance_id: &str, scope: Option<&Path>) -> Result<bool, Failure> {
    let io_error = |e: std::io::Error| Failure::local("io", format!("cannot write {}: {e}", file.display()));
    let session_line = format!("export {ENV_SESSION}={}\n", sh_quote(instance_id));
    let existing = std::fs::read_to_string(file).unwrap_or_default();
    let lib = session_preload();
    if existing.contains(&session_line) {
        return Ok(lib.is_some_and(|l| existing.contains(&posix_preload_lines(&l))));
    }
    let mut lines = format!("# styxy: this session's id and scope, and the bind() interposer\n{session_line}");
    if let Some(scope) = scope {
        lines.push_str(&format!("export {}={}\n", scope::ENV_SCOPE, sh_quote(&scope.to_string_lossy())));
    }
    if let Some(lib) = &lib {
        lines.push_str(&posix_preload_lines(lib));
    }
    let mut out = std::fs::OpenOptions::new().create(true).append(true).open(file).map_err(io_error)?;
    if !existing.is_empty() && !existing.ends_with('\n') {
        lines.insert(0, '\n');
    }
    out.write_all(lines.as_bytes()).map_err(io_error)?;
    Ok(lib.is_some())
}

fn session_end(discovery: &Discovery, session: &Session) -> Result<Option<Reply>, Failure> {
    if let Some(client) = reachable(discovery, false) {
        // An unknown instance (never registered, already expired) is fine.
        client.send(Method::Delete, &format!("/instance/{}", session.instance_id))?;
    }
    Ok(None)
}

fn pre_tool_use(
    discovery: &Discovery,
    event: &Event,
    session: &Session,
    rewrite: bool,
) -> Result<Option<Reply>, Failure> {
    let (Some(command), Some(tool_input)) = (event.bash_command(), &event.tool_input) else {
        return Ok(None);
    };
    let plan = Plan::of(command, &session.cwd);
    let Some(client) = reachable(discovery, !plan.is_empty()) else {
        return Ok(None);
    };
    let world = World::new(client, session);
    world.heartbeat(session)?;
    if plan.is_empty() {
        return Ok(None);
    }
    let mut checks = Vec::new();
    // Suggested ports differ from each other and from ports the command uses.
    let mut avoid: Vec<u16> = plan.starts.iter().filter_map(|s| s.port).collect();
    for start in &plan.starts {
        let holder = match start.port {
            Some(port) => world.holder(port)?,
            None => None,
        };
        let free_port = match &holder {
            Some(_) => world.free_port(start.service_type, &avoid)?,
            None => None,
        };
        avoid.extend(free_port);
        checks.push(StartCheck { holder, free_port });
    }
    let servers = match &plan.kill {
        Some(kill) if kill.pids.is_empty() && kill.names.is_empty() => {
            kill.ports.iter().filter_map(|p| world.holder(*p).transpose()).collect::<Result<Vec<_>, _>>()?
        }
        Some(_) => world.servers(&world.client.get::<AllocationsResponse>("/allocations")?.allocations)?,
        None => Vec::new(),
    };
    let preload = session_preload().is_some();
    Ok(decide::pre_tool_use(tool_input, command, &plan, &checks, &servers, Advice { preload, rewrite }))
}

fn post_tool_use(
    discovery: &Discovery,
    kind: EventKind,
    event: &Event,
    session: &Session,
) -> Result<Option<Reply>, Failure> {
    let Some(output) = event.shell_output() else {
        return Ok(None);
    };
    let Some(failure) = ConflictFailure::find(event.shell_command(), &output, &session.cwd) else {
        return Ok(None);
    };
    let Some(client) = reachable(discovery, true) else {
        return Ok(None);
    };
    let world = World::new(client, session);
    let holder = match failure.port {
        Some(port) => world.holder(port)?,
        None => None,
    };
    let free_port = match failure.port {
        Some(port) => world.free_port(&failure.service_type(holder.as_ref()), &[port])?,
        None => None,
    };
    Ok(Some(decide::post_tool_use(kind, &failure, holder.as_ref(), free_port)))
}

/// What the allocator knows, asked lazily.
struct World {
    client: Client,
    instance_id: String,
    agent: Option<u32>,
    sessions: OnceCell<Sessions>,
}

impl World {
    fn new(client: Client, session: &Session) -> World {
        World { client, instance_id: session.instance_id.clone(), agent: owner::agent_pid(), sessions: OnceCell::new() }
    }

    fn register(&self, session: &Session, source: Option<&str>) -> Result<(), Failure> {
        let session_id = self.instance_id.strip_prefix(INSTANCE_PREFIX).unwrap_or(&self.instance_id);
        let request = RegisterInstanceRequest {
            instance_id: Some(self.instance_id.clone()),
            working_directory: Some(session.cwd.to_string_lossy().into_owned()),
            project_root: session.project.as_ref().map(|p| p.to_string_lossy().into_owned()),
            ttl_secs: Some(SESSION_TTL_SECS),
            metadata: Some(owner::registration_metadata(session_id, source, self.agent)),
        };
        self.client.call_json(Method::Post, "/instance/register", &request)?;
        Ok(())
    }

    /// Keeps the registration alive; registers again when it is gone (it
    /// expired, or hooks were installed in a running session).
    fn heartbeat(&self, session: &Session) -> Result<(), Failure> {
        let path = format!("/instance/{}/heartbeat", self.instance_id);
        match self.client.call(Method::Put, &path) {
            Err(ClientError::Api { status: 404, .. }) => self.register(session, None),
            other => other.map(drop).map_err(Failure::from),
        }
    }

    fn sessions(&self) -> Result<&Sessions, Failure> {
        if let Some(sessions) = self.sessions.get() {
            return Ok(sessions);
        }
        let list: InstancesResponse = self.client.get("/instance/list")?;
        // Only this user's sessions: another user's registration is theirs to
        // word, and must not reach this agent as a session or as text.
        let mine = list.instances.into_iter().map(|v| v.instance).filter(|i| i.uid == paths::uid()).collect();
        Ok(self.sessions.get_or_init(|| Sessions::new(self.instance_id.clone(), self.agent, mine)))
    }

    fn classify(
        &self,
        port: u16,
        reservation: Option<&AllocationView>,
        listeners: &[Listener],
    ) -> Result<Holder, Failure> {
        // What another user wrote or runs never decides nor words this
        // agent's context, even for root, which the allocator shows it all:
        // its records are stripped to ports, types and user names.
        let own = |uid: u32| uid == paths::uid();
        let mut reservation = reservation.cloned();
        if let Some(v) = reservation.as_mut().filter(|v| !own(v.allocation.owner.uid)) {
            redact::hide_allocation_view(v);
        }
        let mut listeners = listeners.to_vec();
        listeners.iter_mut().filter(|l| !own(l.uid)).for_each(redact::hide_listener);
        let tag = reservation.as_ref().map(|v| v.allocation.instance_id.as_str()).filter(|t| !t.is_empty());
        let mut pids = Holder::pids(reservation.as_ref(), &listeners);
        pids.retain(|&pid| process::uid_of(pid).is_some_and(own));
        let belongs = self.sessions()?.belongs(tag, &pids);
        Ok(Holder::new(port, reservation.as_ref(), &listeners, belongs))
    }

    /// Who holds `port`; None when it is free.
    fn holder(&self, port: u16) -> Result<Option<Holder>, Failure> {
        let check: CheckResponse = self.client.get(&format!("/check/{port}"))?;
        if check.available {
            return Ok(None);
        }
        let listeners = check.listeners;
        self.classify(port, check.allocated_to.as_ref(), &listeners).map(Some)
    }

    /// Every port of `allocations` or listened on.
    fn servers(&self, allocations: &[AllocationView]) -> Result<Vec<Holder>, Failure> {
        let observed: ObserveAllResponse = self.client.get("/observe/all")?;
        let mut by_port: BTreeMap<u16, (Option<&AllocationView>, Vec<Listener>)> = BTreeMap::new();
        for a in allocations {
            by_port.entry(a.allocation.port).or_default().0 = Some(a);
        }
        for l in observed.observations {
            by_port.entry(l.port).or_default().1.push(l);
        }
        by_port.iter().map(|(port, (reservation, listeners))| self.classify(*port, *reservation, listeners)).collect()
    }

    /// A free port of `service_type` that is none of `avoid`.
    fn free_port(&self, service_type: &str, avoid: &[u16]) -> Result<Option<u16>, Failure> {
        let path = format!("/suggest/{service_type}?count={}", avoid.len() + 1);
        match self.client.get::<SuggestResponse>(&path) {
            Ok(s) => Ok(s.suggestions.into_iter().find(|p| !avoid.contains(p))),
            // An unknown type or a bad count: no suggestion.
            Err(ClientError::Api { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_keep_what_the_allocator_accepts() {
        assert_eq!(
            instance_id("00893aaf-19fa-41d2-8238-13269b9b3ca0").as_deref(),
            Some("claude-00893aaf-19fa-41d2-8238-13269b9b3ca0")
        );
        assert_eq!(instance_id("a b/c").as_deref(), Some("claude-abc"));
        assert_eq!(instance_id("///"), None);
        assert_eq!(instance_id(&"x".repeat(500)).map(|i| i.len()), Some(MAX_INSTANCE_ID));
    }

    #[test]
    fn the_env_file_gets_the_session_once_and_keeps_other_lines() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("env");
        std::fs::write(&file, "export NODE_ENV=development").unwrap();
        let scope = Path::new("/src/shop b");
        write_env_file(&file, "claude-abc", Some(scope)).unwrap();
        write_env_file(&file, "claude-abc", Some(scope)).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.starts_with("export NODE_ENV=development\n# styxy"), "{text}");
        assert_eq!(text.matches("export STYXY_SESSION=claude-abc\n").count(), 1, "{text}");
        // The lines are valid shell that sets the variable.
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(". {} && printf '%s|%s' \"$STYXY_SESSION\" \"$STYXY_SCOPE\"", file.display()))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "claude-abc|/src/shop b");
    }
}
