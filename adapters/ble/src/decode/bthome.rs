//! BTHome v2 (<https://bthome.io/format/>): service data of `0xFCD2`, a
//! device information byte, then objects in id order (id, little-endian
//! value; factor and unit fixed by the id). Encrypted frames
//! (<https://bthome.io/encryption/>) carry the objects AES-128-CCM
//! encrypted with the device's bind key, then a 32-bit counter and a
//! 4-byte MIC; the nonce is the sender's MAC, the UUID (`D2 FC`), the
//! device information byte and the counter.
//!
//! Units are SenML's where it has one; values are scaled to them (hPa to
//! `Pa`, kWh to `Wh`, mm to `m`), so a factor here may differ from the
//! table's.

use super::{DecodeError, Decoded, Format, Measurement, Quantity, le_int, le_uint, scaled};
use crate::mac::Mac;
use aes::Aes128;
use ccm::Ccm;
use ccm::aead::{AeadInPlace, KeyInit};
use ccm::consts::{U4, U13};

/// The 16-bit service UUID BTHome advertises under.
pub const SERVICE: u16 = 0xfcd2;
/// Bytes an encrypted frame adds after the objects: counter and MIC.
const CRYPTO_TAIL: usize = 8;

/// AES-128-CCM with BTHome's 4-byte MIC and 13-byte nonce.
type BthomeCcm = Ccm<Aes128, U4, U13>;

/// How an object's value is laid out and scaled.
#[derive(Clone, Copy)]
enum Kind {
    /// Unsigned, `size` bytes, times `factor`.
    Unsigned(usize, f64),
    /// Signed, `size` bytes, times `factor`.
    Signed(usize, f64),
    /// One byte, 0 or 1.
    Binary,
    /// One byte event (button), as the event's number.
    Event(usize),
    /// Length-prefixed text.
    Text,
    /// Length-prefixed bytes (skipped).
    Raw,
}

/// One object id of the format.
#[derive(Clone, Copy)]
struct Object {
    id: u8,
    name: &'static str,
    kind: Kind,
    unit: &'static str,
}

const fn u(id: u8, name: &'static str, size: usize, factor: f64, unit: &'static str) -> Object {
    Object {
        id,
        name,
        kind: Kind::Unsigned(size, factor),
        unit,
    }
}
const fn s(id: u8, name: &'static str, size: usize, factor: f64, unit: &'static str) -> Object {
    Object {
        id,
        name,
        kind: Kind::Signed(size, factor),
        unit,
    }
}
const fn b(id: u8, name: &'static str) -> Object {
    Object {
        id,
        name,
        kind: Kind::Binary,
        unit: "",
    }
}

