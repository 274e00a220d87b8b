//! `org.styxy.Allocator1` at `/org/styxy/Allocator1`: the allocator's
//! engine on the bus. The interface is defined once, here; the allocator
//! plugs its engine in as an [`AllocatorBackend`], and clients use the
//! generated [`Allocator1Proxy`].

use std::collections::HashMap;
use std::future::Future;

use styxy_core::health::{Released, Report};
use styxy_core::recovery::Outcome;
use styxy_proto::api::{AllocateRequest, AllocateResponse, AllocationView, ReleaseResponse};
use styxy_proto::caller::Caller;
use styxy_proto::error::ApiError;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::{Connection, OwnedVariant, interface};

use crate::daemon::{self, Activity};
use crate::error::BusError;
use crate::wire::{self, AllocationRecord, PortVerdict};

/// What the interface needs from the allocator. Each call runs with the
/// engine's own rules; the interface only translates and checks who may
/// report health and ask for a reload.
pub trait AllocatorBackend: Send + Sync + 'static {
    fn allocate(
        &self,
        caller: Caller,
        request: AllocateRequest,
    ) -> impl Future<Output = Result<AllocateResponse, ApiError>> + Send;
    fn release(&self, caller: &Caller, lock_id: &str) -> Result<ReleaseResponse, ApiError>;
    fn list(&self, caller: &Caller) -> Result<Vec<AllocationView>, ApiError>;
    fn generation(&self) -> u64;
    /// Records a health pass (see [`styxy_core::engine::Engine::apply_health`]).
    fn report_health(&self, report: &Report) -> impl Future<Output = Result<Vec<Released>, ApiError>> + Send;
    /// Re-reads and repairs the state and the configuration.
    fn reload(&self) -> Result<Outcome, ApiError>;
    /// Repairs the state in memory and rewrites damaged files from it.
    fn repair(&self) -> Result<Outcome, ApiError>;
    /// Calls count as activity for the idle exit.
    fn activity(&self) -> &Activity;
}

pub struct AllocatorService<B> {
    backend: B,
}

impl<B: AllocatorBackend> AllocatorService<B> {
    pub fn new(backend: B) -> Self {
        AllocatorService { backend }
    }
}

/// Styxy's port allocator: hands out TCP ports by service type and
/// remembers who holds them. Errors are named `org.styxy.Error.<Code>`
/// (InvalidField, RangeExhausted, NotFound, Forbidden, ...).
#[interface(
    name = "org.styxy.Allocator1",
    proxy(
        async_name = "Allocator1Proxy",
        default_service = "org.styxy.Allocator1",
        default_path = "/org/styxy/Allocator1"
    )
)]
impl<B: AllocatorBackend> AllocatorService<B> {
    /// Allocates a port of service_type ("" with options preload source
    /// and preferred_port: the type whose range holds the port). Options:
    /// service_name s, preferred_port q, instance_id s, project_path s,
    /// pid u (owner process, default: the caller), lease s (process,
    /// session, manual), source s, dry_run b. requested_port is 0 unless
    /// another port than the preferred one was given.
    #[zbus(out_args("port", "lock_id", "service_type", "service_name", "existing", "requested_port", "message"))]
    async fn allocate(
        &self,
        service_type: &str,
        options: HashMap<String, OwnedVariant>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(u16, String, String, String, bool, u16, String), BusError> {
        let _busy = self.backend.activity().begin();
        let caller = daemon::caller(conn, &header).await?;
        let request = wire::allocate_request(service_type, options)?;
        let r = self.backend.allocate(caller, request).await?;
        Ok((r.port, r.lock_id, r.service_type, r.service_name, r.existing, r.requested_port.unwrap_or(0), r.message))
    }

    /// Releases an allocation by lock id; only its owner's user or root may.
    /// Returns the port freed.
    #[zbus(out_args("port"))]
    async fn release(
        &self,
        lock_id: &str,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<u16, BusError> {
        let _busy = self.backend.activity().begin();
        let caller = daemon::caller(conn, &header).await?;
        Ok(self.backend.release(&caller, lock_id)?.port)
    }

    /// Every live allocation. Other users' pid, process and project are
    /// shown only to root (0 and "" otherwise).
    #[zbus(out_args("allocations"))]
    async fn list(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<Vec<AllocationRecord>, BusError> {
        let _busy = self.backend.activity().begin();
        let caller = daemon::caller(conn, &header).await?;
        Ok(self.backend.list(&caller)?.iter().map(AllocationRecord::from).collect())
    }

    /// Records a health pass (root and the styxy user only): findings are
    /// (port, lock_id, verdict) with verdict healthy, exited, pid_reused,
    /// session_expired, not_listening or unclaimed. Returns what was released, with
    /// the reason.
    #[zbus(out_args("released"))]
    async fn report_health(
        &self,
        findings: Vec<PortVerdict>,
        expired_instances: Vec<String>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<Vec<PortVerdict>, BusError> {
        let _busy = self.backend.activity().begin();
        self.require_trusted(conn, &header).await?;
        let report = wire::report_from_wire(findings, expired_instances)?;
        Ok(wire::released_to_wire(&self.backend.report_health(&report).await?))
    }

    /// Re-reads the configuration and the state from disk and repairs them
    /// (root and the styxy user only): a damaged file is kept aside and the
    /// newest valid backup restored. Returns the verdict (clean, repaired,
    /// restored) and one line per repair.
    #[zbus(out_args("verdict", "repairs"))]
    async fn reload(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(String, Vec<String>), BusError> {
        let _busy = self.backend.activity().begin();
        self.require_trusted(conn, &header).await?;
        Ok(summary(&self.backend.reload()?))
    }

    /// Repairs the state in memory, which is the truth, and writes it out
    /// afresh if the files on disk do not read back as it (root and the
    /// styxy user only; styxy-recovery calls this while the allocator runs).
    /// Damaged files are kept aside. Returns the verdict (clean, repaired,
    /// restored) and one line per repair.
    #[zbus(out_args("verdict", "repairs"))]
    async fn repair(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(String, Vec<String>), BusError> {
        let _busy = self.backend.activity().begin();
        self.require_trusted(conn, &header).await?;
        Ok(summary(&self.backend.repair()?))
    }

    /// Grows with every change of the state.
    #[zbus(property(emits_changed_signal = "false"))]
    async fn generation(&self) -> u64 {
        self.backend.generation()
    }

    /// Allocations were added or removed; generation is the state's.
    #[zbus(signal)]
    pub async fn allocations_changed(emitter: &SignalEmitter<'_>, generation: u64) -> zbus::Result<()>;
}

impl<B: AllocatorBackend> AllocatorService<B> {
    async fn require_trusted(&self, conn: &Connection, header: &Header<'_>) -> Result<(), BusError> {
        let caller = daemon::caller(conn, header).await?;
        if daemon::trusted(&caller) {
            Ok(())
        } else {
            Err(BusError::Forbidden(format!("uid {} may not do this; root and the styxy service may", caller.uid)))
        }
    }
}

fn summary(outcome: &Outcome) -> (String, Vec<String>) {
    (outcome.verdict().as_str().to_string(), outcome.repairs())
}
