//! Cayenne LPP v1 decoder: turns the raw LoRaWAN FRMPayload of an uplink
//! (`event.raw`) into named readings.
//!
//! The payload is a sequence of `[channel u8][type u8][data]`, multi-byte
//! values big-endian. Each item becomes a reading named `<type>_<channel>`
//! (`temperature_3`), or `<type>_<axis>_<channel>` for the three-axis types
//! (`accelerometer_x_6`, `gps_lat_1`):
//!
//! | type | name | data | value | unit |
//! |---|---|---|---|---|
//! | `0x00` | `digital_input` | 1 B unsigned | as is | |
//! | `0x01` | `digital_output` | 1 B unsigned | as is | |
//! | `0x02` | `analog_input` | 2 B signed | / 100 | |
//! | `0x03` | `analog_output` | 2 B signed | / 100 | |
//! | `0x65` | `illuminance` | 2 B unsigned | as is | `lx` |
//! | `0x66` | `presence` | 1 B unsigned | as is | |
//! | `0x67` | `temperature` | 2 B signed | / 10 | `Cel` |
//! | `0x68` | `humidity` | 1 B unsigned | / 2 | `%RH` |
//! | `0x71` | `accelerometer_{x,y,z}` | 3 × 2 B signed | / 1000 | `g` |
//! | `0x73` | `barometer` | 2 B unsigned | / 10 | `hPa` |
//! | `0x86` | `gyrometer_{x,y,z}` | 3 × 2 B signed | / 100 | `deg/s` |
//! | `0x88` | `gps_lat`, `gps_lon`, `gps_alt` | 3 × 3 B signed | / 10000, / 10000, / 100 | `deg`, `deg`, `m` |
//!
//! The function emits one event per input, under `fn/<function>/<device>`,
//! with the decoded readings, the input's meta (RSSI, SNR, …) and its
//! `device_time_ms`. It takes no config.
//!
//! # Error codes
//!
//! A payload that does not decode fails the call (the host dead-letters the
//! input with `returned <code>`), and nothing is emitted:
//!
//! | code | meaning |
//! |---|---|
//! | 100 | the event has no raw payload, or an empty one |
//! | 101 | an item has a type not in the table above (type, in hex, and channel logged) |
//! | 102 | the payload ends inside an item (channel logged) |
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;
use sluice_sdk::{Config, Error, EventView, EventWriter, Function, Level, Reading, Value, text};

/// The event has no raw payload, or an empty one.
pub const NO_PAYLOAD: Error = Error::new(100, "no raw payload to decode");
/// An item's type is not a supported Cayenne LPP type.
pub const UNKNOWN_TYPE: Error = Error::new(101, "unknown Cayenne LPP type");
/// The payload ends inside an item.
pub const TRUNCATED: Error = Error::new(102, "truncated Cayenne LPP payload");

/// One value inside an item.
struct Field {
    /// Appended to the type name, e.g. `_x`; empty for one-value types.
    axis: &'static str,
    /// Bytes on the wire.
    size: usize,
    signed: bool,
    divisor: f64,
    unit: &'static str,
}

/// One Cayenne LPP data type.
struct DataType {
    code: u8,
    name: &'static str,
    fields: &'static [Field],
}

const fn one(size: usize, signed: bool, divisor: f64, unit: &'static str) -> [Field; 1] {
    [Field {
        axis: "",
        size,
        signed,
        divisor,
        unit,
    }]
}

const fn xyz(divisor: f64, unit: &'static str) -> [Field; 3] {
    [
        Field {
            axis: "_x",
            size: 2,
            signed: true,
            divisor,
            unit,
        },
        Field {
            axis: "_y",
            size: 2,
            signed: true,
            divisor,
            unit,
        },
        Field {
            axis: "_z",
            size: 2,
            signed: true,
            divisor,
            unit,
        },
    ]
}

