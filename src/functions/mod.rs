//! The function host: WebAssembly functions (wasmi) run on the events their
//! subscriptions match and on their schedules, inside the queue writer's
//! transaction, so that a reading's outputs, the functions' state changes and
//! any dead letters commit together. `docs/function-abi.md` is the contract
//! with the guests.
//!
//! Knows wasmi, not SQL: the queue writer loads and stores state and dead
//! letters around the calls made here.

mod function;
mod imports;
mod program;
pub mod state;

pub use crate::metrics::FailureKind;
pub use function::{CallError, CallReport, Function, Input};
pub use imports::{GuestData, LogLine};
pub use program::{Program, ProgramError, engine};

use crate::config::{Config, Forward, FunctionConfig, MAX_CHAIN, Problem};
use crate::ids::IdMint;
use crate::metrics::Metrics;
use sluice_event::{EventId, EventWriter, LazyView, WriterBuffers, abi};
use state::StateChange;
use std::collections::BTreeMap;
use std::sync::Arc;
use wasmi::Linker;

/// Every function module of `config` that does not compile or does not
/// follow the function ABI, at its key path (`sluice check`; the runtime
/// compiles the modules itself when it starts).
pub fn check_modules(config: &Config) -> Vec<Problem> {
    config
        .functions
        .iter()
        .enumerate()
        .filter_map(|(i, f)| {
            let e = Program::load(f).err()?;
            Some(Problem::at_key(
                format!("functions[{i}].module"),
                e.to_string(),
            ))
        })
        .collect()
}

/// An input a function could not handle, kept for inspection.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The function that failed.
    pub function: String,
    /// Why (see `docs/function-abi.md`, *Failures*).
    pub error: String,
    /// The input event, encoded; `None` for a tick.
    pub event: Option<Vec<u8>>,
    /// When, in ms since the Unix epoch.
    pub at_ms: i64,
}

/// What running the functions on one event (or one tick) produced.
#[derive(Debug, Default)]
pub struct Dispatch {
    /// Whether the input event itself is to be queued.
    pub forward_input: bool,
    /// Function outputs to be queued, stamped and encoded.
    pub outputs: Vec<Vec<u8>>,
    /// Failed inputs.
    pub dead: Vec<DeadLetter>,
}

/// Every configured function, compiled, with a shared linker.
pub struct FunctionSet {
    functions: Vec<Function>,
    linker: Linker<GuestData>,
    forward: Forward,
    ids: Arc<IdMint>,
    metrics: Arc<Metrics>,
    /// Each function's own counters, by index.
    counters: Vec<Arc<crate::metrics::FunctionCounters>>,
    /// Buffers [`stamp`] writes outputs with.
    stamping: Stamping,
}

/// Why a function set could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SetError {
    /// A module could not be loaded.
    #[error("function `{name}`: {source}")]
    Program {
        /// The function.
        name: String,
        /// Why.
        #[source]
        source: ProgramError,
    },
    /// Anything else about one function.
    #[error("function `{name}`: {message}")]
    Function {
        /// The function.
        name: String,
        /// Why.
        message: String,
    },
}

/// The compiled modules of a config, not yet given their state.
pub struct Compiled {
    engine: wasmi::Engine,
    functions: Vec<(FunctionConfig, Program)>,
    forward: Forward,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.functions.iter().map(|(c, _)| &c.name))
            .finish()
    }
}

impl Compiled {
    /// Reads and compiles every function of `config`.
    pub fn new(config: &Config) -> Result<Compiled, SetError> {
        Compiled::with_engine(config, engine())
    }

