//! Styxy's allocation logic: configuration, auto-allocation, the engine, the
//! state store, the port-map writer, health decisions and recovery. No tokio,
//! no HTTP: everything here is reachable from a unit test without a socket.

pub mod autoalloc;
pub mod config;
pub mod engine;
pub mod health;
pub mod host;
pub mod portmap;
pub mod recovery;
pub mod store;
