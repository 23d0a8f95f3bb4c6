//! The queue writer: one thread owns the writing SQLite connection and
//! commits everything that is pending in one transaction (group commit), so
//! many producers share each commit and its fsync. Producers' submissions
//! and upkeep commands arrive on separate channels ([`Inbox`]), so an
//! acknowledgement never waits behind a backlog of submissions. A
//! submission's exchange (see `exchange_table`) is stored in the same
//! transaction as its rows, and only if they are accepted; so are its
//! adapter-state changes (see `state_table`).

use super::checkpoint;
use super::exchange_table;
use super::pipeline::{self, Done, Ran, Stage, Work};
use super::state_table;
use super::streams::{Losses, StreamLoad, Streams};
use super::streams::{StreamChangeError, stream_change_needs_restart};
use crate::clock::now_ms;
use crate::config::{QueueConfig, StreamConfig};
use crate::functions::Compiled;
use crate::ingest::{IngestError, Intake, LoadState, Recall, Submission};
use crate::metrics::Metrics;
use rusqlite::Connection;
use std::sync::Arc;
use tokio::sync::{Notify, mpsc, oneshot};

/// Work for the writer thread. Producers send [`Submission`]s on a channel
/// of their own; the writer wraps them in `Insert`.
#[derive(Debug)]
pub(crate) enum Command {
    /// Commit these routed, encoded events durably, then reply.
    Insert(Submission),
    /// Delete acknowledged records, then reply with how many existed.
    Delete {
        seqs: Vec<i64>,
        reply: oneshot::Sender<u64>,
    },
    /// Delete every record of one stream, then reply with how many (`None`:
    /// no such stream).
    Purge {
        stream: String,
        reply: oneshot::Sender<Option<u64>>,
    },
    /// Delete records whose TTL has passed.
    Expire,
    /// Call the tick entry point of the named function.
    Tick { function: String },
    /// Replace the functions (config reload).
    Install(Box<Compiled>),
    /// Reply once the group this arrives in is committed.
    Ping(oneshot::Sender<()>),
    /// Change the bounds, overflow policies and TTLs of the streams.
    SetStreams {
        streams: Vec<StreamConfig>,
        reply: oneshot::Sender<Result<(), StreamChangeError>>,
    },
    /// Read an adapter's unexpired exchanges, after the group this arrives in.
    Recall(Recall),
    /// Read an adapter's durable state, after the group this arrives in.
    LoadState(LoadState),
    /// Commit what is pending and stop.
    Shutdown,
}

/// Where the writer's work comes from: producers' submissions and upkeep
/// commands, on two bounded channels.
pub(crate) struct Inbox {
    submissions: mpsc::Receiver<Intake>,
    upkeep: mpsc::Receiver<Command>,
    /// Parks the thread until either channel has something; no polling.
    waiter: tokio::runtime::Runtime,
    submissions_open: bool,
    upkeep_open: bool,
}

impl Inbox {
    /// An inbox over both channels; `waiter` is a current-thread runtime
    /// used only to wait on them.
    pub(crate) fn new(
        submissions: mpsc::Receiver<Intake>,
        upkeep: mpsc::Receiver<Command>,
        waiter: tokio::runtime::Runtime,
    ) -> Inbox {
        Inbox {
            submissions,
            upkeep,
            waiter,
            submissions_open: true,
            upkeep_open: true,
        }
    }

    /// Blocks until there is work, upkeep first; `None` once both channels
    /// are closed and empty.
    fn next(&mut self) -> Option<Command> {
        /// What one wait ended with.
        enum Woke {
            Work(Command),
            SubmissionsClosed,
            UpkeepClosed,
        }
        loop {
            let (submissions, upkeep) = (&mut self.submissions, &mut self.upkeep);
            let (s_open, u_open) = (self.submissions_open, self.upkeep_open);
            let woke = self.waiter.block_on(async {
                tokio::select! {
                    biased;
                    c = upkeep.recv(), if u_open => Some(c.map_or(Woke::UpkeepClosed, Woke::Work)),
                    s = submissions.recv(), if s_open => {
                        Some(s.map_or(Woke::SubmissionsClosed, |s| Woke::Work(s.into())))
                    }
                    else => None,
                }
            })?;
            match woke {
                Woke::Work(command) => return Some(command),
                Woke::SubmissionsClosed => self.submissions_open = false,
                Woke::UpkeepClosed => self.upkeep_open = false,
            }
        }
    }

    /// Work that is already waiting, upkeep first.
    fn try_next(&mut self) -> Option<Command> {
        self.upkeep
            .try_recv()
            .ok()
            .or_else(|| self.submissions.try_recv().ok().map(Command::from))
    }

    /// Takes no new work; what was sent before stays to be taken.
    fn close(&mut self) {
        self.submissions.close();
        self.upkeep.close();
    }
}

impl From<Intake> for Command {
    fn from(intake: Intake) -> Command {
        match intake {
            Intake::Submit(s) => Command::Insert(s),
            Intake::Recall(r) => Command::Recall(r),
            Intake::LoadState(l) => Command::LoadState(l),
        }
    }
}

/// State of the writer thread.
pub(crate) struct Writer {
    conn: Connection,
    streams: Streams,
    /// The streams as configured now (see [`Writer::set_streams`]).
    stream_configs: Vec<StreamConfig>,
    /// The functions, on their own thread.
    stage: Stage,
    metrics: Arc<Metrics>,
    /// Woken after every commit that added records.
    added: Arc<Notify>,
    max_batch: usize,
    last_loss_warning: Option<std::time::Instant>,
    /// Nudged after a commit that leaves the WAL past the checkpoint
    /// threshold (see `checkpoint`); none in unit tests.
    checkpoint: Option<Checkpointing>,
    /// Exchanges stored since expired ones were last swept, and when that was.
    exchanges_stored: usize,
    exchanges_swept: Option<std::time::Instant>,
    /// Least time between two sweeps of expired exchanges.
    exchange_sweep_every: std::time::Duration,
}

