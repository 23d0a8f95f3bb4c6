//! The postcard wire primitives [`Event`](crate::Event) is made of, read and
//! written by hand so that [`EventView`](crate::EventView) and
//! [`EventWriter`](crate::EventWriter) need neither serde nor allocation.
//! They follow postcard 1.x exactly: LEB128 varints (at most 10 bytes for a
//! u64, 5 for a u32, the last byte bounded), zigzag for signed integers,
//! little-endian floats, a `0`/`1` tag for options and booleans, a varint
//! length before strings and sequences, a varint variant index before an
//! enum's payload. `tests/view.rs` checks them against postcard itself.
//!
//! Guest functions run this code under wasmi's fuel metering, which charges
//! every instruction of a straight-line region when the region is entered,
//! taken or not. So the common case (a one-byte varint, an ASCII string) is
//! inline and short, and the rest is in separate functions that cost only a
//! call where they are not needed.

use alloc::vec::Vec;

use crate::DecodeError;

/// A cursor over encoded bytes; every read fails with
/// [`DecodeError::Malformed`] rather than running past the end.
#[derive(Clone)]
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes }
    }

    /// The bytes not read yet.
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.bytes
    }

    #[inline(always)]
    pub(crate) fn byte(&mut self) -> Result<u8, DecodeError> {
        let (&first, rest) = self.bytes.split_first().ok_or(DecodeError::Malformed)?;
        self.bytes = rest;
        Ok(first)
    }

    #[inline(always)]
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.bytes.len() {
            return Err(DecodeError::Malformed);
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    /// A varint of at most `max_bytes` bytes whose value fits in `bits` bits.
    #[inline(always)]
    fn varint(&mut self, max_bytes: u32, bits: u32) -> Result<u64, DecodeError> {
        if let Some((&first, rest)) = self.bytes.split_first()
            && first < 0x80
        {
            self.bytes = rest;
            return Ok(u64::from(first));
        }
        self.long_varint(max_bytes, bits)
    }

    /// [`Reader::varint`] past its one-byte case. (The lazy view reads the
    /// common lengths faster, with [`word_varint`].)
    #[inline(never)]
    fn long_varint(&mut self, max_bytes: u32, bits: u32) -> Result<u64, DecodeError> {
        let mut out = 0u64;
        for i in 0..max_bytes {
            let b = self.byte()?;
            out |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                let last_max = (1u16 << (bits - 7 * (max_bytes - 1))) - 1;
                if i == max_bytes - 1 && u16::from(b) > last_max {
                    return Err(DecodeError::Malformed);
                }
                return Ok(out);
            }
        }
        Err(DecodeError::Malformed)
    }

    #[inline(always)]
    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        self.varint(10, 64)
    }

    #[inline(always)]
    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        // Bounded to 32 bits by `varint`.
        self.varint(5, 32).map(|v| v as u32)
    }

    pub(crate) fn i64(&mut self) -> Result<i64, DecodeError> {
        let n = self.u64()?;
        Ok(((n >> 1) as i64) ^ -((n & 1) as i64))
    }

    /// A length prefix (postcard's `usize`, read as the 64-bit host reads it).
    #[inline(always)]
    pub(crate) fn len(&mut self) -> Result<usize, DecodeError> {
        usize::try_from(self.u64()?).map_err(|_| DecodeError::Malformed)
    }

    #[inline(always)]
    pub(crate) fn f64(&mut self) -> Result<f64, DecodeError> {
        let bytes = self.take(8)?;
        let mut le = [0u8; 8];
        le.copy_from_slice(bytes);
        Ok(f64::from_le_bytes(le))
    }

    #[inline(always)]
    pub(crate) fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Malformed),
        }
    }

    /// An option's tag: whether a value follows.
    #[inline(always)]
    pub(crate) fn some(&mut self) -> Result<bool, DecodeError> {
        self.bool()
    }

    #[inline(always)]
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.len()?;
        self.take(n)
    }

    #[inline(always)]
    pub(crate) fn str(&mut self) -> Result<&'a str, DecodeError> {
        utf8(self.bytes()?)
    }
}

