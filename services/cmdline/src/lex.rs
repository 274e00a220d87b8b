//! A small POSIX-shell reader: enough to split a Bash command line into
//! simple commands and words, with quotes removed and every byte of every
//! word traced back to where it was written, so a rewrite can edit the
//! original string in place.
//!
//! It does not expand anything: `$VAR`, `$(…)` and backticks stay as written
//! and mark the word dynamic.

use std::ops::Range;

/// One word of a simple command, quotes removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Word {
    pub text: String,
    /// For each byte of `text`, then one past its end, the offset in the
    /// source. A word written `'vite'` ends at the closing quote, so an
    /// insertion at the end of a nested `bash -c 'vite'` lands inside it.
    pub map: Vec<usize>,
    /// The whole word in the source, quotes included.
    pub raw: Range<usize>,
    /// Holds an unexpanded `$…` or backtick part.
    pub dynamic: bool,
    /// The insides of `$(…)` and backtick substitutions, in the source.
    pub substitutions: Vec<Range<usize>>,
    /// Which source text `map` points into: 0 for the command line itself;
    /// the recogniser numbers the package.json scripts it reads.
    pub src: usize,
}

impl Word {
    /// The source range of `text[range]`, if those bytes were written
    /// contiguously (`30"00"` was not).
    pub fn source_range(&self, range: Range<usize>) -> Option<Range<usize>> {
        if range.is_empty() {
            let at = self.map[range.start];
            return Some(at..at);
        }
        let start = self.map[range.start];
        let contiguous = (range.start..range.end - 1).all(|k| self.map[k + 1] == self.map[k] + 1);
        contiguous.then(|| start..self.map[range.end - 1] + 1)
    }
}

/// How a simple command is joined to the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Connector {
    /// `;`, a newline, `(`, `)` or the end.
    Sequence,
    And,
    Or,
    Pipe,
    Background,
}

/// A simple command: its words (assignments included, redirections and
/// reserved words left out) and where it stands in the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Command {
    pub words: Vec<Word>,
    pub span: Range<usize>,
    pub next: Connector,
}

/// Split `src` into simple commands.
pub(crate) fn parse(src: &str) -> Vec<Command> {
    let mut lexer = Lexer {
        src,
        b: src.as_bytes(),
        pos: 0,
        commands: Vec::new(),
        words: Vec::new(),
        span: None,
        heredocs: Vec::new(),
    };
    lexer.run();
    lexer.commands
}

/// Re-express commands parsed from a word's text in the coordinates of
/// the source the word came from (`bash -c '…'`).
pub(crate) fn remap(commands: Vec<Command>, outer: &Word) -> Vec<Command> {
    let at = |k: usize| outer.map[k.min(outer.map.len() - 1)];
    commands
        .into_iter()
        .map(|c| Command {
            words: c
                .words
                .into_iter()
                .map(|w| Word {
                    map: w.map.iter().map(|&k| at(k)).collect(),
                    raw: at(w.raw.start)..at(w.raw.end),
                    substitutions: w.substitutions.iter().map(|r| at(r.start)..at(r.end)).collect(),
                    src: outer.src,
                    ..w
                })
                .collect(),
            span: at(c.span.start)..at(c.span.end),
            next: c.next,
        })
        .collect()
}

/// Words that open or close compound commands; they are not programs.
const RESERVED_PREFIX: &[&str] = &["if", "then", "else", "elif", "do", "while", "until", "!", "{"];
const RESERVED_ALONE: &[&str] = &["fi", "done", "esac", "}"];
/// Compound commands whose words are not a program and its arguments.
const RESERVED_SKIP: &[&str] = &["for", "case", "select", "function", "[[", "[", "test"];

struct Lexer<'a> {
    src: &'a str,
    b: &'a [u8],
    pos: usize,
    commands: Vec<Command>,
    words: Vec<Word>,
    span: Option<Range<usize>>,
    /// Here-document delimiters waiting for the next newline: (word, strip tabs).
    heredocs: Vec<(String, bool)>,
}

