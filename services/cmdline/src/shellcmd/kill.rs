//! Kills in a command line: which ports, pids and process names they aim
//! at, so a hook can tell an agent the server it is about to kill belongs
//! to someone else.

use crate::lex::{self, Command, Connector, Word};
use crate::resolve::{Launch, resolve, strip_version};

/// What a command line kills. Lists may all be empty: a kill whose targets
/// the text does not tell (`kill $PID`, `kill %1`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KillTarget {
    /// Processes listening on these ports (`kill $(lsof -ti:3000)`,
    /// `fuser -k 3000/tcp`, `npx kill-port 3000`).
    pub ports: Vec<u16>,
    pub pids: Vec<u32>,
    /// Process names or command-line patterns (`pkill -f vite`, `killall node`).
    pub names: Vec<String>,
}

/// The kills in `command`, or None when it kills nothing.
pub fn kill_targets(command: &str) -> Option<KillTarget> {
    let mut target = KillTarget::default();
    let found = scan(command, &lex::parse(command), &mut target);
    found.then_some(target)
}

/// Look for kills among `commands` (parsed from `src`); answers whether one
/// was found.
fn scan(src: &str, commands: &[Command], target: &mut KillTarget) -> bool {
    let mut found = false;
    let mut pipeline_start = 0;
    for (i, c) in commands.iter().enumerate() {
        if let Some(script) = shell_script(&c.words) {
            found |= scan(src, &lex::remap(lex::parse(&script.text), script), target);
        }
        let Some((name, args)) = program(&c.words) else {
            if c.next != Connector::Pipe {
                pipeline_start = i + 1;
            }
            continue;
        };
        let upstream = &commands[pipeline_start..i];
        match name {
            "kill" => found |= kill(src, args, target),
            "pkill" => {
                found = true;
                procps_pattern(args, target);
            }
            "killall" => {
                found = true;
                let value_opts =
                    ["-s", "--signal", "-u", "--user", "-y", "--younger-than", "-o", "--older-than", "-Z", "--context"];
                target.names.extend(positionals(args, &value_opts).into_iter().map(|w| w.text.clone()));
            }
            "fuser" if args.iter().any(|a| is_short_flag(&a.text, 'k') || a.text == "--kill") => {
                found = true;
                fuser_ports(args, target);
            }
            "kill-port" => {
                found = true;
                for w in args {
                    target.ports.extend(w.text.split(',').filter_map(|p| p.parse::<u16>().ok()));
                }
            }
            "xargs" if xargs_kills(args) => {
                found = true;
                for producer in upstream {
                    produce(producer, target);
                }
            }
            _ => {}
        }
        if c.next != Connector::Pipe {
            pipeline_start = i + 1;
        }
    }
    found
}

/// The program of a simple command and its arguments, through wrappers
/// (`sudo kill`, `npx kill-port`).
fn program(words: &[Word]) -> Option<(&str, &[Word])> {
    let texts: Vec<&str> = words.iter().map(|w| w.text.as_str()).collect();
    match resolve(&texts).launch {
        Launch::Program { at } => {
            let name = words[at].text.rsplit('/').next().unwrap_or("");
            Some((strip_version(name), &words[at + 1..]))
        }
        _ => None,
    }
}

/// The script word of `bash -c SCRIPT`.
fn shell_script(words: &[Word]) -> Option<&Word> {
    let texts: Vec<&str> = words.iter().map(|w| w.text.as_str()).collect();
    match resolve(&texts).launch {
        Launch::Shell { string } => Some(&words[string]),
        _ => None,
    }
}

fn kill(src: &str, args: &[Word], target: &mut KillTarget) -> bool {
    let mut j = 0;
    while let Some(w) = args.get(j) {
        let t = w.text.as_str();
        match t {
            "-l" | "-L" | "--list" | "--table" => return false,
            "-s" | "-n" | "--signal" => j += 1,
            "--" => {}
            _ if w.dynamic => {
                for range in &w.substitutions {
                    for c in &lex::parse(&src[range.clone()]) {
                        produce(c, target);
                    }
                }
            }
            _ if t.starts_with('-') => {}
            _ => target.pids.extend(t.parse::<u32>().ok()),
        }
        j += 1;
    }
    true
}

/// A command whose output names processes: `lsof -ti:3000`, `pgrep -f
/// vite`, `pidof node`, `fuser 3000/tcp`, `ps aux | grep '[v]ite'`.
/// Options of pkill and pgrep (procps) that take a value, so the pattern is
/// the first word that is none of them nor their value.
const PROCPS_VALUE_OPTIONS: &[&str] = &[
    "-u",
    "-U",
    "-g",
    "-G",
    "-P",
    "-s",
    "-t",
    "-d",
    "-F",
    "--signal",
    "--delimiter",
    "--pidfile",
    "--euid",
    "--uid",
    "--group",
    "--parent",
    "--session",
    "--terminal",
];

