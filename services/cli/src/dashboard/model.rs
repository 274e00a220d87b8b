//! The dashboard's view: what `styxy ui` and `styxy top` show, built purely
//! from the allocator's answers (`GET /allocations`, `/observe/all`,
//! `/config`, `/instance/list`) and what the viewer may do with each row.
//!
//! The answers are read into the loose types below rather than the API's
//! own, so a field the allocator adds (a reservation's `scope`) or a
//! timestamp written another way (RFC 3339 instead of epoch milliseconds)
//! changes one function here, not the whole view.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use styxy_proto::api::Listener;
use styxy_proto::model::Millis;
use styxy_proto::timestamp::Timestamp;

/// How long a move or release stays in the recent list.
pub const RECENT_KEEP_MS: Millis = 5 * 60 * 1000;
/// At most this many recent events are kept.
pub const RECENT_MAX: usize = 50;
/// The group of reservations without a project directory.
pub const NO_PROJECT: &str = "(no project)";

/// A reservation as `GET /allocations` lists it, with only what the view uses.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Reservation {
    pub lock_id: String,
    pub port: u16,
    #[serde(default)]
    pub requested_port: Option<u16>,
    pub service_type: String,
    #[serde(default)]
    pub service_name: String,
    #[serde(default)]
    pub instance_id: Option<String>,
    #[serde(default)]
    pub project_path: Option<String>,
    /// The worktree (or `$STYXY_SCOPE`) the reservation belongs to, from
    /// allocators that record it.
    #[serde(default)]
    pub scope: Option<String>,
    pub owner: ReservationOwner,
    #[serde(default)]
    pub lease: Option<String>,
    #[serde(default)]
    pub allocated_at: Option<Value>,
    #[serde(default)]
    pub health_failures: u32,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub process: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ReservationOwner {
    pub uid: u32,
    #[serde(default)]
    pub pid: Option<u32>,
    #[serde(default)]
    pub start_time: Option<u64>,
}

/// A registered session as `GET /instance/list` lists it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Session {
    pub instance_id: String,
    #[serde(default)]
    pub metadata: Value,
}

/// A service type's range as `GET /config` lists it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TypeRange {
    #[serde(alias = "port_range")]
    pub range: [u16; 2],
}

/// Everything the view is built from, as the allocator answered it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub reservations: Vec<Reservation>,
    pub listeners: Vec<Listener>,
    pub types: BTreeMap<String, TypeRange>,
    pub sessions: Vec<Session>,
}

/// Milliseconds since the epoch from a timestamp written either way the
/// allocator has written them: a number of epoch milliseconds or an RFC 3339
/// string (`2026-12-03T18:06:55.123Z`, `…+01:00`). None for anything else.
pub fn timestamp_millis(value: &Value) -> Option<Millis> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => Timestamp::parse(s).map(Timestamp::millis),
        _ => None,
    }
}

/// The port a reservation's server asked for, when it differs from the one
/// it has (a server the preload moved): the canonical → actual mapping.
pub fn canonical_port(reservation: &Reservation) -> Option<u16> {
    reservation.requested_port.filter(|&asked| asked != reservation.port)
}

/// Where a reservation is shown: its project, then its worktree or scope
/// (the project itself when the allocator recorded no scope).
pub fn placement(reservation: &Reservation) -> (String, String) {
    let project = reservation.project_path.clone().unwrap_or_else(|| NO_PROJECT.to_string());
    let scope = reservation.scope.clone().unwrap_or_else(|| project.clone());
    (project, scope)
}

/// What a reserved port is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PortState {
    /// Held, nothing listens on it yet.
    Reserved,
    /// Something listens on it.
    Listening,
    /// Its server asked for another port and listens on this one instead.
    Moved,
    /// The allocator's health checks failed for it: freed soon unless it recovers.
    Stale,
    /// The process it names has exited (a session or manual lease keeps it).
    Exited,
}

impl PortState {
    pub fn as_str(self) -> &'static str {
        match self {
            PortState::Reserved => "reserved",
            PortState::Listening => "listening",
            PortState::Moved => "moved",
            PortState::Stale => "stale",
            PortState::Exited => "exited",
        }
    }
}

