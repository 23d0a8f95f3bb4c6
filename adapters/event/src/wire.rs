//! The postcard wire primitives [`Event`](crate::Event) is made of, read and
//! written by hand so that [`EventView`](crate::EventView) and
//! [`EventWriter`](crate::EventWriter) need neither serde nor allocation.
//! They follow postcard 1.x exactly: LEB128 varints (at most 10 bytes for a
//! u64, 5 for a u32, the last byte bounded), zigzag for signed integers,
//! little-endian floats, a `0`/`1` tag for options and booleans, a varint
//! length before strings and sequences, a varint variant index before an
//! enum's payload. `tests/view.rs` checks them against postcard itself.

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

    #[inline(always)]
    fn varint(&mut self, max_bytes: u32, bits: u32) -> Result<u64, DecodeError> {
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

/// `bytes` as UTF-8. Names, units and subjects are nearly always ASCII, and a
/// plain loop checks that far faster than `from_utf8` does in a wasm guest.
fn utf8(bytes: &[u8]) -> Result<&str, DecodeError> {
    if bytes.iter().all(u8::is_ascii) {
        // SAFETY: ASCII is valid UTF-8.
        Ok(unsafe { core::str::from_utf8_unchecked(bytes) })
    } else {
        core::str::from_utf8(bytes).map_err(|_| DecodeError::Malformed)
    }
}

pub(crate) fn put_u64(out: &mut Vec<u8>, mut n: u64) {
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
