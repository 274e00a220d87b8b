//! The records Styxy keeps: allocations, instances, auto-allocated types.
//! `State` is the whole persisted truth; `Change` is one atomic edit of it,
//! the unit the write-ahead log records.
//!
//! The records the API also shows are generic over how their times are
//! written: [`Millis`] in the store (the default), [`Timestamp`] on the
//! wire; `From` converts one into the other.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::timestamp::Timestamp;

/// Schema version of `state.json`. Bump on incompatible changes; the store
/// refuses (and keeps aside) a file from a future version.
pub const SCHEMA_VERSION: u32 = 1;

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

pub fn now_millis() -> Millis {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Who holds an allocation: a Unix user, and for process leases the process
/// (pid plus its start time in clock ticks since boot, so pid reuse is caught).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub uid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<u64>,
}

/// How long an allocation lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LeaseKind {
    /// Freed when the owner process exits.
    #[default]
    Process,
    /// Freed when its instance (session) expires or ends.
    Session,
    /// Kept until released.
    Manual,
}

/// Which client created an allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    #[default]
    Api,
    Cli,
    Run,
    Preload,
    Hook,
    Dbus,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation<At = Millis> {
    pub lock_id: String,
    pub port: u16,
    /// The port the client asked for when it got another one (preload moves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_port: Option<u16>,
    pub service_type: String,
    pub service_name: String,
    pub instance_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_path: Option<String>,
    pub owner: Owner,
    pub lease: LeaseKind,
    #[serde(default)]
    pub source: Source,
    pub allocated_at: At,
    /// Consecutive failed health checks (reset on success).
    #[serde(default)]
    pub health_failures: u32,
    /// A process lease without its process yet (`owner.pid` is `None`):
    /// held until this time for the first process of the owner's uid that
    /// listens on the port, which then becomes the owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handoff_until: Option<At>,
    /// The copy of a stack the holder belongs to (docs/design.md, "Scopes"):
    /// a worktree's or project's directory, or what `$STYXY_SCOPE` named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl Allocation {
    /// A `service_type` allocation of `port` named `service_name`, held by
    /// `owner` under `lease`, made now with a fresh lock id, and otherwise
    /// as a plain API request leaves it: instance "default", no project, no
    /// port asked for. Struct update syntax sets the rest.
    pub fn new(
        port: u16,
        service_type: impl Into<String>,
        service_name: impl Into<String>,
        owner: Owner,
        lease: LeaseKind,
    ) -> Allocation {
        Allocation {
            lock_id: uuid::Uuid::new_v4().to_string(),
            port,
            requested_port: None,
            service_type: service_type.into(),
            service_name: service_name.into(),
            instance_id: "default".into(),
            project_path: None,
            owner,
            lease,
            source: Source::Api,
            allocated_at: now_millis(),
            health_failures: 0,
            handoff_until: None,
            scope: None,
        }
    }

    /// A moved server's scope entry: (scope, canonical port) when it has a
    /// scope and listens on another port than the one it asked for.
    pub fn scope_entry(&self) -> Option<(&str, u16)> {
        let canonical = self.requested_port.filter(|p| *p != self.port)?;
        Some((self.scope.as_deref()?, canonical))
    }
}

/// A registered client session (an agent session, a preloaded process).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance<At = Millis> {
    pub instance_id: String,
    pub uid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_directory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_root: Option<String>,
    pub registered_at: At,
    pub last_heartbeat: At,
    /// Seconds without a heartbeat after which the instance expires.
    pub ttl_secs: u64,
    #[serde(default)]
    pub metadata: serde_json::Value,
}

impl Instance {
    pub fn expired(&self, now: Millis) -> bool {
        now.saturating_sub(self.last_heartbeat) > self.ttl_secs.saturating_mul(1000)
    }
}

/// A service type carved at run time for an unknown type name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoType {
    pub service_type: String,
    /// Inclusive range.
    pub range: [u16; 2],
    pub chunk_size: u16,
    pub placement: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub created_at: Millis,
    pub created_by_uid: u32,
}

/// One line of the audit trail kept in the state (bounded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry<At = Millis> {
    pub at: At,
    pub action: String,
    pub service_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<[u16; 2]>,
    pub uid: u32,
}

impl From<Allocation> for Allocation<Timestamp> {
    fn from(a: Allocation) -> Allocation<Timestamp> {
        Allocation {
            lock_id: a.lock_id,
            port: a.port,
            requested_port: a.requested_port,
            service_type: a.service_type,
            service_name: a.service_name,
            instance_id: a.instance_id,
            project_path: a.project_path,
            owner: a.owner,
            lease: a.lease,
            source: a.source,
            allocated_at: a.allocated_at.into(),
            health_failures: a.health_failures,
            handoff_until: a.handoff_until.map(Timestamp),
            scope: a.scope,
        }
    }
}

impl From<Instance> for Instance<Timestamp> {
    fn from(i: Instance) -> Instance<Timestamp> {
        Instance {
            instance_id: i.instance_id,
            uid: i.uid,
            working_directory: i.working_directory,
            project_root: i.project_root,
            registered_at: i.registered_at.into(),
            last_heartbeat: i.last_heartbeat.into(),
            ttl_secs: i.ttl_secs,
            metadata: i.metadata,
        }
    }
}

impl From<AuditEntry> for AuditEntry<Timestamp> {
    fn from(e: AuditEntry) -> AuditEntry<Timestamp> {
        AuditEntry { at: e.at.into(), action: e.action, service_type: e.service_type, range: e.range, uid: e.uid }
    }
}

