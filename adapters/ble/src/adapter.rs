//! The BLE adapter as the core sees it: the `[ble]` section validates
//! itself, claims its controller, and runs a source (BlueZ or a replay),
//! the pipeline, the GATT tasks, the downlink router and the submitters
//! with one context.
//!
//! No Bluetooth (no system bus, no bluetoothd, no controller) is reported
//! at start as an error line naming the adapter and what to check, and
//! does not stop the gateway: the scan is tried again with back-off, so a
//! controller that comes up late (or after a reset) is used when it does,
//! and every other adapter serves meanwhile. A replay file that cannot be
//! read is a start-up error.

use crate::bluez::{self, BluezSource};
use crate::config::{BleConfig, SourceKind};
use crate::devices::DeviceMap;
use crate::gatt::GattDevice;
use crate::pipeline::Pipeline;
use crate::source::{self, AdvertisementSource, ReplaySource};
use sluice_adapter_common::downlink::Request;
use sluice_adapter_common::route_downlinks;
use sluice_adapter_common::{
    Adapter, BoxFuture, Claim, Context, Counters, OpenError, Opened, Resource, RunError, Sink,
    clock,
};
use sluice_event::Event;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, mpsc, watch};

/// The adapter's name: its section, its counters and its logs.
pub const NAME: &str = "ble";
/// Readings waiting for a submitter; the pipeline waits beyond this.
const OUTBOX: usize = 256;
/// Submissions in flight to the core at once (group commit joins them).
const SUBMITTERS: usize = 2;
/// Writes waiting for one GATT device before more are refused as busy.
const WRITES_PER_DEVICE: usize = 4;
/// How often silent devices are looked for.
const PRESENCE_TICK: Duration = Duration::from_secs(1);
/// How long the start-up probe of BlueZ may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

impl Adapter for BleConfig {
    fn name(&self) -> &'static str {
        NAME
    }

    fn validate(&self) -> Vec<(String, String)> {
        BleConfig::validate(self)
    }

    fn claims(&self) -> Vec<Claim> {
        match self.source {
            SourceKind::Bluez => vec![Claim {
                key: "controller".into(),
                resource: Resource::Bluetooth(self.controller.clone()),
            }],
            SourceKind::Replay => Vec::new(),
        }
    }

    fn summary(&self) -> String {
        let source = match self.source {
            SourceKind::Bluez => format!("BlueZ controller {}", self.controller),
            SourceKind::Replay => format!(
                "replay of {}",
                self.replay
                    .as_ref()
                    .map_or_else(String::new, |p| p.display().to_string())
            ),
        };
        let gatt = self.devices.iter().filter(|d| d.gatt.is_some()).count();
        format!(
            "ble from {source}, {} device(s), {gatt} with GATT",
            self.devices.len()
        )
    }

    fn open(&self) -> BoxFuture<'_, Result<Box<dyn Opened>, OpenError>> {
        let config = self.clone();
        Box::pin(async move {
            match config.source {
                SourceKind::Replay => {
                    let path = config.replay.clone().unwrap_or_default();
                    if let Err(source) = std::fs::File::open(&path) {
                        return Err(OpenError {
                            adapter: NAME,
                            resource: Resource::Serial(path),
                            source,
                        });
                    }
                }
                SourceKind::Bluez => {
                    match tokio::time::timeout(PROBE_TIMEOUT, bluez::controller(&config.controller))
                        .await
                    {
                        Ok(Ok(_)) => {}
                        Ok(Err(error)) => {
                            tracing::error!(adapter = NAME, controller = %config.controller, error = %error,
                        "No Bluetooth: the BLE adapter retries with back-off; the other adapters run")
                        }
                        Err(_) => tracing::error!(adapter = NAME, controller = %config.controller,
                        "No Bluetooth: BlueZ did not answer within 5 s; the BLE adapter retries with back-off; the other adapters run"),
                    }
                }
            }
            Ok(Box::new(Ready { config }) as Box<dyn Opened>)
        })
    }
}

/// A validated section, ready to run.
struct Ready {
    config: BleConfig,
}

impl Opened for Ready {
    fn holds(&self) -> Vec<Resource> {
        self.config
            .claims()
            .into_iter()
            .map(|c| c.resource)
            .collect()
    }

    fn run(self: Box<Self>, context: Context) -> BoxFuture<'static, Result<(), RunError>> {
        Box::pin(run(self.config, context))
    }
}

