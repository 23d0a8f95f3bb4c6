//! Config problems and how they are shown: `file:line:column: message`.
//!
//! A problem found by toml carries a byte span; a problem found by
//! validation carries a key path (`queue.streams[1].max_bytes`), whose
//! position is looked up in the source text.

use std::fmt;
use std::ops::Range;
use std::path::Path;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// One thing wrong with a config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Key path, such as `uplink.batch_max_bytes`, when known.
    pub key: Option<String>,
    /// Byte range in the source, when known.
    pub span: Option<Range<usize>>,
    /// What is wrong.
    pub message: String,
}

impl Problem {
    /// A problem at a byte span (from the toml parser).
    pub fn at_span(span: Option<Range<usize>>, message: &str) -> Problem {
        Problem {
            key: None,
            span,
            message: message.trim_end().to_owned(),
        }
    }

    /// A problem with a key (from validation).
    pub fn at_key(key: String, message: String) -> Problem {
        Problem {
            key: Some(key),
            span: None,
            message,
        }
    }
}

/// Every problem of one config, ready to print.
#[derive(Debug)]
pub struct ConfigError {
    lines: Vec<String>,
}

impl ConfigError {
    /// Locates every problem in `text` and renders it with `origin` as the file name.
    pub fn new(origin: &str, text: &str, problems: Vec<Problem>) -> ConfigError {
        let doc = DeTable::parse(text).ok();
        let lines = problems
            .into_iter()
            .map(|p| {
                let span = p.span.clone().or_else(|| {
                    let key = p.key.as_deref()?;
                    doc.as_ref().and_then(|d| span_of_key(d, key))
                });
                let what = match &p.key {
                    Some(key) => format!("{key}: {}", p.message),
                    None => p.message.clone(),
                };
                match span {
                    Some(span) => {
                        let (line, col) = line_col(text, span.start);
                        format!("{origin}:{line}:{col}: {what}")
                    }
                    None => format!("{origin}: {what}"),
                }
            })
            .collect();
        ConfigError { lines }
    }

    /// The file could not be read at all.
    pub fn unreadable(path: &Path, err: &std::io::Error) -> ConfigError {
        ConfigError {
            lines: vec![format!("{}: cannot read config: {err}", path.display())],
        }
    }

    /// One rendered line per problem.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.lines.join("\n"))
    }
}

impl std::error::Error for ConfigError {}

/// Every syntax error in `text` (toml recovers and keeps going).
pub(super) fn syntax_problems(text: &str) -> Vec<Problem> {
    let (_, errors) = DeTable::parse_recoverable(text);
    errors
        .iter()
        .map(|e| Problem::at_span(e.span(), e.message()))
        .collect()
}

/// 1-based line and column (in characters) of byte offset `at`.
fn line_col(text: &str, at: usize) -> (usize, usize) {
    let at = at.min(text.len());
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

/// The span of the deepest part of `key` present in the document: a
/// missing last key points at its table, so the user still lands nearby.
fn span_of_key(doc: &Spanned<DeTable<'_>>, key: &str) -> Option<Range<usize>> {
    let mut table = doc.get_ref();
    let mut best = None;
    let mut segments = key.split('.').peekable();
    while let Some(segment) = segments.next() {
        let (name, index) = match segment.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (segment, None),
        };
        let Some((k, mut value)) = table.get_key_value(name) else {
            break;
        };
        best = Some(k.span());
        if let (Some(i), DeValue::Array(items)) = (index, value.get_ref()) {
            let Some(item) = items.get(i) else { break };
            value = item;
            best = Some(value.span());
        }
        match value.get_ref() {
            DeValue::Table(t) if segments.peek().is_some() => table = t,
            _ => break,
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_count_characters() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        assert_eq!(line_col(text, text.find("= 2").unwrap_or(0)), (2, 4));
    }

    #[test]
    fn key_paths_resolve_into_arrays_of_tables() {
        let text = "[queue]\n[[queue.streams]]\nname = \"a\"\n[[queue.streams]]\nname = \"b\"\nmax_bytes = \"1 B\"\n";
        let doc = DeTable::parse(text).expect("parses");
        let span = span_of_key(&doc, "queue.streams[1].max_bytes").expect("found");
        assert_eq!(line_col(text, span.start), (6, 1));
        let span = span_of_key(&doc, "queue.streams[1].overflow").expect("falls back to the table");
        assert_eq!(line_col(text, span.start).0, 4);
    }
}
