//! Styxy's pure logic. No tokio, no HTTP: everything here is reachable from a
//! unit test without a socket.

pub mod api;
pub mod model;
pub mod paths;
pub mod probe;
pub mod process;
pub mod shellcmd;
pub mod tools;
