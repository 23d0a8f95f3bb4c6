//! The queue's SQLite schema and connection settings. Only `src/queue`
//! knows SQL.

use crate::config::Durability;
use rusqlite::{Connection, OpenFlags};
use std::path::Path;

/// Schema version stored in `PRAGMA user_version`. Version 2 added
/// `exchanges`, version 3 `adapter_state`, version 4 `control_nonces`;
/// every table is created if missing, so opening an older database
/// migrates it. An older build refuses a newer database.
const SCHEMA_VERSION: i64 = 4;

/// Tables and indexes. The writer assigns `records.seq` itself and keeps the
/// highest one given out in `meta` (key `seq`), so sequence numbers never
/// repeat, even after the newest rows are deleted: the uplink's cursors rely
/// on that. (AUTOINCREMENT would do the same at the cost of a third page
/// written per commit.) `exchanges` is appended to in `id` order, which is
/// expiry order for one adapter, and has no other index: it is written on
/// every CoAP request and read only at start (see `exchange_table`).
/// `exchanges.events` holds the event ids as 8-byte big-endian numbers, one
/// after another. `adapter_state` holds what an adapter must find again
/// after a restart (LoRaWAN sessions, frame counters, used DevNonces), one
/// row per key, replaced in place. `control_nonces` holds the nonces of
/// signed commands seen within the allowed clock skew (see `nonce_table`).
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS streams (
    id       INTEGER PRIMARY KEY,
    name     TEXT NOT NULL UNIQUE,
    dropped  INTEGER NOT NULL DEFAULT 0,
    rejected INTEGER NOT NULL DEFAULT 0,
    expired  INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS records (
    seq         INTEGER PRIMARY KEY,
    stream      INTEGER NOT NULL,
    priority    INTEGER NOT NULL,
    enqueued_ms INTEGER NOT NULL,
    expires_ms  INTEGER,
    size        INTEGER NOT NULL,
    event       BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS function_state (
    function TEXT NOT NULL,
    key      BLOB NOT NULL,
    value    BLOB NOT NULL,
    PRIMARY KEY (function, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dead_letters (
    id       INTEGER PRIMARY KEY,
    at_ms    INTEGER NOT NULL,
    function TEXT NOT NULL,
    error    TEXT NOT NULL,
    event    BLOB
);
CREATE TABLE IF NOT EXISTS exchanges (
    id         INTEGER PRIMARY KEY,
    adapter    TEXT NOT NULL,
    key        BLOB NOT NULL,
    answer     BLOB NOT NULL,
    events     BLOB NOT NULL,
    expires_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS adapter_state (
    adapter TEXT NOT NULL,
    key     BLOB NOT NULL,
    value   BLOB NOT NULL,
    PRIMARY KEY (adapter, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS control_nonces (
    key   BLOB NOT NULL,
    nonce BLOB NOT NULL,
    ts_ms INTEGER NOT NULL,
    PRIMARY KEY (key, nonce)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_drain ON records (priority, seq);
CREATE INDEX IF NOT EXISTS records_expiry ON records (expires_ms) WHERE expires_ms IS NOT NULL;
";

/// Opens (creating if needed) the queue database for writing.
pub(crate) fn open_writer(path: &Path, durability: Durability) -> rusqlite::Result<Connection> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // A missing folder shows up as a clear SQLite error on open below.
        let _ = std::fs::create_dir_all(dir);
    }
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    stable_plans(&conn)?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "journal_mode is {mode}, WAL is required"
        )));
    }
    let sync = match durability {
        Durability::Process => "NORMAL",
        Durability::Power => "FULL",
    };
    conn.execute_batch(&format!(
        "PRAGMA synchronous={sync}; PRAGMA temp_store=MEMORY; PRAGMA cache_size=-2048;"
    ))?;
    if durability == Durability::Process {
        // Checkpoints run on their own thread (see `checkpoint`). In `power`
        // mode every commit fsyncs anyway, and a concurrent checkpoint's
        // fsyncs slowed commits down (measured), so SQLite keeps doing them inline.
        conn.execute_batch("PRAGMA wal_autocheckpoint=0;")?;
    }
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "queue schema version {version} is newer than this build understands ({SCHEMA_VERSION})"
        )));
    }
    conn.execute_batch(SCHEMA)?;
    conn.execute_batch(&format!("PRAGMA user_version={SCHEMA_VERSION}"))?;
    Ok(conn)
}

/// Counts this start in `meta.boot` and returns the new boot number, the
/// high part of every event id minted in this process.
pub(crate) fn next_boot(conn: &Connection) -> rusqlite::Result<u32> {
    let boot: i64 = conn.query_row(
        "INSERT INTO meta (key, value) VALUES ('boot', 1)
         ON CONFLICT (key) DO UPDATE SET value = value + 1 RETURNING value",
        [],
        |r| r.get(0),
    )?;
    Ok((boot as u64 & 0xff_ffff) as u32)
}

/// Opens an existing queue database for the reading side (uplink and
/// `sluice queue`). Read-write flags, because reading a WAL database needs
/// its shared-memory file, but this connection never writes.
pub(crate) fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    stable_plans(&conn)?;
    Ok(conn)
}

/// Turns on SQLite's query planner stability guarantee: a statement's plan
/// does not depend on the values bound to it. Without it, matching the
/// partial expiry index against `expires_ms > ?` made SQLite re-prepare the
/// drain query on every fetch (each binds a new time), and the statement
/// cache saved nothing.
fn stable_plans(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}
