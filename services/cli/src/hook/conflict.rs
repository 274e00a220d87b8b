//! Spotting a port conflict in what a command printed: the kernel's
//! EADDRINUSE in each runtime's words, Docker's "port is already allocated",
//! and the frameworks' own sentences ("Port 4200 is already in use",
//! "Something is already running on port 3000"). Servers that move on
//! their own ("Port 5173 is in use, trying another one") are not conflicts.

/// Output past this many bytes from the end is not read: the error that
/// ended a server is near the end.
const TAIL: usize = 256 * 1024;
/// Lines after the conflict line where its port may be given
/// (PostgreSQL's "HINT: … on port 5432?", Flask's "Port 5000 is in use…").
const LINES_AFTER: usize = 3;

/// Wording that only a port conflict produces.
const ALWAYS: &[&str] = &[
    "eaddrinuse",
    "addrinuse",
    "address already in use",
    "address in use",
    "port is already allocated",
    "already running on port",
];

/// Wording that is a conflict when the line also speaks of a port.
const WITH_PORT: &[&str] =
    &["already in use", "in use by another", "already allocated", "is not available", "not open on"];

/// A port conflict found in output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The line that says so, trimmed.
    pub line: String,
    /// The port it names, when the line (or the few after it) does.
    pub port: Option<u16>,
}

/// The first port conflict in `output`.
pub fn find_conflict(output: &str) -> Option<Conflict> {
    let start = output.len().saturating_sub(TAIL);
    let start = (start..=output.len()).find(|i| output.is_char_boundary(*i))?;
    let lines: Vec<&str> = output[start..].lines().collect();
    let at = lines.iter().position(|l| is_conflict_line(l))?;
    let port = lines[at..]
        .iter()
        .take(1 + LINES_AFTER)
        .find_map(|l| port_in(l))
        .or_else(|| at.checked_sub(1).and_then(|i| port_in(lines[i])));
    Some(Conflict { line: lines[at].trim().to_string(), port })
}

fn is_conflict_line(line: &str) -> bool {
    let lower = line.to_ascii_lowercase();
    ALWAYS.iter().any(|w| lower.contains(w))
        || (lower.contains("port") && WITH_PORT.iter().any(|w| lower.contains(w)))
        || (lower.contains("is port ") && lower.contains(" in use"))
}

/// The port a line names: after the word "port" first, else the last
/// `host:port` (timestamps come first on a line), else a Python address
/// tuple `('127.0.0.1', 8000)`.
pub fn port_in(line: &str) -> Option<u16> {
    let lower = line.to_ascii_lowercase();
    after_word_port(&lower).or_else(|| last_host_port(&lower)).or_else(|| tuple_port(&lower))
}

/// A whole number starting at `at` (not part of a longer number or a
/// dotted address), as a port.
fn number_at(text: &str, at: usize) -> Option<u16> {
    let digits: &str = {
        let rest = &text[at..];
        let end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        &rest[..end]
    };
    let mut rest = text[at + digits.len()..].chars();
    let (after, then) = (rest.next(), rest.next());
    let before = text[..at].chars().next_back();
    // "3000." ends a sentence; "10.0" is part of an address or a version.
    let dotted = after == Some('.') && then.is_some_and(|c| c.is_ascii_digit());
    if digits.is_empty()
        || digits.len() > 5
        || dotted
        || after.is_some_and(|c| c.is_ascii_alphanumeric())
        || before.is_some_and(|c| c.is_ascii_digit() || c == '.')
    {
        return None;
    }
    digits.parse::<u16>().ok().filter(|p| *p > 0)
}

fn after_word_port(lower: &str) -> Option<u16> {
    lower.match_indices("port").find_map(|(i, _)| {
        if lower[..i].chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric()) {
            return None;
        }
        let rest = &lower[i + 4..];
        let skipped = rest.len() - rest.trim_start_matches([' ', ':', '=', '#']).len();
        if skipped == 0 {
            return None;
        }
        number_at(lower, i + 4 + skipped)
    })
}

/// The last `host:port`, `[::1]:port`, `:::port` or bare `:port` (Go's
/// "listen tcp :8080").
fn last_host_port(lower: &str) -> Option<u16> {
    lower.match_indices(':').rev().find_map(|(i, _)| {
        let host_end = lower[..i]
            .chars()
            .next_back()
            .is_none_or(|c| c.is_ascii_alphanumeric() || c.is_whitespace() || matches!(c, ']' | ':' | '*'));
        if !host_end || is_clock(lower, i) {
            return None;
        }
        number_at(lower, i + 1)
    })
}

/// Whether the colon at `at` is one of a clock's (`12:30:45`,
/// `2024-05-01T09:41:07.512Z`).
fn is_clock(text: &str, at: usize) -> bool {
    let digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    let (before, after) = (&text[..at], &text[at + 1..]);
    let last2 = |s: &str| s.len() >= 2 && s.is_char_boundary(s.len() - 2) && digits(&s[s.len() - 2..]);
    let first2 = |s: &str| s.get(..2).is_some_and(digits);
    let first_colon = last2(before) && first2(after) && after[2..].starts_with(':') && first2(&after[3..]);
    let second_colon = first2(after)
        && before.len() >= 5
        && before.is_char_boundary(before.len() - 5)
        && last2(before)
        && before[..before.len() - 2].ends_with(':')
        && last2(&before[..before.len() - 3]);
    first_colon || second_colon
}

