//! Styxy's command-line recogniser: the one table of dev-server tools
//! ([`tools`]) and the shell-command reader built on it ([`shellcmd`]).
//! The Claude Code hooks use it to spot and rewrite server starts and kills;
//! the observer uses it to guess a listener's service type.

pub mod shellcmd;
pub mod tools;
