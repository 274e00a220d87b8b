//! What the preload leaves alone: port 0, UDP, ports below 1024, and
//! everything when STYXY_PRELOAD=off. The program sees the kernel's answer.

use styxy_testkit::*;

fn serve(sandbox: &Sandbox, args: &[&str]) -> Running {
    let mut cmd = sandbox.command(c_program("serve"));
    cmd.args(args);
    Running::start(cmd)
}

fn assert_refused(mut program: Running, call: &str, host: &str, port: u16, why: &str) {
    assert!(!program.wait_exit().success());
    assert_eq!(program.err, [format!("{call} {host} {port}: {why}")]);
}

#[test]
fn port_zero_gets_whatever_the_kernel_picks() {
    let sandbox = Sandbox::new();
    let mut server = serve(&sandbox, &["127.0.0.1", "0"]);
    let port = server.listening();
    assert_ne!(port, 0);
    assert_eq!(ask("127.0.0.1", port, ""), format!("serve {} {port}\n", server.pid()));
    assert_eq!(server.stop(), Vec::<String>::new());
}

#[test]
fn udp_on_a_busy_port_gets_eaddrinuse() {
    let sandbox = Sandbox::new();
    let holder = hold("127.0.0.1", 0, Hold { udp: true, ..Hold::default() });
    let port = local_port(&holder);
    let program = serve(&sandbox, &["-u", "127.0.0.1", &port.to_string()]);
    assert_refused(program, "bind", "127.0.0.1", port, "Address already in use");
}

#[test]
fn a_busy_port_below_1024_gets_the_kernels_answer() {
    let sandbox = Sandbox::new();
    // As root the test can hold a low port and the program gets EADDRINUSE;
    // otherwise the program gets EACCES. Either way, unchanged.
    let held = (1000..1024).find_map(|p| std::net::TcpListener::bind(("127.0.0.1", p)).ok().map(|l| (l, p)));
    match held {
        Some((_holder, port)) => {
            let program = serve(&sandbox, &["127.0.0.1", &port.to_string()]);
            assert_refused(program, "bind", "127.0.0.1", port, "Address already in use");
        }
        None => {
            let program = serve(&sandbox, &["127.0.0.1", "1000"]);
            assert_refused(program, "bind", "127.0.0.1", 1000, "Permission denied");
        }
    }
}

#[test]
fn styxy_preload_off_leaves_a_busy_port_to_fail() {
    let sandbox = Sandbox::new();
    let (_holder, port) = busy_port();
    let mut cmd = sandbox.command(c_program("serve"));
    cmd.env("STYXY_PRELOAD", "off").args(["0.0.0.0", &port.to_string()]);
    assert_refused(Running::start(cmd), "bind", "0.0.0.0", port, "Address already in use");
}
