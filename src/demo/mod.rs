//! `sluice demo`: the whole gateway on one machine. An embedded MQTT broker
//! stands in for the cloud, simulated devices post readings over real CoAP,
//! simulated energy meters answer Modbus RTU on a pseudo-terminal (polled by
//! the real Modbus adapter), a simulated LoRaWAN concentrator forwards an
//! OTAA and an ABP device's frames over GWMP to the real LoRaWAN adapter,
//! a scripted Ruuvi tag and an encrypted BTHome sensor are replayed to the
//! real BLE adapter,
//! the standard functions turn the CoAP readings into °F, alerts and
//! aggregates and decode the LoRaWAN payloads (Cayenne LPP), and a subscriber prints what arrives
//! upstream. Built only with the `demo` feature; the production binary
//! carries neither rumqttd nor the simulated devices.
//!
//! - [`broker`]: rumqttd configured in code, on a free loopback port.
//! - [`config`]: the gateway config, from the `demo.toml` template.
//! - [`devices`]: the simulated CoAP devices.
//! - [`meters`]: the simulated Modbus meters (tokio-modbus's server).
//! - [`lora`]: the simulated LoRaWAN concentrator and devices (GWMP).
//! - [`ble`]: the scripted Bluetooth advertisements (a replay file).
//! - [`viewer`]: the subscriber standing in for the cloud.
//! - [`screen`]: every line the demo prints.

mod ble;
mod broker;
mod config;
mod devices;
mod lora;
mod meters;
mod screen;
mod viewer;

use crate::runtime::{Runtime, StartError};
use broker::{BrokerError, EmbeddedBroker};
use config::DemoConfigError;
use devices::DeviceStats;
use sluice_adapter_common::Shutdown;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use viewer::{Viewer, ViewerError};

/// How often the live counter line is printed.
const STATS_EVERY: Duration = Duration::from_secs(2);
/// How long the viewer waits, after the gateway stopped, for its last messages.
const VIEWER_GRACE: Duration = Duration::from_secs(2);

