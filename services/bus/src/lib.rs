//! Styxy on D-Bus: the bus names, the two interfaces (defined once, with
//! their generated proxies) and the records they carry, plus what Styxy's
//! daemons share: logging, idle exit, stepping down from the bus.
//!
//! | name | object | interface |
//! |---|---|---|
//! | `org.styxy.Allocator1` | `/org/styxy/Allocator1` | [`allocator`]: Allocate, Release, List, ReportHealth, Reload; property Generation; signal AllocationsChanged |
//! | `org.styxy.Observer1` | `/org/styxy/Observer1` | [`observer`]: Observe, Listeners, Suggest |
//!
//! Both names are D-Bus activatable on the system bus (units/dbus).

pub mod allocator;
pub mod daemon;
pub mod error;
pub mod logging;
pub mod observer;
#[cfg(feature = "testing")]
pub mod testing;
pub mod wire;

pub use allocator::{Allocator1Proxy, AllocatorBackend, AllocatorService};
pub use error::BusError;
pub use observer::{ListenerSource, Observer1Proxy, ObserverService};

pub const ALLOCATOR_NAME: &str = "org.styxy.Allocator1";
pub const ALLOCATOR_PATH: &str = "/org/styxy/Allocator1";
pub const OBSERVER_NAME: &str = "org.styxy.Observer1";
pub const OBSERVER_PATH: &str = "/org/styxy/Observer1";
