//! Real servers started on a busy port move to a free one, say so on stderr
//! in one line, and answer on the new port. No allocator runs here: these
//! are the local decisions (the allocator-backed ones are in allocator.rs).
//!
//! Go programs are out of reach: Go issues the bind/listen syscalls itself
//! instead of calling libc, so LD_PRELOAD never sees them and a Go server
//! on a busy port fails as it would without Styxy.

use styxy_testkit::*;

fn assert_moved_up(requested: u16, now: u16) {
    assert!(now > requested && now <= requested + 100, "moved {requested} -> {now}");
}

#[test]
fn python_http_server_on_a_busy_port_serves_on_the_next_free_one() {
    let sandbox = Sandbox::new();
    std::fs::write(sandbox.path().join("marker-python.txt"), "x").expect("marker file");
    let (_holder, busy) = busy_port();
    let mut cmd = sandbox.command("python3");
    cmd.args(["-m", "http.server", &busy.to_string()]);
    let mut server = Running::start(cmd);

    let shown = server.listening();
    let (requested, now) = server.the_move();
    assert_eq!(requested, busy);
    assert_moved_up(busy, now);
    // Python reports the port it really got.
    assert_eq!(shown, now);
    let page = http_get("127.0.0.1", now);
    assert!(page.starts_with("HTTP/1.0 200"), "{page}");
    assert!(page.contains("marker-python.txt"), "{page}");
    assert_eq!(server.stop().len(), 1, "one line");
    // Nothing of ours on stdout.
    assert!(server.out.iter().all(|l| !l.contains("styxy")), "{:?}", server.out);
}

#[test]
fn node_server_on_the_ipv6_wildcard_moves_and_answers_on_both_families() {
    let sandbox = Sandbox::new();
    let (_holder, busy) = busy_port();
    let mut cmd = sandbox.command("node");
    cmd.arg(js_program("server.js")).arg(busy.to_string());
    let mut server = Running::start(cmd);

    let shown = server.listening();
    let (requested, now) = server.the_move();
    assert_eq!((requested, shown), (busy, now));
    assert_moved_up(busy, now);
    let pid = server.pid();
    for host in ["127.0.0.1", "::1"] {
        let answer = http_get(host, now);
        assert!(answer.ends_with(&format!("node {pid}\n")), "{host}: {answer}");
    }
    assert_eq!(server.stop().len(), 1, "one line");
}

/// A program with SO_REUSEADDR that binds a port another SO_REUSEADDR
/// socket has bound but not yet listened on (the kernel allows that), then
/// listens after the other one did: its listen() is where the conflict
/// shows. Returns the program, waiting in listen's aftermath, and the port.
fn conflict_at_listen(sandbox: &Sandbox, preload: bool) -> (Running, u16) {
    let holder = hold("0.0.0.0", 0, Hold { reuseaddr: true, no_listen: true, ..Hold::default() });
    let port = local_port(&holder);
    let mut cmd = sandbox.command(c_program("serve"));
    if !preload {
        cmd.env("STYXY_PRELOAD", "off");
    }
    cmd.args(["-a", "-g", "0.0.0.0", &port.to_string()]);
    let mut server = Running::start(cmd);
    let bound = server.stdout_line(|l| l.starts_with("bound "));
    assert_eq!(bound, format!("bound 0.0.0.0 {port}"), "the bind itself succeeds");
    // SAFETY: listen on the holder's own descriptor.
    assert_eq!(unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&holder), 16) }, 0);
    server.send_line("go");
    // The holder stays busy as long as the program runs.
    std::mem::forget(holder);
    (server, port)
}

