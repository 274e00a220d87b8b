//! The observer against real sockets: in this process, and in a child run as
//! another user (needs root to create that user and switch to it).
#![allow(clippy::unwrap_used)] // a test or benchmark: a failed unwrap is a failure

use std::fs;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use styxy_cmdline::service_type::infer_service_type;
use styxy_observe::Observer;
use styxy_proto::api::Listener;
use styxy_testkit::{as_user, ensure_user, free_port};

const OTHER_USER: &str = "styxy-observe-test";

fn me() -> (u32, u32) {
    // SAFETY: getuid has no preconditions.
    (std::process::id(), unsafe { libc::getuid() })
}

/// The login name of `uid` as /etc/passwd spells it, read independently of
/// the code under test.
fn passwd_name(uid: u32) -> Option<String> {
    fs::read_to_string("/etc/passwd").ok()?.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.get(2)?.parse::<u32>().ok()? == uid).then(|| fields[0].to_string())
    })
}

#[test]
fn an_ipv4_listener_of_this_process_is_listed_with_its_owner() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (pid, uid) = me();

    let mut observer = Observer::new().unwrap();
    let all = observer.listeners().unwrap();
    let seen: Vec<&Listener> = all.iter().filter(|l| l.port == port).collect();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let seen = seen[0];
    assert_eq!(seen.protocol, "tcp");
    assert_eq!(seen.address, "127.0.0.1");
    assert_eq!(seen.uid, uid);
    assert_eq!(seen.user, passwd_name(uid));
    assert_eq!(seen.pid, Some(pid));
    assert_eq!(seen.process.as_deref(), Some(fs::read_to_string("/proc/self/comm").unwrap().trim_end()));
    let argv: Vec<String> = std::env::args().collect();
    assert_eq!(seen.command, Some(argv.join(" ")));

    assert!(all.windows(2).all(|w| w[0].port <= w[1].port), "listing is sorted by port");
    assert_eq!(observer.listeners_on(port).unwrap(), vec![seen.clone()]);
}

/// An IPv6 socket bound to [::] with IPV6_V6ONLY: it holds the port on IPv6
/// only, which std cannot express.
fn v6_only_listener() -> io::Result<(OwnedFd, u16)> {
    // SAFETY: plain socket calls on a descriptor owned by the returned OwnedFd.
    unsafe {
        let fd = libc::socket(libc::AF_INET6, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let owned = OwnedFd::from_raw_fd(fd);
        let one: libc::c_int = 1;
        let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        let mut addr: libc::sockaddr_in6 = std::mem::zeroed();
        addr.sin6_family = libc::AF_INET6 as libc::sa_family_t;
        let mut addr_len = std::mem::size_of_val(&addr) as libc::socklen_t;
        if libc::setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, (&one as *const libc::c_int).cast(), len) != 0
            || libc::bind(fd, (&addr as *const libc::sockaddr_in6).cast(), addr_len) != 0
            || libc::listen(fd, 16) != 0
            || libc::getsockname(fd, (&mut addr as *mut libc::sockaddr_in6).cast(), &mut addr_len) != 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok((owned, u16::from_be(addr.sin6_port)))
    }
}

#[test]
fn an_ipv6_only_listener_is_listed_once_as_tcp6() {
    let (socket, port) = match v6_only_listener() {
        Ok(listener) => listener,
        Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {
            eprintln!("skipping: this kernel has no IPv6");
            return;
        }
        Err(e) => panic!("v6 listener: {e}"),
    };
    let mut observer = Observer::new().unwrap();
    // Another test may hold the same port number on IPv4 meanwhile.
    let seen: Vec<_> = observer.listeners_on(port).unwrap().into_iter().filter(|l| l.pid == Some(me().0)).collect();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!((seen[0].protocol.as_str(), seen[0].address.as_str()), ("tcp6", "::"));
    let fd_link = fs::read_link(format!("/proc/self/fd/{}", socket.as_raw_fd())).unwrap();
    assert_eq!(fd_link, PathBuf::from(format!("socket:[{}]", seen[0].inode)));
}

