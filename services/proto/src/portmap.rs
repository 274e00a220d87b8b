//! The reserved-port map's layout: a file beside the API socket
//! ([`crate::paths::PORT_MAP_NAME`]) of [`FILE_SIZE`] bytes. It starts with
//! the holder table, one little-endian u32 per port naming the holder of the
//! allocation on that port: a process, or a user. 0 is free (or awaiting a
//! hand-off: its listener must be let bind); a pid names the process whose
//! lease it is; [`user_entry`] names the user that holds a reservation no
//! process owns (a session's, a manual one, one made over TCP), whose own
//! programs may bind it and nobody else's; [`NO_PROCESS`] is held for nobody
//! to bind. The scope table ([`ScopeTable`]) follows it at [`SIZE`], then
//! the opt-outs ([`NeverMove`]) at [`NEVER_MOVE_OFFSET`]; the scope table's
//! header says which version of both is there. The allocator writes the
//! file; the preload maps it read-only.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

pub const ENTRIES: usize = 65536;
/// The pid table's size, and the scope table's offset.
pub const SIZE: usize = ENTRIES * 4;
/// Entry value for ports held for nobody to bind (a uid the entry cannot name).
pub const NO_PROCESS: u32 = u32::MAX;
/// Where [`NeverMove`] starts.
pub const NEVER_MOVE_OFFSET: usize = SIZE + size_of::<ScopeTable>();
/// The whole file: the pid table, the scope table, the opt-outs.
pub const FILE_SIZE: usize = NEVER_MOVE_OFFSET + size_of::<NeverMove>();
/// How many program names `[preload] never_move` may list.
pub const NEVER_MOVE_PROGRAMS: usize = 32;

/// `"SCP1"`: the scope table's header says which layout follows it.
pub const SCOPE_MAGIC: u32 = u32::from_le_bytes(*b"SCP1");
pub const SCOPE_VERSION: u32 = 1;
/// Slots in the scope table (a power of two).
pub const SCOPE_SLOTS: usize = 16384;
/// An entry sits in one of this many slots from its home slot (wrapping).
/// Readers scan all of them, so a removed entry just empties its slot.
pub const SCOPE_WINDOW: usize = 32;
const PORT_BITMAP_WORDS: usize = ENTRIES / 64;

/// The scope table's header.
#[repr(C)]
pub struct ScopeHeader {
    pub magic: AtomicU32,
    pub version: AtomicU32,
    pub slots: AtomicU32,
    pub window: AtomicU32,
    _reserved: [u32; 12],
}

/// One entry: a moved server's (uid, scope, canonical port) and the port
/// it actually listens on. `scope` is [`scope_hash`] of the scope's path
/// (0: the slot is empty); `key` is [`ScopeSlot::key_of`]. The writer stores
/// `scope` then `key` to fill a slot, `key` then `scope` to empty it; a
/// reader loads `key`, `scope`, then `key` again and takes the pair only when
/// both `key` loads agree.
#[repr(C)]
pub struct ScopeSlot {
    pub scope: AtomicU64,
    pub key: AtomicU64,
}

/// Where clients of a scope find its moved servers: (uid, scope, canonical
/// port) -> actual port, written by the allocator (the single writer), read
/// lock-free and without allocating by the preload's `connect` and `bind`.
#[repr(C)]
pub struct ScopeTable {
    pub header: ScopeHeader,
    /// Bit `p % 64` of word `p / 64` is set while some entry has canonical
    /// port `p`: a connect to a port with none costs one load.
    pub canonical_ports: [AtomicU64; PORT_BITMAP_WORDS],
    pub slots: [ScopeSlot; SCOPE_SLOTS],
}

/// `[preload] never_move`: ports and programs the preload never moves nor
/// redirects (a program that binds a fixed port as a lock must fail as it
/// would without Styxy).
#[repr(C)]
pub struct NeverMove {
    /// Bit `p % 64` of word `p / 64`: port `p` is never moved.
    pub ports: [AtomicU64; PORT_BITMAP_WORDS],
    /// Program names (`comm`, at most 15 bytes), NUL-padded; all-zero ends the list.
    pub programs: [[AtomicU64; 2]; NEVER_MOVE_PROGRAMS],
}

// The tables follow the pid table at offsets their 8-byte words accept.
const _: () = assert!(SIZE.is_multiple_of(align_of::<ScopeTable>()));
const _: () = assert!(NEVER_MOVE_OFFSET.is_multiple_of(align_of::<NeverMove>()));
const _: () = assert!(SCOPE_SLOTS.is_power_of_two() && SCOPE_WINDOW <= SCOPE_SLOTS);