/// A u64 varint of up to 8 bytes (every timestamp and id for the next few
/// thousand years) and its length, read from one 8-byte word without a loop:
/// the first byte with its high bit clear ends it, and each byte's 7 low
/// bits move down by one bit per byte before it. It cannot overflow. `None`
/// if it is longer or `bytes` is shorter than 8.
#[inline(always)]
pub(crate) fn word_varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let word = u64::from_le_bytes(*bytes.first_chunk::<8>()?);
    let ends = !word & 0x8080_8080_8080_8080;
    if ends == 0 {
        return None;
    }
    let len = ends.trailing_zeros() / 8 + 1;
    let word = word & (u64::MAX >> (64 - 8 * len)) & 0x7f7f_7f7f_7f7f_7f7f;
    // Pairs of 7-bit groups into 14 bits, pairs of those into 28, then 56.
    let word = (word & 0x007f_007f_007f_007f) | ((word >> 1) & 0x3f80_3f80_3f80_3f80);
    let word = (word & 0x0000_3fff_0000_3fff) | ((word >> 2) & 0x0fff_c000_0fff_c000);
    let out = (word & 0x0fff_ffff) | ((word >> 4) & 0x00ff_ffff_f000_0000);
    Some((out, len as usize))
}

/// `bytes` as UTF-8. Names, units and subjects are nearly always ASCII, which
/// a few word loads check far faster than `from_utf8` does in a wasm guest.
/// Strings shorter than eight bytes (units, most device ids) are checked
/// here; longer ones in a call of their own, so that the short ones do not
/// pay for the word loop's code.
#[inline(never)]
pub(crate) fn utf8(bytes: &[u8]) -> Result<&str, DecodeError> {
    let ascii = match bytes.len() {
        0..8 => short_word(bytes) & 0x8080_8080 == 0,
        _ => long_is_ascii(bytes),
    };
    if ascii {
        // SAFETY: ASCII is valid UTF-8.
        Ok(unsafe { core::str::from_utf8_unchecked(bytes) })
    } else {
        non_ascii(bytes)
    }
}

#[inline(never)]
fn non_ascii(bytes: &[u8]) -> Result<&str, DecodeError> {
    core::str::from_utf8(bytes).map_err(|_| DecodeError::Malformed)
}

/// Whether every byte of a slice of eight or more is below 0x80: eight
/// bytes at a time, and the last eight (overlapping) for the rest; never
/// byte by byte, as a loop costs fuel on every turn.
#[inline(never)]
fn long_is_ascii(bytes: &[u8]) -> bool {
    let Some(&last) = bytes.last_chunk::<8>() else {
        return short_word(bytes) & 0x8080_8080 == 0;
    };
    let mut high = u64::from_le_bytes(last);
    for word in bytes.chunks_exact(8) {
        high |= u64::from_le_bytes(word.try_into().unwrap_or_default());
    }
    high & 0x8080_8080_8080_8080 == 0
}

/// The bytes of a slice shorter than eight, or-ed together in the low ones of
/// a word (from overlapping loads of four, two or one byte).
#[inline(always)]
fn short_word(bytes: &[u8]) -> u32 {
    let n = bytes.len();
    let mut high = 0u32;
    if n >= 4 {
        high |= u32::from_le_bytes(bytes[..4].try_into().unwrap_or_default());
        high |= u32::from_le_bytes(bytes[n - 4..].try_into().unwrap_or_default());
    } else if n >= 2 {
        high |= u32::from(u16::from_le_bytes(
            bytes[..2].try_into().unwrap_or_default(),
        ));
        high |= u32::from(u16::from_le_bytes(
            bytes[n - 2..].try_into().unwrap_or_default(),
        ));
    } else if n == 1 {
        high |= u32::from(bytes[0]);
    }
    high
}

