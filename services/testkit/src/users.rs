//! Another user on this machine, for the tests that cross users (they need
//! root, and skip without it).

use std::process::Command;

/// The uid and gid of system user `name`, created (with its own group, no
/// home, no shell) when missing.
pub fn ensure_user(name: &str) -> (u32, u32) {
    let lookup = |name: &str| {
        let passwd = std::fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
        passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.len() > 3 && fields[0] == name).then(|| (fields[2].parse().ok(), fields[3].parse().ok()))
        })
    };
    if let Some((Some(uid), Some(gid))) = lookup(name) {
        return (uid, gid);
    }
    let status = Command::new("useradd")
        .args(["--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", name])
        .status()
        .expect("run useradd");
    // A parallel run may have created it meanwhile; the lookup decides.
    match lookup(name) {
        Some((Some(uid), Some(gid))) => (uid, gid),
        _ => panic!("useradd {name} failed: {status}"),
    }
}

/// Two ordinary users for the tests of one user against another, victim
/// first; None, with a line saying the test is skipped, without root.
pub fn victim_and_attacker() -> Option<[(u32, u32); 2]> {
    if styxy_proto::paths::uid() != 0 {
        eprintln!("skipped: creating users needs root");
        return None;
    }
    Some([ensure_user("styxy-victim"), ensure_user("styxy-attacker")])
}

/// `program` run as `uid`:`gid` with no supplementary groups (setpriv
/// execs it, so the child's pid is the program's).
pub fn as_user(uid: u32, gid: u32, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={uid}")).arg(format!("--regid={gid}")).arg("--clear-groups").arg("--").arg(program);
    cmd
}
