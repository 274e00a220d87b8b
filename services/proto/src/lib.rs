//! Styxy's wire contract, shared by every process that talks to the
//! allocator: where the files and sockets are ([`paths`]), the layout of the
//! reserved-port map ([`portmap`]), and, with the default `wire` feature, the
//! HTTP API's types ([`api`], [`model`]), its error ([`error`]) and who asks
//! ([`caller`]) and, with `client`, the blocking HTTP client ([`client`]).

pub mod paths;
pub mod portmap;

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