/// The checkpoint thread's nudge, and how large the WAL is.
struct Checkpointing {
    nudge: std::sync::mpsc::SyncSender<()>,
    /// Frames in the WAL after the last commit, from SQLite's WAL hook:
    /// falls back to a few once a checkpoint has copied every frame and
    /// the writer starts the WAL over.
    wal_frames: Arc<std::sync::atomic::AtomicU64>,
    /// Frames that make the checkpoint threshold.
    threshold_frames: u64,
}

/// Least time between two sweeps of expired exchanges: a sweep is a query
/// of its own, too dear to run on every commit.
const EXCHANGE_SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Least time between two warnings about shed records.
const LOSS_WARNING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// Commands committed in one transaction, with the work they gave the
/// function thread.
struct Group {
    /// In the order they arrived.
    commands: Vec<Command>,
    /// The `Insert` and `Tick` commands' work, in order (none without
    /// functions), kept to be run again after a rewind.
    work: Arc<[Work]>,
    /// The function thread's answer for `work`, once taken.
    ran: Option<Ran>,
    /// Answered once the group is committed.
    recalls: Vec<Recall>,
    loads: Vec<LoadState>,
}

/// What one command came to inside the transaction; replies are sent
/// only after the transaction commits.
enum Outcome {
    /// Records inserted, inputs dead-lettered.
    Inserted(u64, u64),
    Refused(IngestError),
    Deleted(u64),
    Purged(Option<u64>),
    Done,
}

impl Writer {
    pub(crate) fn new(
        conn: Connection,
        config: &QueueConfig,
        stage: Stage,
        metrics: Arc<Metrics>,
        added: Arc<Notify>,
    ) -> rusqlite::Result<Writer> {
        let streams = Streams::load(&conn, &config.streams)?;
        let mut writer = Writer {
            conn,
            streams,
            stream_configs: config.streams.clone(),
            stage,
            metrics,
            added,
            max_batch: config.max_batch,
            last_loss_warning: None,
            checkpoint: None,
            exchanges_stored: 0,
            exchanges_swept: None,
            exchange_sweep_every: EXCHANGE_SWEEP_EVERY,
        };
        writer.publish_load();
        writer.warm_functions();
        Ok(writer)
    }

    /// Instantiates the functions and runs their init in a transaction of
    /// its own, so init's state writes and failures are stored.
    fn warm_functions(&mut self) {
        if self.stage.is_passthrough() {
            return;
        }
        let ran = self.stage.warm();
        let Some(done) = ran.done.front() else {
            return;
        };
        let max = self.stage.dead_letter_max();
        let result = (|| {
            let tx = self.conn.transaction()?;
            pipeline::store(&tx, done, max)?;
            tx.commit()
        })();
        match result {
            Ok(()) => {
                Metrics::add(&self.metrics.dead_letters, done.produced.dead.len() as u64);
                self.stage.settle(ran.after);
            }
            Err(error) => {
                self.stage.rollback(done.before.clone());
                tracing::error!(error = %error, "Cannot store the functions' init results");
            }
        }
    }

    /// Swaps in a new function set (config reload).
    fn install(&mut self, compiled: Compiled) {
        match self.stage.replace(compiled, &self.conn) {
            Ok(()) => {
                tracing::info!("Functions reloaded; suspended functions run again");
                self.warm_functions();
            }
            Err(error) => {
                tracing::error!(error = %error, "Function reload failed; the previous functions keep running");
            }
        }
    }

    /// Hands WAL checkpoints to the thread behind `nudge`, nudged once the
    /// WAL holds [`checkpoint::THRESHOLD`] bytes of frames.
    pub(crate) fn with_checkpointer(
        mut self,
        nudge: std::sync::mpsc::SyncSender<()>,
    ) -> rusqlite::Result<Writer> {
        let page_size: i64 = self.conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let page_size = u64::try_from(page_size).unwrap_or(4096);
        let wal_frames = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let frames = wal_frames.clone();
        self.conn.wal_hook(Some(
            move |_: &mut rusqlite::hooks::Wal, pages: std::ffi::c_int| {
                frames.store(
                    u64::try_from(pages).unwrap_or(0),
                    std::sync::atomic::Ordering::Relaxed,
                );
                Ok(())
            },
        ))?;
        self.checkpoint = Some(Checkpointing {
            nudge,
            wal_frames,
            threshold_frames: (checkpoint::THRESHOLD / page_size.max(512)).max(1),
        });
        Ok(self)
    }

    /// Applies new stream bounds in a transaction of its own (expiry times
    /// of queued records follow a new TTL); the new bounds hold from the
    /// next commit. Refuses what needs a restart, changing nothing.
    fn set_streams(&mut self, streams: Vec<StreamConfig>) -> Result<(), StreamChangeError> {
        if let Some(refusal) = stream_change_needs_restart(&self.stream_configs, &streams) {
            return Err(refusal);
        }
        let result = (|| {
            let tx = self.conn.transaction()?;
            self.streams.retime(&tx, &streams)?;
            tx.commit()
        })();
        match result {
            Ok(()) => {
                self.streams.set_bounds(&streams);
                self.stream_configs = streams;
                tracing::info!("Stream bounds changed");
                Ok(())
            }
            Err(error) => {
                tracing::error!(error = %error, "Cannot change the stream bounds; the previous ones stay");
                Err(StreamChangeError::Storage(error))
            }
        }
    }