/// FNV-1a of a scope's path bytes, never 0 (0 marks an empty slot).
pub const fn scope_hash(scope: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < scope.len() {
        hash ^= scope[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    if hash == 0 { 1 } else { hash }
}

impl ScopeSlot {
    /// `uid << 32 | canonical << 16 | actual`; never 0 for a real entry
    /// (a canonical port is never 0).
    pub const fn key_of(uid: u32, canonical: u16, actual: u16) -> u64 {
        ((uid as u64) << 32) | ((canonical as u64) << 16) | actual as u64
    }

    /// The actual port when this slot holds (uid, scope, canonical).
    fn read(&self, uid: u32, scope: u64, canonical: u16) -> Option<u16> {
        let key = self.key.load(Ordering::Acquire);
        if key >> 16 != ScopeSlot::key_of(uid, canonical, 0) >> 16 || key == 0 {
            return None;
        }
        let slot_scope = self.scope.load(Ordering::Acquire);
        (slot_scope == scope && self.key.load(Ordering::Acquire) == key).then_some(key as u16)
    }
}

impl ScopeTable {
    /// Whether the header names this layout (an older or damaged file has no table).
    pub fn is_valid(&self) -> bool {
        let h = &self.header;
        h.magic.load(Ordering::Acquire) == SCOPE_MAGIC
            && h.version.load(Ordering::Relaxed) == SCOPE_VERSION
            && h.slots.load(Ordering::Relaxed) as usize == SCOPE_SLOTS
            && h.window.load(Ordering::Relaxed) as usize == SCOPE_WINDOW
    }

    /// The first slot an entry may sit in.
    pub fn home(uid: u32, scope: u64, canonical: u16) -> usize {
        // splitmix64's finaliser spreads neighbouring ports and scopes.
        let mut x = scope ^ ScopeSlot::key_of(uid, canonical, 0).rotate_left(17);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
        (x as usize) & (SCOPE_SLOTS - 1)
    }

    /// The slot indexes an entry may sit in, home first.
    pub fn window(uid: u32, scope: u64, canonical: u16) -> impl Iterator<Item = usize> {
        let home = ScopeTable::home(uid, scope, canonical);
        (0..SCOPE_WINDOW).map(move |i| (home + i) & (SCOPE_SLOTS - 1))
    }

    pub fn slot(&self, index: usize) -> Option<&ScopeSlot> {
        self.slots.get(index)
    }

    /// Whether some entry has canonical port `port` (any uid, any scope).
    pub fn has_canonical(&self, port: u16) -> bool {
        let (word, bit) = (usize::from(port) / 64, u32::from(port) % 64);
        self.canonical_ports.get(word).is_some_and(|w| w.load(Ordering::Acquire) & (1 << bit) != 0)
    }

    /// Marks whether some entry has canonical port `port` (the writer).
    pub fn set_canonical(&self, port: u16, present: bool) {
        let (word, bit) = (usize::from(port) / 64, u32::from(port) % 64);
        if let Some(w) = self.canonical_ports.get(word) {
            if present {
                w.fetch_or(1 << bit, Ordering::Release);
            } else {
                w.fetch_and(!(1 << bit), Ordering::Release);
            }
        }
    }

    /// The port `uid`'s server of canonical port `canonical` actually
    /// listens on in `scope`. Lock-free, allocation-free.
    pub fn lookup(&self, uid: u32, scope: u64, canonical: u16) -> Option<u16> {
        if !self.has_canonical(canonical) {
            return None;
        }
        ScopeTable::window(uid, scope, canonical).find_map(|i| self.slot(i)?.read(uid, scope, canonical))
    }
}

/// The writer's side: only the allocator's single writer calls these.
impl ScopeTable {
    /// Empties the table and writes its header.
    pub fn reset(&self) {
        for w in &self.canonical_ports {
            w.store(0, Ordering::Release);
        }
        for s in &self.slots {
            s.key.store(0, Ordering::Release);
            s.scope.store(0, Ordering::Release);
        }
        let h = &self.header;
        h.version.store(SCOPE_VERSION, Ordering::Relaxed);
        h.slots.store(SCOPE_SLOTS as u32, Ordering::Relaxed);
        h.window.store(SCOPE_WINDOW as u32, Ordering::Relaxed);
        h.magic.store(SCOPE_MAGIC, Ordering::Release);
    }

    /// Records (uid, scope, canonical) -> actual in its window: over the same
    /// key's slot, else in an empty one. False when the window is full.
    /// The caller keeps [`ScopeTable::set_canonical`] in step.
    pub fn insert(&self, uid: u32, scope: u64, canonical: u16, actual: u16) -> bool {
        let key = ScopeSlot::key_of(uid, canonical, actual);
        let mut empty = None;
        for s in ScopeTable::window(uid, scope, canonical).filter_map(|i| self.slot(i)) {
            let k = s.key.load(Ordering::Relaxed);
            if k != 0 && k >> 16 == key >> 16 && s.scope.load(Ordering::Relaxed) == scope {
                s.key.store(key, Ordering::Release);
                return true;
            }
            if k == 0 && empty.is_none() {
                empty = Some(s);
            }
        }
        let Some(s) = empty else {
            return false;
        };
        s.scope.store(scope, Ordering::Release);
        s.key.store(key, Ordering::Release);
        true
    }

    /// Removes (uid, scope, canonical)'s entry, if any.
    pub fn remove(&self, uid: u32, scope: u64, canonical: u16) {
        let wanted = ScopeSlot::key_of(uid, canonical, 0) >> 16;
        for s in ScopeTable::window(uid, scope, canonical).filter_map(|i| self.slot(i)) {
            let k = s.key.load(Ordering::Relaxed);
            if k != 0 && k >> 16 == wanted && s.scope.load(Ordering::Relaxed) == scope {
                s.key.store(0, Ordering::Release);
                s.scope.store(0, Ordering::Release);
            }
        }
    }
}

/// A program name as [`NeverMove::programs`] holds it.
pub fn program_words(name: &[u8]) -> [u64; 2] {
    let mut bytes = [0u8; 16];
    for (dst, src) in bytes.iter_mut().zip(name.iter().take(15)) {
        *dst = *src;
    }
    let (low, high) = bytes.split_at(8);
    let word = |half: &[u8]| half.iter().rev().fold(0u64, |w, &b| (w << 8) | u64::from(b));
    [word(low), word(high)]
}

impl NeverMove {
    /// Whether `port`, or the program `program` names (as
    /// [`program_words`] gives it), is never moved. `program` is asked only
    /// when some program is listed (the supervisor reads it from /proc).
    pub fn covers(&self, port: u16, program: impl FnOnce() -> [u64; 2]) -> bool {
        let (word, bit) = (usize::from(port) / 64, u32::from(port) % 64);
        if self.ports.get(word).is_some_and(|w| w.load(Ordering::Acquire) & (1 << bit) != 0) {
            return true;
        }
        let mut listed = self
            .programs
            .iter()
            .map(|[low, high]| [low.load(Ordering::Acquire), high.load(Ordering::Acquire)])
            .take_while(|name| *name != [0, 0])
            .peekable();
        if listed.peek().is_none() {
            return false;
        }
        let program = program();
        listed.any(|name| name == program)
    }

    /// Writes the lists (the allocator's single writer); names past
    /// [`NEVER_MOVE_PROGRAMS`] are dropped.
    pub fn set(&self, ports: &[u16], programs: &[&[u8]]) {
        for (word, w) in self.ports.iter().enumerate() {
            let bits = ports.iter().filter(|&&p| usize::from(p) / 64 == word).fold(0u64, |b, &p| b | 1 << (p % 64));
            w.store(bits, Ordering::Release);
        }
        let names = programs.iter().map(|n| program_words(n)).chain(core::iter::repeat([0, 0]));
        for ([low, high], [l, h]) in self.programs.iter().zip(names) {
            low.store(l, Ordering::Release);
            high.store(h, Ordering::Release);
        }
    }
}

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
    fn the_layout_is_the_documented_one() {
        assert_eq!(size_of::<ScopeHeader>(), 64);
        assert_eq!(size_of::<ScopeSlot>(), 16);
        assert_eq!(size_of::<ScopeTable>(), 64 + 8192 + SCOPE_SLOTS * 16);
        assert_eq!(size_of::<NeverMove>(), 8192 + 32 * 16);
        assert_eq!(FILE_SIZE, 262_144 + 270_400 + 8704);
    }

    #[test]
    fn no_scope_hashes_to_the_empty_slot() {
        assert_ne!(scope_hash(b""), 0);
        assert_ne!(scope_hash(b"/home/a/app"), scope_hash(b"/home/a/app-b"));
    }

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