impl Lexer<'_> {
    fn peek(&self, k: usize) -> Option<u8> {
        self.b.get(self.pos + k).copied()
    }

    fn extend_span(&mut self, range: Range<usize>) {
        self.span = Some(match self.span.take() {
            Some(s) => s.start.min(range.start)..s.end.max(range.end),
            None => range,
        });
    }

    fn finish(&mut self, next: Connector) {
        let mut words = std::mem::take(&mut self.words);
        let span = self.span.take();
        while words.first().is_some_and(|w| RESERVED_PREFIX.contains(&w.text.as_str()) && !w.dynamic) {
            words.remove(0);
        }
        let skip = words.first().is_some_and(|w| {
            RESERVED_SKIP.contains(&w.text.as_str()) || (words.len() == 1 && RESERVED_ALONE.contains(&w.text.as_str()))
        });
        if let Some(span) = span
            && !words.is_empty()
            && !skip
        {
            self.commands.push(Command { words, span, next });
        } else if let Some(last) = self.commands.last_mut()
            && words.is_empty()
            && next != Connector::Sequence
        {
            // `a && (b)`: the connector after `)` still joins `a` to what follows.
            last.next = next;
        }
    }

    fn run(&mut self) {
        while self.pos < self.b.len() {
            let c = self.b[self.pos];
            match c {
                b' ' | b'\t' | b'\r' => self.pos += 1,
                b'\\' if self.peek(1) == Some(b'\n') => self.pos += 2,
                b'\n' => {
                    self.pos += 1;
                    self.finish(Connector::Sequence);
                    self.skip_heredocs();
                }
                b'#' => {
                    while self.pos < self.b.len() && self.b[self.pos] != b'\n' {
                        self.pos += 1;
                    }
                }
                b';' => {
                    self.pos += if self.peek(1) == Some(b';') { 2 } else { 1 };
                    self.finish(Connector::Sequence);
                }
                b'&' if self.peek(1) == Some(b'&') => {
                    self.pos += 2;
                    self.finish(Connector::And);
                }
                b'&' if self.peek(1) == Some(b'>') => self.redirection(),
                b'&' => {
                    self.pos += 1;
                    self.finish(Connector::Background);
                }
                b'|' if self.peek(1) == Some(b'|') => {
                    self.pos += 2;
                    self.finish(Connector::Or);
                }
                b'|' => {
                    self.pos += if self.peek(1) == Some(b'&') { 2 } else { 1 };
                    self.finish(Connector::Pipe);
                }
                b'(' | b')' => {
                    self.pos += 1;
                    self.finish(Connector::Sequence);
                }
                b'<' | b'>' if self.peek(1) == Some(b'(') => self.word(),
                b'<' | b'>' => self.redirection(),
                b'0'..=b'9' if self.is_fd_redirection() => self.redirection(),
                _ => self.word(),
            }
        }
        self.finish(Connector::Sequence);
    }

    fn is_fd_redirection(&self) -> bool {
        let mut k = self.pos;
        while k < self.b.len() && self.b[k].is_ascii_digit() {
            k += 1;
        }
        matches!(self.b.get(k), Some(b'<' | b'>'))
    }

    fn redirection(&mut self) {
        let start = self.pos;
        while self.pos < self.b.len() && self.b[self.pos].is_ascii_digit() {
            self.pos += 1;
        }
        if self.peek(0) == Some(b'&') {
            self.pos += 1;
        }
        let op_start = self.pos;
        while self.pos < self.b.len() && matches!(self.b[self.pos], b'<' | b'>' | b'&' | b'|' | b'-') {
            // `>&-` closes a descriptor; `<<-` strips tabs; `>|` clobbers.
            if self.b[self.pos] == b'-' && self.pos > op_start && !matches!(self.b[self.pos - 1], b'<' | b'&') {
                break;
            }
            self.pos += 1;
        }
        let op = &self.src[op_start..self.pos];
        self.extend_span(start..self.pos);
        if op.ends_with("&-") {
            return;
        }
        while matches!(self.peek(0), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
        if self.pos >= self.b.len() || matches!(self.b[self.pos], b'\n' | b';' | b'&' | b'|' | b'(' | b')') {
            return;
        }
        let target = self.read_word();
        self.extend_span(target.raw.clone());
        if op == "<<" || op == "<<-" {
            self.heredocs.push((target.text, op == "<<-"));
        }
    }

    fn skip_heredocs(&mut self) {
        for (delimiter, strip_tabs) in std::mem::take(&mut self.heredocs) {
            while self.pos < self.b.len() {
                let end = self.src[self.pos..].find('\n').map_or(self.b.len(), |e| self.pos + e);
                let line = &self.src[self.pos..end];
                let line = if strip_tabs { line.trim_start_matches('\t') } else { line };
                self.pos = (end + 1).min(self.b.len());
                if line == delimiter {
                    break;
                }
            }
        }
    }

    fn word(&mut self) {
        let w = self.read_word();
        self.extend_span(w.raw.clone());
        self.words.push(w);
    }

    fn read_word(&mut self) -> Word {
        let start = self.pos;
        let mut w = WordBuilder::default();
        while self.pos < self.b.len() {
            let c = self.b[self.pos];
            match c {
                b' ' | b'\t' | b'\r' | b'\n' | b';' | b'&' | b'|' | b')' => break,
                b'(' => break,
                b'<' | b'>' if self.peek(1) == Some(b'(') => {
                    // Process substitution: `<(cmd)`.
                    let end = self.balanced(self.pos + 1);
                    w.push_raw(self.src, self.pos, end);
                    w.dynamic = true;
                    self.pos = end;
                }
                b'<' | b'>' => break,
                b'\\' => match self.peek(1) {
                    Some(b'\n') => self.pos += 2,
                    Some(_) => self.pos += 1 + w.push_char(self.src, self.pos + 1),
                    None => self.pos += 1,
                },
                b'\'' => {
                    self.pos += 1;
                    while self.pos < self.b.len() && self.b[self.pos] != b'\'' {
                        self.pos += w.push_char(self.src, self.pos);
                    }
                    // An unterminated quote runs to the end of the text,
                    // and the word with it: no offset past the end.
                    if self.pos < self.b.len() {
                        w.close_quote(self.pos);
                        self.pos += 1;
                    }
                }
                b'"' => {
                    self.pos += 1;
                    self.double_quoted(&mut w);
                    w.close_quote(self.pos - 1);
                }
                b'$' if self.peek(1) == Some(b'\'') => {
                    self.pos += 2;
                    self.ansi_c(&mut w);
                    w.close_quote(self.pos - 1);
                }
                b'$' | b'`' => self.dollar(&mut w),
                _ => self.pos += w.push_char(self.src, self.pos),
            }
        }
        w.build(start..self.pos)
    }

    fn double_quoted(&mut self, w: &mut WordBuilder) {
        while self.pos < self.b.len() {
            match self.b[self.pos] {
                b'"' => {
                    self.pos += 1;
                    return;
                }
                b'\\' => match self.peek(1) {
                    Some(b'\n') => self.pos += 2,
                    Some(b'$' | b'`' | b'"' | b'\\') => {
                        w.push_char(self.src, self.pos + 1);
                        self.pos += 2;
                    }
                    _ => self.pos += w.push_char(self.src, self.pos),
                },
                b'$' | b'`' => self.dollar(w),
                _ => self.pos += w.push_char(self.src, self.pos),
            }
        }
    }

    /// `$'…'` with the common escapes.
    fn ansi_c(&mut self, w: &mut WordBuilder) {
        while self.pos < self.b.len() {
            match self.b[self.pos] {
                b'\'' => {
                    self.pos += 1;
                    return;
                }
                b'\\' if self.pos + 1 < self.b.len() => {
                    let decoded = match self.b[self.pos + 1] {
                        b'n' => Some('\n'),
                        b't' => Some('\t'),
                        b'r' => Some('\r'),
                        b'e' | b'E' => Some('\x1b'),
                        b'\\' => Some('\\'),
                        b'\'' => Some('\''),
                        b'"' => Some('"'),
                        _ => None,
                    };
                    match decoded {
                        Some(ch) => {
                            w.push_decoded(ch, self.pos);
                            self.pos += 2;
                        }
                        None => self.pos += w.push_char(self.src, self.pos),
                    }
                }
                _ => self.pos += w.push_char(self.src, self.pos),
            }
        }
    }

    /// `$NAME`, `${…}`, `$(…)`, `$((…))`, `` `…` ``: kept as written.
    fn dollar(&mut self, w: &mut WordBuilder) {
        let start = self.pos;
        let end = match (self.b[self.pos], self.peek(1)) {
            (b'`', _) => {
                let mut k = self.pos + 1;
                while k < self.b.len() && self.b[k] != b'`' {
                    k += if self.b[k] == b'\\' { 2 } else { 1 };
                }
                let end = (k + 1).min(self.b.len());
                w.substitutions.push(start + 1..k.min(self.b.len()));
                end
            }
            (_, Some(b'(')) => {
                let end = self.balanced(self.pos + 1);
                if self.peek(2) != Some(b'(') {
                    // Unbalanced `$(…` runs to the end of the text.
                    let inner_end = if self.b[end - 1] == b')' { end - 1 } else { end };
                    w.substitutions.push(start + 2..inner_end.max(start + 2));
                }
                end
            }
            (_, Some(b'{')) => {
                let mut k = self.pos + 2;
                let mut depth = 1;
                while k < self.b.len() && depth > 0 {
                    match self.b[k] {
                        b'{' => depth += 1,
                        b'}' => depth -= 1,
                        _ => {}
                    }
                    k += 1;
                }
                k
            }
            (_, Some(c)) if c.is_ascii_alphanumeric() || c == b'_' => {
                let mut k = self.pos + 1;
                if c.is_ascii_digit() {
                    k += 1;
                } else {
                    while k < self.b.len() && (self.b[k].is_ascii_alphanumeric() || self.b[k] == b'_') {
                        k += 1;
                    }
                }
                k
            }
            (_, Some(b'?' | b'$' | b'!' | b'#' | b'@' | b'*' | b'-')) => self.pos + 2,
            _ => {
                // A lone `$` is literal.
                self.pos += w.push_char(self.src, self.pos);
                return;
            }
        };
        w.push_raw(self.src, start, end);
        w.dynamic = true;
        self.pos = end;
    }

    /// The end (exclusive) of a parenthesised group opening at `open`.
    fn balanced(&self, open: usize) -> usize {
        let mut depth = 0usize;
        let mut k = open;
        while k < self.b.len() {
            match self.b[k] {
                b'(' => depth += 1,
                b')' => {
                    depth -= 1;
                    if depth == 0 {
                        return k + 1;
                    }
                }
                b'\\' => k += 1,
                b'\'' => {
                    k += 1;
                    while k < self.b.len() && self.b[k] != b'\'' {
                        k += 1;
                    }
                }
                b'"' => {
                    k += 1;
                    while k < self.b.len() && self.b[k] != b'"' {
                        if self.b[k] == b'\\' {
                            k += 1;
                        }
                        k += 1;
                    }
                }
                _ => {}
            }
            k += 1;
        }
        self.b.len()
    }
}

