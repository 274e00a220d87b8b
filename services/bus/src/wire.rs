//! The records that cross the bus, as plain D-Bus structs so `busctl`
//! prints them readably. D-Bus has no "absent": an empty string or a zero
//! stands for a missing value (pid 0 is never a process a caller can own).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use styxy_core::health::{Failure, Finding, Released, Report};
use styxy_proto::api::{AllocateRequest, AllocationView, Listener};
use styxy_proto::model::{LeaseKind, Source};
use zbus::{OwnedVariant, Type};

use crate::error::BusError;

/// One allocation as `List` returns it: `(qssssssuussst)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct AllocationRecord {
    pub port: u16,
    pub lock_id: String,
    pub service_type: String,
    pub service_name: String,
    pub instance_id: String,
    /// `process`, `session` or `manual`.
    pub lease: String,
    /// Which client made it: `api`, `cli`, `run`, `preload`, `hook`, `dbus`.
    pub source: String,
    pub uid: u32,
    /// 0: no owner process, or not shown to this caller.
    pub pid: u32,
    /// The owner's user name; empty when unknown.
    pub user: String,
    /// The owner's command name; empty when not shown.
    pub process: String,
    /// Empty when none or not shown.
    pub project_path: String,
    /// Milliseconds since the Unix epoch.
    pub allocated_at: u64,
}

impl From<&AllocationView> for AllocationRecord {
    fn from(v: &AllocationView) -> AllocationRecord {
        let a = &v.allocation;
        AllocationRecord {
            port: a.port,
            lock_id: a.lock_id.clone(),
            service_type: a.service_type.clone(),
            service_name: a.service_name.clone(),
            instance_id: a.instance_id.clone(),
            lease: name_of(&a.lease),
            source: name_of(&a.source),
            uid: a.owner.uid,
            pid: a.owner.pid.unwrap_or(0),
            user: v.user.clone().unwrap_or_default(),
            process: v.process.clone().unwrap_or_default(),
            project_path: a.project_path.clone().unwrap_or_default(),
            allocated_at: a.allocated_at.millis(),
        }
    }
}

/// One TCP listener as `Observe` and `Listeners` return it: `(qssusutssss)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct ListenerRecord {
    pub port: u16,
    /// `tcp` or `tcp6`.
    pub protocol: String,
    pub address: String,
    pub uid: u32,
    pub user: String,
    /// 0 when the socket's process is not known or not shown.
    pub pid: u32,
    pub inode: u64,
    pub process: String,
    pub command: String,
    pub service_type: String,
    pub project: String,
}

impl From<Listener> for ListenerRecord {
    fn from(l: Listener) -> ListenerRecord {
        ListenerRecord {
            port: l.port,
            protocol: l.protocol,
            address: l.address,
            uid: l.uid,
            user: l.user.unwrap_or_default(),
            pid: l.pid.unwrap_or(0),
            inode: l.inode,
            process: l.process.unwrap_or_default(),
            command: l.command.unwrap_or_default(),
            service_type: l.service_type.unwrap_or_default(),
            project: l.project.unwrap_or_default(),
        }
    }
}

impl From<ListenerRecord> for Listener {
    fn from(r: ListenerRecord) -> Listener {
        let text = |s: String| (!s.is_empty()).then_some(s);
        Listener {
            port: r.port,
            protocol: r.protocol,
            address: r.address,
            uid: r.uid,
            inode: r.inode,
            user: text(r.user),
            pid: (r.pid != 0).then_some(r.pid),
            process: text(r.process),
            command: text(r.command),
            service_type: text(r.service_type),
            project: text(r.project),
        }
    }
}

/// A health finding: `(qss)` port, lock id, verdict (`healthy` or a
/// [`Failure`] name). Also the shape of a release: port, lock id, reason.
pub type PortVerdict = (u16, String, String);

/// The word for "healthy again" in a finding.
pub const HEALTHY: &str = "healthy";

pub fn findings_to_wire(report: &Report) -> Vec<PortVerdict> {
    report
        .findings
        .iter()
        .map(|f| (f.port, f.lock_id.clone(), f.failure.map_or(HEALTHY, Failure::as_str).to_string()))
        .collect()
}

pub fn report_from_wire(findings: Vec<PortVerdict>, expired_instances: Vec<String>) -> Result<Report, BusError> {
    let findings = findings
        .into_iter()
        .map(|(port, lock_id, verdict)| {
            let failure = match verdict.as_str() {
                HEALTHY => None,
                other => Some(other.parse::<Failure>().map_err(|e| BusError::InvalidField(e.to_string()))?),
            };
            Ok(Finding { port, lock_id, failure })
        })
        .collect::<Result<_, BusError>>()?;
    Ok(Report { findings, expired_instances })
}

pub fn released_to_wire(released: &[Released]) -> Vec<PortVerdict> {
    released.iter().map(|r| (r.port, r.lock_id.clone(), r.reason.as_str().to_string())).collect()
}

/// `Allocate`'s options (`a{sv}`), by name and D-Bus type.
pub const ALLOCATE_OPTIONS: &[(&str, &str)] = &[
    ("service_name", "s"),
    ("preferred_port", "q"),
    ("instance_id", "s"),
    ("project_path", "s"),
    ("pid", "u"),
    ("lease", "s"),
    ("source", "s"),
    ("dry_run", "b"),
];

