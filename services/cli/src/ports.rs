//! Commands about ports: allocate, release, check, list, scan, instances,
//! cleanup.

use crate::Ctx;
use crate::cli::{AllocateArgs, EXIT_OK, Lease};
use crate::hook::owner::SHELLS;
use crate::output::{Failure, print, print_json, print_raw_json};
use crate::table::{Table, age, local, or_dash};
use serde_json::json;
use std::collections::BTreeMap;
use styxy_observe::process;
use styxy_proto::api::{
    AllocateRequest, AllocateResponse, AllocationView, AllocationsResponse, CheckResponse, CleanupRequest,
    CleanupResponse, Holder, InstancesResponse, Listener, ObserveAllResponse, ReleaseResponse, ScanResponse,
};
use styxy_proto::client::Method;
use styxy_proto::model::{LeaseKind, Source};
use styxy_proto::timestamp::Timestamp;

/// Names the session a shell or agent belongs to; allocations default to a
/// session lease with it.
pub const ENV_SESSION: &str = "STYXY_SESSION";
/// The allocator scans at most this many ports per request.
const SCAN_CHUNK: u32 = 1000;

impl From<Lease> for LeaseKind {
    fn from(lease: Lease) -> LeaseKind {
        match lease {
            Lease::Process => LeaseKind::Process,
            Lease::Session => LeaseKind::Session,
            Lease::Manual => LeaseKind::Manual,
        }
    }
}

fn lease_name(lease: LeaseKind) -> &'static str {
    match lease {
        LeaseKind::Process => "process",
        LeaseKind::Session => "session",
        LeaseKind::Manual => "manual",
    }
}

fn source_name(source: Source) -> &'static str {
    match source {
        Source::Api => "api",
        Source::Cli => "cli",
        Source::Run => "run",
        Source::Preload => "preload",
        Source::Hook => "hook",
        Source::Dbus => "dbus",
    }
}

/// `$STYXY_SESSION` when set and non-empty.
pub fn session_from_env() -> Option<String> {
    std::env::var(ENV_SESSION).ok().filter(|s| !s.is_empty())
}

/// Programs that only switch users or wrap a command and wait for it (or
/// exec it): never the process a reservation should follow.
const WRAPPERS: &[&str] = &["runuser", "su", "sudo", "setpriv", "env", "timeout"];

/// A process above the CLI, as the owner walk sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Ancestor {
    pub pid: u32,
    pub uid: Option<u32>,
    pub comm: Option<String>,
    pub cmdline: Vec<String>,
}

impl Ancestor {
    fn read(pid: u32) -> Ancestor {
        Ancestor { pid, uid: process::uid_of(pid), comm: process::comm(pid), cmdline: process::cmdline(pid) }
    }

    /// A wrapper or a shell whose `-c` string ends with the styxy command
    /// (`su -c`, `sh -c 'cd app && styxy allocate ... >file'`): it exits
    /// with the command, not with the session that ran it. A `-c` string that
    /// goes on after styxy (`sh -c 'styxy allocate ...; exec server'`) is a
    /// script that lives on: its shell holds the port.
    fn passes_through(&self) -> bool {
        let comm = self.comm.as_deref().unwrap_or_default();
        let wrapper = WRAPPERS.contains(&comm);
        let args = self.cmdline.get(1..).unwrap_or_default();
        let options = args.iter().take_while(|a| a.starts_with('-')).count();
        let command_flag = args[..options].iter().any(|a| !a.starts_with("--") && a.contains('c'));
        let one_command = args.get(options).is_some_and(|script| ends_with_styxy(script));
        let command_string = SHELLS.contains(&comm) && command_flag && one_command;
        wrapper || command_string
    }

    /// A forked copy of its parent that did not exec: a subshell.
    fn is_copy_of(&self, parent: Option<&Ancestor>) -> bool {
        parent.is_some_and(|p| p.comm == self.comm && p.cmdline == self.cmdline)
    }
}

/// Whether a `-c` script ends with its styxy command: nothing runs after the
/// last `styxy` in it (`cd app && styxy allocate ...`), so its shell exits
/// with the CLI. A script with no `styxy` in it (an alias, a variable) counts
/// when it is one command.
fn ends_with_styxy(script: &str) -> bool {
    let rest = script.rfind("styxy").map_or(script, |at| &script[at..]);
    !rest.contains([';', '&', '|', '\n'])
}

