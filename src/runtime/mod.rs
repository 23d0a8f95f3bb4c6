//! The runtime as a value: `sluice run`, the demo, the tests and the
//! benchmarks all build the same [`Runtime`] from a [`Config`] and get
//! handles to it.
//!
//! One path for start and for reload: [`Runtime::start`] opens the queue and
//! every adapter (so a port in use fails before the gateway says it is
//! ready) and starts the rest; [`Runtime::apply`] takes a new config, works
//! out what changed ([`plan`]) and restarts only that, rolling back when a
//! new adapter cannot open. [`Runtime::shutdown`] stops intake first, gives
//! each adapter a deadline to resolve what is in flight, stops the uplink
//! and commits what is pending, all within a bound.

pub mod plan;
mod supervisor;

use crate::config::{AdapterConfig, Config};
use crate::control::ControlLink;
use crate::functions::{Compiled, SetError};
use crate::heartbeat::Heartbeat;
use crate::ingest::Ingest;
use crate::metrics::Metrics;
use crate::queue::{OpenError, Queue, Upkeep};
use crate::uplink::Uplink;
use sluice_adapter_common::{Downlink, DownlinkError, Resource, downlink};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use supervisor::{Core, Supervised};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long each adapter may take to resolve what is in flight when it is
/// stopped (shutdown or reload) before it is abandoned.
pub const ADAPTER_STOP_DEADLINE: Duration = Duration::from_secs(5);
/// How long a timer task (ticks, TTL sweeper) may take to stop; they only
/// hand a command to the writer.
const TASK_STOP_DEADLINE: Duration = Duration::from_secs(1);
/// How long the uplink may take to stop (it waits for acknowledgements of
/// batches in flight for up to 3 s of this, then says `offline`).
const UPLINK_STOP_DEADLINE: Duration = Duration::from_secs(5);

/// The longest the uplink may go without a beat before it counts as stuck.
const UPLINK_SILENCE: Duration = Duration::from_secs(5);