/// How many audit entries the state keeps.
pub const AUDIT_KEEP: usize = 200;

/// The whole persisted state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub schema: u32,
    pub generation: u64,
    pub boot_id: String,
    /// Live allocations by port: one port, at most one holder.
    #[serde(default)]
    pub allocations: BTreeMap<u16, Allocation>,
    #[serde(default)]
    pub instances: BTreeMap<String, Instance>,
    /// Ids of ended or expired instances, each still bound to its user, so
    /// no other user registers it. Each user keeps a bounded number, pruned
    /// by age.
    #[serde(default)]
    pub retired_instances: BTreeMap<String, RetiredInstance>,
    #[serde(default)]
    pub auto_types: BTreeMap<String, AutoType>,
    #[serde(default)]
    pub audit: Vec<AuditEntry>,
    /// Last port handed to each (user, project, service name), tried first
    /// next time.
    #[serde(default, deserialize_with = "sticky_entries")]
    pub sticky: BTreeMap<String, Sticky>,
}

/// A port handed to a (user, project, service name) key, which its user's
/// next allocation under that key tries first. Each user keeps a bounded
/// number, the oldest dropped first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sticky {
    pub port: u16,
    pub uid: u32,
    /// When the port was last handed out under this key.
    pub at: Millis,
}

/// Whose an ended or expired instance's id stays, and since when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetiredInstance {
    pub uid: u32,
    /// When the instance ended or expired.
    pub at: Millis,
}

/// The sticky entries of a state, forgetting those of the older form (a bare
/// port, with no user or age to bound them by): they are only hints.
fn sticky_entries<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Sticky>, D::Error> {
    let entries = BTreeMap::<String, serde_json::Value>::deserialize(d)?;
    Ok(entries.into_iter().filter_map(|(key, entry)| Some((key, serde_json::from_value(entry).ok()?))).collect())
}

impl State {
    pub fn new(boot_id: String) -> State {
        State {
            schema: SCHEMA_VERSION,
            generation: 0,
            boot_id,
            allocations: BTreeMap::new(),
            instances: BTreeMap::new(),
            retired_instances: BTreeMap::new(),
            auto_types: BTreeMap::new(),
            audit: Vec::new(),
            sticky: BTreeMap::new(),
        }
    }

    pub fn by_lock_id(&self, lock_id: &str) -> Option<&Allocation> {
        self.allocations.values().find(|a| a.lock_id == lock_id)
    }

    /// Applies one change. Changes are idempotent so replaying a log twice
    /// (a crash between snapshot and log truncation) gives the same state.
    pub fn apply(&mut self, change: &Change) {
        match change {
            Change::PutAllocation(a) => {
                self.allocations.insert(a.port, a.clone());
            }
            Change::RemoveAllocation { port, lock_id } => {
                if self.allocations.get(port).is_some_and(|a| &a.lock_id == lock_id) {
                    self.allocations.remove(port);
                }
            }
            Change::PutInstance(i) => {
                self.instances.insert(i.instance_id.clone(), i.clone());
            }
            Change::RemoveInstance(id) => {
                self.instances.remove(id);
            }
            Change::RetireInstance { instance_id, uid, at } => {
                self.instances.remove(instance_id);
                self.retired_instances.insert(instance_id.clone(), RetiredInstance { uid: *uid, at: *at });
            }
            Change::ForgetRetiredInstance(id) => {
                self.retired_instances.remove(id);
            }
            Change::PutAutoType(t) => {
                self.auto_types.insert(t.service_type.clone(), t.clone());
            }
            Change::RemoveAutoType(name) => {
                self.auto_types.remove(name);
            }
            Change::Audit(e) => {
                self.audit.push(e.clone());
                if self.audit.len() > AUDIT_KEEP {
                    let excess = self.audit.len() - AUDIT_KEEP;
                    self.audit.drain(..excess);
                }
            }
            Change::SetBootId(b) => self.boot_id = b.clone(),
            Change::SetSticky { key, port, uid, at } => {
                self.sticky.insert(key.clone(), Sticky { port: *port, uid: *uid, at: *at });
            }
            Change::RemoveSticky(key) => {
                self.sticky.remove(key);
            }
            Change::SetHealthFailures { port, lock_id, failures } => {
                if let Some(a) = self.allocations.get_mut(port).filter(|a| &a.lock_id == lock_id) {
                    a.health_failures = *failures;
                }
            }
        }
    }
}

/// One atomic edit of the state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    PutAllocation(Allocation),
    RemoveAllocation {
        port: u16,
        lock_id: String,
    },
    PutInstance(Instance),
    RemoveInstance(String),
    /// Ends an instance and keeps its id bound to its user.
    RetireInstance {
        instance_id: String,
        uid: u32,
        at: Millis,
    },
    ForgetRetiredInstance(String),
    PutAutoType(AutoType),
    RemoveAutoType(String),
    Audit(AuditEntry),
    SetBootId(String),
    SetHealthFailures {
        port: u16,
        lock_id: String,
        failures: u32,
    },
    /// Records of the older form (no user, no time) read as root's, of the
    /// epoch: the first a pruning drops.
    SetSticky {
        key: String,
        port: u16,
        #[serde(default)]
        uid: u32,
        #[serde(default)]
        at: Millis,
    },
    RemoveSticky(String),
}
