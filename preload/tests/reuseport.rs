//! SO_REUSEPORT: with it on both sides the kernel shares a port instead of
//! refusing it. Workers of one server share on purpose and must stay; a
//! program landing on someone else's listener must move.

use styxy_testkit::*;

#[test]
fn forked_workers_sharing_a_reuseport_port_are_not_moved() {
    let sandbox = Sandbox::new();
    // A free port: take one and let it go.
    let port = local_port(&hold("0.0.0.0", 0, Hold::default()));
    let mut cmd = sandbox.command(c_program("serve"));
    cmd.args(["-p", "-w", "3", "0.0.0.0", &port.to_string()]);
    let mut server = Running::start(cmd);
    let ports = server.listening_ports(3);
    assert_eq!(ports, [port; 3], "every worker on the port asked for");
    let answer = ask("127.0.0.1", port, "");
    assert!(answer.starts_with("serve ") && answer.ends_with(&format!(" {port}\n")), "{answer}");
    assert_eq!(server.stop(), Vec::<String>::new());
}

#[test]
fn a_reuseport_server_on_another_programs_reuseport_listener_moves() {
    let sandbox = Sandbox::new();
    let holder = hold("0.0.0.0", 0, Hold { reuseport: true, ..Hold::default() });
    let port = local_port(&holder);
    let mut cmd = sandbox.command(c_program("serve"));
    cmd.args(["-p", "0.0.0.0", &port.to_string()]);
    let mut server = Running::start(cmd);
    let shown = server.listening();
    let (requested, now) = server.the_move();
    assert_eq!((requested, shown), (port, now));
    assert!(now > port && now <= port + 100, "{port} -> {now}");
    assert_eq!(ask("127.0.0.1", now, ""), format!("serve {} {now}\n", server.pid()));
    assert_eq!(server.stop().len(), 1);
}