/// One reserved port as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceRow {
    pub lock_id: String,
    pub name: String,
    pub service_type: String,
    /// The port its server asked for, when it got another one.
    pub canonical_port: Option<u16>,
    pub port: u16,
    pub url: String,
    pub state: PortState,
    pub uid: u32,
    pub user: String,
    /// The listening process (else the owner), when the API shows it.
    pub pid: Option<u32>,
    pub command: Option<String>,
    /// The agent session holding it: its instance id and agent name.
    pub session: Option<String>,
    /// When it was reserved (epoch milliseconds): its uptime, counted by
    /// whoever draws it, so the view itself stays the same while nothing changes.
    pub since: Option<Millis>,
    /// The viewer's own: release and copy are offered.
    pub mine: bool,
    /// The viewer's own with a listening process of the viewer's to stop.
    pub can_stop: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScopeGroup {
    pub scope: String,
    pub services: Vec<ServiceRow>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProjectGroup {
    pub project: String,
    pub scopes: Vec<ScopeGroup>,
}

/// A port something listens on that Styxy did not hand out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OtherListener {
    pub port: u16,
    /// Every address it listens on (`127.0.0.1`, `::`).
    pub addresses: Vec<String>,
    pub uid: u32,
    pub user: String,
    pub pid: Option<u32>,
    pub command: Option<String>,
    pub url: String,
}

/// A service type's range and how much of it is in use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RangeStrip {
    pub service_type: String,
    pub first: u16,
    pub last: u16,
    /// Ports of the range reserved or listened on.
    pub used: u32,
    pub size: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Moved,
    Released,
}

/// A move or a release seen while someone watched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    pub at: Millis,
    pub kind: EventKind,
    pub port: u16,
    pub canonical_port: Option<u16>,
    pub name: String,
    pub user: String,
}

/// The whole view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct View {
    pub viewer_uid: u32,
    pub projects: Vec<ProjectGroup>,
    pub others: Vec<OtherListener>,
    pub ranges: Vec<RangeStrip>,
    pub recent: Vec<Event>,
}

impl View {
    /// Every reserved port, in display order.
    pub fn services(&self) -> impl Iterator<Item = &ServiceRow> {
        self.projects.iter().flat_map(|p| &p.scopes).flat_map(|s| &s.services)
    }

    pub fn service(&self, lock_id: &str) -> Option<&ServiceRow> {
        self.services().find(|row| row.lock_id == lock_id)
    }
}

/// Whether a process still runs: `Some(false)` when the pid (with its start
/// time) is gone, None when it cannot be told.
pub trait Liveness {
    fn runs(&self, pid: u32, start_time: Option<u64>) -> Option<bool>;
}

fn user_name(user: Option<&String>, uid: u32) -> String {
    user.cloned().unwrap_or_else(|| uid.to_string())
}

/// A browser URL for a port: the listener's own address when it listens on
/// one specific non-loopback address, else `localhost`.
fn url_for(port: u16, addresses: &[&str]) -> String {
    let wildcard_or_loopback = |a: &&str| matches!(*a, "0.0.0.0" | "::" | "::1") || a.starts_with("127.");
    match addresses {
        [only] if !wildcard_or_loopback(only) && only.contains(':') => format!("http://[{only}]:{port}/"),
        [only] if !wildcard_or_loopback(only) => format!("http://{only}:{port}/"),
        _ => format!("http://localhost:{port}/"),
    }
}

fn session_label(reservation: &Reservation, sessions: &[Session]) -> Option<String> {
    let id = reservation.instance_id.as_deref().filter(|id| !id.is_empty() && *id != "default")?;
    let agent = sessions
        .iter()
        .find(|s| s.instance_id == id)
        .and_then(|s| s.metadata.get("agent").and_then(Value::as_str).map(str::to_string));
    Some(match agent {
        Some(agent) => format!("{id} ({agent})"),
        None => id.to_string(),
    })
}

