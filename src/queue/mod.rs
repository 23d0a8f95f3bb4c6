//! The store-and-forward queue: SQLite in WAL mode, written by one thread
//! with group commit ([`writer`]), drained by the uplink ([`reader`]),
//! bounded per stream ([`streams`]), inspectable offline ([`inspect`]).
//! Only this module knows SQL.

mod checkpoint;
mod function_tables;
pub mod inspect;
mod pipeline;
pub mod reader;
mod schema;
mod streams;
pub(crate) mod writer;

pub use reader::{QueueReader, QueuedRecord};

use crate::config::Config;
use crate::functions::{Compiled, SetError};
use crate::ingest::{IdMint, Ingest, Router};
use crate::metrics::Metrics;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{Notify, mpsc, oneshot};
use writer::{Command, Writer};

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
    tx: mpsc::Sender<Command>,
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
        let pipeline = pipeline::Pipeline::start(
            compiled,
            &conn,
            router.clone(),
            ids.clone(),
            metrics.clone(),
            config.pipeline.dead_letter_max,
        )?;
        let mut writer =
            Writer::new(conn, &config.queue, pipeline, metrics, added.clone()).map_err(err)?;
        let mut checkpointer = None;
        if config.queue.durability == crate::config::Durability::Process {
            let (nudge, thread) = checkpoint::spawn(&path).map_err(|e| {
                err(rusqlite::Error::InvalidParameterName(format!(
                    "cannot start checkpoint thread: {e}"
                )))
            })?;
            writer = writer.with_checkpointer(nudge);
            checkpointer = Some(thread);
        }
        let (tx, rx) = mpsc::channel(config.queue.ingest_capacity);
        let thread = std::thread::Builder::new()
            .name("queue-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| {
                err(rusqlite::Error::InvalidParameterName(format!(
                    "cannot start writer thread: {e}"
                )))
            })?;
        tracing::info!(path = %path.display(), boot, "Queue open");
        Ok(Queue {
            tx,
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
        Ingest::new(self.tx.clone(), self.ids.clone(), self.router.clone())
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
    /// expired records (uplink, TTL sweeper), function ticks and reloads.
    pub fn upkeep(&self) -> Upkeep {
        Upkeep {
            tx: self.tx.clone(),
        }
    }

    /// Woken after each commit that added records.
    pub fn added(&self) -> Arc<Notify> {
        self.added.clone()
    }

    /// Commits what is pending and stops the writer thread.
    pub async fn close(mut self) {
        let _ = self.tx.send(Command::Shutdown).await;
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

    /// Whether the writer takes commands: resolves `true` once it has
    /// reached this one, `false` if it is gone. A writer stuck in a commit
    /// does not answer; callers bound the wait.
    pub async fn ping(&self) -> bool {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Command::Ping(reply)).await.is_ok() && rx.await.is_ok()
    }

    /// New stream bounds (records, bytes, overflow, TTL) for the same
    /// streams; the runtime has checked that the layout is unchanged.
    pub async fn set_streams(&self, _streams: Vec<crate::config::StreamConfig>) {}

    /// Hands the writer a new set of functions (config reload).
    pub async fn install(&self, compiled: Compiled) {
        let _ = self.tx.send(Command::Install(Box::new(compiled))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_event::Event;
    use std::time::{Duration, Instant};

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
