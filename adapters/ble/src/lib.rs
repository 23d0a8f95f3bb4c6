//! The BLE adapter: battery sensors that broadcast their readings in
//! advertisements (BTHome, Ruuvi, Xiaomi thermometers with custom firmware,
//! beacons) and devices read and written over GATT, through BlueZ with
//! btleplug, or advertisements replayed from a file through exactly the
//! same decoding, de-duplication and device mapping.
//!
//! Pure layers, where the tests live:
//! - [`mac`], [`advertisement`]: addresses, UUIDs, one advertisement.
//! - [`decode`]: the formats (BTHome v2 with AES-CCM, Ruuvi RAWv2, ATC1441,
//!   pvvx, iBeacon, Eddystone) and raw pass-through.
//! - [`config`]: the `[ble]` section and its validation.
//! - [`devices`]: devices by address and name pattern.
//! - [`tracker`]: de-duplication, minimum interval, presence.
//! - [`pipeline`]: an advertisement to events, without I/O.
//! - [`event`]: readings and presence as events.
//! - [`replay`]: the JSON-lines capture format.
//! - [`gatt_value`]: characteristic values by declared type.
//! - [`rejection`], [`backoff`].
//!
//! I/O: [`source`] (the seam: a source hands advertisements to a bounded
//! channel; replay and scripted sources), [`bluez`] (the radio), [`gatt`]
//! (GATT visits and writes) and [`adapter`] (the contract with the core).

pub mod adapter;
pub mod advertisement;
pub mod backoff;
pub mod bluez;
pub mod config;
pub mod decode;
pub mod devices;
pub mod event;
pub mod gatt;
pub mod gatt_value;
pub mod mac;
pub mod pipeline;
pub mod rejection;
pub mod replay;
pub mod source;
pub mod tracker;

pub use config::BleConfig;
