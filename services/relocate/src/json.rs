//! Just enough JSON to read the allocator's answer without allocating: walk
//! the members of an object, read a number or a string. Anything malformed
//! reads as absent.

/// Calls `f(key, raw_value)` for each member of the object in `text`; the key
/// is the raw text between its quotes. False if the text is not an object.
pub fn for_each_member(text: &[u8], mut f: impl FnMut(&[u8], &[u8])) -> bool {
    let mut at = skip_ws(text, 0);
    if text.get(at) != Some(&b'{') {
        return false;
    }
    at = skip_ws(text, at.saturating_add(1));
    if text.get(at) == Some(&b'}') {
        return true;
    }
    loop {
        let Some(key_end) = string_end(text, at) else {
            return false;
        };
        let key = text.get(at.saturating_add(1)..key_end.saturating_sub(1)).unwrap_or(&[]);
        at = skip_ws(text, key_end);
        if text.get(at) != Some(&b':') {
            return false;
        }
        let value_start = skip_ws(text, at.saturating_add(1));
        let Some(value_end) = value_end(text, value_start) else {
            return false;
        };
        f(key, text.get(value_start..value_end).unwrap_or(&[]));
        at = skip_ws(text, value_end);
        match text.get(at) {
            Some(b',') => at = skip_ws(text, at.saturating_add(1)),
            Some(b'}') => return true,
            _ => return false,
        }
    }
}

/// A non-negative integer that fits in a u32.
pub fn as_u32(raw: &[u8]) -> Option<u32> {
    crate::sys::parse_u32(raw)
}

/// Copies a JSON string value into `out` (escapes other than the simple ones
/// become '?'); the number of bytes written.
pub fn copy_str(raw: &[u8], out: &mut [u8]) -> Option<usize> {
    let inner = raw.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    let mut written = 0usize;
    let mut bytes = inner.iter();
    while let Some(&b) = bytes.next() {
        let c = if b == b'\\' {
            match bytes.next()? {
                b'n' | b't' | b'r' | b'b' | b'f' => b' ',
                b'u' => {
                    // Skip the four hex digits.
                    for _ in 0..4 {
                        bytes.next()?;
                    }
                    b'?'
                }
                &other => other,
            }
        } else {
            b
        };
        let Some(slot) = out.get_mut(written) else {
            break;
        };
        *slot = c;
        written = written.saturating_add(1);
    }
    Some(written)
}

fn skip_ws(text: &[u8], mut at: usize) -> usize {
    while matches!(text.get(at), Some(b' ' | b'\t' | b'\r' | b'\n')) {
        at = at.saturating_add(1);
    }
    at
}

/// Index just past the closing quote of the string starting at `at`.
fn string_end(text: &[u8], at: usize) -> Option<usize> {
    if text.get(at) != Some(&b'"') {
        return None;
    }
    let mut i = at.checked_add(1)?;
    loop {
        match text.get(i)? {
            b'\\' => i = i.checked_add(2)?,
            b'"' => return i.checked_add(1),
            _ => i = i.checked_add(1)?,
        }
    }
}

