//! What a move needs to know, computed once when the preload is loaded or
//! the supervisor starts (allocation is fine here, never later) and then
//! only read.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::OnceLock;

/// Allocator sockets tried in order ($STYXY_SOCKET, system, user).
pub const MAX_SOCKETS: usize = 3;
/// Long enough for any Unix socket path (sun_path is 108 bytes) plus the
/// port map's name beside it.
pub const PATH_CAP: usize = 128;

/// A NUL-terminated path in a fixed buffer.
#[derive(Clone, Copy)]
pub struct CPath {
    bytes: [u8; PATH_CAP],
}

impl CPath {
    pub fn new(path: &Path) -> Option<Self> {
        let raw = path.as_os_str().as_bytes();
        if raw.len() >= PATH_CAP || raw.contains(&0) {
            return None;
        }
        let mut bytes = [0u8; PATH_CAP];
        for (dst, src) in bytes.iter_mut().zip(raw) {
            *dst = *src;
        }
        Some(Self { bytes })
    }

    pub fn as_cstr(&self) -> &core::ffi::CStr {
        core::ffi::CStr::from_bytes_until_nul(&self.bytes).unwrap_or(c"")
    }
}

pub struct Config {
    /// `STYXY_QUIET`: no line on stderr.
    pub quiet: bool,
    /// Allocator sockets, as ready-to-use addresses.
    pub sockets: [Option<libc::sockaddr_un>; MAX_SOCKETS],
    /// The port map beside each socket, same order.
    pub port_maps: [Option<CPath>; MAX_SOCKETS],
    /// The pid that read the settings: in the preload the program's pid at
    /// exec (forked children keep it), in the supervisor `styxy run`'s.
    pub loader_pid: u32,
    /// The uid whose scope entries this program follows (its sockets' uid).
    pub uid: u32,
    /// This program's scope (docs/design.md, "Scopes"), found at load time.
    pub scope: Option<Scope>,
    /// The program's name as the kernel keeps it (`comm`, at most 15
    /// bytes, as `styxy_proto::portmap::program_words` packs it), matched
    /// against `[preload] never_move`.
    pub program: [u64; 2],
    /// Under `styxy run` (`STYXY_PORT` set): what it handed the command.
    pub run: Option<RunPort>,
}

/// The port `styxy run` exported, and the lock id of its reservation
/// (`STYXY_LOCK_ID`; empty when it kept none).
pub struct RunPort {
    pub port: u16,
    pub lock_id: Box<[u8]>,
}

impl RunPort {
    fn from_env() -> Option<RunPort> {
        let port = env_flag("STYXY_PORT")?.to_str()?.parse().ok()?;
        let lock_id = env_flag("STYXY_LOCK_ID").map(|id| id.as_bytes().into()).unwrap_or_default();
        Some(RunPort { port, lock_id })
    }
}

/// A scope: its path, sent with a move so the allocator records it, and
/// the path's hash, the key of its entries in the port map.
pub struct Scope {
    pub path: Box<[u8]>,
    pub hash: u64,
}

impl Scope {
    fn current() -> Option<Scope> {
        let path = styxy_proto::scope::current()?;
        let path: Box<[u8]> = path.as_os_str().as_bytes().into();
        Some(Scope { hash: styxy_proto::portmap::scope_hash(&path), path })
    }
}

/// The loading thread's `comm` (the program's, at exec).
fn program_name() -> [u64; 2] {
    let mut comm = [0u8; 17];
    // SAFETY: PR_GET_NAME writes at most 16 bytes, NUL included.
    unsafe { libc::prctl(libc::PR_GET_NAME, comm.as_mut_ptr()) };
    let len = comm.iter().position(|&b| b == 0).unwrap_or(15);
    styxy_proto::portmap::program_words(comm.get(..len).unwrap_or_default())
}

static CONFIG: OnceLock<Config> = OnceLock::new();

/// None when the library is off (`STYXY_PRELOAD=off`) or not initialised.
pub fn get() -> Option<&'static Config> {
    CONFIG.get()
}

fn env_flag(name: &str) -> Option<std::ffi::OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}

fn switched_off(value: &OsStr) -> bool {
    let v = value.as_bytes();
    ["off", "0", "false", "no"].iter().any(|w| v.eq_ignore_ascii_case(w.as_bytes()))
}

fn unix_addr(path: &Path) -> Option<libc::sockaddr_un> {
    let raw = path.as_os_str().as_bytes();
    // SAFETY: zero is a valid sockaddr_un.
    let mut addr: libc::sockaddr_un = unsafe { core::mem::zeroed() };
    if raw.len() >= addr.sun_path.len() || raw.contains(&0) {
        return None;
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, src) in addr.sun_path.iter_mut().zip(raw) {
        *dst = *src as libc::c_char;
    }
    Some(addr)
}

/// Reads the settings once, at load time. False when the preload is
/// switched off (or was set up already): then nothing else is set up.
pub fn init() -> bool {
    init_with(RunPort::from_env())
}

/// As [`init`], with `run` given by the caller: the supervisor is `styxy
/// run` itself and hands the command a port it never had in its own
/// environment.
pub fn init_with(run: Option<RunPort>) -> bool {
    if env_flag("STYXY_PRELOAD").is_some_and(|v| switched_off(&v)) {
        return false;
    }
    let mut sockets = [None; MAX_SOCKETS];
    let mut port_maps = [None; MAX_SOCKETS];
    let candidates = styxy_proto::paths::socket_candidates();
    for ((socket, map), path) in sockets.iter_mut().zip(port_maps.iter_mut()).zip(&candidates) {
        *socket = unix_addr(path);
        *map = CPath::new(&styxy_proto::paths::port_map_for(path));
    }
    let config = Config {
        quiet: env_flag("STYXY_QUIET").is_some_and(|v| v.as_bytes() != b"0"),
        sockets,
        port_maps,
        loader_pid: std::process::id(),
        // SAFETY: geteuid cannot fail.
        uid: unsafe { libc::geteuid() },
        scope: Scope::current(),
        program: program_name(),
        run,
    };
    CONFIG.set(config).is_ok()
}
