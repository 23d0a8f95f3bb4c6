//! One configured function: its compiled program, a warm instance reused
//! across calls (re-instantiated after a trap), per-call limits, and its
//! durable state, which outlives instances.

use super::imports::{CallState, GuestData, HostFault, LogLine};
use super::program::Program;
use super::state::StateMap;
use crate::config::FunctionConfig;
use crate::metrics::FailureKind;
use crate::subject::Subscriptions;
use sluice_event::{Event, abi};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmi::{Engine, Instance, Linker, Memory, Store, StoreLimitsBuilder, TrapCode, TypedFunc};

/// What a call is about.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// An event, postcard-encoded.
    Event(&'a [u8]),
    /// The schedule fired at this wall-clock time (ms).
    Tick(i64),
}

/// Why a call failed: its kind, which is counted, and the message that goes
/// into the dead letter.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CallError {
    /// What went wrong, as counted in health.
    pub kind: FailureKind,
    /// What went wrong, in words (see `docs/function-abi.md`, *Failures*).
    pub message: String,
}

impl CallError {
    /// The module broke the function ABI.
    fn abi(message: impl Into<String>) -> CallError {
        CallError {
            kind: FailureKind::Abi,
            message: message.into(),
        }
    }

    /// The same failure, saying where it happened.
    fn at(self, place: &str) -> CallError {
        CallError {
            message: format!("{place}: {}", self.message),
            ..self
        }
    }
}

/// Everything one call did, for the pipeline, logs and `sluice fn test`.
#[derive(Debug)]
pub struct CallReport {
    /// `Err` says why the call failed (its outputs and state writes are gone).
    pub outcome: Result<(), CallError>,
    /// Events the call emitted, encoded as the guest wrote them (not yet
    /// stamped; [`FunctionSet::call_alone`](super::FunctionSet::call_alone)
    /// stamps them).
    pub emitted: Vec<Vec<u8>>,
    /// Lines the guest logged.
    pub logs: Vec<LogLine>,
    /// Log lines over the per-call limit.
    pub logs_dropped: u32,
    /// Fuel consumed, including a (re-)instantiation and init before the call.
    pub fuel: u64,
    /// Wall time of the call; zero unless the call was timed.
    pub elapsed: Duration,
    /// The tick entry point returned [`abi::TICK_AGAIN`]: it has more to do
    /// in this tick and would like to be called again at once.
    pub again: bool,
}

impl CallReport {
    /// The emitted events, decoded.
    pub fn events(&self) -> Vec<Event> {
        self.emitted
            .iter()
            .filter_map(|bytes| Event::decode(bytes).ok())
            .collect()
    }
}

/// The typed entry points of a live instance.
struct Entry {
    /// The exported memory, if there is one.
    memory: Option<Memory>,
    alloc: TypedFunc<i32, i32>,
    on_event: TypedFunc<(i32, i32), i32>,
    on_tick: Option<TypedFunc<i64, i32>>,
}

/// A configured function and its live instance.
pub struct Function {
    /// Its config (name, subscriptions, limits, settings).
    pub config: FunctionConfig,
    /// The config's name, shared.
    name: Arc<str>,
    /// The config's subscriptions, ready to match.
    subscriptions: Subscriptions,
    settings: Vec<u8>,
    program: Program,
    engine: Engine,
    /// Always `Some` between calls; taken only to rebuild it after a trap.
    store: Option<Store<GuestData>>,
    entry: Option<Entry>,
    /// The instance trapped: the store is rebuilt before the next call.
    stale: bool,
    /// Failures since the last success.
    pub failures_in_row: u32,
    /// Why the function no longer runs, once suspended.
    pub suspended: Option<String>,
}

impl Function {
    /// A function with its loaded state; the instance is created on first use.
    pub fn new(
        config: FunctionConfig,
        program: Program,
        engine: &Engine,
        state: BTreeMap<Vec<u8>, Vec<u8>>,
    ) -> Result<Function, String> {
        let settings = postcard::to_allocvec(&config.settings()?)
            .map_err(|e| format!("cannot encode the function's config: {e}"))?;
        let data = GuestData {
            limits: limits(&config),
            state: StateMap::new(state, config.state_max.bytes() as usize),
            call: CallState::default(),
            memory: None,
        };
        Ok(Function {
            name: Arc::from(config.name.as_str()),
            subscriptions: Subscriptions::new(&config.subscribe),
            settings,
            program,
            engine: engine.clone(),
            store: Some(new_store(engine, data)),
            entry: None,
            stale: false,
            config,
            failures_in_row: 0,
            suspended: None,
        })
    }

    /// The function's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The function's name, shared: for callers that keep it across calls
    /// that borrow the function set.
    pub fn shared_name(&self) -> Arc<str> {
        Arc::clone(&self.name)
    }

    /// Whether the function subscribes to `subject`.
    pub fn subscribes_to(&self, subject: &str) -> bool {
        self.subscriptions.matches(subject)
    }

    /// The function's durable state.
    pub fn state(&self) -> &StateMap {
        &self.store().data().state
    }

