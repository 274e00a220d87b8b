//! Black-box tests of the `styxy` binary that need no allocator: help,
//! completions, the man page, usage errors, an unreachable allocator, `run`
//! without an allocator, `shell-init`, `config validate`.
#![allow(clippy::unwrap_used)] // a test or benchmark: a failed unwrap is a failure

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `styxy` with an environment of its own: sockets, state and config under
/// `dir`, no session, no autostart unless a test turns it on.
fn styxy(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_styxy"));
    c.env("XDG_RUNTIME_DIR", dir.join("run"))
        .env("STYXY_SOCKET", dir.join("api.sock"))
        .env("STYXY_STATE_DIR", dir.join("state"))
        .env("STYXY_CONFIG", dir.join("config.toml"))
        .env("STYXY_SYSTEM_CONFIG", dir.join("system.toml"))
        .env("HOME", dir)
        .env("STYXY_NO_AUTOSTART", "1")
        .env_remove("STYXY_SESSION")
        .env_remove("STYXY_PRELOAD_LIB")
        .env_remove("LD_PRELOAD");
    c
}

fn run(c: &mut Command) -> Output {
    c.output().expect("run styxy")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const SUBCOMMANDS: [&str; 17] = [
    "allocate",
    "release",
    "check",
    "list",
    "scan",
    "instances",
    "cleanup",
    "config",
    "doctor",
    "daemon",
    "token",
    "run",
    "shell-init",
    "completions",
    "hook",
    "hooks",
    "auto-allocation",
];

#[test]
fn help_lists_commands_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(styxy(dir.path()).arg("--help"));
    assert_eq!(o.status.code(), Some(0));
    let text = stdout(&o);
    for cmd in &SUBCOMMANDS[..16] {
        assert!(text.contains(cmd), "--help does not mention {cmd}:\n{text}");
    }
    for line in ["0  success", "1  refused", "2  usage error", "3  the allocator could not be reached"] {
        assert!(text.contains(line), "--help lacks {line:?}:\n{text}");
    }
    let o = run(styxy(dir.path()).args(["allocate", "--help"]));
    assert!(stdout(&o).contains("$STYXY_SESSION"), "{}", stdout(&o));
}

#[test]
fn completions_cover_every_subcommand_in_each_shell() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let o = run(styxy(dir.path()).args(["completions", shell]));
        assert_eq!(o.status.code(), Some(0), "{shell}: {}", stderr(&o));
        let script = stdout(&o);
        for cmd in SUBCOMMANDS {
            assert!(script.contains(cmd), "{shell} completions lack {cmd}");
        }
    }
    let o = run(styxy(dir.path()).args(["completions", "tcsh"]));
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn man_page_is_roff_with_commands_and_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(styxy(dir.path()).arg("man"));
    assert_eq!(o.status.code(), Some(0));
    let page = stdout(&o);
    assert!(page.contains(".TH styxy 1"), "{page}");
    assert!(page.contains(".SH \"EXIT STATUS\""), "{page}");
    for cmd in &SUBCOMMANDS[..16] {
        let roff_name = format!("styxy\\-{}(1)", cmd.replace('-', "\\-"));
        assert!(page.contains(&roff_name), "man page lacks {roff_name}");
    }
    // It renders: man(1) formats it without complaint when it is installed.
    if Path::new("/usr/bin/man").exists() {
        let file = dir.path().join("styxy.1");
        std::fs::write(&file, &page).unwrap();
        let rendered = Command::new("man").arg("-l").arg(&file).env("MANPAGER", "cat").output().unwrap();
        assert!(rendered.status.success(), "{}", String::from_utf8_lossy(&rendered.stderr));
        assert!(String::from_utf8_lossy(&rendered.stdout).contains("EXIT STATUS"));
    }
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["bogus"],
        vec!["check", "notaport"],
        vec!["check", "0"],
        vec!["check", "70000"],
        vec!["allocate"],
        vec!["allocate", "-s", "dev", "--lease", "forever"],
        vec!["run"],
        vec!["scan", "-s", "5000", "-e", "4000"],
        vec!["allocate", "-s", "dev", "--lease", "session"],
        vec!["--timeout", "0", "list"],
    ] {
        let o = run(styxy(dir.path()).args(&args));
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).is_empty(), "{args:?} explains nothing");
    }
    // With no arguments, the help is the answer, with a usage status.
    let o = run(&mut styxy(dir.path()));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("Usage:"));
}

