//! Streams: keeping each stream within its bounds by its overflow policy,
//! and handing out sequence numbers. Events arrive already routed and encoded
//! (see `ingest::Router`). The in-memory load mirrors the table and is
//! restored when a transaction fails. Bounds, overflow policies and TTLs
//! can change while running; names, order, subjects and priorities cannot
//! (routing and drain order are set at start).

use crate::config::{Overflow, StreamConfig};
use crate::ingest::{EncodedRow, IngestError};
use rusqlite::{Connection, Transaction, params};
use std::collections::HashMap;

/// How much a stream holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct StreamLoad {
    pub records: u64,
    pub bytes: u64,
}

/// Records removed other than by acknowledgement, since the last flush.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Losses {
    pub dropped: u64,
    pub rejected: u64,
    pub expired: u64,
}

impl Losses {
    fn add(&mut self, other: Losses) {
        self.dropped += other.dropped;
        self.rejected += other.rejected;
        self.expired += other.expired;
    }
}

/// Why the streams cannot be changed while running.
#[derive(Debug, thiserror::Error)]
pub enum StreamChangeError {
    /// A stream was added, removed, renamed or moved: routing and drain
    /// order are set at start.
    #[error("stream `{stream}` was {how}; changing the list of streams needs a restart")]
    Layout {
        /// The stream.
        stream: String,
        /// `added`, `removed`, `renamed` or `moved`.
        how: &'static str,
    },
    /// A field that routing or drain order depends on changed.
    #[error("stream `{stream}`: changing `{field}` needs a restart")]
    Field {
        /// The stream.
        stream: String,
        /// `subjects` or `priority`.
        field: &'static str,
    },
    /// The new expiry times could not be stored; nothing changed.
    #[error("cannot store the new stream bounds: {0}")]
    Storage(#[source] rusqlite::Error),
    /// The writer has shut down.
    #[error("queue is closed")]
    Closed,
}

/// Why going from streams `old` to `new` needs a restart (a
/// [`StreamChangeError::Layout`] or [`StreamChangeError::Field`]), or `None`
/// if only bounds, overflow policies and TTLs differ. Pure, so a caller can
/// refuse a change before touching anything.
pub fn stream_change_needs_restart(
    old: &[StreamConfig],
    new: &[StreamConfig],
) -> Option<StreamChangeError> {
    let layout = |stream: &str, how| {
        Some(StreamChangeError::Layout {
            stream: stream.to_owned(),
            how,
        })
    };
    let added = new.iter().find(|n| !old.iter().any(|o| o.name == n.name));
    let removed = old.iter().find(|o| !new.iter().any(|n| n.name == o.name));
    match (added, removed) {
        (Some(_), Some(o)) if old.len() == new.len() => return layout(&o.name, "renamed"),
        (Some(n), _) => return layout(&n.name, "added"),
        (None, Some(o)) => return layout(&o.name, "removed"),
        (None, None) => {}
    }
    for (o, n) in old.iter().zip(new) {
        let field = if o.name != n.name {
            return layout(&n.name, "moved");
        } else if !o
            .subjects
            .iter()
            .map(|p| p.as_str())
            .eq(n.subjects.iter().map(|p| p.as_str()))
        {
            "subjects"
        } else if o.priority != n.priority {
            "priority"
        } else {
            continue;
        };
        return Some(StreamChangeError::Field {
            stream: n.name.clone(),
            field,
        });
    }
    None
}

/// A configured stream with its row id in the `streams` table.
struct Stream {
    id: i64,
    name: String,
    priority: u8,
    max_records: u64,
    max_bytes: u64,
    overflow: Overflow,
    ttl_ms: Option<i64>,
}

/// Every stream's bounds and load.
pub(crate) struct Streams {
    configured: Vec<Stream>,
    /// Load per stream id, including streams no longer configured whose records still drain.
    load: HashMap<i64, StreamLoad>,
    /// Losses per stream id not yet written to the `streams` table.
    losses: HashMap<i64, Losses>,
    /// The last sequence number given out.
    last_seq: i64,
    /// The last sequence number written to `meta`.
    saved_seq: i64,
    /// Rows accepted in this transaction, not yet inserted: they go in with
    /// multi-row INSERTs (see [`Streams::write_pending`]).
    pending: Vec<PendingRow>,
}

/// A row accepted by the stream's policy, waiting for its INSERT.
struct PendingRow {
    seq: i64,
    stream: i64,
    priority: u8,
    enqueued_ms: i64,
    expires_ms: Option<i64>,
    event: Vec<u8>,
}

/// Rows per multi-row INSERT, largest first; what is left goes in one by one.
const CHUNKS: [usize; 3] = [32, 8, 1];

/// `INSERT INTO records … VALUES (…), (…), …` with `rows` rows.
fn insert_sql(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO records (seq, stream, priority, enqueued_ms, expires_ms, size, event) VALUES ",
    );
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str("(?,?,?,?,?,?,?)");
    }
    sql
}

