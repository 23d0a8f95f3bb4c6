//! The nonces of signed commands, remembered across restarts so that a
//! captured command cannot be replayed after the gateway restarts. Only
//! nonces whose timestamps are still within the allowed skew matter (an
//! older command is refused as stale anyway), so older rows are pruned.
//!
//! The book has its own connection: a command is rare next to ingest, and
//! going through the writer thread would make a command wait behind a
//! group commit for no gain. SQLite serializes the two writers (WAL, busy
//! timeout).

use super::schema;
use rusqlite::{Connection, OptionalExtension};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Why a nonce could not be checked. The command is refused: a nonce that
/// cannot be remembered could be replayed.
#[derive(Debug, thiserror::Error)]
pub enum NonceError {
    /// SQLite failed.
    #[error("cannot remember the nonce: {0}")]
    Storage(#[from] rusqlite::Error),
    /// The connection's lock was poisoned by a panic.
    #[error("the nonce book is unusable after a panic")]
    Poisoned,
}

/// Remembers `(key, nonce)` pairs durably; cheap to clone.
#[derive(Clone)]
pub struct NonceBook {
    conn: Arc<Mutex<Connection>>,
}

impl NonceBook {
    /// Opens the book in the queue database at `path` (the queue created the table).
    pub fn open(path: &Path) -> Result<NonceBook, NonceError> {
        let conn = schema::open_reader(path)?;
        Ok(NonceBook {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Records the nonce; `Ok(false)` if this key used it before (a replay).
    /// Rows older than `forget_before_ms` are deleted in the same transaction.
    /// Blocking: call it off the async workers.
    pub fn remember(
        &self,
        key: &[u8],
        nonce: &[u8],
        ts_ms: i64,
        forget_before_ms: i64,
    ) -> Result<bool, NonceError> {
        let mut conn = self.conn.lock().map_err(|_| NonceError::Poisoned)?;
        let tx = conn.transaction()?;
        let seen: Option<i64> = tx
            .query_row(
                "SELECT ts_ms FROM control_nonces WHERE key = ?1 AND nonce = ?2",
                rusqlite::params![key, nonce],
                |r| r.get(0),
            )
            .optional()?;
        if seen.is_some() {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO control_nonces (key, nonce, ts_ms) VALUES (?1, ?2, ?3)",
            rusqlite::params![key, nonce, ts_ms],
        )?;
        tx.execute(
            "DELETE FROM control_nonces WHERE ts_ms < ?1",
            [forget_before_ms],
        )?;
        tx.commit()?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_new_once_per_key_and_survives_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("q.db");
        let conn = schema::open_writer(&path, crate::config::Durability::Process).expect("open");
        let book = NonceBook::open(&path).expect("book");
        assert!(book.remember(b"k1", b"n1", 1000, 0).expect("first"));
        assert!(!book.remember(b"k1", b"n1", 1000, 0).expect("replay"));
        assert!(book.remember(b"k2", b"n1", 1000, 0).expect("other key"));
        drop(book);
        drop(conn);
        let book = NonceBook::open(&path).expect("reopen");
        assert!(!book.remember(b"k1", b"n1", 1000, 0).expect("after reopen"));
        // Pruning forgets rows older than the window.
        assert!(book.remember(b"k1", b"n2", 5000, 2000).expect("prunes"));
        assert!(book.remember(b"k1", b"n1", 5000, 2000).expect("forgotten"));
    }
}
