//! Styxy's command-line recogniser: which dev-server tool a command starts,
//! on which port, and how to move it. The Claude Code hooks use
//! [`shellcmd`] to spot and rewrite server starts and kills in a Bash
//! command; the observer uses [`service_type`] to guess a listener's service
//! type from its `/proc/PID/cmdline`.
//!
//! Modules, and the one direction their dependencies go: each module uses
//! only modules listed above it, never one below.
//!
//! - [`tools`]: the table of dev-server tools (data only).
//! - `lex`: the shell lexer: simple commands and words, traced back to the
//!   source bytes.
//! - [`resolve`]: the argv resolver: wrappers and interpreters stripped down
//!   to the tool, script run or shell that will listen (uses `tools`).
//! - `container`: `docker run`'s arguments, and which tool an image runs
//!   (uses `tools`).
//! - [`service_type`]: a process's service type from its argv (uses `tools`,
//!   `resolve`, `container`, and `lex` for `sh -c SCRIPT`).
//! - [`shellcmd`]: the Bash command reader: walker, rewriter, published
//!   container ports, package.json scripts and kills (uses `tools`, `lex`,
//!   `resolve`, `container`). It does not use `service_type`, nor does
//!   anything above it use `shellcmd`.

mod container;
mod lex;
pub mod resolve;
pub mod service_type;
pub mod shellcmd;
pub mod tools;
