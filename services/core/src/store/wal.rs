//! The write-ahead log: one line per commit,
//! `{"generation":N,"changes":[Change,...]}` TAB `crc32c` (8 hex digits,
//! of the JSON before the tab). Compact JSON never holds a raw tab, so the
//! suffix is unambiguous; lines without it (logs written before checksums)
//! are read as plain JSON.
//!
//! A line that ends in its newline was written whole (a commit is one
//! write(2) with the newline last), so if it does not check out it was
//! damaged after the fact: corruption, never a torn write. Only a last line
//! without its newline is torn.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use styxy_proto::model::{Change, State};

/// One commit. Borrowed when written, owned when read back.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Record<'a> {
    pub generation: u64,
    pub changes: Cow<'a, [Change]>,
}

/// Fills `line` with the log line of one commit, newline included, so it can
/// go out in a single write(2).
pub(super) fn encode(line: &mut Vec<u8>, generation: u64, changes: &[Change]) -> serde_json::Result<()> {
    line.clear();
    let record = Record { generation, changes: Cow::Borrowed(changes) };
    serde_json::to_writer(&mut *line, &record)?;
    let crc = super::checksum::crc32c(line);
    line.push(b'\t');
    line.extend_from_slice(&hex8(crc));
    line.push(b'\n');
    Ok(())
}

fn hex8(value: u32) -> [u8; 8] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 8];
    for (i, digit) in out.iter_mut().enumerate() {
        *digit = DIGITS[((value >> (28 - 4 * i)) & 0xf) as usize];
    }
    out
}

/// The record on one line (without its newline), or why it is damaged.
fn decode(line: &[u8]) -> Result<Record<'static>, String> {
    let json = match line.len().checked_sub(9).filter(|&tab| line[tab] == b'\t') {
        Some(tab) => {
            let (json, stored) = (&line[..tab], &line[tab + 1..]);
            let computed = super::checksum::crc32c(json);
            if stored != hex8(computed) {
                let stored = String::from_utf8_lossy(stored);
                return Err(format!("checksum mismatch (stored {stored}, computed {computed:08x})"));
            }
            json
        }
        // Written before records carried a checksum.
        None => line,
    };
    serde_json::from_slice(json).map_err(|e| e.to_string())
}

/// What a log file holds.
#[derive(Debug, Default)]
pub(super) struct Scan {
    /// Every line that parses, in file order.
    pub records: Vec<Record<'static>>,
    /// Offset where a dropped tail starts (the file length when none).
    pub tail_start: u64,
    /// The last line has no newline: a crash mid-append. A record without
    /// its newline was never acknowledged, because a commit returns only
    /// after the whole line is written.
    pub torn_tail: bool,
    /// Whole lines that do not check out or parse (1-based), with the first
    /// error: damage after the fact, the last line included.
    pub garbled: Vec<usize>,
    first_error: Option<String>,
}

impl Scan {
    /// Why the log cannot be trusted as a whole, if it cannot.
    pub fn garbage(&self) -> Option<String> {
        let first = self.garbled.first()?;
        let error = self.first_error.as_deref().unwrap_or_default();
        Some(format!("{} damaged record(s), the first at line {first}: {error}", self.garbled.len()))
    }
}

pub(super) fn scan(bytes: &[u8]) -> Scan {
    let mut scan = Scan { tail_start: bytes.len() as u64, ..Scan::default() };
    let mut start = 0;
    let mut line_number = 0;
    while start < bytes.len() {
        line_number += 1;
        let Some(len) = bytes[start..].iter().position(|&b| b == b'\n') else {
            scan.torn_tail = true;
            scan.tail_start = start as u64;
            break;
        };
        let next = start + len + 1;
        match decode(&bytes[start..start + len]) {
            Ok(record) => scan.records.push(record),
            Err(e) => {
                scan.garbled.push(line_number);
                scan.first_error.get_or_insert(e);
            }
        }
        start = next;
    }
    scan
}

/// Why `records` cannot continue a snapshot at `base`, if they cannot. Records
/// at or below `base` may lead the log (a crash between writing a snapshot and
/// truncating the log); the rest must follow `base` one by one.
pub(super) fn sequence_problem(base: u64, records: &[Record]) -> Option<String> {
    let mut last = base;
    let mut applied_any = false;
    for record in records {
        let generation = record.generation;
        if generation <= last && !applied_any {
            continue;
        }
        if generation != last + 1 {
            return Some(format!("generation {generation} follows {last}"));
        }
        last = generation;
        applied_any = true;
    }
    None
}

