//! The radio: BlueZ over D-Bus through btleplug. Scans with the configured
//! controller and hands every manufacturer or service data advertisement
//! to the pipeline; shares the controller with the GATT tasks.
//!
//! Faults (the system bus or bluetoothd not there, no such controller, the
//! controller powered off or reset, the event stream ending) are logged
//! once each with what to check, and the scan is set up again with
//! back-off; the rest of the gateway is not affected.

use crate::advertisement::Advertisement;
use crate::backoff::Backoff;
use crate::mac::Mac;
use crate::rejection::BleRejection;
use crate::source::{AdvertisementSource, SourceError};
use btleplug::api::{
    Central, CentralEvent, CentralState, Manager as _, Peripheral as _, ScanFilter,
};
use btleplug::platform::{Adapter, Manager, PeripheralId};
use futures_util::StreamExt;
use sluice_adapter_common::{BoxFuture, Counters, Shutdown, clock};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// First wait after a failure.
const RETRY_MIN: Duration = Duration::from_secs(1);

/// Why the radio cannot be used now.
#[derive(Debug, thiserror::Error)]
pub enum RadioError {
    /// No system bus, or no bluetoothd on it.
    #[error(
        "BlueZ is not reachable over D-Bus (is bluetoothd running, and may this user talk to org.bluez?): {0}"
    )]
    NoBluez(btleplug::Error),
    /// BlueZ has no controller of that name.
    #[error("BlueZ has no Bluetooth controller `{wanted}` (found: {found})")]
    NoController {
        /// The configured name.
        wanted: String,
        /// What BlueZ has.
        found: String,
    },
    /// A BlueZ call failed.
    #[error("BlueZ: {0}")]
    Bluez(#[from] btleplug::Error),
}

/// Opens BlueZ and finds `controller` (`hci0`).
pub async fn controller(controller: &str) -> Result<Adapter, RadioError> {
    let manager = Manager::new().await.map_err(RadioError::NoBluez)?;
    let adapters = manager.adapters().await.map_err(RadioError::NoBluez)?;
    let mut found = Vec::new();
    for a in adapters {
        let info = a.adapter_info().await?;
        let name = info
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned();
        if name == controller {
            return Ok(a);
        }
        found.push(name);
    }
    Err(RadioError::NoController {
        wanted: controller.to_owned(),
        found: if found.is_empty() {
            "none".to_owned()
        } else {
            found.join(", ")
        },
    })
}

/// Scans through BlueZ, forever, with back-off after faults.
#[derive(Debug)]
pub struct BluezSource {
    /// The controller (`hci0`).
    pub controller: String,
    /// Longest wait between attempts.
    pub retry_max: Duration,
    /// Overflows are counted here.
    pub counters: Arc<Counters>,
    /// The controller in use, for the GATT tasks (`None` while down).
    pub shared: watch::Sender<Option<Adapter>>,
}

impl AdvertisementSource for BluezSource {
    fn run(
        self: Box<Self>,
        out: mpsc::Sender<Advertisement>,
        mut shutdown: Shutdown,
    ) -> BoxFuture<'static, Result<(), SourceError>> {
        Box::pin(async move {
            let mut backoff = Backoff::new(RETRY_MIN, self.retry_max);
            let mut last_fault = String::new();
            loop {
                let began = std::time::Instant::now();
                let fault = tokio::select! {
                    fault = self.scan(&out) => fault,
                    _ = shutdown.wait() => return Ok(()),
                };
                self.shared.send_replace(None);
                if out.is_closed() {
                    return Ok(());
                }
                if began.elapsed() > Duration::from_secs(60) {
                    backoff.reset();
                }
                let retry_in = backoff.next_delay();
                let text = fault.to_string();
                if text != last_fault {
                    tracing::error!(adapter = "ble", controller = %self.controller, error = %text,
                        retry_in_ms = retry_in.as_millis() as u64,
                        "BLE scanning stopped; retrying with back-off (other adapters are not affected)");
                    last_fault = text;
                } else {
                    tracing::debug!(controller = %self.controller, error = %text, "BLE scanning still failing");
                }
                tokio::select! {
                    _ = tokio::time::sleep(retry_in) => {}
                    _ = shutdown.wait() => return Ok(()),
                }
            }
        })
    }
}

impl BluezSource {
    /// One scanning session: returns why it ended.
    async fn scan(&self, out: &mpsc::Sender<Advertisement>) -> RadioError {
        let central = match controller(&self.controller).await {
            Ok(c) => c,
            Err(e) => return e,
        };
        let mut events = match central.events().await {
            Ok(e) => e,
            Err(e) => return e.into(),
        };
        if let Err(e) = central.start_scan(ScanFilter::default()).await {
            return e.into();
        }
        tracing::info!(controller = %self.controller, "BLE scanning");
        self.shared.send_replace(Some(central.clone()));
        while let Some(event) = events.next().await {
            let (id, manufacturer_data, service_data) = match event {
                CentralEvent::ManufacturerDataAdvertisement {
                    id,
                    manufacturer_data,
                } => (id, manufacturer_data.into_iter().collect(), Vec::new()),
                CentralEvent::ServiceDataAdvertisement { id, service_data } => {
                    (id, Vec::new(), service_data.into_iter().collect())
                }
                CentralEvent::StateUpdate(CentralState::PoweredOff) => {
                    return RadioError::NoController {
                        wanted: self.controller.clone(),
                        found: "it was powered off or reset".to_owned(),
                    };
                }
                _ => continue,
            };
            let ad = match self
                .advertisement(&central, &id, manufacturer_data, service_data)
                .await
            {
                Some(ad) => ad,
                None => continue,
            };
            match out.try_send(ad) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.counters.reject(BleRejection::SourceOverflow)
                }
                Err(mpsc::error::TrySendError::Closed(_)) => break,
            }
        }
        RadioError::NoController {
            wanted: self.controller.clone(),
            found: "its event stream ended (bluetoothd restarted?)".to_owned(),
        }
    }

    /// The advertisement of one event, with the sender's address, name and RSSI.
    async fn advertisement(
        &self,
        central: &Adapter,
        id: &PeripheralId,
        manufacturer_data: Vec<(u16, Vec<u8>)>,
        service_data: Vec<(uuid::Uuid, Vec<u8>)>,
    ) -> Option<Advertisement> {
        let peripheral = central.peripheral(id).await.ok()?;
        let properties = peripheral.properties().await.ok().flatten();
        Some(Advertisement {
            time_ms: clock::now_ms(),
            address: Mac(peripheral.address().into_inner()),
            rssi: properties.as_ref().and_then(|p| p.rssi),
            local_name: properties.and_then(|p| p.local_name),
            manufacturer_data,
            service_data,
        })
    }
}
