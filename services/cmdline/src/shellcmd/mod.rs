//! Server starts and kills in a Bash command line, as Claude Code's
//! PreToolUse hook receives it (`tool_input.command`), and rewriting a
//! start for another port in the tool's own syntax.
//!
//! A command is split into simple commands (`cd web && PORT=3001 npm run
//! dev | tee log`); each is resolved through the tool table
//! ([`crate::tools`]); package-manager scripts are read from the nearest
//! package.json; compose files give the ports of `docker compose up`.
//! Only the program position counts: a tool named inside another program's
//! argument (`git commit -m "vite"`) is not a start, except in the script
//! of `bash -c '…'`.
//!
//! Submodules, each using only those listed above it: `start` (a recognised
//! start and its rewrite), `port` (where a command writes the port),
//! `manifest` (package.json and deno.json scripts), `publish` (ports
//! containers publish), `walk` (the walker that finds the starts); `kill`
//! stands apart and uses only the lexer and the resolver.

mod kill;
mod manifest;
mod port;
mod publish;
mod start;
mod walk;

pub use kill::{KillTarget, kill_targets};
pub use start::{PortSource, ServerStart, rewrite_port};
pub use walk::recognise;
