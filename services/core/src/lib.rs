//! Styxy's allocation logic: configuration, auto-allocation, the engine, the
//! state store, the port-map writer, health decisions and recovery. No tokio,
//! no HTTP: everything here is reachable from a unit test without a socket.
//!
//! # Which module may use which
//!
//! Deciding sits below applying: [`health`] and [`recovery`] decide from
//! what they are given, and the [`engine`] applies their verdicts, so no two
//! modules use each other. Each module uses only the modules listed after
//! its name, all listed before it (`tests/module_rule.rs` holds every module
//! to this list):
//!
//! - `config`:
//! - `store`:
//! - `portmap`:
//! - `host`:
//! - `autoalloc`: `config`
//! - `health`: `host`
//! - `recovery`: `config`, `health`, `host`, `store`
//! - `engine`: `autoalloc`, `config`, `health`, `host`, `portmap`, `recovery`, `store`

pub mod autoalloc;
pub mod config;
pub mod engine;
pub mod health;
pub mod host;
pub mod portmap;
pub mod recovery;
pub mod store;