/// The nearest of `chain` (the CLI's ancestors, nearest first) that is
/// `uid`'s and not a pass-through: the process a reservation follows.
/// `None` when `uid` has none above the CLI (runuser, su -c, sudo -u run by
/// root, a service's `ExecStartPre=`), or when the CLI runs in a subshell
/// (`PORT=$(styxy allocate ... | jq -r .port)`): the port is for a server
/// the shell starts next, so it is a hand-off that server adopts.
pub fn nearest_own(chain: &[Ancestor], uid: u32) -> Option<u32> {
    for (i, a) in chain.iter().enumerate() {
        if a.is_copy_of(chain.get(i + 1)) {
            return None;
        }
        if a.uid == Some(uid) && !a.passes_through() {
            return Some(a.pid);
        }
    }
    None
}

/// The CLI's default owner: [`nearest_own`] of its ancestors as /proc shows
/// them; none when its output goes straight back to its parent shell
/// (`PORT=$(styxy allocate ...)`, which a shell runs without a subshell).
/// A program that reads the output (a test harness, a script's
/// `subprocess`) is not a shell: it holds the port.
fn default_owner() -> Option<u32> {
    let chain: Vec<Ancestor> = process::lineage(std::os::unix::process::parent_id()).map(Ancestor::read).collect();
    let parent = chain.first()?;
    let shell = parent.comm.as_deref().is_some_and(|comm| SHELLS.contains(&comm));
    if shell && stdout_read_by(parent.pid) {
        return None;
    }
    nearest_own(&chain, styxy_proto::paths::uid())
}

/// Whether this process's stdout is a pipe that `pid` holds too: a
/// command substitution, whose shell reads the output.
fn stdout_read_by(pid: u32) -> bool {
    let Ok(ours) = std::fs::read_link("/proc/self/fd/1") else {
        return false;
    };
    if !ours.as_os_str().as_encoded_bytes().starts_with(b"pipe:") {
        return false;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == ours))
}

/// The request `allocate` sends: by default owned by `owner`, the nearest
/// process of the caller's own above styxy (process lease), or by
/// `$STYXY_SESSION` (session lease). Without such a process a process lease
/// is a hand-off: held for the first of the caller's processes that
/// listens on the port.
pub fn allocate_request(
    args: &AllocateArgs,
    session: Option<String>,
    owner: Option<u32>,
) -> Result<AllocateRequest, Failure> {
    let lease = args.lease.map(LeaseKind::from).unwrap_or(if session.is_some() {
        LeaseKind::Session
    } else {
        LeaseKind::Process
    });
    let instance_id = args.instance.clone().or(session);
    if lease == LeaseKind::Session && instance_id.is_none() {
        return Err(Failure::Usage("a session lease needs --instance ID or $STYXY_SESSION".into()));
    }
    let project = match &args.project {
        Some(p) => std::path::absolute(p),
        None => std::env::current_dir(),
    }
    .map_err(|e| Failure::local("invalid_field", format!("cannot resolve the project directory: {e}")))?;
    Ok(AllocateRequest {
        service_type: Some(args.service_type.clone()),
        service_name: args.name.clone(),
        preferred_port: args.port.map(serde_json::Value::from),
        instance_id,
        project_path: Some(project.to_string_lossy().into_owned()),
        dry_run: args.dry_run,
        // The process lease follows it; other leases only record who asked.
        pid: args.pid.or(owner),
        lease: Some(lease),
        source: Some(Source::Cli),
        handoff: lease == LeaseKind::Process && args.pid.is_none() && owner.is_none(),
        scope: styxy_proto::scope::current().map(|s| s.to_string_lossy().into_owned()),
        listening: false,
        replaces: None,
    })
}

pub fn allocate(ctx: &Ctx, args: &AllocateArgs) -> Result<u8, Failure> {
    let request = allocate_request(args, session_from_env(), default_owner())?;
    let reply = ctx.client()?.call_json(Method::Post, "/allocate", &request)?;
    if ctx.json {
        print_raw_json(&reply.body);
        return Ok(EXIT_OK);
    }
    let r: AllocateResponse = reply.decode()?;
    print(&describe_allocation(&r, request.lease.unwrap_or_default()));
    Ok(EXIT_OK)
}