#[test]
fn a_conflict_that_only_shows_at_listen_is_moved_there() {
    let sandbox = Sandbox::new();
    let (mut without, port) = conflict_at_listen(&sandbox, false);
    assert!(!without.wait_exit().success());
    assert_eq!(without.err, [format!("listen 0.0.0.0 {port}: Address already in use")]);

    let (mut server, port) = conflict_at_listen(&sandbox, true);
    let shown = server.listening();
    let (requested, now) = server.the_move();
    assert_eq!((requested, shown), (port, now));
    assert_moved_up(port, now);
    assert_eq!(ask("127.0.0.1", now, ""), format!("serve {} {now}\n", server.pid()));
    assert_eq!(server.stop().len(), 1, "one line");
}

/// Binds 127.0.0.1:P and [::1]:P (v6-only) in one program.
fn both_families(port: u16) -> u16 {
    let sandbox = Sandbox::new();
    let mut cmd = sandbox.command(c_program("serve"));
    cmd.args(["-a", "-6", "127.0.0.1", &port.to_string(), "::1", &port.to_string()]);
    let mut server = Running::start(cmd);
    let ports = server.listening_ports(2);
    let (requested, now) = server.the_move();
    assert_eq!(requested, port);
    assert_eq!(ports, [now, now], "v4 and v6 on the same new port");
    for host in ["127.0.0.1", "::1"] {
        assert_eq!(ask(host, now, ""), format!("serve {} {now}\n", server.pid()), "{host}");
    }
    assert_eq!(server.stop().len(), 1, "one line for the two sockets");
    now
}

#[test]
fn v4_and_v6_sockets_of_one_port_move_together_when_v4_is_busy() {
    let (_holder, busy) = busy_port();
    let now = both_families(busy);
    assert_moved_up(busy, now);
}

#[test]
fn a_v4_bind_moves_when_only_the_v6_side_of_its_port_is_taken() {
    // The kernel would let 127.0.0.1:P bind, but `localhost` (::1 first)
    // would then reach the other server.
    let holder = hold("::1", 0, Hold { v6only: true, reuseaddr: true, ..Hold::default() });
    let busy = local_port(&holder);
    let now = both_families(busy);
    assert_moved_up(busy, now);
}

#[test]
fn eight_threads_binding_busy_ports_at_once_each_get_their_own_port() {
    let sandbox = Sandbox::new();
    let holders: Vec<_> = (0..8).map(|_| busy_port()).collect();
    let mut cmd = sandbox.command(c_program("serve"));
    cmd.arg("-t");
    for (_, port) in &holders {
        cmd.args(["0.0.0.0", &port.to_string()]);
    }
    let mut server = Running::start(cmd);
    let mut shown = server.listening_ports(8);
    // Let the last stderr lines arrive with the last stdout line.
    let pid = server.pid();
    for &port in &shown {
        assert_eq!(ask("127.0.0.1", port, ""), format!("serve {pid} {port}\n"));
    }
    let lines = server.stop();
    let moves: Vec<(u16, u16)> = lines.iter().map(|l| moved_line(l).unwrap_or_else(|| panic!("{l}"))).collect();
    let mut requested: Vec<u16> = moves.iter().map(|m| m.0).collect();
    let mut expected: Vec<u16> = holders.iter().map(|h| h.1).collect();
    requested.sort();
    expected.sort();
    assert_eq!(requested, expected, "one line per busy port");
    let mut new: Vec<u16> = moves.iter().map(|m| m.1).collect();
    new.sort();
    shown.sort();
    assert_eq!(new, shown);
    new.dedup();
    assert_eq!(new.len(), 8, "eight different ports: {moves:?}");
}

#[test]
fn styxy_quiet_moves_without_a_word() {
    let sandbox = Sandbox::new();
    let (_holder, busy) = busy_port();
    let mut cmd = sandbox.command(c_program("serve"));
    cmd.env("STYXY_QUIET", "1").args(["0.0.0.0", &busy.to_string()]);
    let mut server = Running::start(cmd);
    let now = server.listening();
    assert_moved_up(busy, now);
    assert_eq!(ask("127.0.0.1", now, ""), format!("serve {} {now}\n", server.pid()));
    assert_eq!(server.stop(), Vec::<String>::new());
}
