//! Moves recorded with a running allocator: the line names who holds the
//! port, the allocation shows up in GET /allocations with the port the
//! program asked for, and a stopped or failing allocator does not keep the
//! program from starting.

use serde_json::Value;
use styxy_testkit::*;

/// A python3 process (not preloaded) listening on a free port.
fn python_holder(sandbox: &Sandbox) -> (Running, u16) {
    let mut cmd = sandbox.command("python3");
    cmd.env_remove("LD_PRELOAD").arg(js_program("hold.py"));
    let mut holder = Running::start(cmd);
    let port = holder.listening();
    (holder, port)
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).expect("comm").trim().to_string()
}

/// The one allocation of `pid`, checked to record the move.
fn recorded_move(sandbox: &Sandbox, pid: u32, requested: u16, now: u16) -> Value {
    let mine = sandbox.allocations_of(pid);
    assert_eq!(mine.len(), 1, "{mine:#?}");
    let a = &mine[0];
    assert_eq!(
        (a["port"].as_u64(), a["requested_port"].as_u64()),
        (Some(now.into()), Some(requested.into())),
        "{a:#?}"
    );
    assert_eq!(a["source"], "preload");
    assert_eq!(a["service_name"], comm(pid));
    a.clone()
}

fn serve(sandbox: &Sandbox, args: &[&str]) -> Running {
    let mut cmd = sandbox.command(c_program("serve"));
    cmd.args(args);
    Running::start(cmd)
}

#[test]
fn python_http_server_move_names_the_holder_and_is_recorded() {
    let sandbox = Sandbox::new();
    let _allocator = Allocator::start(&sandbox);
    let (holder, busy) = python_holder(&sandbox);
    let mut cmd = sandbox.command("python3");
    cmd.args(["-m", "http.server", &busy.to_string()]);
    let mut server = Running::start(cmd);

    let shown = server.listening();
    let (requested, now) = server.the_move();
    assert_eq!((requested, shown), (busy, now));
    let line = &server.styxy_lines()[0];
    let by = format!("styxy: port {busy} is in use by {} (pid {}", comm(holder.pid()), holder.pid());
    assert!(line.starts_with(&by), "{line:?} should start with {by:?}");
    assert!(http_get("127.0.0.1", now).starts_with("HTTP/1.0 200"));
    recorded_move(&sandbox, server.pid(), busy, now);
}

#[test]
fn a_second_copy_of_a_server_is_told_which_copy_holds_the_port() {
    let sandbox = Sandbox::new();
    let _allocator = Allocator::start(&sandbox);
    let (_holder, busy) = busy_port();
    let mut first = serve(&sandbox, &["0.0.0.0", &busy.to_string()]);
    let (_, first_port) = first.the_move();
    let kind = recorded_move(&sandbox, first.pid(), busy, first_port)["service_type"].clone();

    // The port the first copy was moved to is now an allocation of its own.
    let mut second = serve(&sandbox, &["0.0.0.0", &first_port.to_string()]);
    let now = second.listening();
    assert_eq!(second.the_move(), (first_port, now));
    assert_eq!(
        second.styxy_lines(),
        [format!(
            "styxy: port {first_port} is in use by {} (pid {}, {}); listening on {now} instead",
            comm(first.pid()),
            first.pid(),
            kind.as_str().expect("service type")
        )]
    );
    assert_eq!(ask("127.0.0.1", now, ""), format!("serve {} {now}\n", second.pid()));
    recorded_move(&sandbox, second.pid(), first_port, now);
}

#[test]
fn another_users_listener_is_named_even_where_styxy_allocated_the_port_to_someone() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping: running a listener as another user needs root");
        return;
    }
    let sandbox = Sandbox::new();
    let _allocator = Allocator::start(&sandbox);
    // styxy hands a port to this test, which does not serve it...
    let body = serde_json::json!({"service_type": "api", "service_name": "reserved", "lease": "manual"});
    let reserved = sandbox.post("/allocate", &body).1["port"].as_u64().expect("a port") as u16;
    // ...and another user's program, which styxy does not reach, listens
    // there all the same (the system interpreter: a pyenv shim is root's).
    let mut cmd = as_user(65534, 65534, "/usr/bin/python3");
    cmd.arg(js_program("hold.py")).arg(reserved.to_string());
    let mut squatter = Running::start(cmd);
    assert_eq!(squatter.listening(), reserved);

    let mut server = serve(&sandbox, &["0.0.0.0", &reserved.to_string()]);
    let (requested, _) = server.the_move();
    assert_eq!(requested, reserved);
    // Root sees the other user's process in full.
    let line = &server.styxy_lines()[0];
    let by = format!("styxy: port {reserved} is in use by {} (pid {}", comm(squatter.pid()), squatter.pid());
    assert!(line.starts_with(&by), "{line:?} should start with {by:?}");
}