const TYPES: &[DataType] = &[
    DataType {
        code: 0x00,
        name: "digital_input",
        fields: &one(1, false, 1.0, ""),
    },
    DataType {
        code: 0x01,
        name: "digital_output",
        fields: &one(1, false, 1.0, ""),
    },
    DataType {
        code: 0x02,
        name: "analog_input",
        fields: &one(2, true, 100.0, ""),
    },
    DataType {
        code: 0x03,
        name: "analog_output",
        fields: &one(2, true, 100.0, ""),
    },
    DataType {
        code: 0x65,
        name: "illuminance",
        fields: &one(2, false, 1.0, "lx"),
    },
    DataType {
        code: 0x66,
        name: "presence",
        fields: &one(1, false, 1.0, ""),
    },
    DataType {
        code: 0x67,
        name: "temperature",
        fields: &one(2, true, 10.0, "Cel"),
    },
    DataType {
        code: 0x68,
        name: "humidity",
        fields: &one(1, false, 2.0, "%RH"),
    },
    DataType {
        code: 0x71,
        name: "accelerometer",
        fields: &xyz(1000.0, "g"),
    },
    DataType {
        code: 0x73,
        name: "barometer",
        fields: &one(2, false, 10.0, "hPa"),
    },
    DataType {
        code: 0x86,
        name: "gyrometer",
        fields: &xyz(100.0, "deg/s"),
    },
    DataType {
        code: 0x88,
        name: "gps",
        fields: &[
            Field {
                axis: "_lat",
                size: 3,
                signed: true,
                divisor: 10000.0,
                unit: "deg",
            },
            Field {
                axis: "_lon",
                size: 3,
                signed: true,
                divisor: 10000.0,
                unit: "deg",
            },
            Field {
                axis: "_alt",
                size: 3,
                signed: true,
                divisor: 100.0,
                unit: "m",
            },
        ],
    },
];

/// Decodes a whole Cayenne LPP payload into readings, in payload order.
pub fn decode(mut payload: &[u8]) -> Result<Vec<Reading>, Error> {
    if payload.is_empty() {
        return Err(NO_PAYLOAD);
    }
    let mut readings = Vec::new();
    while let [channel, code, rest @ ..] = payload {
        let Some(data_type) = TYPES.iter().find(|t| t.code == *code) else {
            return Err(refuse(UNKNOWN_TYPE, *channel, Some(*code)));
        };
        let size = data_type.fields.iter().map(|f| f.size).sum();
        if rest.len() < size {
            return Err(refuse(TRUNCATED, *channel, None));
        }
        let (mut data, tail) = rest.split_at(size);
        for field in data_type.fields {
            let (bytes, more) = data.split_at(field.size);
            data = more;
            let mut name = String::with_capacity(data_type.name.len() + field.axis.len() + 4);
            name.push_str(data_type.name);
            name.push_str(field.axis);
            name.push('_');
            text::push_u64(&mut name, (*channel).into());
            readings.push(Reading {
                name,
                value: Value::Number(f64::from(big_endian(bytes, field.signed)) / field.divisor),
                unit: field.unit.into(),
            });
        }
        payload = tail;
    }
    if let [channel] = payload {
        // A channel byte without a type.
        return Err(refuse(TRUNCATED, *channel, None));
    }
    Ok(readings)
}

/// The big-endian integer in `bytes` (1 to 3 of them), sign-extended if
/// `signed`.
fn big_endian(bytes: &[u8], signed: bool) -> i32 {
    let raw = bytes.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
    if signed {
        let unused = 32 - 8 * bytes.len() as u32;
        ((raw << unused) as i32) >> unused
    } else {
        raw as i32
    }
}

/// Logs where the payload went wrong, then returns `error`.
fn refuse(error: Error, channel: u8, code: Option<u8>) -> Error {
    let mut line = String::from(error.message());
    if let Some(code) = code {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        line.push_str(" 0x");
        line.push(char::from(HEX[usize::from(code >> 4)]));
        line.push(char::from(HEX[usize::from(code & 0xf)]));
    }
    line.push_str(" on channel ");
    text::push_u64(&mut line, channel.into());
    sluice_sdk::log(Level::Error, &line);
    error
}

/// The decoder as a function: no config, one output per input.
pub struct CayenneLpp;

impl Function for CayenneLpp {
    fn init(config: &Config) -> Result<Self, Error> {
        config.validate(&[])?;
        Ok(CayenneLpp)
    }

    fn on_view(&mut self, input: &EventView<'_>) -> Result<(), Error> {
        let readings = decode(input.raw().unwrap_or_default())?;
        let mut output = EventWriter::for_device(input.device);
        output.device_time_ms(input.device_time_ms);
        for r in &readings {
            output.reading(&r.name, r.value.as_ref(), &r.unit);
        }
        output.meta_from(input);
        sluice_sdk::emit(&output)
    }
}

