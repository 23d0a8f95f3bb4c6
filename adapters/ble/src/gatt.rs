//! GATT devices: connected to on a schedule, their characteristics read by
//! UUID and parsed by declared type (one event per visit, subject
//! `ble/<device>`), and written by downlinks (resource = a `writes` name).
//! Each device has one task; every connect, read and write has the
//! device's timeout. A device that cannot be reached, or drops the
//! connection, is logged and counted and tried again with back-off.

use crate::backoff::Backoff;
use crate::config::{CharacteristicConfig, GattConfig, parse_uuid};
use crate::event;
use crate::mac::Mac;
use crate::rejection::BleRejection;
use btleplug::api::{Central, Characteristic, Peripheral as _, WriteType};
use btleplug::platform::{Adapter, Peripheral};
use sluice_adapter_common::downlink::{Answer, Request};
use sluice_adapter_common::{Counters, DownlinkError, Shutdown, clock};
use sluice_event::{Event, Reading, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Why a visit failed.
#[derive(Debug, thiserror::Error)]
pub enum GattError {
    /// The controller is down (see the scan's log line).
    #[error("the Bluetooth controller is not available")]
    NoController,
    /// BlueZ does not know the device (not heard since BlueZ started).
    #[error("device not seen by BlueZ yet")]
    NotSeen,
    /// A step took longer than the timeout.
    #[error("{0} timed out")]
    Timeout(&'static str),
    /// The device has no such characteristic.
    #[error("no characteristic {0}")]
    NoCharacteristic(uuid::Uuid),
    /// BlueZ reported an error (connection refused or dropped, …).
    #[error("{0}")]
    Bluez(#[from] btleplug::Error),
}

/// One GATT device's task.
#[derive(Debug)]
pub struct GattDevice {
    /// Its id.
    pub id: String,
    /// Its address.
    pub mac: Mac,
    /// What to read and write.
    pub config: GattConfig,
    /// Longest wait after failures.
    pub retry_max: Duration,
}

async fn within<T>(
    timeout: Duration,
    what: &'static str,
    f: impl Future<Output = Result<T, btleplug::Error>>,
) -> Result<T, GattError> {
    tokio::time::timeout(timeout, f)
        .await
        .map_err(|_| GattError::Timeout(what))?
        .map_err(GattError::from)
}

impl GattDevice {
    /// Visits the device every `every` (sooner after a failure, with back-off)
    /// and serves its writes, until shutdown.
    pub async fn run(
        self,
        controller: watch::Receiver<Option<Adapter>>,
        mut writes: mpsc::Receiver<Request>,
        events: mpsc::Sender<Vec<Event>>,
        counters: Arc<Counters>,
        mut shutdown: Shutdown,
    ) {
        let mut backoff = Backoff::new(
            Duration::from_secs(5),
            self.retry_max.min(self.config.every.get()),
        );
        let mut next = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tokio::time::sleep_until(next), if !self.config.reads.is_empty() => {
                    match self.read_all(&controller).await {
                        Ok(event) => {
                            backoff.reset();
                            next = tokio::time::Instant::now() + self.config.every.get();
                            if events.try_send(vec![event]).is_err() {
                                counters.reject(BleRejection::OutboxFull);
                            }
                        }
                        Err(e) => {
                            counters.fault(&self.id, BleRejection::Gatt);
                            let retry_in = backoff.next_delay();
                            tracing::warn!(device = %self.id, address = %self.mac, error = %e,
                                retry_in_ms = retry_in.as_millis() as u64, "GATT read failed; retrying");
                            next = tokio::time::Instant::now() + retry_in;
                        }
                    }
                }
                request = writes.recv() => {
                    let Some(request) = request else { return };
                    let result = self.write(&controller, &request).await;
                    if let Err(e) = &result {
                        counters.fault(&self.id, BleRejection::Gatt);
                        tracing::warn!(device = %self.id, error = %e, "GATT write failed");
                    }
                    request.answer(result);
                }
            }
        }
    }

    /// The connected peripheral.
    async fn connect(
        &self,
        controller: &watch::Receiver<Option<Adapter>>,
    ) -> Result<Peripheral, GattError> {
        let central = controller.borrow().clone().ok_or(GattError::NoController)?;
        let timeout = self.config.timeout.get();
        let peripherals = within(timeout, "listing devices", central.peripherals()).await?;
        let p = peripherals
            .into_iter()
            .find(|p| p.address().into_inner() == self.mac.0)
            .ok_or(GattError::NotSeen)?;
        if !within(timeout, "checking the connection", p.is_connected()).await? {
            within(timeout, "connecting", p.connect()).await?;
        }
        within(timeout, "discovering services", p.discover_services()).await?;
        Ok(p)
    }

    fn characteristic(
        p: &Peripheral,
        c: &CharacteristicConfig,
    ) -> Result<Characteristic, GattError> {
        let uuid =
            parse_uuid(&c.uuid).map_err(|_| GattError::NoCharacteristic(uuid::Uuid::nil()))?;
        p.characteristics()
            .into_iter()
            .find(|ch| ch.uuid == uuid)
            .ok_or(GattError::NoCharacteristic(uuid))
    }

    /// Connects, reads every characteristic, disconnects: one event.
    async fn read_all(
        &self,
        controller: &watch::Receiver<Option<Adapter>>,
    ) -> Result<Event, GattError> {
        let p = self.connect(controller).await?;
        let result = self.read_connected(&p).await;
        let _ = tokio::time::timeout(self.config.timeout.get(), p.disconnect()).await;
        result
    }

    async fn read_connected(&self, p: &Peripheral) -> Result<Event, GattError> {
        let mut e = Event::new(event::subject(&self.id), self.id.as_str(), clock::now_ms());
        for c in &self.config.reads {
            let ch = Self::characteristic(p, c)?;
            let bytes = within(self.config.timeout.get(), "reading", p.read(&ch)).await?;
            match c.kind.read(&bytes, c.scale) {
                Ok(q) => e.readings.push(Reading {
                    name: c.name.clone(),
                    value: match q {
                        crate::decode::Quantity::Number(n) => Value::Number(n),
                        crate::decode::Quantity::Bool(b) => Value::Bool(b),
                        crate::decode::Quantity::Text(t) => Value::Text(t),
                    },
                    unit: c.unit.clone(),
                }),
                Err(err) => {
                    tracing::warn!(device = %self.id, characteristic = %c.name, error = %err, "GATT value skipped")
                }
            }
        }
        e.meta.push(sluice_event::Meta {
            key: "address".into(),
            value: Value::Text(self.mac.to_string()),
        });
        Ok(e)
    }

    /// One downlink: connect, write with response, disconnect.
    async fn write(
        &self,
        controller: &watch::Receiver<Option<Adapter>>,
        request: &Request,
    ) -> Result<Answer, DownlinkError> {
        let d = &request.downlink;
        let c = self
            .config
            .writes
            .iter()
            .find(|c| c.name == d.resource)
            .ok_or_else(|| {
                DownlinkError::Unsupported(format!(
                    "`{}` is not in the device's gatt.writes",
                    d.resource
                ))
            })?;
        let bytes = c
            .kind
            .write(&d.value, c.scale)
            .map_err(|e| DownlinkError::Unsupported(e.to_string()))?;
        let io = |e: GattError| match e {
            GattError::Timeout(_) => DownlinkError::Timeout(self.config.timeout.get()),
            other => DownlinkError::Io(other.to_string()),
        };
        let p = self.connect(controller).await.map_err(io)?;
        let result = match Self::characteristic(&p, c) {
            Ok(ch) => {
                within(
                    self.config.timeout.get(),
                    "writing",
                    p.write(&ch, &bytes, WriteType::WithResponse),
                )
                .await
            }
            Err(e) => Err(e),
        };
        let _ = tokio::time::timeout(self.config.timeout.get(), p.disconnect()).await;
        result.map_err(io)?;
        Ok(Answer {
            status: "written".into(),
            payload: Vec::new(),
        })
    }
}