impl Streams {
    /// Registers the configured streams and reads the current load.
    pub(crate) fn load(conn: &Connection, configs: &[StreamConfig]) -> rusqlite::Result<Streams> {
        let mut configured = Vec::with_capacity(configs.len());
        for c in configs {
            conn.execute(
                "INSERT OR IGNORE INTO streams (name) VALUES (?1)",
                [&c.name],
            )?;
            let id = conn.query_row("SELECT id FROM streams WHERE name = ?1", [&c.name], |r| {
                r.get(0)
            })?;
            configured.push(Stream {
                id,
                name: c.name.clone(),
                priority: c.priority,
                max_records: c.max_records,
                max_bytes: c.max_bytes.bytes(),
                overflow: c.overflow,
                ttl_ms: ttl_ms(c),
            });
        }
        let mut load = HashMap::new();
        let mut stmt = conn.prepare(
            "SELECT stream, COUNT(*), COALESCE(SUM(size), 0) FROM records GROUP BY stream",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                StreamLoad {
                    records: r.get::<_, i64>(1)? as u64,
                    bytes: r.get::<_, i64>(2)? as u64,
                },
            ))
        })?;
        for row in rows {
            let (id, l) = row?;
            load.insert(id, l);
        }
        let last_seq: i64 = conn.query_row(
            "SELECT MAX(COALESCE((SELECT MAX(seq) FROM records), 0),
                        COALESCE((SELECT value FROM meta WHERE key = 'seq'), 0))",
            [],
            |r| r.get(0),
        )?;
        Ok(Streams {
            configured,
            load,
            losses: HashMap::new(),
            last_seq,
            saved_seq: last_seq,
            pending: Vec::new(),
        })
    }

    /// Gives queued records of streams whose TTL differs in `configs` the
    /// expiry time of the new TTL. `configs` lists the same streams in the
    /// same order (see [`stream_change_needs_restart`]).
    pub(crate) fn retime(
        &mut self,
        tx: &Transaction<'_>,
        configs: &[StreamConfig],
    ) -> rusqlite::Result<()> {
        self.write_pending(tx)?;
        let mut stmt = tx
            .prepare_cached("UPDATE records SET expires_ms = enqueued_ms + ?2 WHERE stream = ?1")?;
        for (s, c) in self.configured.iter().zip(configs) {
            let ttl_ms = ttl_ms(c);
            if ttl_ms != s.ttl_ms {
                stmt.execute(params![s.id, ttl_ms])?;
            }
        }
        Ok(())
    }

    /// Takes the bounds, overflow policies and TTLs of `configs` (the same
    /// streams in the same order); they hold from the next insert.
    pub(crate) fn set_bounds(&mut self, configs: &[StreamConfig]) {
        for (s, c) in self.configured.iter_mut().zip(configs) {
            s.max_records = c.max_records;
            s.max_bytes = c.max_bytes.bytes();
            s.overflow = c.overflow;
            s.ttl_ms = ttl_ms(c);
        }
    }

    /// Total load of the queue.
    pub(crate) fn total(&self) -> StreamLoad {
        self.load
            .values()
            .fold(StreamLoad::default(), |acc, l| StreamLoad {
                records: acc.records + l.records,
                bytes: acc.bytes + l.bytes,
            })
    }

    /// A copy of the load, taken before a transaction.
    pub(crate) fn snapshot(&self) -> HashMap<i64, StreamLoad> {
        self.load.clone()
    }

    /// Puts back the load taken before a transaction that failed.
    pub(crate) fn restore(&mut self, load: HashMap<i64, StreamLoad>) {
        self.load = load;
        self.losses.clear();
        self.pending.clear();
    }

    /// Accepts a submission, all or nothing: applies the streams' policies
    /// and queues its rows for [`Streams::write_pending`]. The outer error is
    /// a storage failure (abort the transaction); the inner one a refusal by
    /// policy.
    /// The accepted rows' bytes are moved out of `rows` (no copy).
    pub(crate) fn insert(
        &mut self,
        tx: &Transaction<'_>,
        rows: &mut [EncodedRow],
        now_ms: i64,
    ) -> rusqlite::Result<Result<(), IngestError>> {
        let mut needs: Vec<(usize, StreamLoad)> = Vec::new();
        for &(idx, ref bytes) in rows.iter() {
            match needs.iter_mut().find(|(i, _)| *i == idx) {
                Some((_, need)) => {
                    need.records += 1;
                    need.bytes += bytes.len() as u64;
                }
                None => needs.push((
                    idx,
                    StreamLoad {
                        records: 1,
                        bytes: bytes.len() as u64,
                    },
                )),
            }
        }
        for &(idx, need) in &needs {
            let s = &self.configured[idx];
            let load = self.load.get(&s.id).copied().unwrap_or_default();
            if need.records > s.max_records || need.bytes > s.max_bytes {
                self.losses.entry(s.id).or_default().rejected += rows.len() as u64;
                return Ok(Err(IngestError::TooLarge {
                    stream: s.name.clone(),
                    bytes: need.bytes,
                }));
            }
            let fits = load.records + need.records <= s.max_records
                && load.bytes + need.bytes <= s.max_bytes;
            if !fits && s.overflow == Overflow::RejectNew {
                self.losses.entry(s.id).or_default().rejected += rows.len() as u64;
                return Ok(Err(IngestError::QueueFull {
                    stream: s.name.clone(),
                }));
            }
        }
        for &(idx, need) in &needs {
            if self.configured[idx].overflow == Overflow::DropOldest {
                self.make_room(tx, idx, need)?;
            }
        }
        for (idx, bytes) in rows.iter_mut() {
            let s = &self.configured[*idx];
            self.last_seq += 1;
            let event = std::mem::take(bytes);
            let load = self.load.entry(s.id).or_default();
            load.records += 1;
            load.bytes += event.len() as u64;
            self.pending.push(PendingRow {
                seq: self.last_seq,
                stream: s.id,
                priority: s.priority,
                enqueued_ms: now_ms,
                expires_ms: s.ttl_ms.map(|ttl| now_ms.saturating_add(ttl)),
                event,
            });
        }
        Ok(Ok(()))
    }

    /// Inserts the accepted rows, many per statement; must run before the
    /// transaction commits and before anything deletes rows.
    pub(crate) fn write_pending(&mut self, tx: &Transaction<'_>) -> rusqlite::Result<()> {
        let pending = std::mem::take(&mut self.pending);
        let mut rest = &pending[..];
        for chunk in CHUNKS {
            if rest.len() < chunk {
                continue;
            }
            let mut stmt = tx.prepare_cached(&insert_sql(chunk))?;
            while rest.len() >= chunk {
                let (now, later) = rest.split_at(chunk);
                let mut values: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(chunk * 7);
                let sizes: Vec<i64> = now.iter().map(|r| r.event.len() as i64).collect();
                for (r, size) in now.iter().zip(&sizes) {
                    values.extend_from_slice(&[
                        &r.seq as &dyn rusqlite::ToSql,
                        &r.stream,
                        &r.priority,
                        &r.enqueued_ms,
                        &r.expires_ms,
                        size,
                        &r.event,
                    ]);
                }
                stmt.execute(values.as_slice())?;
                rest = later;
            }
        }
        Ok(())
    }

    /// Deletes the stream's oldest records until `need` fits.
    fn make_room(
        &mut self,
        tx: &Transaction<'_>,
        idx: usize,
        need: StreamLoad,
    ) -> rusqlite::Result<()> {
        let s = &self.configured[idx];
        let (id, max_records, max_bytes) = (s.id, s.max_records, s.max_bytes);
        let over = |load: StreamLoad| {
            (
                (load.records + need.records).saturating_sub(max_records),
                (load.bytes + need.bytes).saturating_sub(max_bytes),
            )
        };
        if over(self.load.get(&id).copied().unwrap_or_default()) == (0, 0) {
            return Ok(());
        }
        // The oldest rows may be ones accepted earlier in this transaction.
        self.write_pending(tx)?;
        let mut stmt = tx.prepare_cached(
            "DELETE FROM records WHERE seq IN
               (SELECT seq FROM records WHERE stream = ?1 ORDER BY seq LIMIT ?2)
             RETURNING size",
        )?;
        loop {
            let load = self.load.get(&id).copied().unwrap_or_default();
            let (over_records, over_bytes) = over(load);
            if over_records == 0 && over_bytes == 0 {
                return Ok(());
            }
            let mean = (load.bytes / load.records.max(1)).max(1);
            let n = over_records.max(over_bytes.div_ceil(mean)).max(1);
            let mut dropped = StreamLoad::default();
            let mut rows = stmt.query(params![id, n as i64])?;
            while let Some(row) = rows.next()? {
                dropped.records += 1;
                dropped.bytes += row.get::<_, i64>(0)? as u64;
            }
            if dropped.records == 0 {
                return Ok(());
            }
            self.subtract(id, dropped);
            self.losses.entry(id).or_default().dropped += dropped.records;
        }
    }

    /// Deletes acknowledged records; returns how many still existed.
    /// Consecutive sequence numbers are deleted as one range.
    pub(crate) fn delete(&mut self, tx: &Transaction<'_>, seqs: &[i64]) -> rusqlite::Result<u64> {
        self.write_pending(tx)?;
        let mut stmt = tx.prepare_cached(
            "DELETE FROM records WHERE seq BETWEEN ?1 AND ?2 RETURNING stream, size",
        )?;
        let mut deleted = 0;
        for (first, last) in runs(seqs) {
            let mut rows = stmt.query([first, last])?;
            while let Some(row) = rows.next()? {
                let (id, size): (i64, i64) = (row.get(0)?, row.get(1)?);
                self.subtract(
                    id,
                    StreamLoad {
                        records: 1,
                        bytes: size as u64,
                    },
                );
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    /// Deletes every record of the configured stream `name` (an operator's
    /// `queue.purge`); `None` if no stream has that name.
    pub(crate) fn purge(
        &mut self,
        tx: &Transaction<'_>,
        name: &str,
    ) -> rusqlite::Result<Option<u64>> {
        self.write_pending(tx)?;
        let Some(id) = self
            .configured
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.id)
        else {
            return Ok(None);
        };
        let (records, bytes): (i64, i64) = tx.query_row(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM records WHERE stream = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        tx.execute("DELETE FROM records WHERE stream = ?1", [id])?;
        self.subtract(
            id,
            StreamLoad {
                records: records as u64,
                bytes: bytes as u64,
            },
        );
        Ok(Some(records as u64))
    }

    /// Deletes records whose TTL has passed.
    pub(crate) fn expire(&mut self, tx: &Transaction<'_>, now_ms: i64) -> rusqlite::Result<()> {
        self.write_pending(tx)?;
        let mut stmt = tx.prepare_cached(
            "DELETE FROM records WHERE expires_ms IS NOT NULL AND expires_ms <= ?1 RETURNING stream, size",
        )?;
        let mut rows = stmt.query([now_ms])?;
        while let Some(row) = rows.next()? {
            let (id, size): (i64, i64) = (row.get(0)?, row.get(1)?);
            self.subtract(
                id,
                StreamLoad {
                    records: 1,
                    bytes: size as u64,
                },
            );
            self.losses.entry(id).or_default().expired += 1;
        }
        Ok(())
    }

    /// Writes the last sequence number and the losses since the last flush,
    /// and returns the losses' total, to be counted once the transaction commits.
    pub(crate) fn flush(&mut self, tx: &Transaction<'_>) -> rusqlite::Result<Losses> {
        self.write_pending(tx)?;
        if self.last_seq != self.saved_seq {
            tx.prepare_cached(
                "INSERT INTO meta (key, value) VALUES ('seq', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute([self.last_seq])?;
            self.saved_seq = self.last_seq;
        }
        let mut total = Losses::default();
        if self.losses.is_empty() {
            return Ok(total);
        }
        let mut stmt = tx.prepare_cached(
            "UPDATE streams SET dropped = dropped + ?2, rejected = rejected + ?3, expired = expired + ?4
             WHERE id = ?1",
        )?;
        for (id, l) in self.losses.drain() {
            stmt.execute(params![
                id,
                l.dropped as i64,
                l.rejected as i64,
                l.expired as i64
            ])?;
            total.add(l);
        }
        Ok(total)
    }

    fn subtract(&mut self, id: i64, by: StreamLoad) {
        let load = self.load.entry(id).or_default();
        load.records = load.records.saturating_sub(by.records);
        load.bytes = load.bytes.saturating_sub(by.bytes);
    }
}

/// A stream's TTL in ms, if it has one.
fn ttl_ms(c: &StreamConfig) -> Option<i64> {
    c.ttl.map(|t| t.get().as_millis() as i64)
}

/// Splits sequence numbers into runs of consecutive numbers, as `(first, last)`.
/// Only truly consecutive numbers are merged, so a range never covers a record
/// that was not asked for.
fn runs(seqs: &[i64]) -> Vec<(i64, i64)> {
    let mut sorted = seqs.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut runs: Vec<(i64, i64)> = Vec::new();
    for seq in sorted {
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == seq => *last = seq,
            _ => runs.push((seq, seq)),
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HumanDuration;

    fn stream(name: &str, subjects: &[&str]) -> StreamConfig {
        let mut s = StreamConfig::catch_all(name);
        s.subjects = subjects
            .iter()
            .map(|p| p.parse().expect("valid pattern"))
            .collect();
        s
    }

    /// The streams `alerts` (`alert/#`) then `all` (`#`).
    fn two() -> Vec<StreamConfig> {
        vec![stream("alerts", &["alert/#"]), stream("all", &["#"])]
    }

    /// A restart verdict as (stream, how or field).
    type Verdict = Option<(String, &'static str)>;

    /// What `stream_change_needs_restart` says about `new` against [`two`].
    fn verdict(new: Vec<StreamConfig>) -> Verdict {
        match stream_change_needs_restart(&two(), &new)? {
            StreamChangeError::Layout { stream, how } => Some((stream, how)),
            StreamChangeError::Field { stream, field } => Some((stream, field)),
            other => panic!("not a restart verdict: {other:?}"),
        }
    }

    #[test]
    fn only_bounds_overflow_and_ttl_change_without_a_restart() {
        let same = |f: fn(&mut Vec<StreamConfig>)| {
            let mut s = two();
            f(&mut s);
            s
        };
        let at = |stream: &str, what| Some((stream.to_owned(), what));
        let cases: [(&str, Vec<StreamConfig>, Verdict); 9] = [
            ("unchanged", two(), None),
            (
                "bounds, overflow and ttl",
                same(|s| {
                    s[0].max_records = 5;
                    s[0].max_bytes = crate::config::ByteSize(4096);
                    s[1].overflow = Overflow::RejectNew;
                    s[1].ttl = Some(HumanDuration::secs(60));
                }),
                None,
            ),
            (
                "added",
                same(|s| s.push(stream("more", &["#"]))),
                at("more", "added"),
            ),
            (
                "removed",
                same(|s| drop(s.remove(0))),
                at("alerts", "removed"),
            ),
            (
                "renamed",
                same(|s| s[0].name = "urgent".into()),
                at("alerts", "renamed"),
            ),
            ("moved", same(|s| s.swap(0, 1)), at("all", "moved")),
            (
                "subjects",
                same(|s| s[0].subjects = vec!["alarm/#".parse().expect("valid")]),
                at("alerts", "subjects"),
            ),
            (
                "priority",
                same(|s| s[1].priority = 7),
                at("all", "priority"),
            ),
            (
                "removed and another added",
                same(|s| {
                    s.remove(0);
                    s.push(stream("x", &["x"]));
                    s.push(stream("y", &["y"]));
                }),
                at("x", "added"),
            ),
        ];
        for (name, new, expected) in cases {
            assert_eq!(verdict(new), expected, "{name}");
        }
    }

    #[test]
    fn runs_merge_only_consecutive_numbers() {
        assert_eq!(runs(&[]), vec![]);
        assert_eq!(runs(&[7]), vec![(7, 7)]);
        assert_eq!(runs(&[3, 1, 2, 5, 6, 9, 5]), vec![(1, 3), (5, 6), (9, 9)]);
    }
}
