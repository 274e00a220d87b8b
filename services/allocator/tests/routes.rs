//! The API served inside this test's process: [`serve`] on a temporary
//! socket for an [`App`] built here, so the routes are exercised without
//! the binary (blackbox.rs starts the real one: the user's view).
#![allow(clippy::unwrap_used)] // a test or benchmark: a failed unwrap is a failure

use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::thread::JoinHandle;

use serde_json::{Value, json};
use styxy_allocator::app::{App, Mode};
use styxy_allocator::auth::Tokens;
use styxy_allocator::{Listeners, serve};
use styxy_core::config::Config;
use styxy_core::engine::Engine;
use styxy_core::host::RealHost;
use styxy_core::store::Store;
use styxy_proto::api::MAX_BODY;
use styxy_proto::client::{Connection, Method};
use styxy_testkit::{PATIENCE, Sandbox, TEST_CONFIG};
use tokio::sync::oneshot;

/// `serve` on the sandbox's socket, on a runtime thread of its own (the
/// test's client blocks); stopped when dropped.
struct Served {
    sandbox: Sandbox,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Served {
    fn start() -> Served {
        let sandbox = Sandbox::with_config(TEST_CONFIG);
        let config = Config::load_from(&sandbox.system_config_file(), Some(&sandbox.config_file())).unwrap();
        let (store, _) = Store::open(&sandbox.state_dir()).unwrap();
        let engine = Engine::new(config, store, None, Box::new(RealHost)).unwrap();
        let tokens = Tokens::load(&sandbox.state_dir()).unwrap();
        let app = App::new(engine, tokens, Mode::User, sandbox.socket());
        let unix = UnixListener::bind(sandbox.socket()).unwrap();
        unix.set_nonblocking(true).unwrap();
        let listeners = Listeners { unix: vec![unix], tcp: Vec::new() };
        let (stop, stopped) = oneshot::channel::<()>();
        let server = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(serve(listeners, app, async {
                let _ = stopped.await;
            }))
        });
        Served { sandbox, stop: Some(stop), server: Some(server) }
    }

    /// Resolves the shutdown future and waits for `serve` to return.
    fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.server.take().map_or(Ok(()), |server| server.join().expect("the server thread panicked"))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn manual() -> Value {
    json!({"service_type": "bulk", "service_name": "web", "lease": "manual"})
}

#[test]
fn allocate_check_list_and_release() {
    let served = Served::start();
    let sb = &served.sandbox;
    let (status, answer) = sb.get("/status");
    assert_eq!(status, 200);
    assert_eq!(answer["pid"], std::process::id(), "answered by this very process");

    let (status, granted) = sb.post("/allocate", &manual());
    assert_eq!(status, 200, "{granted}");
    let port = granted["port"].as_u64().unwrap();
    let lock_id = granted["lock_id"].as_str().unwrap();
    assert!((20000..=29999).contains(&port), "{port} in the bulk range");

    let (status, check) = sb.get(&format!("/check/{port}"));
    assert_eq!(status, 200);
    assert_eq!(check["available"], false);
    assert_eq!(check["allocated_to"]["lock_id"], lock_id);

    let listed = sb.allocations();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["lock_id"], lock_id);
    assert_eq!(listed[0]["owner"]["uid"], styxy_proto::paths::uid(), "the kernel's word on who connected");

    let (status, released) = sb.delete(&format!("/allocate/{lock_id}"));
    assert_eq!(status, 200, "{released}");
    assert_eq!(released["port"], port);
    assert!(sb.allocations().is_empty());
    let (status, again) = sb.delete(&format!("/allocate/{lock_id}"));
    assert_eq!((status, again["error"].as_str()), (404, Some("not_found")));
}

#[test]
fn refusals_are_json_with_their_status_and_change_nothing() {
    let served = Served::start();
    let sb = &served.sandbox;
    let before = sb.generation();
    let too_large = format!(r#"{{"service_type":"bulk","project_path":"{}"}}"#, "y".repeat(MAX_BODY));
    let cases = [
        (Method::Get, "/no/such/route", None, 404, "not_found"),
        (Method::Get, "/allocate", None, 405, "method_not_allowed"),
        (Method::Put, "/allocations", None, 405, "method_not_allowed"),
        (Method::Post, "/allocate", Some(too_large.as_bytes()), 413, "payload_too_large"),
        (Method::Post, "/allocate", Some(&b"{\"service_type\":"[..]), 400, "invalid_json"),
        (Method::Post, "/allocate", Some(&br#"{"service_type":42}"#[..]), 400, "invalid_field"),
    ];
    for (method, path, body, status, code) in cases {
        let (got, answer) = sb.request(method, path, body);
        assert_eq!((got, answer["error"].as_str()), (status, Some(code)), "{method:?} {path}: {answer}");
        assert_eq!(answer["success"], false);
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()), "{answer}");
    }
    assert_eq!(sb.generation(), before, "refused requests changed the state");
    assert!(sb.allocations().is_empty());
}

#[test]
fn a_second_connection_is_served_while_the_first_stays_open() {
    let served = Served::start();
    let socket = served.sandbox.socket();
    let body = serde_json::to_vec(&manual()).unwrap();
    let mut first = Connection::unix(&socket, PATIENCE, true).unwrap();
    assert_eq!(first.send(Method::Get, "/status", None).unwrap().status, 200);

    // The first stays open and idle, a third stalls in the middle of its
    // request: the second is answered all the same.
    let mut stalled = UnixStream::connect(&socket).unwrap();
    stalled.write_all(b"POST /allocate HTTP/1.1\r\nContent-Le").unwrap();
    let mut second = Connection::unix(&socket, PATIENCE, true).unwrap();
    let from_second = second.send(Method::Post, "/allocate", Some(&body)).unwrap();
    assert_eq!(from_second.status, 200, "{}", String::from_utf8_lossy(&from_second.body));

    // The first connection is still served after that.
    let from_first = first.send(Method::Post, "/allocate", Some(&body)).unwrap();
    assert_eq!(from_first.status, 200, "{}", String::from_utf8_lossy(&from_first.body));
    let port = |r: &styxy_proto::client::Response| r.decode::<Value>().unwrap()["port"].as_u64().unwrap();
    assert_ne!(port(&from_first), port(&from_second));
    assert_eq!(served.sandbox.allocations().len(), 2);
}

#[test]
fn serve_returns_when_shutdown_resolves_and_accepts_no_more() {
    let mut served = Served::start();
    assert_eq!(served.sandbox.get("/status").0, 200);
    served.stop().expect("serve ends without an error");
    let refused = UnixStream::connect(served.sandbox.socket());
    assert!(refused.is_err(), "connected after the server stopped");
}