/// Applies, in file order, every record newer than the state's generation.
/// Changes are idempotent edits keyed by port or name, so records after a hole
/// still land where they belong (see the salvage rule in `store.rs`).
pub(super) fn replay(state: &mut State, records: &[Record]) {
    let base = state.generation;
    for record in records.iter().filter(|r| r.generation > base) {
        for change in record.changes.iter() {
            state.apply(change);
        }
        state.generation = state.generation.max(record.generation);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(generation: u64) -> Vec<u8> {
        let mut buf = Vec::new();
        encode(&mut buf, generation, &[Change::RemoveInstance(format!("i{generation}"))]).unwrap();
        buf
    }

    #[test]
    fn a_line_is_one_terminated_json_record() {
        let bytes = line(7);
        assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), 1);
        assert_eq!(*bytes.last().unwrap(), b'\n');
        let scan = scan(&bytes);
        assert_eq!(scan.records.len(), 1);
        assert_eq!(scan.records[0].generation, 7);
        assert!(!scan.torn_tail && scan.garbage().is_none());
    }

    #[test]
    fn a_damaged_last_line_that_ends_in_its_newline_is_corruption_not_a_torn_write() {
        let mut bytes = [line(1), line(2)].concat();
        bytes.extend_from_slice(b"{\"generation\":3,\"chan\n");
        let scan = scan(&bytes);
        assert_eq!(scan.records.len(), 2);
        assert!(!scan.torn_tail);
        assert!(scan.garbage().unwrap().contains("line 3"));
    }

    #[test]
    fn a_record_whose_bytes_changed_fails_its_checksum_even_when_it_still_parses() {
        let mut bytes = line(1);
        // "i1" becomes "i7": still valid JSON, another instance.
        let at = bytes.windows(2).position(|w| w == b"i1").unwrap();
        bytes[at + 1] = b'7';
        let scan = scan(&bytes);
        assert!(scan.records.is_empty());
        assert!(scan.garbage().unwrap().contains("checksum mismatch"), "{:?}", scan.garbage());
    }

    #[test]
    fn a_log_written_before_checksums_still_reads() {
        let legacy = b"{\"generation\":1,\"changes\":[{\"remove_instance\":\"i1\"}]}\n";
        let bytes = [legacy.to_vec(), line(2)].concat();
        let scan = scan(&bytes);
        assert_eq!(scan.records.iter().map(|r| r.generation).collect::<Vec<_>>(), vec![1, 2]);
        assert!(!scan.torn_tail && scan.garbage().is_none());
    }

    #[test]
    fn an_unterminated_record_is_dropped_even_when_it_parses() {
        let first = line(1);
        let mut second = line(2);
        second.pop();
        let scan = scan(&[first.clone(), second].concat());
        assert_eq!(scan.records.len(), 1);
        assert!(scan.torn_tail);
        assert_eq!(scan.tail_start, first.len() as u64);
    }

    #[test]
    fn garbage_before_the_last_line_is_reported_with_its_line_number() {
        let bytes = [line(1), b"\0\0\0\n".to_vec(), line(3)].concat();
        let scan = scan(&bytes);
        assert_eq!(scan.garbled, vec![2]);
        assert_eq!(scan.records.len(), 2);
        assert!(scan.garbage().unwrap().contains("line 2"));
    }

    #[test]
    fn sequences_must_follow_the_base_without_holes() {
        let records = |gens: &[u64]| -> Vec<Record<'static>> {
            gens.iter().map(|&g| Record { generation: g, changes: Cow::Owned(vec![]) }).collect()
        };
        assert_eq!(sequence_problem(5, &records(&[6, 7, 8])), None);
        assert_eq!(sequence_problem(5, &records(&[3, 4, 5, 6])), None);
        assert_eq!(sequence_problem(5, &records(&[])), None);
        assert!(sequence_problem(5, &records(&[7])).unwrap().contains("7 follows 5"));
        assert!(sequence_problem(5, &records(&[6, 6])).is_some());
        assert!(sequence_problem(5, &records(&[6, 4])).is_some());
    }
}
