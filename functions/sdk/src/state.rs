//! The function's durable key-value store: byte keys of 1–256 bytes, byte
//! values, committed together with the call's outputs and undone when the
//! call fails. Memory inside the instance is only a cache; this is the truth.

use alloc::vec;
use alloc::vec::Vec;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sluice_event::abi;

use crate::Error;
use crate::host::{addr, len, sys};

/// First buffer size tried by [`get`]; larger values cost a second call.
const FIRST_READ: usize = 256;

/// Why a write was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateError {
    /// The function's state would exceed its cap (`state_max`); nothing was
    /// written.
    Full,
    /// The key is empty or longer than 256 bytes.
    BadArgument,
}

impl From<StateError> for Error {
    fn from(err: StateError) -> Error {
        match err {
            StateError::Full => Error::STATE_FULL,
            StateError::BadArgument => Error::STATE_BAD_ARGUMENT,
        }
    }
}

/// The value stored under `key`, if any.
///
/// A key that cannot be stored (empty, or over 256 bytes) has no value, so it
/// reads as `None` too.
pub fn get(key: &[u8]) -> Option<Vec<u8>> {
    let mut out = vec![0u8; FIRST_READ];
    loop {
        // SAFETY: both pointer/length pairs describe live buffers, and the
        // host writes at most `out.len()` bytes into `out`.
        let n = unsafe { sys::state_get(addr(key), len(key), addr(&out), len(&out)) };
        let n = usize::try_from(n).ok()?; // -1 not found, -3 bad argument
        if n <= out.len() {
            out.truncate(n);
            return Some(out);
        }
        // The value grew or was larger than the first guess: ask again with
        // exactly its length.
        out = vec![0u8; n];
    }
}

/// Stores `value` under `key`, replacing what was there.
pub fn put(key: &[u8], value: &[u8]) -> Result<(), StateError> {
    // SAFETY: both pointer/length pairs describe live buffers.
    match unsafe { sys::state_put(addr(key), len(key), addr(value), len(value)) } {
        abi::OK => Ok(()),
        abi::ERR_STATE_FULL => Err(StateError::Full),
        _ => Err(StateError::BadArgument),
    }
}

/// Removes `key`; removing a key that does not exist is not an error.
pub fn delete(key: &[u8]) -> Result<(), StateError> {
    // SAFETY: the pointer/length pair describes a live buffer.
    match unsafe { sys::state_delete(addr(key), len(key)) } {
        abi::OK => Ok(()),
        _ => Err(StateError::BadArgument),
    }
}

/// Whether a value is stored under `key`, without reading it.
pub fn contains(key: &[u8]) -> bool {
    // SAFETY: the key's pointer/length pair describes a live buffer; with no
    // room to write to, the host only reports the value's length.
    unsafe { sys::state_get(addr(key), len(key), 0, 0) >= 0 }
}

/// The number stored under `key` by [`put_f64`]; `None` if there is none or
/// the stored value is not 8 bytes.
pub fn get_f64(key: &[u8]) -> Option<f64> {
    // Read straight into 8 bytes on the stack: an allocation costs more fuel
    // than the rest of the call. A longer value is not copied (and not ours).
    let mut bytes = [0u8; 8];
    // SAFETY: both pointer/length pairs describe live buffers, and the host
    // writes at most 8 bytes into `bytes`.
    let out = bytes.as_mut_ptr() as usize as i32;
    let n = unsafe { sys::state_get(addr(key), len(key), out, 8) };
    (n == 8).then(|| f64::from_le_bytes(bytes))
}

/// Stores `value` under `key` as 8 little-endian bytes.
pub fn put_f64(key: &[u8], value: f64) -> Result<(), StateError> {
    put(key, &value.to_le_bytes())
}

/// The postcard-encoded value stored under `key` by [`store`].
///
/// `Ok(None)` if there is none; [`Error::MALFORMED_STATE`] if the stored bytes
/// do not decode as a `T` (for instance after the type changed).
pub fn load<T: DeserializeOwned>(key: &[u8]) -> Result<Option<T>, Error> {
    match get(key) {
        None => Ok(None),
        Some(bytes) => postcard::from_bytes(&bytes)
            .map(Some)
            .map_err(|_| Error::MALFORMED_STATE),
    }
}

/// Stores `value` under `key`, postcard-encoded.
///
/// Fails with [`Error::STATE_FULL`] or [`Error::STATE_BAD_ARGUMENT`] as
/// [`put`] does.
pub fn store<T: Serialize + ?Sized>(key: &[u8], value: &T) -> Result<(), Error> {
    // Encoding into a Vec fails only on allocation failure, which traps anyway.
    let bytes = postcard::to_allocvec(value).map_err(|_| Error::MALFORMED_STATE)?;
    put(key, &bytes).map_err(Error::from)
}
