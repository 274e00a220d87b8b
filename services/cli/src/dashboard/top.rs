//! `styxy top`: the dashboard in the terminal, keyboard-driven, 80 columns
//! wide; a plain table when stdout is not a terminal.

use std::io::IsTerminal;
use std::time::Duration;

use ratatui::crossterm::event::{self, Event as TermEvent, KeyCode, KeyEventKind};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{List, ListItem, ListState, Paragraph};
use ratatui::{DefaultTerminal, Frame};

use super::Watch;
use super::model::{OtherListener, ServiceRow, View};
use crate::output::{Failure, print};
use crate::table::{Table, age, or_dash};
use styxy_proto::timestamp::Timestamp;

/// How often the view is read while `top` runs.
const REFRESH_EVERY: Duration = Duration::from_millis(150);

fn port_text(row: &ServiceRow) -> String {
    match row.canonical_port {
        Some(canonical) => format!("{canonical} → {}", row.port),
        None => row.port.to_string(),
    }
}

fn uptime(row: &ServiceRow) -> String {
    or_dash(row.since.map(|at| age(Timestamp(at), Timestamp::now())))
}

/// The view as plain text: one table of reserved ports, one of other
/// listeners, one of ranges.
pub fn plain(view: &View) -> String {
    let mut services =
        Table::new(vec!["PORT", "SERVICE", "TYPE", "STATE", "USER", "PID", "SESSION", "UP", "SCOPE", "URL"]);
    for project in &view.projects {
        for scope in &project.scopes {
            for row in &scope.services {
                services.push(vec![
                    port_text(row),
                    or_dash(Some(&row.name)),
                    row.service_type.clone(),
                    row.state.as_str().into(),
                    row.user.clone(),
                    or_dash(row.pid),
                    or_dash(row.session.as_ref()),
                    uptime(row),
                    scope.scope.clone(),
                    row.url.clone(),
                ]);
            }
        }
    }
    let mut out = if services.is_empty() { "No reserved ports\n".to_string() } else { services.render() };
    if !view.others.is_empty() {
        let mut others = Table::new(vec!["PORT", "ADDRESS", "USER", "PID", "COMMAND"]);
        for o in &view.others {
            others.push(vec![
                o.port.to_string(),
                o.addresses.join(","),
                o.user.clone(),
                or_dash(o.pid),
                or_dash(o.command.as_ref()),
            ]);
        }
        out.push_str("\nOther listeners\n");
        out.push_str(&others.render());
    }
    let mut ranges = Table::new(vec!["TYPE", "RANGE", "USED"]);
    for r in view.ranges.iter().filter(|r| r.used > 0) {
        ranges.push(vec![r.service_type.clone(), format!("{}-{}", r.first, r.last), format!("{}/{}", r.used, r.size)]);
    }
    if !ranges.is_empty() {
        out.push_str("\nRanges in use\n");
        out.push_str(&ranges.render());
    }
    out
}

/// `styxy top`.
pub fn top(watch: &Watch) -> Result<u8, Failure> {
    let view = watch.view()?;
    if !std::io::stdout().is_terminal() {
        print(&plain(&view));
        return Ok(crate::cli::EXIT_OK);
    }
    let mut terminal = ratatui::init();
    let result = run(&mut terminal, watch);
    ratatui::restore();
    result.map(|()| crate::cli::EXIT_OK)
}

/// One line of the list: a heading or something to act on.
enum Entry<'v> {
    Heading(String),
    Service(&'v ServiceRow),
    Other(&'v OtherListener),
}

fn entries(view: &View) -> Vec<Entry<'_>> {
    let mut list = Vec::new();
    for project in &view.projects {
        list.push(Entry::Heading(project.project.clone()));
        for scope in &project.scopes {
            if scope.scope != project.project {
                list.push(Entry::Heading(format!("  {}", scope.scope)));
            }
            list.extend(scope.services.iter().map(Entry::Service));
        }
    }
    if !view.others.is_empty() {
        list.push(Entry::Heading("other listeners".into()));
        list.extend(view.others.iter().map(Entry::Other));
    }
    list
}