/// Every object id of BTHome v2, in id order.
const OBJECTS: &[Object] = &[
    u(0x00, "packet_id", 1, 1.0, ""),
    u(0x01, "battery", 1, 1.0, "%EL"),
    s(0x02, "temperature", 2, 0.01, "Cel"),
    u(0x03, "humidity", 2, 0.01, "%RH"),
    u(0x04, "pressure", 3, 1.0, "Pa"),
    u(0x05, "illuminance", 3, 0.01, "lx"),
    u(0x06, "mass", 2, 0.01, "kg"),
    u(0x07, "mass_lb", 2, 0.01, "lb"),
    s(0x08, "dewpoint", 2, 0.01, "Cel"),
    u(0x09, "count", 1, 1.0, ""),
    u(0x0a, "energy", 3, 1.0, "Wh"),
    u(0x0b, "power", 3, 0.01, "W"),
    u(0x0c, "voltage", 2, 0.001, "V"),
    u(0x0d, "pm25", 2, 1.0, "ug/m3"),
    u(0x0e, "pm10", 2, 1.0, "ug/m3"),
    b(0x0f, "generic"),
    b(0x10, "power_on"),
    b(0x11, "opening"),
    u(0x12, "co2", 2, 1.0, "ppm"),
    u(0x13, "tvoc", 2, 1.0, "ug/m3"),
    u(0x14, "moisture", 2, 0.01, "%"),
    b(0x15, "battery_low"),
    b(0x16, "battery_charging"),
    b(0x17, "carbon_monoxide"),
    b(0x18, "cold"),
    b(0x19, "connectivity"),
    b(0x1a, "door"),
    b(0x1b, "garage_door"),
    b(0x1c, "gas_detected"),
    b(0x1d, "heat"),
    b(0x1e, "light"),
    b(0x1f, "lock"),
    b(0x20, "moisture_detected"),
    b(0x21, "motion"),
    b(0x22, "moving"),
    b(0x23, "occupancy"),
    b(0x24, "plug"),
    b(0x25, "presence"),
    b(0x26, "problem"),
    b(0x27, "running"),
    b(0x28, "safety"),
    b(0x29, "smoke"),
    b(0x2a, "sound"),
    b(0x2b, "tamper"),
    b(0x2c, "vibration"),
    b(0x2d, "window"),
    u(0x2e, "humidity", 1, 1.0, "%RH"),
    u(0x2f, "moisture", 1, 1.0, "%"),
    Object {
        id: 0x3a,
        name: "button",
        kind: Kind::Event(1),
        unit: "",
    },
    Object {
        id: 0x3c,
        name: "dimmer",
        kind: Kind::Event(2),
        unit: "",
    },
    u(0x3d, "count", 2, 1.0, ""),
    u(0x3e, "count", 4, 1.0, ""),
    s(0x3f, "rotation", 2, 0.1, "deg"),
    u(0x40, "distance", 2, 0.001, "m"),
    u(0x41, "distance", 2, 0.1, "m"),
    u(0x42, "duration", 3, 0.001, "s"),
    u(0x43, "current", 2, 0.001, "A"),
    u(0x44, "speed", 2, 0.01, "m/s"),
    s(0x45, "temperature", 2, 0.1, "Cel"),
    u(0x46, "uv_index", 1, 0.1, ""),
    u(0x47, "volume", 2, 0.1, "l"),
    u(0x48, "volume", 2, 0.001, "l"),
    u(0x49, "flow_rate", 2, 0.001 / 3600.0, "m3/s"),
    u(0x4a, "voltage", 2, 0.1, "V"),
    u(0x4b, "gas", 3, 0.001, "m3"),
    u(0x4c, "gas", 4, 0.001, "m3"),
    u(0x4d, "energy", 4, 1.0, "Wh"),
    u(0x4e, "volume", 4, 0.001, "l"),
    u(0x4f, "water", 4, 0.001, "l"),
    u(0x50, "timestamp", 4, 1.0, "s"),
    u(0x51, "acceleration", 2, 0.001, "m/s2"),
    u(0x52, "gyroscope", 2, 0.001, "deg/s"),
    Object {
        id: 0x53,
        name: "text",
        kind: Kind::Text,
        unit: "",
    },
    Object {
        id: 0x54,
        name: "raw",
        kind: Kind::Raw,
        unit: "",
    },
    u(0x55, "volume_storage", 4, 0.001, "l"),
    u(0x56, "conductivity", 2, 0.0001, "S/m"),
    s(0x57, "temperature", 1, 1.0, "Cel"),
    s(0x58, "temperature", 1, 0.35, "Cel"),
    s(0x59, "count", 1, 1.0, ""),
    s(0x5a, "count", 2, 1.0, ""),
    s(0x5b, "count", 4, 1.0, ""),
    s(0x5c, "power", 4, 0.01, "W"),
    s(0x5d, "current", 2, 0.001, "A"),
    u(0x5e, "direction", 2, 0.01, "deg"),
    u(0x5f, "precipitation", 2, 0.0001, "m"),
    u(0x60, "channel", 1, 1.0, ""),
    u(0x61, "rotational_speed", 2, 1.0, "1/min"),
    u(0xf0, "device_type", 2, 1.0, ""),
    u(0xf1, "firmware", 4, 1.0, ""),
    u(0xf2, "firmware", 3, 1.0, ""),
];

fn object(id: u8) -> Option<&'static Object> {
    OBJECTS
        .binary_search_by_key(&id, |o| o.id)
        .ok()
        .map(|i| &OBJECTS[i])
}

