//! The tables functions use, written by the queue writer in the same
//! transaction as the outputs they go with: per-function durable state and
//! the dead-letter table.

use crate::functions::DeadLetter;
use crate::functions::state::StateChange;
use rusqlite::{Connection, Transaction, params};
use serde::Serialize;
use std::collections::BTreeMap;

/// Every stored state entry of `function`.
pub(crate) fn load_state(
    conn: &Connection,
    function: &str,
) -> rusqlite::Result<BTreeMap<Vec<u8>, Vec<u8>>> {
    let mut stmt = conn.prepare("SELECT key, value FROM function_state WHERE function = ?1")?;
    let rows = stmt.query_map([function], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

/// Stores the new values of changed keys (`None`: deleted).
pub(crate) fn store_state(
    tx: &Transaction<'_>,
    function: &str,
    changes: &[StateChange],
) -> rusqlite::Result<()> {
    let mut put = tx.prepare_cached(
        "INSERT INTO function_state (function, key, value) VALUES (?1, ?2, ?3)
         ON CONFLICT (function, key) DO UPDATE SET value = excluded.value",
    )?;
    let mut delete =
        tx.prepare_cached("DELETE FROM function_state WHERE function = ?1 AND key = ?2")?;
    for (key, value) in changes {
        match value {
            Some(v) => put.execute(params![function, key, v])?,
            None => delete.execute(params![function, key])?,
        };
    }
    Ok(())
}

/// Appends dead letters, then drops the oldest beyond `max` rows.
pub(crate) fn add_dead_letters(
    tx: &Transaction<'_>,
    dead: &[DeadLetter],
    max: u64,
) -> rusqlite::Result<()> {
    if dead.is_empty() {
        return Ok(());
    }
    let mut insert = tx.prepare_cached(
        "INSERT INTO dead_letters (at_ms, function, error, event) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for d in dead {
        insert.execute(params![d.at_ms, d.function, d.error, d.event])?;
    }
    tx.prepare_cached(
        "DELETE FROM dead_letters WHERE id <= (SELECT MAX(id) FROM dead_letters) - ?1",
    )?
    .execute([max as i64])?;
    Ok(())
}

/// One row of the dead-letter table, for `sluice queue dead-letters`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct StoredDeadLetter {
    /// Row id (grows with time).
    pub id: i64,
    /// When the call failed (ms since the Unix epoch).
    pub at_ms: i64,
    /// The function that failed.
    pub function: String,
    /// Why.
    pub error: String,
    /// The input event, encoded (absent for a failed tick).
    #[serde(skip)]
    pub event: Option<Vec<u8>>,
}

/// The newest `limit` dead letters, oldest first.
pub(crate) fn dead_letters(
    conn: &Connection,
    limit: usize,
) -> rusqlite::Result<Vec<StoredDeadLetter>> {
    let mut stmt = conn.prepare(
        "SELECT id, at_ms, function, error, event FROM
           (SELECT * FROM dead_letters ORDER BY id DESC LIMIT ?1)
         ORDER BY id",
    )?;
    let rows = stmt.query_map([limit as i64], |r| {
        Ok(StoredDeadLetter {
            id: r.get(0)?,
            at_ms: r.get(1)?,
            function: r.get(2)?,
            error: r.get(3)?,
            event: r.get(4)?,
        })
    })?;
    rows.collect()
}
