//! The allocator as a library. [`serve`] answers the HTTP API on listeners
//! the caller bound, for an [`app::App`] the caller built, until a shutdown
//! future resolves: the binary hands it systemd's sockets or its own, and
//! tests a temporary socket in their own process. [`lifecycle::run`] is the
//! daemon around it: the bus, systemd notifications, health passes, idle
//! exit and signals.
//!
//! Modules depend one way: lifecycle → server → http_errors, routes → app →
//! auth, metrics.

pub mod app;
pub mod auth;
mod http_errors;
pub mod lifecycle;
mod metrics;
mod routes;
mod server;

pub use server::{Listeners, serve};
