//! [`Config`]: the function's `config` table from the gateway's TOML, as the
//! host passes it to `sluice_init`.

use alloc::vec::Vec;
use sluice_event::{Meta, Value};

use crate::{Error, Level, log_parts};

/// The type a config key must have, for [`Config::validate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A TOML integer or float ([`Value::Number`]).
    Number,
    /// A TOML boolean ([`Value::Bool`]).
    Flag,
    /// A TOML string ([`Value::Text`]).
    Text,
}

impl Kind {
    fn admits(self, value: &Value) -> bool {
        matches!(
            (self, value),
            (Kind::Number, Value::Number(_))
                | (Kind::Flag, Value::Bool(_))
                | (Kind::Text, Value::Text(_))
        )
    }
}

/// The function's configuration: one [`Meta`] per scalar of its `config`
/// table, nested tables flattened with `.` (`limits.high`).
///
/// The typed getters return `None` both for an absent key and for a key of
/// another type; call [`Config::validate`] first in `init` so that the latter
/// is refused instead of silently defaulted.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Config {
    entries: Vec<Meta>,
}

impl Config {
    /// A config made of `entries`.
    pub fn new(entries: Vec<Meta>) -> Config {
        Config { entries }
    }

    /// All entries, in the order the host sent them.
    pub fn entries(&self) -> &[Meta] {
        &self.entries
    }

    /// The value under `key`, whatever its type.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries.iter().find(|m| m.key == key).map(|m| &m.value)
    }

    /// The number under `key`.
    pub fn number(&self, key: &str) -> Option<f64> {
        match self.get(key) {
            Some(Value::Number(n)) => Some(*n),
            _ => None,
        }
    }

    /// The string under `key`.
    pub fn text(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(Value::Text(s)) => Some(s),
            _ => None,
        }
    }

    /// The boolean under `key`.
    pub fn flag(&self, key: &str) -> Option<bool> {
        match self.get(key) {
            Some(Value::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    /// The number under `key`; [`Error::MISSING_CONFIG`] (key logged) if absent.
    pub fn required_number(&self, key: &str) -> Result<f64, Error> {
        self.number(key).ok_or_else(|| missing(key))
    }

    /// The string under `key`; [`Error::MISSING_CONFIG`] (key logged) if absent.
    pub fn required_text(&self, key: &str) -> Result<&str, Error> {
        self.text(key).ok_or_else(|| missing(key))
    }

    /// The boolean under `key`; [`Error::MISSING_CONFIG`] (key logged) if absent.
    pub fn required_flag(&self, key: &str) -> Result<bool, Error> {
        self.flag(key).ok_or_else(|| missing(key))
    }

    /// Checks every entry against `schema`, the keys the function knows and
    /// their types: an unknown key is [`Error::UNKNOWN_CONFIG`], a key of
    /// another type [`Error::INVALID_CONFIG`]; the key is logged.
    ///
    /// ```
    /// use sluice_sdk::{Config, Error, Kind, Meta, Value};
    /// let config = Config::new(vec![Meta { key: "high".into(), value: Value::Number(30.0) }]);
    /// assert_eq!(config.validate(&[("high", Kind::Number), ("reading", Kind::Text)]), Ok(()));
    /// ```
    pub fn validate(&self, schema: &[(&str, Kind)]) -> Result<(), Error> {
        for entry in &self.entries {
            match schema.iter().find(|(key, _)| *key == entry.key) {
                None => return Err(refuse(Error::UNKNOWN_CONFIG, &entry.key)),
                Some((_, kind)) if !kind.admits(&entry.value) => {
                    return Err(refuse(Error::INVALID_CONFIG, &entry.key));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// [`Error::INVALID_CONFIG`], after logging which key holds the unusable
    /// value and why; for checks beyond the type (`delta` must be > 0, …).
    pub fn invalid(&self, key: &str, why: &str) -> Error {
        log_parts(Level::Error, &["invalid config key ", key, ": ", why]);
        Error::INVALID_CONFIG
    }
}

fn missing(key: &str) -> Error {
    refuse(Error::MISSING_CONFIG, key)
}

fn refuse(error: Error, key: &str) -> Error {
    log_parts(Level::Error, &[error.message(), ": ", key]);
    error
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn config() -> Config {
        let entry = |key: &str, value| Meta {
            key: key.into(),
            value,
        };
        Config::new(vec![
            entry("high", Value::Number(30.0)),
            entry("reading", Value::Text("temperature".into())),
            entry("limits.enabled", Value::Bool(true)),
        ])
    }

    #[test]
    fn typed_getters() {
        let c = config();
        assert_eq!(c.number("high"), Some(30.0));
        assert_eq!(c.text("reading"), Some("temperature"));
        assert_eq!(c.flag("limits.enabled"), Some(true));
        assert_eq!(c.number("reading"), None); // another type
        assert_eq!(c.number("low"), None); // absent
        assert_eq!(c.required_text("reading"), Ok("temperature"));
        assert_eq!(c.required_number("low"), Err(Error::MISSING_CONFIG));
        assert_eq!(c.required_flag("high"), Err(Error::MISSING_CONFIG));
    }

    #[test]
    fn validate() {
        let c = config();
        let schema = [
            ("high", Kind::Number),
            ("reading", Kind::Text),
            ("limits.enabled", Kind::Flag),
        ];
        assert_eq!(c.validate(&schema), Ok(()));
        assert_eq!(c.validate(&schema[..2]), Err(Error::UNKNOWN_CONFIG));
        let wrong = [
            ("high", Kind::Text),
            ("reading", Kind::Text),
            ("limits.enabled", Kind::Flag),
        ];
        assert_eq!(c.validate(&wrong), Err(Error::INVALID_CONFIG));
        assert_eq!(Config::default().validate(&[]), Ok(()));
    }
}
