//! Health soak: allocations held by live processes that listen on their
//! ports, holders killed (SIGKILL) and replaced at random, styxy-health run
//! every period as its timer would. It checks the two health figures:
//!
//! - no live holder ever loses its port (false releases: must be 0);
//! - a dead holder's port is released within 2 health periods.
//!
//! The allocator runs in system mode on a private bus, D-Bus activated and
//! exiting after 1 s idle. A killed holder is replaced half a churn interval
//! later, so the allocator is usually stopped when a holder dies and the
//! health pass is what finds it (ReportHealth starts the allocator again).
//! Holders allocate over D-Bus (Allocate).
//!
//!   scripts/soak-health                       # 60 s
//!   STYXY_SOAK_SECS=600 scripts/soak-health   # the 10-minute run
//!
//! Environment: STYXY_SOAK_SECS (60), STYXY_SOAK_PERIOD_MS (health period,
//! 2000), STYXY_SOAK_CHURN_MS (time between kills, 5000),
//! STYXY_SOAK_ALLOCATIONS (200), STYXY_BIN_DIR (where styxy-allocator and
//! styxy-health are; default: beside this example's directory).
//! Exits 1 when a figure is missed.
#![allow(clippy::unwrap_used)] // a test or benchmark: a failed unwrap is a failure

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use styxy_bus::Allocator1Proxy;
use styxy_bus::testing::PrivateBus;
use zbus::{OwnedVariant, Variant};

const PER_HOLDER: usize = 5;
const TYPES: &[&str] = &["dev", "api", "ui", "docs", "build", "test", "proxy", "hub", "functions", "monitoring"];

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--hold") {
        hold(args.get(2).and_then(|n| n.parse().ok()).unwrap_or(PER_HOLDER));
    }
    soak()
}

/// Holder mode: allocate `count` ports over the bus (owner: this process),
/// listen on each, say so on stdout, then wait to be killed.
fn hold(count: usize) -> ! {
    let held = zbus::block_on(async {
        let conn = zbus::Connection::system().await.expect("system bus");
        let allocator = Allocator1Proxy::new(&conn).await.expect("proxy");
        let seed = std::process::id() as usize;
        let mut held = Vec::new();
        for i in 0..count {
            let service_type = TYPES[(seed + i) % TYPES.len()];
            let options: HashMap<String, OwnedVariant> =
                [("service_name".to_string(), OwnedVariant::try_from(Variant::from("soak")).unwrap())].into();
            let (port, lock_id, ..) = allocator.allocate(service_type, options).await.expect("allocate");
            let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the allocated port");
            held.push((lock_id, port, listener));
        }
        held
    });
    let mut out = std::io::stdout().lock();
    for (lock_id, port, _) in &held {
        writeln!(out, "held {lock_id} {port}").unwrap();
    }
    writeln!(out, "ready").unwrap();
    out.flush().unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

struct Holder {
    child: Child,
    lock_ids: Vec<String>,
}

fn spawn_holder(bus: &PrivateBus) -> Holder {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--hold", &PER_HOLDER.to_string()])
        .env("DBUS_SYSTEM_BUS_ADDRESS", bus.address())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn a holder");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut lock_ids = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("holder output");
        match line.split_whitespace().collect::<Vec<_>>()[..] {
            ["held", lock_id, _port] => lock_ids.push(lock_id.to_string()),
            ["ready"] => break,
            _ => panic!("unexpected holder output {line:?}"),
        }
    }
    assert_eq!(lock_ids.len(), PER_HOLDER, "the holder failed to allocate");
    Holder { child, lock_ids }
}

/// A tiny xorshift: which holder dies next need not be cryptographic.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

fn bin_dir() -> PathBuf {
    std::env::var_os("STYXY_BIN_DIR").map(PathBuf::from).unwrap_or_else(|| {
        let exe = std::env::current_exe().unwrap();
        exe.parent().and_then(Path::parent).unwrap().to_path_buf()
    })
}

