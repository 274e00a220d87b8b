//! What Styxy's tests and benchmarks share: a [`Sandbox`] (a private
//! socket, state, configuration and home), the real allocator started in it
//! ([`Allocator`]), the `styxy` CLI and programs under the preload run in
//! it, HTTP calls to it, ports held busy ([`net`]), other users
//! ([`users`]), the dashboard `styxy ui` serves ([`dashboard`]), the state-store fixtures ([`store`]) and the percentile line
//! the benchmarks print ([`percentiles`]).
//!
//! Binaries are the ones cargo built for the package under test, or are
//! built fresh in the test's profile ([`build`]).

pub mod allocator;
pub mod build;
pub mod dashboard;
pub mod net;
pub mod percentiles;
pub mod programs;
pub mod sandbox;
pub mod store;
pub mod users;

pub use allocator::{Allocator, TEST_CONFIG};
pub use build::{allocator_bin, preload_lib, styxy_bin};
pub use dashboard::Dashboard;
pub use net::*;
pub use programs::*;
pub use sandbox::{Sandbox, ScopeEntry, text, write_port_map};
pub use users::{FakeAllocator, as_user, ensure_user};

use std::time::Duration;

/// How long a test waits for a program or an answer before declaring it
/// stuck (a guard against hangs, not a performance expectation).
pub const PATIENCE: Duration = Duration::from_secs(20);
