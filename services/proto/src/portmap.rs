//! The reserved-port map's layout: a 256 KiB file beside the API socket
//! ([`crate::paths::PORT_MAP_NAME`]) with one little-endian u32 per port,
//! naming the holder of the allocation on that port: a process, or a user.
//! 0 is free (or awaiting a hand-off: its listener must be let bind);
//! a pid names the process whose lease it is; [`user_entry`] names the user
//! that holds a reservation no process owns (a session's, a manual one, one
//! made over TCP), whose own programs may bind it and nobody else's;
//! [`NO_PROCESS`] is held for nobody to bind. The allocator writes it; the
//! preload maps it read-only.

pub const ENTRIES: usize = 65536;
pub const SIZE: usize = ENTRIES * 4;
/// Entry value for ports held for nobody to bind (a uid the entry cannot name).
pub const NO_PROCESS: u32 = u32::MAX;
/// Set in entries that name a user: pids stay below 2^22 (the kernel's
/// largest pid_max), so the two never meet.
const USER_FLAG: u32 = 1 << 31;

/// The entry for a reservation held by user `uid`.
pub const fn user_entry(uid: u32) -> u32 {
    if uid & USER_FLAG != 0 || uid == !USER_FLAG { NO_PROCESS } else { USER_FLAG | uid }
}

/// The user an entry names, if it names one.
pub const fn entry_user(entry: u32) -> Option<u32> {
    if entry & USER_FLAG != 0 && entry != NO_PROCESS { Some(entry & !USER_FLAG) } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_entry_names_its_user_and_never_a_pid_or_nobody() {
        for uid in [0, 1000, 65534, (1 << 31) - 2] {
            assert_eq!(entry_user(user_entry(uid)), Some(uid));
            assert!(user_entry(uid) > 1 << 22, "above every pid");
        }
        assert_eq!(user_entry((1 << 31) - 1), NO_PROCESS);
        assert_eq!(user_entry(u32::MAX), NO_PROCESS);
        assert_eq!(entry_user(NO_PROCESS), None);
        assert_eq!(entry_user(4_194_304), None);
    }
}