/// A running gateway: queue writer, uplink, housekeeping and adapters.
pub struct Runtime {
    config: Config,
    queue: Queue,
    metrics: Arc<Metrics>,
    uplink: Task,
    uplink_heartbeat: Heartbeat,
    /// The TTL sweeper, if any stream has a TTL.
    sweeper: Option<Task>,
    /// The ticks of scheduled functions, all under one stop.
    ticks: Task,
    adapters: BTreeMap<&'static str, Supervised>,
    /// Commands in and replies out through the uplink, if control is on.
    control: Option<ControlLink>,
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The queue (or a function) could not be opened.
    #[error(transparent)]
    Queue(#[from] OpenError),
    /// An adapter could not open a resource (for example its port is taken).
    #[error(transparent)]
    Adapter(#[from] sluice_adapter_common::OpenError),
}

/// Why a new config was not applied. The running config keeps running.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Some of the change needs a restart of the gateway.
    #[error("{}", .0.join("; "))]
    NeedsRestart(Vec<String>),
    /// A function did not load.
    #[error(transparent)]
    Functions(#[from] SetError),
    /// An adapter could not open; the previous adapters were restored.
    #[error("{0}; the previous adapters were restored")]
    Adapter(#[from] sluice_adapter_common::OpenError),
}

/// A task with a stop signal of its own.
struct Task {
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

impl Task {
    /// Spawns `make(stop)`.
    fn spawn<F>(make: impl FnOnce(watch::Receiver<bool>) -> F) -> Task
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let (stop, rx) = watch::channel(false);
        Task {
            stop,
            handle: tokio::spawn(make(rx)),
        }
    }

    /// Stops the task and waits at most `deadline` for it; aborts it after that.
    async fn stop(self, what: &str, deadline: Duration) {
        let _ = self.stop.send(true);
        let mut handle = self.handle;
        if tokio::time::timeout(deadline, &mut handle).await.is_err() {
            tracing::warn!(task = what, "Task overstayed its stop deadline; aborted");
            handle.abort();
        }
    }
}

impl Runtime {
    /// Opens the queue and every adapter, then starts the uplink,
    /// housekeeping and the adapters. Must be called inside a tokio runtime.
    pub async fn start(config: Config) -> Result<Runtime, StartError> {
        Runtime::start_controlled(config, None).await
    }

    /// Like [`Runtime::start`], with the uplink also carrying commands and
    /// replies for control (`sluice run`).
    pub async fn start_controlled(
        config: Config,
        control: Option<ControlLink>,
    ) -> Result<Runtime, StartError> {
        // ring is the only TLS crypto compiled in; installing it explicitly keeps
        // rustls from panicking if a dependency ever enables a second provider.
        let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
        let metrics = Arc::new(Metrics::default());
        metrics
            .started_ms
            .store(crate::clock::now_ms(), Ordering::Relaxed);
        let queue = Queue::open(&config, metrics.clone())?;
        let mut opened = Vec::new();
        for a in config.adapters() {
            match a.adapter().open().await {
                Ok(o) => opened.push((a, o)),
                Err(e) => {
                    drop(opened);
                    queue.close().await;
                    return Err(e.into());
                }
            }
        }
        let uplink_heartbeat = Heartbeat::default();
        let uplink = start_uplink(&config, &queue, &metrics, &uplink_heartbeat, &control)?;
        let mut runtime = Runtime {
            control,
            sweeper: start_sweeper(&config, &queue.upkeep()),
            ticks: schedule(&config, &queue.upkeep()),
            uplink,
            uplink_heartbeat,
            config,
            queue,
            metrics,
            adapters: BTreeMap::new(),
        };
        for (config, o) in opened {
            runtime.supervise(config, o);
        }
        Ok(runtime)
    }

    /// Applies a new config: restarts only what changed (an adapter, the
    /// functions, the uplink, stream bounds). Refuses what cannot change
    /// live, and rolls back adapters when a new one cannot open; either way
    /// the old config keeps serving. Returns what changed, in words.
    pub async fn apply(&mut self, new: Config) -> Result<String, ApplyError> {
        let mut plan = plan::plan(&self.config, &new).map_err(ApplyError::NeedsRestart)?;
        // A reload is also how suspended functions are resumed.
        let suspended = self.metrics.functions_suspended.load(Ordering::Relaxed) > 0;
        plan.functions |= suspended;
        // What can fail comes first, before anything running is touched.
        let compiled = match plan.functions {
            true => Some(Compiled::new(&new)?),
            false => None,
        };
        self.swap_adapters(&plan).await?;
        let upkeep = self.queue.upkeep();
        if let Some(compiled) = compiled {
            upkeep.install(compiled).await;
            let ticks = std::mem::replace(&mut self.ticks, schedule(&new, &upkeep));
            ticks.stop("function ticks", TASK_STOP_DEADLINE).await;
        }
        if plan.streams {
            if let Err(error) = upkeep.set_streams(new.queue.streams.clone()).await {
                tracing::error!(error = %error, "Stream bounds not changed; the old ones hold");
            }
            if let Some(sweeper) = self.sweeper.take() {
                sweeper.stop("TTL sweeper", TASK_STOP_DEADLINE).await;
            }
            self.sweeper = start_sweeper(&new, &upkeep);
        }
        if plan.uplink {
            // The old uplink's unacknowledged batches stay queued; the new one sends them.
            match start_uplink(
                &new,
                &self.queue,
                &self.metrics,
                &self.uplink_heartbeat,
                &self.control,
            ) {
                Ok(uplink) => {
                    let old = std::mem::replace(&mut self.uplink, uplink);
                    old.stop("uplink", UPLINK_STOP_DEADLINE).await;
                }
                Err(error) => {
                    tracing::error!(error = %error, "Uplink not restarted; the old one keeps running")
                }
            }
        }
        self.config = new;
        Ok(plan.describe())
    }

    /// Stops the adapters the plan stops and starts those it starts; if one
    /// cannot open, stops the new ones and brings the old ones back.
    async fn swap_adapters(&mut self, plan: &plan::Plan) -> Result<(), ApplyError> {
        let mut stopped = Vec::new();
        for name in &plan.stop {
            if let Some(s) = self.adapters.remove(name) {
                stopped.push(s.config.clone());
                s.stop(ADAPTER_STOP_DEADLINE).await;
            }
        }
        let mut opened = Vec::new();
        let mut failure = None;
        for a in &plan.start {
            match a.adapter().open().await {
                Ok(o) => opened.push((a.clone(), o)),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let Some(error) = failure else {
            for (a, o) in opened {
                self.supervise(a, o);
            }
            return Ok(());
        };
        drop(opened);
        tracing::error!(error = %error, "New config cannot start; restoring the previous adapters");
        for old in stopped {
            match old.adapter().open().await {
                Ok(o) => self.supervise(old, o),
                Err(e) => {
                    tracing::error!(adapter = old.name(), error = %e, "Previous adapter cannot reopen")
                }
            }
        }
        Err(error.into())
    }

    /// Starts supervising an opened adapter.
    fn supervise(&mut self, config: AdapterConfig, opened: Box<dyn sluice_adapter_common::Opened>) {
        let name = config.name();
        let core = Core {
            sink: self.queue.ingest().for_adapter(name),
            counters: self.metrics.adapter(name),
        };
        let holds: Vec<String> = opened.holds().iter().map(|r| r.to_string()).collect();
        tracing::info!(adapter = name, holds = ?holds, "Adapter started");
        self.adapters
            .insert(name, Supervised::start(config, opened, core));
    }

    /// What adapter `name` holds (its sockets, with ports resolved).
    pub fn holds(&self, name: &str) -> &[Resource] {
        self.adapters.get(name).map_or(&[], |s| &s.holds)
    }

    /// The UDP addresses adapter `name` listens on.
    pub fn udp_addrs(&self, name: &str) -> Vec<std::net::SocketAddr> {
        self.holds(name)
            .iter()
            .filter_map(|r| match r {
                Resource::Udp(a) => Some(*a),
                _ => None,
            })
            .collect()
    }

    /// Sends a downlink through adapter `adapter`; resolves with the device's answer.
    pub fn downlink(
        &self,
        adapter: &str,
        downlink: Downlink,
    ) -> impl std::future::Future<Output = Result<downlink::Answer, DownlinkError>> + 'static {
        let sender = self.adapters.get(adapter).map(|s| s.downlinks.clone());
        let name = adapter.to_owned();
        async move {
            match sender {
                Some(s) => s.send(downlink).await,
                None => Err(DownlinkError::NoAdapter(name)),
            }
        }
    }

    /// Restarts adapter `name` (closes and reopens what it holds);
    /// `Ok(false)` if no such adapter is running. If it cannot reopen, the
    /// error says why and its supervisor is gone: a config apply or restart
    /// brings it back.
    pub async fn restart_adapter(&mut self, name: &str) -> Result<bool, ApplyError> {
        let Some(config) = self.adapters.get(name).map(|s| s.config.clone()) else {
            return Ok(false);
        };
        let plan = plan::Plan {
            stop: vec![config.name()],
            start: vec![config],
            ..plan::Plan::default()
        };
        self.swap_adapters(&plan).await?;
        Ok(true)
    }

    /// Each running adapter: its state, restarts so far and what it holds.
    pub fn adapter_states(&self) -> serde_json::Value {
        let counters = self.metrics.snapshot().adapters;
        self.adapters
            .iter()
            .map(|(name, s)| {
                let restarts = counters.get(name).map_or(0, |c| c.restarts);
                let state = serde_json::json!({
                    "state": if s.is_running() { "running" } else { "stopped" },
                    "restarts": restarts,
                    "holds": s.holds.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
                });
                (name.to_string(), state)
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    }

    /// Deletes every record of stream `stream`; `None` if it does not exist.
    pub async fn purge(
        &self,
        stream: &str,
    ) -> Result<Option<u64>, crate::queue::StreamChangeError> {
        self.queue.upkeep().purge(stream).await
    }

    /// Records the running config's hash for status messages.
    pub fn set_config_hash(&self, hash: &str) {
        self.metrics.set_config_hash(hash);
    }

    /// The running config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// What the watchdog asks: a handle that tells whether the queue
    /// writer and the uplink are making progress. It needs no hold on the
    /// runtime, so a reload in progress does not hide a stuck writer.
    pub fn liveness(&self) -> Liveness {
        Liveness {
            upkeep: self.queue.upkeep(),
            uplink: self.uplink_heartbeat.clone(),
        }
    }

    /// A handle for producers (adapters, tests).
    pub fn ingest(&self) -> Ingest {
        self.queue.ingest()
    }

    /// The pipeline's counters.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Stops intake first (every adapter resolves what it has in flight,
    /// within [`ADAPTER_STOP_DEADLINE`], overstayers are logged by name),
    /// then housekeeping, then the uplink (which waits briefly for
    /// acknowledgements and says `offline`), and finally commits what is
    /// pending and closes the queue.
    pub async fn shutdown(self) {
        let mut stopping = tokio::task::JoinSet::new();
        for adapter in self.adapters.into_values() {
            stopping.spawn(adapter.stop(ADAPTER_STOP_DEADLINE));
        }
        while stopping.join_next().await.is_some() {}
        self.ticks.stop("function ticks", TASK_STOP_DEADLINE).await;
        if let Some(sweeper) = self.sweeper {
            sweeper.stop("TTL sweeper", TASK_STOP_DEADLINE).await;
        }
        self.uplink.stop("uplink", UPLINK_STOP_DEADLINE).await;
        self.queue.close().await;
    }
}

/// Starts an uplink task for `config`.
fn start_uplink(
    config: &Config,
    queue: &Queue,
    metrics: &Arc<Metrics>,
    heartbeat: &Heartbeat,
    control: &Option<ControlLink>,
) -> Result<Task, OpenError> {
    let uplink = Uplink::new(
        config.clone(),
        metrics.clone(),
        queue.reader()?,
        queue.upkeep(),
        queue.added(),
        heartbeat.clone(),
    )
    .with_control(control.clone());
    Ok(Task::spawn(|stop| uplink.run(stop)))
}

/// Starts the TTL sweeper if any stream has a TTL.
fn start_sweeper(config: &Config, upkeep: &Upkeep) -> Option<Task> {
    let every = expiry_interval(config)?;
    let upkeep = upkeep.clone();
    Some(Task::spawn(move |mut stop| async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = tick.tick() => upkeep.expire().await,
                _ = stop.changed() => return,
            }
        }
    }))
}

/// One task that asks the writer for each scheduled function's tick (`every`).
/// A tick that finds the writer busy waits its turn.
fn schedule(config: &Config, upkeep: &Upkeep) -> Task {
    let schedules: Vec<(String, Duration)> = config
        .functions
        .iter()
        .filter_map(|f| Some((f.name.clone(), f.every?.get())))
        .collect();
    let upkeep = upkeep.clone();
    Task::spawn(move |stop| async move {
        let mut set = tokio::task::JoinSet::new();
        for (name, every) in schedules {
            let upkeep = upkeep.clone();
            let mut stop = stop.clone();
            set.spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await; // the first tick is immediate; a window starts now
                loop {
                    tokio::select! {
                        _ = tick.tick() => upkeep.tick(&name).await,
                        _ = stop.changed() => return,
                    }
                }
            });
        }
        while set.join_next().await.is_some() {}
    })
}

/// How often to sweep expired records: a quarter of the shortest TTL, within [1 s, 60 s].
fn expiry_interval(config: &Config) -> Option<Duration> {
    let shortest = config
        .queue
        .streams
        .iter()
        .filter_map(|s| s.ttl)
        .map(|t| t.get())
        .min()?;
    Some((shortest / 4).clamp(Duration::from_secs(1), Duration::from_secs(60)))
}

/// Whether the queue writer and the uplink are making progress (see
/// [`Runtime::liveness`]).
#[derive(Clone, Debug)]
pub struct Liveness {
    upkeep: Upkeep,
    uplink: Heartbeat,
}

impl Liveness {
    /// The writer answers a ping within `within`, and the uplink went round
    /// its loop within [`UPLINK_SILENCE`] (it does every second unless stuck).
    pub async fn is_alive(&self, within: Duration) -> bool {
        let writer = tokio::time::timeout(within, self.upkeep.ping())
            .await
            .unwrap_or(false);
        writer && self.uplink.since() < UPLINK_SILENCE
    }
}
