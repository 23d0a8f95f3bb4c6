//! The Modbus adapter as the core sees it: the `[modbus]` section validates
//! itself, claims its serial devices, and runs one task per bus or TCP
//! connection, the downlink router and the submitters with one context.
//!
//! Opening claims nothing that can fail: a serial port that is missing at
//! start (a USB adapter not yet enumerated, a cable unplugged) is logged
//! and opened again with back-off by its bus, as is one that vanishes
//! later, and the gateway serves everything else meanwhile.

use crate::bus::{self, BusPlan, Outbox};
use crate::config::ModbusConfig;
use crate::device::Device;
use crate::link::{Endpoint, Link, Timing};
use crate::serial;
use sluice_adapter_common::downlink::Request;
use sluice_adapter_common::route_downlinks;
use sluice_adapter_common::{
    Adapter, BoxFuture, Claim, Context, OpenError, Opened, Resource, RunError, Sink,
};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{Mutex, mpsc};

/// The adapter's name: its section, its counters and its logs.
pub const NAME: &str = "modbus";
/// Readings waiting for a submitter before a bus drops them (counted).
const OUTBOX: usize = 256;
/// Submissions in flight to the core at once (group commit joins them).
const SUBMITTERS: usize = 4;
/// Writes waiting for one bus before more are refused as busy.
const WRITES_PER_BUS: usize = 8;

impl Adapter for ModbusConfig {
    fn name(&self) -> &'static str {
        NAME
    }

    fn validate(&self) -> Vec<(String, String)> {
        ModbusConfig::validate(self)
    }

    fn claims(&self) -> Vec<Claim> {
        self.buses
            .iter()
            .enumerate()
            .map(|(i, b)| Claim {
                key: format!("buses[{i}].path"),
                resource: Resource::Serial(b.path.clone()),
            })
            .collect()
    }

    fn summary(&self) -> String {
        let buses: Vec<String> = self
            .buses
            .iter()
            .map(|b| format!("{} ({}, {} baud)", b.name, b.path.display(), b.baud))
            .chain(
                self.tcp
                    .iter()
                    .map(|t| format!("{} (tcp {})", t.name, t.address)),
            )
            .collect();
        format!(
            "modbus on [{}], {} device(s), {} profile(s)",
            buses.join(", "),
            self.devices.len(),
            self.profiles.len()
        )
    }

    fn open(&self) -> BoxFuture<'_, Result<Box<dyn Opened>, OpenError>> {
        let config = self.clone();
        Box::pin(async move { Ok(Box::new(Ready { config }) as Box<dyn Opened>) })
    }
}

/// A validated section, ready to run.
struct Ready {
    config: ModbusConfig,
}

impl Opened for Ready {
    fn holds(&self) -> Vec<Resource> {
        self.config
            .buses
            .iter()
            .map(|b| Resource::Serial(b.path.clone()))
            .collect()
    }

    fn run(self: Box<Self>, context: Context) -> BoxFuture<'static, Result<(), RunError>> {
        Box::pin(run(self.config, context))
    }
}

/// The buses of `config`, each with its devices and a link.
pub fn plans(
    config: &ModbusConfig,
    counters: &Arc<sluice_adapter_common::Counters>,
) -> Vec<BusPlan> {
    let pacer = crate::pace::Pacer::new();
    let devices_on = |name: &str| -> Vec<Device> {
        config
            .devices
            .iter()
            .filter(|d| d.bus == name)
            .map(|d| Device::new(d, config))
            .collect()
    };
    let serial = config.buses.iter().map(|b| {
        let framing = serial::framing(b);
        let timing = Timing {
            response_timeout: b.response_timeout.get(),
            between: b.inter_request_delay.get().max(framing.frame_gap()),
            retries: b.retries,
        };
        let endpoint = Endpoint::Serial {
            path: b.path.clone(),
            framing,
        };
        BusPlan {
            name: b.name.clone(),
            link: Link::new(&b.name, endpoint, timing, counters.clone(), pacer.clone()),
            devices: devices_on(&b.name),
            offline_after: b.offline_after,
            backoff_max: b.backoff_max.get(),
        }
    });
    let tcp = config.tcp.iter().map(|t| {
        let timing = Timing {
            response_timeout: t.response_timeout.get(),
            between: t.inter_request_delay.get(),
            retries: t.retries,
        };
        let endpoint = Endpoint::Tcp {
            address: t.address.clone(),
        };
        BusPlan {
            name: t.name.clone(),
            link: Link::new(&t.name, endpoint, timing, counters.clone(), pacer.clone()),
            devices: devices_on(&t.name),
            offline_after: t.offline_after,
            backoff_max: t.backoff_max.get(),
        }
    });
    serial
        .chain(tcp)
        .filter(|p| !p.devices.is_empty())
        .collect()
}

/// Runs every bus until shutdown, then lets the submitters finish what the
/// buses handed them.
async fn run(config: ModbusConfig, context: Context) -> Result<(), RunError> {
    let (tx, rx) = mpsc::channel(OUTBOX);
    let outbox = Outbox::new(tx, context.counters.clone());
    let mut routes: HashMap<String, mpsc::Sender<Request>> = HashMap::new();
    let mut buses = tokio::task::JoinSet::new();
    for plan in plans(&config, &context.counters) {
        let (writes_tx, writes_rx) = mpsc::channel(WRITES_PER_BUS);
        for d in &plan.devices {
            routes.insert(d.id.clone(), writes_tx.clone());
        }
        tracing::info!(bus = %plan.name, devices = plan.devices.len(), "Modbus bus polling");
        buses.spawn(bus::run(
            plan,
            writes_rx,
            outbox.clone(),
            context.counters.clone(),
            context.shutdown.clone(),
        ));
    }
    drop(outbox);
    let rx = Arc::new(Mutex::new(rx));
    let mut submitters = tokio::task::JoinSet::new();
    for _ in 0..SUBMITTERS {
        submitters.spawn(submit(rx.clone(), context.clone()));
    }
    let router = route_downlinks(routes, context.clone());
    tokio::pin!(router);
    // A bus ends only on shutdown; one that ends before (a panic) fails the
    // run, so the supervisor restarts the adapter rather than leave its
    // devices unpolled.
    let failure = loop {
        tokio::select! {
            _ = &mut router => break None,
            ended = buses.join_next() => match ended {
                None => break None,
                Some(_) if context.shutdown.is_set() => {}
                Some(Ok(())) => break Some("a bus task returned".to_owned()),
                Some(Err(e)) => break Some(format!("a bus task failed: {e}")),
            },
        }
    };
    if failure.is_some() {
        buses.abort_all();
    }
    // The buses stop (shutdown, or aborted) and drop their outboxes: the
    // submitters finish what is queued and return.
    while buses.join_next().await.is_some() {}
    while submitters.join_next().await.is_some() {}
    match failure {
        Some(why) => Err(why.into()),
        None => Ok(()),
    }
}

/// Takes queued events to the core, one submission per poll, several in flight.
async fn submit(rx: Arc<Mutex<mpsc::Receiver<Vec<sluice_event::Event>>>>, context: Context) {
    loop {
        let Some(events) = rx.lock().await.recv().await else {
            return;
        };
        let n = events.len() as u64;
        match context.sink.accept(events).await {
            Ok(_) => sluice_adapter_common::Counters::add(&context.counters.events_accepted, n),
            Err(refusal) => {
                sluice_adapter_common::Counters::add(&context.counters.events_refused, n);
                tracing::warn!(reason = ?refusal.reason, error = %refusal.message,
                    "Modbus readings refused by the queue");
            }
        }
    }
}
