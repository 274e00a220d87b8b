//! The one way the API writes a moment: RFC 3339 in UTC with milliseconds
//! (`2026-12-03T14:11:58.588Z`), as the original Styxy and JSON consumers
//! expect. The state store keeps plain Unix milliseconds ([`Millis`]); a
//! [`Timestamp`] is the same number with the API's spelling.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::model::{Millis, now_millis};

/// A moment, held as Unix milliseconds, written as RFC 3339 UTC with
/// milliseconds. Reads that form, any RFC 3339 offset, and a bare number
/// of milliseconds (what allocators before this type answered).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub Millis);

impl Timestamp {
    pub fn now() -> Timestamp {
        Timestamp(now_millis())
    }

    pub fn millis(self) -> Millis {
        self.0
    }

    /// The calendar fields of this moment shifted by `offset_secs` east of
    /// UTC: `(year, month, day, hour, minute, second, millisecond)`.
    pub fn civil(self, offset_secs: i64) -> (i64, u32, u32, u32, u32, u32, u32) {
        let ms = self.0 as i64 + offset_secs * 1000;
        let (secs, milli) = (ms.div_euclid(1000), ms.rem_euclid(1000) as u32);
        let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400) as u32);
        let (year, month, day) = civil_from_days(days);
        (year, month, day, rem / 3600, rem % 3600 / 60, rem % 60, milli)
    }

    /// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`; none for anything
    /// else or a moment before 1970.
    pub fn parse(text: &str) -> Option<Timestamp> {
        let b = text.as_bytes();
        let num = |range: std::ops::Range<usize>| -> Option<i64> {
            let digits = b.get(range)?;
            digits.iter().all(u8::is_ascii_digit).then(|| digits.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
        };
        let punctuated = b.len() >= 20
            && b[4] == b'-'
            && b[7] == b'-'
            && matches!(b[10], b'T' | b't' | b' ')
            && b[13] == b':'
            && b[16] == b':';
        if !punctuated {
            return None;
        }
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
            return None;
        }
        let mut i = 19;
        let mut millis = 0;
        if b[i] == b'.' {
            let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
            if digits == 0 {
                return None;
            }
            let first3: String = text[i + 1..i + 1 + digits].chars().chain("00".chars()).take(3).collect();
            millis = first3.parse::<i64>().ok()?;
            i += 1 + digits;
        }
        let offset_secs = match &b[i..] {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
                let (h, m) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
                let east = h * 3600 + m * 60;
                if *sign == b'+' { east } else { -east }
            }
            _ => return None,
        };
        let days = days_from_civil(year, month as u32, day as u32);
        let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
        u64::try_from(secs * 1000 + millis).ok().map(Timestamp)
    }
}

impl From<Millis> for Timestamp {
    fn from(ms: Millis) -> Timestamp {
        Timestamp(ms)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (year, month, day, hour, minute, second, milli) = self.civil(0);
        write!(f, "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{milli:03}Z")
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        struct Moment;
        impl Visitor<'_> for Moment {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 time such as \"2026-12-03T14:11:58.588Z\" or Unix milliseconds")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Timestamp, E> {
                Timestamp::parse(text).ok_or_else(|| E::invalid_value(de::Unexpected::Str(text), &self))
            }
            fn visit_u64<E: de::Error>(self, ms: u64) -> Result<Timestamp, E> {
                Ok(Timestamp(ms))
            }
            fn visit_i64<E: de::Error>(self, ms: i64) -> Result<Timestamp, E> {
                u64::try_from(ms).map(Timestamp).map_err(|_| E::invalid_value(de::Unexpected::Signed(ms), &self))
            }
        }
        d.deserialize_any(Moment)
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The inverse of [`civil_from_days`].
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants_are_written_in_utc_with_milliseconds() {
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00.000Z");
        assert_eq!(Timestamp(951_782_400_000).to_string(), "2000-02-29T00:00:00.000Z");
        assert_eq!(Timestamp(1_796_306_279_392).to_string(), "2026-12-03T13:57:59.392Z");
        assert_eq!(serde_json::to_string(&Timestamp(1_767_225_600_005)).unwrap(), "\"2026-01-01T00:00:00.005Z\"");
    }

    #[test]
    fn what_is_written_reads_back_and_other_offsets_and_numbers_read_too() {
        for ms in [0, 1, 999, 951_782_400_000, 1_796_306_279_392, 4_102_444_800_000] {
            assert_eq!(Timestamp::parse(&Timestamp(ms).to_string()), Some(Timestamp(ms)));
        }
        let same = Some(Timestamp(1_796_306_279_392));
        assert_eq!(Timestamp::parse("2026-12-03T14:57:59.392+01:00"), same);
        assert_eq!(Timestamp::parse("2026-12-03T13:57:59.3920001Z"), same);
        assert_eq!(Timestamp::parse("2026-12-03T13:57:59Z"), Some(Timestamp(1_796_306_279_000)));
        assert_eq!(serde_json::from_str::<Timestamp>("1796306279392").unwrap(), Timestamp(1_796_306_279_392));
        for bad in ["", "2026-12-03", "2026-13-03T00:00:00Z", "2026-12-03T14:37:59", "1969-12-31T23:59:59Z", "x"] {
            assert_eq!(Timestamp::parse(bad), None, "{bad}");
        }
        assert!(serde_json::from_str::<Timestamp>("\"yesterday\"").is_err());
    }

    #[test]
    fn civil_fields_follow_the_offset() {
        assert_eq!(Timestamp(0).civil(3600), (1970, 1, 1, 1, 0, 0, 0));
        assert_eq!(Timestamp(0).civil(-1), (1969, 12, 31, 23, 59, 59, 0));
    }
}