/// The view of `snapshot` for `viewer_uid`.
pub fn build(snapshot: &Snapshot, viewer_uid: u32, alive: &dyn Liveness, recent: &[Event]) -> View {
    let mut by_port: BTreeMap<u16, Vec<&Listener>> = BTreeMap::new();
    for listener in &snapshot.listeners {
        by_port.entry(listener.port).or_default().push(listener);
    }

    let mut projects: BTreeMap<String, BTreeMap<String, Vec<ServiceRow>>> = BTreeMap::new();
    for r in &snapshot.reservations {
        let listeners = by_port.get(&r.port).map(Vec::as_slice).unwrap_or_default();
        // The viewer's own listener names the process to stop; another
        // user's pid is only what the API showed.
        let listener = listeners.iter().find(|l| l.uid == r.owner.uid && l.pid.is_some()).or(listeners.first());
        let exited = r.owner.pid.is_some_and(|pid| alive.runs(pid, r.owner.start_time) == Some(false));
        let state = if exited {
            PortState::Exited
        } else if r.health_failures > 0 {
            PortState::Stale
        } else if listeners.is_empty() {
            PortState::Reserved
        } else if canonical_port(r).is_some() {
            PortState::Moved
        } else {
            PortState::Listening
        };
        let server = listener.filter(|l| l.pid.is_some());
        let (pid, command) = match server {
            Some(l) => (l.pid, l.command.clone().or_else(|| l.process.clone())),
            None => (r.owner.pid.filter(|_| !exited), r.process.clone()),
        };
        let mine = r.owner.uid == viewer_uid;
        // Only a listening server of the viewer's is stopped, never the
        // owner of a port nothing listens on (often the shell that reserved it).
        let can_stop = mine && server.is_some_and(|l| l.uid == viewer_uid);
        let addresses: Vec<&str> = listeners.iter().map(|l| l.address.as_str()).collect();
        let row = ServiceRow {
            lock_id: r.lock_id.clone(),
            name: r.service_name.clone(),
            service_type: r.service_type.clone(),
            canonical_port: canonical_port(r),
            port: r.port,
            url: url_for(r.port, &addresses),
            state,
            uid: r.owner.uid,
            user: user_name(r.user.as_ref(), r.owner.uid),
            pid,
            command,
            session: session_label(r, &snapshot.sessions),
            since: r.allocated_at.as_ref().and_then(timestamp_millis),
            mine,
            can_stop,
        };
        let (project, scope) = placement(r);
        projects.entry(project).or_default().entry(scope).or_default().push(row);
    }
    let projects = projects
        .into_iter()
        .map(|(project, scopes)| ProjectGroup {
            project,
            scopes: scopes
                .into_iter()
                .map(|(scope, mut services)| {
                    services.sort_by_key(|s| s.port);
                    ScopeGroup { scope, services }
                })
                .collect(),
        })
        .collect();

    let reserved: BTreeSet<u16> = snapshot.reservations.iter().map(|r| r.port).collect();
    let others = by_port
        .iter()
        .filter(|(port, _)| !reserved.contains(port))
        .map(|(&port, listeners)| {
            let first = listeners[0];
            let mut addresses: Vec<&str> = listeners.iter().map(|l| l.address.as_str()).collect();
            addresses.dedup();
            OtherListener {
                port,
                url: url_for(port, &addresses),
                addresses: addresses.iter().map(|a| a.to_string()).collect(),
                uid: first.uid,
                user: user_name(first.user.as_ref(), first.uid),
                pid: first.pid,
                command: first.command.clone().or_else(|| first.process.clone()),
            }
        })
        .collect();

    let busy: BTreeSet<u16> = reserved.iter().copied().chain(by_port.keys().copied()).collect();
    let ranges = snapshot
        .types
        .iter()
        .map(|(name, t)| {
            let [first, last] = t.range;
            RangeStrip {
                service_type: name.clone(),
                first,
                last,
                used: busy.range(first..=last).count() as u32,
                size: u32::from(last.saturating_sub(first)) + 1,
            }
        })
        .collect();

    View { viewer_uid, projects, others, ranges, recent: recent.to_vec() }
}