/// The device information byte's fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Bit 0: the objects are encrypted.
    pub encrypted: bool,
    /// Bit 2: the device sends on events rather than regularly.
    pub trigger_based: bool,
    /// Bits 5–7: the format version (2).
    pub version: u8,
}

impl DeviceInfo {
    /// Reads the byte.
    pub fn from_byte(b: u8) -> DeviceInfo {
        DeviceInfo {
            encrypted: b & 0x01 != 0,
            trigger_based: b & 0x04 != 0,
            version: b >> 5,
        }
    }
}

/// Decodes the service data of `0xFCD2` sent by `mac`.
pub fn decode(data: &[u8], mac: &Mac, key: Option<&[u8; 16]>) -> Result<Decoded, DecodeError> {
    let (&info_byte, rest) = data.split_first().ok_or(DecodeError::Length {
        format: "bthome",
        len: 0,
    })?;
    let info = DeviceInfo::from_byte(info_byte);
    if info.version != 2 {
        return Err(DecodeError::Unsupported("bthome"));
    }
    let mut decoded = Decoded {
        format: Some(Format::Bthome),
        ..Decoded::default()
    };
    if info.encrypted {
        let key = key.ok_or(DecodeError::NoKey)?;
        let (plain, counter) = decrypt(rest, mac, info_byte, key)?;
        objects(&plain, &mut decoded)?;
        decoded.packet_id = decoded.packet_id.or(Some(counter));
    } else {
        objects(rest, &mut decoded)?;
    }
    Ok(decoded)
}

/// The plain objects and the counter of an encrypted frame (after the
/// device information byte).
pub fn decrypt(
    frame: &[u8],
    mac: &Mac,
    info_byte: u8,
    key: &[u8; 16],
) -> Result<(Vec<u8>, u32), DecodeError> {
    if frame.len() < CRYPTO_TAIL {
        return Err(DecodeError::Length {
            format: "bthome",
            len: frame.len() + 1,
        });
    }
    let (cipher_text, tail) = frame.split_at(frame.len() - CRYPTO_TAIL);
    let (counter, mic) = tail.split_at(4);
    let nonce = nonce(mac, info_byte, counter);
    let mut buf = cipher_text.to_vec();
    let cipher = BthomeCcm::new(key.into());
    cipher
        .decrypt_in_place_detached((&nonce).into(), &[], &mut buf, mic.into())
        .map_err(|_| DecodeError::BadMic)?;
    Ok((buf, le_uint(counter)))
}

/// Encrypts `objects` as a device would: the frame after the device
/// information byte (cipher text, counter, MIC). For the demo's sensor and tests.
pub fn encrypt(objects: &[u8], mac: &Mac, info_byte: u8, counter: u32, key: &[u8; 16]) -> Vec<u8> {
    let counter = counter.to_le_bytes();
    let nonce = nonce(mac, info_byte, &counter);
    let mut buf = objects.to_vec();
    let cipher = BthomeCcm::new(key.into());
    // Encryption fails only for messages longer than CCM's length field
    // allows (2^104 bytes here), which a slice in memory cannot be.
    let tag = cipher
        .encrypt_in_place_detached((&nonce).into(), &[], &mut buf)
        .unwrap_or_default();
    buf.extend_from_slice(&counter);
    buf.extend_from_slice(&tag);
    buf
}

/// MAC, UUID as sent (`D2 FC`), device information byte, counter.
fn nonce(mac: &Mac, info_byte: u8, counter: &[u8]) -> [u8; 13] {
    let mut n = [0u8; 13];
    n[..6].copy_from_slice(&mac.0);
    n[6..8].copy_from_slice(&SERVICE.to_le_bytes());
    n[8] = info_byte;
    n[9..13].copy_from_slice(counter);
    n
}

