//! Table-driven checks of the shell-command recogniser: real command lines
//! from tests/data/commands.tsv (server starts, their ports, rewrites for
//! another port, and commands that must not count as starts) and
//! tests/data/kills.tsv.

use std::path::{Path, PathBuf};

use styxy_cmdline::shellcmd::{kill_targets, recognise, rewrite_port};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

/// Non-comment rows of a tab-separated file, with their line numbers.
fn rows(name: &str) -> Vec<(usize, Vec<String>)> {
    let text = std::fs::read_to_string(data(name)).expect("test data is readable");
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .map(|(i, l)| (i + 1, l.split('\t').map(str::to_string).collect()))
        .collect()
}

#[test]
fn commands_table() {
    // Commands with cwd "." run in an empty directory outside any project.
    let empty = tempfile::tempdir().expect("temp dir");
    let mut failures = Vec::new();
    let (mut positives, mut negatives, mut rewrites) = (0, 0, 0);
    let table = rows("commands.tsv");
    for (line, cols) in &table {
        let [cwd, command, expected, rewrite] = cols.as_slice() else {
            failures.push(format!("line {line}: expected 4 columns, got {}", cols.len()));
            continue;
        };
        let dir = if cwd == "." { empty.path().to_path_buf() } else { data("projects").join(cwd) };
        let starts = recognise(command, &dir);
        let got = if starts.is_empty() {
            "none".to_string()
        } else {
            starts
                .iter()
                .map(|s| {
                    let port = s.port.map_or("-".to_string(), |p| p.to_string());
                    format!("{}/{}/{}/{:?}", s.tool.name, s.service_type, port, s.port_source)
                })
                .collect::<Vec<_>>()
                .join(" + ")
        };
        if &got != expected {
            failures.push(format!("line {line}: `{command}`\n    expected {expected}\n    got      {got}"));
            continue;
        }
        if starts.is_empty() {
            negatives += 1;
            continue;
        }
        positives += 1;
        for s in &starts {
            if s.span.is_empty() || command.get(s.span.clone()).is_none() {
                failures.push(format!("line {line}: `{command}`: bad span {:?}", s.span));
            }
        }
        let first = &starts[0];
        let new_port = first.port.map_or(4444, |p| p + 1);
        let rewritten = rewrite_port(command, first, new_port);
        match (rewritten.as_deref(), rewrite.as_str()) {
            (None, "!") => {}
            (Some(r), want) if r == want => {
                rewrites += 1;
                // The rewritten command starts the same tool on the new port.
                let again = recognise(r, &dir);
                if !again.iter().any(|s| s.tool.name == first.tool.name && s.port == Some(new_port)) {
                    failures.push(format!(
                        "line {line}: `{r}` is not recognised as {} on {new_port}: {again:?}",
                        first.tool.name
                    ));
                }
            }
            (got, want) => failures.push(format!(
                "line {line}: rewrite of `{command}` to {new_port}\n    expected {want}\n    got      {}",
                got.unwrap_or("!")
            )),
        }
        if first.can_rewrite() != rewrite.ne("!") {
            failures.push(format!("line {line}: can_rewrite() disagrees with rewrite_port"));
        }
    }
    println!("{} command lines: {positives} starts, {negatives} non-starts, {rewrites} rewrites", table.len());
    assert!(table.len() >= 150, "the table should hold at least 150 command lines");
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn kills_table() {
    let list =
        |s: &str| -> Vec<String> { if s == "-" { Vec::new() } else { s.split(',').map(str::to_string).collect() } };
    let mut failures = Vec::new();
    let table = rows("kills.tsv");
    for (line, cols) in &table {
        let [command, ports, pids, names] = cols.as_slice() else {
            failures.push(format!("line {line}: expected 4 columns"));
            continue;
        };
        let got = kill_targets(command).map(|k| {
            (
                k.ports.iter().map(u16::to_string).collect::<Vec<_>>(),
                k.pids.iter().map(u32::to_string).collect::<Vec<_>>(),
                k.names,
            )
        });
        let want = (ports != "none").then(|| (list(ports), list(pids), list(names)));
        if got != want {
            failures.push(format!("line {line}: `{command}`\n    expected {want:?}\n    got      {got:?}"));
        }
    }
    println!("{} kill command lines", table.len());
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

/// Hook input is whatever the agent typed: every prefix of every command in
/// the tables, and some broken shell, must be read without a panic, and a
/// start found in it must rewrite within it.
#[test]
fn broken_input_is_read_without_panics() {
    let mut commands: Vec<String> = rows("commands.tsv").into_iter().map(|(_, c)| c[1].clone()).collect();
    commands.extend(rows("kills.tsv").into_iter().map(|(_, c)| c[0].clone()));
    commands.extend(
        [
            "'unterminated",
            "\"unterminated $(",
            "kill $(echo \u{e9}",
            "vite \\",
            "$'\\",
            "npx vite --port ${",
            "cat <<",
            "a | | b",
            ")))",
            "((( vite",
            "é vite --port 3000 é",
            "npx @",
            "npx é@1",
            "docker run -p",
            "docker run -p :",
            "kill `lsof -ti:3000",
            "bash -c",
            "env",
            "sudo",
            "timeout",
            "npm run",
            "python -m",
            "node -e",
            "php -S",
            "\u{0}",
            "vite --port=99999999",
        ]
        .map(String::from),
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let mut prefixes = 0;
    for command in &commands {
        for (end, _) in command.char_indices().chain([(command.len(), ' ')]) {
            let prefix = &command[..end];
            prefixes += 1;
            for start in recognise(prefix, dir.path()) {
                let _ = rewrite_port(prefix, &start, 1234);
            }
            let _ = kill_targets(prefix);
        }
    }
    println!("{prefixes} prefixes read");
}
