//! Advertisement payloads to readings: one module per format, each a pure
//! function of bytes, tested against the format's published examples.
//!
//! - [`bthome`]: BTHome v2, plain and AES-CCM encrypted (service `0xFCD2`).
//! - [`ruuvi`]: Ruuvi data format 5, RAWv2 (company `0x0499`).
//! - [`xiaomi`]: the ATC1441 and pvvx custom firmware formats (service `0x181A`).
//! - [`beacon`]: iBeacon (company `0x004C`) and Eddystone (service `0xFEAA`), presence.
//!
//! Anything else goes raw to a function (see [`Format::Raw`]).

pub mod beacon;
pub mod bthome;
pub mod ruuvi;
pub mod xiaomi;

use crate::advertisement::Advertisement;
use serde::Deserialize;

/// Which decoder a device's advertisements go through.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Whichever known format the advertisement carries.
    #[default]
    Auto,
    /// BTHome v2.
    Bthome,
    /// Ruuvi RAWv2.
    Ruuvi,
    /// ATC1441 custom firmware.
    Atc1441,
    /// pvvx custom firmware.
    Pvvx,
    /// iBeacon.
    Ibeacon,
    /// Eddystone.
    Eddystone,
    /// No decoding: the manufacturer or service data goes raw in the event
    /// for a function to decode.
    Raw,
}

impl Format {
    /// The name in the config and in the `format` meta of events.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Auto => "auto",
            Format::Bthome => "bthome",
            Format::Ruuvi => "ruuvi",
            Format::Atc1441 => "atc1441",
            Format::Pvvx => "pvvx",
            Format::Ibeacon => "ibeacon",
            Format::Eddystone => "eddystone",
            Format::Raw => "raw",
        }
    }
}

/// A decoded value.
#[derive(Clone, Debug, PartialEq)]
pub enum Quantity {
    /// A number.
    Number(f64),
    /// A state.
    Bool(bool),
    /// Text (an Eddystone URL, a firmware version).
    Text(String),
}

/// One named value with its SenML unit (empty if none).
#[derive(Clone, Debug, PartialEq)]
pub struct Measurement {
    /// Reading name (`temperature`).
    pub name: &'static str,
    /// The value.
    pub value: Quantity,
    /// SenML unit symbol (`Cel`, `%RH`, `Pa`, `V`, `dBm`).
    pub unit: &'static str,
}

impl Measurement {
    /// A number.
    pub fn number(name: &'static str, value: f64, unit: &'static str) -> Measurement {
        Measurement {
            name,
            value: Quantity::Number(value),
            unit,
        }
    }

    /// A state.
    pub fn state(name: &'static str, value: bool) -> Measurement {
        Measurement {
            name,
            value: Quantity::Bool(value),
            unit: "",
        }
    }
}

/// What one advertisement said.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decoded {
    /// The format it was in.
    pub format: Option<Format>,
    /// Its values.
    pub readings: Vec<Measurement>,
    /// The sender's measurement or packet number, when the format has one:
    /// repeated advertisements of one measurement share it.
    pub packet_id: Option<u32>,
    /// The raw data for a function (format `raw`): the bytes and where they
    /// came from (`company_id` or `service_uuid`, as text).
    pub raw: Option<(String, String, Vec<u8>)>,
}

