//! The `exchanges` table: what adapters asked to remember with the events a
//! request produced ([`crate::ingest::ExchangeRow`]), written by the queue
//! writer in the same transaction as those events, read back when an
//! adapter starts, and deleted once expired, a bounded number per commit.

use crate::ingest::ExchangeRow;
use rusqlite::{Connection, Transaction, params};
use sluice_adapter_common::{Exchange, Remembered};
use sluice_event::EventId;

/// Expired rows deleted per transaction beyond twice the rows it stored:
/// enough to catch up after a quiet spell, never a long transaction.
pub(crate) const EXPIRE_SLACK: usize = 64;

/// Stores `row` (replacing an older exchange with the same key).
pub(crate) fn store(tx: &Transaction<'_>, row: &ExchangeRow) -> rusqlite::Result<()> {
    let mut events = Vec::with_capacity(row.events.len() * 8);
    for id in &row.events {
        events.extend_from_slice(&id.0.to_be_bytes());
    }
    tx.prepare_cached(
        "INSERT INTO exchanges (adapter, key, answer, events, expires_ms) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (adapter, key) DO UPDATE SET answer = excluded.answer,
           events = excluded.events, expires_ms = excluded.expires_ms",
    )?
    .execute(params![
        row.adapter,
        row.exchange.key,
        row.exchange.answer,
        events,
        row.exchange.expires_ms
    ])?;
    Ok(())
}

/// Deletes at most `limit` exchanges that expired by `now_ms`; returns how many.
pub(crate) fn expire(tx: &Transaction<'_>, now_ms: i64, limit: usize) -> rusqlite::Result<usize> {
    tx.prepare_cached(
        "DELETE FROM exchanges WHERE (adapter, key) IN
           (SELECT adapter, key FROM exchanges WHERE expires_ms <= ?1 LIMIT ?2)",
    )?
    .execute(params![now_ms, limit as i64])
}

/// The newest `limit` exchanges of `adapter` unexpired at `now_ms`, ordered by expiry.
pub(crate) fn recall(
    conn: &Connection,
    adapter: &str,
    now_ms: i64,
    limit: usize,
) -> rusqlite::Result<Vec<Remembered>> {
    let mut stmt = conn.prepare(
        "SELECT key, answer, events, expires_ms FROM
           (SELECT * FROM exchanges WHERE adapter = ?1 AND expires_ms > ?2
            ORDER BY expires_ms DESC LIMIT ?3)
         ORDER BY expires_ms",
    )?;
    let rows = stmt.query_map(params![adapter, now_ms, limit as i64], |r| {
        let events: Vec<u8> = r.get(2)?;
        Ok(Remembered {
            exchange: Exchange {
                key: r.get(0)?,
                answer: r.get(1)?,
                expires_ms: r.get(3)?,
            },
            events: events
                .chunks_exact(8)
                .map(|c| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(c);
                    EventId(u64::from_be_bytes(b))
                })
                .collect(),
        })
    })?;
    rows.collect()
}
