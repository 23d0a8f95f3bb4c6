//! Small text builders that avoid `core::fmt`, whose machinery alone would
//! double the size of a module: decimal integers and subject levels.

use alloc::string::String;

/// Whether two strings are equal, compared a word at a time: `==` on
/// strings is a byte loop in a wasm guest, charged on every byte (about 200
/// fuel for an 11-byte reading name, this about 40).
///
/// ```
/// assert!(sluice_sdk::text::same("temperature", "temperature"));
/// assert!(!sluice_sdk::text::same("temperature", "temperatura"));
/// ```
pub use sluice_event::same_str as same;

/// Appends `value` in decimal to `out`.
///
/// ```
/// let mut s = String::from("temperature_");
/// sluice_sdk::text::push_u64(&mut s, 3);
/// assert_eq!(s, "temperature_3");
/// ```
pub fn push_u64(out: &mut String, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    // SAFETY: ASCII digits are UTF-8 (pushed as bytes: `push(char)` would
    // bring in the code that encodes any char).
    unsafe { out.as_mut_vec() }.extend_from_slice(&digits[start..]);
}

/// Appends `value` in decimal to `out`, with a leading `-` when negative.
///
/// ```
/// let mut s = String::new();
/// sluice_sdk::text::push_i64(&mut s, -42);
/// assert_eq!(s, "-42");
/// ```
pub fn push_i64(out: &mut String, value: i64) {
    if value < 0 {
        out.push_str("-");
    }
    push_u64(out, value.unsigned_abs());
}

/// Turns a name (usually a device id) into one valid subject level: `/`, `+`
/// and `#` become `_`, and an empty name becomes `unknown`.
///
/// The host prefixes `fn/<function>/`, so a function that sets its output's
/// subject to `subject_level(&input.device)` publishes under
/// `fn/<function>/<device>`.
///
/// ```
/// assert_eq!(sluice_sdk::text::subject_level("site/a+b#1"), "site_a_b_1");
/// assert_eq!(sluice_sdk::text::subject_level(""), "unknown");
/// ```
pub fn subject_level(name: &str) -> String {
    let mut level = String::new();
    subject_level_into(&mut level, name);
    level
}

/// Appends [`subject_level`]`(name)` to `out`, without allocating a string
/// of its own.
///
/// ```
/// let mut s = String::from("fn/");
/// sluice_sdk::text::subject_level_into(&mut s, "a/b");
/// assert_eq!(s, "fn/a_b");
/// ```
pub fn subject_level_into(out: &mut String, name: &str) {
    if name.is_empty() {
        out.push_str("unknown");
        return;
    }
    let start = out.len();
    out.push_str(name);
    // SAFETY: only the ASCII bytes `/`, `+` and `#` are replaced, by the ASCII
    // byte `_`; a UTF-8 string stays UTF-8 (no byte of a multi-byte sequence
    // is ASCII).
    for byte in &mut unsafe { out.as_bytes_mut() }[start..] {
        if matches!(*byte, b'/' | b'+' | b'#') {
            *byte = b'_';
        }
    }
}

/// Whether `name` is one subject level as it is (what [`subject_level`]
/// returns unchanged): not empty, without `/`, `+` or `#`.
///
/// ```
/// assert!(sluice_sdk::text::is_subject_level("0004a30b001c0530"));
/// assert!(!sluice_sdk::text::is_subject_level("site/a"));
/// assert!(!sluice_sdk::text::is_subject_level(""));
/// ```
pub fn is_subject_level(name: &str) -> bool {
    // Eight bytes at a time, as a loop costs fuel on every turn; the last
    // word is padded with zeros, which are none of the three.
    let bytes = name.as_bytes();
    let mut words = bytes.chunks_exact(8);
    let mut found = 0;
    for word in &mut words {
        found |= special_bytes(u64::from_le_bytes(word.try_into().unwrap_or_default()));
    }
    let rest = words.remainder();
    let mut last = [0u8; 8];
    last[..rest.len()].copy_from_slice(rest);
    found |= special_bytes(u64::from_le_bytes(last));
    !bytes.is_empty() && found == 0
}

/// Non-zero if a byte of `word` is `/`, `+` or `#`.
#[inline(always)]
fn special_bytes(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // Non-zero exactly when a byte of `x` is zero (the classic SWAR test).
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    zero_byte(word ^ (ONES * u64::from(b'/')))
        | zero_byte(word ^ (ONES * u64::from(b'+')))
        | zero_byte(word ^ (ONES * u64::from(b'#')))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decimal(value: i64) -> String {
        let mut s = String::new();
        push_i64(&mut s, value);
        s
    }

    #[test]
    fn decimals() {
        assert_eq!(decimal(0), "0");
        assert_eq!(decimal(7), "7");
        assert_eq!(decimal(1_000_000), "1000000");
        assert_eq!(decimal(-1), "-1");
        assert_eq!(decimal(i64::MIN), "-9223372036854775808");
        assert_eq!(decimal(i64::MAX), "9223372036854775807");
    }

    #[test]
    fn subject_levels() {
        assert_eq!(subject_level("greenhouse-1"), "greenhouse-1");
        assert_eq!(subject_level("a/b"), "a_b");
        assert_eq!(subject_level("+#"), "__");
        assert_eq!(subject_level(""), "unknown");
        assert_eq!(subject_level("gerät/ü#"), "gerät_ü_");
        assert_eq!(subject_level("0123456789abcdef/"), "0123456789abcdef_");
    }

    #[test]
    fn levels_as_they_are() {
        for name in ["a", "greenhouse-1", "0004a30b001c0530", "gerät", "12345678"] {
            assert!(is_subject_level(name), "{name}");
        }
        for name in ["", "/", "a+", "#b", "0123456789abcde/", "01234567+"] {
            assert!(!is_subject_level(name), "{name}");
        }
    }
}
