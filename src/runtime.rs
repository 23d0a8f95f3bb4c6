//! The runtime as a value: `sluice run`, the tests and the benchmarks all
//! build the same [`Runtime`] from a [`Config`] and get handles to it.

use crate::config::Config;
use crate::functions::{Compiled, SetError};
use crate::ingest::Ingest;
use crate::metrics::Metrics;
use crate::queue::{OpenError, Queue, Upkeep};
use crate::uplink::Uplink;
use sluice_adapter_common::Shutdown;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running gateway core: queue writer, uplink and housekeeping.
pub struct Runtime {
    queue: Queue,
    metrics: Arc<Metrics>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// One task per scheduled function; replaced on reload.
    ticks: Vec<JoinHandle<()>>,
    /// Adapters: stopped first on shutdown, so nothing new arrives.
    adapters: Vec<JoinHandle<()>>,
    coap_addrs: Vec<SocketAddr>,
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The queue (or a function) could not be opened.
    #[error(transparent)]
    Queue(#[from] OpenError),
    /// An adapter could not start (for example its port is taken).
    #[error("{adapter} adapter: {source}")]
    Adapter {
        /// Which adapter.
        adapter: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl Runtime {
    /// Opens the queue and starts the uplink and the configured adapters.
    /// Must be called inside a tokio runtime.
    pub fn start(config: Config) -> Result<Runtime, StartError> {
        // ring is the only TLS crypto compiled in; installing it explicitly keeps
        // rustls from panicking if a dependency ever enables a second provider.
        let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
        let metrics = Arc::new(Metrics::default());
        let queue = Queue::open(&config, metrics.clone())?;
        let (shutdown, stop) = watch::channel(false);
        let mut tasks = Vec::new();
        let uplink = Uplink::new(
            config.clone(),
            metrics.clone(),
            queue.reader()?,
            queue.upkeep(),
            queue.added(),
        );
        tasks.push(tokio::spawn(uplink.run(stop.clone())));
        if let Some(every) = expiry_interval(&config) {
            let upkeep = queue.upkeep();
            let mut stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tokio::select! {
                        _ = tick.tick() => upkeep.expire().await,
                        _ = stop.changed() => return,
                    }
                }
            }));
        }
        let ticks = schedule(&config, &queue.upkeep(), &stop);
        let mut adapters = Vec::new();
        let mut coap_addrs = Vec::new();
        if let Some(coap) = config.coap.clone() {
            let counters = metrics.adapter("coap");
            if !coap.listen.is_empty() {
                let bound = sluice_coap::server::Bound::bind(coap.clone()).map_err(|source| {
                    StartError::Adapter {
                        adapter: "coap",
                        source,
                    }
                })?;
                coap_addrs = bound.local_addrs();
                adapters.push(tokio::spawn(bound.serve(
                    queue.ingest(),
                    counters.clone(),
                    Shutdown::new(stop.clone()),
                )));
            }
            if !coap.observe.is_empty() {
                adapters.push(tokio::spawn(sluice_coap::observe::run(
                    coap.observe,
                    queue.ingest(),
                    counters,
                    Shutdown::new(stop.clone()),
                )));
            }
        }
        Ok(Runtime {
            queue,
            metrics,
            shutdown,
            tasks,
            ticks,
            adapters,
            coap_addrs,
        })
    }

    /// The UDP addresses the CoAP server listens on (ports resolved).
    pub fn coap_addrs(&self) -> &[SocketAddr] {
        &self.coap_addrs
    }

    /// Reloads the functions from `config` (modules, settings, limits,
    /// schedules). Suspended functions run again. The rest of the config
    /// is not reloaded; it needs a restart.
    pub async fn reload_functions(&mut self, config: &Config) -> Result<(), SetError> {
        let compiled = Compiled::new(config)?;
        for t in self.ticks.drain(..) {
            t.abort();
        }
        self.queue.upkeep().install(compiled).await;
        self.ticks = schedule(config, &self.queue.upkeep(), &self.shutdown.subscribe());
        Ok(())
    }

    /// A handle for producers (adapters, tests).
    pub fn ingest(&self) -> Ingest {
        self.queue.ingest()
    }

    /// The pipeline's counters.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Stops intake and the uplink, commits what is pending and closes the queue.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        // Adapters first: they answer what they took in, then stop taking.
        for task in self.adapters {
            let _ = task.await;
        }
        for task in self.ticks.into_iter().chain(self.tasks) {
            let _ = task.await;
        }
        self.queue.close().await;
    }
}

/// Starts a task per function with a schedule (`every`) that asks the
/// writer for its tick. A tick that finds the writer busy waits its turn.
fn schedule(config: &Config, upkeep: &Upkeep, stop: &watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    config
        .functions
        .iter()
        .filter_map(|f| Some((f.name.clone(), f.every?.get())))
        .map(|(name, every)| {
            let upkeep = upkeep.clone();
            let mut stop = stop.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await; // the first tick is immediate; a window starts now
                loop {
                    tokio::select! {
                        _ = tick.tick() => upkeep.tick(&name).await,
                        _ = stop.changed() => return,
                    }
                }
            })
        })
        .collect()
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
