//! Black-box tests: the real allocator binary on a temporary socket.
#![allow(clippy::unwrap_used)] // a test or benchmark: a failed unwrap is a failure

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use styxy_testkit::{Allocator, Sandbox, TEST_CONFIG, as_user, ensure_user, free_port};

fn manual(service_type: &str) -> Value {
    json!({"service_type": service_type, "service_name": "load", "lease": "manual"})
}

#[test]
fn sixty_four_clients_never_get_the_same_port() {
    let sb = Sandbox::with_config(TEST_CONFIG);
    let _allocator = Allocator::start(&sb);
    let ports = Arc::new(Mutex::new(Vec::new()));
    std::thread::scope(|s| {
        for _ in 0..64 {
            let (sb, ports) = (&sb, ports.clone());
            s.spawn(move || {
                let client = sb.client();
                for _ in 0..100 {
                    let r = client.send_json(styxy_proto::client::Method::Post, "/allocate", &manual("bulk")).unwrap();
                    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
                    let v: Value = serde_json::from_slice(&r.body).unwrap();
                    ports.lock().unwrap().push(v["port"].as_u64().unwrap());
                }
            });
        }
    });
    let ports = ports.lock().unwrap();
    let unique: HashSet<_> = ports.iter().collect();
    assert_eq!(ports.len(), 6400);
    assert_eq!(unique.len(), 6400, "a port was handed out twice");
    assert_eq!(sb.allocations().len(), 6400);
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_allocation() {
    let sb = Sandbox::with_config(TEST_CONFIG);
    let mut allocator = Allocator::start(&sb);
    let acked = Arc::new(Mutex::new(Vec::<(String, u64)>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (client, acked, stop) = (sb.client(), acked.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // Errors are expected once the allocator is gone.
                    let Ok(r) = client.send_json(styxy_proto::client::Method::Post, "/allocate", &manual("bulk"))
                    else {
                        continue;
                    };
                    if r.status == 200 {
                        let v: Value = serde_json::from_slice(&r.body).unwrap();
                        acked
                            .lock()
                            .unwrap()
                            .push((v["lock_id"].as_str().unwrap().to_string(), v["port"].as_u64().unwrap()));
                    }
                }
            })
        })
        .collect();
    // Killed mid-load, once the load has run long enough to mean something.
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() <= 100 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    allocator.kill9();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 100, "the load ran ({} acknowledged)", acked.len());

    allocator.restart();
    let listed: HashSet<(String, u64)> = sb
        .allocations()
        .iter()
        .map(|v| (v["lock_id"].as_str().unwrap().to_string(), v["port"].as_u64().unwrap()))
        .collect();
    for ack in &acked {
        assert!(listed.contains(ack), "acknowledged {ack:?} lost after kill -9");
    }
    let (status, fresh) = sb.post("/allocate", &manual("bulk"));
    assert_eq!(status, 200);
    let port = fresh["port"].as_u64().unwrap();
    assert!(!listed.iter().any(|(_, p)| *p == port), "port {port} handed out twice after restart");
}