    /// As [`Compiled::new`], on `engine` instead of [`engine()`] (benchmarks
    /// compare engine settings with it).
    pub fn with_engine(config: &Config, engine: wasmi::Engine) -> Result<Compiled, SetError> {
        let functions = config
            .functions
            .iter()
            .map(|f| {
                Program::compile(&engine, &f.module)
                    .map(|p| (f.clone(), p))
                    .map_err(|source| SetError::Program {
                        name: f.name.clone(),
                        source,
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Compiled {
            engine,
            functions,
            forward: config.pipeline.forward,
        })
    }

    /// Gives each function its stored state (`load` reads it by function name).
    pub fn start<E: std::fmt::Display>(
        self,
        ids: Arc<IdMint>,
        metrics: Arc<Metrics>,
        mut load: impl FnMut(&str) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, E>,
    ) -> Result<FunctionSet, SetError> {
        let linker = imports::linker(&self.engine).map_err(|e| SetError::Function {
            name: String::new(),
            message: e.to_string(),
        })?;
        let mut functions = Vec::with_capacity(self.functions.len());
        for (config, program) in self.functions {
            let name = config.name.clone();
            let err = |message: String| SetError::Function {
                name: name.clone(),
                message,
            };
            let state = load(&config.name).map_err(|e| err(format!("cannot load state: {e}")))?;
            functions.push(Function::new(config, program, &self.engine, state).map_err(err)?);
        }
        let counters = functions
            .iter()
            .map(|f| metrics.function(f.name()))
            .collect();
        Ok(FunctionSet {
            counters,
            functions,
            linker,
            forward: self.forward,
            ids,
            metrics,
            stamping: Stamping::default(),
        })
    }
}

impl FunctionSet {
    /// Whether there are no functions at all (the writer's fast path).
    pub fn is_empty(&self) -> bool {
        self.functions.is_empty()
    }

    /// The functions, in config order.
    pub fn functions(&self) -> &[Function] {
        &self.functions
    }

    /// Creates every instance and runs each init now, so that broken modules
    /// show up at start rather than on the first event. Failures are counted
    /// like failed calls.
    pub fn warm(&mut self) -> Vec<DeadLetter> {
        let mut dead = Vec::new();
        for i in 0..self.functions.len() {
            let report = self.functions[i].warm(&self.linker);
            self.log_guest(i, &report, None);
            if let Err(error) = report.outcome {
                self.failed(i, error, None, &mut dead);
            }
        }
        dead
    }

    /// Runs every function subscribed to `input` (and to what they emit, down
    /// the chain), and says what is to be queued.
    pub fn dispatch(&mut self, input: &LazyView<'_>, bytes: &[u8]) -> Dispatch {
        let claimed = self.claimed(input.subject);
        let mut d = Dispatch {
            forward_input: self.queues(claimed, false),
            ..Dispatch::default()
        };
        if !d.forward_input && !claimed {
            Metrics::add(&self.metrics.pipeline_discarded, 1);
        }
        if claimed {
            self.feed(input, bytes, 1, &mut d);
        }
        d
    }

    /// Calls the tick entry point of function `index`, and feeds its outputs
    /// on; again, up to [`abi::MAX_TICK_ROUNDS`] calls in all, for as long as
    /// it returns [`abi::TICK_AGAIN`] (each call with its own limits).
    pub fn tick(&mut self, index: usize, now_ms: i64) -> Dispatch {
        let mut d = Dispatch::default();
        if index < self.functions.len() {
            for _ in 0..abi::MAX_TICK_ROUNDS {
                if !self.run(index, Input::Tick(now_ms), None, 1, &mut d) {
                    break;
                }
            }
        }
        d
    }

    /// The index of the function called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.functions.iter().position(|f| f.name() == name)
    }

    /// Undo marks of every function's state, to roll back a submission.
    pub fn marks(&self) -> Vec<usize> {
        self.functions.iter().map(|f| f.state().mark()).collect()
    }

    /// Undoes the state writes made since `marks`.
    pub fn rollback(&mut self, marks: &[usize]) {
        for (f, &m) in self.functions.iter_mut().zip(marks) {
            f.state_mut().rollback(m);
        }
    }

    /// State changes since `marks`, per function name, to store.
    pub fn changes(&self, marks: &[usize]) -> Vec<(Arc<str>, Vec<StateChange>)> {
        self.functions
            .iter()
            .zip(marks)
            .map(|(f, &m)| (f, f.state().changes_since(m)))
            .filter(|(_, c)| !c.is_empty())
            .map(|(f, c)| (f.shared_name(), c))
            .collect()
    }

    /// The writes before `marks` are committed: drop that part of the undo logs.
    pub fn settle(&mut self, marks: &[usize]) {
        for (f, &m) in self.functions.iter_mut().zip(marks) {
            f.state_mut().settle(m);
        }
    }

    /// How many functions are suspended.
    pub fn suspended(&self) -> usize {
        self.functions
            .iter()
            .filter(|f| f.suspended.is_some())
            .count()
    }

    /// Creates the instance of function `index` and runs its init, reporting
    /// like a call (for `sluice fn test`).
    pub fn warm_alone(&mut self, index: usize) -> CallReport {
        self.functions[index].warm(&self.linker)
    }

    /// Throws function `index`'s instance away, as a trap does, and creates
    /// it again with its init, reporting like a call (for benchmarks and
    /// tests of the restart after a trap).
    pub fn restart_alone(&mut self, index: usize) -> CallReport {
        self.functions[index].discard_instance();
        self.functions[index].warm(&self.linker)
    }

    /// Runs one call of function `index` without feeding outputs anywhere,
    /// stamping outputs as the pipeline would (for `sluice fn test`). A tick
    /// is called again while it returns [`abi::TICK_AGAIN`], as
    /// [`FunctionSet::tick`] does, and reported as one call: outputs, logs,
    /// fuel and time added up.
    pub fn call_alone(
        &mut self,
        index: usize,
        input: Input<'_>,
        cause: Option<&LazyView<'_>>,
    ) -> CallReport {
        let mut report = self.functions[index].call(&self.linker, input, true);
        let mut rounds = 1;
        while report.again && rounds < abi::MAX_TICK_ROUNDS {
            let next = self.functions[index].call(&self.linker, input, true);
            rounds += 1;
            report.outcome = next.outcome;
            report.emitted.extend(next.emitted);
            report.logs.extend(next.logs);
            report.logs_dropped += next.logs_dropped;
            report.fuel += next.fuel;
            report.elapsed += next.elapsed;
            report.again = next.again;
        }
        let now = crate::clock::now_ms();
        let name = self.functions[index].name();
        for bytes in &mut report.emitted {
            if let Ok(out) = LazyView::parse(bytes) {
                *bytes = stamp(&out, name, cause, &self.ids, now, &mut self.stamping);
            }
        }
        report
    }

    /// Whether any function subscribes to `subject`.
    fn claimed(&self, subject: &str) -> bool {
        self.functions.iter().any(|f| f.subscribes_to(subject))
    }

    /// Whether an event goes to the queue, given whether a function takes
    /// it: see [`Forward`].
    fn queues(&self, claimed: bool, is_output: bool) -> bool {
        match self.forward {
            Forward::All => true,
            Forward::Unclaimed => !claimed,
            Forward::None => is_output && !claimed,
        }
    }

    fn feed(&mut self, event: &LazyView<'_>, bytes: &[u8], depth: usize, d: &mut Dispatch) {
        for i in 0..self.functions.len() {
            if !self.functions[i].subscribes_to(event.subject) {
                continue;
            }
            if depth > MAX_CHAIN {
                let error = CallError {
                    kind: FailureKind::ChainTooDeep,
                    message: format!("chain deeper than {MAX_CHAIN}"),
                };
                self.failed(i, error, Some(bytes), &mut d.dead);
                continue;
            }
            self.run(i, Input::Event(bytes), Some(event), depth, d);
        }
    }

    /// One call of function `i`; on success its outputs are stamped, queued
    /// as configured, and fed to their own subscribers. Returns whether a
    /// tick asked to be called again.
    fn run(
        &mut self,
        i: usize,
        input: Input<'_>,
        cause: Option<&LazyView<'_>>,
        depth: usize,
        d: &mut Dispatch,
    ) -> bool {
        let input_bytes = match input {
            Input::Event(b) => Some(b),
            Input::Tick(_) => None,
        };
        if let Some(reason) = &self.functions[i].suspended {
            let error = format!("function suspended ({reason})");
            d.dead.push(self.dead_letter(i, error, input_bytes));
            return false;
        }
        let had_instance = self.functions[i].has_instance();
        // Timed only for the trace log, the one reader of the time here.
        let timed = tracing::enabled!(tracing::Level::TRACE);
        let report = self.functions[i].call(&self.linker, input, timed);
        Metrics::add(&self.metrics.functions_calls, 1);
        Metrics::add(&self.counters[i].calls, 1);
        self.log_guest(i, &report, cause.map(|c| c.id));
        if let Err(error) = report.outcome {
            self.failed(i, error, input_bytes, &mut d.dead);
            if had_instance {
                self.rewarm(i);
            }
            return false;
        }
        self.functions[i].failures_in_row = 0;
        let again = report.again;
        if report.emitted.is_empty() {
            return again;
        }
        let name = self.functions[i].shared_name();
        let now = crate::clock::now_ms();
        Metrics::add(&self.metrics.functions_emitted, report.emitted.len() as u64);
        Metrics::add(&self.counters[i].emitted, report.emitted.len() as u64);
        for emitted in report.emitted {
            // Checked whole by `emit` when the guest emitted it, and written
            // by `stamp` a moment ago: their headers are all that is read.
            let Ok(out) = LazyView::parse(&emitted) else {
                continue;
            };
            let bytes = stamp(&out, &name, cause, &self.ids, now, &mut self.stamping);
            let Ok(out) = LazyView::parse(&bytes) else {
                continue;
            };
            tracing::debug!(
                event_id = %out.id,
                cause = %out.cause.unwrap_or_default(),
                function = %name,
                subject = %out.subject,
                "Event emitted"
            );
            let claimed = self.claimed(out.subject);
            let queued = self.queues(claimed, true);
            if claimed {
                self.feed(&out, &bytes, depth + 1, d);
            }
            if queued {
                d.outputs.push(bytes);
            }
        }
        again
    }

    /// After a call that cost function `i` the instance it had (a trap),
    /// creates the next one at once, so that the next input's call is a warm
    /// one instead of paying for instantiation and init. If that fails,
    /// nothing is counted here: the next call tries again and reports the
    /// failure on that call, as before. (A call that failed to create an
    /// instance at all is not retried here, so a broken init costs one
    /// attempt per input, not two.)
    fn rewarm(&mut self, i: usize) {
        let f = &self.functions[i];
        if f.suspended.is_some() || f.has_instance() {
            return;
        }
        let report = self.functions[i].warm(&self.linker);
        self.log_guest(i, &report, None);
    }

    /// Counts a failure, dead-letters the input, and suspends the function
    /// after too many in a row.
    fn failed(
        &mut self,
        i: usize,
        error: CallError,
        input: Option<&[u8]>,
        dead: &mut Vec<DeadLetter>,
    ) {
        self.metrics.function_failed(error.kind);
        Metrics::add(&self.counters[i].failed, 1);
        let CallError {
            kind,
            message: error,
        } = error;
        let f = &mut self.functions[i];
        f.failures_in_row += 1;
        let event_id = input
            .and_then(|b| LazyView::parse(b).ok())
            .map(|e| e.id)
            .unwrap_or_default();
        tracing::warn!(function = %f.name(), event_id = %event_id, kind = ?kind, error = %error, "Function failed; input dead-lettered");
        if f.failures_in_row >= f.config.suspend_after && f.suspended.is_none() {
            tracing::error!(
                function = %f.name(),
                failures = f.failures_in_row,
                last_error = %error,
                "Function suspended after consecutive failures; it resumes on config reload (SIGHUP) or restart"
            );
            f.suspended = Some(format!(
                "{} failures in a row, last: {error}",
                f.failures_in_row
            ));
        }
        dead.push(self.dead_letter(i, error, input));
    }

    fn dead_letter(&self, i: usize, error: String, input: Option<&[u8]>) -> DeadLetter {
        DeadLetter {
            function: self.functions[i].name().to_owned(),
            error,
            event: input.map(<[u8]>::to_vec),
            at_ms: crate::clock::now_ms(),
        }
    }

    /// Passes the guest's log lines on to the gateway's log.
    fn log_guest(&self, i: usize, report: &CallReport, cause: Option<EventId>) {
        let function = self.functions[i].name();
        let event_id = cause.unwrap_or_default();
        for line in &report.logs {
            let message = &line.message;
            match line.level {
                0 => tracing::error!(function, event_id = %event_id, "{message}"),
                1 => tracing::warn!(function, event_id = %event_id, "{message}"),
                2 => tracing::info!(function, event_id = %event_id, "{message}"),
                3 => tracing::debug!(function, event_id = %event_id, "{message}"),
                _ => tracing::trace!(function, event_id = %event_id, "{message}"),
            }
        }
        if report.logs_dropped > 0 {
            tracing::debug!(
                function,
                dropped = report.logs_dropped,
                "Function log lines over the limit were dropped"
            );
        }
        tracing::trace!(function, event_id = %event_id, fuel = report.fuel, micros = report.elapsed.as_micros() as u64, "Function called");
    }
}

/// The buffers [`stamp`] writes with, kept from output to output so that
/// stamping one allocates only the output itself.
#[derive(Default)]
struct Stamping {
    buffers: WriterBuffers,
    subject: String,
}

/// The output `out` with what the host owns set: id, cause, producer,
/// subject prefix, and the device and time if the guest left them out. Its
/// readings, meta and raw payload are copied as encoded.
fn stamp(
    out: &LazyView<'_>,
    function: &str,
    cause: Option<&LazyView<'_>>,
    ids: &IdMint,
    now_ms: i64,
    scratch: &mut Stamping,
) -> Vec<u8> {
    let device = match cause {
        Some(c) if out.device.is_empty() => c.device,
        _ => out.device,
    };
    let subject = &mut scratch.subject;
    subject.clear();
    for part in ["fn/", function, "/", out.subject] {
        subject.push_str(part);
    }
    let buffers = std::mem::take(&mut scratch.buffers);
    let mut w = EventWriter::with_buffers(buffers, subject, device);
    w.id(ids.mint())
        .cause(cause.map(|c| c.id))
        .function(Some(function))
        .device_time_ms(out.device_time_ms)
        .gateway_time_ms(if out.gateway_time_ms == 0 {
            now_ms
        } else {
            out.gateway_time_ms
        })
        .readings_from(out)
        .meta_from(out);
    if let Some(raw) = out.raw() {
        w.raw(raw);
    }
    let bytes = w.finish();
    scratch.buffers = w.into_buffers();
    bytes
}
