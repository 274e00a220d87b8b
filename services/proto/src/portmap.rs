//! The reserved-port map's layout: a 256 KiB file beside the API socket
//! ([`crate::paths::PORT_MAP_NAME`]) with one little-endian u32 per port, the
//! pid that owns (or, for session and manual leases, asked for) the
//! allocation on that port. 0 is free, [`NO_PROCESS`] held with no pid known.
//! The allocator writes it; the preload maps it read-only.

pub const ENTRIES: usize = 65536;
pub const SIZE: usize = ENTRIES * 4;
/// Entry value for ports held with no pid known (TCP clients).
pub const NO_PROCESS: u32 = u32::MAX;
