//! Plain aligned tables and time formatting for human output: one record per
//! line, columns separated by two spaces, so `grep` and `awk` work on it.

use styxy_proto::timestamp::Timestamp;

pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: Vec<&'static str>) -> Table {
        Table { header, rows: Vec::new() }
    }

    pub fn push(&mut self, row: Vec<String>) {
        debug_assert_eq!(row.len(), self.header.len());
        self.rows.push(row);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self) -> String {
        let width = |cell: &str| cell.chars().count();
        let mut widths: Vec<usize> = self.header.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(width(cell));
            }
        }
        let mut out = String::new();
        let header = self.header.iter().map(|h| h.to_string()).collect::<Vec<_>>();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                if i + 1 < row.len() {
                    line.extend(std::iter::repeat_n(' ', w - width(cell)));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `value` or `-` when absent, so every column has a token.
pub fn or_dash(value: Option<impl ToString>) -> String {
    value.map(|v| v.to_string()).filter(|s| !s.is_empty()).unwrap_or_else(|| "-".into())
}

/// A moment in the machine's local time, to the second, as people read
/// it: `2026-12-03 15:37:59` (the zone is `TZ`, else /etc/localtime).
pub fn local(at: Timestamp) -> String {
    local_in(at, utc_offset_secs(at))
}

fn local_in(at: Timestamp, offset_secs: i64) -> String {
    let (year, month, day, hour, minute, second, _) = at.civil(offset_secs);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02}")
}

/// Seconds east of UTC of the local zone at `at` (0 if unknown).
fn utc_offset_secs(at: Timestamp) -> i64 {
    let secs = (at.millis() / 1000) as libc::time_t;
    // SAFETY: an all-zero `tm` is a valid value for localtime_r to overwrite.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to live locals; localtime_r is the reentrant form.
    let filled = unsafe { libc::localtime_r(&secs, &mut tm) };
    if filled.is_null() { 0 } else { tm.tm_gmtoff }
}

/// A duration in seconds as its largest unit: `42s`, `7m`, `3h`, `12d`.
pub fn span(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// How long ago `at` was, as a [`span`].
pub fn age(at: Timestamp, now: Timestamp) -> String {
    span(now.millis().saturating_sub(at.millis()) / 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_on_the_widest_cell_and_lines_have_no_trailing_space() {
        let mut t = Table::new(vec!["PORT", "TYPE", "NAME"]);
        t.push(vec!["8000 → 8001".into(), "dev".into(), "web".into()]);
        t.push(vec!["3000".into(), "database".into(), "-".into()]);
        assert_eq!(
            t.render(),
            "PORT         TYPE      NAME\n\
             8000 → 8001  dev       web\n\
             3000         database  -\n"
        );
    }

    #[test]
    fn local_times_read_as_the_wall_clock_of_the_zone() {
        assert_eq!(local_in(Timestamp(1_795_271_050_000), 0), "2026-11-21 14:24:10");
        assert_eq!(local_in(Timestamp(1_795_271_050_999), 3600), "2026-11-21 15:24:10");
        assert_eq!(local_in(Timestamp(0), -3600), "1969-12-31 23:00:00");
    }

    #[test]
    fn ages_use_the_largest_unit() {
        assert_eq!(age(Timestamp(1_000), Timestamp(43_000)), "42s");
        assert_eq!(span(7 * 60 + 5), "7m");
        assert_eq!(span(3 * 3600), "3h");
        assert_eq!(span(12 * 86_400 + 1), "12d");
    }
}
