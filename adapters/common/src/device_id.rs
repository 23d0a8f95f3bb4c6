//! The one rule for device ids (and other identifiers that become one level
//! of a subject, such as a reading name taken from a CoAP path): configured
//! ids and ids that arrive on the wire are checked alike, so no device can
//! be addressed one way and rejected the other.

use std::fmt;

/// Longest id accepted, in bytes: room for an EUI, a MAC or a UUID with a
/// prefix, and short enough to keep subjects and logs readable.
pub const MAX_LEN: usize = 64;

/// Why an id is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadId {
    /// The id is empty.
    Empty,
    /// Longer than [`MAX_LEN`] bytes.
    TooLong,
    /// Contains `/`, which would add a level to the subject.
    Slash,
    /// Contains the subject wildcard `+` or `#`.
    Wildcard,
    /// Contains a control character (including NUL, tab and newline).
    Control,
}

impl fmt::Display for BadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BadId::Empty => "is empty",
            BadId::TooLong => "is longer than 64 bytes",
            BadId::Slash => "contains `/`",
            BadId::Wildcard => "contains `+` or `#`",
            BadId::Control => "contains a control character",
        })
    }
}

impl std::error::Error for BadId {}

/// Checks `id` against the rule: 1 to [`MAX_LEN`] bytes, no `/`, `+`, `#`
/// and no control characters.
pub fn check(id: &str) -> Result<(), BadId> {
    if id.is_empty() {
        return Err(BadId::Empty);
    }
    if id.len() > MAX_LEN {
        return Err(BadId::TooLong);
    }
    if id.contains('/') {
        return Err(BadId::Slash);
    }
    if id.contains(['+', '#']) {
        return Err(BadId::Wildcard);
    }
    if id.chars().any(char::is_control) {
        return Err(BadId::Control);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule() {
        let long = "x".repeat(MAX_LEN + 1);
        let longest = "x".repeat(MAX_LEN);
        let cases: &[(&str, Result<(), BadId>)] = &[
            ("greenhouse-1", Ok(())),
            ("urn:dev:mac:0024befffe804ff1", Ok(())),
            ("température", Ok(())),
            (&longest, Ok(())),
            ("", Err(BadId::Empty)),
            (&long, Err(BadId::TooLong)),
            ("a/b", Err(BadId::Slash)),
            ("a+", Err(BadId::Wildcard)),
            ("#", Err(BadId::Wildcard)),
            ("a\0b", Err(BadId::Control)),
            ("a\nb", Err(BadId::Control)),
            ("a\u{7f}", Err(BadId::Control)),
            ("a\u{85}", Err(BadId::Control)),
        ];
        for (id, expected) in cases {
            assert_eq!(check(id), *expected, "{id:?}");
        }
    }
}
