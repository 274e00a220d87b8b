//! Property tests of the shell lexer. Hook input is whatever an agent
//! typed: any text is read without a panic into words whose every offset
//! lies in the source; words written quoted come back unquoted, each byte
//! traced to where it was written, and the connectors between simple
//! commands are kept.

use proptest::prelude::*;

use super::{Command, Connector, RESERVED_ALONE, RESERVED_PREFIX, RESERVED_SKIP, Word, parse, remap};

/// Text with the characters the lexer treats specially, often.
fn shellish() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z0-9 '\"$`\\\\(){}<>|&;#=:!\\n\\t-]{0,60}",
        "(vite|npm run dev|bash -c|cat <<EOF|\\$\\(|\\$\\{|\\$'|`|\"|'|\\\\|\\n|&&|\\|\\||[|&;()<>]| |x|é|2>&1){0,16}",
    ]
}

/// Every offset a command or word holds lies within `len` bytes, in order.
fn check_offsets(commands: &[Command], len: usize) -> Result<(), TestCaseError> {
    for c in commands {
        prop_assert!(c.span.start <= c.span.end && c.span.end <= len, "span {:?} of {len}", c.span);
        prop_assert!(!c.words.is_empty());
        for w in &c.words {
            prop_assert!(w.raw.start <= w.raw.end && w.raw.end <= len, "raw {:?} of {len}", w.raw);
            prop_assert_eq!(w.map.len(), w.text.len() + 1, "one offset per byte, then the end");
            prop_assert!(w.map.iter().all(|&k| k <= len), "map {:?} of {len}", w.map);
            prop_assert!(w.substitutions.iter().all(|r| r.start <= r.end && r.end <= len));
        }
    }
    Ok(())
}

/// A word written so the shell reads it back as `text`, in one of four
/// styles.
fn quote(text: &str, style: u8) -> String {
    match style % 4 {
        0 => format!("'{}'", text.replace('\'', r"'\''")),
        1 => {
            let mut out = String::from("\"");
            for c in text.chars() {
                if matches!(c, '"' | '\\' | '$' | '`') {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
            out
        }
        2 => {
            // Backslash before every character; a newline cannot be
            // escaped that way (it continues the line), so it is quoted.
            let mut out = String::new();
            for c in text.chars() {
                if c == '\n' {
                    out.push_str("'\n'");
                } else {
                    out.push('\\');
                    out.push(c);
                }
            }
            if text.is_empty() { "''".to_string() } else { out }
        }
        _ => format!("$'{}'", text.replace('\\', r"\\").replace('\'', r"\'")),
    }
}

/// Word texts, none a reserved word (the lexer drops those unquoted or
/// not, when they come first).
fn word_text() -> impl Strategy<Value = String> {
    prop_oneof!["[^\\x00]{0,12}", "[a-zA-Z0-9_./:=@%+,-]{1,12}", "[ '\"$`\\\\|&;()<>#\\n]{1,6}"]
        .prop_filter("not a reserved word", |t| {
            ![RESERVED_PREFIX, RESERVED_ALONE, RESERVED_SKIP].iter().any(|words| words.contains(&t.as_str()))
        })
}

fn connector() -> impl Strategy<Value = (&'static str, Connector)> {
    prop_oneof![
        Just((" && ", Connector::And)),
        Just((" || ", Connector::Or)),
        Just((" | ", Connector::Pipe)),
        Just(("; ", Connector::Sequence)),
        Just(("\n", Connector::Sequence)),
        Just((" & ", Connector::Background)),
    ]
}

/// A word's bytes as the source holds them, through its map.
fn traced(word: &Word, src: &str) -> Vec<u8> {
    word.map[..word.text.len()].iter().map(|&k| src.as_bytes()[k]).collect()
}

proptest! {
    #[test]
    fn any_text_is_read_without_a_panic(src in shellish()) {
        let commands = parse(&src);
        check_offsets(&commands, src.len())?;
        // `bash -c '…'` reads a word's text again, in its coordinates.
        for w in commands.iter().flat_map(|c| &c.words) {
            check_offsets(&remap(parse(&w.text), w), src.len())?;
            let _ = w.source_range(0..w.text.len());
        }
    }

    #[test]
    fn quoted_words_round_trip(
        commands in proptest::collection::vec(
            (proptest::collection::vec((word_text(), any::<u8>()), 1..5), connector()),
            1..5,
        ),
    ) {
        let mut src = String::new();
        let mut written = Vec::new();
        for (i, (words, (sep, _))) in commands.iter().enumerate() {
            for (k, (text, style)) in words.iter().enumerate() {
                if k > 0 {
                    src.push(' ');
                }
                let start = src.len();
                src.push_str(&quote(text, *style));
                written.push(start..src.len());
            }
            if i + 1 < commands.len() {
                src.push_str(sep);
            }
        }
        let parsed = parse(&src);
        let want: Vec<Vec<&str>> =
            commands.iter().map(|(words, _)| words.iter().map(|(t, _)| t.as_str()).collect()).collect();
        let got: Vec<Vec<&str>> = parsed.iter().map(|c| c.words.iter().map(|w| w.text.as_str()).collect()).collect();
        prop_assert_eq!(got, want, "source {:?}", src);
        for (i, c) in parsed.iter().enumerate() {
            let want_next = if i + 1 < commands.len() { commands[i].1.1 } else { Connector::Sequence };
            prop_assert_eq!(c.next, want_next, "source {:?}", src);
        }
        for (w, raw) in parsed.iter().flat_map(|c| &c.words).zip(written) {
            prop_assert_eq!(&w.raw, &raw, "source {:?}", src);
            prop_assert!(!w.dynamic, "a quoted word is not dynamic: {:?}", src);
            // Every byte comes from the source: itself, or the escape
            // sequence (`\n` in `$'…'`) that wrote it.
            let from = traced(w, &src);
            for (k, (&b, &s)) in w.text.as_bytes().iter().zip(&from).enumerate() {
                let escape = s == b'\\' && w.map[k] >= raw.start;
                prop_assert!(b == s || escape, "byte {k} of {:?} traced to {:?} in {:?}", w.text, s as char, src);
            }
        }
    }
}
