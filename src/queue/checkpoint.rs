//! WAL checkpoints off the writer thread, in `process` durability. The writer
//! connection never checkpoints (`wal_autocheckpoint=0`); after a commit that
//! leaves more than [`THRESHOLD`] of frames in the WAL (SQLite's WAL hook
//! counts them) it nudges this thread, which copies the WAL back into the
//! database. A PASSIVE checkpoint runs beside the writer without blocking
//! it, so producers never wait for a checkpoint's fsync; once every frame
//! is copied the writer starts the WAL over and the count falls. (The WAL
//! file keeps its size, so its size says nothing about what is left to
//! copy: going by it, every commit after the first 4 MiB checkpointed and
//! fsynced.) Idle means idle: the thread sleeps until the next nudge.

use super::schema;
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

/// Bytes of WAL frames that trigger a checkpoint (SQLite's own default is
/// 1000 pages).
pub(crate) const THRESHOLD: u64 = 4 << 20;

/// Starts the checkpoint thread for the database at `path`. Dropping the
/// sender stops it.
pub(crate) fn spawn(path: &Path) -> std::io::Result<(SyncSender<()>, JoinHandle<()>)> {
    let (tx, rx) = sync_channel(1);
    let path = path.to_owned();
    let thread = std::thread::Builder::new()
        .name("queue-checkpoint".into())
        .spawn(move || run(&path, rx))?;
    Ok((tx, thread))
}

fn run(path: &Path, nudges: Receiver<()>) {
    let mut conn = None;
    while nudges.recv().is_ok() {
        if conn.is_none() {
            conn = schema::open_reader(path)
                .map_err(|e| tracing::warn!(error = %e, "Cannot open the queue for checkpoints"))
                .ok();
        }
        let Some(c) = &conn else { continue };
        let result: rusqlite::Result<(i64, i64, i64)> =
            c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            });
        match result {
            Ok((_, log, done)) => {
                tracing::debug!(wal_frames = log, checkpointed = done, "WAL checkpoint")
            }
            Err(e) => {
                tracing::warn!(error = %e, "WAL checkpoint failed; retried on the next commit")
            }
        }
    }
}