    /// Runs until `Shutdown` arrives or every sender is gone. After
    /// `Shutdown`, what was already sent is still committed.
    ///
    /// With functions, a group is handed to the function thread as soon as
    /// it is taken, and committed once the next group is handed over (or
    /// right away when nothing else is waiting): the functions run on one
    /// group while the writer commits the one before.
    pub(crate) fn run(mut self, mut inbox: Inbox) {
        let mut stopping = false;
        let mut ahead: Option<Group> = None;
        loop {
            // The answer for the group ahead first: while the writer waits
            // for it, replies of the last commit bring producers back, so the
            // next group is taken fuller.
            if let Some(group) = &mut ahead
                && !group.work.is_empty()
                && group.ran.is_none()
            {
                group.ran = Some(self.stage.take());
            }
            let first = if stopping || ahead.is_some() {
                inbox.try_next()
            } else {
                inbox.next()
            };
            let Some(first) = first else {
                match ahead.take() {
                    Some(group) => {
                        self.commit(group, None);
                        continue;
                    }
                    None => break,
                }
            };
            let mut batch = vec![first];
            let mut events = batch_events(&batch[0]);
            while events < self.max_batch {
                let Some(c) = inbox.try_next() else {
                    break;
                };
                events += batch_events(&c);
                batch.push(c);
            }
            if !stopping && batch.iter().any(|c| matches!(c, Command::Shutdown)) {
                stopping = true;
                inbox.close();
            }
            let mut rest = Vec::with_capacity(batch.len());
            let mut recalls = Vec::new();
            let mut loads = Vec::new();
            for c in batch {
                match c {
                    Command::Install(compiled) => {
                        self.flush(&mut ahead);
                        self.install(*compiled);
                    }
                    Command::SetStreams { streams, reply } => {
                        self.flush(&mut ahead);
                        let _ = reply.send(self.set_streams(streams));
                    }
                    Command::Recall(recall) => recalls.push(recall),
                    Command::LoadState(load) => loads.push(load),
                    other => rest.push(other),
                }
            }
            let group = self.group(rest, recalls, loads);
            if let Some(before) = ahead.take() {
                self.commit(before, Some(&group));
            }
            if group.work.is_empty() {
                self.commit(group, None);
            } else {
                ahead = Some(group);
            }
        }
        tracing::info!(
            records = self.streams.total().records,
            "Queue writer stopped; pending events committed"
        );
    }

    /// Makes a group of `commands` and hands its work to the function thread.
    fn group(
        &mut self,
        mut commands: Vec<Command>,
        recalls: Vec<Recall>,
        loads: Vec<LoadState>,
    ) -> Group {
        let mut work: Vec<Work> = Vec::new();
        if !self.stage.is_passthrough() {
            let now = now_ms();
            for command in &mut commands {
                match command {
                    Command::Insert(s) => {
                        work.push(Work::Rows(std::mem::take(&mut s.rows)));
                    }
                    Command::Tick { function } => work.push(Work::Tick {
                        function: function.clone(),
                        now_ms: now,
                    }),
                    _ => {}
                }
            }
        }
        let work: Arc<[Work]> = work.into();
        if !work.is_empty() {
            self.stage.send(work.clone());
        }
        Group {
            commands,
            work,
            ran: None,
            recalls,
            loads,
        }
    }

    /// Commits the group ahead, if there is one.
    fn flush(&mut self, ahead: &mut Option<Group>) {
        if let Some(group) = ahead.take() {
            self.commit(group, None);
        }
    }

    /// Answers a recall from what is committed.
    fn recall(&self, recall: Recall) {
        let found = exchange_table::recall(&self.conn, recall.adapter, now_ms(), recall.limit);
        if let Err(error) = &found {
            tracing::error!(adapter = recall.adapter, error = %error, "Cannot read the remembered exchanges");
        }
        let _ = recall
            .reply
            .send(found.map_err(|e| Arc::new(e) as crate::ingest::StorageError));
    }

    /// Answers a state load from what is committed.
    fn load_state(&self, load: LoadState) {
        let found = state_table::load(&self.conn, load.adapter);
        if let Err(error) = &found {
            tracing::error!(adapter = load.adapter, error = %error, "Cannot read the adapter state");
        }
        let _ = load
            .reply
            .send(found.map_err(|e| Arc::new(e) as crate::ingest::StorageError));
    }

    /// One group commit for everything in `group`; `next` is the group
    /// handed to the function thread after it, if any.
    fn commit(&mut self, mut group: Group, next: Option<&Group>) {
        let before = self.streams.snapshot();
        let ran = match group.ran.take() {
            Some(ran) => Some(ran),
            None => (!group.work.is_empty()).then(|| self.stage.take()),
        };
        let start = ran
            .as_ref()
            .and_then(|r| r.done.front())
            .map(|d| d.before.clone());
        let result = self.apply(&mut group, ran, next);
        let Group {
            commands: batch,
            recalls,
            loads,
            ..
        } = group;
        match result {
            Ok((outcomes, losses, settled)) => {
                if let Some(marks) = settled {
                    self.stage.settle(marks);
                }
                Metrics::add(&self.metrics.queue_commits, 1);
                if let Some(c) = &self.checkpoint
                    && c.wal_frames.load(std::sync::atomic::Ordering::Relaxed) >= c.threshold_frames
                {
                    // Full means a nudge is already waiting: that is enough.
                    let _ = c.nudge.try_send(());
                }
                self.count_losses(losses);
                self.publish_load();
                // Counters first: whoever holds a receipt sees them already moved.
                let (accepted, dead) = outcomes.iter().fold((0, 0), |(a, d), o| match o {
                    Outcome::Inserted(records, dead) => (a + records, d + dead),
                    _ => (a, d),
                });
                Metrics::add(&self.metrics.queue_accepted, accepted);
                Metrics::add(&self.metrics.dead_letters, dead);
                if accepted > 0 {
                    self.added.notify_one();
                }
                for (command, outcome) in batch.into_iter().zip(outcomes) {
                    match (command, outcome) {
                        (Command::Insert(s), Outcome::Inserted(..)) => {
                            let _ = s.reply.send(Ok(()));
                        }
                        (Command::Insert(s), Outcome::Refused(error)) => {
                            let _ = s.reply.send(Err(error));
                        }
                        (Command::Delete { reply, .. }, Outcome::Deleted(n)) => {
                            let _ = reply.send(n);
                        }
                        (Command::Purge { reply, .. }, Outcome::Purged(n)) => {
                            let _ = reply.send(n);
                        }
                        (Command::Ping(reply), _) => {
                            let _ = reply.send(());
                        }
                        _ => {}
                    }
                }
            }
            Err(error) => {
                self.streams.restore(before);
                if let Some(start) = start {
                    rewind(&mut self.stage, start, Arc::from([]), next);
                }
                Metrics::add(&self.metrics.queue_storage_errors, 1);
                tracing::error!(error = %error, "Queue transaction failed; its submissions are refused");
                let reason = IngestError::Storage(Arc::new(error));
                for command in batch {
                    match command {
                        Command::Insert(s) => {
                            let _ = s.reply.send(Err(reason.clone()));
                        }
                        Command::Delete { reply, .. } => {
                            let _ = reply.send(0);
                        }
                        // The writer is alive, which is what a ping asks.
                        Command::Ping(reply) => {
                            let _ = reply.send(());
                        }
                        Command::Purge { .. }
                        | Command::Expire
                        | Command::Tick { .. }
                        | Command::Install(_)
                        | Command::SetStreams { .. }
                        | Command::Recall(_)
                        | Command::LoadState(_)
                        | Command::Shutdown => {}
                    }
                }
            }
        }
        for recall in recalls {
            self.recall(recall);
        }
        for load in loads {
            self.load_state(load);
        }
    }

