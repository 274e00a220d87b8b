//! The one reading of a /proc/PID/stat line, for the preload (inside other
//! programs: no allocation, no panic) and the services alike. The command
//! name (field 2) may hold spaces and parentheses, so fields are counted
//! after its last ')'.

/// The fields of a stat line after the command name, numbered as in proc(5):
/// 3 is the state, 4 the parent pid, 22 the start time.
#[derive(Debug, Clone, Copy)]
pub struct StatFields<'a> {
    after_comm: &'a [u8],
}

impl<'a> StatFields<'a> {
    /// None when the line has no command name.
    pub fn parse(line: &'a [u8]) -> Option<Self> {
        let close = line.iter().rposition(|&b| b == b')')?;
        Some(StatFields { after_comm: line.get(close.checked_add(1)?..)? })
    }

    /// Field `number` (3 or above) as its bytes.
    pub fn field(&self, number: usize) -> Option<&'a [u8]> {
        self.after_comm.split(u8::is_ascii_whitespace).filter(|f| !f.is_empty()).nth(number.checked_sub(3)?)
    }

    /// Field `number` (3 or above) as a decimal number.
    pub fn number(&self, number: usize) -> Option<u64> {
        core::str::from_utf8(self.field(number)?).ok()?.parse().ok()
    }

    /// The state letter (R, S, D, Z, X, ...).
    pub fn state(&self) -> Option<u8> {
        self.field(3)?.first().copied()
    }

    /// Whether the process still runs: a zombie (or a dead task) has exited.
    pub fn running(&self) -> bool {
        self.state().is_some_and(|state| state != b'Z' && state != b'X')
    }

    pub fn parent(&self) -> Option<u32> {
        u32::try_from(self.number(4)?).ok()
    }

    /// Start time in clock ticks since boot: with the pid, the process's identity.
    pub fn start_time(&self) -> Option<u64> {
        self.number(22)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_survives_odd_command_names() {
        let line = b"4242 (my (weird) prog) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 50\n";
        let stat = StatFields::parse(line).unwrap();
        assert_eq!(stat.start_time(), Some(987654));
        assert_eq!(stat.parent(), Some(1));
        assert_eq!(stat.state(), Some(b'S'));
        assert!(stat.running());
        assert_eq!(stat.number(14), Some(1));
        assert_eq!(stat.number(15), Some(2));
        assert_eq!(stat.field(8), Some(&b"-1"[..]));
        assert_eq!(stat.number(8), None);
    }

    #[test]
    fn zombies_do_not_run_and_short_lines_have_no_fields() {
        assert!(!StatFields::parse(b"7 (sh) Z 1").unwrap().running());
        assert!(StatFields::parse(b"7 sh S 1").is_none());
        let short = StatFields::parse(b"7 (sh)").unwrap();
        assert_eq!(short.state(), None);
        assert!(!short.running());
        assert_eq!(short.field(2), None);
        assert_eq!(short.start_time(), None);
    }

    proptest::proptest! {
        #[test]
        fn any_command_name_leaves_the_fields_in_place(
            comm in proptest::collection::vec(1u8..=255, 0..16),
            parent in proptest::prelude::any::<u32>(),
            start in proptest::prelude::any::<u64>(),
        ) {
            let mut line = b"4242 (".to_vec();
            line.extend_from_slice(&comm);
            let fields = format!(") R {parent} 1 1 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 {start} 1000 50\n");
            line.extend_from_slice(fields.as_bytes());
            let stat = StatFields::parse(&line).unwrap();
            proptest::prop_assert_eq!(stat.parent(), Some(parent));
            proptest::prop_assert_eq!(stat.start_time(), Some(start));
            proptest::prop_assert_eq!(stat.number(15), Some(4));
            proptest::prop_assert!(stat.running());
        }
    }
}