fn char_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

#[derive(Default)]
struct WordBuilder {
    text: String,
    map: Vec<usize>,
    /// Where the text ends in the source if it ends inside quotes.
    quote_end: Option<usize>,
    dynamic: bool,
    substitutions: Vec<Range<usize>>,
}

impl WordBuilder {
    /// Push the character at `at` in `src`; answers its length in bytes.
    fn push_char(&mut self, src: &str, at: usize) -> usize {
        let len = char_len(src.as_bytes()[at]).min(src.len() - at);
        let end = (at + len..=src.len()).find(|&e| src.is_char_boundary(e)).unwrap_or(src.len());
        self.text.push_str(&src[at..end]);
        self.map.extend(at..end);
        self.quote_end = None;
        end - at
    }

    fn push_raw(&mut self, src: &str, start: usize, end: usize) {
        self.text.push_str(&src[start..end]);
        self.map.extend(start..end);
        self.quote_end = None;
    }

    fn push_decoded(&mut self, ch: char, at: usize) {
        let mut buf = [0; 4];
        let s = ch.encode_utf8(&mut buf);
        self.text.push_str(s);
        self.map.extend(std::iter::repeat_n(at, s.len()));
        self.quote_end = None;
    }

    /// A closing quote at `at`: text that ends here ends before it.
    fn close_quote(&mut self, at: usize) {
        self.quote_end = Some(at);
    }

