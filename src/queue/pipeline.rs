//! The functions beside the queue writer. They run on a thread of their own
//! (the function thread), a group ahead of the writer: while the writer
//! inserts and commits one group, the function thread runs the next. The
//! writer stores what a group produced (rows, state changes, dead letters)
//! in the group's transaction.
//!
//! The function thread holds each function's state with an undo log. A
//! write is settled (dropped from the log) only once the writer reports the
//! transaction that stored it committed; until then it can be taken back. When
//! the queue refuses a submission, or a transaction fails, the writer rewinds
//! the function thread to the marks taken before that work (which also takes
//! back everything run after it, including the group ahead) and has the work
//! after it run again, so every stored state is what the functions computed
//! from committed inputs only, exactly as if they ran in the writer's
//! transaction. See ARCHITECTURE.md, *Functions beside the writer*.

use super::function_tables;
use crate::functions::state::StateChange;
use crate::functions::{Compiled, DeadLetter, Dispatch, FunctionSet, SetError};
use crate::ids::IdMint;
use crate::ingest::{EncodedRow, Router};
use crate::metrics::Metrics;
use rusqlite::Connection;
use sluice_event::LazyView;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::mpsc;

/// What a piece of work turned into.
#[derive(Debug, Default)]
pub(crate) struct Produced {
    /// Rows to insert (forwarded inputs and function outputs).
    pub rows: Vec<EncodedRow>,
    /// Inputs that failed.
    pub dead: Vec<DeadLetter>,
}

/// Work for the function thread, in the order the writer commits it.
#[derive(Debug, Clone)]
pub(crate) enum Work {
    /// A submission's rows (copied only when a rewind runs them again).
    Rows(Vec<EncodedRow>),
    /// The tick of the named function, at `now_ms`.
    Tick { function: String, now_ms: i64 },
}

/// One piece of work, done.
#[derive(Debug, Default)]
pub(crate) struct Done {
    /// The state marks before it: a rewind to here takes it back.
    pub before: Vec<usize>,
    /// Its rows and dead letters.
    pub produced: Produced,
    /// Its state changes, per function, to store with its rows.
    pub changes: Vec<(Arc<str>, Vec<StateChange>)>,
}

/// A run of work, done, in order.
#[derive(Debug, Default)]
pub(crate) struct Ran {
    pub done: VecDeque<Done>,
    /// The state marks after the last piece.
    pub after: Vec<usize>,
}

/// The functions with what they need around them; lives on the function thread.
struct Functions {
    functions: FunctionSet,
    router: Arc<Router>,
    metrics: Arc<Metrics>,
}

impl Functions {
    fn run(&mut self, work: &[Work]) -> Ran {
        let done = work
            .iter()
            .map(|w| {
                self.piece(|f| match w {
                    Work::Rows(rows) => f.process(rows),
                    Work::Tick { function, now_ms } => f.tick(function, *now_ms),
                })
            })
            .collect();
        self.ran(done)
    }

    /// One piece of work, with the marks before it and its state changes.
    fn piece(&mut self, work: impl FnOnce(&mut Self) -> Produced) -> Done {
        let before = self.functions.marks();
        let produced = work(self);
        let changes = self.functions.changes(&before);
        Done {
            before,
            produced,
            changes,
        }
    }

    /// Pieces done, with the marks after the last.
    fn ran(&self, done: VecDeque<Done>) -> Ran {
        Ran {
            done,
            after: self.functions.marks(),
        }
    }

    /// Runs the functions on a submission's events.
    fn process(&mut self, rows: &[EncodedRow]) -> Produced {
        let mut out = Produced::default();
        for (stream, bytes) in rows {
            // The header is all the host reads; the guests check what they read.
            let Ok(event) = LazyView::parse(bytes) else {
                // Encoded by `Ingest` a moment ago, so this does not happen; queue it as it is.
                out.rows.push((*stream, bytes.clone()));
                continue;
            };
            let d = self.functions.dispatch(&event, bytes);
            if d.forward_input {
                out.rows.push((*stream, bytes.clone()));
            }
            self.collect(d, &mut out);
        }
        out
    }

