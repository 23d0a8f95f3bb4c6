//! The `exchanges` table: what adapters asked to remember with the events a
//! request produced ([`crate::ingest::ExchangeRow`]), written by the queue
//! writer in the same transaction as those events, read back when an
//! adapter starts, and deleted once expired.
//!
//! It is written on every request and read only at start, so it has no
//! index but its row id: rows are appended (one page touched), and expiry
//! looks at the oldest rows only, a bounded number per sweep. A key stored
//! twice (the adapter forgot it and saw it again) is two rows; recall
//! keeps the newer.

use crate::ingest::ExchangeRow;
use rusqlite::{Connection, Transaction, params};
use sluice_adapter_common::{Exchange, Remembered};
use sluice_event::EventId;
use std::collections::HashMap;

/// Oldest rows looked at per sweep beyond twice the rows stored since the
/// last one: enough to catch up after a quiet spell, never a long transaction.
pub(crate) const EXPIRE_SLACK: usize = 64;

/// Appends `row`.
pub(crate) fn store(tx: &Transaction<'_>, row: &ExchangeRow) -> rusqlite::Result<()> {
    let mut events = Vec::with_capacity(row.events.len() * 8);
    for id in &row.events {
        events.extend_from_slice(&id.0.to_be_bytes());
    }
    tx.prepare_cached(
        "INSERT INTO exchanges (adapter, key, answer, events, expires_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
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

/// Deletes those of the `limit` oldest exchanges that expired by `now_ms`;
/// returns how many. (With adapters of different lifetimes, a long-lived
/// row can hold shorter-lived ones behind it for a while; recall skips them.)
pub(crate) fn expire(tx: &Transaction<'_>, now_ms: i64, limit: usize) -> rusqlite::Result<usize> {
    tx.prepare_cached(
        "DELETE FROM exchanges WHERE id IN (SELECT id FROM exchanges ORDER BY id LIMIT ?2)
           AND expires_ms <= ?1",
    )?
    .execute(params![now_ms, limit as i64])
}

/// The newest `limit` rows of `adapter` unexpired at `now_ms`, in the order
/// they were stored, one per key (the newest).
pub(crate) fn recall(
    conn: &Connection,
    adapter: &str,
    now_ms: i64,
    limit: usize,
) -> rusqlite::Result<Vec<Remembered>> {
    let mut stmt = conn.prepare(
        "SELECT key, answer, events, expires_ms FROM
           (SELECT * FROM exchanges WHERE adapter = ?1 AND expires_ms > ?2
            ORDER BY id DESC LIMIT ?3)
         ORDER BY id",
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
    let mut found: Vec<Remembered> = Vec::new();
    let mut at: HashMap<Vec<u8>, usize> = HashMap::new();
    for row in rows {
        let row = row?;
        match at.get(&row.exchange.key) {
            Some(&i) => found[i] = row,
            None => {
                at.insert(row.exchange.key.clone(), found.len());
                found.push(row);
            }
        }
    }
    Ok(found)
}
