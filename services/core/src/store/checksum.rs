//! CRC-32C (Castagnoli) of a log record: the SSE 4.2 instruction where the
//! processor has it, else a table a byte at a time. A commit checksums its
//! whole line, so this is on the allocation path.

const POLY: u32 = 0x82f6_3b78;

const TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ POLY } else { crc >> 1 };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

pub(super) fn crc32c(bytes: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("sse4.2") {
        // SAFETY: the processor has SSE 4.2, checked just above.
        return !unsafe { hardware(!0, bytes) };
    }
    !table(!0, bytes)
}

fn table(mut crc: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        crc = TABLE[usize::from((crc as u8) ^ b)] ^ (crc >> 8);
    }
    crc
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
fn hardware(crc: u32, bytes: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u8, _mm_crc32_u64};
    let mut words = bytes.chunks_exact(8);
    let mut crc = u64::from(crc);
    for word in &mut words {
        let mut buf = [0u8; 8];
        buf.copy_from_slice(word);
        crc = _mm_crc32_u64(crc, u64::from_le_bytes(buf));
    }
    let mut crc = crc as u32;
    for &b in words.remainder() {
        crc = _mm_crc32_u8(crc, b);
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_check_value_and_both_ways_agree() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(!table(!0, b"123456789"), 0xe306_9283);
        let long: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in [0, 1, 7, 8, 9, 63, 1000] {
            assert_eq!(crc32c(&long[..len]), !table(!0, &long[..len]), "length {len}");
        }
    }
}
