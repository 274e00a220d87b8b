//! What to answer, given the event and what the allocator said: no sockets,
//! no /proc here (the I/O is in `mod.rs`; whose a server is comes from
//! `owner.rs`), so every branch is reachable from a unit test.

use super::conflict::{self, Conflict};
use super::protocol::{Decision, EventKind, Reply, SpecificOutput};
use crate::scopes::Route;
use serde_json::{Map, Value};
use std::path::Path;
use styxy_cmdline::shellcmd::{self, KillTarget, ServerStart};
use styxy_proto::api::{AllocationView, Listener};

/// Commands longer than this are not analysed (a pathological command
/// could take the recogniser longer than the hook's budget).
pub const MAX_COMMAND: usize = 256 * 1024;
/// Lists in a reply stop after this many ports.
const MAX_LISTED: usize = 12;
/// Command lines quoted in a reply are cut to this many characters.
const MAX_QUOTED: usize = 80;

/// Whose a server is (see `owner.rs` for the rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Belongs {
    ThisSession,
    OtherSession {
        instance_id: String,
        project: Option<String>,
    },
    /// Not started by any Claude Code session styxy knows.
    Outside,
}

/// A styxy reservation of a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub service_type: String,
    pub service_name: String,
}

/// Who holds a port: the reservation and the listening process, as far as
/// the allocator may show them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub port: u16,
    pub belongs: Belongs,
    pub reservation: Option<Reservation>,
    pub listening: bool,
    pub pid: Option<u32>,
    /// Command name.
    pub process: Option<String>,
    /// Full command line.
    pub command: Option<String>,
    pub project: Option<String>,
    /// The user, when the allocator hides the process (another user's).
    pub user: Option<String>,
}

impl Holder {
    /// One port's holder from the allocator's reservation and listeners.
    pub fn new(port: u16, reservation: Option<&AllocationView>, listeners: &[Listener], belongs: Belongs) -> Holder {
        let listener = listeners.iter().find(|l| l.pid.is_some()).or(listeners.first());
        let a = reservation.map(|v| &v.allocation);
        Holder {
            port,
            belongs,
            reservation: a
                .map(|a| Reservation { service_type: a.service_type.clone(), service_name: a.service_name.clone() }),
            // Busy in the kernel with neither a reservation nor a listener
            // the allocator can see (another network namespace): something
            // holds it.
            listening: listener.is_some() || reservation.is_none(),
            pid: listener.and_then(|l| l.pid).or(a.and_then(|a| a.owner.pid)),
            process: listener.and_then(|l| l.process.clone()).or_else(|| reservation.and_then(|v| v.process.clone())),
            command: listener.and_then(|l| l.command.clone()),
            project: listener.and_then(|l| l.project.clone()).or_else(|| a.and_then(|a| a.project_path.clone())),
            user: listener.and_then(|l| l.user.clone()).or_else(|| reservation.and_then(|v| v.user.clone())),
        }
    }

    /// The processes whose ownership decides: listeners, then the
    /// reservation's owner.
    pub fn pids(reservation: Option<&AllocationView>, listeners: &[Listener]) -> Vec<u32> {
        let mut pids: Vec<u32> = listeners.iter().filter_map(|l| l.pid).collect();
        pids.extend(reservation.and_then(|v| v.allocation.owner.pid));
        pids.dedup();
        pids
    }

    /// Whether starting a server on this port collides with the holder. A
    /// port this session reserved and nobody listens on is waiting for it.
    fn blocks(&self) -> bool {
        self.listening || self.belongs != Belongs::ThisSession
    }

    /// "node (pid 4242, `next dev`)", "a process of user bob".
    fn what(&self) -> String {
        let Some(name) = self.process.clone().or_else(|| self.pid.map(|p| format!("pid {p}"))) else {
            return match &self.user {
                Some(user) => format!("a process of user {user}"),
                None => "another process".into(),
            };
        };
        let mut details = Vec::new();
        if let Some(pid) = self.pid.filter(|_| self.process.is_some()) {
            details.push(format!("pid {pid}"));
        }
        if let Some(command) = &self.command {
            details.push(format!("`{}`", quoted(command)));
        }
        if details.is_empty() { name } else { format!("{name} ({})", details.join(", ")) }
    }