sluice_sdk::export_function!(CayenneLpp);

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `payload` and compares `(name, value, unit)` of each reading.
    fn check(payload: &[u8], expected: &[(&str, f64, &str)]) {
        let readings = decode(payload).expect("payload decodes");
        let got: Vec<(&str, f64, &str)> = readings
            .iter()
            .map(|r| match r.value {
                Value::Number(n) => (r.name.as_str(), n, r.unit.as_str()),
                _ => panic!("non-numeric reading {}", r.name),
            })
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn two_temperatures() {
        check(
            &[
                0x03, 0x67, 0x01, 0x10, // channel 3, temperature, 272 → 27.2 °C
                0x05, 0x67, 0x00, 0xFF, // channel 5, temperature, 255 → 25.5 °C
            ],
            &[
                ("temperature_3", 27.2, "Cel"),
                ("temperature_5", 25.5, "Cel"),
            ],
        );
    }

    #[test]
    fn negative_temperature() {
        check(&[0x01, 0x67, 0xFF, 0xD7], &[("temperature_1", -4.1, "Cel")]); // -41
    }

    #[test]
    fn gps() {
        check(
            &[
                0x01, 0x88, // channel 1, GPS
                0x06, 0x76, 0x5F, // lat 423519 → 42.3519
                0xF2, 0x96, 0x0A, // lon -879094 → -87.9094
                0x00, 0x03, 0xE8, // alt 1000 → 10 m
            ],
            &[
                ("gps_lat_1", 42.3519, "deg"),
                ("gps_lon_1", -87.9094, "deg"),
                ("gps_alt_1", 10.0, "m"),
            ],
        );
    }

    #[test]
    fn accelerometer() {
        check(
            &[
                0x06, 0x71, // channel 6, accelerometer
                0x04, 0xD2, // x 1234 → 1.234 g
                0xFB, 0x2E, // y -1234 → -1.234 g
                0x00, 0x00, // z 0
            ],
            &[
                ("accelerometer_x_6", 1.234, "g"),
                ("accelerometer_y_6", -1.234, "g"),
                ("accelerometer_z_6", 0.0, "g"),
            ],
        );
    }

    #[test]
    fn gyrometer() {
        check(
            &[0x01, 0x86, 0x00, 0x64, 0xFF, 0x9C, 0x27, 0x10], // 100, -100, 10000
            &[
                ("gyrometer_x_1", 1.0, "deg/s"),
                ("gyrometer_y_1", -1.0, "deg/s"),
                ("gyrometer_z_1", 100.0, "deg/s"),
            ],
        );
    }

    #[test]
    fn one_byte_and_unsigned_types() {
        check(
            &[
                0x01, 0x00, 0x01, // digital input 1
                0x02, 0x01, 0xFF, // digital output 255
                0x05, 0x68, 0x61, // humidity 97 → 48.5 %RH
                0x07, 0x66, 0x01, // presence 1
                0x04, 0x65, 0xFF, 0xFF, // illuminance 65535 lx (unsigned)
                0x02, 0x73, 0x27, 0x7F, // barometer 10111 → 1011.1 hPa
            ],
            &[
                ("digital_input_1", 1.0, ""),
                ("digital_output_2", 255.0, ""),
                ("humidity_5", 48.5, "%RH"),
                ("presence_7", 1.0, ""),
                ("illuminance_4", 65535.0, "lx"),
                ("barometer_2", 1011.1, "hPa"),
            ],
        );
    }

    #[test]
    fn analog() {
        check(
            &[0x02, 0x02, 0xFF, 0x38, 0x03, 0x03, 0x01, 0x2C], // -200, 300
            &[("analog_input_2", -2.0, ""), ("analog_output_3", 3.0, "")],
        );
    }

    #[test]
    fn refusals() {
        assert_eq!(decode(&[]), Err(NO_PAYLOAD));
        assert_eq!(decode(&[0x01, 0x42, 0x00]), Err(UNKNOWN_TYPE)); // 0x42 is no LPP type
        assert_eq!(decode(&[0x01, 0x67, 0x01]), Err(TRUNCATED)); // temperature needs 2 bytes
        assert_eq!(decode(&[0x01, 0x00, 0x01, 0x02]), Err(TRUNCATED)); // channel without type
        assert_eq!(
            decode(&[0x01, 0x88, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(TRUNCATED)
        ); // GPS needs 9
    }
}
