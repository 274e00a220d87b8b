//! Where Styxy's files live, in system mode and in user mode (docs/design.md, "Two modes").
//! Every client and service asks here, so the two modes cannot drift apart.

use std::path::PathBuf;

pub const SYSTEM_RUNTIME_DIR: &str = "/run/styxy";
pub const SYSTEM_STATE_DIR: &str = "/var/lib/styxy";
pub const SYSTEM_CONFIG_FILE: &str = "/etc/styxy/config.toml";
/// Loopback TCP address of the API (token-authenticated).
pub const TCP_ADDR: &str = "127.0.0.1:9876";
pub const SOCKET_NAME: &str = "api.sock";
/// The world-readable map of reserved ports the preload consults.
pub const PORT_MAP_NAME: &str = "ports.map";

/// Environment overrides, read by every component.
pub const ENV_SOCKET: &str = "STYXY_SOCKET";
pub const ENV_STATE_DIR: &str = "STYXY_STATE_DIR";
pub const ENV_CONFIG: &str = "STYXY_CONFIG";
pub const ENV_SYSTEM_CONFIG: &str = "STYXY_SYSTEM_CONFIG";

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from)
}

fn home() -> Option<PathBuf> {
    env_path("HOME")
}

/// Real uid of this process.
pub fn uid() -> u32 {
    // SAFETY: getuid cannot fail.
    unsafe { libc::getuid() }
}

/// `$XDG_RUNTIME_DIR/styxy`, else `/tmp/styxy-$UID`.
pub fn user_runtime_dir() -> PathBuf {
    match env_path("XDG_RUNTIME_DIR") {
        Some(d) => d.join("styxy"),
        None => PathBuf::from(format!("/tmp/styxy-{}", uid())),
    }
}

/// `$XDG_STATE_HOME/styxy`, else `~/.local/state/styxy`.
pub fn user_state_dir() -> PathBuf {
    if let Some(d) = env_path(ENV_STATE_DIR) {
        return d;
    }
    match env_path("XDG_STATE_HOME") {
        Some(d) => d.join("styxy"),
        None => home().unwrap_or_else(|| user_runtime_dir().join("state")).join(".local/state/styxy"),
    }
}

/// The system services' state directory: `$STATE_DIRECTORY` (set by
/// systemd's `StateDirectory=`), else `/var/lib/styxy`.
pub fn system_state_dir() -> PathBuf {
    std::env::var_os("STATE_DIRECTORY").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(SYSTEM_STATE_DIR))
}

pub fn user_socket() -> PathBuf {
    user_runtime_dir().join(SOCKET_NAME)
}

pub fn system_socket() -> PathBuf {
    PathBuf::from(SYSTEM_RUNTIME_DIR).join(SOCKET_NAME)
}

/// The sockets a client tries, in order: `$STYXY_SOCKET`, the system socket,
/// the user socket.
pub fn socket_candidates() -> Vec<PathBuf> {
    let mut v = Vec::with_capacity(3);
    if let Some(s) = env_path(ENV_SOCKET) {
        v.push(s);
    }
    v.push(system_socket());
    v.push(user_socket());
    v
}

/// The port map lives beside its socket.
pub fn port_map_for(socket: &std::path::Path) -> PathBuf {
    socket.parent().map(|p| p.join(PORT_MAP_NAME)).unwrap_or_else(|| PathBuf::from(PORT_MAP_NAME))
}

/// `/etc/styxy/config.toml` (or `$STYXY_SYSTEM_CONFIG`).
pub fn system_config_file() -> PathBuf {
    env_path(ENV_SYSTEM_CONFIG).unwrap_or_else(|| PathBuf::from(SYSTEM_CONFIG_FILE))
}

/// `~/.styxy`, where the original Styxy kept its token
/// ([`LEGACY_TOKEN_NAME`]) and configuration ([`LEGACY_CONFIG_NAME`]), and
/// where its clients still read them.
pub fn legacy_dir() -> Option<PathBuf> {
    home().map(|h| h.join(".styxy"))
}

pub const LEGACY_TOKEN_NAME: &str = "auth.token";
pub const LEGACY_CONFIG_NAME: &str = "config.json";

/// `~/.config/styxy/config.toml` (or `$STYXY_CONFIG`, or `$XDG_CONFIG_HOME`).
pub fn user_config_file() -> Option<PathBuf> {
    if let Some(p) = env_path(ENV_CONFIG) {
        return Some(p);
    }
    env_path("XDG_CONFIG_HOME").or_else(|| home().map(|h| h.join(".config"))).map(|d| d.join("styxy/config.toml"))
}
