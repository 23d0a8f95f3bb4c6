//! The functions as the queue writer sees them: a submission's events go in,
//! the rows to insert and the dead letters come out, and the state changes
//! are stored in the same transaction (or undone with the submission).

use super::function_tables;
use crate::functions::{Compiled, DeadLetter, Dispatch, FunctionSet, SetError};
use crate::ids::IdMint;
use crate::ingest::{EncodedRow, Router};
use crate::metrics::Metrics;
use rusqlite::{Connection, Transaction};
use sluice_event::EventView;
use std::sync::Arc;

/// What a submission or tick turned into.
#[derive(Debug, Default)]
pub(crate) struct Produced {
    /// Rows to insert (forwarded inputs and function outputs).
    pub rows: Vec<EncodedRow>,
    /// Inputs that failed.
    pub dead: Vec<DeadLetter>,
}

/// The function set with what the writer needs around it.
pub(crate) struct Pipeline {
    functions: FunctionSet,
    router: Arc<Router>,
    ids: Arc<IdMint>,
    metrics: Arc<Metrics>,
    dead_letter_max: u64,
}

impl Pipeline {
    /// Gives the compiled functions their stored state.
    pub(crate) fn start(
        compiled: Compiled,
        conn: &Connection,
        router: Arc<Router>,
        ids: Arc<IdMint>,
        metrics: Arc<Metrics>,
        dead_letter_max: u64,
    ) -> Result<Pipeline, SetError> {
        let functions = compiled.start(ids.clone(), metrics.clone(), |name| {
            function_tables::load_state(conn, name)
        })?;
        Ok(Pipeline {
            functions,
            router,
            ids,
            metrics,
            dead_letter_max,
        })
    }

    /// Replaces the functions (config reload); their state is read afresh.
    pub(crate) fn replace(
        &mut self,
        compiled: Compiled,
        conn: &Connection,
    ) -> Result<(), SetError> {
        let functions = compiled.start(self.ids.clone(), self.metrics.clone(), |name| {
            function_tables::load_state(conn, name)
        })?;
        self.functions = functions;
        Ok(())
    }

    /// The state of function `name`, as the pipeline sees it now.
    #[cfg(test)]
    pub(crate) fn state_of(&self, name: &str) -> Option<&crate::functions::state::StateMap> {
        let i = self.functions.index_of(name)?;
        Some(self.functions.functions()[i].state())
    }

    /// No functions: rows go straight to the streams.
    pub(crate) fn is_passthrough(&self) -> bool {
        self.functions.is_empty()
    }

    /// Creates the instances and runs init; returns the dead letters of
    /// inits that failed (state writes and dead letters are stored by
    /// [`Pipeline::store`] like a submission's).
    pub(crate) fn warm(&mut self) -> Vec<DeadLetter> {
        self.functions.warm()
    }

    /// Runs the functions on a submission's events.
    pub(crate) fn process(&mut self, rows: &[EncodedRow]) -> Produced {
        let mut out = Produced::default();
        for (stream, bytes) in rows {
            let Ok(event) = EventView::parse(bytes) else {
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
    pub(crate) fn tick(&mut self, name: &str, now_ms: i64) -> Produced {
        let mut out = Produced::default();
        if let Some(i) = self.functions.index_of(name) {
            let d = self.functions.tick(i, now_ms);
            self.collect(d, &mut out);
        }
        out
    }

    fn collect(&self, d: Dispatch, out: &mut Produced) {
        for bytes in d.outputs {
            // Written by the function host a moment ago.
            let Ok(event) = EventView::parse(&bytes) else {
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

    /// Undo marks, taken before a submission.
    pub(crate) fn marks(&self) -> Vec<usize> {
        self.functions.marks()
    }

    /// Undoes a submission's state writes (the queue refused it, or the transaction failed).
    pub(crate) fn rollback(&mut self, marks: &[usize]) {
        self.functions.rollback(marks);
    }

    /// Marks of the last commit: everything since is not stored yet.
    pub(crate) fn zero_marks(&self) -> Vec<usize> {
        vec![0; self.functions.functions().len()]
    }

    /// Undoes every state write since the last commit.
    pub(crate) fn rollback_all(&mut self) {
        self.functions.rollback(&self.zero_marks());
    }

    /// Stores the state changes since `marks` and the dead letters, in `tx`.
    pub(crate) fn store(
        &self,
        tx: &Transaction<'_>,
        marks: &[usize],
        dead: &[DeadLetter],
    ) -> rusqlite::Result<()> {
        for (function, changes) in self.functions.changes(marks) {
            function_tables::store_state(tx, function, &changes)?;
        }
        function_tables::add_dead_letters(tx, dead, self.dead_letter_max)
    }

    /// The transaction committed: the undo logs are no longer needed.
    pub(crate) fn committed(&mut self) {
        self.functions.committed();
        self.metrics.functions_suspended.store(
            self.functions.suspended() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }
}