/// Builds the request `Allocate(service_type, options)` stands for. An
/// unknown option or one of the wrong type is refused, naming it. The
/// source defaults to `dbus`.
pub fn allocate_request(
    service_type: &str,
    options: HashMap<String, OwnedVariant>,
) -> Result<AllocateRequest, BusError> {
    let mut req = AllocateRequest {
        service_type: (!service_type.is_empty()).then(|| service_type.to_string()),
        source: Some(Source::Dbus),
        ..Default::default()
    };
    for (name, value) in options {
        let wrong = || {
            let expected = ALLOCATE_OPTIONS.iter().find(|(n, _)| *n == name).map_or("?", |(_, t)| t);
            BusError::InvalidField(format!("option '{name}' must have D-Bus type {expected}"))
        };
        let text = |v: &OwnedVariant| <&str>::try_from(v).map(str::to_string).map_err(|_| wrong());
        match name.as_str() {
            "service_name" => req.service_name = Some(text(&value)?),
            "preferred_port" => req.preferred_port = Some(u16::try_from(&value).map_err(|_| wrong())?.into()),
            "instance_id" => req.instance_id = Some(text(&value)?),
            "project_path" => req.project_path = Some(text(&value)?),
            "pid" => req.pid = Some(u32::try_from(&value).map_err(|_| wrong())?),
            "lease" => req.lease = Some(parse_name::<LeaseKind>(&text(&value)?, "lease", "process, session, manual")?),
            "source" => {
                req.source = Some(parse_name::<Source>(&text(&value)?, "source", "api, cli, run, preload, hook, dbus")?)
            }
            "dry_run" => req.dry_run = bool::try_from(&value).map_err(|_| wrong())?,
            _ => {
                let known: Vec<&str> = ALLOCATE_OPTIONS.iter().map(|(n, _)| *n).collect();
                let shown: String = name.chars().filter(|c| !c.is_control()).take(50).collect();
                return Err(BusError::InvalidField(format!("unknown option '{shown}'; known: {}", known.join(", "))));
            }
        }
    }
    Ok(req)
}

/// The serde name of a unit enum (`LeaseKind::Process` → `process`): the
/// same words as the HTTP API.
fn name_of<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

fn parse_name<T: serde::de::DeserializeOwned>(text: &str, option: &str, known: &str) -> Result<T, BusError> {
    serde_json::from_value(serde_json::Value::String(text.to_string()))
        .map_err(|_| BusError::InvalidField(format!("option '{option}' must be one of {known}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use zbus::Variant;

    fn options(pairs: Vec<(&str, Variant<'static>)>) -> HashMap<String, OwnedVariant> {
        pairs.into_iter().map(|(k, v)| (k.to_string(), OwnedVariant::try_from(v).unwrap())).collect()
    }

    #[test]
    fn options_fill_the_request_and_the_source_defaults_to_dbus() {
        let req = allocate_request(
            "dev",
            options(vec![
                ("service_name", Variant::from("web")),
                ("preferred_port", Variant::from(3005u16)),
                ("pid", Variant::from(42u32)),
                ("lease", Variant::from("manual")),
                ("dry_run", Variant::from(true)),
            ]),
        )
        .unwrap();
        assert_eq!(req.service_type.as_deref(), Some("dev"));
        assert_eq!(req.service_name.as_deref(), Some("web"));
        assert_eq!(req.preferred_port, Some(serde_json::json!(3005)));
        assert_eq!(
            (req.pid, req.lease, req.source, req.dry_run),
            (Some(42), Some(LeaseKind::Manual), Some(Source::Dbus), true)
        );
    }

    #[test]
    fn unknown_or_mistyped_options_are_refused_by_name() {
        let e = allocate_request("dev", options(vec![("colour", Variant::from("red"))])).unwrap_err();
        assert!(
            matches!(&e, BusError::InvalidField(m) if m.contains("'colour'") && m.contains("service_name")),
            "{e:?}"
        );
        let e = allocate_request("dev", options(vec![("pid", Variant::from("42"))])).unwrap_err();
        assert!(matches!(&e, BusError::InvalidField(m) if m.contains("'pid'") && m.contains('u')), "{e:?}");
        let e = allocate_request("dev", options(vec![("lease", Variant::from("forever"))])).unwrap_err();
        assert!(matches!(&e, BusError::InvalidField(m) if m.contains("process, session, manual")), "{e:?}");
    }

    #[test]
    fn verdicts_cross_the_bus_unchanged() {
        let report = Report {
            findings: vec![
                Finding { port: 3000, lock_id: "a".into(), failure: Some(Failure::PidReused) },
                Finding { port: 3001, lock_id: "b".into(), failure: None },
            ],
            expired_instances: vec!["s".into()],
        };
        let back = report_from_wire(findings_to_wire(&report), report.expired_instances.clone()).unwrap();
        assert_eq!(back, report);
        assert!(report_from_wire(vec![(1, "x".into(), "tired".into())], vec![]).is_err());
    }

    #[test]
    fn signatures_are_flat_structs() {
        assert_eq!(AllocationRecord::SIGNATURE.to_string(), "(qssssssuussst)");
        assert_eq!(ListenerRecord::SIGNATURE.to_string(), "(qssusutssss)");
    }
}
