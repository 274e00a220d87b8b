//! Black-box tests of `styxy` against a real allocator it starts itself on a
//! temp socket.

use std::time::{Duration, Instant};
use styxy_testkit::{Sandbox, text};

fn port_of(v: &serde_json::Value) -> u16 {
    v["port"].as_u64().expect("port") as u16
}

#[test]
fn allocate_list_check_release_round_trip() {
    let sb = Sandbox::new();
    let socket = sb.socket();

    // The first command starts the allocator on $STYXY_SOCKET.
    let a = sb.json(&["allocate", "-s", "dev", "-n", "web"]);
    assert!(socket.exists(), "no allocator socket at {}", socket.display());
    assert_eq!(a["success"], true);
    let port = port_of(&a);
    assert!((3000..=3099).contains(&port), "dev port {port}");
    let lock_id = a["lock_id"].as_str().unwrap().to_string();

    // The owner is the process that ran styxy (this test), lease process.
    let listed = sb.json(&["list"]);
    let mine = listed["allocations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["lock_id"] == lock_id.as_str())
        .expect("allocation listed");
    assert_eq!(mine["owner"]["pid"], std::process::id());
    assert_eq!(mine["lease"], "process");
    assert_eq!(mine["source"], "cli");

    let o = sb.run(&["list"]);
    assert_eq!(o.status.code(), Some(0));
    let table = text(&o.stdout);
    let header = table.lines().next().unwrap();
    assert!(header.starts_with("PORT  ") && header.contains("LOCK_ID"), "{table}");
    let row = table.lines().find(|l| l.starts_with(&format!("{port} "))).expect("row for the port");
    for cell in ["dev", "web", "process", lock_id.as_str(), &std::process::id().to_string()] {
        assert!(row.contains(cell), "row lacks {cell}: {row}");
    }

    let o = sb.run(&["check", &port.to_string()]);
    assert_eq!(o.status.code(), Some(0));
    let said = text(&o.stdout);
    assert!(said.starts_with(&format!("Port {port} is in use\n")), "{said}");
    assert!(said.contains("dev service 'web'") && said.contains(&lock_id), "{said}");

    let o = sb.run(&["release", &lock_id]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), format!("Port {port} released\n"));
    assert!(text(&sb.run(&["check", &port.to_string()]).stdout).starts_with(&format!("Port {port} is available")));
    assert_eq!(text(&sb.run(&["list"]).stdout), "No active port allocations\n");

    // Releasing again is refused, with the allocator's code.
    let o = sb.run(&["release", &lock_id]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("[not_found]"), "{}", text(&o.stderr));
    let o = sb.styxy().args(["--json", "release", &lock_id]).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let body: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((body["success"].clone(), body["error"].clone()), (false.into(), "not_found".into()));

    let o = sb.run(&["daemon", "status"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(text(&o.stdout).starts_with("Status: running (user mode)"), "{}", text(&o.stdout));

    let o = sb.run(&["daemon", "stop"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(sb.allocator_pids().is_empty(), "allocator still running after daemon stop");
    assert_eq!(sb.run(&["--no-autostart", "list"]).status.code(), Some(3));
}

#[test]
fn requested_port_and_dry_run() {
    let sb = Sandbox::new();
    // Any api port nobody on this machine listens on.
    let wanted = (8010..8099).find(|p| styxy_observe::probe::is_free(*p)).expect("a free api port").to_string();
    let first = sb.json(&["allocate", "-s", "api", "-p", &wanted]);
    assert_eq!(port_of(&first).to_string(), wanted);
    // The same port again moves to another one and says who holds it.
    let o = sb.run(&["allocate", "-s", "api", "-p", &wanted, "-n", "second"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let said = text(&o.stdout);
    assert!(said.starts_with(&format!("Port {wanted} is held by api service")), "{said}");
    assert!(said.contains("allocated for api service 'second'"), "{said}");

    let dry = sb.json(&["allocate", "-s", "api", "--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    let count = sb.json(&["list"])["allocations"].as_array().unwrap().len();
    assert_eq!(count, 2, "a dry run reserved something");
}

#[test]
fn run_exports_the_port_and_frees_it_when_the_command_exits() {
    let sb = Sandbox::new();
    let styxy = env!("CARGO_BIN_EXE_styxy");
    // Inside the command: the port, the lock id, and an allocation owned by
    // the command's own pid ($$: styxy exec'd into it).
    // With the preload off, PORT is a free port (with it, the type's
    // canonical port: tests/scopes.rs).
    let script = format!("echo \"$PORT $STYXY_PORT $STYXY_LOCK_ID $$\"; {styxy} --json list");
    let mut run = sb.styxy();
    run.env("STYXY_PRELOAD", "off").args(["run", "-s", "dev", "-n", "job", "--", "sh", "-c", &script]);
    let o = run.output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let (first, rest) = out.split_once('\n').unwrap();
    let fields: Vec<&str> = first.split(' ').collect();
    let port: u16 = fields[0].parse().unwrap_or_else(|_| panic!("PORT not set: {out}"));
    assert_eq!(fields[1], fields[0]);
    let listed: serde_json::Value = serde_json::from_str(rest).unwrap();
    let a = listed["allocations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["lock_id"] == fields[2])
        .unwrap_or_else(|| panic!("no allocation {} in {listed}", fields[2]));
    assert_eq!(a["port"], port);
    assert_eq!(a["owner"]["pid"].to_string(), fields[3]);
    assert_eq!(a["source"], "run");
    assert_eq!(a["service_name"], "job");

    // The command has exited: its port is free again.
    let check = sb.json(&["check", &port.to_string()]);
    assert_eq!(check["available"], true, "{check}");
    assert!(sb.json(&["list"])["allocations"].as_array().unwrap().is_empty());

    // The command's status comes back through styxy.
    let o = sb.styxy().args(["run", "--", "sh", "-c", "exit 42"]).output().unwrap();
    assert_eq!(o.status.code(), Some(42));
}

#[test]
fn ten_racing_clients_start_exactly_one_allocator() {
    let sb = Sandbox::new();
    let clients: Vec<_> = (0..10)
        .map(|_| sb.styxy().args(["--json", "list"]).stdout(std::process::Stdio::piped()).spawn().unwrap())
        .collect();
    for c in clients {
        let o = c.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
        let body: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert!(body["allocations"].is_array());
    }
    // Allocators that lost the race exit on their own; wait for them.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut pids = sb.allocator_pids();
    while pids.len() > 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        pids = sb.allocator_pids();
    }
    assert_eq!(pids.len(), 1, "allocators running: {pids:?}");
}

#[test]
fn list_shows_a_hundred_allocations_in_json_and_table() {
    let sb = Sandbox::new();
    std::fs::write(sb.config_file(), "[service_types.bulk]\nrange = [21000, 21999]\n").unwrap();
    let mut ports = Vec::new();
    for i in 0..100 {
        let a = sb.json(&["allocate", "-s", "bulk", "-n", &format!("svc{i}")]);
        ports.push(port_of(&a));
    }
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 100);

    let listed = sb.json(&["list"]);
    let mut listed_ports: Vec<u16> = listed["allocations"].as_array().unwrap().iter().map(port_of).collect();
    listed_ports.sort_unstable();
    assert_eq!(listed_ports, ports);

    let table = text(&sb.run(&["list"]).stdout);
    let rows: Vec<&str> = table.lines().skip(1).collect();
    assert_eq!(rows.len(), 100, "{table}");
    let row_ports: Vec<u16> = rows.iter().map(|r| r.split_whitespace().next().unwrap().parse().unwrap()).collect();
    assert_eq!(row_ports, ports, "rows are not in port order");
    // Aligned: every row's TYPE column starts where the header's does.
    let type_at = table.lines().next().unwrap().find("TYPE").unwrap();
    assert!(rows.iter().all(|r| r[type_at..].starts_with("bulk ")), "{table}");
}

#[test]
fn doctor_reports_a_healthy_user_setup() {
    let sb = Sandbox::new();
    let lib = sb.path().join("libstyxy_preload.so");
    std::fs::write(&lib, b"stand-in").unwrap();
    let o = sb.styxy().env("STYXY_PRELOAD_LIB", &lib).args(["--json", "doctor"]).output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).expect("pure JSON");
    let checks = report["checks"].as_array().unwrap();
    let names: Vec<&str> = checks.iter().map(|c| c["check"].as_str().unwrap()).collect();
    assert_eq!(names, ["socket", "allocator", "config", "state dir", "preload", "sock_diag"]);
    for c in checks {
        assert_eq!(c["status"], "ok", "{c}");
    }
    assert_eq!(report["status"], "healthy");
    assert_eq!(o.status.code(), Some(0));

    // A broken config file makes it unhealthy, and says where.
    std::fs::write(sb.config_file(), "[service_types.x]\nrange = [9, 1]\n").unwrap();
    let o = sb.styxy().env("STYXY_PRELOAD_LIB", &lib).arg("doctor").output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let said = text(&o.stdout);
    let config_row = said.lines().find(|l| l.starts_with("config ")).unwrap();
    assert!(config_row.contains("error") && config_row.contains("config.toml"), "{said}");
    assert!(said.ends_with("verdict: broken\n"), "{said}");
}

#[test]
fn token_config_show_and_auto_allocation() {
    let sb = Sandbox::new();
    // Before the allocator starts, so it reads the setting.
    assert_eq!(sb.run(&["config", "auto-allocation", "enable"]).status.code(), Some(0));
    let token = text(&sb.run(&["token"]).stdout);
    assert!(token.trim().len() >= 16, "{token:?}");
    assert_eq!(sb.json(&["token"])["token"].as_str().unwrap(), token.trim());

    let o = sb.run(&["config", "show"]);
    assert_eq!(o.status.code(), Some(0));
    let shown = text(&o.stdout);
    assert!(shown.starts_with("TYPE  "), "{shown}");
    assert!(shown.lines().any(|l| l.starts_with("dev ") && l.contains("3000-3099")), "{shown}");

    // An unknown type gets a range of its own; undo gives it back.
    let a = sb.json(&["allocate", "-s", "zzwidget", "--lease", "manual"]);
    assert_eq!(a["auto_allocated"], true, "{a}");
    let listed = text(&sb.run(&["config", "auto-allocation", "list"]).stdout);
    assert!(listed.lines().any(|l| l.starts_with("zzwidget ")), "{listed}");
    // Refused while the type holds a port.
    assert_eq!(sb.run(&["config", "auto-allocation", "undo", "zzwidget"]).status.code(), Some(1));
    sb.run(&["release", a["lock_id"].as_str().unwrap()]);
    let o = sb.run(&["config", "auto-allocation", "undo", "zzwidget"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("zzwidget"));
}