/// Runs the configured source, the GATT tasks and the pipeline until shutdown.
async fn run(config: BleConfig, context: Context) -> Result<(), RunError> {
    let (shared, controller) = watch::channel(None);
    let source: Box<dyn AdvertisementSource> = match config.source {
        SourceKind::Bluez => Box::new(BluezSource {
            controller: config.controller.clone(),
            retry_max: config.retry_max.get(),
            counters: context.counters.clone(),
            shared,
        }),
        SourceKind::Replay => Box::new(ReplaySource {
            path: config.replay.clone().unwrap_or_default(),
            pace: config.pace,
            repeat: config.repeat,
            counters: context.counters.clone(),
        }),
    };
    run_with_source(config, source, controller, context).await
}

/// Runs `source` through the pipeline of `config` until `context.shutdown`
/// fires (what tests and benchmarks call with a scripted source).
pub async fn run_with_source(
    config: BleConfig,
    source: Box<dyn AdvertisementSource>,
    controller: watch::Receiver<Option<btleplug::platform::Adapter>>,
    context: Context,
) -> Result<(), RunError> {
    let (ads_tx, mut ads) = mpsc::channel(source::CHANNEL);
    let (outbox, rx) = mpsc::channel::<Vec<Event>>(OUTBOX);
    let mut tasks = tokio::task::JoinSet::new();
    let source_shutdown = context.shutdown.clone();
    tasks.spawn(async move {
        if let Err(error) = source.run(ads_tx, source_shutdown).await {
            tracing::error!(adapter = NAME, error = %error, "BLE source stopped");
        }
    });
    let mut routes: HashMap<String, mpsc::Sender<Request>> = HashMap::new();
    let map = DeviceMap::new(&config);
    for d in &config.devices {
        let (Some(gatt), Some(mac)) = (&d.gatt, d.mac.as_deref().and_then(|m| m.parse().ok()))
        else {
            continue;
        };
        let (tx, writes) = mpsc::channel(WRITES_PER_DEVICE);
        routes.insert(d.id.clone(), tx);
        let device = GattDevice {
            id: d.id.clone(),
            mac,
            config: gatt.clone(),
            retry_max: config.retry_max.get(),
        };
        tasks.spawn(device.run(
            controller.clone(),
            writes,
            outbox.clone(),
            context.counters.clone(),
            context.shutdown.clone(),
        ));
    }
    drop(map);
    let rx = Arc::new(Mutex::new(rx));
    let mut submitters = tokio::task::JoinSet::new();
    for _ in 0..SUBMITTERS {
        submitters.spawn(submit(rx.clone(), context.clone()));
    }
    tasks.spawn(route_downlinks(routes, context.clone()));

    let mut pipeline = Pipeline::new(&config);
    let mut shutdown = context.shutdown.clone();
    let mut tick = tokio::time::interval(PRESENCE_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut source_open = true;
    loop {
        let events = tokio::select! {
            _ = shutdown.wait() => break,
            ad = ads.recv(), if source_open => match ad {
                Some(ad) => {
                    Counters::add(&context.counters.messages_in, 1);
                    Counters::add(&context.counters.bytes_in, ad.data_len() as u64);
                    let (events, dropped) = pipeline.events(&ad);
                    if let Some(why) = dropped {
                        context.counters.reject(why);
                    }
                    events
                }
                None => {
                    source_open = false;
                    continue;
                }
            },
            _ = tick.tick() => pipeline.expire(clock::now_ms()),
        };
        if !events.is_empty() && outbox.send(events).await.is_err() {
            break;
        }
    }
    drop(outbox);
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    // The submitters finish what the pipeline handed them.
    while submitters.join_next().await.is_some() {}
    Ok(())
}

/// Takes queued events to the core, one submission at a time per submitter.
async fn submit(rx: Arc<Mutex<mpsc::Receiver<Vec<Event>>>>, context: Context) {
    loop {
        let Some(events) = rx.lock().await.recv().await else {
            return;
        };
        let n = events.len() as u64;
        match context.sink.accept(events).await {
            Ok(_) => Counters::add(&context.counters.events_accepted, n),
            Err(refusal) => {
                Counters::add(&context.counters.events_refused, n);
                tracing::warn!(reason = ?refusal.reason, error = %refusal.message, "BLE readings refused by the queue");
            }
        }
    }
}
