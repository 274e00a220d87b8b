//! `org.styxy.Observer1` at `/org/styxy/Observer1`: who listens on which
//! port, with the process behind each socket. Served by `styxy-observer`,
//! the one service allowed to look into other users' processes; the
//! interface is defined once, here, with the generated [`Observer1Proxy`].

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use styxy_core::config::Config;
use styxy_core::engine;
use styxy_core::host::RealHost;
use styxy_core::store;
use styxy_observe::{ObserveError, Observer};
use styxy_proto::api::{ErrorCode, Listener};
use zbus::message::Header;
use zbus::{Connection, interface};

use crate::daemon::{self, Activity};
use crate::error::BusError;
use crate::wire::ListenerRecord;

/// Where listeners come from: the real [`Observer`], or a stand-in in tests.
pub trait ListenerSource: Send + 'static {
    fn listeners(&mut self) -> Result<Vec<Listener>, ObserveError>;
    fn listeners_on(&mut self, port: u16) -> Result<Vec<Listener>, ObserveError>;
}

impl ListenerSource for Observer {
    fn listeners(&mut self) -> Result<Vec<Listener>, ObserveError> {
        Observer::listeners(self)
    }

    fn listeners_on(&mut self, port: u16) -> Result<Vec<Listener>, ObserveError> {
        Observer::listeners_on(self, port)
    }
}

pub struct ObserverService<S> {
    source: Mutex<S>,
    /// Configuration from files; the state adds the auto-allocated types.
    config: Config,
    state_dir: PathBuf,
    activity: Arc<Activity>,
}

impl<S: ListenerSource> ObserverService<S> {
    /// Serves `source`; `Suggest` reads the state in `state_dir` (without
    /// the lock) and `config`.
    pub fn new(source: S, config: Config, state_dir: PathBuf, activity: Arc<Activity>) -> Self {
        ObserverService { source: Mutex::new(source), config, state_dir, activity }
    }

    async fn query(
        &self,
        conn: &Connection,
        header: &Header<'_>,
        query: impl FnOnce(&mut S) -> Result<Vec<Listener>, ObserveError>,
    ) -> Result<Vec<ListenerRecord>, BusError> {
        let _busy = self.activity.begin();
        let caller = daemon::caller(conn, header).await?;
        let listeners = {
            let mut source = self.source.lock().unwrap_or_else(|e| e.into_inner());
            query(&mut source).map_err(|e| BusError::Unavailable(format!("cannot list the kernel's sockets: {e}")))?
        };
        Ok(listeners
            .into_iter()
            .map(|mut l| {
                // The allocator (same service user) redacts per HTTP caller itself.
                if !daemon::trusted(&caller) {
                    Observer::redact(&mut l, caller.uid);
                }
                ListenerRecord::from(l)
            })
            .collect())
    }
}

/// Who listens on which TCP port (IPv4 and IPv6), with the process, its
/// command line, the guessed service type and project. Other users'
/// process details are shown only to root.
#[interface(
    name = "org.styxy.Observer1",
    proxy(
        async_name = "Observer1Proxy",
        default_service = "org.styxy.Observer1",
        default_path = "/org/styxy/Observer1"
    )
)]
impl<S: ListenerSource> ObserverService<S> {
    /// The listeners on one port (one per address family and address).
    #[zbus(out_args("listeners"))]
    async fn observe(
        &self,
        port: u16,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<Vec<ListenerRecord>, BusError> {
        self.query(conn, &header, |s| s.listeners_on(port)).await
    }

    /// Every listener on the machine, by port.
    #[zbus(out_args("listeners"))]
    async fn listeners(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<Vec<ListenerRecord>, BusError> {
        self.query(conn, &header, |s| s.listeners()).await
    }

    /// Up to count (1-100) free ports of service_type: from the
    /// configuration, minus live allocations and ports in use.
    #[zbus(out_args("ports"))]
    async fn suggest(&self, service_type: &str, count: u32) -> Result<Vec<u16>, BusError> {
        let _busy = self.activity.begin();
        if !(1..=100).contains(&count) {
            return Err(BusError::new(ErrorCode::InvalidField, "count must be from 1 to 100".into()));
        }
        let state = store::read_state(&self.state_dir)
            .map_err(|e| BusError::new(ErrorCode::Unavailable, format!("cannot read the allocations: {e}")))?;
        let config = self.config.with_auto_types(state.auto_types.values());
        Ok(engine::suggest(&config, &state, service_type, count as usize, &RealHost)?)
    }
}