    /// Applies the group in one transaction; on error nothing is
    /// committed. `ran` is the function thread's answer for its work.
    /// Returns the outcomes, the losses and the state marks to settle.
    fn apply(
        &mut self,
        group: &mut Group,
        ran: Option<Ran>,
        next: Option<&Group>,
    ) -> rusqlite::Result<(Vec<Outcome>, Losses, Option<Vec<usize>>)> {
        let tx = self.conn.transaction()?;
        let now = now_ms();
        let mut answers = Answers::from(ran);
        let mut outcomes = Vec::with_capacity(group.commands.len());
        let (mut stored, mut sweep) = (0, false);
        for command in &mut group.commands {
            // The function thread's result for this command, if it had work.
            let has_work = !group.work.is_empty()
                && matches!(command, Command::Insert(_) | Command::Tick { .. });
            let result = if has_work { answers.next() } else { None };
            outcomes.push(match command {
                Command::Insert(Submission {
                    rows,
                    exchange,
                    state,
                    ..
                }) => {
                    let outcome = match result {
                        None => match self.streams.insert(&tx, rows, now)? {
                            Ok(()) => Outcome::Inserted(rows.len() as u64, 0),
                            Err(error) => Outcome::Refused(error),
                        },
                        Some(d) => {
                            let placed = (&mut self.streams, &mut self.stage, &tx);
                            match place(placed, &mut answers, d, &group.work, next, now)? {
                                Ok(outcome) => outcome,
                                Err(error) => Outcome::Refused(error),
                            }
                        }
                    };
                    if let (Outcome::Inserted(..), Some(exchange)) = (&outcome, exchange) {
                        exchange_table::store(&tx, exchange)?;
                        stored += 1;
                    }
                    if let (Outcome::Inserted(..), Some(state)) = (&outcome, state) {
                        state_table::apply(&tx, state)?;
                    }
                    outcome
                }
                Command::Tick { function } => match result {
                    None => Outcome::Done,
                    Some(d) => {
                        let placed = (&mut self.streams, &mut self.stage, &tx);
                        match place(placed, &mut answers, d, &group.work, next, now)? {
                            Ok(outcome) => outcome,
                            Err(error) => {
                                tracing::warn!(function = %function, error = %error, "Tick outputs refused by the queue; the function's state is kept for the next tick");
                                Outcome::Done
                            }
                        }
                    }
                },
                Command::Install(_)
                | Command::SetStreams { .. }
                | Command::Ping(_)
                | Command::Recall(_)
                | Command::LoadState(_) => Outcome::Done,
                Command::Delete { seqs, .. } => Outcome::Deleted(self.streams.delete(&tx, seqs)?),
                Command::Purge { stream, .. } => Outcome::Purged(self.streams.purge(&tx, stream)?),
                Command::Expire => {
                    self.streams.expire(&tx, now)?;
                    sweep = true;
                    Outcome::Done
                }
                Command::Shutdown => Outcome::Done,
            });
        }
        self.exchanges_stored += stored;
        let due = self
            .exchanges_swept
            .is_none_or(|t| t.elapsed() >= self.exchange_sweep_every);
        if sweep || (self.exchanges_stored > 0 && due) {
            let limit = 2 * self.exchanges_stored + exchange_table::EXPIRE_SLACK;
            exchange_table::expire(&tx, now, limit)?;
            self.exchanges_stored = 0;
            self.exchanges_swept = Some(std::time::Instant::now());
        }
        let losses = self.streams.flush(&tx)?;
        tx.commit()?;
        Ok((outcomes, losses, answers.settled))
    }

    /// Counts committed losses, warning at most every few seconds.
    fn count_losses(&mut self, losses: Losses) {
        let m = &self.metrics;
        Metrics::add(&m.queue_dropped, losses.dropped);
        Metrics::add(&m.queue_rejected, losses.rejected);
        Metrics::add(&m.queue_expired, losses.expired);
        if losses == Losses::default() {
            return;
        }
        let due = self
            .last_loss_warning
            .is_none_or(|t| t.elapsed() >= LOSS_WARNING_INTERVAL);
        if due {
            self.last_loss_warning = Some(std::time::Instant::now());
            let total = m.snapshot();
            tracing::warn!(
                dropped_total = total.queue_dropped,
                rejected_total = total.queue_rejected,
                expired_total = total.queue_expired,
                "Queue is shedding records by its overflow and TTL policies"
            );
        }
    }