/// The first row (not a heading) after `at`, else `at`.
fn row_after(list: &[Entry<'_>], at: usize) -> usize {
    (at + 1..list.len()).find(|&i| !matches!(list.get(i), Some(Entry::Heading(_)))).unwrap_or(at)
}

/// The last row (not a heading) before `at`, else `at`.
fn row_before(list: &[Entry<'_>], at: usize) -> usize {
    (0..at).rev().find(|&i| !matches!(list.get(i), Some(Entry::Heading(_)))).unwrap_or(at)
}

struct Screen {
    selected: usize,
    /// A stop waiting for its confirmation: lock id, pid, port.
    confirm: Option<(String, u32, u16)>,
    message: String,
}

fn run(terminal: &mut DefaultTerminal, watch: &Watch) -> Result<(), Failure> {
    let mut screen = Screen { selected: 0, confirm: None, message: String::new() };
    let mut view = watch.view()?;
    loop {
        // An allocator that stops answering leaves the last view on screen, saying so.
        match watch.view() {
            Ok(fresh) => view = fresh,
            Err(failure) => screen.message = format!("allocator: {failure}"),
        }
        let list = entries(&view);
        // Headings are never selected: the cursor sits on a row.
        if matches!(list.get(screen.selected), Some(Entry::Heading(_)) | None) {
            screen.selected = row_after(&list, screen.selected.min(list.len().saturating_sub(1)));
            screen.selected = row_before(&list, screen.selected + 1);
        }
        terminal.draw(|frame| draw(frame, &view, &list, &screen)).map_err(terminal_failure)?;
        if !event::poll(REFRESH_EVERY).map_err(terminal_failure)? {
            continue;
        }
        let TermEvent::Key(key) = event::read().map_err(terminal_failure)? else { continue };
        if key.kind != KeyEventKind::Press {
            continue;
        }
        let selected = match list.get(screen.selected) {
            Some(Entry::Service(row)) => Some(*row),
            _ => None,
        };
        if let Some((lock_id, pid, port)) = screen.confirm.take() {
            screen.message = match key.code {
                KeyCode::Char('y') => outcome(watch.stop(&lock_id)),
                _ => format!("not stopped: pid {pid} (port {port})"),
            };
            continue;
        }
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
            KeyCode::Down | KeyCode::Char('j') => screen.selected = row_after(&list, screen.selected),
            KeyCode::Up | KeyCode::Char('k') => screen.selected = row_before(&list, screen.selected),
            KeyCode::Char('r') => {
                screen.message = match selected {
                    Some(row) => outcome(watch.release(&row.lock_id)),
                    None => "select a reserved port to release".into(),
                }
            }
            KeyCode::Char('s') => match selected {
                Some(row) if row.can_stop => {
                    let pid = row.pid.unwrap_or_default();
                    screen.message = format!("send SIGTERM to pid {pid} (port {})? y/n", row.port);
                    screen.confirm = Some((row.lock_id.clone(), pid, row.port));
                }
                Some(row) => screen.message = format!("port {}: no process of yours to stop", row.port),
                None => screen.message = "select a reserved port to stop its process".into(),
            },
            KeyCode::Char('c') => {
                let url = match list.get(screen.selected) {
                    Some(Entry::Service(row)) => Some(row.url.clone()),
                    Some(Entry::Other(other)) => Some(other.url.clone()),
                    _ => None,
                };
                if let Some(url) = url {
                    // OSC 52: the terminal puts it on the clipboard.
                    print(&format!("\x1b]52;c;{}\x07", base64(url.as_bytes())));
                    screen.message = format!("copied {url}");
                }
            }
            _ => {}
        }
    }
}

fn outcome(result: Result<String, super::ActionError>) -> String {
    result.unwrap_or_else(|error| format!("refused: {error}"))
}

fn terminal_failure(error: std::io::Error) -> Failure {
    Failure::local("terminal", format!("terminal: {error}"))
}

fn draw(frame: &mut Frame, view: &View, list: &[Entry<'_>], screen: &Screen) {
    let [body, ranges, recent, status] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(2), Constraint::Length(3), Constraint::Length(1)])
            .areas(frame.area());

    let lines: Vec<ListItem> = list
        .iter()
        .map(|entry| match entry {
            Entry::Heading(text) => ListItem::new(text.clone()).style(Style::new().add_modifier(Modifier::BOLD)),
            Entry::Service(row) => ListItem::new(columns(&[
                port_text(row),
                row.name.clone(),
                row.service_type.clone(),
                row.state.as_str().to_string(),
                row.user.clone(),
                or_dash(row.pid),
                uptime(row),
                or_dash(row.session.as_ref()),
            ])),
            Entry::Other(o) => ListItem::new(columns(&[
                o.port.to_string(),
                or_dash(o.command.as_ref()),
                "-".into(),
                "listening".into(),
                o.user.clone(),
                or_dash(o.pid),
                "-".into(),
                "-".into(),
            ])),
        })
        .collect();
    let header = columns(&["PORT", "SERVICE", "TYPE", "STATE", "USER", "PID", "UP", "SESSION"].map(String::from));
    let [header_area, list_area] = Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(body);
    frame.render_widget(Paragraph::new(header).style(Style::new().add_modifier(Modifier::UNDERLINED)), header_area);
    let list = List::new(lines).highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut state = ListState::default().with_selected(Some(screen.selected));
    frame.render_stateful_widget(list, list_area, &mut state);

    let strips: Vec<String> = view
        .ranges
        .iter()
        .filter(|r| r.used > 0)
        .map(|r| format!("{} {}-{} {}/{}", r.service_type, r.first, r.last, r.used, r.size))
        .collect();
    frame.render_widget(Paragraph::new(strips.join(" │ ")).wrap(ratatui::widgets::Wrap { trim: true }), ranges);

    let events: Vec<Line> = view
        .recent
        .iter()
        .rev()
        .take(3)
        .map(|e| {
            let port = e.canonical_port.map_or(e.port.to_string(), |c| format!("{c} → {}", e.port));
            let kind = match e.kind {
                super::model::EventKind::Moved => "moved",
                super::model::EventKind::Released => "released",
            };
            Line::from(format!("{kind} {} ({}) {port}", e.name, e.user))
        })
        .collect();
    frame.render_widget(Paragraph::new(events), recent);

    let help = "↑↓ select  r release  s stop  c copy URL  q quit";
    let line = if screen.message.is_empty() { help.to_string() } else { screen.message.clone() };
    frame.render_widget(Paragraph::new(line).style(Style::new().add_modifier(Modifier::DIM)), status);
}

