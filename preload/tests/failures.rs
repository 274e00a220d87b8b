//! When the allocator is absent or hung the program still starts (the move
//! is decided locally), and ports the allocator reserved for other owners
//! (its port map) count as busy without asking it.

use std::os::unix::net::UnixListener;
use styxy_testkit::*;

fn start_serve(sandbox: &Sandbox, port: u16) -> Running {
    let mut cmd = sandbox.command(c_program("serve"));
    cmd.args(["0.0.0.0", &port.to_string()]);
    Running::start(cmd)
}

/// Starts `serve` on `port` and returns the port it moved to.
fn moved_from(sandbox: &Sandbox, port: u16) -> u16 {
    let mut server = start_serve(sandbox, port);
    let shown = server.listening();
    let (requested, now) = server.the_move();
    assert_eq!((requested, shown), (port, now));
    assert_eq!(ask("127.0.0.1", now, ""), format!("serve {} {now}\n", server.pid()));
    assert_eq!(server.stop().len(), 1);
    now
}

#[test]
fn without_an_allocator_the_move_goes_to_a_free_port_above() {
    let sandbox = Sandbox::new();
    assert!(!sandbox.socket().exists());
    let (_holder, busy) = busy_port();
    let now = moved_from(&sandbox, busy);
    assert!(now > busy && now <= busy + 100, "{busy} -> {now}");
}

#[test]
fn a_hung_allocator_does_not_keep_the_program_from_starting() {
    // A socket that accepts connections (the kernel does, up to its
    // backlog) but never answers: what a SIGSTOPped allocator looks like.
    let sandbox = Sandbox::new();
    let hung = UnixListener::bind(sandbox.socket()).expect("bind the hung socket");
    let (_holder, busy) = busy_port();
    let now = moved_from(&sandbox, busy);
    assert!(now > busy && now <= busy + 100, "{busy} -> {now}");
    // The program gave up on the allocator while it still held on.
    drop(hung);
}

#[test]
fn a_port_reserved_for_another_process_counts_as_busy() {
    let sandbox = Sandbox::new();
    let port = local_port(&hold("0.0.0.0", 0, Hold::default()));
    // Another live process, not an ancestor of the program.
    let mut other = std::process::Command::new("sleep").arg("60").spawn().expect("sleep");
    // The port right above is reserved too, without a live owner.
    sandbox.write_port_map(&[(port, other.id()), (port + 1, u32::MAX)]);
    let now = moved_from(&sandbox, port);
    assert!(now > port + 1 && now <= port + 100, "{port} -> {now}");
    let _ = other.kill();
    let _ = other.wait();
}

#[test]
fn a_port_reserved_for_the_programs_own_parent_is_its_to_use() {
    // `styxy run` (or a session shell) reserves the port, then starts the
    // server as its child.
    let sandbox = Sandbox::new();
    let port = local_port(&hold("0.0.0.0", 0, Hold::default()));
    sandbox.write_port_map(&[(port, std::process::id())]);
    let mut server = start_serve(&sandbox, port);
    assert_eq!(server.listening(), port);
    assert_eq!(ask("127.0.0.1", port, ""), format!("serve {} {port}\n", server.pid()));
    assert_eq!(server.stop(), Vec::<String>::new());
}

#[test]
fn a_reservation_whose_owner_is_gone_does_not_count() {
    let sandbox = Sandbox::new();
    let port = local_port(&hold("0.0.0.0", 0, Hold::default()));
    let mut gone = std::process::Command::new("true").spawn().expect("true");
    let gone_pid = gone.id();
    gone.wait().expect("wait");
    sandbox.write_port_map(&[(port, gone_pid)]);
    let mut server = start_serve(&sandbox, port);
    assert_eq!(server.listening(), port);
    assert_eq!(server.stop(), Vec::<String>::new());
}

/// A reservation no process owns (a session's, a manual one, one made over
/// TCP) is named in the map by its user: it outlives the shell that asked.
fn reserved_for_user(sandbox: &Sandbox, uid: u32) -> u16 {
    let port = local_port(&hold("0.0.0.0", 0, Hold::default()));
    sandbox.write_port_map(&[(port, styxy_proto::portmap::user_entry(uid))]);
    port
}

#[test]
fn a_reservation_held_for_another_user_keeps_this_program_off_it() {
    let sandbox = Sandbox::new();
    // SAFETY: geteuid cannot fail.
    let other = unsafe { libc::geteuid() } + 1;
    let port = reserved_for_user(&sandbox, other);
    let now = moved_from(&sandbox, port);
    assert!(now > port && now <= port + 100, "{port} -> {now}");
}

#[test]
fn a_reservation_held_for_this_user_is_its_programs_to_use() {
    let sandbox = Sandbox::new();
    // SAFETY: geteuid cannot fail.
    let port = reserved_for_user(&sandbox, unsafe { libc::geteuid() });
    let mut server = start_serve(&sandbox, port);
    assert_eq!(server.listening(), port);
    assert_eq!(server.stop(), Vec::<String>::new());
}
