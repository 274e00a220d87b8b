//! Property tests of the recogniser, through the API the hooks and the
//! observer use. Any text or argv is read without a panic; every tool of the
//! table, started bare behind common wrappers and followed by common
//! redirections, is recognised, moved to any port in its own syntax with
//! the rest of the command untouched, and recognised again on that port;
//! kills name the ports, pids and names written in them.

use proptest::prelude::*;
use styxy_cmdline::resolve::find_tool;
use styxy_cmdline::service_type::infer_service_type;
use styxy_cmdline::shellcmd::{PortSource, kill_targets, recognise, rewrite_port};
use styxy_cmdline::tools::{PortSyntax, Subcommand, TOOLS, Tool};

/// Text with shell syntax and tool names in it, often.
fn command_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z0-9 .:=/'\"$`\\\\(){}<>|&;#-]{0,60}",
        "((vite|npm run dev|docker run -p|bash -c|PORT=|--port|-p|kill|lsof -ti:|\\$\\(|'|\"|\\\\|&&|\\||;|<<|3000|:|=| |é)){0,16}",
    ]
}

/// The tools a bare command line can start and a rewrite can move: their
/// port is not only in a configuration file or a container's `-p`.
fn movable_tools() -> Vec<&'static Tool> {
    TOOLS.iter().filter(|t| !matches!(t.port, PortSyntax::ConfigFile | PortSyntax::Publish)).collect()
}

/// The tool started with nothing but what the table says it needs: its
/// first program name, its first subcommand, its first required option.
fn bare(tool: &Tool) -> String {
    let mut words = vec![tool.programs[0]];
    if let Subcommand::OneOf(subs) | Subcommand::Goal(subs) = tool.subcommand {
        words.push(subs[0]);
    }
    words.extend(tool.requires.first());
    words.join(" ")
}

/// Text before the start: another command, or wrappers of the same simple
/// command (`true` when an environment prefix goes before them).
const PREFIXES: &[(&str, bool)] =
    &[("", true), ("cd web && ", false), ("nohup ", true), ("env FOO=1 ", true), ("FOO=1 ", true), ("time ", true)];
/// Text after the start: redirections, a pipe, another command.
const SUFFIXES: &[&str] = &["", " &", " > log 2>&1", " 2>&1 | tee log", "; echo done", " && echo ok"];

proptest! {
    #[test]
    fn any_command_is_read_without_a_panic(command in command_text(), port in any::<u16>()) {
        let dir = tempfile::tempdir().expect("temp dir");
        for start in recognise(&command, dir.path()) {
            prop_assert!(command.get(start.span.clone()).is_some(), "span {:?} of {:?}", start.span, command);
            let rewritten = rewrite_port(&command, &start, port);
            prop_assert_eq!(rewritten.is_some(), start.can_rewrite(), "{:?}", command);
            if let Some(r) = rewritten {
                let _ = recognise(&r, dir.path());
            }
        }
        let _ = kill_targets(&command);
    }

    #[test]
    fn any_argv_is_read_without_a_panic(argv in proptest::collection::vec(command_text(), 0..6)) {
        let _ = infer_service_type(&argv);
        let _ = find_tool(&argv);
    }

    /// Each movable tool of the table, written bare, is recognised at its
    /// default port; moved to `port`, it is recognised there, with the text
    /// around it unchanged; moved again, the result is as if moved once.
    #[test]
    fn every_tool_moves_to_any_port(
        index in 0..movable_tools().len(),
        prefix in proptest::sample::select(PREFIXES),
        suffix in proptest::sample::select(SUFFIXES),
        port in 1u16..,
        again in 1u16..,
    ) {
        let tool = movable_tools()[index];
        let (prefix, same_command) = prefix;
        let dir = tempfile::tempdir().expect("temp dir");
        let bare = bare(tool);
        let command = format!("{prefix}{bare}{suffix}");
        let starts = recognise(&command, dir.path());
        prop_assert_eq!(starts.len(), 1, "{:?}: {:?}", command, starts);
        let start = &starts[0];
        prop_assert_eq!(start.tool.name, tool.name);
        prop_assert_eq!(start.port, tool.default_port);
        // The span is the whole simple command, wrappers and redirections
        // included.
        prop_assert!(command[start.span.clone()].contains(&bare), "span {:?} of {:?}", start.span, command);

        let moved = rewrite_port(&command, start, port);
        let Some(moved) = moved else {
            return Err(TestCaseError::fail(format!("{command:?} cannot be moved")));
        };
        // Only the start changes; an environment prefix goes before the
        // wrappers of its simple command.
        let alone = rewrite_port(&bare, &recognise(&bare, dir.path())[0], port).expect("bare start moves");
        let want = match alone.strip_suffix(bare.as_str()) {
            Some(env) if same_command => format!("{env}{prefix}{bare}{suffix}"),
            _ => format!("{prefix}{alone}{suffix}"),
        };
        prop_assert_eq!(&moved, &want);

        let starts = recognise(&moved, dir.path());
        prop_assert_eq!(starts.len(), 1, "{:?}: {:?}", moved, starts);
        prop_assert_eq!(starts[0].tool.name, tool.name);
        prop_assert_eq!(starts[0].port, Some(port), "{:?}", moved);
        prop_assert_ne!(starts[0].port_source, PortSource::FrameworkDefault);
        prop_assert_eq!(infer_service_type(&["sh", "-c", moved.as_str()]), Some(tool.service_type));

        let twice = rewrite_port(&moved, &starts[0], again);
        prop_assert_eq!(twice, rewrite_port(&command, start, again));
    }

    #[test]
    fn kills_name_their_ports(
        port in 1u16..,
        form in proptest::sample::select(&[
            "kill $(lsof -ti:{})",
            "kill -9 $(lsof -t -i :{}) 2>/dev/null || true",
            "lsof -ti tcp:{} | xargs kill",
            "fuser -k {}/tcp",
            "npx kill-port {}",
        ][..]),
    ) {
        let command = form.replace("{}", &port.to_string());
        let target = kill_targets(&command);
        prop_assert!(target.is_some(), "{:?}", command);
        let target = target.unwrap_or_default();
        prop_assert_eq!(target.ports, vec![port], "{:?}", command);
        prop_assert!(target.pids.is_empty() && target.names.is_empty());
    }

    #[test]
    fn kills_name_their_pids_and_names(
        pids in proptest::collection::vec(1u32..=4_194_304, 1..4),
        name in "[a-z][a-z0-9_.-]{0,15}",
        signal in proptest::sample::select(&["", "-9 ", "-TERM ", "-s KILL "][..]),
    ) {
        let list: Vec<String> = pids.iter().map(u32::to_string).collect();
        let command = format!("kill {signal}{}", list.join(" "));
        let target = kill_targets(&command).unwrap_or_default();
        prop_assert_eq!(&target.pids, &pids, "{:?}", command);
        prop_assert!(target.ports.is_empty() && target.names.is_empty());

        for command in [format!("pkill {signal}-f {name}"), format!("killall {signal}{name}")] {
            let target = kill_targets(&command).unwrap_or_default();
            prop_assert_eq!(&target.names, &vec![name.clone()], "{:?}", command);
        }
    }
}
