//! The drain side of the queue: records oldest-first within priority, read
//! through a connection of its own (WAL lets it read while the writer commits).
//!
//! One cursor per priority remembers the last record handed out, so a
//! record is handed out once until [`QueueReader::rewind`] — called when the
//! connection lost what was in flight — makes every unacknowledged record due
//! again. Records are only ever deleted by acknowledgement, never by reading.

use super::schema;
use rusqlite::{Connection, params};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

/// One record as stored.
#[derive(Clone, Debug)]
pub struct QueuedRecord {
    /// Queue sequence number (unique, increasing).
    pub seq: i64,
    /// Priority of its stream when it was queued.
    pub priority: u8,
    /// Name of its stream.
    pub stream: Arc<str>,
    /// When it was committed, ms since the Unix epoch.
    pub enqueued_ms: i64,
    /// The postcard-encoded event (shared: a record read and held for a
    /// later batch is handed out again without a copy).
    pub event: Arc<[u8]>,
}

/// Due records of one priority after a cursor.
const FETCH: &str = "SELECT seq, stream, enqueued_ms, event FROM records
     WHERE priority = ?1 AND seq > ?2 AND (expires_ms IS NULL OR expires_ms > ?3)
     ORDER BY seq LIMIT ?4";

/// Reads records in drain order.
pub struct QueueReader {
    conn: Connection,
    /// Last sequence handed out, per priority present in the queue.
    cursors: BTreeMap<u8, i64>,
    names: HashMap<i64, Arc<str>>,
    /// Records read but not handed out yet, in drain order: the next
    /// `fetch` returns them again and reads only what follows them.
    held: Vec<QueuedRecord>,
}

impl QueueReader {
    /// Opens a reading connection to an existing queue; `priorities` are the
    /// configured ones (those of older records are found in the table).
    pub fn open(
        path: &Path,
        priorities: impl IntoIterator<Item = u8>,
    ) -> rusqlite::Result<QueueReader> {
        let conn = schema::open_reader(path)?;
        let mut cursors: BTreeMap<u8, i64> = priorities.into_iter().map(|p| (p, 0)).collect();
        {
            let mut stmt = conn.prepare("SELECT DISTINCT priority FROM records")?;
            for p in stmt.query_map([], |r| r.get::<_, u8>(0))? {
                cursors.insert(p?, 0);
            }
        }
        let mut reader = QueueReader {
            conn,
            cursors,
            names: HashMap::new(),
            held: Vec::new(),
        };
        reader.load_names()?;
        Ok(reader)
    }

    fn load_names(&mut self) -> rusqlite::Result<()> {
        let mut stmt = self.conn.prepare("SELECT id, name FROM streams")?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))? {
            let (id, name) = row?;
            self.names.insert(id, name.into());
        }
        Ok(())
    }

    /// Up to `max` due records in drain order (priority, then age), skipping
    /// expired ones; does not move the cursors. Records returned before and
    /// not yet handed out ([`QueueReader::advance`]) are not read again: a
    /// batch that waits to fill costs one read of each record, not one per
    /// look.
    pub fn fetch(&mut self, max: usize, now_ms: i64) -> rusqlite::Result<Vec<QueuedRecord>> {
        let mut out = std::mem::take(&mut self.held);
        out.truncate(max);
        // Per priority, the last record already held (or handed out).
        let mut read_up_to = self.cursors.clone();
        for r in &out {
            let last = read_up_to.entry(r.priority).or_insert(0);
            *last = (*last).max(r.seq);
        }
        let mut stmt = self.conn.prepare_cached(FETCH)?;
        let mut unknown_stream = false;
        for (&priority, &cursor) in &read_up_to {
            if out.len() >= max {
                break;
            }
            let limit = (max - out.len()) as i64;
            let rows = stmt.query_map(params![priority, cursor, now_ms, limit], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get_ref(3)?.as_blob().map(Arc::<[u8]>::from)?,
                ))
            })?;
            for row in rows {
                let (seq, stream, enqueued_ms, event) = row?;
                let stream = match self.names.get(&stream) {
                    Some(name) => name.clone(),
                    None => {
                        unknown_stream = true;
                        Arc::from(format!("stream-{stream}"))
                    }
                };
                out.push(QueuedRecord {
                    seq,
                    priority,
                    stream,
                    enqueued_ms,
                    event,
                });
            }
        }
        drop(stmt);
        if unknown_stream {
            self.load_names()?;
        }
        // Held records of a later priority may now follow new ones of an
        // earlier priority.
        out.sort_by_key(|r| (r.priority, r.seq));
        self.held = out.clone();
        Ok(out)
    }

    /// Marks records as handed out, so `fetch` returns what follows them.
    pub fn advance(&mut self, records: &[QueuedRecord]) {
        for r in records {
            let cursor = self.cursors.entry(r.priority).or_insert(0);
            *cursor = (*cursor).max(r.seq);
        }
        let cursors = &self.cursors;
        self.held
            .retain(|r| cursors.get(&r.priority).is_none_or(|&c| r.seq > c));
    }

    /// Makes every record still in the queue due again.
    pub fn rewind(&mut self) {
        self.cursors.values_mut().for_each(|c| *c = 0);
        self.held.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Durability;
    use rusqlite::StatementStatus;

    #[test]
    fn fetching_does_not_prepare_the_query_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("q.db");
        let writer = schema::open_writer(&path, Durability::Process).expect("writer");
        writer
            .execute(
                "INSERT INTO records (seq, stream, priority, enqueued_ms, expires_ms, size, event)
                 VALUES (1, 1, 0, 0, 9000000000000, 1, x'01')",
                [],
            )
            .expect("insert");
        let mut reader = QueueReader::open(&path, [0]).expect("reader");
        // A new time and a new limit on every fetch, as the uplink calls it.
        for (i, now_ms) in (1_764_000_000_000_i64..).step_by(7).take(20).enumerate() {
            let rows = reader.fetch(2 + i, now_ms).expect("fetch");
            assert_eq!(rows.len(), 1);
        }
        let stmt = reader.conn.prepare_cached(FETCH).expect("cached");
        // Binding a new time used to expire the statement (the planner had
        // looked at the value to match the partial expiry index).
        assert_eq!(stmt.get_status(StatementStatus::RePrepare), 0);
        drop(stmt);
        // Plans that ignore bound values still use the indexes.
        let plan = |conn: &Connection, sql: &str, params: &[i64]| -> String {
            let mut stmt = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .expect("explain");
            let details: Vec<String> = stmt
                .query_map(rusqlite::params_from_iter(params), |r| {
                    r.get::<_, String>(3)
                })
                .expect("plan")
                .collect::<Result<_, _>>()
                .expect("rows");
            details.join("; ")
        };
        let fetch = plan(&reader.conn, FETCH, &[0, 0, 1, 10]);
        assert!(fetch.contains("records_drain"), "{fetch}");
        let expire = plan(
            &writer,
            "SELECT seq FROM records WHERE expires_ms IS NOT NULL AND expires_ms <= ?1",
            &[1],
        );
        assert!(expire.contains("records_expiry"), "{expire}");
    }
}