/// Index just past the value starting at `at`.
fn value_end(text: &[u8], at: usize) -> Option<usize> {
    match text.get(at)? {
        b'"' => string_end(text, at),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = at;
            loop {
                match text.get(i)? {
                    b'"' => {
                        i = string_end(text, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth = depth.checked_add(1)?,
                    b'}' | b']' => {
                        depth = depth.checked_sub(1)?;
                        if depth == 0 {
                            return i.checked_add(1);
                        }
                    }
                    _ => {}
                }
                i = i.checked_add(1)?;
            }
        }
        _ => {
            let mut i = at;
            while let Some(b) = text.get(i) {
                if matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n') {
                    break;
                }
                i = i.checked_add(1)?;
            }
            (i > at).then_some(i)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_top_level_members_and_skips_nested_values() {
        let text =
            br#"{"success":true,"nested":{"port":1,"s":"}\"{"},"list":[1,[2]],"port": 8001 ,"name":"py\"th\\on"}"#;
        let mut port = None;
        let mut name = [0u8; 16];
        let mut name_len = 0;
        assert!(for_each_member(text, |k, v| match k {
            b"port" => port = as_u32(v),
            b"name" => name_len = copy_str(v, &mut name).unwrap_or(0),
            _ => {}
        }));
        assert_eq!(port, Some(8001));
        assert_eq!(name.get(..name_len), Some(br#"py"th\on"#.as_slice()));
    }

    #[test]
    fn malformed_text_is_rejected_without_panicking() {
        for text in [&b""[..], b"{", b"{\"a\"", b"{\"a\":", b"{\"a\":[1,2", b"{\"a\":\"x", b"[1]", b"{\"a\":1,}"] {
            assert!(!for_each_member(text, |_, _| {}), "{:?}", String::from_utf8_lossy(text));
        }
        assert_eq!(as_u32(b"4294967296"), None);
        assert_eq!(as_u32(b"-1"), None);
        assert_eq!(as_u32(b""), None);
    }

    /// Any JSON value, nested a few levels.
    fn any_value() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(any::<String>(), inner, 0..4)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }

    /// Whitespace JSON allows between tokens.
    fn blank() -> impl Strategy<Value = &'static str> {
        prop_oneof![Just(""), Just(" "), Just("\t"), Just("\r\n  ")]
    }

    /// What `copy_str` makes of a string serde_json wrote: the escaped
    /// control characters become ' ' (the short escapes) or '?' (\uXXXX).
    fn copied(text: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for c in text.chars() {
            match c {
                '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => out.push(b' '),
                c if u32::from(c) < 0x20 => out.push(b'?'),
                c => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
            }
        }
        out
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in proptest::collection::vec(any::<u8>(), 0..200), cap in 0usize..80) {
            let mut members = 0usize;
            for_each_member(&text, |_, _| members = members.saturating_add(1));
            prop_assert!(members <= text.len());
            let mut out = vec![0u8; cap];
            prop_assert!(copy_str(&text, &mut out).is_none_or(|n| n <= cap));
            let _ = as_u32(&text);
        }

        #[test]
        fn an_object_yields_its_members_raw_in_order(
            members in proptest::collection::vec((any::<String>(), any_value(), blank(), blank()), 0..6),
            pretty in any::<bool>(),
        ) {
            let mut text = String::from("{");
            let mut expected = Vec::new();
            for (i, (key, value, before, after)) in members.iter().enumerate() {
                if i > 0 {
                    text.push(',');
                }
                let key = serde_json::to_string(key)?;
                let value = if pretty { serde_json::to_string_pretty(value)? } else { serde_json::to_string(value)? };
                text.push_str(&format!("{before}{key}{after}:{before}{value}{after}"));
                let inner = key.get(1..key.len().saturating_sub(1)).unwrap_or_default();
                expected.push((inner.as_bytes().to_vec(), value.into_bytes()));
            }
            text.push('}');
            let mut seen = Vec::new();
            prop_assert!(for_each_member(text.as_bytes(), |k, v| seen.push((k.to_vec(), v.to_vec()))));
            prop_assert_eq!(seen, expected);
        }

        #[test]
        fn numbers_and_strings_read_back(number in any::<u32>(), text in any::<String>(), cap in 0usize..80) {
            prop_assert_eq!(as_u32(number.to_string().as_bytes()), Some(number));
            let raw = serde_json::to_string(&text)?;
            let mut out = vec![0u8; cap];
            let written = copy_str(raw.as_bytes(), &mut out);
            let mut expected = copied(&text);
            expected.truncate(cap);
            prop_assert_eq!(written, Some(expected.len()));
            prop_assert_eq!(out.get(..expected.len()), Some(expected.as_slice()));
        }
    }
}