#[test]
fn a_holder_that_exits_frees_its_port_at_once() {
    let sb = Sandbox::with_config(TEST_CONFIG);
    let _allocator = Allocator::start(&sb);
    let mut holder = std::process::Command::new("sleep").arg("60").spawn().unwrap();
    let (status, r) = sb.post("/allocate", &json!({"service_type": "bulk", "pid": holder.id()}));
    assert_eq!(status, 200, "{r}");
    let lock = r["lock_id"].as_str().unwrap().to_string();
    assert_eq!(sb.allocations().len(), 1);
    holder.kill().unwrap();
    holder.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while sb.get("/status").1["allocations"] != 0 {
        assert!(Instant::now() < deadline, "port still held after its holder exited");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(sb.delete(&format!("/allocate/{lock}")).0, 404);
}

#[test]
fn external_listeners_inside_a_managed_range_are_never_handed_out() {
    let sb = Sandbox::with_config(TEST_CONFIG);
    let _allocator = Allocator::start(&sb);
    let v4 = TcpListener::bind("127.0.0.1:31000").expect("31000 free for the test");
    let (_, r) = sb.post("/allocate", &manual("probe"));
    assert_eq!(r["port"], 31001, "a v4-only listener makes 31000 busy");
    let (_, check) = sb.get("/check/31000");
    assert_eq!(check["available"], false);
    assert_eq!(check["listeners"][0]["pid"], std::process::id());

    let v6 = socket2_v6_only(31002);
    let (_, r) = sb.post("/allocate", &manual("probe"));
    assert_eq!(r["port"], 31003, "a v6-only listener makes 31002 busy");
    drop((v4, v6));
}

/// A listener on [::1] with IPV6_V6ONLY (std sets no such option itself).
fn socket2_v6_only(port: u16) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket calls on a descriptor this function owns.
    unsafe {
        let fd = libc::socket(libc::AF_INET6, libc::SOCK_STREAM, 0);
        assert!(fd >= 0);
        let one: libc::c_int = 1;
        libc::setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, (&one as *const i32).cast(), 4);
        let mut sa: libc::sockaddr_in6 = std::mem::zeroed();
        sa.sin6_family = libc::AF_INET6 as u16;
        sa.sin6_port = port.to_be();
        sa.sin6_addr.s6_addr[15] = 1;
        assert_eq!(libc::bind(fd, (&sa as *const libc::sockaddr_in6).cast(), std::mem::size_of_val(&sa) as u32), 0);
        assert_eq!(libc::listen(fd, 8), 0);
        std::os::fd::OwnedFd::from_raw_fd(fd)
    }
}

