//! Styxy's pure logic. No tokio, no HTTP: everything here is reachable from a
//! unit test without a socket.

pub mod api;
pub mod autoalloc;
pub mod client;
pub mod config;
pub mod engine;
pub mod health;
pub mod model;
pub mod observe;
pub mod paths;
pub mod portmap;
pub mod probe;
pub mod process;
pub mod recovery;
pub mod shellcmd;
pub mod store;
pub mod tools;
