//! Subject patterns in the MQTT style: `coap/+` matches one level,
//! `lorawan/#` matches the rest of the subject (including nothing).

use serde::{Deserialize, Deserializer};
use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

/// A validated subject pattern such as `coap/+` or `lorawan/#`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubjectPattern {
    text: String,
    /// For the usual form `a/b/#`: the length of `a/b`, matched as a prefix.
    prefix: Option<usize>,
}

impl SubjectPattern {
    /// Whether `subject` matches this pattern.
    pub fn matches(&self, subject: &str) -> bool {
        // The usual form, `a/b/#`: a prefix test instead of splitting.
        if let Some(n) = self.prefix {
            return subject
                .strip_prefix(&self.text[..n])
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
        }
        let mut levels = subject.split('/');
        for part in self.text.split('/') {
            match part {
                "#" => return true,
                "+" => {
                    if levels.next().is_none() {
                        return false;
                    }
                }
                literal => {
                    if levels.next() != Some(literal) {
                        return false;
                    }
                }
            }
        }
        levels.next().is_none()
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether some subject that starts with the levels `prefix` and has at
    /// least one level more could match: can this pattern see the outputs of
    /// function `f` (`prefix = ["fn", f]`)?
    pub fn may_match_below(&self, prefix: &[&str]) -> bool {
        let mut parts = self.text.split('/');
        for level in prefix {
            match parts.next() {
                None => return false,
                Some("#") => return true,
                Some("+") => {}
                Some(literal) if literal == *level => {}
                Some(_) => return false,
            }
        }
        parts.next().is_some()
    }
}

impl SubjectPattern {
    /// Whether the pattern has a wildcard (else it matches one subject: itself).
    pub fn has_wildcard(&self) -> bool {
        self.text
            .split('/')
            .any(|level| level == "+" || level == "#")
    }
}

/// A set of patterns, matched in one hash lookup for the patterns without
/// wildcards (a LoRaWAN decoder subscribes to each of its devices' uplink
/// subjects: thousands of them) and one by one for the rest.
#[derive(Clone, Debug, Default)]
pub struct Subscriptions {
    exact: HashSet<String>,
    wildcards: Vec<SubjectPattern>,
}

impl Subscriptions {
    /// The set of `patterns`.
    pub fn new(patterns: &[SubjectPattern]) -> Subscriptions {
        let mut set = Subscriptions::default();
        for p in patterns {
            if p.has_wildcard() {
                set.wildcards.push(p.clone());
            } else {
                set.exact.insert(p.text.clone());
            }
        }
        set
    }

    /// Whether any pattern matches `subject`.
    pub fn matches(&self, subject: &str) -> bool {
        self.exact.contains(subject) || self.wildcards.iter().any(|p| p.matches(subject))
    }
}

/// Whether `subject` is a concrete subject: non-empty levels separated by
/// `/`, without the wildcards `+` and `#`.
pub fn is_concrete(subject: &str) -> bool {
    !subject.is_empty()
        && subject
            .split('/')
            .all(|level| !level.is_empty() && !level.contains(['+', '#']))
}

impl FromStr for SubjectPattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err("a subject pattern must not be empty".into());
        }
        let parts: Vec<&str> = s.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            if *part == "#" && i + 1 != parts.len() {
                return Err(format!("`{s}`: `#` is only allowed as the last level"));
            }
            if part.len() > 1 && (part.contains('#') || part.contains('+')) {
                return Err(format!("`{s}`: `+` and `#` must stand alone in a level"));
            }
        }
        let prefix = s
            .strip_suffix("/#")
            .filter(|p| !p.contains(['+', '#']))
            .map(str::len);
        Ok(SubjectPattern {
            text: s.to_owned(),
            prefix,
        })
    }
}

impl fmt::Display for SubjectPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for SubjectPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(pattern: &str, subject: &str, expected: bool) {
        let p: SubjectPattern = pattern.parse().expect("valid pattern");
        assert_eq!(p.matches(subject), expected, "{pattern} vs {subject}");
    }

    #[test]
    fn matching() {
        check("#", "coap/t1", true);
        check("#", "", true);
        check("coap/+", "coap/t1", true);
        check("coap/+", "coap/t1/x", false);
        check("coap/+", "coap", false);
        check("lorawan/#", "lorawan", true);
        check("lorawan/#", "lorawan/0004a30b001c0530/up", true);
        check("lorawan/#", "lorawanx", false);
        check("lorawan/#", "lorawanx/1/up", false);
        check("lorawan/#", "coap/t1", false);
        check("coap/+/#", "coap/t1/x", true);
        check("coap/+/#", "coap", false);
        check("lorawan/+/up", "lorawan/0004a30b001c0530/up", true);
        check("lorawan/+/up", "lorawan/0004a30b001c0530/join", false);
        check("fn/threshold/alert", "fn/threshold/alert", true);
        check("fn/threshold/alert", "fn/threshold", false);
    }

    #[test]
    fn a_set_matches_what_any_of_its_patterns_matches() {
        let patterns: Vec<SubjectPattern> =
            ["coap/+", "lorawan/0004a30b001c0530/up", "fn/a/#", "x"]
                .iter()
                .map(|p| p.parse().expect("valid pattern"))
                .collect();
        let set = Subscriptions::new(&patterns);
        for subject in [
            "coap/t1",
            "coap/t1/x",
            "lorawan/0004a30b001c0530/up",
            "lorawan/0004a30b001c0530/up/x",
            "lorawan/0004a30b001c0531/up",
            "fn/a",
            "fn/a/b/c",
            "fn/b",
            "x",
            "x/y",
            "",
        ] {
            let one_by_one = patterns.iter().any(|p| p.matches(subject));
            assert_eq!(set.matches(subject), one_by_one, "{subject}");
        }
        assert!(!Subscriptions::new(&[]).matches("coap/t1"));
    }

    #[test]
    fn patterns_that_may_see_a_function_s_outputs() {
        let below = |pattern: &str| {
            pattern
                .parse::<SubjectPattern>()
                .expect("valid pattern")
                .may_match_below(&["fn", "scale"])
        };
        for yes in [
            "#",
            "fn/#",
            "fn/+/#",
            "fn/scale/+",
            "fn/+/x",
            "+/scale/+/y",
            "fn/scale/#",
        ] {
            assert!(below(yes), "{yes}");
        }
        for no in ["fn/scale", "fn/window/#", "coap/+", "fn", "+/+"] {
            assert!(!below(no), "{no}");
        }
    }

    #[test]
    fn concrete_subjects() {
        assert!(is_concrete("fn/scale/t1"));
        for bad in ["", "a//b", "/a", "a/", "a/+", "a/#/b", "x#"] {
            assert!(!is_concrete(bad), "{bad}");
        }
    }

    #[test]
    fn invalid_patterns_are_refused() {
        for bad in ["", "a/#/b", "a/x+", "a#"] {
            assert!(bad.parse::<SubjectPattern>().is_err(), "{bad}");
        }
    }
}