#[test]
fn a_port_lookup_returns_each_family_and_nothing_else() {
    let v4 = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = v4.local_addr().unwrap().port();
    let Ok(v6) = TcpListener::bind(("::1", port)) else {
        eprintln!("skipping: no IPv6 loopback here");
        return;
    };
    let _neighbour = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut observer = Observer::new().unwrap();
    let seen = observer.listeners_on(port).unwrap();
    let shape: Vec<(u16, &str, &str)> =
        seen.iter().map(|l| (l.port, l.protocol.as_str(), l.address.as_str())).collect();
    assert_eq!(shape, vec![(port, "tcp", "127.0.0.1"), (port, "tcp6", "::1")]);
    drop(v6);
    assert_eq!(observer.listeners_on(port).unwrap().len(), 1);
}

#[test]
fn a_closed_listener_disappears() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut observer = Observer::new().unwrap();
    assert!(observer.listeners().unwrap().iter().any(|l| l.port == port));
    assert_eq!(observer.listeners_on(port).unwrap().len(), 1);

    drop(listener);
    assert!(!observer.listeners().unwrap().iter().any(|l| l.port == port));
    assert!(observer.listeners_on(port).unwrap().is_empty());
}

/// Kills and reaps the child when the test ends, pass or fail.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_listener(observer: &mut Observer, port: u16, child: &mut Child) -> Listener {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(found) = observer.listeners_on(port).unwrap().into_iter().next() {
            return found;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the listener exited early: {status}");
        }
        assert!(Instant::now() < deadline, "nothing listened on {port} in time");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn python3() -> &'static Path {
    // The system interpreter: a per-user shim (pyenv) is not usable by another user.
    ["/usr/bin/python3", "/usr/local/bin/python3"]
        .iter()
        .map(Path::new)
        .find(|p| p.exists())
        .expect("python3 for the other user's listener")
}

#[test]
fn another_users_listener_has_their_uid_type_and_project_and_is_redacted_for_third_parties() {
    if me().1 != 0 {
        eprintln!("skipping: creating a user and running a listener as it needs root");
        return;
    }
    let (uid, gid) = ensure_user(OTHER_USER);

    // Its working directory is inside a git repository.
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().canonicalize().unwrap().join("shop");
    let cwd = repo.join("web/static");
    fs::create_dir_all(&cwd).unwrap();
    fs::create_dir(repo.join(".git")).unwrap();
    // The temporary directory is private to root; the other user must enter it.
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();

    let port = free_port();
    let argv = [
        python3().to_str().unwrap().to_string(),
        "-m".into(),
        "http.server".into(),
        port.to_string(),
        "--bind".into(),
        "127.0.0.1".into(),
    ];
    let mut child = Reaped(
        as_user(uid, gid, &argv[0])
            .args(&argv[1..])
            .current_dir(&cwd)
            .env("HOME", "/nonexistent")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("setpriv"),
    );

    let mut observer = Observer::new().unwrap();
    let seen = wait_for_listener(&mut observer, port, &mut child.0);
    assert_eq!(seen.uid, uid);
    assert_eq!(seen.user.as_deref(), Some(OTHER_USER));
    // setpriv execs the interpreter, so the child's pid is the listener's.
    assert_eq!(seen.pid, Some(child.0.id()));
    assert_eq!(seen.command, Some(argv.join(" ")));
    let expected_type = infer_service_type(&argv);
    assert!(expected_type.is_some(), "the tools table knows python3 -m http.server");
    assert_eq!(seen.service_type.as_deref(), expected_type);
    assert_eq!(seen.project, Some(repo.to_string_lossy().into_owned()));

    // The full listing agrees with the per-port lookup.
    let listed = observer.listeners().unwrap();
    assert_eq!(listed.iter().find(|l| l.port == port), Some(&seen));

    // Root and the owner see everything; a third user sees who and what, not the details.
    for viewer in [0, uid] {
        let mut shown = seen.clone();
        Observer::redact(&mut shown, viewer);
        assert_eq!(shown, seen);
    }
    let mut shown = seen.clone();
    Observer::redact(&mut shown, uid + 1);
    assert_eq!(
        (shown.uid, shown.user.as_deref(), shown.service_type.as_deref()),
        (uid, Some(OTHER_USER), expected_type)
    );
    assert_eq!((shown.port, &shown.protocol, &shown.address), (port, &seen.protocol, &seen.address));
    assert_eq!((shown.pid, shown.process, shown.command, shown.project), (None, None, None, None));

    // Once it exits, its port is free again in the observer's eyes.
    drop(child);
    assert!(observer.listeners_on(port).unwrap().is_empty());
    assert!(!observer.listeners().unwrap().iter().any(|l| l.port == port));
}