    /// "in use by node (pid 4242) of another Claude Code session (…)".
    fn phrase(&self) -> String {
        let whose = match &self.belongs {
            Belongs::ThisSession => "started by this session".to_string(),
            Belongs::OtherSession { instance_id, project } => match project {
                Some(p) => format!("of another Claude Code session ({instance_id}, project {p})"),
                None => format!("of another Claude Code session ({instance_id})"),
            },
            Belongs::Outside => match &self.project {
                Some(p) => format!("in project {p}, not started by this session"),
                None => "not started by this session".to_string(),
            },
        };
        if self.listening {
            return format!("in use by {} {whose}", self.what());
        }
        let reserved = self
            .reservation
            .as_ref()
            .map(|r| format!(" for {} service '{}'", r.service_type, r.service_name))
            .unwrap_or_default();
        format!("reserved{reserved} by {} {whose}", self.what())
    }

    fn is_foreign(&self) -> bool {
        self.belongs != Belongs::ThisSession
    }
}

fn quoted(command: &str) -> String {
    let flat: String = command.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    match flat.char_indices().nth(MAX_QUOTED) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat,
    }
}

/// What a Bash command does that styxy cares about.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Server starts whose port is known.
    pub starts: Vec<ServerStart>,
    pub kill: Option<KillTarget>,
}

impl Plan {
    pub fn of(command: &str, cwd: &Path) -> Plan {
        if command.len() > MAX_COMMAND {
            return Plan { starts: Vec::new(), kill: None };
        }
        Plan {
            starts: shellcmd::recognise(command, cwd).into_iter().filter(|s| s.port.is_some()).collect(),
            kill: shellcmd::kill_targets(command)
                .filter(|k| !(k.ports.is_empty() && k.pids.is_empty() && k.names.is_empty())),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.starts.is_empty() && self.kill.is_none()
    }
}

/// What the allocator said about one planned start's port.
#[derive(Debug, Clone)]
pub struct StartCheck {
    /// None: the port is free.
    pub holder: Option<Holder>,
    /// A free port of the start's service type.
    pub free_port: Option<u16>,
}

/// The servers a kill aims at: by port, by pid, or by name (`pkill -f`
/// patterns are taken as plain text found in the command line).
pub fn kill_victims<'a>(kill: &KillTarget, servers: &'a [Holder]) -> Vec<&'a Holder> {
    servers
        .iter()
        .filter(|h| {
            kill.ports.contains(&h.port)
                || h.pid.is_some_and(|p| kill.pids.contains(&p))
                || kill.names.iter().any(|n| {
                    !n.is_empty()
                        && (h.process.as_deref() == Some(n.as_str())
                            || h.command.as_deref().is_some_and(|c| c.contains(n.as_str())))
                })
        })
        .collect()
}

/// The sentence that moves a start to `free_port`, in the tool's own
/// syntax where styxy knows it.
fn alternative(command: &str, start: &ServerStart, free_port: Option<u16>) -> (String, Option<String>) {
    let Some(free) = free_port else {
        return (format!("No free {} port was found; ask the user which port to use.", start.service_type), None);
    };
    match shellcmd::rewrite_port(command, start, free) {
        Some(rewritten) => (format!("Port {free} is free: {rewritten}"), Some(rewritten)),
        None => (
            format!(
                "Port {free} is free; {} takes its port from its configuration file here, so set it there.",
                start.tool.name
            ),
            None,
        ),
    }
}

/// How the session's commands run, which decides what advice is true.
#[derive(Debug, Clone, Copy, Default)]
pub struct Advice {
    /// The preload is in the session's Bash commands: a server whose port
    /// is busy moves to a free one by itself and prints where.
    pub preload: bool,
    /// `hooks install --rewrite`: a start on a port someone else holds is
    /// changed to a free port before it runs.
    pub rewrite: bool,
}

/// The preload's line that names where a moved server listens.
const MOVED_LINE: &str = "`styxy: port … listening on N instead`";