/// The moves and releases between two listings seen at `now`, appended to
/// `recent`, which keeps the last [`RECENT_KEEP_MS`] (at most [`RECENT_MAX`]).
pub fn record_changes(recent: &mut Vec<Event>, before: &[Reservation], after: &[Reservation], now: Millis) {
    let ids = |list: &[Reservation]| list.iter().map(|r| r.lock_id.clone()).collect::<BTreeSet<_>>();
    let (old, new) = (ids(before), ids(after));
    let event = |kind, r: &Reservation| Event {
        at: now,
        kind,
        port: r.port,
        canonical_port: canonical_port(r),
        name: r.service_name.clone(),
        user: user_name(r.user.as_ref(), r.owner.uid),
    };
    recent.extend(before.iter().filter(|r| !new.contains(&r.lock_id)).map(|r| event(EventKind::Released, r)));
    recent.extend(
        after
            .iter()
            .filter(|r| !old.contains(&r.lock_id) && canonical_port(r).is_some())
            .map(|r| event(EventKind::Moved, r)),
    );
    forget_old(recent, now);
}

/// Keeps the events of the last [`RECENT_KEEP_MS`] before `now`, at most [`RECENT_MAX`].
pub fn forget_old(recent: &mut Vec<Event>, now: Millis) {
    recent.retain(|e| now.saturating_sub(e.at) <= RECENT_KEEP_MS);
    if recent.len() > RECENT_MAX {
        recent.drain(..recent.len() - RECENT_MAX);
    }
}

/// Why the viewer may not act on a reservation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no reservation {0} (released already?)")]
    Unknown(String),
    #[error("port {port} is {user}'s: you may only act on your own reservations")]
    NotYours { port: u16, user: String },
    #[error("port {0} has no running process of yours to stop")]
    NoProcess(u16),
}

/// The reservation the viewer may release.
pub fn may_release<'v>(view: &'v View, lock_id: &str) -> Result<&'v ServiceRow, Refusal> {
    let row = view.service(lock_id).ok_or_else(|| Refusal::Unknown(lock_id.to_string()))?;
    if !row.mine {
        return Err(Refusal::NotYours { port: row.port, user: row.user.clone() });
    }
    Ok(row)
}