    fn build(mut self, raw: Range<usize>) -> Word {
        let end = match (self.quote_end, self.map.last()) {
            (Some(q), _) => q,
            (None, Some(&last)) => last + 1,
            (None, None) => raw.end,
        };
        self.map.push(end);
        Word { text: self.text, map: self.map, raw, dynamic: self.dynamic, substitutions: self.substitutions, src: 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(src: &str) -> Vec<Vec<String>> {
        parse(src).into_iter().map(|c| c.words.into_iter().map(|w| w.text).collect()).collect()
    }

    #[test]
    fn splits_lists_pipes_and_quotes() {
        assert_eq!(
            texts(r#"cd "my app" && PORT=3001 npm run dev | tee log; echo 'a b' "c\"d" e\ f"#),
            vec![
                vec!["cd", "my app"],
                vec!["PORT=3001", "npm", "run", "dev"],
                vec!["tee", "log"],
                vec!["echo", "a b", "c\"d", "e f"],
            ]
        );
        assert_eq!(texts("vite > log 2>&1 &"), vec![vec!["vite"]]);
        assert_eq!(texts("(cd web && vite) &"), vec![vec!["cd", "web"], vec!["vite"]]);
        assert_eq!(texts("if true; then vite; fi"), vec![vec!["true"], vec!["vite"]]);
        assert_eq!(texts("cat <<EOF\nvite --port 1\nEOF\nls"), vec![vec!["cat"], vec!["ls"]]);
        assert_eq!(texts("echo $'a\\tb' # vite"), vec![vec!["echo", "a\tb"]]);
        assert_eq!(texts("for p in 1 2; do kill $p; done"), vec![vec!["kill", "$p"]]);
    }

    #[test]
    fn words_trace_back_to_the_source() {
        let src = r#"bash -c 'vite --port 3000'"#;
        let cmd = &parse(src)[0];
        let inner = &cmd.words[2];
        assert_eq!(inner.text, "vite --port 3000");
        let nested = remap(parse(&inner.text), inner);
        let port = &nested[0].words[2];
        assert_eq!(&src[port.source_range(0..4).unwrap()], "3000");
        // The end of the nested command is inside the quotes.
        assert_eq!(nested[0].words[2].map[4], src.len() - 1);
        let dq = r#"x "a$(lsof -ti:3000)b""#;
        let w = &parse(dq)[0].words[1];
        assert!(w.dynamic);
        assert_eq!(&dq[w.substitutions[0].clone()], "lsof -ti:3000");
        assert_eq!(parse("a 30\"00\"")[0].words[1].source_range(0..4), None);
    }
}

#[cfg(test)]
mod properties;
