//! The `adapter_state` table: durable state an adapter keeps beside its
//! events (the LoRaWAN adapter's sessions, frame counters and used
//! DevNonces), written by the queue writer in the same transaction as the
//! submission it came with ([`crate::ingest::StateRows`]), and read back
//! whole when the adapter starts. Keys and values are opaque to the core.

use crate::ingest::StateRows;
use rusqlite::{Connection, Transaction, params};
use sluice_adapter_common::StateEntry;

/// Applies `rows`' changes in order: an upsert per value, a delete per `None`.
pub(crate) fn apply(tx: &Transaction<'_>, rows: &StateRows) -> rusqlite::Result<()> {
    for change in &rows.changes {
        match &change.value {
            Some(value) => {
                tx.prepare_cached(
                    "INSERT INTO adapter_state (adapter, key, value) VALUES (?1, ?2, ?3)
                     ON CONFLICT (adapter, key) DO UPDATE SET value = excluded.value",
                )?
                .execute(params![rows.adapter, change.key, value])?;
            }
            None => {
                tx.prepare_cached("DELETE FROM adapter_state WHERE adapter = ?1 AND key = ?2")?
                    .execute(params![rows.adapter, change.key])?;
            }
        }
    }
    Ok(())
}

/// Every entry of `adapter`, ordered by key.
pub(crate) fn load(conn: &Connection, adapter: &str) -> rusqlite::Result<Vec<StateEntry>> {
    let mut stmt =
        conn.prepare("SELECT key, value FROM adapter_state WHERE adapter = ?1 ORDER BY key")?;
    let rows = stmt.query_map(params![adapter], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}
