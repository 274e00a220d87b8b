//! Styxy's wire contract, shared by every process that talks to the
//! allocator: where the files and sockets are ([`paths`]), the layout of the
//! reserved-port map ([`portmap`]), the kernel formats the preload and the
//! observer both read ([`sockdiag`], [`procstat`]), and, with the default
//! `wire` feature, the HTTP API's types ([`api`], [`model`]) and, with
//! `client`, the blocking HTTP client ([`client`]).

pub mod paths;
pub mod portmap;
pub mod procstat;
pub mod sockdiag;

#[cfg(feature = "wire")]
pub mod api;
#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "wire")]
pub mod model;
