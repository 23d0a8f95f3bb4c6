//! The store-and-forward queue: SQLite in WAL mode, written by one thread
//! with group commit ([`writer`]), drained by the uplink ([`reader`]),
//! bounded per stream ([`streams`]), inspectable offline ([`inspect`]).
//! Only this module knows SQL.

mod checkpoint;
mod exchange_table;
mod function_tables;
pub mod inspect;
mod nonce_table;
mod pipeline;
pub mod reader;
mod schema;
mod state_table;
mod streams;
pub(crate) mod writer;

pub use nonce_table::{NonceBook, NonceError};
pub use reader::{QueueReader, QueuedRecord};
pub use streams::{StreamChangeError, stream_change_needs_restart};

use crate::config::{Config, StreamConfig};
use crate::functions::{Compiled, SetError};
use crate::ids::IdMint;
use crate::ingest::{Ingest, Intake, Router};
use crate::metrics::Metrics;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{Notify, mpsc, oneshot};
use writer::{Command, Inbox, Writer};

/// Upkeep commands waiting for the writer before their senders wait. They
/// come at the pace of acknowledgements and timers, so few are ever waiting.
const UPKEEP_CAPACITY: usize = 64;

/// Why the queue could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The database could not be opened or prepared.
    #[error("cannot open queue {path}: {source}")]
    Storage {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// A function could not be loaded.
    #[error(transparent)]
    Functions(#[from] SetError),
}

/// The open queue: its writer thread and the handles to reach it.
pub struct Queue {
    submissions: mpsc::Sender<Intake>,
    upkeep: mpsc::Sender<Command>,
    thread: Option<std::thread::JoinHandle<()>>,
    checkpointer: Option<std::thread::JoinHandle<()>>,
    ids: Arc<IdMint>,
    router: Arc<Router>,
    added: Arc<Notify>,
    path: PathBuf,
    priorities: Vec<u8>,
}

impl Queue {
    /// Opens (creating if needed) the queue database and starts its writer thread.
    /// Its functions are loaded, given their stored state and warmed up.
    pub fn open(config: &Config, metrics: Arc<Metrics>) -> Result<Queue, OpenError> {
        let path = config.queue_path();
        let err = |source| OpenError::Storage {
            path: path.clone(),
            source,
        };
        let compiled = Compiled::new(config)?;
        let conn = schema::open_writer(&path, config.queue.durability).map_err(err)?;
        let boot = schema::next_boot(&conn).map_err(err)?;
        let added = Arc::new(Notify::new());
        let ids = Arc::new(IdMint::new(boot));
        let router = Arc::new(Router::new(&config.queue.streams));
        let stage = pipeline::Stage::start(
            compiled,
            &conn,
            router.clone(),
            ids.clone(),
            metrics.clone(),
            config.pipeline.dead_letter_max,
        )?;
        let mut writer =
            Writer::new(conn, &config.queue, stage, metrics, added.clone()).map_err(err)?;
        let mut checkpointer = None;
        if config.queue.durability == crate::config::Durability::Process {
            let (nudge, thread) = checkpoint::spawn(&path).map_err(|e| {
                err(rusqlite::Error::InvalidParameterName(format!(
                    "cannot start checkpoint thread: {e}"
                )))
            })?;
            writer = writer.with_checkpointer(nudge).map_err(err)?;
            checkpointer = Some(thread);
        }
        let cannot_start = |e: std::io::Error| {
            err(rusqlite::Error::InvalidParameterName(format!(
                "cannot start writer thread: {e}"
            )))
        };
        let (submissions, submissions_rx) = mpsc::channel(config.queue.ingest_capacity);
        let (upkeep, upkeep_rx) = mpsc::channel(UPKEEP_CAPACITY);
        let waiter = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(cannot_start)?;
        let inbox = Inbox::new(submissions_rx, upkeep_rx, waiter);
        let thread = std::thread::Builder::new()
            .name("queue-writer".into())
            .spawn(move || writer.run(inbox))
            .map_err(cannot_start)?;
        tracing::info!(path = %path.display(), boot, "Queue open");
        Ok(Queue {
            submissions,
            upkeep,
            thread: Some(thread),
            checkpointer,
            ids,
            router,
            added,
            path,
            priorities: config.queue.streams.iter().map(|s| s.priority).collect(),
        })
    }

    /// A handle for producers.
    pub fn ingest(&self) -> Ingest {
        Ingest::new(
            self.submissions.clone(),
            self.ids.clone(),
            self.router.clone(),
        )
    }

    /// A new reading connection, for draining.
    pub fn reader(&self) -> Result<QueueReader, OpenError> {
        QueueReader::open(&self.path, self.priorities.iter().copied()).map_err(|source| {
            OpenError::Storage {
                path: self.path.clone(),
                source,
            }
        })
    }

    /// The writer's chores other than ingest: deleting acknowledged and
    /// expired records (uplink, TTL sweeper), function ticks and reloads,
    /// stream bounds, pings. They travel on a channel of their own, so they
    /// never wait behind producers' submissions.
    pub fn upkeep(&self) -> Upkeep {
        Upkeep {
            tx: self.upkeep.clone(),
        }
    }

    /// Woken after each commit that added records.
    pub fn added(&self) -> Arc<Notify> {
        self.added.clone()
    }

    /// Commits what is pending and stops the writer thread.
    pub async fn close(mut self) {
        let _ = self.upkeep.send(Command::Shutdown).await;
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        // The writer dropped its nudge sender when it stopped.
        if let Some(thread) = self.checkpointer.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// Sends the writer its chores other than ingest; cheap to clone.
#[derive(Clone, Debug)]
pub struct Upkeep {
    tx: mpsc::Sender<Command>,
}

impl Upkeep {
    /// Queues the deletion of `seqs`; the receiver yields how many existed once committed.
    pub async fn delete(&self, seqs: Vec<i64>) -> oneshot::Receiver<u64> {
        let (reply, rx) = oneshot::channel();
        // If the writer is gone the receiver reports it; the rows stay and are sent again later.
        let _ = self.tx.send(Command::Delete { seqs, reply }).await;
        rx
    }

    /// Deletes every record of stream `stream` in one commit; resolves with
    /// how many, or `None` if no configured stream has that name. An error
    /// if the writer is gone or its transaction failed: nothing was deleted.
    pub async fn purge(&self, stream: &str) -> Result<Option<u64>, StreamChangeError> {
        let (reply, rx) = oneshot::channel();
        let stream = stream.to_owned();
        self.tx
            .send(Command::Purge { stream, reply })
            .await
            .map_err(|_| StreamChangeError::Closed)?;
        rx.await.map_err(|_| StreamChangeError::Closed)
    }

    /// Asks the writer to delete records whose TTL has passed.
    pub async fn expire(&self) {
        let _ = self.tx.send(Command::Expire).await;
    }

    /// Asks the writer to run the tick of function `function`.
    pub async fn tick(&self, function: &str) {
        let _ = self
            .tx
            .send(Command::Tick {
                function: function.to_owned(),
            })
            .await;
    }

    /// Hands the writer a new set of functions (config reload).
    pub async fn install(&self, compiled: Compiled) {
        let _ = self.tx.send(Command::Install(Box::new(compiled))).await;
    }

    /// Resolves `true` once the writer has taken this and committed the
    /// group it came in with, and so everything sent through `Upkeep`
    /// before it: the writer is making progress. `false` if the writer is
    /// gone. Producers' submissions travel on their own channel and may
    /// still be waiting.
    pub async fn ping(&self) -> bool {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Command::Ping(reply)).await.is_err() {
            return false;
        }
        rx.await.is_ok()
    }

    /// Applies new `max_records`, `max_bytes`, `overflow` and `ttl` to the
    /// streams at once: they hold from the next commit, and queued records
    /// take the expiry time of a new TTL. Refuses, changing nothing, what
    /// needs a restart (see [`stream_change_needs_restart`]).
    pub async fn set_streams(&self, streams: Vec<StreamConfig>) -> Result<(), StreamChangeError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::SetStreams { streams, reply })
            .await
            .map_err(|_| StreamChangeError::Closed)?;
        rx.await.unwrap_or(Err(StreamChangeError::Closed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HumanDuration, Overflow};
    use crate::ingest::IngestError;
    use crate::queue::QueuedRecord;
    use sluice_event::Event;
    use std::time::{Duration, Instant};

    async fn submit(ingest: &Ingest, n: i64) -> Result<(), IngestError> {
        let events = (0..n).map(|i| Event::new("coap/d", "d", i)).collect();
        match ingest.submit(events).await {
            Ok(receipt) => receipt.durable().await.map(drop).map_err(|r| r.error),
            Err(r) => Err(r.error),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn records_read_and_not_handed_out_are_held_and_not_read_twice() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = format!(
            "[gateway]\ndata_dir = \"{}\"\n\
             [[queue.streams]]\nname = \"urgent\"\nsubjects = [\"alert/#\"]\npriority = 1\n\
             [[queue.streams]]\nname = \"rest\"\nsubjects = [\"#\"]\n",
            dir.path().display()
        );
        let config = Config::parse(&text, "test").expect("valid");
        let queue = Queue::open(&config, Arc::new(Metrics::default())).expect("open");
        let ingest = queue.ingest();
        let mut reader = queue.reader().expect("reader");
        let seqs =
            |rows: &[QueuedRecord]| rows.iter().map(|r| (r.priority, r.seq)).collect::<Vec<_>>();

        submit(&ingest, 3).await.expect("three");
        let first = reader.fetch(10, 0).expect("fetch");
        assert_eq!(seqs(&first), [(100, 1), (100, 2), (100, 3)]);
        // Two more, and one urgent: held records come back, the new ones
        // follow them, the urgent one goes first.
        submit(&ingest, 2).await.expect("two");
        let alert = vec![Event::new("alert/d", "d", 9)];
        ingest
            .submit(alert)
            .await
            .expect("submitted")
            .durable()
            .await
            .expect("durable");
        let second = reader.fetch(10, 0).expect("fetch");
        assert_eq!(
            seqs(&second),
            [(1, 6), (100, 1), (100, 2), (100, 3), (100, 4), (100, 5)]
        );
        // A smaller fetch takes the first in drain order.
        assert_eq!(
            seqs(&reader.fetch(2, 0).expect("fetch")),
            [(1, 6), (100, 1)]
        );
        // Handing out some lets the next fetch start after them.
        reader.advance(&second[..3]);
        assert_eq!(
            seqs(&reader.fetch(10, 0).expect("fetch")),
            [(100, 3), (100, 4), (100, 5)]
        );
        // A rewind makes everything still queued due again, read afresh.
        reader.rewind();
        assert_eq!(seqs(&reader.fetch(10, 0).expect("fetch")).len(), 6);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stream_bounds_change_while_running_and_the_rest_needs_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = format!(
            "[gateway]\ndata_dir = \"{}\"\n[[queue.streams]]\nname = \"all\"\nsubjects = [\"#\"]\nmax_records = 10\n",
            dir.path().display()
        );
        let config = Config::parse(&text, "test").expect("valid");
        let metrics = Arc::new(Metrics::default());
        let queue = Queue::open(&config, metrics.clone()).expect("open");
        let (ingest, upkeep) = (queue.ingest(), queue.upkeep());
        submit(&ingest, 10).await.expect("fits");
        assert!(upkeep.ping().await, "the writer answers");

        // Fewer records under `reject_new`: the full stream refuses at once.
        let mut streams = config.queue.streams.clone();
        streams[0].max_records = 4;
        streams[0].overflow = Overflow::RejectNew;
        upkeep
            .set_streams(streams.clone())
            .await
            .expect("bounds change live");
        let refused = submit(&ingest, 1).await.expect_err("over the new bound");
        assert!(
            matches!(&refused, IngestError::QueueFull { stream } if stream == "all"),
            "{refused:?}"
        );

        // Under `drop_oldest` the next commit trims the stream to the new bound.
        streams[0].overflow = Overflow::DropOldest;
        upkeep
            .set_streams(streams.clone())
            .await
            .expect("overflow changes live");
        submit(&ingest, 1).await.expect("room is made");
        let m = metrics.snapshot();
        assert_eq!((m.queue_records, m.queue_dropped), (4, 7));

        // A new TTL applies to records already queued: all of them are due now.
        streams[0].ttl = Some(HumanDuration::millis(0));
        upkeep
            .set_streams(streams.clone())
            .await
            .expect("ttl changes live");
        upkeep.expire().await;
        assert!(upkeep.ping().await, "the expiry is committed");
        let m = metrics.snapshot();
        assert_eq!((m.queue_records, m.queue_expired), (0, 4));

        // What routing or drain order depend on is refused, and nothing changes.
        let mut moved = streams.clone();
        moved[0].priority = 1;
        let error = upkeep
            .set_streams(moved)
            .await
            .expect_err("priority is fixed");
        assert!(
            matches!(&error, StreamChangeError::Field { stream, field: "priority" } if stream == "all"),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "stream `all`: changing `priority` needs a restart"
        );
        let mut added = streams.clone();
        added.push(StreamConfig::catch_all("more"));
        let error = upkeep
            .set_streams(added)
            .await
            .expect_err("streams are fixed");
        assert!(
            matches!(&error, StreamChangeError::Layout { stream, how: "added" } if stream == "more"),
            "{error:?}"
        );

        queue.close().await;
        assert!(!upkeep.ping().await, "the writer is gone");
        assert!(matches!(
            upkeep.set_streams(streams).await,
            Err(StreamChangeError::Closed)
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_is_checkpointed_into_the_database_while_running() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = format!(
            "[gateway]\ndata_dir = \"{}\"\n[[queue.streams]]\nname = \"all\"\nsubjects = [\"#\"]\nmax_bytes = \"1 GiB\"\n",
            dir.path().display()
        );
        let config = Config::parse(&text, "test").expect("valid");
        let queue = Queue::open(&config, Arc::new(Metrics::default())).expect("open");
        let ingest = queue.ingest();
        // 12 MiB of events: three times the WAL threshold.
        for batch in 0..30 {
            let events = (0..100)
                .map(|n| {
                    let mut e = Event::new("coap/d", "d", batch * 100 + n);
                    e.raw = Some(vec![0x5a; 4096]);
                    e
                })
                .collect();
            ingest
                .submit(events)
                .await
                .expect("open")
                .durable()
                .await
                .expect("accepted");
        }
        let db = dir.path().join("queue.db");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let size = std::fs::metadata(&db).map_or(0, |m| m.len());
            if size > 4 << 20 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the database file is still {size} bytes: no checkpoint ran"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        queue.close().await;
    }
}