/// The process-name pattern of a pkill or pgrep command.
fn procps_pattern(args: &[Word], target: &mut KillTarget) {
    target.names.extend(positionals(args, PROCPS_VALUE_OPTIONS).into_iter().take(1).map(|w| w.text.clone()));
}

fn produce(c: &Command, target: &mut KillTarget) {
    let Some((name, args)) = program(&c.words) else {
        return;
    };
    match name {
        "lsof" => lsof_ports(args, target),
        "fuser" => fuser_ports(args, target),
        "pgrep" => procps_pattern(args, target),
        "pidof" => target.names.extend(positionals(args, &["-o"]).into_iter().map(|w| w.text.clone())),
        "grep" | "egrep" | "rg" if !args.iter().any(|a| is_short_flag(&a.text, 'v')) => {
            let pattern = positionals(args, &["-e", "-f", "-m", "-A", "-B", "-C"]).into_iter().next();
            target.names.extend(pattern.map(|w| unbracket(&w.text)));
        }
        _ => {}
    }
}

/// `[v]ite` (the trick that keeps grep from matching itself) → `vite`.
fn unbracket(pattern: &str) -> String {
    match pattern.strip_prefix('[').and_then(|r| r.split_once(']')) {
        Some((first, rest)) if first.chars().count() == 1 => format!("{first}{rest}"),
        _ => pattern.to_string(),
    }
}

/// `xargs [opts] kill …`.
fn xargs_kills(args: &[Word]) -> bool {
    let value_opts = ["-n", "-I", "-P", "-L", "-d", "-E", "-s", "-a", "--max-args", "--max-procs", "--delimiter"];
    positionals(args, &value_opts).first().is_some_and(|w| matches!(w.text.rsplit('/').next(), Some("kill" | "pkill")))
}

fn is_short_flag(arg: &str, flag: char) -> bool {
    arg.starts_with('-') && !arg.starts_with("--") && arg[1..].contains(flag)
}

fn positionals<'a>(args: &'a [Word], value_opts: &[&str]) -> Vec<&'a Word> {
    let mut out = Vec::new();
    let mut j = 0;
    while let Some(w) = args.get(j) {
        let t = w.text.as_str();
        if t == "--" {
            out.extend(&args[j + 1..]);
            break;
        }
        if t.starts_with('-') && t.len() > 1 {
            j += if value_opts.contains(&t) { 2 } else { 1 };
            continue;
        }
        out.push(w);
        j += 1;
    }
    out
}

/// `lsof -ti:3000`, `lsof -t -i :3000`, `lsof -i tcp:3000,3001 -sTCP:LISTEN`.
fn lsof_ports(args: &[Word], target: &mut KillTarget) {
    // Flags that take no value and may share a cluster with -i (`-ti`).
    const NO_VALUE: &str = "tPnlVwbhURxQ";
    let mut j = 0;
    while let Some(w) = args.get(j) {
        let t = w.text.as_str();
        j += 1;
        let Some(cluster) = t.strip_prefix('-').filter(|c| !c.starts_with('-')) else {
            continue;
        };
        let Some(i) = cluster.find('i') else {
            continue;
        };
        if !cluster[..i].chars().all(|c| NO_VALUE.contains(c)) {
            continue;
        }
        let spec = match &cluster[i + 1..] {
            "" => match args.get(j) {
                Some(next) if !next.text.starts_with('-') => {
                    j += 1;
                    next.text.as_str()
                }
                _ => continue,
            },
            rest => rest,
        };
        if let Some((_, ports)) = spec.rsplit_once(':') {
            target.ports.extend(ports.split(',').filter_map(|p| p.parse::<u16>().ok()));
        }
    }
}

/// `fuser -k 3000/tcp`, `fuser -k -n tcp 3000`.
fn fuser_ports(args: &[Word], target: &mut KillTarget) {
    let tcp_namespace = args.windows(2).any(|p| p[0].text == "-n" && p[1].text == "tcp");
    for w in positionals(args, &["-n", "--namespace", "-s", "--signal"]) {
        let t = w.text.as_str();
        let port: Option<u16> = match t.split_once('/') {
            Some((port, "tcp")) => port.parse().ok(),
            None if tcp_namespace => t.parse().ok(),
            _ => None,
        };
        target.ports.extend(port);
    }
}