fn describe_allocation(r: &AllocateResponse, lease: LeaseKind) -> String {
    let mut out = String::new();
    if r.auto_allocated {
        out.push_str(&format!("Service type '{}' was created automatically", r.service_type));
        if let Some([lo, hi]) = r.allocated_range {
            out.push_str(&format!(": range {lo}-{hi}"));
        }
        let mut details = Vec::new();
        if let Some(chunk) = r.chunk_size {
            details.push(format!("chunk {chunk} ports"));
        }
        if let Some(p) = &r.placement {
            details.push(format!("placement {p}"));
        }
        if !details.is_empty() {
            out.push_str(&format!(" ({})", details.join(", ")));
        }
        out.push('\n');
    }
    if let Some(requested) = r.requested_port {
        match &r.requested_port_holder {
            Some(h) => out.push_str(&format!("Port {requested} is held by {}\n", describe_holder(h))),
            None => out.push_str(&format!("Port {requested} is busy\n")),
        }
    }
    let service = format!("{} service '{}'", r.service_type, r.service_name);
    if r.dry_run {
        out.push_str(&format!("Port {} is free for {service} (dry run: nothing reserved)\n", r.port));
        return out;
    }
    if r.existing {
        out.push_str(&format!("Port {}: {service} is single-instance; sharing the existing one\n", r.port));
    } else {
        out.push_str(&format!("Port {} allocated for {service} (lease: {}", r.port, lease_name(lease)));
        if let Some(secs) = r.handoff_grace_secs {
            out.push_str(&format!(
                "; no process of yours above this command: held for {secs} s for the first of your processes that listens on it"
            ));
        }
        out.push_str(")\n");
    }
    out.push_str(&format!("Lock ID: {}\n", r.lock_id));
    out
}

/// "dev service 'web' of alice (pid 4242, node)", with what is known.
fn describe_holder(h: &Holder) -> String {
    let mut text = match (&h.service_type, &h.service_name) {
        (Some(t), Some(n)) => format!("{t} service '{n}' of "),
        (Some(t), None) => format!("{t} service of "),
        _ => String::new(),
    };
    text.push_str(&h.user.clone().unwrap_or_else(|| format!("uid {}", h.uid)));
    let process: Vec<String> = [h.pid.map(|p| format!("pid {p}")), h.process.clone()].into_iter().flatten().collect();
    if !process.is_empty() {
        text.push_str(&format!(" ({})", process.join(", ")));
    }
    text
}

pub fn release(ctx: &Ctx, lock_id: &str) -> Result<u8, Failure> {
    if lock_id.is_empty() || lock_id.contains(['/', '?', '#', '%', ' ']) {
        return Err(Failure::local("invalid_field", format!("not a lock id: {lock_id:?}")));
    }
    let reply = ctx.client()?.call(Method::Delete, &format!("/allocate/{lock_id}"))?;
    if ctx.json {
        print_raw_json(&reply.body);
        return Ok(EXIT_OK);
    }
    let r: ReleaseResponse = reply.decode()?;
    print(&format!("Port {} released\n", r.port));
    Ok(EXIT_OK)
}

pub fn check(ctx: &Ctx, port: u16) -> Result<u8, Failure> {
    let reply = ctx.client()?.call(Method::Get, &format!("/check/{port}"))?;
    if ctx.json {
        print_raw_json(&reply.body);
        return Ok(EXIT_OK);
    }
    let r: CheckResponse = reply.decode()?;
    let mut out = if r.available { format!("Port {port} is available\n") } else { format!("Port {port} is in use\n") };
    if let Some(a) = &r.allocated_to {
        out.push_str(&format!("reserved: {}\n", describe_reservation(a)));
    }
    for l in r.system_usage.iter().flatten() {
        out.push_str(&format!("listening: {}\n", describe_listener(l)));
    }
    print(&out);
    Ok(EXIT_OK)
}

fn owner_name(a: &AllocationView) -> String {
    a.user.clone().unwrap_or_else(|| a.allocation.owner.uid.to_string())
}

fn describe_reservation(view: &AllocationView) -> String {
    let a = &view.allocation;
    let mut parts =
        vec![format!("{} service '{}'", a.service_type, a.service_name), format!("user {}", owner_name(view))];
    if let Some(pid) = a.owner.pid {
        parts.push(match &view.process {
            Some(p) => format!("pid {pid} ({p})"),
            None => format!("pid {pid}"),
        });
    }
    parts.push(format!("lease {}", lease_name(a.lease)));
    parts.push(format!("lock {}", a.lock_id));
    parts.join(", ")
}