    /// Runs the tick of function `name`.
    fn tick(&mut self, name: &str, now_ms: i64) -> Produced {
        let mut out = Produced::default();
        if let Some(i) = self.functions.index_of(name) {
            let d = self.functions.tick(i, now_ms);
            self.collect(d, &mut out);
        }
        out
    }

    fn collect(&self, d: Dispatch, out: &mut Produced) {
        for bytes in d.outputs {
            // Written by the function host a moment ago: the subject is all
            // that routing reads.
            let Ok(event) = LazyView::parse(&bytes) else {
                continue;
            };
            match self.router.route(event.subject) {
                Some(stream) => out.rows.push((stream, bytes)),
                None => tracing::warn!(
                    event_id = %event.id,
                    subject = %event.subject,
                    "No stream takes this function output; it is not queued"
                ),
            }
        }
        out.dead.extend(d.dead);
    }

    /// Instances and init for every function, as one piece of work.
    fn warm(&mut self) -> Ran {
        let done = self.piece(|f| Produced {
            rows: Vec::new(),
            dead: f.functions.warm(),
        });
        self.ran(VecDeque::from([done]))
    }

    fn settle(&mut self, marks: &[usize]) {
        self.functions.settle(marks);
        self.metrics.functions_suspended.store(
            self.functions.suspended() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }
}

/// A function's state entries, for tests.
#[cfg(test)]
type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// What the writer asks of the function thread; done in order.
enum Request {
    /// Run this work; answered with a [`Ran`].
    Run(Arc<[Work]>),
    /// Undo every state write since these marks.
    Rollback(Vec<usize>),
    /// The writes before these marks are committed.
    Settle(Vec<usize>),
    /// Instantiate and init every function; answered with a [`Ran`].
    Warm,
    /// Run these functions from now on.
    Replace(Box<FunctionSet>),
    /// The named function's state entries (tests).
    #[cfg(test)]
    StateOf(String, mpsc::Sender<Option<Entries>>),
}

/// Requests a writer can have sent before it takes an answer: a group's
/// run, the next group's, a rollback, a settle, and slack.
const REQUESTS: usize = 8;

/// The writer's handle on the function thread.
pub(crate) struct Stage {
    requests: Option<mpsc::SyncSender<Request>>,
    answers: mpsc::Receiver<Ran>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Runs and warms sent whose answer is not taken yet.
    outstanding: usize,
    /// No functions: the writer inserts submissions as they are.
    passthrough: bool,
    ids: Arc<IdMint>,
    metrics: Arc<Metrics>,
    dead_letter_max: u64,
}

impl Stage {
    /// Gives the compiled functions their stored state and starts the
    /// function thread.
    pub(crate) fn start(
        compiled: Compiled,
        conn: &Connection,
        router: Arc<Router>,
        ids: Arc<IdMint>,
        metrics: Arc<Metrics>,
        dead_letter_max: u64,
    ) -> Result<Stage, SetError> {
        let functions = start(compiled, conn, &ids, &metrics)?;
        let passthrough = functions.is_empty();
        let (requests, inbox) = mpsc::sync_channel(REQUESTS);
        let (answer, answers) = mpsc::sync_channel(REQUESTS);
        let mut functions = Functions {
            functions,
            router,
            metrics: metrics.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("functions".into())
            .spawn(move || {
                for request in inbox {
                    let ran = match request {
                        Request::Run(work) => functions.run(&work),
                        Request::Warm => functions.warm(),
                        Request::Rollback(marks) => {
                            functions.functions.rollback(&marks);
                            continue;
                        }
                        Request::Settle(marks) => {
                            functions.settle(&marks);
                            continue;
                        }
                        Request::Replace(set) => {
                            functions.functions = *set;
                            continue;
                        }
                        #[cfg(test)]
                        Request::StateOf(name, reply) => {
                            let state = functions.functions.index_of(&name).map(|i| {
                                functions.functions.functions()[i]
                                    .state()
                                    .entries()
                                    .map(|(k, v)| (k.to_vec(), v.to_vec()))
                                    .collect()
                            });
                            let _ = reply.send(state);
                            continue;
                        }
                    };
                    if answer.send(ran).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| SetError::Function {
                name: String::new(),
                message: format!("cannot start the function thread: {e}"),
            })?;
        Ok(Stage {
            requests: Some(requests),
            answers,
            thread: Some(thread),
            outstanding: 0,
            passthrough,
            ids,
            metrics,
            dead_letter_max,
        })
    }

    /// No functions: rows go straight to the streams.
    pub(crate) fn is_passthrough(&self) -> bool {
        self.passthrough
    }

    /// Most dead letters kept.
    pub(crate) fn dead_letter_max(&self) -> u64 {
        self.dead_letter_max
    }

    fn request(&self, request: Request) {
        // The thread stops only when this handle drops its sender.
        if let Some(requests) = &self.requests
            && requests.send(request).is_err()
        {
            panic!("the function thread stopped before the queue writer");
        }
    }

    /// Has `work` run after everything sent before; its answer comes from
    /// [`Stage::take`] in the order sent.
    pub(crate) fn send(&mut self, work: Arc<[Work]>) {
        self.request(Request::Run(work));
        self.outstanding += 1;
    }

    /// The answer to the oldest run not taken yet; blocks until it is done.
    pub(crate) fn take(&mut self) -> Ran {
        assert!(self.outstanding > 0, "no run to take");
        self.outstanding -= 1;
        match self.answers.recv() {
            Ok(ran) => ran,
            Err(_) => panic!("the function thread stopped before the queue writer"),
        }
    }

    /// Undoes every state write since `marks`: a run after them must be
    /// taken first (its answer is void).
    pub(crate) fn rollback(&mut self, marks: Vec<usize>) {
        self.request(Request::Rollback(marks));
    }

    /// The writes before `marks` are committed.
    pub(crate) fn settle(&mut self, marks: Vec<usize>) {
        self.request(Request::Settle(marks));
    }

    /// Creates the instances and runs init; the answer holds the dead
    /// letters of inits that failed and the state they wrote.
    pub(crate) fn warm(&mut self) -> Ran {
        self.request(Request::Warm);
        self.outstanding += 1;
        self.take()
    }

    /// Replaces the functions (config reload) with their state read afresh
    /// from `conn`. Only between groups: nothing may be outstanding.
    pub(crate) fn replace(
        &mut self,
        compiled: Compiled,
        conn: &Connection,
    ) -> Result<(), SetError> {
        debug_assert_eq!(self.outstanding, 0, "replaced with work in flight");
        let functions = start(compiled, conn, &self.ids, &self.metrics)?;
        self.passthrough = functions.is_empty();
        self.request(Request::Replace(Box::new(functions)));
        Ok(())
    }

    /// The state of function `name`, as the function thread sees it now.
    #[cfg(test)]
    pub(crate) fn state_of(&self, name: &str) -> Option<Entries> {
        let (reply, answer) = mpsc::channel();
        self.request(Request::StateOf(name.to_owned(), reply));
        answer.recv().ok().flatten()
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        self.requests.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Instances of the compiled functions with their state as `conn` has it
/// committed.
fn start(
    compiled: Compiled,
    conn: &Connection,
    ids: &Arc<IdMint>,
    metrics: &Arc<Metrics>,
) -> Result<FunctionSet, SetError> {
    compiled.start(ids.clone(), metrics.clone(), |name| {
        function_tables::load_state(conn, name)
    })
}

/// Stores a piece of work's state changes and dead letters in `tx`.
pub(crate) fn store(
    tx: &rusqlite::Transaction<'_>,
    done: &Done,
    dead_letter_max: u64,
) -> rusqlite::Result<()> {
    for (function, changes) in &done.changes {
        function_tables::store_state(tx, function, changes)?;
    }
    function_tables::add_dead_letters(tx, &done.produced.dead, dead_letter_max)
}