/// Sends raw bytes and returns the status code and JSON body.
fn raw(sb: &Sandbox, request: &[u8]) -> (u16, Value) {
    let mut s = UnixStream::connect(sb.socket()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn post_raw(body: &str) -> Vec<u8> {
    format!(
        "POST /allocate HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[test]
fn bad_input_gets_a_json_4xx_and_changes_nothing() {
    let sb = Sandbox::with_config(TEST_CONFIG);
    let _allocator = Allocator::start(&sb);
    let (_, held) = sb.post("/allocate", &manual("bulk"));
    let before = sb.generation();
    let long = "x".repeat(10_000);
    let cases: Vec<(String, u16, &str)> = vec![
        ("{\"service_type\":".into(), 400, "invalid_json"),
        ("[1,2,3]".into(), 400, "invalid_field"),
        (r#"{"service_type":42}"#.into(), 400, "invalid_field"),
        (r#"{"service_type":"bulk","preferred_port":0}"#.into(), 400, "invalid_port"),
        (r#"{"service_type":"bulk","preferred_port":65536}"#.into(), 400, "invalid_port"),
        (r#"{"service_type":"bulk","preferred_port":"abc"}"#.into(), 400, "invalid_port"),
        (r#"{"service_type":"bulk","preferred_port":-1}"#.into(), 400, "invalid_port"),
        (r#"{"service_type":"bulk","service_name":"a\u0000b"}"#.into(), 400, "invalid_field"),
        (r#"{"service_type":"bulk","service_name":"a\nb"}"#.into(), 400, "invalid_field"),
        (r#"{"service_type":"bulk","service_name":"a/b"}"#.into(), 400, "invalid_field"),
        (format!(r#"{{"service_type":"bulk","service_name":"{long}"}}"#), 400, "invalid_field"),
        (r#"{"service_type":"no-such-type"}"#.into(), 400, "unknown_service_type"),
        (format!(r#"{{"service_type":"bulk","project_path":"{}"}}"#, "y".repeat(1_048_576)), 413, "payload_too_large"),
    ];
    for (body, status, code) in &cases {
        let (got, v) = raw(&sb, &post_raw(body));
        assert_eq!((got, v["error"].as_str()), (*status, Some(*code)), "body {}", &body[..body.len().min(80)]);
        assert_eq!(v["success"], false);
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let (status, v) = sb.delete("/allocate/6f1c1d57-0b8e-4d7a-9f62-2b7f3c1e9a10");
    assert_eq!((status, v["error"].as_str()), (404, Some("not_found")));
    assert_eq!(sb.delete("/allocate/not-a-lock").0, 400);
    assert_eq!(sb.get("/no/such/route").1["error"], "not_found");
    for path in ["/allocate", "/instance/some-id", "/daemon/stop"] {
        let (status, v) = sb.get(path);
        assert_eq!((status, v["error"].as_str()), (405, Some("method_not_allowed")), "GET {path}");
    }

    // A client that sends half a request and stalls holds nobody up.
    let mut stalled = UnixStream::connect(sb.socket()).unwrap();
    stalled.write_all(b"POST /allocate HTTP/1.1\r\nContent-Le").unwrap();
    assert_eq!(sb.get("/status").0, 200, "served while another client stalls");

    assert_eq!(sb.generation(), before, "refused requests changed the state");
    let listed = sb.allocations();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["lock_id"], held["lock_id"]);
}

#[test]
fn a_garbage_state_file_is_set_aside_and_the_allocator_still_serves() {
    let sb = Sandbox::with_config(TEST_CONFIG);
    let mut allocator = Allocator::start(&sb);
    sb.post("/allocate", &manual("bulk"));
    allocator.kill9();
    std::fs::write(sb.state_dir().join("state.json"), b"\x00garbage{{{").unwrap();
    std::fs::write(sb.state_dir().join("state.wal"), b"not json either\n{\"x\":").unwrap();
    allocator.restart();
    let (status, _) = sb.post("/allocate", &manual("bulk"));
    assert_eq!(status, 200, "serving after repair");
    let aside: Vec<_> = std::fs::read_dir(sb.state_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("corrupt"))
        .collect();
    assert!(!aside.is_empty(), "the damaged file was kept aside");
    let log = std::fs::read_to_string(sb.log_file()).unwrap();
    assert!(log.contains("moved aside"), "the repair is logged: {log}");
}

/// An unprivileged user for the cross-user tests (created once; needs root).
fn second_user() -> Option<(u32, u32)> {
    if styxy_proto::paths::uid() != 0 {
        eprintln!("skipped: creating a second user needs root");
        return None;
    }
    Some(ensure_user("styxy-bbtest"))
}

/// Runs curl as `uid` and returns (status, body).
fn curl_as(uid: u32, gid: u32, args: &[&str]) -> (u16, Value) {
    let out = as_user(uid, gid, "curl").args(["-s", "-o", "-", "-w", "\n%{http_code}"]).args(args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), serde_json::from_str(body).unwrap_or(Value::Null))
}

#[test]
fn another_user_can_list_but_not_release_on_the_socket_or_over_tcp() {
    let Some((uid, gid)) = second_user() else { return };
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let sb = Sandbox::with_config(TEST_CONFIG);
    let _allocator = Allocator::shared(&sb, &["--tcp", &addr]);
    let (_, mine) = sb.post("/allocate", &manual("bulk"));
    let lock = mine["lock_id"].as_str().unwrap();
    let sock = sb.socket().to_string_lossy().into_owned();

    let (status, listed) = curl_as(uid, gid, &["--unix-socket", &sock, "http://x/allocations"]);
    assert_eq!(status, 200);
    assert_eq!(listed["allocations"][0]["lock_id"], lock, "everyone may read");
    assert!(listed["allocations"][0]["owner"].get("pid").is_none(), "but not another user's pid");
    let url = format!("http://x/allocate/{lock}");
    let (status, refused) = curl_as(uid, gid, &["--unix-socket", &sock, "-X", "DELETE", &url]);
    assert_eq!((status, refused["error"].as_str()), (403, Some("forbidden")));

    let (_, token) = curl_as(uid, gid, &["--unix-socket", &sock, "http://x/token"]);
    let token = token["token"].as_str().unwrap().to_string();
    let tcp_url = format!("http://{addr}/allocate/{lock}");
    let auth = format!("Authorization: Bearer {token}");
    let (status, refused) = curl_as(uid, gid, &["-X", "DELETE", "-H", &auth, &tcp_url]);
    assert_eq!((status, refused["error"].as_str()), (403, Some("forbidden")), "a token acts only for its user");
    let (status, _) = curl_as(uid, gid, &[&format!("http://{addr}/allocations")]);
    assert_eq!(status, 401, "TCP without a token");
    let (status, _) = curl_as(uid, gid, &["-H", "X-API-Key: wrong", &format!("http://{addr}/allocations")]);
    assert_eq!(status, 401);
    assert_eq!(sb.allocations().len(), 1, "still held");
}
