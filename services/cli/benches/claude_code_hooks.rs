//! Styxy's hooks inside the real Claude Code CLI (the newest pinned
//! release): each event's hook time as the client's debug log reports it
//! (`Hooks: EVENT:… finished with status 0 (N ms)`, from spawn to exit),
//! styxy's hooks against an empty hook (`cat > /dev/null`) installed with
//! the same events and matchers, as percentiles and the median's overhead
//! (goal: ≤ 2 ms per event); and the context each event adds (`provided
//! additionalContext (N chars)`; goal: ≤ 400 per conflict). Each session
//! starts a server on a port another session holds (the preload moves it)
//! and runs one command that starts nothing.
//!
//!     cargo bench -p styxy --bench claude_code_hooks
#![allow(clippy::unwrap_used)] // a test or benchmark: a failed unwrap is a failure

#[path = "../tests/claude_code/harness.rs"]
mod harness;

use harness::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use styxy_testkit::percentiles::report;
use styxy_testkit::{Sandbox, free_port};

const SESSIONS: usize = 20;

/// Per event: the hook times and the context sizes the debug log names.
#[derive(Default)]
struct Seen {
    times: BTreeMap<String, Vec<Duration>>,
    context: BTreeMap<String, Vec<usize>>,
}

impl Seen {
    fn read(&mut self, log: &Path) {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        for line in text.lines() {
            if let Some(rest) = line.split_once("] Hooks: ").map(|(_, r)| r)
                && let Some((event, tail)) = rest.split_once(':')
                && let Some(ms) = tail.rsplit_once("finished with status 0 (").and_then(|(_, t)| t.strip_suffix("ms)"))
            {
                let ms: u64 = ms.parse().unwrap();
                self.times.entry(event.to_string()).or_default().push(Duration::from_millis(ms));
            }
            if let Some(rest) = line.split_once("] Hook ").map(|(_, r)| r)
                && let Some((event, tail)) = rest.split_once(' ')
                && let Some(chars) =
                    tail.rsplit_once("additionalContext (").and_then(|(_, t)| t.strip_suffix(" chars)"))
            {
                self.context.entry(event.to_string()).or_default().push(chars.parse().unwrap());
            }
        }
    }
}

/// Session `n`, with styxy's hooks or with `empty` ones, into `seen`.
fn measure(seen: &mut Seen, n: usize, empty: bool) {
    let version = versions()[0];
    let sb = Sandbox::new();
    let port = free_port();
    let _other = OtherSession::start(&sb, &project(&sb, "other"), port);
    let home = home_with_hooks(&sb, &[]);
    if empty {
        let settings = home.join(".claude/settings.json");
        let mut value: Value = serde_json::from_str(&std::fs::read_to_string(&settings).unwrap()).unwrap();
        empty_commands(&mut value);
        std::fs::write(&settings, value.to_string()).unwrap();
    }
    let log = sb.path().join(format!("debug-{n}.log"));
    let session = Session { sb: &sb, version, home, cwd: project(&sb, "app"), env: Vec::new() };
    let start = format!("timeout 1 python3 -m http.server {port} --bind 127.0.0.1");
    session.run_with(&["--debug-file", log.to_str().unwrap()], vec![bash(&start), bash("echo done")]);
    seen.read(&log);
}

fn mean(times: &[Duration]) -> Duration {
    times.iter().sum::<Duration>() / times.len().max(1) as u32
}

/// Every hook command in `settings` made an empty one, that reads its event.
fn empty_commands(settings: &mut Value) {
    match settings {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                match value {
                    Value::String(command) if key == "command" => *command = "cat > /dev/null".into(),
                    other => empty_commands(other),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(empty_commands),
        _ => {}
    }
}

fn main() {
    // Interleaved, so a machine that gets busier or quieter weighs on both.
    let (mut styxy, mut empty) = (Seen::default(), Seen::default());
    for n in 0..SESSIONS {
        measure(&mut styxy, n, false);
        measure(&mut empty, n, true);
    }
    for (event, times) in styxy.times.iter_mut() {
        let ours_mean = mean(times);
        let ours = report(&format!("{event}: styxy's hook"), times);
        let Some(base) = empty.times.get_mut(event) else { continue };
        let base_mean = mean(base);
        let baseline = report(&format!("{event}: an empty hook"), base);
        // The log counts whole milliseconds: the means' difference is the
        // finer estimate of the same overhead.
        println!(
            "{event}: median overhead {:?}, mean overhead {:.2} ms (goal ≤ 2 ms)",
            ours.saturating_sub(baseline),
            (ours_mean.as_secs_f64() - base_mean.as_secs_f64()) * 1e3
        );
    }
    for (event, sizes) in &styxy.context {
        println!("{event}: context added, at most {} characters (goal ≤ 400)", sizes.iter().max().unwrap());
    }
    println!(
        "events that added no context: {:?}",
        styxy.times.keys().filter(|e| !styxy.context.contains_key(*e)).collect::<Vec<_>>()
    );
}
