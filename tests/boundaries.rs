//! Which module may name which crate: SQLite only in the queue, the MQTT
//! client only in the uplink, the wasm engine only in the function host, and
//! none of them in the adapters. A use anywhere else fails here with its file
//! and line, before it becomes a second way into the database or the broker.

use std::path::{Path, PathBuf};

/// Each guarded crate and the only places (paths from the repository root,
/// a folder ending in `/` or one file) whose source may name it. Benches and
/// tests are not scanned.
const OWNERS: &[(&str, &[&str])] = &[
    // Only the queue knows SQL.
    ("rusqlite", &["src/queue/"]),
    // Only the uplink talks MQTT, and the demo's viewer, which subscribes to
    // its embedded broker to show what arrives upstream (feature `demo`).
    ("rumqttc", &["src/uplink/", "src/demo/viewer.rs"]),
    // The demo's embedded broker (feature `demo`).
    ("rumqttd", &["src/demo/broker.rs"]),
    // Only the function host runs WebAssembly.
    ("wasmi", &["src/functions/"]),
];

/// Where source files are scanned: the core and every adapter crate.
fn scanned_files(root: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![root.join("src")];
    let adapters = std::fs::read_dir(root.join("adapters")).expect("adapters/ is readable");
    for adapter in adapters {
        dirs.push(adapter.expect("adapters/ entry").path().join("src"));
    }
    let mut files = Vec::new();
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The 1-based lines of `source` that use crate `krate` as a path
/// (`krate::…`, `use krate`, `extern crate krate`). Comment lines are skipped,
/// and so is a name that is only part of a longer one (`not_krate::`).
fn lines_using(source: &str, krate: &str) -> Vec<usize> {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    source
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim_start().starts_with("//"))
        .filter(|(_, line)| {
            line.match_indices(krate).any(|(at, _)| {
                let before = &line[..at];
                let after = &line[at + krate.len()..];
                if before.chars().next_back().is_some_and(ident) {
                    return false;
                }
                let whole_name = !after.chars().next().is_some_and(ident);
                let keyword = before.trim_end();
                after.starts_with("::")
                    || (whole_name && (keyword.ends_with("use") || keyword.ends_with("crate")))
            })
        })
        .map(|(i, _)| i + 1)
        .collect()
}

#[test]
fn the_scanner_finds_paths_and_ignores_look_alikes() {
    let cases: &[(&str, &str, &[usize])] = &[
        ("a path", "let c = rusqlite::Connection::open(p)?;", &[1]),
        ("a use", "use rusqlite::{Connection, params};", &[1]),
        ("a bare use", "use rusqlite;", &[1]),
        ("a leading ::", "let e: ::rusqlite::Error;", &[1]),
        ("inside a use group", "use {std::fmt, rusqlite::Row};", &[1]),
        ("an extern crate", "extern crate rusqlite;", &[1]),
        (
            "the second line",
            "fn f() {}\n    rusqlite::params![];",
            &[2],
        ),
        ("a comment", "// rusqlite::Connection is only in queue", &[]),
        ("a doc comment", "/// Like `rusqlite::Row`.", &[]),
        ("a longer name", "use my_rusqlite::Thing;", &[]),
        ("a longer crate", "use rusqlite_migration::M;", &[]),
        ("a word in a string", "let s = \"rusqlite\";", &[]),
    ];
    for (name, source, expected) in cases {
        assert_eq!(lines_using(source, "rusqlite"), *expected, "{name}");
    }
}

#[test]
fn guarded_crates_are_used_only_by_the_modules_that_own_them() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = scanned_files(root);
    let mut trespasses = Vec::new();
    let mut owners_seen = vec![false; OWNERS.len()];
    for file in &files {
        let source = std::fs::read_to_string(file).expect("source is readable");
        let relative = file.strip_prefix(root).expect("under the root");
        let relative = relative.to_string_lossy().replace('\\', "/");
        for (i, (krate, allowed)) in OWNERS.iter().enumerate() {
            let lines = lines_using(&source, krate);
            if allowed.iter().any(|a| relative.starts_with(a)) {
                owners_seen[i] |= !lines.is_empty();
                continue;
            }
            for line in lines {
                trespasses.push(format!(
                    "{relative}:{line}: uses `{krate}`, which only {} may use",
                    allowed.join(" and ")
                ));
            }
        }
    }
    assert!(
        trespasses.is_empty(),
        "crates used outside the modules that own them:\n{}",
        trespasses.join("\n")
    );
    // A scanner that reads nothing finds nothing: the owners must show up.
    for ((krate, allowed), seen) in OWNERS.iter().zip(owners_seen) {
        assert!(
            seen,
            "no use of `{krate}` found in {allowed:?}: is the scan broken?"
        );
    }
}

#[test]
fn adapter_crates_depend_on_none_of_the_guarded_crates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let adapters = std::fs::read_dir(root.join("adapters")).expect("adapters/ is readable");
    for adapter in adapters {
        let manifest = adapter.expect("adapters/ entry").path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            let key = line.split(['=', '.']).next().unwrap_or("").trim();
            assert!(
                !OWNERS.iter().any(|(krate, _)| key == *krate),
                "{}:{}: an adapter must not depend on `{key}`",
                manifest.display(),
                n + 1
            );
        }
    }
}