/// The process the viewer may stop for a reservation.
pub fn may_stop(view: &View, lock_id: &str) -> Result<u32, Refusal> {
    let row = may_release(view, lock_id)?;
    row.pid.filter(|_| row.can_stop).ok_or(Refusal::NoProcess(row.port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ALICE: u32 = 1000;
    const BOB: u32 = 1001;
    const NOW: Millis = 1_767_225_600_000;

    struct AllRun;
    impl Liveness for AllRun {
        fn runs(&self, _: u32, _: Option<u64>) -> Option<bool> {
            Some(true)
        }
    }
    struct Gone(u32);
    impl Liveness for Gone {
        fn runs(&self, pid: u32, _: Option<u64>) -> Option<bool> {
            Some(pid != self.0)
        }
    }

    fn reservation(value: Value) -> Reservation {
        serde_json::from_value(value).unwrap()
    }

    fn alice_web() -> Reservation {
        reservation(json!({"lock_id":"a1","port":3000,"service_type":"dev","service_name":"web",
            "instance_id":"claude-7c1e","project_path":"/home/alice/shop","owner":{"uid":ALICE,"pid":42,"start_time":7},
            "lease":"session","allocated_at":NOW - 90_000,"health_failures":0,"user":"alice","process":"bash"}))
    }

    fn bob_api_moved() -> Reservation {
        reservation(json!({"lock_id":"b1","port":8001,"requested_port":8000,"service_type":"api","service_name":"api",
            "instance_id":"default","project_path":"/home/bob/blog","owner":{"uid":BOB},"lease":"manual",
            "allocated_at":"2026-01-01T00:00:00Z","user":"bob"}))
    }

    fn listener(port: u16, uid: u32, pid: Option<u32>, command: Option<&str>) -> Listener {
        Listener {
            port,
            protocol: "tcp".into(),
            address: "127.0.0.1".into(),
            uid,
            inode: u64::from(port),
            user: None,
            pid,
            process: None,
            command: command.map(str::to_string),
            service_type: None,
            project: None,
        }
    }

    fn snapshot() -> Snapshot {
        Snapshot {
            reservations: vec![alice_web(), bob_api_moved()],
            listeners: vec![
                listener(3000, ALICE, Some(4242), Some("node server.js")),
                listener(8001, BOB, None, None),
                listener(5432, 113, None, None),
            ],
            types: BTreeMap::from([
                ("dev".to_string(), TypeRange { range: [3000, 3099] }),
                ("database".to_string(), TypeRange { range: [5430, 5499] }),
            ]),
            sessions: vec![Session {
                instance_id: "claude-7c1e".into(),
                metadata: json!({"agent":"claude-code","session_id":"7c1e"}),
            }],
        }
    }

    #[test]
    fn timestamps_read_as_epoch_millis_or_rfc3339() {
        assert_eq!(timestamp_millis(&json!(1_767_225_600_000u64)), Some(1_767_225_600_000));
        assert_eq!(timestamp_millis(&json!("2026-01-01T00:00:00Z")), Some(1_767_225_600_000));
        assert_eq!(timestamp_millis(&json!("2026-01-01T00:00:00.25Z")), Some(1_767_225_600_250));
        assert_eq!(timestamp_millis(&json!("2026-01-01T01:30:00+01:30")), Some(1_767_225_600_000));
        assert_eq!(timestamp_millis(&json!("2000-02-29T00:00:00.123456-00:00")), Some(951_782_400_123));
        for bad in [json!("yesterday"), json!("2026-13-01T00:00:00Z"), json!("2026-01-01T00:00:00"), json!(-5)] {
            assert_eq!(timestamp_millis(&bad), None, "{bad}");
        }
    }

    #[test]
    fn reservations_group_by_project_then_scope_and_fall_back_to_the_project() {
        let mut scoped = alice_web();
        scoped.lock_id = "a2".into();
        scoped.port = 3001;
        scoped.scope = Some("/home/alice/shop-wt2".into());
        let mut snap = snapshot();
        snap.reservations.push(scoped);
        let view = build(&snap, ALICE, &AllRun, &[]);
        type Layout = Vec<(String, Vec<(String, Vec<u16>)>)>;
        let layout: Layout = view
            .projects
            .iter()
            .map(|p| {
                let scopes =
                    p.scopes.iter().map(|s| (s.scope.clone(), s.services.iter().map(|r| r.port).collect())).collect();
                (p.project.clone(), scopes)
            })
            .collect();
        assert_eq!(
            layout,
            vec![
                (
                    "/home/alice/shop".into(),
                    vec![("/home/alice/shop".into(), vec![3000]), ("/home/alice/shop-wt2".into(), vec![3001])]
                ),
                ("/home/bob/blog".into(), vec![("/home/bob/blog".into(), vec![8001])]),
            ]
        );
    }

    #[test]
    fn a_row_shows_owner_session_start_and_the_listening_process() {
        let view = build(&snapshot(), ALICE, &AllRun, &[]);
        let web = view.service("a1").unwrap();
        assert_eq!(web.state, PortState::Listening);
        assert_eq!(web.url, "http://localhost:3000/");
        assert_eq!((web.pid, web.command.as_deref()), (Some(4242), Some("node server.js")));
        assert_eq!(web.session.as_deref(), Some("claude-7c1e (claude-code)"));
        assert_eq!(web.since, Some(NOW - 90_000));
        assert_eq!(web.user, "alice");
        assert!(web.mine && web.can_stop);
    }

    #[test]
    fn a_moved_server_shows_canonical_to_actual_and_another_users_row_has_no_actions() {
        let view = build(&snapshot(), ALICE, &AllRun, &[]);
        let api = view.service("b1").unwrap();
        assert_eq!((api.canonical_port, api.port, api.state), (Some(8000), 8001, PortState::Moved));
        assert_eq!(api.since, Some(NOW), "allocated at NOW, written as RFC 3339");
        assert_eq!((api.pid, api.command.as_deref(), api.session.as_deref()), (None, None, None));
        assert!(!api.mine && !api.can_stop);
        assert_eq!(may_release(&view, "b1"), Err(Refusal::NotYours { port: 8001, user: "bob".into() }));
        assert_eq!(may_stop(&view, "b1"), Err(Refusal::NotYours { port: 8001, user: "bob".into() }));
        assert_eq!(may_stop(&view, "a1"), Ok(4242));
        assert_eq!(may_release(&view, "zz"), Err(Refusal::Unknown("zz".into())));
        // Bob sees the same rows the other way round.
        let bobs = build(&snapshot(), BOB, &AllRun, &[]);
        assert!(bobs.service("b1").unwrap().mine && !bobs.service("a1").unwrap().mine);
    }

    #[test]
    fn states_follow_listeners_health_and_owner_liveness() {
        let mut snap = snapshot();
        snap.listeners.retain(|l| l.port != 3000);
        let view = build(&snap, ALICE, &AllRun, &[]);
        let row = view.service("a1").unwrap();
        assert_eq!((row.state, row.pid), (PortState::Reserved, Some(42)));
        // Its owner (often the shell that reserved it) is shown, never stopped.
        assert_eq!(may_stop(&view, "a1"), Err(Refusal::NoProcess(3000)));

        snap.reservations[0].health_failures = 2;
        assert_eq!(build(&snap, ALICE, &AllRun, &[]).service("a1").unwrap().state, PortState::Stale);

        let view = build(&snap, ALICE, &Gone(42), &[]);
        let row = view.service("a1").unwrap();
        assert_eq!((row.state, row.pid), (PortState::Exited, None));
        assert_eq!(may_stop(&view, "a1"), Err(Refusal::NoProcess(3000)));
        assert!(may_release(&view, "a1").is_ok(), "an exited server's port can still be released");
    }

    #[test]
    fn unreserved_listeners_form_their_own_group_and_ranges_count_what_is_busy() {
        let view = build(&snapshot(), ALICE, &AllRun, &[]);
        let others: Vec<(u16, &str, Option<u32>)> =
            view.others.iter().map(|o| (o.port, o.user.as_str(), o.pid)).collect();
        assert_eq!(others, vec![(5432, "113", None)]);
        let ranges: Vec<(&str, u32, u32)> =
            view.ranges.iter().map(|r| (r.service_type.as_str(), r.used, r.size)).collect();
        assert_eq!(ranges, vec![("database", 1, 70), ("dev", 1, 100)]);
    }

    #[test]
    fn urls_name_a_specific_address_and_loopback_or_wildcard_as_localhost() {
        assert_eq!(url_for(80, &["0.0.0.0", "::"]), "http://localhost:80/");
        assert_eq!(url_for(80, &["10.0.0.5"]), "http://10.0.0.5:80/");
        assert_eq!(url_for(80, &["fd00::1"]), "http://[fd00::1]:80/");
        assert_eq!(url_for(80, &[]), "http://localhost:80/");
    }

    #[test]
    fn releases_and_moves_are_recorded_and_age_out() {
        let mut recent = Vec::new();
        let before = vec![alice_web()];
        let after = vec![bob_api_moved()];
        record_changes(&mut recent, &before, &after, NOW);
        let seen: Vec<(EventKind, u16, Option<u16>)> =
            recent.iter().map(|e| (e.kind, e.port, e.canonical_port)).collect();
        assert_eq!(seen, vec![(EventKind::Released, 3000, None), (EventKind::Moved, 8001, Some(8000))]);
        // An unchanged listing adds nothing; five minutes later both are gone.
        record_changes(&mut recent, &after, &after, NOW + 1000);
        assert_eq!(recent.len(), 2);
        record_changes(&mut recent, &after, &after, NOW + RECENT_KEEP_MS + 1);
        assert!(recent.is_empty());
    }

    #[test]
    fn unknown_fields_and_missing_optional_ones_are_accepted() {
        let r = reservation(json!({"lock_id":"x","port":1,"service_type":"t","owner":{"uid":0},
            "scope":"/w","future_field":{"a":1}}));
        assert_eq!(placement(&r), (NO_PROJECT.to_string(), "/w".to_string()));
        assert_eq!(canonical_port(&r), None);
    }
}