/// What `sluice demo` was asked to do.
#[derive(Clone, Debug)]
pub struct Options {
    /// The folder holding `scale.wasm`, `threshold.wasm`, `window.wasm` and `cayenne-lpp.wasm`.
    pub modules: PathBuf,
    /// Stop after this long; `None` runs until SIGINT or SIGTERM.
    pub run_for: Option<Duration>,
}

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A module is missing or the config does not validate.
    #[error(transparent)]
    Config(#[from] DemoConfigError),
    /// The temporary data folder could not be made.
    #[error("cannot create the data folder {path}: {source}")]
    DataDir {
        /// The folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The embedded broker did not start.
    #[error("embedded MQTT broker: {0}")]
    Broker(#[from] BrokerError),
    /// The viewer could not subscribe.
    #[error(transparent)]
    Viewer(#[from] ViewerError),
    /// The gateway did not start.
    #[error("cannot start the gateway: {0}")]
    Start(#[from] StartError),
    /// Signals cannot be watched.
    #[error("cannot watch signals: {0}")]
    Signals(std::io::Error),
    /// The gateway started without its CoAP listener.
    #[error("the CoAP adapter did not start")]
    NoCoap,
    /// The simulated meters could not start.
    #[error("the simulated Modbus meters cannot start: {0}")]
    Meters(std::io::Error),
    /// The gateway started without its LoRaWAN listener.
    #[error("the LoRaWAN adapter did not start")]
    NoLorawan,
    /// The simulated concentrator could not start.
    #[error("the simulated LoRaWAN concentrator cannot start: {0}")]
    Concentrator(std::io::Error),
    /// The Bluetooth script could not be written.
    #[error("cannot write the Bluetooth advertisement script: {0}")]
    BleScript(std::io::Error),
}

/// Runs the demo until `run_for` has passed or a signal came, then stops
/// everything cleanly and prints a summary. Must run inside tokio.
pub async fn run(options: Options) -> Result<(), DemoError> {
    let modules = config::modules(&options.modules)?;
    let data = DataDir::create()?;
    let broker = EmbeddedBroker::start().await?;
    let (stop_meters, meters_shutdown) = Shutdown::manual();
    let meters = meters::Meters::start(&meters_shutdown)
        .await
        .map_err(DemoError::Meters)?;
    ble::write_script(data.path()).map_err(DemoError::BleScript)?;
    let config = config::build(data.path(), broker.port(), &modules, &meters.line.toml())?;
    let viewer = Viewer::start(broker.port(), &config.uplink.topic_root).await?;
    let coap_path = config
        .coap
        .as_ref()
        .map_or_else(|| "r".to_owned(), |c| c.path.clone());
    let signals = Signals::watch()?;
    banner(broker.port(), data.path(), &options);
    let started = Instant::now();
    let runtime = Runtime::start(config).await?;
    let Some(&coap) = runtime.udp_addrs("coap").first() else {
        runtime.shutdown().await;
        return Err(DemoError::NoCoap);
    };
    let Some(&lorawan) = runtime.udp_addrs("lorawan").first() else {
        runtime.shutdown().await;
        return Err(DemoError::NoLorawan);
    };
    fleet_banner(coap, &coap_path, &meters.line, lorawan, options.run_for);

    let metrics = runtime.metrics();
    let device_stats = Arc::new(DeviceStats::default());
    let (stop, shutdown) = Shutdown::manual();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let devices = devices::start(coap, &coap_path, seed, &device_stats, &shutdown);
    let lora_stats = Arc::new(lora::LoraStats::default());
    let concentrator = match lora::start(lorawan, seed, &lora_stats, &shutdown).await {
        Ok(c) => c,
        Err(e) => {
            let _ = stop.send(true);
            runtime.shutdown().await;
            return Err(DemoError::Concentrator(e));
        }
    };
    let stats = live_stats(metrics.clone());

    let reason = signals.wait(options.run_for).await;
    screen::show(
        "demo",
        format!("{reason}: stopping the devices, then the gateway"),
    );
    stats.abort();
    let _ = stop.send(true);
    for device in devices {
        let _ = device.await;
    }
    let _ = concentrator.await;
    runtime.shutdown().await;
    // The meters answer until the gateway has stopped polling them.
    let _ = stop_meters.send(true);
    meters.stopped().await;
    let seen = viewer.finish(VIEWER_GRACE).await;
    println_summary(&screen::summary(
        started.elapsed(),
        &device_stats.totals(),
        &lora_stats.totals(),
        &metrics.snapshot(),
        &seen,
    ));
    // The broker's threads end with the process; rumqttd cannot be stopped.
    drop(broker);
    Ok(())
}

/// What runs where, before the gateway starts.
fn banner(broker: u16, data: &Path, options: &Options) {
    screen::show(
        "demo",
        format!(
            "Sluice {} demo: MQTT broker (rumqttd) on 127.0.0.1:{broker}, data in {}",
            env!("CARGO_PKG_VERSION"),
            data.display()
        ),
    );
    screen::show(
        "demo",
        format!(
            "functions from {}: scale (°C → °F), threshold (alert above 86 °F, clear below 80 °F), window (every 5 s), cayenne-lpp (LoRaWAN payloads)",
            options.modules.display()
        ),
    );
}

/// The devices, once the gateway listens.
fn fleet_banner(
    coap: SocketAddr,
    path: &str,
    meters: &meters::Line,
    lorawan: SocketAddr,
    run_for: Option<Duration>,
) {
    let fleet: Vec<String> = devices::fleet()
        .iter()
        .map(|d| {
            let kind = if d.confirmable { "CON" } else { "NON" };
            format!("{} ({kind}, {})", d.id, d.encoding.label())
        })
        .collect();
    screen::show(
        "demo",
        format!(
            "devices POST to coap://{coap}/{path}/<id>: {}",
            fleet.join(", ")
        ),
    );
    let polled: Vec<String> = meters::FLEET
        .iter()
        .map(|(id, unit, what)| format!("{id} (unit {unit}, {what})"))
        .collect();
    screen::show(
        "demo",
        format!(
            "energy meters answer {}, polled every second: {}",
            meters.describe(),
            polled.join(", ")
        ),
    );
    screen::show(
        "demo",
        format!(
            "a LoRaWAN concentrator forwards over GWMP to udp://{lorawan}: {} (OTAA, joins first) and {} (ABP), Cayenne LPP decoded by cayenne-lpp",
            lora::OTAA_EUI,
            lora::ABP_EUI
        ),
    );
    screen::show(
        "demo",
        format!(
            "Bluetooth: a Ruuvi tag ({}) and an encrypted BTHome sensor ({}) replayed from a script through the real decoders",
            ble::RUUVI,
            ble::BTHOME
        ),
    );
    let until = match run_for {
        Some(d) => format!("for {} s", d.as_secs_f64()),
        None => "until Ctrl-C".to_owned(),
    };
    screen::show(
        "demo",
        format!(
            "running {until}; one reading in {} is shown, every alert and window",
            viewer::READINGS_SHOWN_EVERY
        ),
    );
}

/// Prints the live counter line every [`STATS_EVERY`].
fn live_stats(metrics: Arc<crate::metrics::Metrics>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(STATS_EVERY);
        tick.tick().await;
        loop {
            tick.tick().await;
            screen::show("stats", screen::stats_text(&metrics.snapshot()));
        }
    })
}

/// SIGINT and SIGTERM, watched from before the gateway starts.
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn watch() -> Result<Signals, DemoError> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            int: signal(SignalKind::interrupt()).map_err(DemoError::Signals)?,
            term: signal(SignalKind::terminate()).map_err(DemoError::Signals)?,
        })
    }

    /// Waits for a signal or the end of `run_for`; says which.
    async fn wait(mut self, run_for: Option<Duration>) -> &'static str {
        let timer = async {
            match run_for {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
            _ = timer => "time is up",
        }
    }
}

fn println_summary(lines: &[(&'static str, String)]) {
    screen::show("summary", "─".repeat(60));
    for (name, text) in lines {
        screen::show("summary", format!("{name:<10} {text}"));
    }
}

/// A fresh folder under the system's temporary directory, removed on drop.
struct DataDir(PathBuf);

impl DataDir {
    fn create() -> Result<DataDir, DemoError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path =
            std::env::temp_dir().join(format!("sluice-demo-{}-{nanos:09}", std::process::id()));
        std::fs::create_dir(&path).map_err(|source| DemoError::DataDir {
            path: path.clone(),
            source,
        })?;
        Ok(DataDir(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