#[test]
fn unreachable_allocator_exits_3_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("api.sock");
    for args in [vec!["list"], vec!["allocate", "-s", "dev"], vec!["check", "3000"], vec!["token"]] {
        let o = run(styxy(dir.path()).args(&args));
        assert_eq!(o.status.code(), Some(3), "{args:?}");
        let err = stderr(&o);
        assert!(err.starts_with("styxy: no allocator answers"), "{args:?}: {err}");
        assert!(err.contains(&socket.display().to_string()), "{err}");
        assert!(err.contains("--no-autostart"), "{err}");
        assert!(o.stdout.is_empty());
    }

    let o = run(styxy(dir.path()).args(["--json", "list"]));
    assert_eq!(o.status.code(), Some(3));
    assert!(o.stderr.is_empty(), "{}", stderr(&o));
    let body: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON on stdout");
    assert_eq!(body["success"], false);
    assert_eq!(body["error"], "unreachable");
    assert!(body["message"].as_str().unwrap().contains("no allocator answers"));

    // A socket file with nobody behind it is just as unreachable.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let o = run(styxy(dir.path()).args(["--socket"]).arg(&socket).arg("list"));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));

    // `daemon status` reports the allocator stopped without starting one.
    let o = run(styxy(dir.path()).env_remove("STYXY_NO_AUTOSTART").args(["daemon", "status"]));
    assert_eq!(o.status.code(), Some(3));
    assert!(stdout(&o).contains("stopped"), "{}", stdout(&o));
}

#[test]
fn missing_allocator_executable_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(styxy(dir.path())
        .env_remove("STYXY_NO_AUTOSTART")
        .env("STYXY_ALLOCATOR", dir.path().join("no-such-allocator"))
        .arg("list"));
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("no-such-allocator"), "{}", stderr(&o));
}

#[test]
fn run_without_an_allocator_still_runs_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(styxy(dir.path()).args(["run", "--", "sh", "-c", "echo \"port=${PORT-unset}\"; exit 7"]));
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert_eq!(stdout(&o), "port=unset\n");
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("styxy: running without a reserved port"), "{err}");

    let o = run(styxy(dir.path()).args(["run", "--", "no-such-command-styxy"]));
    assert_eq!(o.status.code(), Some(127));
    assert!(stderr(&o).contains("cannot run no-such-command-styxy"), "{}", stderr(&o));
}

