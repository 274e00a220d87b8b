//! Fairness under a flood: one user holds 1,100 connections to the
//! allocator (550 on the Unix socket, 550 over TCP without a token; half of
//! each idle, half sending a request line and never the rest; every one the
//! allocator closes is opened again at once) while another user runs
//! `styxy list` and allocates. Prints the other user's percentiles (goals:
//! `styxy list` p99 ≤ 50 ms, allocate p99 ≤ 5 ms), and the same without
//! the flood for the ratio. Needs root (it creates the two users); asserts
//! nothing about time.
//!
//! `cargo bench -p styxy-allocator --bench fairness`
#![allow(clippy::unwrap_used)] // a test or benchmark: a failed unwrap is a failure

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use styxy_proto::client::{Connection, Method};
use styxy_testkit::percentiles::report;
use styxy_testkit::{Allocator, Sandbox, TEST_CONFIG, as_user, free_port, styxy_bin, victim_and_attacker};

const ROLE: &str = "STYXY_BENCH_ROLE";
const UNIX_FLOOD: usize = 550;
const TCP_FLOOD: usize = 550;
const LISTS: usize = 200;
const ALLOCATIONS: usize = 2000;

fn main() {
    match std::env::var(ROLE).as_deref() {
        Ok("attacker") => attacker(),
        Ok("victim") => victim(),
        _ => lead(),
    }
}

/// Starts the allocator and the two users' processes.
fn lead() {
    let Some([victim_user, attacker_user]) = victim_and_attacker() else { return };
    let tcp_port = free_port();
    let sb = Sandbox::with_config(TEST_CONFIG);
    let _allocator = Allocator::shared(&sb, &["--tcp", &format!("127.0.0.1:{tcp_port}")]);
    let me = std::env::current_exe().unwrap();
    let role = |who: (u32, u32), role: &str| {
        let mut c = as_user(who.0, who.1, &me);
        c.env(ROLE, role)
            .env("STYXY_SOCKET", sb.socket())
            .env("STYXY_TCP_PORT", tcp_port.to_string())
            .env("STYXY_NO_AUTOSTART", "1")
            .env("HOME", "/")
            .env("XDG_RUNTIME_DIR", "/nonexistent")
            .env("STYXY_BIN", styxy_bin())
            .current_dir("/");
        c
    };

    println!("another user's requests, alone:");
    let status = role(victim_user, "victim").status().unwrap();
    assert!(status.success());

    let mut flood = role(attacker_user, "attacker").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut ready = String::new();
    BufReader::new(flood.stdout.take().unwrap()).read_line(&mut ready).unwrap();
    assert_eq!(ready.trim(), "holding", "the flood did not start");
    println!("another user's requests, while one user holds {UNIX_FLOOD} Unix + {TCP_FLOOD} TCP connections:");
    let status = role(victim_user, "victim").status().unwrap();
    drop(flood.stdin.take());
    let _ = flood.kill();
    let _ = flood.wait();
    assert!(status.success());
}

fn socket() -> PathBuf {
    PathBuf::from(std::env::var_os("STYXY_SOCKET").unwrap())
}

/// `styxy list` and allocate/release over a kept-alive connection.
fn victim() {
    let styxy = std::env::var_os("STYXY_BIN").unwrap();
    let mut lists: Vec<Duration> = (0..LISTS)
        .map(|_| {
            let t = Instant::now();
            let out = Command::new(&styxy).arg("list").stdout(Stdio::null()).stderr(Stdio::piped()).output().unwrap();
            let elapsed = t.elapsed();
            assert!(out.status.success(), "styxy list: {}", String::from_utf8_lossy(&out.stderr));
            elapsed
        })
        .collect();
    report("  styxy list", &mut lists);
    let mut conn = Connection::unix(&socket(), Duration::from_secs(30), true).unwrap();
    let body = json!({"service_type": "bulk", "service_name": "fair", "lease": "manual"});
    let mut allocations = Vec::with_capacity(ALLOCATIONS);
    for _ in 0..ALLOCATIONS {
        let t = Instant::now();
        let r = conn.send_json(Method::Post, "/allocate", &body).unwrap();
        allocations.push(t.elapsed());
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        let lock = v["lock_id"].as_str().unwrap();
        assert_eq!(conn.send(Method::Delete, &format!("/allocate/{lock}"), None).unwrap().status, 200);
    }
    report("  allocate (kept-alive Unix connection)", &mut allocations);
}

/// One held connection: idle, or stuck in its request's headers.
enum Held {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Held {
    fn open(n: usize, unix: bool, socket: &Path, tcp_port: u16) -> Option<Held> {
        let mut held = if unix {
            Held::Unix(UnixStream::connect(socket).ok()?)
        } else {
            Held::Tcp(TcpStream::connect(("127.0.0.1", tcp_port)).ok()?)
        };
        if n % 2 == 1 {
            let _ = held.stream().write_all(b"GET /allocations HTTP/1.1\r\nHost: x\r\n");
        }
        match &held {
            Held::Unix(s) => s.set_nonblocking(true).ok()?,
            Held::Tcp(s) => s.set_nonblocking(true).ok()?,
        }
        Some(held)
    }

    fn stream(&mut self) -> &mut dyn ReadWrite {
        match self {
            Held::Unix(s) => s,
            Held::Tcp(s) => s,
        }
    }

    /// Whether the allocator closed it (answers are read and dropped).
    fn closed(&mut self) -> bool {
        let mut sink = [0u8; 4096];
        loop {
            match self.stream().read(&mut sink) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
                Err(_) => return true,
            }
        }
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// Holds the flood, reopening what the allocator closes, until stdin closes.
fn attacker() {
    let socket = socket();
    let tcp_port: u16 = std::env::var("STYXY_TCP_PORT").unwrap().parse().unwrap();
    let kinds: Vec<bool> = (0..UNIX_FLOOD).map(|_| true).chain((0..TCP_FLOOD).map(|_| false)).collect();
    let mut held: Vec<Option<Held>> =
        kinds.iter().enumerate().map(|(n, &u)| Held::open(n, u, &socket, tcp_port)).collect();
    println!("holding");
    let stop = std::thread::spawn(|| {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
    });
    while !stop.is_finished() {
        for (n, slot) in held.iter_mut().enumerate() {
            if slot.as_mut().is_none_or(Held::closed) {
                *slot = Held::open(n, kinds[n], &socket, tcp_port);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