fn describe_listener(l: &Listener) -> String {
    let mut parts = vec![format!("{} {}", l.protocol, l.address)];
    if let Some(pid) = l.pid {
        parts.push(match &l.process {
            Some(p) => format!("pid {pid} ({p})"),
            None => format!("pid {pid}"),
        });
    }
    parts.push(format!("user {}", l.user.clone().unwrap_or_else(|| l.uid.to_string())));
    parts.join(", ")
}

/// `8001`, or `8000 → 8001` when the holder asked for another port.
fn port_cell(a: &styxy_proto::model::Allocation<Timestamp>) -> String {
    match a.requested_port {
        Some(asked) if asked != a.port => format!("{asked} → {}", a.port),
        _ => a.port.to_string(),
    }
}

pub fn list(ctx: &Ctx, verbose: bool, all: bool) -> Result<u8, Failure> {
    let client = ctx.client()?;
    let reply = client.call(Method::Get, "/allocations")?;
    let observed = if all { Some(client.call(Method::Get, "/observe/all")?) } else { None };
    if ctx.json {
        match observed {
            None => print_raw_json(&reply.body),
            Some(observed) => {
                let allocations: serde_json::Value = reply.decode()?;
                let observed: serde_json::Value = observed.decode()?;
                print_json(&json!({
                    "allocations": allocations["allocations"],
                    "observations": observed["observations"],
                }));
            }
        }
        return Ok(EXIT_OK);
    }
    let r: AllocationsResponse = reply.decode()?;
    let listeners = match observed {
        Some(o) => o.decode::<ObserveAllResponse>()?.observations,
        None => Vec::new(),
    };
    print(&list_table(&r.allocations, &listeners, verbose, all, Timestamp::now()));
    Ok(EXIT_OK)
}

/// The `list` table; with `all`, external listeners are merged in by port.
/// Rows are grouped by scope (an allocation's scope, a listener's project),
/// each group under a `scope DIR` line when there are several; a moved
/// server's port reads `CANONICAL → ACTUAL`.
fn list_table(
    allocations: &[AllocationView],
    listeners: &[Listener],
    verbose: bool,
    all: bool,
    now: Timestamp,
) -> String {
    let mut header = vec!["PORT"];
    if all {
        header.push("HELD_BY");
    }
    header.extend(["TYPE", "NAME", "OWNER", "PID", "LEASE", "LOCK_ID"]);
    if verbose {
        header.extend(["SOURCE", "INSTANCE", "PROCESS", "AGE", "ALLOCATED", "PROJECT"]);
    }
    let extra_dashes = if verbose { 6 } else { 0 };

    // Rows keyed by scope, then port, so allocations and listeners interleave in order.
    let mut rows: BTreeMap<(String, u16, u8, u32), Vec<String>> = BTreeMap::new();
    for view in allocations {
        let a = &view.allocation;
        let mut row = vec![port_cell(a)];
        if all {
            row.push("styxy".into());
        }
        row.extend([
            a.service_type.clone(),
            a.service_name.clone(),
            owner_name(view),
            or_dash(a.owner.pid),
            lease_name(a.lease).into(),
            a.lock_id.clone(),
        ]);
        if verbose {
            row.extend([
                source_name(a.source).into(),
                or_dash(Some(&a.instance_id)),
                or_dash(view.process.as_ref()),
                age(a.allocated_at, now),
                local(a.allocated_at),
                or_dash(a.project_path.as_ref()),
            ]);
        }
        rows.insert((a.scope.clone().unwrap_or_default(), a.port, 0, 0), row);
    }
    let reserved: std::collections::HashSet<u16> = allocations.iter().map(|v| v.allocation.port).collect();
    for l in listeners.iter().filter(|l| !reserved.contains(&l.port)) {
        // IPv4 and IPv6 sockets of one process on one port make one row.
        let key = (l.project.clone().unwrap_or_default(), l.port, 1, l.pid.unwrap_or(u32::MAX));
        if rows.contains_key(&key) {
            continue;
        }
        let mut row = vec![
            l.port.to_string(),
            "external".into(),
            or_dash(l.service_type.as_ref()),
            or_dash(l.process.as_ref()),
            l.user.clone().unwrap_or_else(|| l.uid.to_string()),
            or_dash(l.pid),
            "-".into(),
            "-".into(),
        ];
        row.extend(std::iter::repeat_n("-".to_string(), extra_dashes));
        rows.insert(key, row);
    }
    if rows.is_empty() {
        return if all { "No reserved or listening ports\n".into() } else { "No active port allocations\n".into() };
    }
    let mut groups: BTreeMap<String, Vec<Vec<String>>> = BTreeMap::new();
    for ((scope, ..), row) in rows {
        groups.entry(scope).or_default().push(row);
    }
    // One group needs no heading.
    let scoped = groups.len() > 1;
    let mut out = String::new();
    for (scope, rows) in groups {
        if scoped {
            let title = if scope.is_empty() { "outside any scope".to_string() } else { format!("scope {scope}") };
            out.push_str(&format!("{}{title}\n", if out.is_empty() { "" } else { "\n" }));
        }
        let mut table = Table::new(header.clone());
        for row in rows {
            table.push(row);
        }
        out.push_str(&table.render());
    }
    out
}

