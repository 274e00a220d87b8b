//! The preload and supervisor tests' programs (C, Go, Python, Node under
//! preload/tests/programs) and a running program whose output lines are
//! collected.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use crate::PATIENCE;
use crate::build::profile_dir;

/// preload/tests/programs in this workspace.
fn programs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../preload/tests/programs")
}

/// Builds `target/<profile>/programs/<key>-<pid>` once per process with
/// `build`, which gets the output path.
fn built_once(key: &str, build: impl FnOnce(&Path) -> Command) -> PathBuf {
    static BUILT: OnceLock<std::sync::Mutex<Vec<(String, PathBuf)>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().expect("compile lock");
    if let Some((_, path)) = built.iter().find(|(n, _)| n == key) {
        return path.clone();
    }
    let dir = profile_dir().join("programs");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    let out = dir.join(format!("{key}-{}", std::process::id()));
    let mut command = build(&out);
    let status = command.status().unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    assert!(status.success(), "{command:?} failed");
    built.push((key.to_string(), out.clone()));
    out
}

/// Compiles `preload/tests/programs/<name>.c` once per process.
pub fn c_program(name: &str) -> PathBuf {
    built_once(name, |out| {
        let mut cc = Command::new("cc");
        cc.args(["-O1", "-Wall", "-pthread", "-o"]).arg(out).arg(programs_dir().join(format!("{name}.c")));
        cc
    })
}

/// Compiles `preload/tests/programs/<name>.c` statically against musl
/// (`musl-gcc -static`, Debian's musl-tools), once per process: a program
/// the preload never reaches.
pub fn musl_program(name: &str) -> PathBuf {
    built_once(&format!("{name}-musl"), |out| {
        let mut cc = Command::new("musl-gcc");
        cc.args(["-static", "-O1", "-Wall", "-pthread", "-o"]).arg(out).arg(programs_dir().join(format!("{name}.c")));
        cc
    })
}

/// Compiles `preload/tests/programs/<name>.c` for the 32-bit x86 ABI,
/// statically (`cc -m32 -static`, Debian's gcc-multilib), once per process:
/// a program of an ABI the seccomp supervisor does not read.
pub fn i386_program(name: &str) -> PathBuf {
    built_once(&format!("{name}-i386"), |out| {
        let mut cc = Command::new("cc");
        cc.args(["-m32", "-static", "-O1", "-Wall", "-pthread", "-o"])
            .arg(out)
            .arg(programs_dir().join(format!("{name}.c")));
        cc
    })
}

/// Builds `preload/tests/programs/<name>.go` (Debian's golang-go), with cgo
/// (linked against libc) or without (static), once per process. The build
/// cache lives in the target directory.
pub fn go_program(name: &str, cgo: bool) -> PathBuf {
    let key = format!("{name}-go-{}", if cgo { "cgo" } else { "static" });
    built_once(&key, |out| {
        let cache = profile_dir().join("go-cache");
        let mut go = Command::new("go");
        go.args(["build", "-o"])
            .arg(out)
            .arg(programs_dir().join(format!("{name}.go")))
            .env("CGO_ENABLED", if cgo { "1" } else { "0" })
            .env("GOCACHE", &cache)
            .env("GOPATH", cache.join("path"))
            .env("GOFLAGS", "-mod=mod")
            .env("GOTOOLCHAIN", "local");
        go
    })
}

/// `preload/tests/programs/<name>` (a script).
pub fn js_program(name: &str) -> PathBuf {
    programs_dir().join(name)
}

/// A running program whose stdout and stderr lines are collected.
pub struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    pub out: Vec<String>,
    pub err: Vec<String>,
}

fn lines_of(pipe: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Running {
    pub fn start(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let stdout = lines_of(child.stdout.take().expect("stdout"));
        let stderr = lines_of(child.stderr.take().expect("stderr"));
        Running { stdin: child.stdin.take(), child, stdout, stderr, out: vec![], err: vec![] }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn drain_stderr(&mut self) {
        while let Ok(line) = self.stderr.try_recv() {
            self.err.push(line);
        }
    }

    /// The next stdout line matching `wanted`; fails the test (showing all
    /// output) if the program exits or gets stuck first.
    pub fn stdout_line(&mut self, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) => {
                    self.out.push(line.clone());
                    if wanted(&line) {
                        self.drain_stderr();
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => self.fail("no such line on stdout in time"),
                Err(RecvTimeoutError::Disconnected) => self.fail("the program closed stdout"),
            }
        }
    }

    /// The `n` next "listening HOST PORT PID" lines, as ports.
    pub fn listening_ports(&mut self, n: usize) -> Vec<u16> {
        (0..n)
            .map(|_| {
                let line = self.stdout_line(|l| l.starts_with("listening ") || l.starts_with("Serving HTTP"));
                listening_port(&line).unwrap_or_else(|| self.fail(&format!("no port in {line:?}")))
            })
            .collect()
    }

    /// The port of the next "listening" line.
    pub fn listening(&mut self) -> u16 {
        self.listening_ports(1)[0]
    }

    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{line}").expect("write to the program's stdin");
    }

    /// Waits for the program to exit and collects the rest of its output.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // The pipes close with the process; collect what is left.
                for line in self.stdout.iter() {
                    self.out.push(line);
                }
                for line in self.stderr.iter() {
                    self.err.push(line);
                }
                return status;
            }
            if Instant::now() > deadline {
                self.fail("the program did not exit");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The styxy lines the program printed on stderr so far.
    pub fn styxy_lines(&mut self) -> Vec<String> {
        self.drain_stderr();
        self.err.iter().filter(|l| l.starts_with("styxy")).cloned().collect()
    }

    /// The move announced on stderr: (requested, new port). Waits for the
    /// line: it was written before the program's "listening" line, but the
    /// two pipes are read independently.
    pub fn the_move(&mut self) -> (u16, u16) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(line) = self.styxy_lines().first() {
                return moved_line(line).unwrap_or_else(|| self.fail(&format!("not a move line: {line:?}")));
            }
            match self.stderr.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => self.err.push(line),
                Err(_) => self.fail("no styxy line on stderr"),
            }
        }
    }

    /// Stops the program and returns every styxy line it printed.
    pub fn stop(&mut self) -> Vec<String> {
        let _ = self.child.kill();
        self.wait_exit();
        self.styxy_lines()
    }

    pub fn fail(&mut self, why: &str) -> ! {
        self.drain_stderr();
        let _ = self.child.kill();
        panic!("{why}\n--- stdout ---\n{}\n--- stderr ---\n{}", self.out.join("\n"), self.err.join("\n"));
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The port in "listening HOST PORT PID" or python's "Serving HTTP on HOST port PORT ...".
pub fn listening_port(line: &str) -> Option<u16> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["listening", _host, port, ..] => port.parse().ok(),
        ["Serving", "HTTP", "on", _host, "port", port, ..] => port.parse().ok(),
        _ => None,
    }
}

/// Parses `styxy: port P is in use[ by ...]; listening on N instead`.
pub fn moved_line(line: &str) -> Option<(u16, u16)> {
    let rest = line.strip_prefix("styxy: port ")?;
    let (requested, rest) = rest.split_once(' ')?;
    let rest = rest.strip_prefix("is in use")?;
    let (_, tail) = rest.split_once("; listening on ")?;
    let now = tail.strip_suffix(" instead")?;
    Some((requested.parse().ok()?, now.parse().ok()?))
}