    /// The function's durable state, to roll back or commit.
    pub fn state_mut(&mut self) -> &mut StateMap {
        &mut self.store_mut().data_mut().state
    }

    /// Whether a live instance is ready for the next call.
    pub fn has_instance(&self) -> bool {
        self.entry.is_some()
    }

    /// Creates the instance and runs init now, if there is none yet.
    pub fn warm(&mut self, linker: &Linker<GuestData>) -> CallReport {
        let started = Some(Instant::now());
        self.begin_call();
        let mark = self.state().mark();
        let outcome = self.ensure_instance(linker);
        self.finish(outcome, mark, started)
    }

    /// Runs one call with the configured limits; `timed` measures its
    /// [`CallReport::elapsed`] (else zero: the clock is read twice per call
    /// otherwise, a few percent of a short call).
    pub fn call(
        &mut self,
        linker: &Linker<GuestData>,
        input: Input<'_>,
        timed: bool,
    ) -> CallReport {
        let started = timed.then(Instant::now);
        self.begin_call();
        let mark = self.state().mark();
        let outcome = self
            .ensure_instance(linker)
            .and_then(|()| self.enter(input));
        let again = matches!(outcome, Ok(true));
        let mut report = self.finish(outcome.map(|_| ()), mark, started);
        report.again = again;
        report
    }

    fn begin_call(&mut self) {
        if self.stale {
            self.fresh_store();
        }
        let max_emit = self.config.max_emit;
        let max_emit_bytes = self.config.max_emit_bytes.bytes();
        let fuel = self.config.fuel;
        let store = self.store_mut();
        store.data_mut().call = CallState {
            max_emit,
            max_emit_bytes,
            ..CallState::default()
        };
        // Fuel is only unavailable when metering is off, and the engine always meters.
        let _ = store.set_fuel(fuel);
    }

    fn finish(
        &mut self,
        outcome: Result<(), CallError>,
        mark: usize,
        started: Option<Instant>,
    ) -> CallReport {
        let fuel_left = self.store().get_fuel().unwrap_or(0);
        let call = std::mem::take(&mut self.store_mut().data_mut().call);
        let emitted = if outcome.is_ok() {
            call.emitted
        } else {
            self.state_mut().rollback(mark);
            Vec::new()
        };
        CallReport {
            outcome,
            emitted,
            logs: call.logs,
            logs_dropped: call.logs_dropped,
            fuel: self.config.fuel.saturating_sub(fuel_left),
            elapsed: started.map_or(Duration::ZERO, |t| t.elapsed()),
            again: false,
        }
    }

    /// Instantiates, checks the ABI version and runs init, unless already done.
    fn ensure_instance(&mut self, linker: &Linker<GuestData>) -> Result<(), CallError> {
        if self.entry.is_some() {
            return Ok(());
        }
        let result = self.instantiate(linker);
        if result.is_err() {
            self.discard_instance();
        }
        result
    }

    fn instantiate(&mut self, linker: &Linker<GuestData>) -> Result<(), CallError> {
        let module = self.program.module.clone();
        let (has_tick, has_init) = (self.program.has_tick, self.program.has_init);
        let store = self.store_mut();
        let instance = linker
            .instantiate_and_start(&mut *store, &module)
            .map_err(|e| describe(&e).at("instantiate"))?;
        let version: TypedFunc<(), i32> = typed(&instance, store, abi::EXPORT_ABI_VERSION)?;
        let memory = instance.get_memory(&*store, abi::EXPORT_MEMORY);
        store.data_mut().memory = memory;
        let entry = Entry {
            memory,
            alloc: typed(&instance, store, abi::EXPORT_ALLOC)?,
            on_event: typed(&instance, store, abi::EXPORT_ON_EVENT)?,
            on_tick: if has_tick {
                Some(typed(&instance, store, abi::EXPORT_ON_TICK)?)
            } else {
                None
            },
        };
        let init: Option<TypedFunc<(i32, i32), i32>> = if has_init {
            Some(typed(&instance, store, abi::EXPORT_INIT)?)
        } else {
            None
        };
        let v = version
            .call(&mut *store, ())
            .map_err(|e| describe(&e).at(abi::EXPORT_ABI_VERSION))?;
        if v != abi::ABI_VERSION {
            return Err(CallError::abi(format!(
                "the module speaks function ABI version {v}; this gateway runs version {}",
                abi::ABI_VERSION
            )));
        }
        if let Some(init) = init {
            let settings = self.settings.clone();
            let (ptr, len) = self.hand_over(&entry, &settings)?;
            let code = init
                .call(self.store_mut(), (ptr, len))
                .map_err(|e| describe(&e).at("init"))?;
            if code != abi::OK {
                return Err(returned(code).at("init"));
            }
        }
        self.entry = Some(entry);
        Ok(())
    }

