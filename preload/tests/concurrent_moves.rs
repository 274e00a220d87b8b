//! Eight threads of one program moving at once each get their own port,
//! and each move is recorded. Alone in its own test binary (cargo runs
//! binaries one after another) so sibling tests' servers do not share the
//! cores: the preload waits at most 90 ms for the allocator before it
//! decides alone, and a move decided alone is not recorded.

use styxy_testkit::*;

#[test]
fn eight_threads_get_eight_recorded_ports() {
    let sandbox = Sandbox::new();
    let _allocator = Allocator::start(&sandbox);
    let holders: Vec<_> = (0..8).map(|_| busy_port()).collect();
    let mut args = vec!["-t".to_string()];
    for (_, port) in &holders {
        args.extend(["0.0.0.0".to_string(), port.to_string()]);
    }
    let mut cmd = sandbox.command(c_program("serve"));
    cmd.args(args);
    let mut server = Running::start(cmd);
    let mut shown = server.listening_ports(8);
    let mut recorded: Vec<u16> =
        sandbox.allocations_of(server.pid()).iter().map(|a| a["port"].as_u64().expect("port") as u16).collect();
    shown.sort();
    recorded.sort();
    assert_eq!(recorded, shown);
    shown.dedup();
    assert_eq!(shown.len(), 8);
}