/// PreToolUse (Bash): what happens to starts whose port is taken, and
/// `ask` for kills aimed at servers this session did not start.
///
/// Claude Code shows this context beside the command's result, after the
/// command ran, so it is worded to be true then. With `rewrite`, a single
/// start on a port someone else holds comes back as `updatedInput` without
/// a permission decision: the user's own permission rules still decide
/// whether it runs, and when it does it runs as rewritten. A command that
/// also asks (a kill) is not rewritten: headless clients take `ask` as a
/// refusal, and nothing would run that the context could describe.
pub fn pre_tool_use(
    tool_input: &Map<String, Value>,
    command: &str,
    plan: &Plan,
    checks: &[StartCheck],
    servers: &[Holder],
    advice: Advice,
) -> Option<Reply> {
    let victims: Vec<&Holder> = plan
        .kill
        .as_ref()
        .map(|k| kill_victims(k, servers))
        .unwrap_or_default()
        .into_iter()
        .filter(|h| h.is_foreign())
        .collect();
    let blocked: Vec<(&ServerStart, u16, &Holder, Option<u16>)> = plan
        .starts
        .iter()
        .zip(checks)
        .filter_map(|(start, check)| {
            let holder = check.holder.as_ref().filter(|h| h.blocks())?;
            Some((start, start.port?, holder, check.free_port))
        })
        .collect();
    let rewritten = match blocked.as_slice() {
        [(start, _, holder, Some(free))] if advice.rewrite && victims.is_empty() && holder.is_foreign() => {
            shellcmd::rewrite_port(command, start, *free).map(|r| (*free, r))
        }
        _ => None,
    };

    let mut context = Vec::new();
    let mut notices = Vec::new();
    for (start, port, holder, free_port) in &blocked {
        let whose = if holder.is_foreign() {
            format!("styxy: port {port} is {}; do not stop it.", holder.phrase())
        } else {
            format!("styxy: port {port} is already {}: a server of yours runs there; reuse it.", holder.phrase())
        };
        let what = match (&rewritten, advice.preload) {
            (Some((free, line)), _) => format!(" styxy changed the command to use port {free}: `{}`.", quoted(line)),
            (None, true) => {
                format!(" This start is moved to a free port by styxy; its line {MOVED_LINE} gives the port.")
            }
            (None, false) => format!(" {}", alternative(command, start, *free_port).0),
        };
        context.push(format!("{whose}{what}"));
        if holder.is_foreign() {
            notices.push(format!("port {port} is taken by {}", holder.what()));
        }
    }

    // Whose the servers are is said once, in the reason (which a headless
    // client hands the model as the refusal); the context names the ports.
    let mut reasons = Vec::new();
    if !victims.is_empty() {
        let ports: Vec<String> = victims.iter().take(MAX_LISTED).map(|h| h.port.to_string()).collect();
        context.push(format!(
            "styxy: do not stop servers this session did not start (port {}); start yours on a free port instead.",
            ports.join(", ")
        ));
        let holders: Vec<String> =
            victims.iter().take(MAX_LISTED).map(|h| format!("port {}: {}", h.port, h.phrase())).collect();
        reasons.push(format!("styxy: this stops servers this session did not start: {}", holders.join("; ")));
    }

    if context.is_empty() {
        return None;
    }
    let ask = !reasons.is_empty();
    let updated_input = rewritten.map(|(_, line)| {
        let mut input = tool_input.clone();
        input.insert("command".into(), Value::String(line));
        input
    });
    Some(Reply {
        system_message: (!ask && !notices.is_empty()).then(|| format!("styxy: {}", notices.join("; "))),
        hook_specific_output: SpecificOutput {
            hook_event_name: EventKind::PreToolUse.wire_name(),
            permission_decision: ask.then_some(Decision::Ask),
            permission_decision_reason: ask.then(|| reasons.join("\n")),
            updated_input,
            additional_context: Some(context.join("\n")),
        },
    })
}