fn soak() -> ExitCode {
    let duration = Duration::from_secs(env_u64("STYXY_SOAK_SECS", 60));
    let period = Duration::from_millis(env_u64("STYXY_SOAK_PERIOD_MS", 2000));
    let churn = Duration::from_millis(env_u64("STYXY_SOAK_CHURN_MS", 5000));
    let allocations = env_u64("STYXY_SOAK_ALLOCATIONS", 200) as usize;
    let bin = bin_dir();
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let nothing = work.path().join("no-config.toml");
    // SAFETY: no other thread exists yet. The bus and the allocators it
    // starts inherit these.
    unsafe {
        std::env::set_var("STYXY_LOG", "warn");
        std::env::set_var("STYXY_SYSTEM_CONFIG", &nothing);
        std::env::set_var("STYXY_CONFIG", &nothing);
    }
    let allocator = format!(
        "{} --socket {} --state-dir {} --no-tcp --idle-timeout 1",
        bin.join("styxy-allocator").display(),
        work.path().join("api.sock").display(),
        state.display()
    );
    let bus = PrivateBus::start(&[("org.styxy.Allocator1", allocator)]).expect("private bus");

    let mut holders: Vec<Holder> = (0..allocations.div_ceil(PER_HOLDER)).map(|_| spawn_holder(&bus)).collect();
    println!(
        "soak: {} s, {} allocations in {} holders, health period {:?}, a holder killed every {:?}",
        duration.as_secs(),
        holders.len() * PER_HOLDER,
        holders.len(),
        period,
        churn
    );

    let mut dice = Dice(0x9E37_79B9_7F4A_7C15 ^ u64::from(std::process::id()));
    let mut dead: HashMap<String, Instant> = HashMap::new();
    let mut latencies: Vec<Duration> = Vec::new();
    let mut false_releases: HashSet<String> = HashSet::new();
    let mut passes: Vec<Duration> = Vec::new();
    let mut health: Option<(Child, Instant)> = None;
    let mut next_replace: Option<Instant> = None;
    let (start, mut next_pass, mut next_kill) = (Instant::now(), Instant::now() + period, Instant::now() + churn);
    while start.elapsed() < duration {
        let now = Instant::now();
        if let Some((child, began)) = &mut health
            && child.try_wait().unwrap().is_some()
        {
            passes.push(began.elapsed());
            health = None;
        }
        if now >= next_pass && health.is_none() {
            let child = Command::new(bin.join("styxy-health"))
                .arg("--state-dir")
                .arg(&state)
                .env("DBUS_SYSTEM_BUS_ADDRESS", bus.address())
                .spawn()
                .expect("run styxy-health");
            health = Some((child, now));
            next_pass += period;
        }
        if now >= next_kill {
            let mut victim = holders.swap_remove(dice.below(holders.len()));
            victim.child.kill().unwrap();
            victim.child.wait().unwrap();
            let killed = Instant::now();
            dead.extend(victim.lock_ids.into_iter().map(|id| (id, killed)));
            next_replace = Some(killed + churn / 2);
            // Jittered, so deaths fall anywhere in the health period.
            next_kill = killed + churn / 2 + Duration::from_millis(dice.below(churn.as_millis() as usize + 1) as u64);
        }
        // Replaced half an interval later: a replacement's allocation starts
        // the allocator, which would free the dead holder's ports at once
        // and leave the health pass nothing to find.
        if next_replace.is_some_and(|at| now >= at) {
            holders.push(spawn_holder(&bus));
            next_replace = None;
        }
        if let Ok(on_disk) = styxy_core::store::read_state(&state) {
            let held: HashSet<&str> = on_disk.allocations.values().map(|a| a.lock_id.as_str()).collect();
            dead.retain(|id, killed| {
                let gone = !held.contains(id.as_str());
                if gone {
                    latencies.push(killed.elapsed());
                }
                !gone
            });
            for id in holders.iter().flat_map(|h| &h.lock_ids) {
                if !held.contains(id.as_str()) && false_releases.insert(id.clone()) {
                    println!("FALSE RELEASE: {id} belongs to a live, listening holder");
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for mut h in holders {
        let _ = h.child.kill();
        let _ = h.child.wait();
    }
    if let Some((mut child, _)) = health {
        let _ = child.wait();
    }
    // The allocator the bus started writes its state when it idles out:
    // let it, before the directory goes.
    zbus::block_on(async {
        let conn = bus.connect().await.expect("bus");
        let dbus = zbus::fdo::DBusProxy::new(&conn).await.expect("proxy");
        let deadline = Instant::now() + Duration::from_secs(10);
        while dbus.name_has_owner("org.styxy.Allocator1".try_into().unwrap()).await.unwrap_or(false)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(100));
        }
    });

    latencies.sort();
    passes.sort();
    let within = latencies.iter().filter(|l| **l <= 2 * period).count();
    println!("false releases of live holders: {}", false_releases.len());
    if !latencies.is_empty() {
        let periods = |d: Duration| d.as_secs_f64() / period.as_secs_f64();
        println!(
            "dead holders' ports released: {} (p50 {:.2?} = {:.2} periods, p90 {:.2?}, max {:.2?} = {:.2} periods); within 2 periods: {within}/{}",
            latencies.len(),
            percentile(&latencies, 0.5),
            periods(percentile(&latencies, 0.5)),
            percentile(&latencies, 0.9),
            latencies[latencies.len() - 1],
            periods(latencies[latencies.len() - 1]),
            latencies.len()
        );
    }
    if !dead.is_empty() {
        println!("still held at the end (killed less than a period ago or missed): {}", dead.len());
    }
    if !passes.is_empty() {
        println!(
            "styxy-health runs: {} (wall time incl. process start p50 {:.2?}, p99 {:.2?})",
            passes.len(),
            percentile(&passes, 0.5),
            percentile(&passes, 0.99)
        );
    }
    let missed = dead.values().filter(|killed| killed.elapsed() > 2 * period).count();
    if false_releases.is_empty() && within == latencies.len() && missed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