fn tuple_port(lower: &str) -> Option<u16> {
    lower.match_indices("', ").find_map(|(i, _)| number_at(lower, i + 3))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real messages of servers that found their port taken, and the port
    /// each names (None: the message does not say).
    const CONFLICTS: &[(&str, Option<u16>)] = &[
        ("Error: listen EADDRINUSE: address already in use :::3000", Some(3000)),
        ("Error: listen EADDRINUSE: address already in use 127.0.0.1:8080", Some(8080)),
        ("OSError: [Errno 98] Address already in use", None),
        (
            "ERROR:    [Errno 98] error while attempting to bind on address ('127.0.0.1', 8000): address already in use",
            Some(8000),
        ),
        (
            "Address already in use\nPort 5000 is in use by another program. Either identify and stop that program, or start the server with a different port.",
            Some(5000),
        ),
        ("Error: That port is already in use.", None),
        ("Address already in use - bind(2) for \"127.0.0.1\" port 3000 (Errno::EADDRINUSE)", Some(3000)),
        ("listen tcp :8080: bind: address already in use", Some(8080)),
        ("2024/05/01 12:30:45 listen tcp 0.0.0.0:9090: bind: address already in use", Some(9090)),
        (
            "docker: Error response from daemon: driver failed programming external connectivity on endpoint web: Bind for 0.0.0.0:8080 failed: port is already allocated.",
            Some(8080),
        ),
        ("Port 4200 is already in use. Use '--port' to specify a different port.", Some(4200)),
        ("error when starting dev server:\nError: Port 5173 is already in use", Some(5173)),
        ("Something is already running on port 3000.", Some(3000)),
        ("Web server failed to start. Port 8080 was already in use.", Some(8080)),
        ("java.net.BindException: Address already in use", None),
        (
            "LOG:  could not bind IPv4 address \"127.0.0.1\": Address already in use\nHINT:  Is another postmaster already running on port 5432? If not, wait a few seconds and retry.",
            Some(5432),
        ),
        ("Could not create server TCP listening socket *:6379: bind: Address already in use", Some(6379)),
        ("[Fri May 3 10:00:00 2024] Failed to listen on localhost:8000 (reason: Address already in use)", Some(8000)),
        ("error: Failed to start server. Is port 3000 in use?", Some(3000)),
        ("error: AddrInUse: Address already in use (os error 98)", None),
        (
            "** (RuntimeError) could not start the Cowboy/Ranch listener for MyAppWeb.Endpoint.HTTP because port 4000 is in use (:eaddrinuse)",
            Some(4000),
        ),
        ("nginx: [emerg] bind() to 0.0.0.0:80 failed (98: Address already in use)", Some(80)),
        ("Port 6006 is not available.", Some(6006)),
    ];

    #[test]
    fn each_runtimes_wording_is_a_conflict_with_its_port() {
        for (text, port) in CONFLICTS {
            let found = find_conflict(text).unwrap_or_else(|| panic!("not spotted: {text}"));
            assert_eq!(found.port, *port, "{text}");
        }
    }

    #[test]
    fn servers_that_move_themselves_and_other_failures_are_not_conflicts() {
        for text in [
            "Port 5173 is in use, trying another one...",
            "  ⚠ Port 3000 is in use, trying 3001 instead.",
            "npm ERR! missing script: start",
            "Error: listen EACCES: permission denied 0.0.0.0:80",
            "Listening on port 3000",
            "tests passed: 12 ports checked",
            "",
        ] {
            assert_eq!(find_conflict(text), None, "{text}");
        }
    }

    #[test]
    fn the_conflict_is_found_among_other_output_and_names_its_line() {
        let output = "> app@1.0.0 start\n> node server.js\n\nnode:events:497\n      throw er; // Unhandled 'error' event\n      ^\n\nError: listen EADDRINUSE: address already in use :::3000\n    at Server.setupListenHandle [as _listen2] (node:net:1817:16)\n";
        let found = find_conflict(output).unwrap();
        assert_eq!(found.port, Some(3000));
        assert_eq!(found.line, "Error: listen EADDRINUSE: address already in use :::3000");
    }

    #[test]
    fn ports_are_whole_numbers_in_range() {
        assert_eq!(port_in("port 99999 is taken"), None);
        assert_eq!(port_in("listening on 10.0.0.1:8080"), Some(8080));
        assert_eq!(port_in("port: 3000"), Some(3000));
        assert_eq!(port_in("report 3000"), None);
        assert_eq!(port_in("at 12:30:45"), None);
        assert_eq!(port_in("2025-10-11t09:41:07.512z"), None);
        assert_eq!(port_in("[12:30:45] listening on :3000"), Some(3000));
    }

    #[test]
    fn output_in_any_script_and_of_any_size_is_read_without_panic() {
        let big = "é".repeat(300_000) + "\nError: listen EADDRINUSE: address already in use :::4000\n";
        assert_eq!(find_conflict(&big).and_then(|c| c.port), Some(4000));
        for text in ["port ", "port:", ":", "', ", "EADDRINUSE :"] {
            let _ = find_conflict(text);
        }
    }
}