#[test]
fn run_supervises_a_static_binary_and_warns_when_told_to_preload_it() {
    let dir = tempfile::tempdir().unwrap();
    // glibc's ldconfig is statically linked: auto runs it under the
    // seccomp supervisor, silently.
    let o = run(styxy(dir.path()).args(["run", "--", "/sbin/ldconfig", "--version"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stderr(&o).contains("LD_PRELOAD cannot"), "{}", stderr(&o));
    let o = run(styxy(dir.path()).args(["run", "--intercept", "preload", "--", "/sbin/ldconfig", "--version"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("/sbin/ldconfig is statically linked: LD_PRELOAD cannot move its port"), "{err}");
    let o = run(styxy(dir.path()).args(["run", "--", "sh", "-c", "true"]));
    assert!(!stderr(&o).contains("LD_PRELOAD cannot"), "{}", stderr(&o));
}

#[test]
fn run_prepends_the_preload_library() {
    let dir = tempfile::tempdir().unwrap();
    let lib = fake_preload(dir.path());
    let o = run(styxy(dir.path()).env("STYXY_PRELOAD_LIB", &lib).env("LD_PRELOAD", "").args([
        "run",
        "--",
        "sh",
        "-c",
        "printf %s \"$LD_PRELOAD\"",
    ]));
    assert_eq!(stdout(&o), lib.display().to_string());
}

/// A file standing for the preload library (never loaded by these tests).
fn fake_preload(dir: &Path) -> PathBuf {
    let lib = dir.join("libstyxy_preload.so");
    std::fs::write(&lib, b"not really a library").unwrap();
    std::fs::canonicalize(lib).unwrap()
}

#[test]
fn shell_init_prepends_the_library_once() {
    let dir = tempfile::tempdir().unwrap();
    let lib = fake_preload(dir.path());
    let lib_text = lib.display().to_string();

    for (shell, assignment) in
        [("bash", "export LD_PRELOAD="), ("zsh", "export LD_PRELOAD="), ("fish", "set -gx LD_PRELOAD")]
    {
        let o = run(styxy(dir.path()).env("STYXY_PRELOAD_LIB", &lib).args(["shell-init", shell]));
        assert_eq!(o.status.code(), Some(0), "{shell}: {}", stderr(&o));
        let script = stdout(&o);
        assert!(script.starts_with("# styxy:"), "{shell}: {script}");
        assert!(script.contains(assignment), "{shell}: {script}");
        assert!(script.contains(&lib_text), "{shell}: {script}");
    }

    // bash runs it: sourced twice, the library is prepended once and the
    // existing value is kept.
    let o = run(styxy(dir.path()).env("STYXY_PRELOAD_LIB", &lib).args(["shell-init", "bash"]));
    let shell = Command::new("bash")
        .arg("-c")
        .arg("LD_PRELOAD=/opt/other.so; eval \"$SCRIPT\"; eval \"$SCRIPT\"; printf %s \"$LD_PRELOAD\"")
        .env("SCRIPT", stdout(&o))
        .env_remove("LD_PRELOAD")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&shell.stdout), format!("{lib_text}:/opt/other.so"));

    // Without the library there is nothing to print.
    let o = run(styxy(dir.path()).env("STYXY_PRELOAD_LIB", dir.path().join("missing.so")).args(["shell-init", "bash"]));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("missing.so"), "{}", stderr(&o));
}

#[test]
fn config_validate_lists_each_issue_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[service_types.web]\nrange = [5000, 4000]\n\n[auto_allocation]\nenabled = \"yes\"\n")
        .unwrap();
    let o = run(styxy(dir.path()).args(["config", "validate"]));
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let text = stdout(&o);
    let prefix = format!("{}: ", config.display());
    assert!(text.lines().count() >= 2, "{text}");
    assert!(text.lines().all(|l| l.starts_with(&prefix)), "{text}");
    assert!(text.contains("service_types.web.range"), "{text}");
    assert!(text.contains("auto_allocation.enabled"), "{text}");

    let o = run(styxy(dir.path()).args(["--json", "config", "validate"]));
    assert_eq!(o.status.code(), Some(1));
    let body: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(body["valid"], false);
    assert!(body["issues"].as_array().unwrap().iter().any(|i| i["field"] == "service_types.web.range"));
}

#[test]
fn config_validate_accepts_a_good_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.toml"),
        "[service_types.web]\ndescription = \"my web\"\nrange = [12000, 12009]\npreferred_ports = [12000]\n",
    )
    .unwrap();
    let o = run(styxy(dir.path()).args(["config", "validate"]));
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let text = stdout(&o);
    assert!(text.starts_with("configuration is valid ("), "{text}");
    // One more type than the built-ins alone.
    std::fs::remove_file(dir.path().join("config.toml")).unwrap();
    let builtins = stdout(&run(styxy(dir.path()).args(["config", "validate"])));
    let count = |t: &str| -> usize { t.split(['(', ' ']).find_map(|w| w.parse().ok()).unwrap() };
    assert_eq!(count(&text), count(&builtins) + 1, "{text} vs {builtins}");
}

#[test]
fn auto_allocation_enable_and_disable_edit_the_user_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "# mine\n[service_types.web]\nrange = [12000, 12009]\n").unwrap();
    let o = run(styxy(dir.path()).args(["config", "auto-allocation", "disable"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("daemon stop"), "{}", stdout(&o));
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.starts_with("# mine\n"), "{text}");
    assert!(text.contains("enabled = false"), "{text}");
    run(styxy(dir.path()).args(["config", "auto-allocation", "enable"]));
    assert!(std::fs::read_to_string(&config).unwrap().contains("enabled = true"));

    // A broken file is refused and left alone.
    std::fs::write(&config, "[service_types.web\n").unwrap();
    let o = run(styxy(dir.path()).args(["config", "auto-allocation", "enable"]));
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(std::fs::read_to_string(&config).unwrap(), "[service_types.web\n");
}