/// A port conflict in a command's output, and the start it concerns.
#[derive(Debug, Clone)]
pub struct Failure {
    pub conflict: Conflict,
    /// The port: named by the output, else the one the command would take.
    pub port: Option<u16>,
    /// The command, when the output is a Bash command's (not a background
    /// shell's read later).
    pub command: Option<String>,
    /// The command's start on that port, when recognised.
    pub start: Option<ServerStart>,
}

impl Failure {
    /// The conflict in `output` of `command`, if any.
    pub fn find(command: Option<&str>, output: &str, cwd: &Path) -> Option<Failure> {
        let conflict = conflict::find_conflict(output)?;
        let starts = command.map(|c| Plan::of(c, cwd).starts).unwrap_or_default();
        let start = match conflict.port {
            Some(port) => starts.iter().find(|s| s.port == Some(port)).cloned(),
            None => starts.first().cloned(),
        };
        let port = conflict.port.or(start.as_ref().and_then(|s| s.port));
        Some(Failure { conflict, port, command: command.map(str::to_string), start })
    }

    /// The service type to find a free port in.
    pub fn service_type(&self, holder: Option<&Holder>) -> String {
        self.start
            .as_ref()
            .map(|s| s.service_type.to_string())
            .or_else(|| holder.and_then(|h| h.reservation.as_ref()).map(|r| r.service_type.clone()))
            .unwrap_or_else(|| "dev".to_string())
    }
}

/// PostToolUse / PostToolUseFailure: a conflict in a command's output (or
/// a background task's, read later) is explained as one, with its holder
/// and a command on a free port; once only: a start PreToolUse recognised
/// on a held port was explained when the command was run.
pub fn post_tool_use(kind: EventKind, failure: &Failure, holder: Option<&Holder>, free_port: Option<u16>) -> Reply {
    if let (Some(port), Some(_), Some(_)) = (failure.port, &failure.start, holder) {
        return Reply::context(
            kind,
            format!(
                "styxy: this failure is the conflict on port {port} styxy noted when the command was run, not a bug in the code."
            ),
        );
    }
    let mut text = format!(
        "styxy: this failure is a port conflict, not a bug in the code (\"{}\").",
        quoted(&failure.conflict.line)
    );
    let Some(port) = failure.port else {
        text.push_str(" The output does not say which port; `styxy list --all` shows who listens where.");
        return Reply::context(kind, text);
    };
    match holder {
        None => text.push_str(&format!(" Port {port} was taken when the command ran and is free now; run it again.")),
        Some(h) if h.is_foreign() => text.push_str(&format!(" Port {port} is {}; do not stop it.", h.phrase())),
        Some(h) => text.push_str(&format!(
            " Port {port} is {}: a server of yours still runs there; reuse it, or stop it first to restart it.",
            h.phrase()
        )),
    }
    if holder.is_some() {
        match (&failure.command, &failure.start, free_port) {
            (Some(command), Some(start), free) => {
                text.push(' ');
                text.push_str(&alternative(command, start, free).0);
            }
            (_, _, Some(free)) => text.push_str(&format!(
                " Port {free} is free; start the server there (e.g. PORT={free} or its port option)."
            )),
            (_, _, None) => {}
        }
    }
    Reply::context(kind, text)
}

/// SessionStart: the ports this project holds and those of other sessions.
pub fn session_start(
    instance_id: &str,
    project: Option<&str>,
    servers: &[Holder],
    preload: bool,
    routes: &[Route],
) -> Option<Reply> {
    let in_project =
        |h: &Holder| project.is_some_and(|root| h.project.as_deref().is_some_and(|p| Path::new(p).starts_with(root)));
    let others: Vec<&Holder> = servers.iter().filter(|h| matches!(h.belongs, Belongs::OtherSession { .. })).collect();
    let ours: Vec<&Holder> = servers
        .iter()
        .filter(|h| !matches!(h.belongs, Belongs::OtherSession { .. }))
        .filter(|h| h.belongs == Belongs::ThisSession || in_project(h))
        .collect();

    let moved = moved_servers_note(routes);
    if ours.is_empty() && others.is_empty() && moved.is_none() {
        return None;
    }
    let mut text = format!("styxy coordinates ports on this machine (this session is {instance_id}).");
    if !ours.is_empty() {
        text.push_str(&format!(" Ports this project already holds: {}.", list(&ours, false)));
    }
    if !others.is_empty() {
        text.push_str(&format!(" Ports held by other sessions: {}; do not stop them.", list(&others, true)));
    }
    text.push_str(" For a server of your own, `styxy allocate -s TYPE` reserves a free port for this session");
    if preload {
        text.push_str(
            ", and a server that finds its port busy moves to a free one by itself (one stderr line says where)",
        );
    }
    text.push('.');
    if let Some(note) = moved {
        text.push(' ');
        text.push_str(&note);
    }
    Some(Reply::context(EventKind::SessionStart, text))
}