    /// Mirrors the queue's size into the metrics gauges.
    fn publish_load(&self) {
        let StreamLoad { records, bytes } = self.streams.total();
        self.metrics
            .queue_records
            .store(records, std::sync::atomic::Ordering::Relaxed);
        self.metrics
            .queue_bytes
            .store(bytes, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Takes the function thread back to `marks`, which also takes back the
/// run of `next` (the group handed over after this one): runs `rest` (the
/// work after the point rewound to) and `next`'s work again, in that
/// order, and returns `rest`'s answer.
fn rewind(
    stage: &mut Stage,
    marks: Vec<usize>,
    rest: Arc<[Work]>,
    next: Option<&Group>,
) -> Option<Ran> {
    let next = next.filter(|g| !g.work.is_empty());
    if next.is_some() {
        // Run on state that is being taken back: void.
        let _ = stage.take();
    }
    stage.rollback(marks);
    let again = !rest.is_empty();
    if again {
        stage.send(rest);
    }
    if let Some(next) = next {
        stage.send(next.work.clone());
    }
    again.then(|| stage.take())
}

/// The function thread's answers for a group, taken in order as the group
/// is applied, and the state marks to settle once it commits.
struct Answers {
    done: std::collections::VecDeque<Done>,
    /// Pieces of work answered so far.
    taken: usize,
    settled: Option<Vec<usize>>,
}

impl Answers {
    fn from(ran: Option<Ran>) -> Answers {
        match ran {
            Some(ran) => Answers {
                done: ran.done,
                taken: 0,
                settled: Some(ran.after),
            },
            None => Answers {
                done: Default::default(),
                taken: 0,
                settled: None,
            },
        }
    }

    /// The answer for the next piece of work.
    fn next(&mut self) -> Option<Done> {
        self.taken += 1;
        self.done.pop_front()
    }
}

/// Inserts what a piece of work produced and stores its state changes and
/// dead letters. If the queue refuses the rows, the function thread goes
/// back to before this work, and the group's work after it (and `next`'s)
/// runs again: its answers replace the rest of `answers`.
fn place(
    (streams, stage, tx): (&mut Streams, &mut Stage, &rusqlite::Transaction<'_>),
    answers: &mut Answers,
    mut done: Done,
    work: &[Work],
    next: Option<&Group>,
    now: i64,
) -> rusqlite::Result<Result<Outcome, IngestError>> {
    Ok(match streams.insert(tx, &mut done.produced.rows, now)? {
        Ok(()) => {
            pipeline::store(tx, &done, stage.dead_letter_max())?;
            Ok(Outcome::Inserted(
                done.produced.rows.len() as u64,
                done.produced.dead.len() as u64,
            ))
        }
        Err(error) => {
            let rest = Arc::from(&work[answers.taken..]);
            let again = rewind(stage, done.before.clone(), rest, next);
            answers.settled = Some(again.as_ref().map_or(done.before, |r| r.after.clone()));
            answers.done = again.map(|r| r.done).unwrap_or_default();
            Err(error)
        }
    })
}

fn batch_events(c: &Command) -> usize {
    match c {
        Command::Insert(s) => s.rows.len().max(1),
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use sluice_event::{Event, EventId};

    fn writer(dir: &std::path::Path) -> (Writer, Arc<Metrics>) {
        writer_with(dir, &Config::parse("", "test").expect("defaults"))
    }

    fn writer_with(dir: &std::path::Path, config: &Config) -> (Writer, Arc<Metrics>) {
        let conn = super::super::schema::open_writer(&dir.join("q.db"), config.queue.durability)
            .expect("open");
        let metrics = Arc::new(Metrics::default());
        let stage = Stage::start(
            Compiled::new(config).expect("modules compile"),
            &conn,
            Arc::new(crate::ingest::Router::new(&config.queue.streams)),
            Arc::new(crate::ids::IdMint::new(1)),
            metrics.clone(),
            config.pipeline.dead_letter_max,
        )
        .expect("function thread");
        let w = Writer::new(
            conn,
            &config.queue,
            stage,
            metrics.clone(),
            Arc::new(Notify::new()),
        )
        .expect("writer");
        (w, metrics)
    }

    impl Writer {
        /// Commits `commands` as one group, with nothing handed over after it.
        fn commit_now(&mut self, commands: Vec<Command>) {
            let group = self.group(commands, Vec::new(), Vec::new());
            self.commit(group, None);
        }
    }

    fn insert(w: &mut Writer, events: &[Event]) -> Result<(), IngestError> {
        let (reply, mut rx) = oneshot::channel();
        let rows = events.iter().map(|e| (0, e.encode())).collect();
        w.commit_now(vec![Command::Insert(Submission {
            rows,
            exchange: None,
            state: None,
            reply,
        })]);
        rx.try_recv().expect("replied after the commit")
    }

    /// Commits `events` with an exchange under adapter `coap`.
    fn insert_once(
        w: &mut Writer,
        events: &[Event],
        key: &[u8],
        expires_ms: i64,
    ) -> Result<(), IngestError> {
        let (reply, mut rx) = oneshot::channel();
        let rows = events.iter().map(|e| (0, e.encode())).collect();
        let exchange = crate::ingest::ExchangeRow {
            adapter: "coap",
            exchange: sluice_adapter_common::Exchange {
                key: key.to_vec(),
                answer: vec![0x60, 0x44, key[0], key[0]],
                expires_ms,
            },
            events: events.iter().map(|e| e.id).collect(),
        };
        w.commit_now(vec![Command::Insert(Submission {
            rows,
            exchange: Some(exchange),
            state: None,
            reply,
        })]);
        rx.try_recv().expect("replied after the commit")
    }

    /// The keys `adapter`'s recall finds now, in expiry order.
    /// What the writer recalls for `adapter`, at most `limit`.
    fn recall(
        w: &Writer,
        adapter: &'static str,
        limit: usize,
    ) -> Vec<sluice_adapter_common::Remembered> {
        let (reply, mut rx) = oneshot::channel();
        w.recall(Recall {
            adapter,
            limit,
            reply,
        });
        rx.try_recv().expect("answered").expect("read")
    }

    fn recalled(w: &Writer, adapter: &'static str) -> Vec<Vec<u8>> {
        recall(w, adapter, 100)
            .into_iter()
            .map(|r| r.exchange.key)
            .collect()
    }

    fn stored_exchanges(w: &Writer) -> i64 {
        w.conn
            .query_row("SELECT COUNT(*) FROM exchanges", [], |r| r.get(0))
            .expect("count")
    }

    /// Commits `events` with state changes under adapter `lorawan`.
    fn insert_with_state(
        w: &mut Writer,
        events: &[Event],
        changes: &[(&[u8], Option<&[u8]>)],
    ) -> Result<(), IngestError> {
        let (reply, mut rx) = oneshot::channel();
        let rows = events.iter().map(|e| (0, e.encode())).collect();
        let changes = changes
            .iter()
            .map(|(k, v)| sluice_adapter_common::StateChange {
                key: k.to_vec(),
                value: v.map(<[u8]>::to_vec),
            })
            .collect();
        w.commit_now(vec![Command::Insert(Submission {
            rows,
            exchange: None,
            state: Some(crate::ingest::StateRows {
                adapter: "lorawan",
                changes,
            }),
            reply,
        })]);
        rx.try_recv().expect("replied after the commit")
    }

    fn loaded(w: &Writer, adapter: &'static str) -> Vec<sluice_adapter_common::StateEntry> {
        let (reply, mut rx) = oneshot::channel();
        w.load_state(LoadState { adapter, reply });
        rx.try_recv().expect("answered").expect("read")
    }

    #[test]
    fn adapter_state_commits_with_its_events_even_alone_and_survives_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (mut w, _) = writer(dir.path());
            let e = Event::new("lorawan/0102030405060708/up", "0102030405060708", 1);
            insert_with_state(
                &mut w,
                &[e],
                &[(b"s1", Some(b"fcnt=1")), (b"n1", Some(b""))],
            )
            .expect("accepted");
            // A state change with no events (a join) commits too.
            insert_with_state(&mut w, &[], &[(b"s1", Some(b"fcnt=2")), (b"n1", None)])
                .expect("accepted");
            assert_eq!(loaded(&w, "coap"), vec![], "state is per adapter");
        }
        let (w, _) = writer(dir.path());
        assert_eq!(
            loaded(&w, "lorawan"),
            vec![(b"s1".to_vec(), b"fcnt=2".to_vec())]
        );
    }

    #[test]
    fn a_version_2_database_gains_the_state_table_on_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (w, _) = writer(dir.path());
            w.conn
                .execute_batch("DROP TABLE adapter_state; PRAGMA user_version=2;")
                .expect("downgrade");
        }
        let (mut w, _) = writer(dir.path());
        insert_with_state(&mut w, &[], &[(b"k", Some(b"v"))]).expect("accepted");
        assert_eq!(loaded(&w, "lorawan").len(), 1);
        let version: i64 = w
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("version");
        assert_eq!(version, 4, "migrated to the current version");
        let nonces: i64 = w
            .conn
            .query_row("SELECT COUNT(*) FROM control_nonces", [], |r| r.get(0))
            .expect("version 4's nonce table exists");
        assert_eq!(nonces, 0);
    }

    #[test]
    fn an_exchange_is_stored_with_its_events_and_recalled_after_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut w, _) = writer(dir.path());
        let later = now_ms() + 60_000;
        insert_once(&mut w, &[event(1, 1), event(2, 1)], b"a", later).expect("accepted");
        insert_once(&mut w, &[event(3, 1)], b"b", later + 1).expect("accepted");
        drop(w);