/// Why a payload could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter or longer than the format allows.
    #[error("{format}: {len} bytes, not a valid length")]
    Length {
        /// The format.
        format: &'static str,
        /// Bytes received.
        len: usize,
    },
    /// A version or frame type this decoder does not read.
    #[error("{0}: unsupported version or frame type")]
    Unsupported(&'static str),
    /// An object id BTHome does not define (the rest cannot be read).
    #[error("bthome: unknown object id {0:#04x}")]
    UnknownObject(u8),
    /// Encrypted, but no bind key is configured.
    #[error("bthome: encrypted, and no bind_key is configured")]
    NoKey,
    /// The message integrity check failed: wrong key or a forged frame.
    #[error("bthome: message integrity check failed (wrong bind_key?)")]
    BadMic,
    /// The advertisement carries nothing this format reads.
    #[error("{0}: not in this advertisement")]
    Absent(&'static str),
}

/// Decodes `ad` as `format` (`Auto`: the first known format it carries).
/// `Ok(None)`: `Auto` found nothing it knows (not an error).
pub fn decode(
    format: Format,
    ad: &Advertisement,
    bind_key: Option<&[u8; 16]>,
    raw_source: Option<&RawSource>,
) -> Result<Option<Decoded>, DecodeError> {
    let mac = ad.address;
    match format {
        Format::Auto => {
            if let Some(data) = ad.service(bthome::SERVICE) {
                return bthome::decode(data, &mac, bind_key).map(Some);
            }
            if let Some(data) = ad.manufacturer(ruuvi::COMPANY) {
                return ruuvi::decode(data).map(Some);
            }
            if let Some(data) = ad.service(xiaomi::SERVICE) {
                return xiaomi::decode_any(data).map(Some);
            }
            if let Some(data) = ad.manufacturer(beacon::APPLE) {
                return beacon::ibeacon(data).map(Some);
            }
            if let Some(data) = ad.service(beacon::EDDYSTONE) {
                return beacon::eddystone(data).map(Some);
            }
            Ok(None)
        }
        Format::Bthome => {
            bthome::decode(need(ad.service(bthome::SERVICE), "bthome")?, &mac, bind_key).map(Some)
        }
        Format::Ruuvi => ruuvi::decode(need(ad.manufacturer(ruuvi::COMPANY), "ruuvi")?).map(Some),
        Format::Atc1441 => xiaomi::atc1441(need(ad.service(xiaomi::SERVICE), "atc1441")?).map(Some),
        Format::Pvvx => xiaomi::pvvx(need(ad.service(xiaomi::SERVICE), "pvvx")?).map(Some),
        Format::Ibeacon => {
            beacon::ibeacon(need(ad.manufacturer(beacon::APPLE), "ibeacon")?).map(Some)
        }
        Format::Eddystone => {
            beacon::eddystone(need(ad.service(beacon::EDDYSTONE), "eddystone")?).map(Some)
        }
        Format::Raw => Ok(raw(ad, raw_source)),
    }
}

fn need<'a>(data: Option<&'a [u8]>, format: &'static str) -> Result<&'a [u8], DecodeError> {
    data.ok_or(DecodeError::Absent(format))
}

/// Which data of a `raw` device goes to its function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RawSource {
    /// Manufacturer data of this company id.
    Company(u16),
    /// Service data of this UUID.
    Service(uuid::Uuid),
}

/// The raw data of `ad` named by `source`, or (no source) its first
/// manufacturer data, else its first service data.
fn raw(ad: &Advertisement, source: Option<&RawSource>) -> Option<Decoded> {
    let (key, id, data) = match source {
        Some(RawSource::Company(c)) => ("company_id", format!("{c:#06x}"), ad.manufacturer(*c)?),
        Some(RawSource::Service(u)) => ("service_uuid", u.to_string(), ad.service_uuid(u)?),
        None => match (ad.manufacturer_data.first(), ad.service_data.first()) {
            (Some((c, d)), _) => ("company_id", format!("{c:#06x}"), d.as_slice()),
            (None, Some((u, d))) => ("service_uuid", u.to_string(), d.as_slice()),
            (None, None) => return None,
        },
    };
    Some(Decoded {
        format: Some(Format::Raw),
        readings: Vec::new(),
        packet_id: None,
        raw: Some((key.to_owned(), id, data.to_vec())),
    })
}

/// `raw × factor`, dividing by the inverse when it is a whole number, so
/// that 2506 × 0.01 is exactly the 25.06 a person reads, not 25.060000000000002.
pub fn scaled(raw: f64, factor: f64) -> f64 {
    let inverse = 1.0 / factor;
    if factor < 1.0 && (inverse - inverse.round()).abs() < 1e-9 {
        raw / inverse.round()
    } else {
        raw * factor
    }
}

/// Reads a little-endian unsigned integer of `data.len()` (1 to 4) bytes.
pub(crate) fn le_uint(data: &[u8]) -> u32 {
    data.iter()
        .rev()
        .fold(0u32, |acc, b| (acc << 8) | u32::from(*b))
}

/// Reads a little-endian two's complement integer of `data.len()` (1 to 4) bytes.
pub(crate) fn le_int(data: &[u8]) -> i32 {
    let bits = 8 * data.len() as u32;
    let raw = le_uint(data);
    if bits >= 32 {
        raw as i32
    } else {
        ((raw << (32 - bits)) as i32) >> (32 - bits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn little_endian_integers() {
        assert_eq!(le_uint(&[0xca, 0x09]), 0x09ca);
        assert_eq!(le_int(&[0xea]), -22);
        assert_eq!(le_int(&[0xea, 0xea]), -5398);
        assert_eq!(le_int(&[0xea, 0x02, 0x34, 0xea]), -365_690_134);
        assert_eq!(le_uint(&[0x13, 0x8a, 0x14]), 0x148a13);
    }
}