pub fn scan(ctx: &Ctx, start: u16, end: u16) -> Result<u8, Failure> {
    if start > end {
        return Err(Failure::Usage(format!("--start {start} is above --end {end}")));
    }
    let client = ctx.client()?;
    let mut entries = Vec::new();
    let mut from = u32::from(start);
    while from <= u32::from(end) {
        let to = (from + SCAN_CHUNK - 1).min(u32::from(end));
        let r: ScanResponse = client.get(&format!("/scan?start={from}&end={to}"))?;
        entries.extend(r.ports_in_use);
        from = to + 1;
    }
    let range = format!("{start}-{end}");
    if ctx.json {
        print_json(&json!({"scan_range": range, "ports_in_use": entries}));
        return Ok(EXIT_OK);
    }
    if entries.is_empty() {
        print(&format!("No ports in use in {range}\n"));
        return Ok(EXIT_OK);
    }
    let mut table = Table::new(vec!["PORT", "HELD_BY", "TYPE", "NAME", "USER", "PID", "PROCESS"]);
    let mut reserved = 0;
    for e in &entries {
        let listener = e.system_usage.iter().flatten().next();
        let row = match (&e.allocated_to, listener) {
            (Some(view), _) => {
                reserved += 1;
                let a = &view.allocation;
                vec![
                    port_cell(a),
                    "styxy".into(),
                    a.service_type.clone(),
                    a.service_name.clone(),
                    owner_name(view),
                    or_dash(a.owner.pid),
                    or_dash(view.process.as_ref()),
                ]
            }
            (None, Some(l)) => vec![
                e.port.to_string(),
                "external".into(),
                or_dash(l.service_type.as_ref()),
                "-".into(),
                l.user.clone().unwrap_or_else(|| l.uid.to_string()),
                or_dash(l.pid),
                or_dash(l.process.as_ref()),
            ],
            (None, None) => {
                let mut row = vec![e.port.to_string(), "unknown".into()];
                row.extend(std::iter::repeat_n("-".to_string(), 5));
                row
            }
        };
        table.push(row);
    }
    let mut out = table.render();
    out.push_str(&format!(
        "\n{} ports in use in {range}: {reserved} reserved by styxy, {} other\n",
        entries.len(),
        entries.len() - reserved
    ));
    print(&out);
    Ok(EXIT_OK)
}

pub fn instances(ctx: &Ctx) -> Result<u8, Failure> {
    let reply = ctx.client()?.call(Method::Get, "/instance/list")?;
    if ctx.json {
        print_raw_json(&reply.body);
        return Ok(EXIT_OK);
    }
    let r: InstancesResponse = reply.decode()?;
    if r.instances.is_empty() {
        print("No active instances registered\n");
        return Ok(EXIT_OK);
    }
    let now = Timestamp::now();
    let mut table = Table::new(vec!["INSTANCE", "UID", "LAST_SEEN", "TTL", "REGISTERED", "DIRECTORY"]);
    for i in r.instances.iter().map(|v| &v.instance) {
        table.push(vec![
            i.instance_id.clone(),
            i.uid.to_string(),
            format!("{} ago", age(i.last_heartbeat, now)),
            crate::table::span(i.ttl_secs),
            local(i.registered_at),
            or_dash(i.working_directory.as_ref().or(i.project_root.as_ref())),
        ]);
    }
    print(&table.render());
    Ok(EXIT_OK)
}

