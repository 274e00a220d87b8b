//! Where a client's `connect` goes (docs/design.md, "Scopes"): a TCP
//! connect to this host on port P goes to P' when the program moved its own
//! P to P', or when the allocator recorded that this user's server of P in
//! the program's scope listens on P'. The preload's connect hook asks this;
//! so does a move, which rebinds a server where its scope's clients are
//! already sent. It reads the shared port map: no lock, no allocation, no
//! allocator round trip, and for a port no scope moved, one bitmap load.

use crate::{config, family, portmap};

/// Where a client of the program asking for `port` goes instead: where
/// the program or its scope's server of `port` listens.
pub fn target(config: &config::Config, port: u16) -> Option<u16> {
    let own = family::target(port).filter(|&to| to != port);
    own.or_else(|| portmap::scope_target(config.uid, config.scope.as_ref()?.hash, port)).filter(|&to| to != port)
}
