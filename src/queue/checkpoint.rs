//! WAL checkpoints off the writer thread, in `process` durability. The writer
//! connection never checkpoints (`wal_autocheckpoint=0`); after each commit it nudges this
//! thread, which copies the WAL back into the database once the WAL has grown
//! past a threshold. A PASSIVE checkpoint runs beside the writer without
//! blocking it, so producers never wait for a checkpoint's fsync. Idle means
//! idle: the thread sleeps until the next nudge.

use super::schema;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

/// WAL size that triggers a checkpoint (SQLite's own default is 1000 pages).
const THRESHOLD: u64 = 4 << 20;

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
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    let mut conn = None;
    while nudges.recv().is_ok() {
        let size = std::fs::metadata(&wal).map_or(0, |m| m.len());
        if size < THRESHOLD {
            continue;
        }
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