/// Whether two strings are equal, compared a word at a time. `==` on
/// strings is a byte loop in a wasm guest (compiler-builtins' `memcmp`),
/// which wasmi charges on every byte: about 200 fuel for an 11-byte name,
/// this about 40.
#[inline(never)]
pub fn same_str(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    // Each length in a call of its own, so that neither pays for the
    // other's code.
    match (a.last_chunk::<8>(), b.last_chunk::<8>()) {
        (Some(last_a), Some(last_b)) => last_a == last_b && same_words(a, b),
        _ => same_short(a, b),
    }
}

/// [`same_str`] of two slices of one length, eight or more, whose last
/// words are equal.
#[inline(never)]
fn same_words(a: &[u8], b: &[u8]) -> bool {
    a.chunks_exact(8)
        .zip(b.chunks_exact(8))
        .all(|(x, y)| word(x) == word(y))
}

/// [`same_str`] of two slices of one length, shorter than eight.
#[inline(never)]
fn same_short(a: &[u8], b: &[u8]) -> bool {
    short_bytes(a) == short_bytes(b)
}

/// An 8-byte chunk as a word.
#[inline(always)]
fn word(chunk: &[u8]) -> u64 {
    u64::from_le_bytes(chunk.try_into().unwrap_or_default())
}

/// A slice shorter than eight as a word, from overlapping loads of four, two
/// or one byte: equal for two slices of one length only if they are equal.
#[inline(always)]
fn short_bytes(bytes: &[u8]) -> u64 {
    let n = bytes.len();
    if n >= 4 {
        let first = u32::from_le_bytes(bytes[..4].try_into().unwrap_or_default());
        let last = u32::from_le_bytes(bytes[n - 4..].try_into().unwrap_or_default());
        u64::from(first) | u64::from(last) << 32
    } else if n >= 2 {
        let first = u16::from_le_bytes(bytes[..2].try_into().unwrap_or_default());
        let last = u16::from_le_bytes(bytes[n - 2..].try_into().unwrap_or_default());
        u64::from(first) | u64::from(last) << 16
    } else {
        bytes.first().map_or(0, |&b| u64::from(b))
    }
}

#[inline(always)]
pub(crate) fn put_u64(out: &mut Vec<u8>, n: u64) {
    if n < 0x80 {
        out.push(n as u8);
    } else {
        put_long_u64(out, n);
    }
}

/// [`put_u64`] without the inlined one-byte case (it writes any value).
#[inline(never)]
pub(crate) fn put_long_u64(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

pub(crate) fn put_i64(out: &mut Vec<u8>, n: i64) {
    put_u64(out, ((n << 1) ^ (n >> 63)) as u64);
}

pub(crate) fn put_len(out: &mut Vec<u8>, n: usize) {
    put_u64(out, n as u64);
}

pub(crate) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

pub(crate) fn put_f64(out: &mut Vec<u8>, x: f64) {
    out.extend_from_slice(&x.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// Every length up to three words, with one byte at or above 0x80 in
    /// each position (or none): the word-wise check agrees with `from_utf8`.
    /// Every length up to three words, equal or differing in one byte at
    /// each position: the word-wise comparison agrees with `==`.
    #[test]
    fn same_str_at_every_length_and_position() {
        for len in 0..24 {
            let a: alloc::string::String = (0..len).map(|i| (b'a' + i as u8) as char).collect();
            assert!(same_str(&a, &a.clone()));
            for at in 0..len {
                let mut b = a.clone().into_bytes();
                b[at] = b'Z';
                let b = alloc::string::String::from_utf8(b).unwrap();
                assert!(!same_str(&a, &b), "{a} {b}");
            }
            assert!(!same_str(&a, &a[..len.saturating_sub(1)]) || len == 0);
        }
    }

    #[test]
    fn ascii_check_at_every_length_and_position() {
        for len in 0..24 {
            for high in (0..len).map(Some).chain([None]) {
                let mut bytes = vec![b'a'; len];
                if let Some(at) = high {
                    bytes[at] = 0xff;
                }
                assert_eq!(utf8(&bytes).is_ok(), high.is_none(), "{len} {high:?}");
            }
        }
    }
}