/// What the agent should know about its worktree's moved servers, from the
/// scope map of its own user (nobody else's words).
fn moved_servers_note(routes: &[Route]) -> Option<String> {
    let moved: Vec<&Route> = routes.iter().filter(|r| r.canonical != r.actual).take(MAX_LISTED).collect();
    if moved.is_empty() {
        return None;
    }
    let each: Vec<String> =
        moved.iter().map(|r| format!("your {} :{} runs on :{}", r.service_name, r.canonical, r.actual)).collect();
    let canonical: Vec<String> = moved.iter().map(|r| format!(":{}", r.canonical)).collect();
    Some(format!(
        "In this worktree {}; your own clients (curl, tests, dev proxies) reach them at {} as usual. \
         A browser or a config file needs the actual port: `styxy env` prints the map.",
        each.join(", "),
        canonical.join(", ")
    ))
}

/// "3000 (dev web, node, /home/u/other)", at most [`MAX_LISTED`].
fn list(holders: &[&Holder], with_project: bool) -> String {
    let mut items: Vec<String> = holders
        .iter()
        .take(MAX_LISTED)
        .map(|h| {
            let mut parts = Vec::new();
            if let Some(r) = &h.reservation {
                parts.push(format!("{} {}", r.service_type, r.service_name));
            }
            let named = h.reservation.as_ref().map(|r| &r.service_name);
            if let Some(p) = h.process.as_ref().filter(|p| Some(*p) != named) {
                parts.push(p.clone());
            }
            let project = match &h.belongs {
                Belongs::OtherSession { project, .. } => project.as_ref().or(h.project.as_ref()),
                _ => h.project.as_ref(),
            };
            if let Some(p) = project.filter(|_| with_project) {
                parts.push(p.clone());
            }
            if parts.is_empty() { h.port.to_string() } else { format!("{} ({})", h.port, parts.join(", ")) }
        })
        .collect();
    if holders.len() > MAX_LISTED {
        items.push(format!("and {} more", holders.len() - MAX_LISTED));
    }
    items.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn other_session() -> Belongs {
        Belongs::OtherSession { instance_id: "claude-b".into(), project: Some("/home/u/other".into()) }
    }

    fn server(port: u16, belongs: Belongs) -> Holder {
        Holder {
            port,
            belongs,
            reservation: None,
            listening: true,
            pid: Some(4242),
            process: Some("node".into()),
            command: Some("node /home/u/other/node_modules/.bin/next dev".into()),
            project: Some("/home/u/other".into()),
            user: None,
        }
    }

    fn input(command: &str) -> Map<String, Value> {
        json!({"command": command, "description": "Start the dev server", "timeout": 120000})
            .as_object()
            .unwrap()
            .clone()
    }

    fn decide(command: &str, checks: Vec<StartCheck>, servers: &[Holder], rewrite: bool) -> Option<Reply> {
        advise(command, checks, servers, Advice { preload: false, rewrite })
    }

    fn advise(command: &str, checks: Vec<StartCheck>, servers: &[Holder], advice: Advice) -> Option<Reply> {
        let plan = Plan::of(command, Path::new("/"));
        pre_tool_use(&input(command), command, &plan, &checks, servers, advice)
    }

    fn taken(belongs: Belongs, free_port: Option<u16>) -> StartCheck {
        StartCheck { holder: Some(server(3000, belongs)), free_port }
    }

    fn context(reply: &Reply) -> &str {
        reply.hook_specific_output.additional_context.as_deref().unwrap()
    }

    #[test]
    fn a_free_port_or_a_command_that_starts_nothing_gets_no_reply() {
        let free = StartCheck { holder: None, free_port: Some(3001) };
        assert_eq!(decide("next dev", vec![free], &[], false), None);
        assert_eq!(decide("ls -la", vec![], &[], false), None);
    }

    #[test]
    fn a_port_taken_by_another_session_names_the_holder_and_the_command_on_a_free_port() {
        let reply = decide("next dev", vec![taken(other_session(), Some(3001))], &[], false).unwrap();
        let text = context(&reply);
        assert!(text.contains("port 3000 is in use by node (pid 4242, `node /home/u/other/node_modules/.bin/next dev`) of another Claude Code session (claude-b, project /home/u/other)"), "{text}");
        assert!(text.contains("do not stop it"), "{text}");
        assert!(text.contains("Port 3001 is free: next dev -p 3001"), "{text}");
        // Advice only: the normal permission flow decides.
        assert_eq!(reply.hook_specific_output.permission_decision, None);
        assert_eq!(reply.hook_specific_output.updated_input, None);
        assert_eq!(
            reply.system_message.as_deref(),
            Some("styxy: port 3000 is taken by node (pid 4242, `node /home/u/other/node_modules/.bin/next dev`)")
        );
    }

    #[test]
    fn with_rewrite_the_command_runs_on_the_free_port_and_the_users_rules_still_decide() {
        let reply = decide("vite --port 3000", vec![taken(Belongs::Outside, Some(3001))], &[], true).unwrap();
        let out = &reply.hook_specific_output;
        assert_eq!(out.permission_decision, None, "no ask (a refusal headless), no allow (past the user's rules)");
        let updated = out.updated_input.as_ref().unwrap();
        assert_eq!(updated["command"], "vite --port 3001 --strictPort");
        assert_eq!(updated["description"], "Start the dev server", "other fields are kept");
        assert_eq!(updated["timeout"], 120000);
        assert!(context(&reply).contains("styxy changed the command to use port 3001"), "{}", context(&reply));
    }

    #[test]
    fn with_the_preload_a_start_on_a_held_port_is_announced_as_moved() {
        let advice = Advice { preload: true, rewrite: false };
        let reply = advise("next dev", vec![taken(other_session(), Some(3001))], &[], advice).unwrap();
        let text = context(&reply);
        assert!(text.contains("This start is moved to a free port by styxy"), "{text}");
        assert!(text.contains("`styxy: port … listening on N instead` gives the port"), "{text}");
        assert!(!text.contains("3001"), "no port of its own choosing: {text}");
        assert!(text.chars().count() <= 400, "{} characters: {text}", text.chars().count());
    }

    #[test]
    fn this_sessions_own_server_is_named_as_such_and_never_rewritten() {
        let reply = decide("next dev", vec![taken(Belongs::ThisSession, Some(3001))], &[], true).unwrap();
        let text = context(&reply);
        assert!(text.contains("a server of yours runs there; reuse it"), "{text}");
        assert!(text.contains("started by this session"), "{text}");
        assert_eq!(reply.hook_specific_output.updated_input, None);
        assert_eq!(reply.hook_specific_output.permission_decision, None);
    }

    #[test]
    fn a_reservation_of_this_session_without_a_listener_is_where_its_server_goes() {
        let mut mine = server(3000, Belongs::ThisSession);
        mine.listening = false;
        let check = StartCheck { holder: Some(mine), free_port: Some(3001) };
        assert_eq!(decide("next dev", vec![check], &[], false), None);
    }

    #[test]
    fn a_port_another_session_reserved_is_taken_even_with_nobody_listening() {
        let mut reserved = server(3000, other_session());
        reserved.listening = false;
        reserved.command = None;
        reserved.process = Some("bash".into());
        reserved.pid = Some(77);
        reserved.reservation = Some(Reservation { service_type: "dev".into(), service_name: "web".into() });
        let check = StartCheck { holder: Some(reserved), free_port: Some(3001) };
        let reply = decide("next dev", vec![check], &[], false).unwrap();
        let text = context(&reply);
        assert!(
            text.contains(
                "port 3000 is reserved for dev service 'web' by bash (pid 77) of another Claude Code session"
            ),
            "{text}"
        );
    }

    #[test]
    fn no_free_port_and_config_file_ports_are_said_plainly() {
        let reply = decide("next dev", vec![taken(Belongs::Outside, None)], &[], true).unwrap();
        assert!(context(&reply).contains("No free dev port was found"), "{}", context(&reply));
        assert_eq!(reply.hook_specific_output.updated_input, None);
    }

    #[test]
    fn killing_another_sessions_server_asks_and_killing_ones_own_does_not() {
        let servers = [server(3000, other_session()), server(5173, Belongs::ThisSession)];
        for command in
            ["kill $(lsof -ti:3000)", "fuser -k 3000/tcp", "kill 4242", "pkill -f next", "npx kill-port 3000"]
        {
            let reply = decide(command, vec![], &servers[..1], false).unwrap_or_else(|| panic!("{command}: no reply"));
            let out = &reply.hook_specific_output;
            assert_eq!(out.permission_decision, Some(Decision::Ask), "{command}");
            let reason = out.permission_decision_reason.as_deref().unwrap();
            assert!(reason.contains("port 3000"), "{command}: {reason}");
            assert!(reason.contains("claude-b"), "{command}: {reason}");
        }
        assert_eq!(decide("kill $(lsof -ti:5173)", vec![], &servers[1..], false), None);
        assert_eq!(decide("pkill -f webpack", vec![], &servers[..1], false), None);
        assert_eq!(decide("kill %1", vec![], &servers, false), None);
    }

    #[test]
    fn a_kill_and_a_start_asks_and_is_not_rewritten() {
        let servers = [server(3000, other_session())];
        let reply = decide("kill $(lsof -ti:3000); next dev", vec![taken(other_session(), Some(3001))], &servers, true)
            .unwrap();
        let out = &reply.hook_specific_output;
        assert_eq!(out.permission_decision, Some(Decision::Ask));
        let reason = out.permission_decision_reason.as_deref().unwrap();
        assert!(reason.contains("stops servers this session did not start"), "{reason}");
        assert_eq!(out.updated_input, None, "headless, ask refuses: a rewrite would never run");
        assert!(!context(&reply).contains("changed"), "{}", context(&reply));
        assert_eq!(reply.system_message, None);
    }

    #[test]
    fn a_huge_command_is_not_analysed() {
        let command = format!("next dev # {}", "x".repeat(MAX_COMMAND));
        assert!(Plan::of(&command, Path::new("/")).is_empty());
    }

    fn failure(command: &str, output: &str) -> Failure {
        Failure::find(Some(command), output, Path::new("/")).unwrap()
    }

    #[test]
    fn a_conflict_in_the_output_names_the_holder_and_the_fix() {
        let f = failure("next dev", "Error: listen EADDRINUSE: address already in use :::3000");
        assert_eq!(f.port, Some(3000));
        let holder = server(3000, other_session());
        let reply = post_tool_use(EventKind::PostToolUse, &f, Some(&holder), Some(3001));
        let text = context(&reply);
        assert_eq!(
            text,
            "styxy: this failure is the conflict on port 3000 styxy noted when the command was run, not a bug in the code."
        );
        assert_eq!(reply.hook_specific_output.hook_event_name, "PostToolUse");
        // A start the command does not show (a script) was not explained before.
        let f = failure("./dev.sh", "Error: listen EADDRINUSE: address already in use :::3000");
        let reply = post_tool_use(EventKind::PostToolUse, &f, Some(&holder), Some(3001));
        let text = context(&reply);
        assert!(text.starts_with("styxy: this failure is a port conflict, not a bug in the code"), "{text}");
        assert!(text.contains("claude-b, project /home/u/other"), "{text}");
        assert!(text.contains("Port 3001 is free; start the server there"), "{text}");
    }

    #[test]
    fn a_conflict_without_a_port_in_the_output_uses_the_commands_port() {
        let f = failure("python3 manage.py runserver 8000", "Error: That port is already in use.");
        assert_eq!(f.port, Some(8000));
        let reply = post_tool_use(EventKind::PostToolUseFailure, &f, None, Some(8001));
        assert!(context(&reply).contains("Port 8000 was taken when the command ran and is free now"));
        assert_eq!(reply.hook_specific_output.hook_event_name, "PostToolUseFailure");
        let f = failure("./run-server", "OSError: [Errno 98] Address already in use");
        assert_eq!(f.port, None);
        let reply = post_tool_use(EventKind::PostToolUse, &f, None, None);
        assert!(context(&reply).contains("does not say which port"));
        assert!(Failure::find(Some("npm test"), "12 tests passed", Path::new("/")).is_none());
    }

    #[test]
    fn a_background_shells_conflict_names_the_holder_and_a_free_port() {
        let output = "Error: listen EADDRINUSE: address already in use :::3000";
        let f = Failure::find(None, output, Path::new("/")).unwrap();
        let holder = server(3000, other_session());
        let reply = post_tool_use(EventKind::PostToolUse, &f, Some(&holder), Some(3001));
        let text = context(&reply);
        assert!(text.contains("of another Claude Code session (claude-b"), "{text}");
        assert!(text.contains("Port 3001 is free; start the server there"), "{text}");
    }

    #[test]
    fn session_start_lists_this_projects_ports_and_other_sessions_ports() {
        let mut mine = server(5173, Belongs::Outside);
        mine.project = Some("/home/u/app/web".into());
        let mut reserved = server(8000, Belongs::ThisSession);
        reserved.listening = false;
        reserved.reservation = Some(Reservation { service_type: "api".into(), service_name: "backend".into() });
        let mut theirs = server(3000, other_session());
        theirs.reservation = Some(Reservation { service_type: "dev".into(), service_name: "web".into() });
        let unrelated = server(9000, Belongs::Outside);
        let reply =
            session_start("claude-a", Some("/home/u/app"), &[mine, reserved, theirs, unrelated], true, &[]).unwrap();
        let text = context(&reply);
        assert!(text.contains("this session is claude-a"), "{text}");
        assert!(text.contains("Ports this project already holds: 5173 (node), 8000 (api backend, node)."), "{text}");
        assert!(
            text.contains("Ports held by other sessions: 3000 (dev web, node, /home/u/other); do not stop them."),
            "{text}"
        );
        assert!(!text.contains("9000"), "{text}");
        assert!(text.contains("moves to a free one by itself"), "{text}");
        assert_eq!(session_start("claude-a", None, &[], true, &[]), None, "nothing worth saying");
        let reply = session_start("claude-a", None, &[server(3000, other_session())], false, &[]).unwrap();
        assert!(!context(&reply).contains("moves to a free one"), "the preload is off");
    }

    #[test]
    fn long_lists_and_command_lines_are_cut() {
        let many: Vec<Holder> = (0..30).map(|i| server(3000 + i, other_session())).collect();
        let reply = session_start("claude-a", None, &many, false, &[]).unwrap();
        assert!(context(&reply).contains("and 18 more"));
        let mut long = server(3000, Belongs::Outside);
        long.command = Some(format!("node {}", "a".repeat(500)));
        assert!(long.what().chars().count() < 120, "{}", long.what());
    }

    #[test]
    fn session_start_tells_the_agent_its_worktrees_moved_servers() {
        let route = |canonical, actual, name: &str| Route {
            canonical,
            actual,
            service_type: "api".into(),
            service_name: name.into(),
        };
        let routes = [route(3000, 3000, "web"), route(8000, 8001, "backend")];
        let reply = session_start("claude-b", Some("/src/shop-b"), &[], true, &routes).unwrap();
        let text = serde_json::to_string(&reply).unwrap();
        assert!(text.contains("In this worktree your backend :8000 runs on :8001"), "{text}");
        assert!(text.contains("reach them at :8000 as usual"), "{text}");
        assert!(text.contains("`styxy env`"), "{text}");
        assert!(!text.contains(":3000 runs on"), "a server on its own port needs no note: {text}");
    }
}
