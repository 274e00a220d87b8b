//! The dashboard's figures with 1,000 listeners on the machine: first paint
//! (the page, its script and style and its first view, asked one after
//! another as a browser does; goal ≤ 100 ms), an update reaching an open
//! event stream after a listener appears or closes (goal ≤ 200 ms), and the
//! CPU that `styxy ui` and the allocator use with one open page and no
//! change (goal ≤ 1% of a core) and with none (goal: zero).
//!
//!     cargo bench -p styxy --bench dashboard
#![allow(clippy::unwrap_used)] // a test or benchmark: a failed unwrap is a failure

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use styxy_testkit::percentiles::report;
use styxy_testkit::{Dashboard, Hold, Sandbox, hold, local_port};

const LISTENERS: usize = 1000;
const PAINTS: usize = 50;
const UPDATES: usize = 30;
const IDLE: Duration = Duration::from_secs(10);

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Prints the share of one core that `styxy ui` and the allocator (`pids`)
/// use over [`IDLE`].
fn idle(label: &str, pids: &[u32; 2]) {
    let before = pids.map(cpu_ticks);
    std::thread::sleep(IDLE);
    let ticks: Vec<u64> = pids.iter().zip(before).map(|(&pid, then)| cpu_ticks(pid) - then).collect();
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let percent = |t: u64| 100.0 * t as f64 / per_second / IDLE.as_secs_f64();
    let total = ticks.iter().sum();
    println!(
        "{label:<50} {:.2}% of a core ({total} ticks in {IDLE:?}: ui {:.2}%, allocator {:.2}%)",
        percent(total),
        percent(ticks[0]),
        percent(ticks[1])
    );
}

fn has_other(view: &serde_json::Value, port: u16) -> bool {
    view["others"].as_array().unwrap().iter().any(|o| o["port"] == port)
}

fn main() {
    let limit = libc::rlimit { rlim_cur: 8192, rlim_max: 8192 };
    // SAFETY: setrlimit reads the struct.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0, "raise the open file limit");
    let sb = Sandbox::new();
    sb.json(&["allocate", "-s", "dev", "-n", "web", "--lease", "manual"]);
    let _listeners: Vec<OwnedFd> = (0..LISTENERS).map(|_| hold("127.0.0.1", 0, Hold::default())).collect();
    let ui = Dashboard::start(&sb);
    let cookie = ui.cookie();
    let with_cookie = [("Cookie", cookie.as_str())];

    let mut paints = Vec::new();
    for _ in 0..PAINTS {
        // Older than the dashboard's 100 ms reuse: each view is read anew.
        std::thread::sleep(Duration::from_millis(120));
        let start = Instant::now();
        for path in ["/", "/app.js", "/app.css", "/api/view"] {
            assert_eq!(ui.request("GET", path, &with_cookie).0, 200, "{path}");
        }
        paints.push(start.elapsed());
    }
    let (_, _, body) = ui.request("GET", "/api/view", &with_cookie);
    let view: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(view["others"].as_array().unwrap().len() >= LISTENERS, "the view lists the listeners");
    report(&format!("first paint, {LISTENERS} listeners (4 requests)"), &mut paints);

    let mut events = ui.events(&cookie);
    events.next_view();
    let (mut appear, mut close) = (Vec::new(), Vec::new());
    for _ in 0..UPDATES {
        let start = Instant::now();
        let listener = hold("127.0.0.1", 0, Hold::default());
        let port = local_port(&listener);
        while !has_other(&events.next_view(), port) {}
        appear.push(start.elapsed());
        let start = Instant::now();
        drop(listener);
        while has_other(&events.next_view(), port) {}
        close.push(start.elapsed());
    }
    report("update: a listener appears -> event", &mut appear);
    report("update: a listener closes -> event", &mut close);

    // The largest part of an update: the allocator naming 1,000 listeners'
    // owners after one appeared (answer decoded here too).
    let mut observe = Vec::new();
    for _ in 0..UPDATES {
        let listener = hold("127.0.0.1", 0, Hold::default());
        let start = Instant::now();
        assert_eq!(sb.get("/observe/all").0, 200);
        observe.push(start.elapsed());
        drop(listener);
    }
    report("of which: GET /observe/all after a listener appears", &mut observe);

    let pids = [ui.pid(), sb.allocator_pids()[0]];
    idle("CPU, one open page, no change", &pids);
    drop(events);
    std::thread::sleep(Duration::from_millis(500));
    idle("CPU, no page open", &pids);
}