pub fn cleanup(ctx: &Ctx, force: bool) -> Result<u8, Failure> {
    let reply = ctx.client()?.call_json(Method::Post, "/cleanup", &CleanupRequest { force })?;
    if ctx.json {
        print_raw_json(&reply.body);
        return Ok(EXIT_OK);
    }
    let r: CleanupResponse = reply.decode()?;
    print(&format!("{}\n", r.message));
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use styxy_proto::model::{Allocation, Owner};

    fn args(lease: Option<Lease>, instance: Option<&str>, pid: Option<u32>) -> AllocateArgs {
        AllocateArgs {
            service_type: "dev".into(),
            port: Some(3000),
            name: Some("web".into()),
            project: Some("/srv/app".into()),
            pid,
            lease,
            instance: instance.map(String::from),
            dry_run: false,
        }
    }

    #[test]
    fn allocation_defaults_to_the_parent_process() {
        let r = allocate_request(&args(None, None, None), None, Some(4242)).unwrap();
        assert_eq!(r.pid, Some(4242));
        assert_eq!(r.lease, Some(LeaseKind::Process));
        assert_eq!(r.instance_id, None);
        assert_eq!(r.preferred_port, Some(json!(3000)));
        assert_eq!(r.project_path.as_deref(), Some("/srv/app"));
        assert_eq!(r.source, Some(Source::Cli));
    }

    #[test]
    fn without_an_own_process_above_a_process_lease_is_a_handoff() {
        let r = allocate_request(&args(None, None, None), None, None).unwrap();
        assert_eq!((r.pid, r.lease, r.handoff), (None, Some(LeaseKind::Process), true));
        let named = allocate_request(&args(None, None, Some(77)), None, None).unwrap();
        assert_eq!((named.pid, named.handoff), (Some(77), false), "--pid names the owner");
        let manual = allocate_request(&args(Some(Lease::Manual), None, None), None, None).unwrap();
        assert!(!manual.handoff, "a manual lease needs no holder");
        assert!(!allocate_request(&args(None, None, None), None, Some(4242)).unwrap().handoff);
    }

    fn ancestor(pid: u32, uid: u32, comm: &str, cmdline: &[&str]) -> Ancestor {
        Ancestor {
            pid,
            uid: Some(uid),
            comm: Some(comm.into()),
            cmdline: cmdline.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn the_owner_is_the_nearest_own_ancestor_past_wrappers_and_none_from_a_subshell() {
        let login = ancestor(10, 1000, "bash", &["-bash"]);
        // PORT=$(timeout 5 styxy allocate ...) in alice's login shell: the
        // port is for the server the shell starts next, a hand-off.
        let subshell = ancestor(12, 1000, "bash", &["-bash"]);
        let timeout = ancestor(13, 1000, "timeout", &["timeout", "5", "styxy"]);
        assert_eq!(nearest_own(&[timeout.clone(), subshell, login.clone()], 1000), None);
        assert_eq!(nearest_own(&[timeout, login.clone()], 1000), Some(10), "timeout is looked through");
        // sudo -u alice styxy ... from root's shell, inside alice's session.
        let sudo = ancestor(20, 0, "sudo", &["sudo", "-u", "alice", "styxy"]);
        let root_shell = ancestor(19, 0, "bash", &["bash"]);
        assert_eq!(nearest_own(&[sudo.clone(), root_shell.clone(), login.clone()], 1000), Some(10));
        // The same from a root login: nothing of alice's above.
        assert_eq!(nearest_own(&[sudo, root_shell], 1000), None);
        // su alice -c "styxy allocate ..." from root, through alice's sh -c.
        let one_shot = ancestor(40, 1000, "sh", &["sh", "-c", "styxy allocate -s dev"]);
        let su = ancestor(39, 0, "su", &["su", "alice", "-c", "styxy allocate -s dev"]);
        assert_eq!(nearest_own(&[one_shot, su.clone()], 1000), None);
        // A -c script that ends with styxy exits with it.
        let last = ancestor(42, 1000, "bash", &["bash", "-c", "cd /srv/app && styxy allocate -s dev"]);
        assert_eq!(nearest_own(&[last, su.clone()], 1000), None);
        // A -c script of alice's that goes on after styxy holds it.
        let script = ancestor(41, 1000, "sh", &["sh", "-c", "styxy allocate -s dev; exec sleep infinity"]);
        assert_eq!(nearest_own(&[script, su], 1000), Some(41));
        // A script of alice's holds it while it runs.
        let script = ancestor(30, 1000, "sh", &["sh", "./start.sh"]);
        assert_eq!(nearest_own(&[script, login], 1000), Some(30));
        assert_eq!(nearest_own(&[], 1000), None, "run by init");
    }

    #[test]
    fn a_session_in_the_environment_makes_a_session_lease() {
        let r = allocate_request(&args(None, None, None), Some("agent-7".into()), Some(4242)).unwrap();
        assert_eq!(r.lease, Some(LeaseKind::Session));
        assert_eq!(r.instance_id.as_deref(), Some("agent-7"));
        assert_eq!(r.pid, Some(4242));
    }

    #[test]
    fn explicit_flags_win_over_defaults() {
        let r = allocate_request(&args(Some(Lease::Manual), Some("x"), Some(99)), Some("agent-7".into()), Some(4242))
            .unwrap();
        assert_eq!(r.lease, Some(LeaseKind::Manual));
        assert_eq!(r.instance_id.as_deref(), Some("x"));
        assert_eq!(r.pid, Some(99));
    }

    #[test]
    fn a_session_lease_without_a_session_is_refused() {
        assert!(allocate_request(&args(Some(Lease::Session), None, None), None, Some(1)).is_err());
    }

    fn view(port: u16, requested: Option<u16>) -> AllocationView {
        AllocationView {
            allocation: Allocation {
                lock_id: format!("lock-{port}"),
                requested_port: requested,
                instance_id: "cli".into(),
                source: Source::Run,
                allocated_at: 0,
                ..Allocation::new(
                    port,
                    "dev",
                    "web",
                    Owner { uid: 1000, pid: Some(77), start_time: Some(1) },
                    LeaseKind::Process,
                )
            }
            .into(),
            user: Some("alice".into()),
            process: Some("node".into()),
        }
    }

    fn listener(port: u16, pid: u32, protocol: &str) -> Listener {
        Listener {
            port,
            protocol: protocol.into(),
            address: "0.0.0.0".into(),
            uid: 0,
            inode: 1,
            user: Some("root".into()),
            pid: Some(pid),
            process: Some("nginx".into()),
            command: None,
            service_type: Some("proxy".into()),
            project: None,
        }
    }

    #[test]
    fn list_groups_by_scope_with_canonical_and_actual_ports() {
        let in_scope = |port, requested, scope: &str| {
            let mut v = view(port, requested);
            v.allocation.scope = Some(scope.into());
            v
        };
        let mut outside = listener(80, 5, "tcp");
        outside.project = None;
        let text = list_table(
            &[in_scope(8001, Some(8000), "/src/shop-b"), in_scope(8000, None, "/src/shop"), view(9000, None)],
            &[outside],
            false,
            true,
            Timestamp(0),
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "outside any scope", "{text}");
        assert!(lines[2].starts_with("80 ") && lines[3].starts_with("9000 "), "{text}");
        assert_eq!(lines[5], "scope /src/shop", "{text}");
        assert!(lines[7].starts_with("8000 "), "{text}");
        assert_eq!(lines[9], "scope /src/shop-b", "{text}");
        assert!(lines[11].starts_with("8000 → 8001"), "{text}");
    }

    #[test]
    fn list_shows_moved_ports_and_merges_external_listeners() {
        let text = list_table(
            &[view(8001, Some(8000))],
            &[listener(8001, 77, "tcp"), listener(80, 5, "tcp"), listener(80, 5, "tcp6")],
            false,
            true,
            Timestamp(0),
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("PORT"));
        assert!(lines[1].starts_with("80 ") && lines[1].contains("external") && lines[1].contains("nginx"), "{text}");
        assert!(
            lines[2].starts_with("8000 → 8001") && lines[2].contains("styxy") && lines[2].contains("lock-8001"),
            "{text}"
        );
    }

    #[test]
    fn empty_list_says_so() {
        assert_eq!(list_table(&[], &[], false, false, Timestamp(0)), "No active port allocations\n");
    }
}
