//! Styxy's wire contract, shared by every process that talks to the
//! allocator: where the files and sockets are ([`paths`]), the layout of the
//! reserved-port map and its scope table ([`portmap`]), a process's scope
//! ([`scope`]), whom to believe ([`trust`]) and how its directories are made
//! safe ([`dirs`]), the kernel formats the preload and the
//! observer both read ([`sockdiag`], [`procstat`]); with the `wire` feature
//! the HTTP API's types (`api`, `model`, `timestamp`), its error (`error`) and who asks
//! (`caller`); with `client` the blocking HTTP client (`client`). Those are
//! plain names, not links: without the features they do not exist.

pub mod dirs;
pub mod paths;
pub mod portmap;
pub mod procstat;
pub mod scope;
pub mod sockdiag;
pub mod trust;

#[cfg(feature = "wire")]
pub mod api;
#[cfg(feature = "wire")]
pub mod caller;
#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "wire")]
pub mod error;
#[cfg(feature = "wire")]
pub mod model;
#[cfg(feature = "wire")]
pub mod timestamp;