    /// Runs the entry point for `input` on the live instance; `Ok(true)` if a
    /// tick asked to be called again ([`abi::TICK_AGAIN`]).
    fn enter(&mut self, input: Input<'_>) -> Result<bool, CallError> {
        let is_tick = matches!(input, Input::Tick(_));
        let Some(entry) = self.entry.take() else {
            return Err(CallError::abi("no instance"));
        };
        let result = match input {
            Input::Event(bytes) => {
                // The ABI promises guests whole events with UTF-8 strings;
                // the SDK reads them without checking again.
                debug_assert!(sluice_event::EventView::parse(bytes).is_ok());
                self.hand_over(&entry, bytes).and_then(|(ptr, len)| {
                    entry
                        .on_event
                        .call(self.store_mut(), (ptr, len))
                        .map_err(|e| describe(&e))
                })
            }
            Input::Tick(now_ms) => match &entry.on_tick {
                Some(on_tick) => on_tick
                    .call(self.store_mut(), now_ms)
                    .map_err(|e| describe(&e)),
                None => Err(CallError::abi(format!(
                    "no exported `{}`",
                    abi::EXPORT_ON_TICK
                ))),
            },
        };
        match result {
            Ok(code) => {
                self.entry = Some(entry);
                match code {
                    abi::OK => Ok(false),
                    abi::TICK_AGAIN if is_tick => Ok(true),
                    _ => Err(returned(code)),
                }
            }
            Err(e) => {
                // A trap may have left the guest's memory half-updated: start afresh next time.
                self.discard_instance();
                Err(e)
            }
        }
    }

    /// Copies `bytes` into a buffer from the guest's allocator.
    fn hand_over(&mut self, entry: &Entry, bytes: &[u8]) -> Result<(i32, i32), CallError> {
        let len = i32::try_from(bytes.len()).map_err(|_| CallError::abi("input too large"))?;
        let store = self.store_mut();
        let ptr = entry
            .alloc
            .call(&mut *store, len)
            .map_err(|e| describe(&e).at(abi::EXPORT_ALLOC))?;
        let memory = entry
            .memory
            .ok_or_else(|| CallError::abi("no exported memory"))?;
        let at = usize::try_from(ptr)
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| CallError::abi(format!("{} returned {ptr}", abi::EXPORT_ALLOC)))?;
        memory.write(&mut *store, at, bytes).map_err(|_| {
            CallError::abi(format!(
                "{} returned a buffer outside the memory",
                abi::EXPORT_ALLOC
            ))
        })?;
        Ok((ptr, len))
    }

    /// Throws the instance away (its store is rebuilt before the next call,
    /// after this call's fuel has been read).
    pub(crate) fn discard_instance(&mut self) {
        self.entry = None;
        self.stale = true;
    }

    /// A store without instances, holding the same state.
    fn fresh_store(&mut self) {
        self.stale = false;
        if let Some(old) = self.store.take() {
            let mut data = old.into_data();
            data.limits = limits(&self.config);
            data.memory = None;
            self.store = Some(new_store(&self.engine, data));
        }
    }

    fn store(&self) -> &Store<GuestData> {
        self.store
            .as_ref()
            .expect("the store is only taken inside discard_instance")
    }

    fn store_mut(&mut self) -> &mut Store<GuestData> {
        self.store
            .as_mut()
            .expect("the store is only taken inside discard_instance")
    }
}

/// An exported function with the signature ABI v1 gives it.
fn typed<P: wasmi::WasmParams, R: wasmi::WasmResults>(
    instance: &Instance,
    store: &Store<GuestData>,
    name: &str,
) -> Result<TypedFunc<P, R>, CallError> {
    instance
        .get_typed_func(store, name)
        .map_err(|e| CallError::abi(format!("export `{name}`: {e}")))
}

fn limits(config: &FunctionConfig) -> wasmi::StoreLimits {
    StoreLimitsBuilder::new()
        .memory_size(config.memory_max.bytes() as usize)
        .memories(1)
        .tables(4)
        .table_elements(100_000)
        .instances(1)
        .trap_on_grow_failure(true)
        .build()
}

fn new_store(engine: &Engine, data: GuestData) -> Store<GuestData> {
    let mut store = Store::new(engine, data);
    store.limiter(|d| &mut d.limits);
    store
}

/// An entry point returned `code` instead of `OK`.
fn returned(code: i32) -> CallError {
    CallError {
        kind: FailureKind::NonZeroReturn,
        message: format!("returned {code}"),
    }
}

/// What a failed wasmi call was: a host function's fault as it was raised,
/// a trap by its code, and anything else (linking, signatures) an ABI breach.
fn describe(e: &wasmi::Error) -> CallError {
    if let Some(HostFault(fault)) = e.downcast_ref::<HostFault>() {
        return fault.clone();
    }
    let (kind, message) = match e.as_trap_code() {
        Some(TrapCode::OutOfFuel) => (FailureKind::Fuel, "trap: out of fuel".into()),
        Some(TrapCode::UnreachableCodeReached) => (FailureKind::Trap, "trap: unreachable".into()),
        Some(TrapCode::GrowthOperationLimited) => {
            (FailureKind::Memory, "trap: memory cap reached".into())
        }
        Some(code) => (FailureKind::Trap, format!("trap: {code}")),
        None => (FailureKind::Abi, e.to_string()),
    };
    CallError { kind, message }
}
