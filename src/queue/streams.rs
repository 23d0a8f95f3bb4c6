//! Streams: routing events to a stream by subject, and keeping each stream
//! within its bounds by its overflow policy. The in-memory load mirrors the
//! table and is restored when a transaction fails.

use crate::config::{Overflow, StreamConfig};
use crate::ingest::IngestError;
use crate::subject::SubjectPattern;
use rusqlite::{Connection, Transaction, params};
use sluice_event::Event;
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

/// A configured stream with its row id in the `streams` table.
struct Stream {
    id: i64,
    name: String,
    subjects: Vec<SubjectPattern>,
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
                subjects: c.subjects.clone(),
                priority: c.priority,
                max_records: c.max_records,
                max_bytes: c.max_bytes.bytes(),
                overflow: c.overflow,
                ttl_ms: c.ttl.map(|t| t.get().as_millis() as i64),
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
        Ok(Streams {
            configured,
            load,
            losses: HashMap::new(),
        })
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
    }

    /// The index of the first configured stream that takes `subject`.
    fn route(&self, subject: &str) -> Option<usize> {
        self.configured
            .iter()
            .position(|s| s.subjects.iter().any(|p| p.matches(subject)))
    }

    /// Inserts a submission, all or nothing. The outer error is a storage
    /// failure (abort the transaction); the inner one a refusal by policy.
    pub(crate) fn insert(
        &mut self,
        tx: &Transaction<'_>,
        events: &[Event],
        now_ms: i64,
    ) -> rusqlite::Result<Result<(), IngestError>> {
        let mut encoded = Vec::with_capacity(events.len());
        let mut needs: Vec<(usize, StreamLoad)> = Vec::new();
        for event in events {
            let Some(idx) = self.route(&event.subject) else {
                // `sluice check` demands a catch-all stream, so this is a config built in code.
                return Ok(Err(IngestError::QueueFull {
                    stream: format!("(no stream for {})", event.subject),
                }));
            };
            let bytes = event.encode();
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
            encoded.push((idx, bytes));
        }
        for &(idx, need) in &needs {
            let s = &self.configured[idx];
            let load = self.load.get(&s.id).copied().unwrap_or_default();
            if need.records > s.max_records || need.bytes > s.max_bytes {
                self.losses.entry(s.id).or_default().rejected += events.len() as u64;
                return Ok(Err(IngestError::TooLarge {
                    stream: s.name.clone(),
                    bytes: need.bytes,
                }));
            }
            let fits = load.records + need.records <= s.max_records
                && load.bytes + need.bytes <= s.max_bytes;
            if !fits && s.overflow == Overflow::RejectNew {
                self.losses.entry(s.id).or_default().rejected += events.len() as u64;
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
        let mut stmt = tx.prepare_cached(
            "INSERT INTO records (stream, priority, enqueued_ms, expires_ms, size, event)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for (idx, bytes) in encoded {
            let s = &self.configured[idx];
            let expires = s.ttl_ms.map(|ttl| now_ms.saturating_add(ttl));
            stmt.execute(params![
                s.id,
                s.priority,
                now_ms,
                expires,
                bytes.len() as i64,
                bytes
            ])?;
            let load = self.load.entry(s.id).or_default();
            load.records += 1;
            load.bytes += bytes.len() as u64;
        }
        Ok(Ok(()))
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
        let mut stmt = tx.prepare_cached(
            "DELETE FROM records WHERE seq IN
               (SELECT seq FROM records WHERE stream = ?1 ORDER BY seq LIMIT ?2)
             RETURNING size",
        )?;
        loop {
            let load = self.load.get(&id).copied().unwrap_or_default();
            let over_records = (load.records + need.records).saturating_sub(max_records);
            let over_bytes = (load.bytes + need.bytes).saturating_sub(max_bytes);
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
    pub(crate) fn delete(&mut self, tx: &Transaction<'_>, seqs: &[i64]) -> rusqlite::Result<u64> {
        let mut stmt =
            tx.prepare_cached("DELETE FROM records WHERE seq = ?1 RETURNING stream, size")?;
        let mut deleted = 0;
        for seq in seqs {
            let mut rows = stmt.query([seq])?;
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

    /// Deletes records whose TTL has passed.
    pub(crate) fn expire(&mut self, tx: &Transaction<'_>, now_ms: i64) -> rusqlite::Result<()> {
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

    /// Writes the losses since the last flush to the `streams` table and
    /// returns their total, to be counted once the transaction commits.
    pub(crate) fn flush_losses(&mut self, tx: &Transaction<'_>) -> rusqlite::Result<Losses> {
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
