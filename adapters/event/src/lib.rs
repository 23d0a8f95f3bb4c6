//! The normalized Sluice [`Event`] and its postcard codec.
//!
//! Every adapter turns what its devices say into an `Event`; the host routes
//! it, functions (compiled to wasm) read and emit it, and the queue stores it.
//! This crate is `no_std` + `alloc` so that guest functions share the very same
//! definition. The postcard encoding is a contract: field order and types are
//! pinned by golden byte files in `tests/golden`, and any change to them needs
//! a new [`FORMAT_VERSION`].
#![no_std]
#![deny(missing_docs)]

extern crate alloc;

pub mod abi;
mod lazy;
mod view;
mod wire;
mod writer;

pub use lazy::{LazyMetas, LazyReadings, LazyView};
pub use view::{EventView, MetaRef, Metas, ReadingRef, Readings, Seq, ValueRef, decode_meta_list};
pub use wire::same_str;
pub use writer::{EncodedSections, EventWriter, WriterBuffers};

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Serialize};

/// Version of the encoding written by [`Event::encode`]; the first field of
/// every encoded event.
pub const FORMAT_VERSION: u8 = 1;

/// Gateway-unique event id, also the event's trace id.
///
/// The high 24 bits are the gateway's boot number, the low 40 bits a sequence
/// within that boot, so ids never repeat across restarts and sort in arrival
/// order. `0` means "not assigned yet".
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct EventId(pub u64);

impl EventId {
    /// The id of an event that has not been submitted yet.
    pub const UNSET: EventId = EventId(0);
    /// Bits of the id that hold the sequence within one boot.
    pub const SEQ_BITS: u32 = 40;

    /// Builds the id of the `seq`-th event of boot `boot`.
    pub fn new(boot: u32, seq: u64) -> EventId {
        EventId(((boot as u64) << Self::SEQ_BITS) | (seq & ((1 << Self::SEQ_BITS) - 1)))
    }

    /// Whether the id has been assigned.
    pub fn is_set(self) -> bool {
        self.0 != 0
    }
}

impl fmt::Display for EventId {
    /// Sixteen lowercase hex digits, the form used in logs and upstream records.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A value carried by a reading or a metadata entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// A number (all numeric readings are carried as f64).
    Number(f64),
    /// A boolean, e.g. a contact or a switch state.
    Bool(bool),
    /// A string, e.g. a state name or a firmware version.
    Text(String),
    /// Opaque bytes.
    Bytes(Vec<u8>),
}

/// One named measurement, e.g. `temperature = 21.5 Cel`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// Measurement name, e.g. `temperature`.
    pub name: String,
    /// The measured value.
    pub value: Value,
    /// Unit, preferably a SenML unit symbol (`Cel`, `%RH`, `V`, …); empty if none.
    pub unit: String,
}

/// One metadata entry about how the reading arrived, e.g. `rssi = -87`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// Key, e.g. `rssi`, `snr`, `gateway_eui`, `fport`.
    pub key: String,
    /// Its value.
    pub value: Value,
}

/// The normalized event every adapter produces and every function consumes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Encoding version, [`FORMAT_VERSION`] for events built by this crate.
    pub version: u8,
    /// Gateway-unique id (and trace id), assigned on ingest.
    pub id: EventId,
    /// The id of the event that caused this one (for function outputs).
    pub cause: Option<EventId>,
    /// Routing subject, e.g. `coap/greenhouse-1` or `lorawan/0004a30b001c0530/up`.
    pub subject: String,
    /// Device identifier as the adapter knows it.
    pub device: String,
    /// Time the device stamped on the reading, in ms since the Unix epoch.
    pub device_time_ms: Option<i64>,
    /// Time the gateway received it, in ms since the Unix epoch.
    pub gateway_time_ms: i64,
    /// The measurements.
    pub readings: Vec<Reading>,
    /// How it arrived: RSSI, SNR, frequency, port, …
    pub meta: Vec<Meta>,
    /// The raw payload as received, when the adapter keeps it.
    pub raw: Option<Vec<u8>>,
    /// Name of the function that produced this event, if any.
    pub function: Option<String>,
}

/// Why bytes could not be decoded into an [`Event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes are not a postcard-encoded event.
    Malformed,
    /// The event was written with a format this code does not read.
    UnsupportedVersion(u8),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Malformed => f.write_str("malformed event encoding"),
            DecodeError::UnsupportedVersion(v) => {
                write!(
                    f,
                    "unsupported event format version {v} (this build reads {FORMAT_VERSION})"
                )
            }
        }
    }
}

impl core::error::Error for DecodeError {}

impl Event {
    /// A new event with no readings, stamped with the gateway time.
    pub fn new(
        subject: impl Into<String>,
        device: impl Into<String>,
        gateway_time_ms: i64,
    ) -> Event {
        Event {
            version: FORMAT_VERSION,
            id: EventId::UNSET,
            cause: None,
            subject: subject.into(),
            device: device.into(),
            device_time_ms: None,
            gateway_time_ms,
            readings: Vec::new(),
            meta: Vec::new(),
            raw: None,
            function: None,
        }
    }

    /// Adds a numeric reading (builder style).
    pub fn with_number(
        mut self,
        name: impl Into<String>,
        value: f64,
        unit: impl Into<String>,
    ) -> Event {
        self.readings.push(Reading {
            name: name.into(),
            value: Value::Number(value),
            unit: unit.into(),
        });
        self
    }

    /// Adds a metadata entry (builder style).
    pub fn with_meta(mut self, key: impl Into<String>, value: Value) -> Event {
        self.meta.push(Meta {
            key: key.into(),
            value,
        });
        self
    }

    /// Encodes the event: the bytes postcard writes for it (written by hand,
    /// so that guest functions carry no serde code).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        writer::encode_into(self, &mut out);
        out
    }

    /// Writes the encoding to `out`, replacing what it held (so that a buffer
    /// can serve one event after another).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        writer::encode_into(self, out);
    }

    /// Decodes an event, checking its format version first; accepts exactly
    /// what postcard accepts. To read a few fields without building the owned
    /// event, use [`EventView`].
    pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
        EventView::parse(bytes).map(|view| view.to_event())
    }

    /// The value of the reading called `name`, if it is a number.
    pub fn number(&self, name: &str) -> Option<f64> {
        self.readings
            .iter()
            .find(|r| r.name == name)
            .and_then(|r| match r.value {
                Value::Number(n) => Some(n),
                _ => None,
            })
    }
}