#[test]
fn node_server_move_is_recorded() {
    let sandbox = Sandbox::new();
    let _allocator = Allocator::start(&sandbox);
    let (_holder, busy) = busy_port();
    let mut cmd = sandbox.command("node");
    cmd.arg(js_program("server.js")).arg(busy.to_string());
    let mut server = Running::start(cmd);
    let now = server.listening();
    assert_eq!(server.the_move(), (busy, now));
    assert!(http_get("::1", now).ends_with(&format!("node {}\n", server.pid())));
    recorded_move(&sandbox, server.pid(), busy, now);
}

#[test]
fn v4_and_v6_of_one_port_make_one_allocation() {
    let sandbox = Sandbox::new();
    let _allocator = Allocator::start(&sandbox);
    let (_holder, busy) = busy_port();
    let p = busy.to_string();
    let mut server = serve(&sandbox, &["-a", "-6", "127.0.0.1", &p, "::1", &p]);
    let ports = server.listening_ports(2);
    let (_, now) = server.the_move();
    assert_eq!(ports, [now, now]);
    recorded_move(&sandbox, server.pid(), busy, now);
    assert_eq!(server.stop().len(), 1);
}

#[test]
fn reuseport_workers_sharing_their_port_record_nothing() {
    let sandbox = Sandbox::new();
    let _allocator = Allocator::start(&sandbox);
    let port = local_port(&hold("0.0.0.0", 0, Hold::default()));
    let mut server = serve(&sandbox, &["-p", "-w", "3", "0.0.0.0", &port.to_string()]);
    assert_eq!(server.listening_ports(3), [port; 3]);
    assert_eq!(sandbox.get("/allocations").1["allocations"], serde_json::json!([]));
    assert_eq!(server.stop(), Vec::<String>::new());
}

#[test]
fn a_port_the_allocator_gave_another_process_is_avoided() {
    let sandbox = Sandbox::new();
    let _allocator = Allocator::start(&sandbox);
    // The kernel would let anyone bind it: only the allocator knows.
    let mut owner = std::process::Command::new("sleep").arg("60").spawn().expect("sleep");
    let (_, grant) = sandbox.post("/allocate", &serde_json::json!({"service_type": "dev", "pid": owner.id()}));
    let port = grant["port"].as_u64().unwrap_or_else(|| panic!("{grant}")) as u16;

    let mut server = serve(&sandbox, &["0.0.0.0", &port.to_string()]);
    let now = server.listening();
    assert_eq!(server.the_move(), (port, now));
    let line = &server.styxy_lines()[0];
    assert!(line.starts_with(&format!("styxy: port {port} is in use by sleep (pid {}", owner.id())), "{line}");
    recorded_move(&sandbox, server.pid(), port, now);
    let _ = owner.kill();
    let _ = owner.wait();
}

#[test]
fn a_stopped_allocator_does_not_keep_the_program_from_starting() {
    let sandbox = Sandbox::new();
    let allocator = Allocator::start(&sandbox);
    allocator.signal(libc::SIGSTOP);
    let (_holder, busy) = busy_port();
    let mut server = serve(&sandbox, &["0.0.0.0", &busy.to_string()]);
    let now = server.listening();
    assert_eq!(server.the_move(), (busy, now));
    // Served while the allocator is still stopped.
    assert_eq!(ask("127.0.0.1", now, ""), format!("serve {} {now}\n", server.pid()));
    allocator.signal(libc::SIGCONT);
}

/// Makes the allocator's state files immutable (even to root) while alive.
struct Immutable(Vec<std::path::PathBuf>);

impl Immutable {
    fn new(dir: &std::path::Path) -> Immutable {
        let files: Vec<_> = std::fs::read_dir(dir).expect("state dir").map(|e| e.expect("entry").path()).collect();
        let status = std::process::Command::new("chattr").arg("+i").args(&files).status().expect("run chattr");
        assert!(status.success(), "chattr +i needs root and a filesystem that supports it");
        Immutable(files)
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr").arg("-i").args(&self.0).status();
    }
}

#[test]
fn an_allocator_that_cannot_write_its_state_does_not_keep_the_program_from_starting() {
    let sandbox = Sandbox::new();
    let _allocator = Allocator::start(&sandbox);
    let _frozen = Immutable::new(&sandbox.state_dir());
    let (_holder, busy) = busy_port();
    let mut server = serve(&sandbox, &["0.0.0.0", &busy.to_string()]);
    let now = server.listening();
    assert_eq!(server.the_move(), (busy, now));
    assert_eq!(server.styxy_lines(), [format!("styxy: port {busy} is in use; listening on {now} instead")]);
    assert_eq!(ask("127.0.0.1", now, ""), format!("serve {} {now}\n", server.pid()));
    assert_eq!(sandbox.allocations_of(server.pid()), Vec::<Value>::new());
}
