//! [`Error`]: why a function call failed, as the non-zero code the host
//! records (`returned <code>` in the dead-letter table) plus a static message
//! the SDK logs.

use core::num::NonZeroI32;

/// Why an entry point failed: a non-zero code returned to the host and a
/// static message logged at error level when the call returns.
///
/// Codes 1–99 belong to the SDK (the associated constants below); a function
/// defines its own with codes of 100 and up, as constants:
///
/// ```
/// use sluice_sdk::Error;
/// const NO_PAYLOAD: Error = Error::new(100, "event has no raw payload");
/// assert_eq!(NO_PAYLOAD.code(), 100);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Error {
    code: NonZeroI32,
    message: &'static str,
}

impl Error {
    /// The config passed to `sluice_init` is not a postcard `Vec<Meta>`.
    pub const MALFORMED_CONFIG: Error = Error::new(1, "config is not a postcard Vec<Meta>");
    /// A required config key is absent (the key is logged).
    pub const MISSING_CONFIG: Error = Error::new(2, "required config key missing");
    /// A config key has the wrong type or an unusable value (the key is logged).
    pub const INVALID_CONFIG: Error = Error::new(3, "invalid config value");
    /// The config has a key the function does not know (the key is logged).
    pub const UNKNOWN_CONFIG: Error = Error::new(4, "unknown config key");
    /// The input passed to `sluice_on_event` is not an event of format version 1.
    pub const MALFORMED_EVENT: Error = Error::new(5, "input is not a postcard Event v1");
    /// `state_put` refused: the function's state would exceed `state_max`.
    pub const STATE_FULL: Error = Error::new(6, "state full");
    /// `state_put` or `state_delete` refused the key: empty or over 256 bytes.
    pub const STATE_BAD_ARGUMENT: Error = Error::new(7, "bad state key");
    /// A stored value does not decode as the expected type.
    pub const MALFORMED_STATE: Error = Error::new(8, "stored state does not decode");
    /// `emit` returned a non-zero code.
    pub const EMIT_REJECTED: Error = Error::new(9, "emit rejected");
    /// An entry point was entered while another one was running.
    pub const BUSY: Error = Error::new(10, "re-entered while busy");

    /// An error with `code`, which must not be `0` (a compile error when the
    /// error is a `const`, a panic otherwise).
    pub const fn new(code: i32, message: &'static str) -> Error {
        match NonZeroI32::new(code) {
            Some(code) => Error { code, message },
            None => panic!("error code 0 means success"),
        }
    }

    /// The code returned to the host; never `0`.
    pub const fn code(self) -> i32 {
        self.code.get()
    }

    /// The message logged when the call fails.
    pub const fn message(self) -> &'static str {
        self.message
    }
}

impl From<sluice_event::DecodeError> for Error {
    /// An input that does not decode: [`Error::MALFORMED_EVENT`].
    fn from(_: sluice_event::DecodeError) -> Error {
        Error::MALFORMED_EVENT
    }
}