/// Column widths of a line, 80 with the spaces between them; the last
/// column takes what is left of a wider terminal.
const WIDTHS: [usize; 8] = [11, 14, 8, 9, 8, 7, 4, 12];

/// `cells` cut or padded to [`WIDTHS`], one space apart.
fn columns(cells: &[String; 8]) -> String {
    let mut line = String::new();
    for (i, (cell, width)) in cells.iter().zip(WIDTHS).enumerate() {
        if i > 0 {
            line.push(' ');
        }
        let last = i + 1 == cells.len();
        let shown: String = if last { cell.clone() } else { cell.chars().take(width).collect() };
        let pad = if last { 0 } else { width - shown.chars().count() };
        line.push_str(&shown);
        line.extend(std::iter::repeat_n(' ', pad));
    }
    line
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_of_columns_is_80_wide_and_cuts_long_cells() {
        let line = columns(
            &["8000 → 8001", "a-very-long-service-name", "api", "moved", "alice", "4242", "3h", "claude-7c1e"]
                .map(String::from),
        );
        assert_eq!(line, "8000 → 8001 a-very-long-se api      moved     alice    4242    3h   claude-7c1e");
        assert!(line.chars().count() <= 80);
    }

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        assert_eq!(base64(b"http://localhost:3000/"), "aHR0cDovL2xvY2FsaG9zdDozMDAwLw==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
    }
}