        let (w, _) = writer(dir.path());
        let found = recall(&w, "coap", 10);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].exchange.key, b"a");
        assert_eq!(found[0].exchange.answer, [0x60, 0x44, b'a', b'a']);
        assert_eq!(found[0].exchange.expires_ms, later);
        assert_eq!(found[0].events, [EventId::new(1, 1), EventId::new(1, 2)]);
        assert_eq!(found[1].events, [EventId::new(1, 3)]);
        assert_eq!(
            recalled(&w, "lorawan"),
            Vec::<Vec<u8>>::new(),
            "per adapter"
        );

        // A limit keeps the newest.
        let found = recall(&w, "coap", 1);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].exchange.key, b"b");
    }

    #[test]
    fn a_key_stored_twice_is_recalled_once_with_the_newer_answer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut w, _) = writer(dir.path());
        let later = now_ms() + 60_000;
        insert_once(&mut w, &[event(1, 1)], b"a", later).expect("accepted");
        insert_once(&mut w, &[event(2, 1)], b"b", later).expect("accepted");
        insert_once(&mut w, &[event(3, 1)], b"a", later + 5).expect("accepted");
        let found = recall(&w, "coap", 10);
        let keys: Vec<(&[u8], Vec<EventId>)> = found
            .iter()
            .map(|r| (r.exchange.key.as_slice(), r.events.clone()))
            .collect();
        assert_eq!(
            keys,
            [
                (&b"a"[..], vec![EventId::new(1, 3)]),
                (&b"b"[..], vec![EventId::new(1, 2)])
            ]
        );
    }

    #[test]
    fn a_refused_or_failed_submission_remembers_no_exchange() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = "[[queue.streams]]\nname = \"all\"\nsubjects = [\"#\"]\nmax_records = 2\noverflow = \"reject_new\"\n";
        let (mut w, _) = writer_with(dir.path(), &Config::parse(text, "test").expect("valid"));
        let later = now_ms() + 60_000;
        insert_once(&mut w, &[event(1, 1)], b"a", later).expect("accepted");
        let refused = insert_once(&mut w, &[event(2, 1), event(3, 1)], b"b", later);
        assert!(
            matches!(refused, Err(IngestError::QueueFull { .. })),
            "{refused:?}"
        );
        assert_eq!(recalled(&w, "coap"), [b"a".to_vec()]);

        disk_full(&w, true);
        let big: Vec<Event> = (4..5).map(|n| event(n, 40_000)).collect();
        let failed = insert_once(&mut w, &big, b"c", later);
        assert!(matches!(failed, Err(IngestError::Storage(_))), "{failed:?}");
        disk_full(&w, false);
        assert_eq!(recalled(&w, "coap"), [b"a".to_vec()]);
    }

    #[test]
    fn expired_exchanges_are_not_recalled_and_are_deleted_a_bounded_number_per_sweep() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut w, _) = writer(dir.path());
        w.exchange_sweep_every = std::time::Duration::ZERO;
        let past = now_ms() - 1;
        {
            // Many expired exchanges, as a long quiet spell leaves them.
            let tx = w.conn.transaction().expect("tx");
            for n in 0..200u32 {
                let row = crate::ingest::ExchangeRow {
                    adapter: "coap",
                    exchange: sluice_adapter_common::Exchange {
                        key: n.to_be_bytes().to_vec(),
                        answer: vec![],
                        expires_ms: past,
                    },
                    events: vec![],
                };
                exchange_table::store(&tx, &row).expect("store");
            }
            tx.commit().expect("commit");
        }
        assert_eq!(recalled(&w, "coap"), Vec::<Vec<u8>>::new(), "expired");
        let later = now_ms() + 60_000;
        insert_once(&mut w, &[event(1, 1)], b"live", later).expect("accepted");
        let per_commit = 2 + exchange_table::EXPIRE_SLACK as i64;
        assert_eq!(
            stored_exchanges(&w),
            201 - per_commit,
            "bounded work per sweep"
        );
        for n in 2..=4u8 {
            insert_once(
                &mut w,
                &[event(u64::from(n), 1)],
                &[n],
                later + i64::from(n),
            )
            .expect("accepted");
        }
        assert_eq!(stored_exchanges(&w), 4, "only the live ones are left");
        assert_eq!(
            recalled(&w, "coap"),
            [b"live".to_vec(), vec![2], vec![3], vec![4]]
        );
    }

    /// A full disk, as SQLite sees it: no page may be added any more (or room again).
    fn disk_full(w: &Writer, full: bool) {
        let pages: i64 = if full {
            w.conn
                .query_row("PRAGMA page_count", [], |r| r.get(0))
                .expect("page_count")
        } else {
            1_000_000
        };
        w.conn
            .execute_batch(&format!("PRAGMA max_page_count = {pages}"))
            .expect("max_page_count");
    }

    fn event(n: u64, payload: usize) -> Event {
        let mut e = Event::new("coap/d", "d", 0);
        e.id = EventId::new(1, n);
        e.raw = Some(vec![0xab; payload]);
        e
    }

    #[test]
    fn a_failed_transaction_refuses_everything_and_the_writer_recovers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut w, metrics) = writer(dir.path());
        insert(&mut w, &[event(1, 10)]).expect("accepted");
        disk_full(&w, true);

        let big: Vec<Event> = (2..50).map(|n| event(n, 4000)).collect();
        let error = insert(&mut w, &big).expect_err("the disk is full");
        let IngestError::Storage(cause) = &error else {
            panic!("not a storage error: {error:?}");
        };
        assert!(
            matches!(
                cause.downcast_ref::<rusqlite::Error>(),
                Some(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::DiskFull
            ),
            "SQLite's own error is kept: {cause:?}"
        );
        let m = metrics.snapshot();
        assert_eq!(
            (m.queue_accepted, m.queue_storage_errors, m.queue_records),
            (1, 1, 1)
        );

        // The writer keeps serving once there is room again.
        disk_full(&w, false);
        insert(&mut w, &big).expect("accepted");
        assert_eq!(metrics.snapshot().queue_records, 49);
    }

    fn max_seq(w: &Writer) -> i64 {
        w.conn
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM records", [], |r| {
                r.get(0)
            })
            .expect("max seq")
    }

    #[test]
    fn sequence_numbers_never_repeat_after_the_queue_drains_and_reopens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut w, _) = writer(dir.path());
        insert(&mut w, &[event(1, 1), event(2, 1), event(3, 1)]).expect("accepted");
        let last = max_seq(&w);
        assert!(last >= 3, "{last}");

        let (reply, mut rx) = oneshot::channel();
        w.commit_now(vec![Command::Delete {
            seqs: (1..=last).collect(),
            reply,
        }]);
        assert_eq!(rx.try_recv().expect("replied"), 3);
        assert_eq!(max_seq(&w), 0, "drained to empty");
        drop(w);

        let (mut w, _) = writer(dir.path());
        insert(&mut w, &[event(4, 1)]).expect("accepted");
        assert_eq!(max_seq(&w), last + 1, "numbering continues after a restart");
    }

    /// Counts its inputs in state key `n` and re-emits each one.
    const COUNT: &str = r#"(module
      (import "sluice_v1" "emit" (func $emit (param i32 i32) (result i32)))
      (import "sluice_v1" "state_get" (func $get (param i32 i32 i32 i32) (result i32)))
      (import "sluice_v1" "state_put" (func $put (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 16) "n")
      (func (export "sluice_abi_version") (result i32) (i32.const 1))
      (func (export "sluice_alloc") (param i32) (result i32) (i32.const 1024))
      (func (export "sluice_on_event") (param $ptr i32) (param $len i32) (result i32)
        (if (i32.lt_s (call $get (i32.const 16) (i32.const 1) (i32.const 32) (i32.const 8)) (i32.const 0))
          (then (i64.store (i32.const 32) (i64.const 0))))
        (i64.store (i32.const 32) (i64.add (i64.load (i32.const 32)) (i64.const 1)))
        (drop (call $put (i32.const 16) (i32.const 1) (i32.const 32) (i32.const 8)))
        (drop (call $emit (local.get $ptr) (local.get $len)))
        (i32.const 0)))"#;

    /// A writer with the count function on `coap/+` and one stream of
    /// `max_records` under `reject_new`.
    fn counting_writer(dir: &std::path::Path, max_records: u64) -> (Writer, Arc<Metrics>) {
        let module = dir.join("count.wasm");
        std::fs::write(&module, wat::parse_str(COUNT).expect("assembles")).expect("write");
        let text = format!(
            "[[queue.streams]]\nname = \"all\"\nsubjects = [\"#\"]\nmax_records = {max_records}\noverflow = \"reject_new\"\n\
             [[functions]]\nname = \"count\"\nmodule = \"{}\"\nsubscribe = [\"coap/+\"]\n",
            module.display()
        );
        writer_with(dir, &Config::parse(&text, "test").expect("valid"))
    }

    /// (stored counter, queued records) as SQLite holds them.
    fn stored(w: &Writer) -> (Option<i64>, i64) {
        let n = w
            .conn
            .query_row(
                "SELECT value FROM function_state WHERE function = 'count' AND key = x'6e'",
                [],
                |r| r.get::<_, Vec<u8>>(0),
            )
            .ok()
            .map(|v| i64::from_le_bytes(v.try_into().expect("8 bytes")));
        let records = w
            .conn
            .query_row("SELECT COUNT(*) FROM records", [], |r| r.get(0))
            .expect("count");
        (n, records)
    }

    fn counter_in_memory(w: &Writer) -> Option<i64> {
        w.stage.state_of("count").and_then(|entries| {
            entries
                .into_iter()
                .find(|(k, _)| k == b"n")
                .map(|(_, v)| i64::from_le_bytes(v.try_into().expect("8 bytes")))
        })
    }

    #[test]
    fn state_and_outputs_commit_together_or_not_at_all() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut w, _) = counting_writer(dir.path(), 3);
        insert(&mut w, &[event(1, 1), event(2, 1)]).expect("accepted");
        assert_eq!(stored(&w), (Some(2), 2), "two outputs, counter at 2");

        // Refused by the stream (2 + 2 > 3): the function ran, but its state write is undone.
        let refused = insert(&mut w, &[event(3, 1), event(4, 1)]);
        assert!(
            matches!(refused, Err(IngestError::QueueFull { .. })),
            "{refused:?}"
        );
        assert_eq!(stored(&w), (Some(2), 2));
        assert_eq!(
            counter_in_memory(&w),
            Some(2),
            "read-your-writes view rolled back too"
        );

        // A failed transaction (disk full) undoes both as well.
        disk_full(&w, true);
        let error = insert(&mut w, &[event(5, 20_000)]).expect_err("the disk is full");
        assert!(matches!(error, IngestError::Storage(_)), "{error:?}");
        assert_eq!(stored(&w), (Some(2), 2));
        assert_eq!(counter_in_memory(&w), Some(2));

        disk_full(&w, false);
        insert(&mut w, &[event(6, 1)]).expect("accepted");
        assert_eq!(stored(&w), (Some(3), 3));
    }

    #[test]
    fn a_batch_reads_its_own_state_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut w, _) = counting_writer(dir.path(), 1000);
        let (a, mut ra) = oneshot::channel();
        let (b, mut rb) = oneshot::channel();
        let rows = |n| (1..=n).map(|i| (0, event(i, 1).encode())).collect();
        // Two submissions in one group commit: the second sees the first's count.
        w.commit_now(vec![
            Command::Insert(Submission {
                rows: rows(3),
                exchange: None,
                state: None,
                reply: a,
            }),
            Command::Insert(Submission {
                rows: rows(4),
                exchange: None,
                state: None,
                reply: b,
            }),
        ]);
        ra.try_recv().expect("replied").expect("accepted");
        rb.try_recv().expect("replied").expect("accepted");
        assert_eq!(stored(&w), (Some(7), 7));
    }

    /// A submission of events `ids` (payload `size`), and its reply.
    fn submission(
        ids: std::ops::RangeInclusive<u64>,
        size: usize,
    ) -> (Command, oneshot::Receiver<Result<(), IngestError>>) {
        let (reply, rx) = oneshot::channel();
        let rows = ids.map(|i| (0, event(i, size).encode())).collect();
        let command = Command::Insert(Submission {
            rows,
            exchange: None,
            state: None,
            reply,
        });
        (command, rx)
    }

    #[test]
    fn a_refusal_in_the_group_committing_reruns_the_group_ahead_on_rolled_back_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut w, _) = counting_writer(dir.path(), 4);
        let (a1, mut ra1) = submission(1..=2, 1);
        let (a2, mut ra2) = submission(3..=5, 1);
        let (b1, mut rb1) = submission(6..=7, 1);
        // The function thread runs both groups before the first commits.
        let first = w.group(vec![a1, a2], Vec::new(), Vec::new());
        let second = w.group(vec![b1], Vec::new(), Vec::new());
        w.commit(first, Some(&second));
        ra1.try_recv().expect("replied").expect("accepted");
        let refused = ra2.try_recv().expect("replied");
        assert!(
            matches!(refused, Err(IngestError::QueueFull { .. })),
            "{refused:?}"
        );
        assert_eq!(stored(&w), (Some(2), 2));

        // The second group counted on top of the refused submission's count
        // once; it ran again on the count without it.
        w.commit(second, None);
        rb1.try_recv().expect("replied").expect("accepted");
        assert_eq!(stored(&w), (Some(4), 4), "state and outputs agree");
        assert_eq!(counter_in_memory(&w), Some(4));
    }

    #[test]
    fn a_failed_commit_takes_back_its_state_and_reruns_the_group_ahead() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut w, _) = counting_writer(dir.path(), 1000);
        insert(&mut w, &[event(1, 1)]).expect("accepted");
        disk_full(&w, true);
        let (a, mut ra) = submission(2..=3, 20_000);
        let (b, mut rb) = submission(4..=4, 1);
        let first = w.group(vec![a], Vec::new(), Vec::new());
        let second = w.group(vec![b], Vec::new(), Vec::new());
        w.commit(first, Some(&second));
        let failed = ra.try_recv().expect("replied");
        assert!(matches!(failed, Err(IngestError::Storage(_))), "{failed:?}");
        assert_eq!(stored(&w), (Some(1), 1));

        disk_full(&w, false);
        w.commit(second, None);
        rb.try_recv().expect("replied").expect("accepted");
        assert_eq!(stored(&w), (Some(2), 2), "the failed group's count is gone");
        assert_eq!(counter_in_memory(&w), Some(2));
    }
}
