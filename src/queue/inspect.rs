//! Offline inspection of a queue database (`sluice queue stats|peek|dead-letters`).

pub use super::function_tables::StoredDeadLetter;
use super::{QueuedRecord, schema};
use serde::Serialize;
use std::path::Path;

/// One stream's state as stored.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct StreamStats {
    /// Stream name.
    pub name: String,
    /// Records waiting.
    pub records: u64,
    /// Bytes of encoded events waiting.
    pub bytes: u64,
    /// When the oldest waiting record was queued (ms since the Unix epoch).
    pub oldest_ms: Option<i64>,
    /// Records dropped to make room, ever.
    pub dropped: u64,
    /// Events refused because the stream was full, ever.
    pub rejected: u64,
    /// Records expired by TTL, ever.
    pub expired: u64,
}

/// Per-stream statistics of the queue at `path`.
pub fn stats(path: &Path) -> rusqlite::Result<Vec<StreamStats>> {
    let conn = open_existing(path)?;
    let mut stmt = conn.prepare(
        "SELECT s.name, COUNT(r.seq), COALESCE(SUM(r.size), 0), MIN(r.enqueued_ms), s.dropped, s.rejected, s.expired
         FROM streams s LEFT JOIN records r ON r.stream = s.id
         GROUP BY s.id ORDER BY s.id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(StreamStats {
            name: r.get(0)?,
            records: r.get::<_, i64>(1)? as u64,
            bytes: r.get::<_, i64>(2)? as u64,
            oldest_ms: r.get(3)?,
            dropped: r.get::<_, i64>(4)? as u64,
            rejected: r.get::<_, i64>(5)? as u64,
            expired: r.get::<_, i64>(6)? as u64,
        })
    })?;
    rows.collect()
}

/// The first `limit` records in drain order.
pub fn peek(path: &Path, limit: usize) -> rusqlite::Result<Vec<QueuedRecord>> {
    let conn = open_existing(path)?;
    let mut stmt = conn.prepare(
        "SELECT r.seq, r.priority, s.name, r.enqueued_ms, r.event FROM records r JOIN streams s ON s.id = r.stream
         ORDER BY r.priority, r.seq LIMIT ?1",
    )?;
    let rows = stmt.query_map([limit as i64], |r| {
        Ok(QueuedRecord {
            seq: r.get(0)?,
            priority: r.get(1)?,
            stream: r.get::<_, String>(2)?.into(),
            enqueued_ms: r.get(3)?,
            event: r.get(4)?,
        })
    })?;
    rows.collect()
}

/// The newest `limit` dead letters, oldest first.
pub fn dead_letters(path: &Path, limit: usize) -> rusqlite::Result<Vec<StoredDeadLetter>> {
    super::function_tables::dead_letters(&open_existing(path)?, limit)
}

fn open_existing(path: &Path) -> rusqlite::Result<rusqlite::Connection> {
    if !path.exists() {
        return Err(rusqlite::Error::InvalidPath(path.to_owned()));
    }
    schema::open_reader(path)
}