/// Reads objects until the end; an unknown id stops decoding with an
/// error, since the length of its value is unknown.
fn objects(mut data: &[u8], out: &mut Decoded) -> Result<(), DecodeError> {
    let short = |len| DecodeError::Length {
        format: "bthome",
        len,
    };
    while let Some((&id, rest)) = data.split_first() {
        let o = object(id).ok_or(DecodeError::UnknownObject(id))?;
        let (value, after) = match o.kind {
            Kind::Unsigned(n, factor) => {
                let v = rest.get(..n).ok_or(short(rest.len()))?;
                (
                    Some(Quantity::Number(scaled(f64::from(le_uint(v)), factor))),
                    &rest[n..],
                )
            }
            Kind::Signed(n, factor) => {
                let v = rest.get(..n).ok_or(short(rest.len()))?;
                (
                    Some(Quantity::Number(scaled(f64::from(le_int(v)), factor))),
                    &rest[n..],
                )
            }
            Kind::Binary => {
                let v = rest.first().ok_or(short(0))?;
                (Some(Quantity::Bool(*v != 0)), &rest[1..])
            }
            Kind::Event(n) => {
                let v = rest.get(..n).ok_or(short(rest.len()))?;
                (Some(Quantity::Number(f64::from(v[0]))), &rest[n..])
            }
            Kind::Text | Kind::Raw => {
                let (&len, body) = rest.split_first().ok_or(short(0))?;
                let len = usize::from(len);
                let v = body.get(..len).ok_or(short(body.len()))?;
                let value = matches!(o.kind, Kind::Text)
                    .then(|| Quantity::Text(String::from_utf8_lossy(v).into_owned()));
                (value, &body[len..])
            }
        };
        data = after;
        match (o.id, value) {
            (0x00, Some(Quantity::Number(n))) => out.packet_id = Some(n as u32),
            (_, Some(value)) => out.readings.push(Measurement {
                name: o.name,
                value,
                unit: o.unit,
            }),
            (_, None) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).expect("hex")
    }

    /// Decodes one plain object after the device information byte 0x40
    /// (version 2, unencrypted) and checks the one reading it gives.
    fn check(object_hex: &str, name: &str, value: f64, unit: &str) {
        let frame = [vec![0x40], h(object_hex)].concat();
        let d = decode(&frame, &Mac::default(), None).expect(object_hex);
        assert_eq!(d.readings.len(), 1, "{object_hex}");
        let r = &d.readings[0];
        assert_eq!((r.name, r.unit), (name, unit), "{object_hex}");
        let Quantity::Number(n) = r.value else {
            panic!("{object_hex}: not a number")
        };
        assert!(
            (n - value).abs() <= value.abs() * 1e-9 + 1e-9,
            "{object_hex}: {n} != {value}"
        );
    }

    // The examples of the sensor data table of the format's documentation
    // (bthome.io/format), values converted to SenML units where they differ.
    #[test]
    fn format_table_examples() {
        check("0161", "battery", 97.0, "%EL");
        check("02CA09", "temperature", 25.06, "Cel");
        check("03BF13", "humidity", 50.55, "%RH");
        check("04138A01", "pressure", 100_883.0, "Pa"); // 1008.83 hPa
        check("05138A14", "illuminance", 13_460.67, "lx");
        check("065E1F", "mass", 80.3, "kg");
        check("073E1D", "mass_lb", 74.86, "lb");
        check("08CA06", "dewpoint", 17.38, "Cel");
        check("0960", "count", 96.0, "");
        check("0A138A14", "energy", 1_346_067.0, "Wh"); // 1346.067 kWh
        check("0B021B00", "power", 69.14, "W");
        check("0C020C", "voltage", 3.074, "V");
        check("0D120C", "pm25", 3090.0, "ug/m3");
        check("0E021C", "pm10", 7170.0, "ug/m3");
        check("12E204", "co2", 1250.0, "ppm");
        check("14020C", "moisture", 30.74, "%");
        check("2E23", "humidity", 35.0, "%RH");
        check("2F23", "moisture", 35.0, "%");
        check("3D0960", "count", 24_585.0, "");
        check("3E2A2C0960", "count", 1_611_213_866.0, "");
        check("400C00", "distance", 0.012, "m"); // 12 mm
        check("414E00", "distance", 7.8, "m");
        check("424E3400", "duration", 13.39, "s");
        check("434E34", "current", 13.39, "A");
        check("4B138A14", "gas", 1346.067, "m3");
        check("4C41018A01", "gas", 25_821.505, "m3");
        check("4D12138A14", "energy", 344_593_170.0, "Wh"); // 344593.170 kWh
        check("56E803", "conductivity", 0.1, "S/m"); // 1000 µS/cm
        check("59EA", "count", -22.0, "");
        check("5AEAEA", "count", -5398.0, "");
        check("5BEA0234EA", "count", -365_690_134.0, "");
        check("5D02EA", "current", -5.63, "A");
    }

    #[test]
    fn packet_id_is_the_dedup_key_not_a_reading() {
        let d = decode(&h("40000902CA09"), &Mac::default(), None).expect("decode");
        assert_eq!(d.packet_id, Some(9));
        assert_eq!(d.readings.len(), 1);
    }

    #[test]
    fn binary_sensors_are_states() {
        let d = decode(&h("402D01"), &Mac::default(), None).expect("decode");
        assert_eq!(d.readings, vec![Measurement::state("window", true)]);
    }

    #[test]
    fn an_unknown_object_stops_decoding() {
        assert_eq!(
            decode(&h("40FE01"), &Mac::default(), None),
            Err(DecodeError::UnknownObject(0xfe))
        );
    }

    #[test]
    fn version_1_and_truncated_values_are_refused() {
        assert_eq!(
            decode(&h("2002CA09"), &Mac::default(), None),
            Err(DecodeError::Unsupported("bthome"))
        );
        assert!(matches!(
            decode(&h("4002CA"), &Mac::default(), None),
            Err(DecodeError::Length { .. })
        ));
        assert!(matches!(
            decode(&[], &Mac::default(), None),
            Err(DecodeError::Length { .. })
        ));
    }

    // bthome.io/encryption: temperature and humidity 02CA09 03BF13 (25.06 °C,
    // 50.55 %), key
    // 231d39c1d7cc1ab1aee224cd096db932, MAC 54:48:E6:8F:80:A5, device
    // information 0x41, counter 0x00112233 sent as bytes 00 11 22 33, so the
    // nonce is 5448e68f80a5d2fc4100112233 exactly as documented.
    const KEY: [u8; 16] = [
        0x23, 0x1d, 0x39, 0xc1, 0xd7, 0xcc, 0x1a, 0xb1, 0xae, 0xe2, 0x24, 0xcd, 0x09, 0x6d, 0xb9,
        0x32,
    ];
    const MAC: Mac = Mac([0x54, 0x48, 0xe6, 0x8f, 0x80, 0xa5]);

    #[test]
    fn the_documented_nonce_layout() {
        assert_eq!(
            hex::encode(nonce(&MAC, 0x41, &h("00112233"))),
            "5448e68f80a5d2fc4100112233"
        );
    }

    #[test]
    fn the_documented_encryption_example() {
        // The frame a device sends for the documented input (cipher text,
        // counter, MIC), as the documentation's Python (PyCryptodome) computes it.
        let frame = encrypt(&h("02CA0903BF13"), &MAC, 0x41, 0x3322_1100, &KEY);
        let advertised = [vec![0x41], frame].concat();
        assert_eq!(hex::encode(&advertised), "41a47266c95f730011223378237214");
        let d = decode(&advertised, &MAC, Some(&KEY)).expect("decrypts");
        assert_eq!(
            d.readings,
            vec![
                Measurement::number("temperature", 25.06, "Cel"),
                Measurement::number("humidity", 50.55, "%RH"),
            ]
        );
        assert_eq!(d.packet_id, Some(0x3322_1100));
        // Any other key, address or a flipped bit fails the MIC.
        let mut other = KEY;
        other[0] ^= 1;
        assert_eq!(
            decode(&advertised, &MAC, Some(&other)),
            Err(DecodeError::BadMic)
        );
        assert_eq!(
            decode(&advertised, &Mac([0; 6]), Some(&KEY)),
            Err(DecodeError::BadMic)
        );
        let mut flipped = advertised.clone();
        flipped[2] ^= 0x80;
        assert_eq!(decode(&flipped, &MAC, Some(&KEY)), Err(DecodeError::BadMic));
        assert_eq!(decode(&advertised, &MAC, None), Err(DecodeError::NoKey));
    }
}
